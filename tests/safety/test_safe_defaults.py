"""Safe defaults: no remote code, no hub pushes, no pickle loading of weights, no report text in logs."""

from __future__ import annotations

import re
from pathlib import Path

from unirg.recipe import Recipe, load_recipe

REPO = Path(__file__).resolve().parents[2]
SOURCE_DIRS = [REPO / "unirg", REPO / "rewards"]


def _sources():
    for folder in SOURCE_DIRS:
        yield from folder.rglob("*.py")


def test_trust_remote_code_is_off_by_default():
    recipe = Recipe.model_validate({"name": "x", "model": {"name_or_path": "tiny"}, "rewards": [{"name": "format"}]})
    assert recipe.model.trust_remote_code is False
    for path in (REPO / "recipes").glob("*.yaml"):
        assert load_recipe(path).model.trust_remote_code is False, path.name


def test_completions_are_not_logged_by_default():
    recipe = load_recipe("demo")
    assert recipe.logging.completions is False


def test_grpo_config_never_pushes_to_hub(tmp_path):
    from unirg.training.grpo import grpo_config

    config = grpo_config(load_recipe("demo"), tmp_path, [1.0, 1.0, 1.0])
    assert config.push_to_hub is False
    assert config.log_completions is False


def test_every_torch_load_uses_weights_only():
    offenders = []
    for path in _sources():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if re.search(r"torch\.load\(", line) and "weights_only=True" not in line:
                offenders.append(f"{path.relative_to(REPO)}:{number}")
    assert not offenders, f"torch.load without weights_only=True: {offenders}"


def test_no_push_to_hub_calls():
    offenders = [str(p.relative_to(REPO)) for p in _sources()
                 if re.search(r"\.push_to_hub\(|upload_folder\(|create_repo\(", p.read_text(encoding="utf-8"))]
    assert not offenders, offenders
