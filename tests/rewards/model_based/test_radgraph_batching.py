"""Batched RadGraph inference gives the annotations and rewards of the package's one-report-at-a-time forward."""

from __future__ import annotations

import tarfile
from types import SimpleNamespace

import pytest
from tiny_weights import REPORTS, write_tiny_radgraph

from rewards.radgraph.batching import supports_batching
from rewards.radgraph.model import RadGraphAnnotator
from unirg.errors import RewardError

# Words the tiny WordPiece vocabulary splits into many pieces: LONG (about 90 words, 5 sentences) has more
# wordpieces than the encoder's max_length of 512, so it is folded into two segments.
RARE = ("Pneumomediastinum, subcutaneous emphysema; tracheostomy cannula, Swan-Ganz catheter, hydropneumothorax, "
        "kyphoscoliosis, osteopenia, thoracolumbar spondylosis, cholecystectomy clips.")
LONG = " ".join([REPORTS[0], RARE, REPORTS[2], RARE, REPORTS[3], RARE, RARE])

# Varied lengths, so a report paired with its neighbour's outputs would show; empty, blank, one-word and
# punctuation-only reports; duplicates inside one batch and across batches.
VARIED = [
    *REPORTS,
    "",
    "   ",
    "effusion",
    ".",
    "No",
    "mild pulmonary edema",
    "mild pulmonary edema",
    "Heart size is normal. No pneumothorax. No pleural effusion. Lungs are clear.",
    "Small left pleural effusion / atelectasis (unchanged), no pneumothorax: stable.",
    "Interval placement of a right-sided PICC line with tip in the mid SVC.",
    LONG,
    "Findings:\n\nCardiomegaly.\nBibasilar opacities, likely atelectasis; cannot exclude pneumonia.",
    "no acute cardiopulmonary abnormality",
    REPORTS[0],
    "Endotracheal tube 2 cm above the carina",
    " ".join(REPORTS[1:4]),
    "No pleural effusion or pneumothorax. Heart size is normal.",
    "mild pulmonary edema",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    pytest.importorskip("radgraph", reason="the radgraph package is not installed (pip install 'unirg[radgraph]')")
    root = tmp_path_factory.mktemp("radgraph-batching")
    archive = write_tiny_radgraph(root)
    # A folder named after the model type is read in place: nothing is unpacked or linked in the user cache.
    folder = root / "radgraph"
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    return folder


@pytest.fixture(scope="module")
def annotator(model_dir):
    return RadGraphAnnotator("radgraph", model_path=model_dir, batch_size=1)


@pytest.fixture(scope="module")
def one_at_a_time(annotator):
    annotator.batch_size = 1
    return annotator.annotate(VARIED)


def test_reports_are_varied_and_the_model_finds_entities_and_relations(one_at_a_time):
    assert len(VARIED) >= 20
    labels = {e["label"] for a in one_at_a_time for e in a["entities"].values()}
    relations = [r for a in one_at_a_time for e in a["entities"].values() for r in e["relations"]]
    assert len(labels) >= 3 and len(relations) > 100  # the comparison below covers labels and relations
    long = one_at_a_time[VARIED.index(LONG)]
    assert max(e["end_ix"] for e in long["entities"].values()) > 80


@pytest.mark.parametrize("batch_size", [2, 3, 7, 16, 64])
def test_batched_annotations_equal_one_at_a_time(annotator, one_at_a_time, batch_size):
    annotator.batch_size = batch_size
    try:
        batched = annotator.annotate(VARIED)
    finally:
        annotator.batch_size = 1
    assert len(batched) == len(VARIED)
    for report, single, together in zip(VARIED, one_at_a_time, batched, strict=True):
        assert together == single, f"batch_size {batch_size} changed the annotation of {report[:60]!r}"


def test_plugin_rewards_are_identical_with_batch_size_1_and_16(model_dir):
    from rewards.radgraph.plugins import RadGraphComplete, RadGraphF1

    hypotheses = VARIED
    references = VARIED[3:] + VARIED[:3]
    results = {}
    for batch_size in (1, 16):
        f1 = RadGraphF1(model_path=model_dir, device="cpu", batch_size=batch_size)
        assert f1.scorer.annotator.batch_size == batch_size  # the option reaches the annotator
        output = f1.score(hypotheses, references)
        complete = RadGraphComplete(model_path=model_dir, device="cpu", batch_size=batch_size)
        results[batch_size] = (output.scores, output.parts, complete.score(hypotheses, references))
    assert results[16] == results[1]
    assert len(set(results[1][0])) > 3  # the rewards differ between reports: the comparison means something


def test_models_with_cross_sentence_heads_run_one_report_at_a_time():
    def model(coref=0.0, coref_prop=0, events=0.0):
        weights = {"ner": 1.0, "relation": 1.0, "coref": coref, "events": events}
        return SimpleNamespace(_loss_weights=weights, _coref=SimpleNamespace(coref_prop=coref_prop))

    assert supports_batching(model())
    assert not supports_batching(model(coref=1.0))
    assert not supports_batching(model(coref_prop=1))
    assert not supports_batching(model(events=0.5))


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True, "16"])
def test_bad_batch_size_is_refused_before_anything_loads(batch_size, tmp_path):
    from rewards.radgraph.plugins import RadGraphF1

    with pytest.raises(RewardError, match="batch_size must be a whole number >= 1"):
        RadGraphAnnotator("radgraph", model_path=tmp_path / "absent.tar.gz", batch_size=batch_size)
    with pytest.raises(RewardError, match="batch_size must be a whole number >= 1"):
        RadGraphF1(model_path=tmp_path / "absent.tar.gz", batch_size=batch_size)
