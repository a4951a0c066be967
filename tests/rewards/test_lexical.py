"""Lexical rewards against the reference implementations' numbers (../shared/oracles) and own fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewards.lexical import bleu2, bleu4, corpus_bleu, corpus_bleu4, lcs_length, rouge_l, rouge_tokens

ORACLES = Path(__file__).resolve().parents[2].parent / "shared" / "oracles"


def oracle(relative: str) -> Path:
    path = ORACLES / relative
    if not path.exists():
        pytest.skip(f"{path}: ../shared/oracles not present (a user's clone has none)")
    return path


# --- oracles -------------------------------------------------------------------------------------------

def test_bleu2_matches_rexrank_on_every_oracle_pair():
    pairs = json.loads(oracle("bleu/cxr_report_metric_bleu2_derived.json").read_text())
    assert len(pairs) == 13
    got = bleu2([p["hyp"] for p in pairs], [p["ref"] for p in pairs])
    for pair, value in zip(pairs, got, strict=True):
        assert value == pytest.approx(pair["bleu2_nltk_method1"], abs=1e-12), pair
        assert value == pytest.approx(pair["bleu2_fast_bleu"], abs=1e-12), pair


def _radeval():
    samples = json.loads(oracle("rouge_bleu_radeval/regression_samples.json").read_text())
    expected = json.loads(oracle("rouge_bleu_radeval/expected_scores_cpu.json").read_text())
    return samples["HYPS"], samples["REFS"], expected


def test_corpus_bleu_matches_pycocoevalcap_bleuscorer():
    hyps, refs, expected = _radeval()
    b1, b2, b3, b4 = corpus_bleu(hyps, refs, 4)
    detailed = expected["detailed"]  # RadEval rounds the corpus figures to 4 decimals
    assert round(b1, 4) == detailed["bleu_1"]
    assert round(b2, 4) == detailed["bleu_2"]
    assert round(b3, 4) == detailed["bleu_3"]
    assert round(b4, 4) == detailed["bleu"] == expected["default"]["bleu"]
    assert corpus_bleu4(hyps, refs) == b4


def test_per_sample_bleu4_matches_bleuscorer_to_the_last_digits():
    hyps, refs, expected = _radeval()
    # RadEval's per-sample BLEU is BleuScorer on one pair, tiny/small smoothing included (1.0 - 7.7e-10).
    for hyp, ref, value in zip(hyps, refs, expected["per_sample"]["bleu"], strict=True):
        assert corpus_bleu4([hyp], [ref]) == pytest.approx(value, rel=1e-9, abs=1e-25)


def test_rouge_l_matches_rouge_score_fixtures():
    hyps, refs, expected = _radeval()
    got = rouge_l(hyps, refs)
    assert got == pytest.approx(expected["per_sample"]["rougeL"], abs=1e-12)
    assert round(sum(got) / len(got), 4) == expected["default"]["rougeL"]


# --- own fixtures (no ../shared needed) -----------------------------------------------------------------

# (hypothesis, reference, expected ReXrank BLEU-2), worked out by hand.
BLEU2_TABLE = [
    ("No acute cardiopulmonary process.", "No acute cardiopulmonary process.", 1.0),
    ("Severe pulmonary edema.", "Mild pulmonary edema.", (3 / 4 * 2 / 3) ** 0.5),       # p1 3/4, p2 2/3
    ("Pleural effusion.", "No pleural effusion.", 2.718281828459045 ** (1 - 4 / 3)),    # brevity only
    ("", "Mild cardiomegaly.", 0.0),
    ("Mild cardiomegaly.", "", 0.0),
    ("heart LUNGS", "lungs heart", (1.0 * 0.1 / 1) ** 0.5),                              # no bigram: eps 0.1
]


@pytest.mark.parametrize(("hyp", "ref", "expected"), BLEU2_TABLE)
def test_bleu2_table(hyp, ref, expected):
    assert bleu2([hyp], [ref]) == pytest.approx([expected], abs=1e-12)


# Edge cases pinned to the upstream packages: fast-bleu 0.0.90 BLEU({"b": (1/2, 1/2)}) (what CXR-Report-Metric
# runs) and nltk 3.10.4 sentence_bleu(weights=(1/2, 1/2), SmoothingFunction().method1), on CXR-Report-Metric's
# prep_reports tokens. Both packages gave these values (to 1e-16).
BLEU2_UPSTREAM = [
    ("Pneumothorax.", "No effusion", 0.0),                                # no shared unigram: 0, not 0.0707
    ("heart lungs", "clear sky", 0.0),
    ("Effusion", "Effusion.", 0.11633369384516794),                       # one token: smoothed, not 0
    ("cardiomegaly", "No cardiomegaly", 0.11633369384516794),
    ("effusion", "effusion", 0.3162277660168379),
    ("effusion", "small left effusion is seen .", 0.002130725927060654),
    ("...", "Mild.", 0.12909944487358058),
    ("Effusion.", "Small left pleural effusion.", 0.22313016014842982),
    ("No effusion.\nHeart normal.", "No effusion. Heart normal.", 0.5178107940302672),   # split on spaces only
    ("Mild\tcardiomegaly.\nNo edema.", "Mild cardiomegaly. No edema.", 0.24761510494160163),
    ("No  effusion.   Heart   normal.", "No effusion. Heart normal.", 1.0),  # empty pieces dropped
    ("", "Mild cardiomegaly.", 0.0),
    ("Mild cardiomegaly.", "", 0.0),
]


@pytest.mark.parametrize(("hyp", "ref", "expected"), BLEU2_UPSTREAM)
def test_bleu2_edge_cases_match_fast_bleu_and_nltk(hyp, ref, expected):
    assert bleu2([hyp], [ref]) == pytest.approx([expected], abs=1e-12)


def test_bleu2_equals_installed_nltk_on_varied_text():
    import random

    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    words = "no pleural effusion . mild cardiomegaly\nheart lungs clear  right left\t".split(" ")
    rng = random.Random(3)
    for _ in range(200):
        hyp = " ".join(rng.choices(words, k=rng.randint(0, 12)))
        ref = " ".join(rng.choices(words, k=rng.randint(0, 12)))
        tokens = [[t for t in x.lower().replace(".", " .").split(" ") if t] for x in (hyp, ref)]
        expected = sentence_bleu([tokens[1]], tokens[0], weights=(0.5, 0.5),
                                 smoothing_function=SmoothingFunction().method1) if all(tokens) else 0.0
        assert bleu2([hyp], [ref]) == pytest.approx([float(expected)], abs=1e-12), (hyp, ref)


def test_bleu4_identical_and_disjoint():
    text = "Mild cardiomegaly with small bilateral pleural effusions."
    assert bleu4([text], [text]) == [pytest.approx(1.0)]
    assert bleu4(["Pneumothorax on the right side"], ["Normal heart size and clear lungs"])[0] < 0.05


# (hypothesis, reference, expected rouge-score ROUGE-L F1 with stemming)
ROUGE_TABLE = [
    ("Small effusions.", "small effusion", 1.0),                 # stemming and punctuation
    ("a b c d", "a c e", 2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3)),
    ("", "no acute process", 0.0),
    ("!!! ...", "no acute process", 0.0),                        # no tokens after cleaning
    ("Pleural effusion", "Effusion pleural", 0.5),
    ("café opacity", "cafe opacity", 0.5),                      # é dropped: [caf, opac] vs [cafe, opac]
]


@pytest.mark.parametrize(("hyp", "ref", "expected"), ROUGE_TABLE)
def test_rouge_l_table(hyp, ref, expected):
    assert rouge_l([hyp], [ref]) == pytest.approx([expected], abs=1e-12)


def test_rouge_l_equals_rouge_score_package_on_varied_text():
    import random

    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    words = ("no pleural effusions effusion is are mild severe cardiomegaly lungs clear heart normal . , "
             "opacity right left lower lobe atelectasis stable unchanged x-ray 2 café").split()
    rng = random.Random(7)
    hyps = [" ".join(rng.choices(words, k=rng.randint(0, 80))) for _ in range(300)]
    refs = [" ".join(rng.choices(words, k=rng.randint(0, 80))) for _ in range(300)]
    expected = [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs, strict=True)]
    assert rouge_l(hyps, refs) == pytest.approx(expected, abs=1e-12)


def test_lcs_length_basic():
    assert lcs_length([], ["a"]) == 0
    assert lcs_length(list("abcbdab"), list("bdcaba")) == 4
    assert lcs_length(["x"] * 200, ["x"] * 70) == 70
    assert rouge_tokens("Effusions, NOTED.") == ["effus", "note"]
