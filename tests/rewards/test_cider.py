"""CIDEr-D reward: corpus document frequencies, clipping, the length penalty, and fitting through the trainer path."""

import math

import pytest

from rewards import build_reward_functions, fit_reward_corpus
from rewards.cider import CIDErD, DocumentFrequencies, cider_d
from unirg.errors import RewardError

CORPUS = ["x y", "x z", "w"]


def test_hand_computed_value():
    # idf(x) = ln 3 - ln 2, idf(y) = idf(x y) = idf(y y) = ln 3; "x y y" against "x y", worked by hand:
    # clipping keeps y at its reference weight; order 1 cosine 0.52410, order 2 cosine 1/sqrt(2), no trigram in the reference, length penalty exp(-1/72).
    value = cider_d("x y y", "x y", DocumentFrequencies(CORPUS))
    ln3, idf_x = math.log(3), math.log(3) - math.log(2)
    order1 = (idf_x ** 2 + ln3 * ln3) / (math.sqrt(idf_x ** 2 + 4 * ln3 ** 2) * math.sqrt(idf_x ** 2 + ln3 ** 2))
    expected = 10 / 4 * math.exp(-1 / 72) * (order1 + 1 / math.sqrt(2))
    assert value == pytest.approx(expected, rel=1e-9)
    assert value == pytest.approx(3.0356, abs=1e-3)


def test_boilerplate_pays_little_and_findings_pay_most():
    corpus = [f"No pneumothorax. No effusion. {finding}" for finding in
              ("Left upper lobe nodule.", "Right pleural effusion.", "Heart is enlarged.", "Normal heart.")]
    frequencies = DocumentFrequencies(corpus)
    reference = "No pneumothorax. No effusion. Left upper lobe nodule."
    boilerplate = cider_d("No pneumothorax. No effusion. Normal heart.", reference, frequencies)
    specific = cider_d("No pneumothorax. No effusion. Left upper lobe nodule.", reference, frequencies)
    assert specific == pytest.approx(10.0)
    assert boilerplate < 0.2 * specific


def test_repeating_a_phrase_earns_nothing():
    frequencies = DocumentFrequencies(["left upper lobe nodule. no effusion.", "right effusion. no nodule.",
                                       "no effusion. heart is normal."])
    reference = "left upper lobe nodule. no effusion."
    once = cider_d(reference, reference, frequencies)
    repeated = cider_d(reference + " no effusion. no effusion. no effusion.", reference, frequencies)
    assert repeated < once


def test_empty_report_scores_zero_and_unfitted_plugin_says_what_to_do():
    assert cider_d("", "x y", DocumentFrequencies(CORPUS)) == 0.0
    with pytest.raises(RewardError, match="options.corpus"):
        CIDErD().score(["x"], ["x"])
    with pytest.raises(RewardError, match="at least 2"):
        DocumentFrequencies(["only one"])
    with pytest.raises(RewardError, match="not a file"):
        CIDErD(corpus="no/such/file.txt")


def test_corpus_option_reads_one_reference_per_line(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(CORPUS) + "\n\n", encoding="utf-8")
    assert CIDErD(corpus=str(path)).score(["x y y"], ["x y"]) == [cider_d("x y y", "x y", DocumentFrequencies(CORPUS))]


def test_trainer_path_fits_on_the_training_references():
    functions, _ = build_reward_functions([{"name": "cider_d", "weight": 0.2}, {"name": "bleu2", "weight": 0.5}])
    fit_reward_corpus(functions, {"reference": CORPUS})
    scores = functions[0](completions=["x y y"], reference=["x y"])
    assert scores == [pytest.approx(3.0356, abs=1e-3)]
