"""Reward plugins for report generation, their registry, and the adapter to TRL reward functions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rewards.adapter import TRLReward
from rewards.registry import PluginInfo, list_plugins
from unirg.errors import RewardError

__all__ = ["PluginInfo", "RewardError", "TRLReward", "build_reward_functions", "expand_presets", "fit_reward_corpus", "list_plugins"]


def _field(entry: Any, key: str, default: Any = None) -> Any:
    return entry.get(key, default) if isinstance(entry, dict) else getattr(entry, key, default)


def build_reward_functions(entries: Sequence[Any]) -> tuple[list[Callable], list[float]]:
    """TRL reward callables and their weights for a recipe's reward entries (name, weight, options).

    The same plugin listed twice gets a numbered name (`bleu2`, `bleu2_2`) so TRL logs them apart.
    """
    from rewards.registry import instantiate

    functions: list[Callable] = []
    weights: list[float] = []
    used: dict[str, int] = {}
    for entry, spec in expand_presets(entries):
        plugin = instantiate(spec, dict(_field(entry, "options", {}) or {}))
        base = getattr(plugin, "name", "") or getattr(plugin, "__name__", "") or spec.rpartition(":")[2]
        used[base] = used.get(base, 0) + 1
        name = base if used[base] == 1 else f"{base}_{used[base]}"
        functions.append(TRLReward(plugin, name, timeout_s=_field(entry, "timeout_s"),
                                   max_consecutive_failures=_field(entry, "max_consecutive_failures", 3)))
        weights.append(float(_field(entry, "weight", 1.0)))
    return functions, weights


def fit_reward_corpus(functions: Sequence[Callable], train_dataset: Any) -> None:
    """Give plugins that weigh text by corpus statistics (e.g. `cider_d`) the training split's references.

    Called before plugins move into Ray reward actors, so the fitted statistics travel with them.
    """
    fitted = [f.plugin for f in functions if hasattr(getattr(f, "plugin", None), "fit_corpus")]
    if fitted:
        references = list(train_dataset["reference"])
        for plugin in fitted:
            plugin.fit_corpus(references)


def expand_presets(entries: Sequence[Any]) -> list[tuple[Any, str]]:
    """(entry, plugin name) pairs with presets such as `unirg_step1` replaced by their weighted plugins.

    A preset's weights are multiplied by the entry's weight. Every plugin of a preset must resolve, or
    a RewardError names the preset and the missing plugin: a composite is never silently partial.
    """
    from rewards.registry import PRESETS, resolve

    expanded: list[tuple[Any, str]] = []
    for entry in entries:
        spec = _field(entry, "name")
        if spec not in PRESETS:
            expanded.append((entry, spec))
            continue
        scale = float(_field(entry, "weight", 1.0))
        for name, weight in PRESETS[spec]:
            try:
                resolve(name)
            except RewardError as error:
                raise RewardError(f"reward preset {spec!r} needs plugin {name!r}, which is not available: "
                                  f"{error}") from None
            expanded.append(({"name": name, "weight": weight * scale, "options": {},
                              "timeout_s": _field(entry, "timeout_s"),
                              "max_consecutive_failures": _field(entry, "max_consecutive_failures", 3)}, name))
    return expanded
