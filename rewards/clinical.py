"""Clinical rewards from the rule-based labeler: per-report CheXpert F1, reasoning/report consistency, corpus F1."""

from __future__ import annotations

from collections.abc import Sequence

from rewards.api import RewardPlugin
from rewards.labeler import OBSERVATIONS, TOP5, label_report

TOP5_INDICES = [OBSERVATIONS.index(name) for name in TOP5]


def positives(labels: Sequence[int | None], uncertain_as_positive: bool = True,
              indices: Sequence[int] | None = None) -> list[int]:
    """Binary vector: 1 for positive (and uncertain, by default), 0 for negative or not mentioned."""
    hot = (1, -1) if uncertain_as_positive else (1,)
    chosen = indices if indices is not None else range(len(labels))
    return [1 if labels[i] in hot else 0 for i in chosen]


def sample_f1(hypothesis: Sequence[int], reference: Sequence[int]) -> float:
    """F1 between two binary vectors; 1.0 when neither has a positive (agreeing on a normal study)."""
    shared = sum(1 for h, r in zip(hypothesis, reference, strict=True) if h and r)
    total = sum(hypothesis) + sum(reference)
    return 1.0 if total == 0 else 2 * shared / total


def corpus_f1(hypotheses: Sequence[Sequence[int]], references: Sequence[Sequence[int]]) -> dict[str, float]:
    """Micro and macro F1 over binary label vectors, as sklearn's classification_report (zero_division=0)."""
    n_labels = len(references[0]) if references else 0
    tp = [0] * n_labels
    fp = [0] * n_labels
    fn = [0] * n_labels
    for hyp, ref in zip(hypotheses, references, strict=True):
        for i, (h, r) in enumerate(zip(hyp, ref, strict=True)):
            tp[i] += bool(h and r)
            fp[i] += bool(h and not r)
            fn[i] += bool(r and not h)

    def f1(t: int, p: int, n: int) -> float:
        return 0.0 if 2 * t + p + n == 0 else 2 * t / (2 * t + p + n)

    per_label = [f1(tp[i], fp[i], fn[i]) for i in range(n_labels)]
    return {"micro": f1(sum(tp), sum(fp), sum(fn)), "macro": sum(per_label) / n_labels if n_labels else 0.0}


def reference_labels_for(references: Sequence[str], reference_labels: Sequence | None) -> list[Sequence]:
    """Known reference labels where the dataset has them, else the labeler's labels of the reference text."""
    known = reference_labels or [None] * len(references)
    return [labels if labels is not None else label_report(text) for text, labels in zip(references, known, strict=True)]


class CheXpertF1(RewardPlugin):
    """F1 between the CheXpert labels of the generated report and of the reference.

    Inputs: reports, references, reference_labels (optional; else the reference is labeled, cached).
    Range [0, 1], higher is better; both without a positive = 1.0. Options: `labels` 14 or 5,
    `uncertain_as_positive` (default True). Example: report "Small left effusion." vs reference
    "Left pleural effusion and cardiomegaly." → 2·1/(1+2) = 0.667.
    """

    name = "chexpert_f1"

    def __init__(self, labels: int = 14, uncertain_as_positive: bool = True):
        if labels not in (14, 5):
            raise ValueError("chexpert_f1: option 'labels' must be 14 or 5")
        self.indices = None if labels == 14 else TOP5_INDICES
        self.uncertain_as_positive = uncertain_as_positive

    def score(self, reports: Sequence[str], references: Sequence[str],
              reference_labels: Sequence | None = None, **_) -> list[float]:
        targets = reference_labels_for(references, reference_labels)
        return [sample_f1(positives(label_report(report), self.uncertain_as_positive, self.indices),
                          positives(target, self.uncertain_as_positive, self.indices))
                for report, target in zip(reports, targets, strict=True)]


def consistency(reasoning: Sequence[str], reports: Sequence[str], **_) -> list[float | None]:
    """Agreement of the findings asserted in the reasoning block with those in the report (Med-R2 reflection).

    Inputs: reasoning, reports. Range [0, 1]: F1 between the positive labels of both; None when the
    completion has no reasoning block (nothing to check). Example: reasoning names an effusion the
    report leaves out → below 1.
    """
    scores: list[float | None] = []
    for thought, report in zip(reasoning, reports, strict=True):
        if not thought.strip():
            scores.append(None)
            continue
        scores.append(sample_f1(positives(label_report(thought)), positives(label_report(report))))
    return scores


def corpus_chexpert_f1(hypothesis_labels: Sequence[Sequence[int | None]],
                       reference_labels: Sequence[Sequence[int | None]],
                       uncertain_as_positive: bool = True) -> dict[str, float]:
    """Corpus CheXpert F1 for evaluation: `micro_14`, `macro_14`, `micro_5`, `macro_5`.

    Inputs are 14-value label vectors (1, 0, -1, None) in OBSERVATIONS order, e.g. from `label_report`.
    Matches sklearn's classification_report(zero_division=0) as f1chexbert/RadEval report it.
    """
    hyp = [positives(h, uncertain_as_positive) for h in hypothesis_labels]
    ref = [positives(r, uncertain_as_positive) for r in reference_labels]
    all14 = corpus_f1(hyp, ref)
    top5 = corpus_f1([[h[i] for i in TOP5_INDICES] for h in hyp], [[r[i] for i in TOP5_INDICES] for r in ref])
    return {"micro_14": all14["micro"], "macro_14": all14["macro"], "micro_5": top5["micro"], "macro_5": top5["macro"]}


def corpus_chexpert_f1_from_text(hypotheses: Sequence[str], references: Sequence[str],
                                 uncertain_as_positive: bool = True) -> dict[str, float]:
    """`corpus_chexpert_f1` of report texts, labeled with the rule-based labeler."""
    return corpus_chexpert_f1([label_report(h) for h in hypotheses], [label_report(r) for r in references],
                              uncertain_as_positive)
