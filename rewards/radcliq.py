"""RadCliQ (v1 and v0) from its four inputs, the -RadCliQ reward, and the UniRG step-1 reward entries.

Constants copied from rajpurkarlab/CXR-Report-Metric @9c9ecad (CXRMetric/radcliq-v1.pkl, normalizer.pkl,
composite_metric_model.pkl, decoded; MIT licence): a StandardScaler and a linear model over the features
[radgraph_combined, bertscore, semb_score, bleu2]. Lower RadCliQ is better; a perfect report has
v1 = -1.44069. As a reward use -RadCliQ, never 1/RadCliQ (it has a pole where RadCliQ crosses 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rewards.api import RewardPlugin

FEATURES = ("radgraph", "bertscore", "semb_score", "bleu2")

V1_MEAN = (0.5379231241355762, 0.6175725628125001, 0.7647942121140658, 0.44738335396242174)
V1_SCALE = (0.3028258411486429, 0.22430938459304575, 0.2539439110169773, 0.2989271671041838)
V1_COEF = (-0.37708368261038905, -0.37030009974480316, -0.25261621789593225, 4.315048405024756e-12)
V1_INTERCEPT = 2.466552561323256e-10

V0_MEAN = (0.5398376019082272, 0.6312549595000001, 0.7716797866672277, 0.4607372064809605)
V0_SCALE = (0.3018344440559102, 0.22466950746141123, 0.24750333805236252, 0.30336670936092264)
V0_COEF = (-0.4796252644863446, -0.6762170542369337, -0.46366575161751994, 0.2165861905287535)
V0_INTERCEPT = 1.641666666666666


def _affine(values: Sequence[float], mean, scale, coef, intercept) -> float:
    return sum(c * (x - m) / s for x, m, s, c in zip(values, mean, scale, coef, strict=True)) + intercept


def radcliq_v1(radgraph: float, bertscore: float, semb_score: float, bleu2: float) -> float:
    """RadCliQ-v1 (lower is better). radgraph = mean of RadGraph entity and relation F1 ("combined")."""
    return _affine((radgraph, bertscore, semb_score, bleu2), V1_MEAN, V1_SCALE, V1_COEF, V1_INTERCEPT)


def radcliq_v0(radgraph: float, bertscore: float, semb_score: float, bleu2: float) -> float:
    """RadCliQ-v0 (lower is better), the first published version."""
    return _affine((radgraph, bertscore, semb_score, bleu2), V0_MEAN, V0_SCALE, V0_COEF, V0_INTERCEPT)


class NegativeRadCliQ(RewardPlugin):
    """-RadCliQ-v1 (or -v0) per completion from its four sub-scores (higher is better).

    Inputs: radgraph, bertscore, semb_score, bleu2 (columns with one sub-score per completion, e.g.
    computed upstream or stored with predictions). None where any sub-score is missing. Range about
    [-10, 1.5]; a perfect report scores 1.44069 with v1. Option `version` 1 (default) or 0. Never
    1/RadCliQ: it has a pole where RadCliQ crosses 0.
    """

    name = "neg_radcliq"
    value_range = (-math.inf, math.inf)

    def __init__(self, version: int = 1):
        if version not in (0, 1):
            raise ValueError("neg_radcliq: option 'version' must be 1 or 0")
        self.version = version

    def score(self, radgraph: Sequence, bertscore: Sequence, semb_score: Sequence,
              bleu2: Sequence) -> list[float | None]:
        formula = radcliq_v1 if self.version == 1 else radcliq_v0
        scores: list[float | None] = []
        for values in zip(radgraph, bertscore, semb_score, bleu2, strict=True):
            if any(v is None or not math.isfinite(float(v)) for v in values):
                scores.append(None)
            else:
                scores.append(-formula(*(float(v) for v in values)))
        return scores


def unirg_step1() -> list[dict[str, Any]]:
    """UniRG step-1 reward entries: weights 0 / 0.370 / 0.253 / 0.377 on BLEU-2 / BERTScore / SembScore /
    RadGraph-F1 (RadCliQ-v1's coefficients; BLEU-2 is logged, not optimised). The same table is the
    registry's preset `unirg_step1`, which a recipe lists as `- name: unirg_step1`."""
    from rewards.registry import PRESETS

    return [{"name": name, "weight": weight} for name, weight in PRESETS["unirg_step1"]]
