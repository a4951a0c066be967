"""RaTEScore hook: weights checked before the optional package is imported, clear errors for both."""

from __future__ import annotations

import sys
import types

import pytest

from rewards.ratescore import RaTEScorer, ratescore_files
from unirg.errors import RewardError


def test_missing_models_are_named(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(RewardError) as error:
        RaTEScorer()
    message = str(error.value)
    assert "huggingface-cli download Angelakeke/RaTE-NER-Deberta" in message
    assert "huggingface-cli download FremyCompany/BioLORD-2023-C" in message


def test_missing_package_says_how_to_install(tmp_path, monkeypatch):
    (tmp_path / "ner").mkdir()
    (tmp_path / "enc").mkdir()
    monkeypatch.setitem(sys.modules, "RaTEScore", None)  # import fails as if not installed
    with pytest.raises(RewardError, match=r"pip install 'unirg\[ratescore\]'"):
        RaTEScorer(str(tmp_path / "ner"), str(tmp_path / "enc"))


def test_local_folders_reach_the_package(tmp_path, monkeypatch):
    (tmp_path / "ner").mkdir()
    (tmp_path / "enc").mkdir()
    seen = {}

    class FakeRaTEScore:
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def compute_score(self, candidates, references):
            return [1.0 if c == r else 0.5 for c, r in zip(candidates, references, strict=True)]

    monkeypatch.setitem(sys.modules, "RaTEScore", types.SimpleNamespace(RaTEScore=FakeRaTEScore))
    scorer = RaTEScorer(str(tmp_path / "ner"), str(tmp_path / "enc"))
    assert scorer.score(["a", "b"], ["a", "c"]) == [1.0, 0.5]
    assert seen["bert_model"] == str(tmp_path / "ner") and seen["eval_model"] == str(tmp_path / "enc")
    assert seen["use_gpu"] is False


def test_a_missing_local_folder_is_reported_as_a_path(tmp_path):
    files = ratescore_files(str(tmp_path / "nope"), "FremyCompany/BioLORD-2023-C")
    assert not files[0].present and str(tmp_path / "nope") in files[0].describe()
