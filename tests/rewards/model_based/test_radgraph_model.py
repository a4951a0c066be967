"""RadGraph model plumbing on CPU: a tiny DyGIE++ archive in the published layout, run through the package."""

from __future__ import annotations

import pytest
from tiny_weights import write_tiny_radgraph

from rewards.radgraph.model import RadGraphAnnotator, RadGraphScorer, model_files
from unirg.errors import RewardError


def test_missing_model_names_the_archive_and_how_to_get_it(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("rewards.radgraph.model._package_cache_dir", lambda model_type: None)
    with pytest.raises(RewardError) as error:
        RadGraphAnnotator(model_type="radgraph-xl")
    message = str(error.value)
    assert "radgraph-xl.tar.gz" in message
    assert "huggingface-cli download StanfordAIMI/RRG_scorers radgraph-xl.tar.gz" in message


def test_unknown_model_type_is_refused():
    with pytest.raises(RewardError, match="unknown RadGraph model_type 'radgraph-xxl'"):
        model_files("radgraph-xxl")


@pytest.fixture(scope="module")
def tiny_archive(tmp_path_factory):
    pytest.importorskip("radgraph", reason="the radgraph package is not installed (pip install 'unirg[radgraph]')")
    return write_tiny_radgraph(tmp_path_factory.mktemp("radgraph"))


def test_tiny_model_annotates_and_scores(tiny_archive, tmp_path, monkeypatch):
    monkeypatch.setattr("rewards.radgraph.model.UNPACK_ROOT", tmp_path / "unpacked")
    files = model_files("radgraph", tiny_archive)
    assert all(f.present for f in files)  # archive, then its encoder once unpacked
    annotator = RadGraphAnnotator("radgraph", model_path=tiny_archive)
    assert len(model_files("radgraph", tiny_archive)) == 2  # the encoder named in config.json is listed
    reports = ["no acute cardiopulmonary abnormality", "", "mild pulmonary edema"]
    annotations = annotator.annotate(reports)
    assert len(annotations) == 3 and annotations[1]["entities"] == {}
    for annotation in (annotations[0], annotations[2]):
        for entity in annotation["entities"].values():
            assert {"tokens", "label", "start_ix", "end_ix", "relations"} <= set(entity)

    scorer = RadGraphScorer(annotator)
    calls = []
    original = annotator.annotate
    monkeypatch.setattr(annotator, "annotate", lambda texts: calls.append(list(texts)) or original(texts))
    scores = scorer.score(reports, reports)
    assert scores[1].radgraph_f1 == 0.0  # an empty report scores 0, as in the radgraph package
    for score, annotation in ((scores[0], annotations[0]), (scores[2], annotations[2])):
        if annotation["entities"]:
            assert score.simple == 1.0 and score.entity_f1 == 1.0
    calls.clear()
    scorer.score(["mild pulmonary edema"] * 4 + ["small effusion"], [reports[0]] * 5)
    # cached reference and cached report are not annotated again; the new report once, not per copy
    assert calls == [["small effusion"]]


def test_unpacked_folder_is_accepted(tiny_archive, tmp_path, monkeypatch):
    import tarfile

    folder = tmp_path / "my-radgraph"
    with tarfile.open(tiny_archive) as tar:
        tar.extractall(folder, filter="data")
    monkeypatch.setattr("rewards.radgraph.model.UNPACK_ROOT", tmp_path / "cache")
    annotator = RadGraphAnnotator("radgraph", model_path=folder)
    assert len(annotator.annotate(["small left pleural effusion"])) == 1
