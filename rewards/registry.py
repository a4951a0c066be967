"""Find reward plugins: built-in name, entry point (group `unirg.rewards`), `pkg.mod:obj` or `file.py:obj`."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from unirg.errors import RewardError

ENTRY_POINT_GROUP = "unirg.rewards"

# Built-ins as lazy "module:attr" strings, so listing them imports no model code.
BUILTINS: dict[str, str] = {
    "chexpert_f1": "rewards.clinical:CheXpertF1",
    "consistency": "rewards.clinical:consistency",
    "bleu2": "rewards.lexical:bleu2",
    "bleu4": "rewards.lexical:bleu4",
    "rouge_l": "rewards.lexical:rouge_l",
    "format": "rewards.format:Format",
    "length": "rewards.format:Length",
    "repetition": "rewards.format:Repetition",
    "duplicate_rate": "rewards.format:DuplicateRate",
    "semb_score": "rewards.chexbert.plugins:SembScore",
    "chexbert_f1": "rewards.chexbert.plugins:CheXbertF1",
    "radgraph_f1": "rewards.radgraph.plugins:RadGraphF1",
    "radgraph_simple": "rewards.radgraph.plugins:RadGraphSimple",
    "radgraph_partial": "rewards.radgraph.plugins:RadGraphPartial",
    "radgraph_complete": "rewards.radgraph.plugins:RadGraphComplete",
    "ratescore": "rewards.ratescore:RaTEScoreReward",
    "llm_errors": "rewards.llm_judge:LLMErrors",
}


@dataclass(frozen=True)
class PluginInfo:
    """What `unirg` can say about a plugin without loading it."""

    name: str
    target: str
    origin: str  # builtin or entry point


def list_plugins() -> list[PluginInfo]:
    """Every plugin known by name: built-ins, then installed entry points."""
    infos = [PluginInfo(name, target, "builtin") for name, target in BUILTINS.items()]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        infos.append(PluginInfo(ep.name, ep.value, f"entry point ({ep.dist.name if ep.dist else '?'})"))
    return infos


def _import_target(target: str, spec: str) -> Any:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise RewardError(f"reward {spec!r}: cannot import {module_name} ({error})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise RewardError(f"reward {spec!r}: {module_name} has no attribute {attr!r}") from None


def _load_file(spec: str) -> Any:
    path_text, _, attr = spec.rpartition(":")
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise RewardError(f"reward {spec!r}: file not found: {path}")
    module_name = f"unirg_reward_file_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    # Registered before running so pickling (Ray actors) can find the module's classes again.
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as error:  # a user's file: report any failure with its origin
        raise RewardError(f"reward {spec!r}: importing {path} failed: {type(error).__name__}: {error}") from None
    if not hasattr(module, attr):
        raise RewardError(f"reward {spec!r}: {path} defines no {attr!r}")
    return getattr(module, attr)


def resolve(spec: str) -> Any:
    """The plugin object (function or class) a recipe's reward name refers to."""
    if spec in BUILTINS:
        return _import_target(BUILTINS[spec], spec)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == spec:
            return ep.load()
    if ":" in spec:
        target = spec.rpartition(":")[0]
        if target.endswith(".py") or "/" in target:
            return _load_file(spec)
        return _import_target(spec, spec)
    known = [info.name for info in list_plugins()]
    close = difflib.get_close_matches(spec, known, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise RewardError(f"unknown reward {spec!r}{hint} Known: {', '.join(known)}; or give 'pkg.module:name' "
                      "or 'path/to/file.py:name'")


def instantiate(spec: str, options: dict[str, Any]) -> Any:
    """A ready plugin: classes are constructed with the options; functions must take none."""
    target = resolve(spec)
    if isinstance(target, type):
        try:
            return target(**options)
        except TypeError as error:
            raise RewardError(f"reward {spec!r}: bad options {options}: {error}") from None
    if options:
        raise RewardError(f"reward {spec!r} is a function and takes no options (got {sorted(options)}); "
                          "write a class with an __init__ to accept options")
    return target
