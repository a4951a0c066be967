"""Finding-attribute reward: the report states each reference finding's side, zone and severity as the reference does.

CheXpert labels say whether a finding is there, not where or how large; a policy trained on label F1 alone
is free to write "right" for every effusion, and reports then collapse to one wording per finding set.
Laterality and severity errors are clinically significant errors in CheXprompt's and GREEN's categories
(misidentified location or position, misassessed severity). This reward checks them with the offline
labeler: each sentence is labeled on its own, and the attribute words of a sentence belong to the findings
that sentence states as present (so "No effusion. Small left pneumothorax." gives "small" and "left" to the
pneumothorax only). Findings and impression sentences are pooled.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from rewards.api import RewardOutput, RewardPlugin
from rewards.labeler import DERIVED, OBSERVATIONS, label_report

# Attribute kind → {word in a report: normalised value}.
ATTRIBUTE_WORDS: dict[str, dict[str, str]] = {
    "side": {"left": "left", "right": "right", "bilateral": "bilateral", "bilaterally": "bilateral"},
    "zone": {"upper": "upper", "apical": "upper", "apex": "upper", "middle": "middle", "mid": "middle",
             "lower": "lower", "basilar": "lower", "basal": "lower", "base": "lower", "bases": "lower"},
    "severity": {"trace": "small", "tiny": "small", "small": "small", "mild": "small", "minimal": "small",
                 "moderate": "moderate", "large": "large", "severe": "large", "marked": "large"},
}
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")
_WORD = re.compile(r"[a-z]+")


Attributes = dict[str, dict[str, frozenset[str]]]  # observation → attribute kind → values stated


@lru_cache(maxsize=65_536)
def finding_attributes(text: str) -> Attributes:
    """For each finding a report states as present, the side, zone and severity values it gives it."""
    found: dict[str, dict[str, set[str]]] = {}
    for sentence in _SENTENCE_END.split(text or ""):
        if not sentence.strip():
            continue
        stated = [OBSERVATIONS[i] for i, label in enumerate(label_report(sentence))
                  if label in (1, -1) and OBSERVATIONS[i] not in DERIVED]
        if not stated:
            continue
        words = _WORD.findall(sentence.lower())
        for observation in stated:
            kinds = found.setdefault(observation, {kind: set() for kind in ATTRIBUTE_WORDS})
            for kind, vocabulary in ATTRIBUTE_WORDS.items():
                kinds[kind].update(vocabulary[word] for word in words if word in vocabulary)
    return {observation: {kind: frozenset(values) for kind, values in kinds.items()}
            for observation, kinds in found.items()}


def attribute_matches(report: str, reference: str) -> tuple[int, int]:
    """(attributes the report states as the reference does, attributes the reference states).

    One attribute = one (reference finding, kind) with a stated value, e.g. (Pleural Effusion, side). It
    matches when the report states that finding with exactly the same values of that kind; a finding the
    report leaves out matches none of its attributes.
    """
    said, truth = finding_attributes(report), finding_attributes(reference)
    matched = total = 0
    for observation, kinds in truth.items():
        for kind, values in kinds.items():
            if values:
                total += 1
                matched += observation in said and said[observation][kind] == values
    return matched, total


def attribute_errors(report: str, reference: str) -> tuple[int, int]:
    """(location errors, severity errors) of a report against its reference, CheXprompt's categories (c) and (d).

    Counted for the reference findings the report also states: one location error when the side or zone it
    gives differs from the reference's (leaving it out differs too), one severity error when the severity
    does. A finding the report leaves out is a missed finding, counted by the label comparison, not here.
    """
    said, truth = finding_attributes(report), finding_attributes(reference)
    location = severity = 0
    for observation, kinds in truth.items():
        if observation not in said:
            continue
        stated = said[observation]
        location += any(kinds[kind] and stated[kind] != kinds[kind] for kind in ("side", "zone"))
        severity += bool(kinds["severity"]) and stated["severity"] != kinds["severity"]
    return location, severity


class FindingAttributes(RewardPlugin):
    """`finding_attributes`: share of the reference findings' side, zone and severity the report states alike.

    Inputs: reports, references. Range [0, 1], higher is better; 1.0 when the reference states no attribute
    (a normal study: label F1 and the error count judge that case). Sub-scores: `matched`, `stated` (counts).
    Example: reference "Small left pleural effusion." vs report "Large left pleural effusion.": side
    matches, severity does not, reward 0.5.
    """

    name = "finding_attributes"
    value_range = (0.0, 1.0)

    def score(self, reports: Sequence[str], references: Sequence[str], **_) -> RewardOutput:
        counts = [attribute_matches(report, reference) for report, reference in zip(reports, references, strict=True)]
        return RewardOutput([matched / total if total else 1.0 for matched, total in counts],
                            {"matched": [float(m) for m, _ in counts], "stated": [float(t) for _, t in counts]})
