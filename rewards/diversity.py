"""Group diversity reward: pay a completion for not repeating what the batch wrote for other studies."""

from __future__ import annotations

from collections.abc import Sequence

from rewards.api import RewardOutput, RewardPlugin


def word_ngrams(text: str, n: int) -> frozenset[tuple[str, ...]]:
    """The distinct lower-cased word n-grams of `text` (the whole text as one gram when it is shorter than n)."""
    words = text.lower().split()
    if len(words) < n:
        return frozenset([tuple(words)]) if words else frozenset()
    return frozenset(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    """|a ∩ b| / |a ∪ b|; two empty sets are identical (1.0)."""
    union = len(a | b)
    return len(a & b) / union if union else 1.0


class Distinctness(RewardPlugin):
    """1 − the completion's highest word n-gram Jaccard similarity to a completion of another study in the batch.

    Inputs: reports and study_id. Boilerplate is the same report written for different studies; this term
    scores exactly that overlap, and only across studies: the group's own samples (same study) are not
    compared, so agreeing on a study's findings costs nothing. A completion with no other study in its batch
    (or its Ray reward shard) scores 1. The `max_similarity` part logs the overlap itself.

    Options: n (n-gram order, default 2).
    """

    name = "distinctness"
    value_range = (0.0, 1.0)

    def __init__(self, n: int = 2):
        if n < 1:
            raise ValueError(f"distinctness: n must be at least 1, got {n}")
        self.n = n

    def score(self, reports: Sequence[str], study_id: Sequence[str], **_) -> RewardOutput:
        grams = [word_ngrams(report, self.n) for report in reports]
        highest: list[float] = []
        for i, own in enumerate(grams):
            others = [jaccard(own, grams[j]) for j in range(len(grams)) if study_id[j] != study_id[i]]
            highest.append(max(others, default=0.0))
        return RewardOutput([1.0 - value for value in highest], {"max_similarity": highest})
