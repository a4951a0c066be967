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

INF = float("inf")


@dataclass(frozen=True)
class PluginInfo:
    """What `unirg` can say about a plugin without importing it."""

    name: str
    description: str
    higher_is_better: bool = True
    range: tuple[float, float] = (0.0, 1.0)
    inputs: tuple[str, ...] = ("reports", "references")
    target: str = ""  # lazy "module:attr"
    origin: str = "builtin"  # or "entry point (<distribution>)"


def _builtin(name: str, target: str, description: str, low: float = 0.0, high: float = 1.0,
             inputs: tuple[str, ...] = ("reports", "references"), higher_is_better: bool = True) -> PluginInfo:
    return PluginInfo(name, description, higher_is_better, (low, high), inputs, target)


# Built-ins as lazy "module:attr" strings with their metadata, so listing them imports no model code.
_BUILTIN_INFOS = (
    _builtin("chexpert_f1", "rewards.clinical:CheXpertF1", "F1 of the rule-based CheXpert-14 labels vs the reference",
             inputs=("reports", "references", "reference_labels")),
    _builtin("consistency", "rewards.clinical:consistency",
             "findings asserted in the <think> block agree with the report", inputs=("reasoning", "reports")),
    _builtin("bleu2", "rewards.lexical:bleu2", "BLEU-2 exactly as ReXrank"),
    _builtin("cider_d", "rewards.cider:CIDErD", "CIDEr-D with training-corpus document frequencies: pays for "
             "study-specific n-grams, little for boilerplate", 0.0, 10.0),
    _builtin("bleu4", "rewards.lexical:bleu4", "sentence BLEU-4, ReXrank tokenization, smoothing method 1"),
    _builtin("rouge_l", "rewards.lexical:rouge_l", "ROUGE-L F1 (rouge-score, Porter stemming)"),
    _builtin("format", "rewards.format:Format", "required sections (and <think> block) present, in order, non-empty",
             inputs=("parsed", "sections")),
    _builtin("length", "rewards.format:Length", "soft penalty outside a length range relative to the reference",
             -1.0, 0.0),
    _builtin("repetition", "rewards.format:Repetition", "penalty for repeated n-grams inside a report", -1.0, 0.0,
             inputs=("reports",)),
    _builtin("duplicate_rate", "rewards.format:DuplicateRate",
             "monitor of identical reports in a batch; optional penalty", -1.0, 0.0, inputs=("reports",)),
    _builtin("finding_attributes", "rewards.attributes:FindingAttributes", "share of the reference findings' side, "
             "zone and severity the report states alike (offline labeler)"),
    _builtin("distinctness", "rewards.diversity:Distinctness", "1 - highest word-bigram overlap with a completion of "
             "another study in the batch: a group diversity term against boilerplate", inputs=("reports", "study_id")),
    _builtin("bertscore", "rewards.bertscore:BERTScore", "BERTScore F1 (ReXrank: distilroberta-base, layer 5, "
             "rescaled); needs model weights", -INF, 1.0),
    _builtin("neg_radcliq", "rewards.radcliq:NegativeRadCliQ", "-RadCliQ-v1 (or v0): its four sub-scores computed "
             "by their plugins (or read from columns); needs weights", -INF, INF),
    _builtin("semb_score", "rewards.chexbert.plugins:SembScore", "cosine of CheXbert embeddings; needs weights",
             -1.0, 1.0),
    _builtin("chexbert_f1", "rewards.chexbert.plugins:CheXbertF1", "F1 of CheXbert labels; needs weights"),
    _builtin("radgraph_f1", "rewards.radgraph.plugins:RadGraphF1", "RadGraph entity/relation F1; needs weights"),
    _builtin("radgraph_simple", "rewards.radgraph.plugins:RadGraphSimple", "RadGraph reward (simple)"),
    _builtin("radgraph_partial", "rewards.radgraph.plugins:RadGraphPartial", "RadGraph reward (partial)"),
    _builtin("radgraph_complete", "rewards.radgraph.plugins:RadGraphComplete", "RadGraph reward (complete)"),
    _builtin("ratescore", "rewards.ratescore:RaTEScoreReward", "RaTEScore; needs the ratescore extra"),
    _builtin("llm_errors", "rewards.llm_judge:LLMErrors", "1/(errors+1) from an LLM judge"),
    _builtin("labeler_errors", "rewards.label_errors:LabelerErrors",
             "1/(errors+1), errors = CheXpert-label disagreements with the reference (offline)",
             inputs=("reports", "references", "reference_labels")),
)
BUILTINS: dict[str, str] = {info.name: info.target for info in _BUILTIN_INFOS}

# Presets: one recipe name that expands to weighted entries.
PRESETS: dict[str, tuple[tuple[str, float], ...]] = {
    # UniRG step 1: the RadCliQ-v1 coefficients on BLEU-2 / BERTScore / SembScore / RadGraph-F1.
    "unirg_step1": (("bleu2", 0.0), ("bertscore", 0.370), ("semb_score", 0.253), ("radgraph_f1", 0.377)),
}


def list_plugins() -> list[PluginInfo]:
    """Every plugin known by name: built-ins, then installed entry points (not imported)."""
    infos = list(_BUILTIN_INFOS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        infos.append(PluginInfo(ep.name, "(entry point)", target=ep.value,
                                origin=f"entry point ({ep.dist.name if ep.dist else '?'})"))
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
    known = [info.name for info in list_plugins()] + list(PRESETS)
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
