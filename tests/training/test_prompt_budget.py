"""The image-token budget: a recipe whose prompts cannot fit vLLM's context stops before training, naming
rollout.max_model_len and the field that caps image size."""

from __future__ import annotations

import pytest

from unirg.errors import RecipeError
from unirg.recipe import load_recipe
from unirg.rollout.prompt_budget import check_prompt_budget, resized_grid, tokens_per_image


@pytest.mark.parametrize("size, expected", [((512, 512), (504, 504)), ((3000, 2500), (1120, 924)),
                                            ((20, 20), (56, 56))])
def test_resized_grid_matches_the_processor_rule(size, expected):
    rows, cols = resized_grid(*size, factor=28, min_pixels=56 * 56, max_pixels=1024 * 1024 + 1)
    assert rows % 28 == 0 and cols % 28 == 0
    assert (rows, cols) == expected


class _ImageProcessor:
    patch_size, merge_size, min_pixels, max_pixels = 14, 2, 56 * 56, 28 * 28 * 16384


def test_tokens_per_image_grows_with_the_pixel_cap():
    assert tokens_per_image(_ImageProcessor(), 512 * 512) == 18 * 18
    # A full-size 3000x3000 chest X-ray: thousands of tokens.
    assert tokens_per_image(_ImageProcessor(), 3000 * 3000) > 8000


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from unirg.data import load_splits
    from unirg.models.loading import load_processor, resolve_model_path

    work = tmp_path_factory.mktemp("budget")
    recipe = load_recipe("demo", ["data.synthetic.n_train=8", "data.synthetic.n_eval=0"])
    splits = load_splits(recipe.data, recipe.prompt, work)
    processor = load_processor(resolve_model_path(recipe.model, work, corpus=list(splits.train["reference"])))
    return splits.train, processor


def test_recipe_that_cannot_fit_stops_naming_both_fields(tiny):
    dataset, processor = tiny
    recipe = load_recipe("demo", ["rollout.backend=vllm_ray", "rollout.max_model_len=64", "data.max_pixels=50000"])
    with pytest.raises(RecipeError) as error:
        check_prompt_budget(dataset, processor, recipe.data, recipe.rollout)
    message = str(error.value)
    assert "rollout.max_model_len" in message and ("data.image_size" in message or "data.max_pixels" in message)


def test_recipe_that_fits_passes_and_counts_image_tokens(tiny):
    dataset, processor = tiny
    recipe = load_recipe("demo", ["rollout.backend=vllm_ray", "rollout.max_model_len=4096"])
    budget = check_prompt_budget(dataset, processor, recipe.data, recipe.rollout)
    assert budget is not None and budget.images == 1 and budget.total <= 4096
    row = dataset[0]
    # As TRL builds a multimodal prompt: one image entry per image, then the text.
    messages = [{"role": turn["role"], "content": [*({"type": "image"} for _ in row["images"]),
                                                   {"type": "text", "text": turn["content"]}]}
                for turn in row["prompt"]]
    encoded = processor.apply_chat_template(messages, images=row["images"], tokenize=True,
                                            add_generation_prompt=True, return_dict=True)
    ids = list(encoded["input_ids"][0])
    actual_pads = ids.count(processor.image_token_id)
    # The synthetic images are no larger than the processor cap, so the worst case bounds the real count.
    assert 0 < actual_pads <= budget.tokens_per_image
    assert len(ids) <= budget.total - budget.completion_tokens
