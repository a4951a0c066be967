"""Offline error-count reward: clinically significant CheXpert-label disagreements, reward 1/(errors+1).

The stand-in for the LLM judge's error count when no LLM is available (demo, CI, a first step-2 run):
the rule-based labeler labels the generated report, the reference is labeled the same way (or its
dataset labels are used), and every observation whose presence the two disagree on is one clinically
significant error, the labeler's counterpart of the judge's categories (a) false report of a finding
and (b) missing a finding. Uncertain mentions count as present by default, as in `chexpert_f1`.
Positive vs uncertain is a matter of certainty, not presence, and is not counted. "No Finding" is left
out because it is derived from the other thirteen and would count every such error twice.

With `attributes: true` it also counts the judge's categories (c) misidentified location and (d)
misassessed severity, from the side, zone and severity words each report gives a finding both state
(`rewards.attributes.attribute_errors`).
"""

from __future__ import annotations

from collections.abc import Sequence

from rewards.api import RewardOutput, RewardPlugin
from rewards.attributes import attribute_errors
from rewards.clinical import reference_labels_for
from rewards.labeler import DERIVED, OBSERVATIONS, label_report


def present(label: int | None, uncertain_as_positive: bool) -> bool:
    """Whether a CheXpert label says the finding is there (1; also -1, uncertain, when asked)."""
    return label == 1 or (uncertain_as_positive and label == -1)


def label_errors(report_labels: Sequence[int | None], reference_labels: Sequence[int | None],
                 indices: Sequence[int], uncertain_as_positive: bool = True) -> tuple[int, int]:
    """(false findings, missed findings) of a report against its reference, over the observations `indices`."""
    false_findings = missed = 0
    for i in indices:
        said, truth = present(report_labels[i], uncertain_as_positive), present(reference_labels[i],
                                                                               uncertain_as_positive)
        false_findings += said and not truth
        missed += truth and not said
    return false_findings, missed


class LabelerErrors(RewardPlugin):
    """`labeler_errors`: 1/(errors+1), errors = CheXpert observations the report and reference disagree on.

    Inputs: reports, references, reference_labels (optional; else the reference is labeled). Range
    (0, 1], higher is better. Options: `uncertain_as_positive` (default True), `ignore` (observation
    names left out; default: none besides the derived "No Finding"), `attributes` (default False: also
    count location and severity errors, read from the reference text). Sub-scores: `errors`,
    `false_findings`, `missed`, and with `attributes` `location_errors`, `severity_errors`. Example:
    report "Small left effusion." vs reference "Left pleural effusion and cardiomegaly." misses
    cardiomegaly: 1 error, reward 0.5; vs reference "Large right pleural effusion." with `attributes`:
    a location and a severity error, reward 1/3.
    """

    name = "labeler_errors"
    value_range = (0.0, 1.0)

    def __init__(self, uncertain_as_positive: bool = True, ignore: Sequence[str] = (), attributes: bool = False) -> None:
        unknown = [name for name in ignore if name not in OBSERVATIONS]
        if unknown:
            raise ValueError(f"labeler_errors: options.ignore names unknown observations {unknown}; "
                             f"known: {', '.join(OBSERVATIONS)}")
        skipped = set(DERIVED) | set(ignore)
        self.indices = [i for i, name in enumerate(OBSERVATIONS) if name not in skipped]
        self.uncertain_as_positive = uncertain_as_positive
        self.attributes = attributes

    def count(self, reports: Sequence[str], references: Sequence[str],
              reference_labels: Sequence | None = None) -> list[tuple[int, int]]:
        """(false findings, missed findings) per report."""
        targets = reference_labels_for(references, reference_labels)
        return [label_errors(label_report(report), target, self.indices, self.uncertain_as_positive)
                for report, target in zip(reports, targets, strict=True)]

    def score(self, reports: Sequence[str], references: Sequence[str],
              reference_labels: Sequence | None = None, **_) -> RewardOutput:
        counts = self.count(reports, references, reference_labels)
        parts = {"false_findings": [float(f) for f, _ in counts], "missed": [float(m) for _, m in counts]}
        errors = [f + m for f, m in counts]
        if self.attributes:
            attribute_counts = [attribute_errors(report, reference)
                                for report, reference in zip(reports, references, strict=True)]
            parts["location_errors"] = [float(loc) for loc, _ in attribute_counts]
            parts["severity_errors"] = [float(sev) for _, sev in attribute_counts]
            errors = [e + loc + sev for e, (loc, sev) in zip(errors, attribute_counts, strict=True)]
        return RewardOutput([1.0 / (e + 1) for e in errors], {"errors": [float(e) for e in errors], **parts})
