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
        highest = highest_cross_study_jaccard([word_ngrams(report, self.n) for report in reports], study_id)
        return RewardOutput([1.0 - value for value in highest], {"max_similarity": highest})


def highest_cross_study_jaccard(grams: Sequence[frozenset], study_id: Sequence[str]) -> list[float]:
    """For each gram set, its highest `jaccard` with a set of another study (0.0 when there is none).

    All pairs at once as one sparse product (intersection sizes), so a 4,096-completion step costs about
    a second rather than the minute a pairwise Python loop takes.
    """
    import warnings

    import torch

    vocabulary: dict[tuple[str, ...], int] = {}
    rows = [i for i, own in enumerate(grams) for _ in own]
    columns = [vocabulary.setdefault(gram, len(vocabulary)) for own in grams for gram in own]
    count = len(grams)
    if count == 0:
        return []
    hot = torch.sparse_coo_tensor(torch.tensor([rows, columns], dtype=torch.long).reshape(2, -1),
                                  torch.ones(len(rows), dtype=torch.float64), (count, max(len(vocabulary), 1)),
                                  check_invariants=True).coalesce()
    with warnings.catch_warnings():  # torch warns that the CSR kernel behind sparse @ sparse is beta
        warnings.simplefilter("ignore", UserWarning)
        shared = torch.sparse.mm(hot, hot.t().coalesce()).to_dense()
    sizes = torch.tensor([len(own) for own in grams], dtype=torch.float64)
    union = sizes[:, None] + sizes[None, :] - shared
    similarity = torch.where(union > 0, shared / union.clamp(min=1), torch.ones_like(union))
    study_index = {study: k for k, study in enumerate(dict.fromkeys(study_id))}
    study = torch.tensor([study_index[s] for s in study_id])
    similarity = similarity.masked_fill(study[:, None] == study[None, :], -1.0)
    return similarity.max(dim=1).values.clamp(min=0.0).tolist()
