"""neg_radcliq as a training reward: -RadCliQ-v1 from its sub-score plugins, through the TRL adapter.

Stand-in sub-score plugins (fixed scores, counted set-ups) keep this free of model weights; the plugins
themselves are tested on tiny weights elsewhere.
"""

from __future__ import annotations

import pickle

import pytest

import rewards.registry
from rewards import build_reward_functions
from rewards.lexical import bleu2
from rewards.radcliq import NegativeRadCliQ, radcliq_v1


class Fixed:
    setups = 0

    def __init__(self, value, options):
        self.value, self.options = value, options

    def setup(self):
        Fixed.setups += 1

    def score(self, reports, references):
        return [self.value if r else None for r in reports]


@pytest.fixture
def fakes(monkeypatch):
    real = rewards.registry.instantiate
    made: dict = {}
    values = {"radgraph_f1": 0.3, "bertscore": 0.5, "semb_score": 0.7}

    def instantiate(name, options):
        if name in values:
            made[name] = Fixed(values[name], options)
            return made[name]
        return real(name, options)

    Fixed.setups = 0
    monkeypatch.setattr(rewards.registry, "instantiate", instantiate)
    return made


def test_training_reward_computes_sub_scores_from_plugins(fakes):
    options = {"radgraph_f1": {"model_path": "/models/radgraph.tar.gz"}}
    functions, _ = build_reward_functions([{"name": "neg_radcliq", "options": options}])
    reward = functions[0]
    completions = ["Findings: Mild cardiomegaly. Impression: Cardiomegaly.", "Findings: Clear lungs.", ""]
    references = ["Mild cardiomegaly.", "Mild cardiomegaly.", "Mild cardiomegaly."]
    got = reward(completions, reference=references)
    # The adapter hands over the report text (headers parsed out); BLEU-2 is computed on it.
    from unirg.prompts.parser import parse_completion

    parsed = [parse_completion(c).report for c in completions]
    expected = [-radcliq_v1(0.3, 0.5, 0.7, b) for b in bleu2(parsed[:2], references[:2])]
    assert got[:2] == [pytest.approx(e) for e in expected]
    assert got[2] is None  # an empty report gets no sub-scores from the model plugins
    assert fakes["radgraph_f1"].options == options["radgraph_f1"]
    reward(completions, reference=references)
    assert Fixed.setups == 3  # each sub-score plugin loaded once, not per call


def test_sub_score_columns_still_win_and_pickling_drops_models(fakes):
    plugin = NegativeRadCliQ()
    assert plugin.score(radgraph=[1.0], bertscore=[1.0], semb_score=[1.0], bleu2=[1.0], reports=["x"],
                        references=["y"]) == [pytest.approx(1.4406902828047017)]
    assert Fixed.setups == 0
    plugin.score(reports=["Clear lungs."], references=["Clear lungs."])
    assert Fixed.setups == 3
    clone = pickle.loads(pickle.dumps(plugin))
    assert clone._plugins == {}


def test_missing_inputs_are_named():
    with pytest.raises(ValueError, match="reports and references"):
        NegativeRadCliQ().score(radgraph=[1.0])
