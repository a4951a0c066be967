"""Synthetic generator: labels follow the drawn findings, house-style wording, same seed same bytes, findings visible, fast."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from unirg.data.records import CHEXPERT_OBSERVATIONS
from unirg.data.synthetic import FINDINGS, WORDING_FREQUENCIES, DrawnStudy, generate_studies, render_image

INDEX = {name: i for i, name in enumerate(CHEXPERT_OBSERVATIONS)}


def _digest(folder: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            sha.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return sha.hexdigest()


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    generate_studies(tmp_path / "a", 12, seed=3, size=64)
    generate_studies(tmp_path / "b", 12, seed=3, size=64)
    generate_studies(tmp_path / "c", 12, seed=4, size=64)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_labels_match_drawn_findings(tmp_path: Path) -> None:
    manifest = generate_studies(tmp_path, 200, seed=1, size=48)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    seen = set()
    for row in rows:
        labels, drawn = row["labels"], row["drawn"]
        assert len(labels) == 14
        for name, (observation, _) in FINDINGS.items():
            if name in drawn:
                seen.add(name)
                assert labels[INDEX[observation]] == 1, (row["study_id"], name)
            elif name != "devices":
                assert labels[INDEX[observation]] == 0, (row["study_id"], name)
        clinical = [name for name in drawn if name != "devices"]
        assert labels[INDEX["No Finding"]] == (None if clinical else 1)
        # The report states the finding (side word present for sided findings).
        for name, attributes in drawn.items():
            if name in ("effusion", "pneumothorax", "consolidation", "atelectasis", "nodule"):
                assert attributes["side"] in (row["findings"] + row["impression"]).lower()
    assert seen == set(FINDINGS), "every finding kind occurs in 200 studies"


def test_house_style_wording_dominates_and_references_stay_varied(tmp_path: Path) -> None:
    """Each sentence's first phrasing is the common one (as in real report corpora); reports still differ."""
    manifest = generate_studies(tmp_path, 400, seed=5, size=32)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    normal_effusion = [row["findings"] for row in rows if "effusion" not in row["drawn"]]
    shares = [sum(phrase in text for text in normal_effusion) / len(normal_effusion)
              for phrase in ("No pleural effusion.", "There is no pleural effusion.", "No effusion is seen.")]
    assert shares[0] > shares[1] > shares[2] > 0, shares
    assert abs(shares[0] - WORDING_FREQUENCIES[0]) < 0.08, shares
    reports = [row["findings"] + " " + row["impression"] for row in rows]
    assert len(set(reports)) > 0.8 * len(reports), "references collapsed to a few texts"


def test_findings_are_visible() -> None:
    """Each finding changes the image a lot against the same study without it (same noise)."""
    attributes = {"side": "right", "zone": "lower", "severity": "large"}
    normal = render_image(DrawnStudy({}), np.random.default_rng(0), 112).astype(np.float32)
    for name in FINDINGS:
        drawn = {name: dict(attributes, side="bilateral") if name == "edema" else dict(attributes)}
        image = render_image(DrawnStudy(drawn), np.random.default_rng(0), 112).astype(np.float32)
        changed = np.abs(image - normal) > 40
        assert changed.mean() > 0.005, f"{name} changes only {changed.mean():.4f} of the pixels"


def test_five_hundred_studies_render_fast(tmp_path: Path) -> None:
    start = time.perf_counter()
    generate_studies(tmp_path, 500, seed=0, size=112)
    assert time.perf_counter() - start < 15
    assert len(list((tmp_path / "images").glob("*.png"))) == 500


def test_load_splits_synthetic_columns_and_reuse(tmp_path: Path) -> None:
    from unirg.data import load_splits
    from unirg.data.config import DataConfig, PromptConfig, SyntheticConfig

    data = DataConfig(source="synthetic", synthetic=SyntheticConfig(n_train=6, n_eval=2, size=64))
    splits = load_splits(data, PromptConfig(), tmp_path)
    assert splits.train.column_names == ["prompt", "images", "study_id", "dataset", "reference", "reference_findings",
                                         "reference_impression", "reference_labels", "sections"]
    row = splits.train[0]
    assert row["images"][0].mode == "RGB" and row["images"][0].size == (64, 64)
    assert len(row["reference_labels"]) == 14 and row["reference"].startswith("Findings: ")
    assert splits.eval.num_rows == 2 and splits.bad_rows == []
    manifests = sorted((tmp_path / "synthetic").rglob("manifest.jsonl"))
    stamps = [path.stat().st_mtime_ns for path in manifests]
    load_splits(data, PromptConfig(), tmp_path)
    assert [path.stat().st_mtime_ns for path in manifests] == stamps, "second run re-rendered the studies"


def test_synth_command(tmp_path: Path, capsys) -> None:
    from unirg.cli import main

    assert main(["data", "synth", "--n", "3", "--out", str(tmp_path), "--seed", "2", "--size", "48"]) == 0
    assert "rendered 3 studies" in capsys.readouterr().out
    assert len((tmp_path / "manifest.jsonl").read_text().splitlines()) == 3
