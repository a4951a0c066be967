"""RadGraph reward layer against the reference values derived from published RadGraph-XL annotations."""

from __future__ import annotations

import json

import pytest
from tiny_weights import oracle

from rewards.radgraph.scores import radgraph_scores, set_f1


@pytest.fixture(scope="module")
def derived():
    return json.loads(oracle("radgraph/radgraph_reward_from_published_annotations.json").read_text())


def test_all_81_pairs_match_the_reference(derived):
    annotations = [item["annotation"] for item in derived["annotations"]]
    assert len(derived["pairs"]) == 81
    for pair in derived["pairs"]:
        hyp, ref = annotations[pair["hyp_index"]], annotations[pair["ref_index"]]
        where = f"pair hyp={pair['hyp_index']} ref={pair['ref_index']}"
        released = radgraph_scores(hyp, ref)
        assert [released.simple, released.partial, released.complete] == pytest.approx(
            pair["radgraph_0.1.18_simple_partial_complete"], abs=1e-12), where
        head = radgraph_scores(hyp, ref, lowercase=True)
        assert [head.simple, head.partial, head.complete] == pytest.approx(
            pair["radgraph_HEAD_lowercased_simple_partial_complete"], abs=1e-12), where
        assert released.entity_f1 == pytest.approx(pair["cxr_report_metric_entity_f1"], abs=1e-12), where
        assert released.relation_f1 == pytest.approx(pair["cxr_report_metric_relation_f1"], abs=1e-12), where
        assert released.radgraph_f1 == pytest.approx(pair["cxr_report_metric_radgraph_combined"], abs=1e-12), where


def test_empty_annotation_scores_zero():
    ref = {"entities": {"1": {"tokens": "effusion", "label": "Observation::definitely absent", "relations": []}}}
    scores = radgraph_scores({"entities": {}}, ref)
    assert (scores.simple, scores.partial, scores.complete, scores.radgraph_f1) == (0.0, 0.0, 0.0, 0.0)


def test_set_f1_table():
    assert set_f1({1, 2}, {2, 3}) == pytest.approx(0.5)
    assert set_f1(set(), set()) == 0.0
    assert set_f1({1}, {1}) == 1.0
