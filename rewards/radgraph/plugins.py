"""The RadGraph rewards: `radgraph_f1` (ReXrank's RadGraph, the RadCliQ input) and the radgraph package's
`radgraph_simple`, `radgraph_partial`, `radgraph_complete`.

All four share one loaded annotator per process (or Ray reward actor) and one reference cache, so
listing several variants in a recipe annotates each report once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from rewards.api import RewardOutput, RewardPlugin
from rewards.chexbert.plugins import resolve_device
from rewards.chexbert.weights import WeightFile, require
from rewards.radgraph.model import (
    DEFAULT_BATCH_SIZE,
    RadGraphAnnotator,
    RadGraphScorer,
    check_batch_size,
    model_files,
)

# One scorer per (model_type, model_path, device, lowercase, batch_size) in this process.
_SCORERS: dict[tuple[str, str, str, bool, int], RadGraphScorer] = {}


class RadGraphF1(RewardPlugin):
    """CXR-Report-Metric's RadGraph F1: mean of entity F1 and relation F1 of report against reference.

    Inputs: reports, references. Range [0, 1], higher is better; an empty report scores 0. ReXrank's
    "RadGraph" column and the RadCliQ-v1 input; UniRG step-1 weight 0.377. Sub-scores entity_f1 and
    relation_f1 are logged. Options: model_type (radgraph [default, the model RadCliQ was fit with],
    radgraph-xl, modern-radgraph-xl), model_path (archive or unpacked folder; default: the hub cache),
    device (auto: the GPU when visible), lowercase (False: radgraph 0.1.18's matching keys), batch_size
    (reports per model forward, default 16; 1 runs the radgraph package's one-at-a-time forward; the
    annotations are the same either way).
    """

    name = "radgraph_f1"
    # Ray reward actors host it with this share of a GPU when one exists (a BERT-base span model).
    resources = {"num_gpus": 0.25}

    def __init__(self, model_type: str = "radgraph", model_path: str | os.PathLike | None = None,
                 device: str = "auto", lowercase: bool = False, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.batch_size = check_batch_size(batch_size)
        require(model_files(model_type, model_path), self.name)
        self.model_type = model_type
        self.model_path = str(model_path) if model_path else None
        self.device = device
        self.lowercase = lowercase

    @staticmethod
    def weight_files(model_type: str = "radgraph", model_path: str | None = None, **_options) -> list[WeightFile]:
        """What `unirg check` lists for this reward."""
        return model_files(model_type, model_path)

    @property
    def scorer(self) -> RadGraphScorer:
        device = resolve_device(self.device)
        key = (self.model_type, self.model_path or "", device, self.lowercase, self.batch_size)
        if key not in _SCORERS:
            annotator = RadGraphAnnotator(self.model_type, self.model_path, device, batch_size=self.batch_size)
            _SCORERS[key] = RadGraphScorer(annotator, lowercase=self.lowercase)
        return _SCORERS[key]

    def setup(self) -> None:
        self.scorer  # noqa: B018 - loads the model now rather than inside the first timed score

    def score(self, reports: Sequence[str], references: Sequence[str]) -> RewardOutput:
        scores = self.scorer.score(list(reports), list(references))
        return RewardOutput([s.radgraph_f1 for s in scores],
                            {"entity_f1": [s.entity_f1 for s in scores],
                             "relation_f1": [s.relation_f1 for s in scores]})


class RadGraphSimple(RadGraphF1):
    """The radgraph package's *simple* reward: F1 of (entity tokens, label) sets. Options as radgraph_f1."""

    name = "radgraph_simple"
    variant = "simple"

    def score(self, reports: Sequence[str], references: Sequence[str]) -> list[float | None]:
        return [getattr(s, self.variant) for s in self.scorer.score(list(reports), list(references))]


class RadGraphPartial(RadGraphSimple):
    """The radgraph package's *partial* reward: entities also marked by whether they have a relation."""

    name = "radgraph_partial"
    variant = "partial"


class RadGraphComplete(RadGraphSimple):
    """The radgraph package's *complete* reward: one key per relation (type and target tokens)."""

    name = "radgraph_complete"
    variant = "complete"
