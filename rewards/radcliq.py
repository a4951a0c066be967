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


# Sub-score → the reward plugin computing it per report (RadCliQ's "radgraph" is radgraph_f1's combined F1).
SUB_PLUGINS = {"radgraph": "radgraph_f1", "bertscore": "bertscore", "semb_score": "semb_score"}


class NegativeRadCliQ(RewardPlugin):
    """-RadCliQ-v1 (or -v0) per completion (higher is better): the leaderboard's objective as a reward.

    Inputs: reports, references. The four sub-scores come from the dataset's columns `radgraph`,
    `bertscore`, `semb_score`, `bleu2` when all four are there (sub-scores computed beforehand); otherwise
    the plugin computes them itself during training: BLEU-2 here, and the `radgraph_f1`, `bertscore`
    and `semb_score` plugins, each loaded once, with their options given under the option of the same
    name (e.g. `options: {radgraph_f1: {model_path: /models/radgraph.tar.gz}}`). None where any sub-score
    is missing. Range about [-10, 1.5]; a perfect report scores 1.44069 with v1. Option `version` 1
    (default) or 0. Never 1/RadCliQ: it has a pole where RadCliQ crosses 0.
    """

    name = "neg_radcliq"
    value_range = (-math.inf, math.inf)
    # Hosts BERTScore, CheXbert and RadGraph in one reward actor when it computes the sub-scores itself.
    resources = {"num_gpus": 0.5}

    def __init__(self, version: int = 1, radgraph_f1: dict | None = None, bertscore: dict | None = None,
                 semb_score: dict | None = None):
        if version not in (0, 1):
            raise ValueError("neg_radcliq: option 'version' must be 1 or 0")
        self.version = version
        self.sub_options = {"radgraph_f1": dict(radgraph_f1 or {}), "bertscore": dict(bertscore or {}),
                            "semb_score": dict(semb_score or {})}
        self._plugins: dict[str, Any] = {}

    @staticmethod
    def weight_files(radgraph_f1: dict | None = None, bertscore: dict | None = None, semb_score: dict | None = None,
                     **_options) -> list:
        """Every file of the three model-based sub-scores (what `unirg check` lists)."""
        from rewards.weight_check import reward_weight_files

        options = {"radgraph_f1": radgraph_f1, "bertscore": bertscore, "semb_score": semb_score}
        return [f for plugin in SUB_PLUGINS.values() for f in reward_weight_files(plugin, options[plugin] or {})]

    def __getstate__(self) -> dict:
        # Shipped to a Ray reward actor without loaded models; they are loaded there on first use.
        return {**self.__dict__, "_plugins": {}}

    def _plugin(self, name: str):
        if name not in self._plugins:
            from rewards.registry import instantiate

            plugin = instantiate(name, self.sub_options[name])
            getattr(plugin, "setup", lambda: None)()
            self._plugins[name] = plugin
        return self._plugins[name]

    def _sub_scores(self, reports: Sequence[str], references: Sequence[str]) -> dict[str, list]:
        from rewards.lexical import bleu2

        columns: dict[str, list] = {"bleu2": bleu2(reports, references)}
        for feature, plugin in SUB_PLUGINS.items():
            output = self._plugin(plugin).score(reports=list(reports), references=list(references))
            columns[feature] = list(getattr(output, "scores", output))
        return columns

    def score(self, radgraph: Sequence | None = None, bertscore: Sequence | None = None,
              semb_score: Sequence | None = None, bleu2: Sequence | None = None,
              reports: Sequence[str] | None = None, references: Sequence[str] | None = None,
              **_columns: Any) -> list[float | None]:
        given = {"radgraph": radgraph, "bertscore": bertscore, "semb_score": semb_score, "bleu2": bleu2}
        if all(values is not None for values in given.values()):
            subs = given
        elif reports is None or references is None:
            raise ValueError("neg_radcliq needs reports and references, or all four sub-score columns "
                             f"({', '.join(FEATURES)})")
        else:
            subs = self._sub_scores(reports, references)
        formula = radcliq_v1 if self.version == 1 else radcliq_v0
        scores: list[float | None] = []
        for values in zip(*(subs[feature] for feature in FEATURES), strict=True):
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
