"""RadGraphScorer annotates each distinct text once: duplicates in a call and texts seen before are not re-run.

A counting stand-in annotator is used, so this runs without the radgraph package or weights.
"""

from __future__ import annotations

from rewards.radgraph.model import RadGraphScorer


class CountingAnnotator:
    """Marks every word as an anatomy entity; records each batch it is asked to annotate."""

    def __init__(self):
        self.batches: list[list[str]] = []

    def annotate(self, reports):
        self.batches.append(list(reports))
        return [{"text": r, "entities": {str(i): {"tokens": w, "label": "ANAT-DP", "start_ix": i, "end_ix": i,
                                                  "relations": []} for i, w in enumerate(r.split())}}
                for r in reports]


def test_grpo_group_is_annotated_once_per_distinct_text():
    annotator = CountingAnnotator()
    scorer = RadGraphScorer(annotator)
    group = ["mild edema", "mild edema", "clear lungs", "mild edema"]
    scores = scorer.score(group, ["mild edema"] * 4)
    assert annotator.batches == [["mild edema"], ["mild edema", "clear lungs"]]  # references, then reports
    assert [s.entity_f1 for s in scores] == [1.0, 1.0, 0.0, 1.0]
    scorer.score(["clear lungs", "mild edema"], ["mild edema", "mild edema"])
    assert len(annotator.batches) == 2  # everything cached: the model is not called


def test_cache_is_bounded_and_evicts_the_oldest():
    annotator = CountingAnnotator()
    scorer = RadGraphScorer(annotator, cache_size=2)
    scorer.score(["a", "b", "c"], ["r", "r", "r"])
    scorer.score(["a"], ["r"])  # "a" was evicted (only b, c kept): annotated again
    assert annotator.batches[-1] == ["a"]
