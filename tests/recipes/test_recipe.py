"""Recipe loading, overrides and the error messages users see."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from unirg.errors import RecipeError
from unirg.recipe import RECIPES_DIR, load_recipe, parse_override

SHIPPED = sorted(RECIPES_DIR.glob("*.yaml"))


def write(tmp_path: Path, tree: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def minimal() -> dict:
    return {"name": "t", "model": {"name_or_path": "tiny"}, "rewards": [{"name": "format"}]}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_recipe_loads(path: Path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert recipe.rewards or recipe.grpo is None


def test_recipe_found_by_name():
    assert load_recipe("demo").name == "demo"


def test_overrides_win_and_index_lists(tmp_path):
    tree = minimal() | {"grpo": {"num_generations": 4}}
    recipe = load_recipe(write(tmp_path, tree), ["grpo.num_generations=8", "rewards.0.weight=0.5",
                                                 "model.tiny.hidden_size=32", "data.synthetic.n_train=9"])
    assert recipe.grpo["num_generations"] == 8
    assert recipe.rewards[0].weight == 0.5
    assert recipe.model.tiny.hidden_size == 32
    assert recipe.data.synthetic.n_train == 9


def test_unknown_key_names_key_and_closest(tmp_path):
    tree = minimal() | {"modle": {}}
    with pytest.raises(RecipeError, match=r"modle: unknown key; did you mean 'model'\?"):
        load_recipe(write(tmp_path, tree))


def test_unknown_nested_key(tmp_path):
    tree = minimal()
    tree["model"]["dtyp"] = "float32"
    with pytest.raises(RecipeError, match=r"model\.dtyp: unknown key; did you mean 'dtype'\?"):
        load_recipe(write(tmp_path, tree))


def test_unknown_grpo_field_suggests_trl_name(tmp_path):
    with pytest.raises(RecipeError, match=r"unknown field 'grpo\.num_generation'; did you mean 'num_generations'"):
        load_recipe(write(tmp_path, minimal()), ["grpo.num_generation=8"])


def test_grpo_field_owned_by_recipe(tmp_path):
    with pytest.raises(RecipeError, match=r"'grpo\.output_dir' is set by the recipe itself: use output\.dir"):
        load_recipe(write(tmp_path, minimal()), ["grpo.output_dir=/x"])


def test_wrong_type(tmp_path):
    with pytest.raises(RecipeError, match=r"data\.synthetic\.n_train: .*integer.*'many'"):
        load_recipe(write(tmp_path, minimal()), ["data.synthetic.n_train=many"])


def test_wrong_type_in_grpo(tmp_path):
    with pytest.raises(RecipeError, match=r"'grpo\.learning_rate' should be float or int, got str"):
        load_recipe(write(tmp_path, minimal()), ["grpo.learning_rate=fast"])


def test_bool_is_not_an_int_in_grpo(tmp_path):
    with pytest.raises(RecipeError, match=r"'grpo\.num_generations' should be int or null, got bool True"):
        load_recipe(write(tmp_path, minimal()), ["grpo.num_generations=true"])


@pytest.mark.parametrize("text", ["grpo.num_generations", "=3", "grpo..beta=1", "grpo.beta=[1"])
def test_bad_override_syntax(text):
    with pytest.raises(RecipeError, match="bad override"):
        parse_override(text)


def test_override_index_out_of_range(tmp_path):
    with pytest.raises(RecipeError, match=r"'rewards\.5' needs an index below 1"):
        load_recipe(write(tmp_path, minimal()), ["rewards.5.weight=1"])


def test_missing_recipe_file_suggests_shipped():
    with pytest.raises(RecipeError, match=r"recipe file not found: dmeo; did you mean 'demo'\?"):
        load_recipe("dmeo")


def test_missing_required_section(tmp_path):
    tree = minimal()
    del tree["rewards"]
    with pytest.raises(RecipeError, match=r"rewards: GRPO needs at least one reward plugin"):
        load_recipe(write(tmp_path, tree))


def test_not_a_mapping(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(RecipeError, match="a recipe is a mapping"):
        load_recipe(path)


def test_resolved_recipe_round_trips(tmp_path):
    recipe = load_recipe(write(tmp_path, minimal()), ["seed=3"])
    again = write(tmp_path, yaml.safe_load(recipe.to_yaml()))
    assert load_recipe(again) == recipe


def test_missing_local_model_folder_is_named(tmp_path):
    from unirg.models.loading import resolve_model_path

    recipe = load_recipe(write(tmp_path, minimal()), [f"model.name_or_path={tmp_path}/nowhere"])
    with pytest.raises(RecipeError, match=r"model\.name_or_path: no model folder at .*nowhere"):
        resolve_model_path(recipe.model, tmp_path)


def test_exponent_floats_without_a_dot(tmp_path):
    tree = minimal() | {"grpo": {"beta": "1e-3"}}
    recipe = load_recipe(write(tmp_path, tree), ["grpo.learning_rate=1e-4"])
    assert recipe.grpo["learning_rate"] == 1e-4 and recipe.grpo["beta"] == 1e-3
