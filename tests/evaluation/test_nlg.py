"""The NLG table equals pycocoevalcap 1.2 (Bleu(4), Rouge, Cider, Meteor) on 120 report pairs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from unirg.evaluation.nlg import cider, nlg_table, rouge_l_coco

PAIRS = json.loads((Path(__file__).parent / "fixtures" / "nlg_pairs.json").read_text())
# pycocoevalcap 1.2 on these pairs: compute_score({i: [ref]}, {i: [hyp]}) of each scorer, no tokenizer.
PYCOCOEVALCAP = {"bleu_1": 0.42613385381826346, "bleu_2": 0.35876170992701006, "bleu_3": 0.32893388041866656,
                 "bleu_4": 0.3098095301712415, "rouge_l": 0.3889195810768426, "cider": 2.090838704775973,
                 "meteor": 0.19957058034867314}


def hyps_refs(pairs=PAIRS):
    return [p["hyp"] for p in pairs], [p["ref"] for p in pairs]


def test_fixture_has_at_least_100_pairs():
    assert len(PAIRS) >= 100


def test_table_equals_pycocoevalcap_pinned():
    table = nlg_table(*hyps_refs(), with_meteor=False)
    for key in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider"):
        assert table[key] == pytest.approx(PYCOCOEVALCAP[key], rel=1e-12), key


def test_small_cases():
    assert rouge_l_coco(["a b c"], ["a b c"]) == pytest.approx(1.0)
    assert rouge_l_coco(["x"], ["a b"]) == 0.0
    # Two identical pairs: every idf is log(2) - log(2) = 0, so CIDEr is 0 (as upstream on a corpus of copies).
    assert cider(["the lungs are clear"] * 2, ["the lungs are clear"] * 2) == 0.0


def test_table_equals_installed_pycocoevalcap():
    pytest.importorskip("pycocoevalcap", reason="pycocoevalcap not installed; the pinned test covers the numbers")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    hyps, refs = hyps_refs()
    gts, res = {i: [r] for i, r in enumerate(refs)}, {i: [h] for i, h in enumerate(hyps)}
    table = nlg_table(hyps, refs, with_meteor=False)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert [table[f"bleu_{n}"] for n in range(1, 5)] == pytest.approx(bleu, rel=1e-12)
    assert table["rouge_l"] == pytest.approx(Rouge().compute_score(gts, res)[0], rel=1e-12)
    assert table["cider"] == pytest.approx(float(Cider().compute_score(gts, res)[0]), rel=1e-12)


def test_meteor_through_the_upstream_jar():
    if shutil.which("java") is None:
        pytest.skip("no Java here: METEOR is left out of the table")
    pytest.importorskip("pycocoevalcap", reason="pycocoevalcap (which carries the METEOR jar) not installed")
    assert nlg_table(*hyps_refs())["meteor"] == pytest.approx(PYCOCOEVALCAP["meteor"], abs=1e-6)
