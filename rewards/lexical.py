"""Lexical overlap: BLEU-2 as ReXrank computes it, BLEU-4 and ROUGE-L, per report."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def rexrank_tokens(text: str) -> list[str]:
    """ReXrank's BLEU tokenization: lower-case, '.' becomes ' .', split on spaces."""
    return text.lower().replace(".", " .").split()


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def sentence_bleu(hypothesis: list[str], reference: list[str], max_n: int) -> float:
    """Sentence BLEU with uniform weights and smoothing method 1 (epsilon 0.1 for zero n-gram matches)."""
    if not hypothesis or not reference:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_n + 1):
        hyp = _ngrams(hypothesis, n)
        total = sum(hyp.values())
        if total == 0:
            # Shorter than n tokens: nltk returns 0 for the whole score.
            return 0.0
        matches = sum(min(count, _ngrams(reference, n)[gram]) for gram, count in hyp.items())
        precision = (matches if matches else 0.1) / total
        log_precision += math.log(precision) / max_n
    ratio = len(hypothesis) / len(reference)
    brevity = 1.0 if ratio > 1 else math.exp(1 - 1 / ratio)
    return brevity * math.exp(log_precision)


def bleu2(reports: Sequence[str], references: Sequence[str], **_) -> list[float]:
    """Per-report BLEU-2 exactly as ReXrank: its tokenization, weights (1/2, 1/2), smoothing method 1.

    Inputs: reports, references. Range [0, 1], higher is better; identical reports score 1.0.
    """
    return [sentence_bleu(rexrank_tokens(h), rexrank_tokens(r), 2) for h, r in zip(reports, references, strict=True)]


def bleu4(reports: Sequence[str], references: Sequence[str], **_) -> list[float]:
    """Per-report BLEU-4 with the same tokenization and smoothing."""
    return [sentence_bleu(rexrank_tokens(h), rexrank_tokens(r), 4) for h, r in zip(reports, references, strict=True)]


def corpus_bleu4(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU-4 in the pycocoevalcap style: n-gram counts pooled over reports, closest-length brevity."""
    matches = [0] * 4
    totals = [0] * 4
    hyp_len = ref_len = 0
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        hyp, ref = hypothesis.split(), reference.split()
        hyp_len += len(hyp)
        ref_len += len(ref)
        for n in range(1, 5):
            h, r = _ngrams(hyp, n), _ngrams(ref, n)
            matches[n - 1] += sum(min(c, r[g]) for g, c in h.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    tiny, small = 1e-15, 1e-9
    score = 1.0
    for n in range(4):
        score *= (matches[n] + tiny) / (totals[n] + small)
    score = score ** 0.25
    if hyp_len < ref_len:
        score *= math.exp(1 - ref_len / (hyp_len + small))
    return score


def rouge_l(reports: Sequence[str], references: Sequence[str], **_) -> list[float]:
    """Per-report ROUGE-L F1 with rouge-score's tokenizer and Porter stemming."""
    from rouge_score import rouge_scorer

    scorer = _rouge_scorer(rouge_scorer)
    return [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(reports, references, strict=True)]


_SCORER = None


def _rouge_scorer(module):
    global _SCORER
    if _SCORER is None:
        _SCORER = module.RougeScorer(["rougeL"], use_stemmer=True)
    return _SCORER
