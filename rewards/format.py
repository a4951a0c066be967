"""Format and anti-hacking rewards: required sections, length relative to the reference, repetition."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from rewards.api import RewardOutput, RewardPlugin
from unirg.prompts.parser import ParsedCompletion


class Format(RewardPlugin):
    """Required parts present, in order, non-empty.

    Inputs: parsed completions, sections ("findings", "impression" or "findings_impression"; default both). Range
    [0, 1]: the share of checks passed. Checks: findings header and text; impression header and text
    when the study has one; order; with `reasoning: true` also a closed, non-empty <think> block first.
    Example: "Findings: clear lungs." for a findings-only study → 1.0.
    """

    name = "format"

    def __init__(self, reasoning: bool = False):
        self.reasoning = reasoning

    def score(self, parsed: Sequence[ParsedCompletion], sections: Sequence[str] | None = None,
              **_) -> RewardOutput:
        scores, reasoning_ok = [], []
        for i, p in enumerate(parsed):
            wanted = sections[i] if sections is not None else "findings_impression"
            wants_impression = wanted in ("findings_impression", "impression")
            checks = [p.section_order_ok]
            if wanted != "impression":
                checks += [p.has_findings_header, bool(p.findings)]
            if wants_impression:
                checks += [p.has_impression_header, bool(p.impression)]
            if self.reasoning:
                think = p.has_think and p.think_closed and bool(p.reasoning)
                checks.append(think and "text before <think>" not in p.problems)
                reasoning_ok.append(float(think))
            scores.append(sum(checks) / len(checks))
        return RewardOutput(scores, {"reasoning_ok": reasoning_ok} if self.reasoning else {})


class Length(RewardPlugin):
    """Soft penalty for reports much shorter or longer than the reference (words).

    Inputs: reports, references. Range [-1, 0]: 0 inside [low, high] × reference length, falling
    linearly to -1 at half the lower bound or at twice the upper bound. Example: a 5-word report for a
    40-word reference with low 0.5 → -1.
    """

    name = "length"
    value_range = (-1.0, 0.0)

    def __init__(self, low: float = 0.5, high: float = 1.5):
        self.low, self.high = low, high

    def score(self, reports: Sequence[str], references: Sequence[str], **_) -> list[float]:
        scores = []
        for report, reference in zip(reports, references, strict=True):
            words, target = len(report.split()), max(len(reference.split()), 1)
            lo, hi = self.low * target, self.high * target
            if words < lo:
                scores.append(-min(1.0, (lo - words) / max(lo / 2, 1)))
            elif words > hi:
                scores.append(-min(1.0, (words - hi) / hi))
            else:
                scores.append(0.0)
        return scores


class Repetition(RewardPlugin):
    """Penalty for repeated n-grams inside one report (degenerate loops).

    Inputs: reports. Range [-1, 0]: minus the share of n-grams that repeat an earlier one. Example:
    "no effusion no effusion no effusion" with n=2 → about -0.6.
    """

    name = "repetition"
    value_range = (-1.0, 0.0)

    def __init__(self, n: int = 3):
        self.n = n

    def score(self, reports: Sequence[str], **_) -> list[float]:
        scores = []
        for report in reports:
            words = report.lower().split()
            grams = [tuple(words[i:i + self.n]) for i in range(len(words) - self.n + 1)]
            repeats = sum(count - 1 for count in Counter(grams).values())
            scores.append(-repeats / len(grams) if grams else 0.0)
        return scores


class DuplicateRate(RewardPlugin):
    """Share of identical reports in the batch, logged as a monitor; optionally a penalty.

    Inputs: reports. Each completion scores -penalty × (share of the batch with the same report); with
    the default penalty 0 the reward is 0 and only the `batch_rate` part is logged.
    """

    name = "duplicate_rate"
    value_range = (-1.0, 0.0)

    def __init__(self, penalty: float = 0.0):
        self.penalty = penalty

    def score(self, reports: Sequence[str], **_) -> RewardOutput:
        normalized = [" ".join(r.lower().split()) for r in reports]
        counts = Counter(normalized)
        n = max(len(reports), 1)
        duplicates = sum(c for c in counts.values() if c > 1) / n
        scores = [-self.penalty * (counts[r] - 1) / n if counts[r] > 1 else 0.0 for r in normalized]
        return RewardOutput(scores, {"batch_rate": [duplicates] * len(reports)})
