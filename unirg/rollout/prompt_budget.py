"""Refuse, before training, a recipe whose longest prompt plus completion cannot fit the vLLM context.

A Qwen-VL image becomes (height / (patch * merge)) * (width / (patch * merge)) tokens after the
processor rounds it to multiples of patch * merge within its pixel bounds; a full-size chest X-ray gives
thousands. vLLM rejects every prompt longer than `max_model_len` at the first step, so the budget is
checked once the data and the processor are known, naming the fields to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from unirg.errors import RecipeError


@dataclass(frozen=True)
class PromptBudget:
    """The worst case of one rollout request, in tokens."""

    text_tokens: int
    images: int
    tokens_per_image: int
    completion_tokens: int

    @property
    def total(self) -> int:
        return self.text_tokens + self.images * self.tokens_per_image + self.completion_tokens


def resized_grid(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """The (height, width) in pixels a Qwen-VL image processor resizes an image to: multiples of `factor`
    whose product lies within [min_pixels, max_pixels], keeping the aspect ratio."""
    rows = max(factor, round(height / factor) * factor)
    cols = max(factor, round(width / factor) * factor)
    if rows * cols > max_pixels:
        scale = math.sqrt(height * width / max_pixels)
        rows = max(factor, math.floor(height / scale / factor) * factor)
        cols = max(factor, math.floor(width / scale / factor) * factor)
    elif rows * cols < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))
        rows = math.ceil(height * scale / factor) * factor
        cols = math.ceil(width * scale / factor) * factor
    return rows, cols


def _processor_pixel_bounds(image_processor: Any) -> tuple[int, int]:
    size = getattr(image_processor, "size", None)

    def get(key: str) -> Any:
        return size.get(key) if isinstance(size, dict) else getattr(size, key, None)

    low = getattr(image_processor, "min_pixels", None) or get("min_pixels") or get("shortest_edge") or 56 * 56
    high = getattr(image_processor, "max_pixels", None) or get("max_pixels") or get("longest_edge") or 28 * 28 * 1280
    return int(low), int(high)


def tokens_per_image(image_processor: Any, pixels: int) -> int:
    """Image tokens of the largest square image of `pixels` pixels, after the processor's own bounds."""
    factor = int(image_processor.patch_size) * int(image_processor.merge_size)
    low, high = _processor_pixel_bounds(image_processor)
    side = max(1, math.isqrt(pixels))
    rows, cols = resized_grid(side, side, factor, low, min(high, max(pixels, low)))
    return (rows // factor) * (cols // factor)


def largest_pixels(data: Any, image_processor: Any) -> tuple[int, str]:
    """The most pixels one image can reach the processor with, and the recipe field that caps it."""
    image_size = getattr(data, "image_size", None)
    if image_size:
        side = image_size if isinstance(image_size, int) else max(image_size)
        return int(side) * int(side), "data.image_size"
    if getattr(data, "max_pixels", None):
        return int(data.max_pixels), "data.max_pixels"
    return _processor_pixel_bounds(image_processor)[1], "data.max_pixels (unset: the processor's own maximum)"


def prompt_budget(dataset, processor: Any, data: Any, max_new_tokens: int, sample: int = 2000) -> tuple[PromptBudget, str]:
    """The worst-case request over (up to `sample`) prompts of `dataset`, and the field capping image size."""
    tokenizer = getattr(processor, "tokenizer", processor)
    pixels, field = largest_pixels(data, processor.image_processor)
    per_image = tokens_per_image(processor.image_processor, pixels)
    from datasets import Image, Sequence

    count = min(len(dataset), sample)
    # Prompt text and image paths only: reading whole rows would decode every image.
    prompts = dataset.select_columns(["prompt"]).select(range(count))
    image_lists = dataset.select_columns(["images"]).select(range(count)).cast_column(
        "images", Sequence(Image(decode=False)))["images"]
    text_tokens = 0
    for row in prompts:
        rendered = processor.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        text_tokens = max(text_tokens, len(tokenizer(rendered, add_special_tokens=False)["input_ids"]))
    images = max((len(found or []) for found in image_lists), default=0)
    # TRL adds each image to the prompt as start, pad and end markers; the pad becomes the image's tokens.
    text_tokens += images * 2
    return PromptBudget(text_tokens, images, per_image, max_new_tokens), field


def check_prompt_budget(dataset, processor: Any, data: Any, rollout: Any) -> PromptBudget | None:
    """Raise a RecipeError naming both fields when the worst prompt + completion exceeds `rollout.max_model_len`."""
    if rollout.backend == "hf" or rollout.max_model_len is None or len(dataset) == 0:
        return None
    budget, field = prompt_budget(dataset, processor, data, rollout.max_new_tokens)
    if budget.total > rollout.max_model_len:
        raise RecipeError(
            f"rollout.max_model_len: {rollout.max_model_len} tokens cannot hold the longest request: "
            f"{budget.text_tokens} text + {budget.images} image(s) x {budget.tokens_per_image} tokens + "
            f"{budget.completion_tokens} completion (rollout.max_new_tokens) = {budget.total}. Raise "
            f"rollout.max_model_len to at least {budget.total}, or cap the image size with {field} "
            "(e.g. data.image_size: 512 gives a few hundred tokens per image).")
    return budget
