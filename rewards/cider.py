"""CIDEr-D against the training corpus: a lexical reward that pays for study-specific content, not boilerplate.

BLEU and ROUGE pay as much for "No pneumothorax." (in almost every report) as for "left upper lobe
nodule" (in a few): a policy can raise them by writing the corpus's most common sentences, which is how
report generators collapse to one templated report. CIDEr-D weights each n-gram by its inverse document
frequency over the training references, so the shared boilerplate counts for little and the findings that
set a study apart count for most. As in the CIDEr-D definition (Vedantam et al., 2015) it clips each n-gram
weight at the reference's, so repeating a phrase earns nothing, and damps the score by a Gaussian of the
length difference (σ = 6 words), so padding costs. Texts are tokenized as ReXrank's BLEU (lower-case, "."
split off). Scores are 10 × the mean over n = 1..4 of the clipped TF-IDF cosine, in [0, 10].

The document frequencies come from `fit_corpus(references)`, which the trainer calls with the training
split's references before the first step; `corpus` (a text file, one reference per line) gives them
explicitly instead.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from rewards.api import RewardPlugin
from rewards.lexical import rexrank_tokens
from unirg.errors import RewardError

MAX_N = 4
LENGTH_SIGMA = 6.0


def _ngrams(tokens: list[str]) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for n in range(1, MAX_N + 1) for i in range(len(tokens) - n + 1))


class DocumentFrequencies:
    """How many references of a corpus contain each n-gram (n = 1..4), and the corpus size."""

    def __init__(self, references: Iterable[str]):
        self.counts: Counter = Counter()
        self.documents = 0
        for reference in references:
            self.counts.update(set(_ngrams(rexrank_tokens(reference))))
            self.documents += 1
        if self.documents < 2:
            raise RewardError(f"cider_d needs a corpus of at least 2 references for document frequencies, "
                              f"got {self.documents}")
        self.log_documents = math.log(self.documents)

    def idf(self, gram: tuple[str, ...]) -> float:
        return self.log_documents - math.log(max(1.0, self.counts[gram]))


def _tfidf(tokens: list[str], frequencies: DocumentFrequencies) -> tuple[list[dict], list[float]]:
    vectors: list[dict] = [{} for _ in range(MAX_N)]
    norms = [0.0] * MAX_N
    for gram, count in _ngrams(tokens).items():
        weight = count * frequencies.idf(gram)
        vectors[len(gram) - 1][gram] = weight
        norms[len(gram) - 1] += weight * weight
    return vectors, [math.sqrt(n) for n in norms]


def cider_d(hypothesis: str, reference: str, frequencies: DocumentFrequencies) -> float:
    """CIDEr-D of one report against one reference, in [0, 10]."""
    hyp_tokens, ref_tokens = rexrank_tokens(hypothesis), rexrank_tokens(reference)
    if not hyp_tokens or not ref_tokens:
        return 0.0
    hyp_vectors, hyp_norms = _tfidf(hyp_tokens, frequencies)
    ref_vectors, ref_norms = _tfidf(ref_tokens, frequencies)
    penalty = math.exp(-((len(hyp_tokens) - len(ref_tokens)) ** 2) / (2 * LENGTH_SIGMA ** 2))
    total = 0.0
    for order in range(MAX_N):
        if not hyp_norms[order] or not ref_norms[order]:
            continue
        reference_weights = ref_vectors[order]
        dot = sum(min(weight, reference_weights.get(gram, 0.0)) * reference_weights.get(gram, 0.0)
                  for gram, weight in hyp_vectors[order].items())
        total += penalty * dot / (hyp_norms[order] * ref_norms[order])
    return 10.0 * total / MAX_N


class CIDErD(RewardPlugin):
    """CIDEr-D with document frequencies from the training references (see the module docstring).

    Inputs: reports, references. Range [0, 10], higher is better; a report equal to its reference scores
    10, one made only of boilerplate every reference shares scores near 0. Options: `corpus`,
    a text file with one reference per line, instead of the training split.
    """

    name = "cider_d"
    value_range = (0.0, 10.0 + 1e-6)

    def __init__(self, corpus: str | None = None):
        self.frequencies: DocumentFrequencies | None = None
        if corpus is not None:
            path = Path(corpus)
            if not path.is_file():
                raise RewardError(f"cider_d: options.corpus {corpus!r} is not a file; give a text file with one "
                                  "reference report per line, or leave it out to use the training split")
            self.fit_corpus([line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()])

    def fit_corpus(self, references: Sequence[str]) -> None:
        """Take the document frequencies from `references` (the training split's, unless `corpus` was given)."""
        if self.frequencies is None:
            self.frequencies = DocumentFrequencies(references)

    def score(self, reports: Sequence[str], references: Sequence[str], **_) -> list[float]:
        if self.frequencies is None:
            raise RewardError("cider_d has no document frequencies: it is fitted on the training split by "
                              "`unirg rl`; elsewhere give options.corpus (one reference per line)")
        return [cider_d(h, r, self.frequencies) for h, r in zip(reports, references, strict=True)]
