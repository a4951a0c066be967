"""CheXbert-F1 aggregation (rewards.clinical, shared with the rule-based labeler) against f1chexbert's numbers."""

from __future__ import annotations

import json

import pytest
from tiny_weights import oracle

from rewards.chexbert.model import CONDITIONS, TOP5
from rewards.chexbert.plugins import chexbert_corpus_f1


def test_micro_macro_14_and_5_match_f1chexbert():
    data = json.loads(oracle("f1_aggregation/f1chexbert_aggregation_expected.json").read_text())
    labels = data["binary_labels"]
    assert tuple(labels["target_names"]) == CONDITIONS and set(labels["top5"]) == set(TOP5)
    table = chexbert_corpus_f1(labels["hyp_labels_rrg"], labels["ref_labels_rrg"])
    expected = data["expected_f1"]
    assert table["micro_14"] == pytest.approx(expected["all14"]["micro"], abs=1e-12)
    assert table["macro_14"] == pytest.approx(expected["all14"]["macro"], abs=1e-12)
    assert table["micro_5"] == pytest.approx(expected["top5"]["micro"], abs=1e-12)
    assert table["macro_5"] == pytest.approx(expected["top5"]["macro"], abs=1e-12)


def test_uncertain_counts_as_positive():
    hypotheses = [[-1] + [None] * 13]
    references = [[1] + [None] * 13]
    assert chexbert_corpus_f1(hypotheses, references)["micro_14"] == 1.0
