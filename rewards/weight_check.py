"""Which model-weight files a recipe's rewards need, and whether each is on this machine (nothing is loaded)."""

from __future__ import annotations

from typing import Any


def reward_weight_files(name: str, options: dict[str, Any]) -> list:
    """The weight files (rewards.chexbert.weights.WeightFile) a reward needs; [] for one without weights.

    A plugin lists its files through an optional `weight_files(**options)`; the plugin is only looked
    up, never built, so nothing is loaded.
    """
    from rewards.registry import resolve

    plugin = resolve(name)
    weight_files = getattr(plugin, "weight_files", None)
    return list(weight_files(**options)) if weight_files else []


def missing_weights(recipe) -> list[str]:
    """One line per missing file of the recipe's rewards ('<reward>: <what> …'), empty when all are present."""
    lines = []
    for entry in recipe.rewards:
        lines += [f"{entry.name}: {f.describe().removeprefix('MISSING  ')}"
                  for f in reward_weight_files(entry.name, entry.options) if not f.present]
    return lines


def require_recipe_weights(recipe) -> None:
    """Raise one RewardError listing every missing weight file of the recipe's rewards (call before any stage)."""
    from unirg.errors import RewardError

    missing = missing_weights(recipe)
    if missing:
        lines = "\n".join(f"  - {line}" for line in missing)
        raise RewardError(f"recipe '{recipe.name}' needs model weights that are not on this machine:\n{lines}\n"
                          "See docs/model_weights.md; `unirg check --recipe <recipe>` lists them again.")
