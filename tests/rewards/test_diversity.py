"""The distinctness reward scores overlap with other studies' completions only, with hand-computed values."""

from __future__ import annotations

import pytest

from rewards.diversity import Distinctness, jaccard, word_ngrams
from rewards.registry import instantiate

BOILERPLATE = "No pleural effusion. No pneumothorax."


def test_same_report_for_two_studies_scores_zero_and_a_distinct_one_scores_higher():
    reports = [BOILERPLATE, BOILERPLATE, "Large left pleural effusion."]
    out = Distinctness().score(reports, study_id=["a", "b", "c"])
    assert out.scores[:2] == [0.0, 0.0]
    # Bigrams {large left, left pleural, pleural effusion.} vs the boilerplate's four: one shared of six.
    assert out.scores[2] == pytest.approx(1 - 1 / 6)
    assert out.parts["max_similarity"][2] == pytest.approx(1 / 6)


def test_samples_of_the_same_study_are_not_compared():
    out = Distinctness().score([BOILERPLATE, BOILERPLATE, BOILERPLATE], study_id=["a", "a", "a"])
    assert out.scores == [1.0, 1.0, 1.0]
    mixed = Distinctness().score([BOILERPLATE, BOILERPLATE, "Cardiomegaly."], study_id=["a", "a", "b"])
    assert mixed.scores == [1.0, 1.0, 1.0]


def test_ngram_order_and_edge_cases():
    assert word_ngrams("", 2) == frozenset()
    assert word_ngrams("Cardiomegaly.", 2) == frozenset([("cardiomegaly.",)])
    assert jaccard(frozenset(), frozenset()) == 1.0
    unigram = Distinctness(n=1).score(["a b c", "a b d"], study_id=["x", "y"])
    assert unigram.scores == [pytest.approx(0.5), pytest.approx(0.5)]
    with pytest.raises(ValueError, match="n must be at least 1"):
        Distinctness(n=0)


def test_listed_in_a_recipe_by_name():
    plugin = instantiate("distinctness", {"n": 3})
    assert isinstance(plugin, Distinctness) and plugin.n == 3
