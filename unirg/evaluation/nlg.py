"""The NLG table of report-generation papers (the pycocoevalcap convention used since R2Gen).

Corpus BLEU-1..4 (pycocoevalcap's BleuScorer), ROUGE-L with β = 1.2, CIDEr (pycocoevalcap's `Cider`: n = 4,
σ = 6, document frequencies from the references) and METEOR 1.5 when Java and pycocoevalcap (which carries the
METEOR jar) are both here. One reference per report. Texts are scored as given, as R2Gen calls the scorers:
no PTB tokenizer, so lower-case and split punctuation beforehand if the paper you compare to did.
Tokenization follows each upstream scorer: BLEU and CIDEr split on any whitespace, ROUGE-L on single spaces.
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from collections.abc import Sequence

from rewards.lexical import corpus_bleu, lcs_length

ROUGE_BETA = 1.2
CIDER_N = 4
CIDER_SIGMA = 6.0


def rouge_l_coco(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean over reports of ROUGE-L F(β = 1.2) on space-separated tokens, as pycocoevalcap's `Rouge`."""
    scores = []
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        hyp, ref = hypothesis.split(" "), reference.split(" ")
        lcs = lcs_length(hyp, ref)
        precision, recall = lcs / len(hyp), lcs / len(ref)
        beta2 = ROUGE_BETA ** 2
        scores.append((1 + beta2) * precision * recall / (recall + beta2 * precision)
                      if precision and recall else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


def _ngram_counts(text: str) -> Counter:
    words = text.split()
    return Counter(tuple(words[i:i + n]) for n in range(1, CIDER_N + 1) for i in range(len(words) - n + 1))


def cider(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus CIDEr as pycocoevalcap's `Cider` computes it (mean over reports of 10 × the mean n-gram cosine).

    TF-IDF vectors per n-gram order with idf log(N) - log(max(1, df)); each order's cosine is clipped (the
    hypothesis weight at most the reference weight) and damped by exp(-δ² / 2σ²), where δ is the difference in
    *bigram* counts of the two texts (pycocoevalcap counts its length at n-gram index 1).
    """
    hyps = [_ngram_counts(h) for h in hypotheses]
    refs = [_ngram_counts(r) for r in references]
    if not refs:
        return 0.0
    document_frequency = Counter(gram for counts in refs for gram in counts)
    log_documents = math.log(len(refs))

    def vectorize(counts: Counter):
        vectors: list[dict] = [{} for _ in range(CIDER_N)]
        norms = [0.0] * CIDER_N
        for gram, count in counts.items():
            order = len(gram) - 1
            weight = count * (log_documents - math.log(max(1.0, document_frequency[gram])))
            vectors[order][gram] = weight
            norms[order] += weight * weight
        bigrams = sum(count for gram, count in counts.items() if len(gram) == 2)
        return vectors, [math.sqrt(n) for n in norms], bigrams

    total = 0.0
    for hyp, ref in zip(hyps, refs, strict=True):
        hyp_vectors, hyp_norms, hyp_length = vectorize(hyp)
        ref_vectors, ref_norms, ref_length = vectorize(ref)
        penalty = math.exp(-((hyp_length - ref_length) ** 2) / (2 * CIDER_SIGMA ** 2))
        similarity = 0.0
        for order in range(CIDER_N):
            value = sum(min(weight, ref_vectors[order].get(gram, 0.0)) * ref_vectors[order].get(gram, 0.0)
                        for gram, weight in hyp_vectors[order].items())
            if hyp_norms[order] and ref_norms[order]:
                value /= hyp_norms[order] * ref_norms[order]
            similarity += value * penalty
        total += 10.0 * similarity / CIDER_N
    return total / len(refs)


def meteor(hypotheses: Sequence[str], references: Sequence[str]) -> float | None:
    """METEOR 1.5 through pycocoevalcap's `Meteor` (the upstream jar); None without Java or pycocoevalcap."""
    if shutil.which("java") is None:
        return None
    try:
        from pycocoevalcap.meteor.meteor import Meteor
    except ImportError:
        return None
    scorer = Meteor()
    try:
        score, _ = scorer.compute_score({i: [r] for i, r in enumerate(references)},
                                        {i: [h] for i, h in enumerate(hypotheses)})
    finally:
        close = getattr(scorer, "close", None)
        if close:
            close()
    return float(score)


def nlg_table(hypotheses: Sequence[str], references: Sequence[str], with_meteor: bool = True) -> dict[str, float | None]:
    """BLEU-1..4, ROUGE-L, CIDEr and (when available) METEOR of paired reports, pycocoevalcap's numbers."""
    bleu = corpus_bleu(hypotheses, references, 4)
    table: dict[str, float | None] = {f"bleu_{n + 1}": bleu[n] for n in range(4)}
    table["rouge_l"] = rouge_l_coco(hypotheses, references)
    table["cider"] = cider(hypotheses, references)
    table["meteor"] = meteor(hypotheses, references) if with_meteor else None
    return table
