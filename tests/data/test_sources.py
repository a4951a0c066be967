"""Each study source read from a fixture in its real on-disk layout, through load_splits."""

from __future__ import annotations

from pathlib import Path

import pytest
from layouts import (
    write_chexpert_plus,
    write_iu_csv,
    write_iu_r2gen,
    write_mimic,
    write_rexgradient,
    write_rexrank,
)

from unirg.data import load_splits, read_splits
from unirg.data.config import DataConfig, PromptConfig
from unirg.data.sources.rexrank import parse_context
from unirg.errors import DataError


def test_rexrank(tmp_path: Path) -> None:
    path = write_rexrank(tmp_path)
    data = DataConfig(source="rexrank", path=str(path), on_bad_row="skip")
    splits = load_splits(data, PromptConfig(), tmp_path / "run")
    rows = {row["study_id"]: row for row in splits.train}
    assert set(rows) == {"s1", "s2"}
    # Only the key image by default (ReXrank names it; no view metadata, so it is listed first).
    assert len(rows["s1"]["images"]) == 1 and rows["s1"]["images"][0].mode == "RGB"
    every = load_splits(data.model_copy(update={"images": "all"}), PromptConfig(), tmp_path / "all").train
    assert [len(images) for images in every["images"]] == [2, 1]
    assert rows["s1"]["reference"] == "Findings: Mild cardiomegaly. No effusion.\nImpression: Cardiomegaly."
    assert "Indication: Dyspnea" in rows["s1"]["prompt"][0]["content"] and "Age: 70" in rows["s1"]["prompt"][0]["content"]
    assert rows["s2"]["sections"] == "findings" and rows["s2"]["reference"] == "Findings: Clear lungs."
    assert [(bad.study_id, bad.row) for bad in splits.bad_rows] == [("s3", 3)]
    with pytest.raises(DataError, match="s3"):
        load_splits(data.model_copy(update={"on_bad_row": "fail"}), PromptConfig(), tmp_path / "run2")


def test_rexrank_context() -> None:
    assert parse_context("Age: 63. Gender: F. Indication: Chest pain. Comparison: ___.") == {
        "age": "63", "sex": "F", "indication": "Chest pain", "comparison": "___"}
    assert parse_context("Cough for two weeks") == {"indication": "Cough for two weeks"}


def test_mimic_cxr(tmp_path: Path) -> None:
    root = write_mimic(tmp_path / "mimic-cxr-jpg")
    data = DataConfig(source="mimic_cxr", path=str(root), eval_split="validate", on_bad_row="skip")
    splits = read_splits(data, tmp_path)
    records = {record.study_id: record for record in splits["train"][0]}
    assert set(records) == {"50000001", "51000002"}
    first, second = records["50000001"], records["51000002"]
    assert first.findings == "The lungs are clear without focal consolidation. No pleural effusion or pneumothorax."
    assert first.impression == "No acute cardiopulmonary process."
    assert first.indication.startswith("___F with cough") and first.prior is None
    assert first.images[0].path.endswith("d1a.jpg") and first.images[0].view == "PA"
    # One-section report; AP frontal ordered before the lateral; the earlier study is its prior.
    assert second.findings == "" and second.impression.startswith("Interval improvement")
    assert second.images[0].path.endswith("d2a.jpg")
    assert second.prior is not None and second.prior.image.endswith("s50000001/d1a.jpg")
    assert "No acute cardiopulmonary process" in second.prior.report
    [bad] = splits["train"][1]
    assert bad.study_id == "53000000" and "report not found" in bad.reason and bad.file.endswith("metadata.csv")
    assert [record.study_id for record in splits["eval"][0]] == ["52000003"]
    # Labels from mimic-cxr-2.0.0-chexpert.csv, in CHEXPERT_OBSERVATIONS order (blank → None).
    assert first.labels[13] == 1 and first.labels[2] is None
    assert second.labels[2] == 1 and second.labels[6] == -1 and second.labels[9] == 0 and second.labels[0] is None


def test_mimic_longitudinal_prompt(tmp_path: Path) -> None:
    from trl.data_utils import prepare_multimodal_messages

    root = write_mimic(tmp_path / "mimic")
    data = DataConfig(source="mimic_cxr", path=str(root), on_bad_row="skip")
    splits = load_splits(data, PromptConfig(longitudinal=True, system_prompt="You are a radiologist."),
                         tmp_path / "run")
    rows = {row["study_id"]: row for row in splits.train}
    with_prior, without = rows["51000002"], rows["50000001"]
    assert len(with_prior["images"]) == 2  # prior image, then the study's key image
    content = with_prior["prompt"][1]["content"]
    assert [block["type"] for block in content][:3] == ["text", "image", "text"]
    assert "Prior report: Findings: The lungs are clear" in content[2]["text"]
    for row in (with_prior, without):
        messages = prepare_multimodal_messages(row["prompt"], row["images"])
        filled = [block for block in messages[1]["content"] if block["type"] == "image"]
        assert len(filled) == len(row["images"]) and all("image" in block for block in filled)


def test_chexpert_plus(tmp_path: Path) -> None:
    table = write_chexpert_plus(tmp_path / "chexpert-plus")
    data = DataConfig(source="chexpert_plus", path=str(table.parent), eval_split="valid", on_bad_row="skip")
    splits = load_splits(data, PromptConfig(), tmp_path / "run")
    rows = {row["study_id"]: row for row in splits.train}
    assert set(rows) == {"train/patient00001/study1", "train/patient00001/study2", "train/patient00002/study1"}
    first = rows["train/patient00001/study1"]
    assert len(first["images"]) == 1 and "Indication: Fever." in first["prompt"][0]["content"]
    assert "Sex: Female" in first["prompt"][0]["content"]
    # An impression-only study gets the impression template, so no findings are asked for or rewarded.
    assert rows["train/patient00002/study1"]["reference"] == "Impression: Stable support devices."
    assert rows["train/patient00002/study1"]["sections"] == "impression"
    assert splits.eval["study_id"] == ["valid/patient00003/study1"]
    # The Latin-1 report cell is a bad row, not silently altered text.
    [bad] = splits.bad_rows
    assert bad.study_id == "train/patient00004/study1" and bad.reason == "not UTF-8 text" and bad.row == 7


def test_chexpert_plus_prior_for_longitudinal_prompts(tmp_path: Path) -> None:
    table = write_chexpert_plus(tmp_path / "chexpert-plus")
    records = {r.study_id: r for r in read_splits(DataConfig(source="chexpert_plus", path=str(table)),
                                                   tmp_path)["train"][0]}
    later = records["train/patient00001/study2"]
    assert later.prior is not None and later.prior.image.endswith("patient00001/study1/view1_frontal.png")
    assert later.prior.report == "Findings: Left basilar opacity.\nImpression: Possible pneumonia."
    assert records["train/patient00001/study1"].prior is None


def test_iu_xray_csv_release(tmp_path: Path) -> None:
    root = write_iu_csv(tmp_path / "iu")
    train = read_splits(DataConfig(source="iu_xray", path=str(root), eval_split="test"), tmp_path)
    ids = [r.study_id for r in train["train"][0]] + [r.study_id for r in train["eval"][0]]
    assert len(set(ids)) == len(ids) > 0
    record = train["train"][0][0]
    assert record.images[0].view == "Frontal" and len(record.images) == 2


def test_iu_xray_r2gen(tmp_path: Path) -> None:
    root = write_iu_r2gen(tmp_path / "iu_xray")
    splits = load_splits(DataConfig(source="iu_xray", path=str(root), eval_split="val"), PromptConfig(),
                         tmp_path / "run")
    assert splits.train["study_id"] == ["CXR1_1_IM-0001", "CXR2_IM-0652"]
    assert splits.train[0]["sections"] == "findings"
    assert splits.train[0]["reference"] == "Findings: The cardiac silhouette is normal. No effusion."
    assert splits.eval["study_id"] == ["CXR3_IM-1384"]


def test_rexgradient(tmp_path: Path) -> None:
    path = write_rexgradient(tmp_path / "rexgradient")
    data = DataConfig(source="rexgradient", path=str(path), image_root=str(path.parent), eval_split="valid")
    splits = load_splits(data, PromptConfig(format="reasoning"), tmp_path / "run")
    assert splits.train["study_id"] == ["train-0", "train-1", "train-2"]
    assert splits.train[0]["reference"] == "Impression: Right effusion."
    assert "Age: 41Y" in splits.train[1]["prompt"][0]["content"]
    assert splits.eval.num_rows == 2
    # train-1 is train-0's patient a year later: its prior; the images column starts with the prior image.
    longitudinal = load_splits(data, PromptConfig(longitudinal=True), tmp_path / "run2").train
    assert [len(images) for images in longitudinal["images"]] == [1, 2, 1]
    assert "Prior report: Impression: Right effusion." in longitudinal[1]["prompt"][0]["content"][2]["text"]


def test_unknown_source_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="available: synthetic, manifest, rexrank"):
        read_splits(DataConfig(source="nope"), tmp_path)
    with pytest.raises(DataError, match="docs/data/mimic_cxr.md"):
        read_splits(DataConfig(source="mimic_cxr", path=str(tmp_path / "absent")), tmp_path)


def test_mimic_reports_elsewhere_and_undecodable_report(tmp_path: Path) -> None:
    """Gzipped CSVs as PhysioNet ships them; reports from the separate mimic-cxr-reports download
    (data.reports_path); a report that is not UTF-8 is a bad row."""
    import gzip
    import shutil

    root = write_mimic(tmp_path / "jpg")
    for table in root.glob("*.csv"):
        (root / f"{table.name}.gz").write_bytes(gzip.compress(table.read_bytes()))
        table.unlink()
    reports = tmp_path / "mimic-cxr-reports"
    for report in root.rglob("s*.txt"):
        target = reports / report.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(report, target)
    broken = reports / "files/p10/p10000001/s51000002.txt"
    broken.write_bytes(b"IMPRESSION: \xe9panchement.")
    data = DataConfig(source="mimic_cxr", path=str(root), reports_path=str(reports), on_bad_row="skip")
    records, bad = read_splits(data, tmp_path)["train"]
    assert [record.study_id for record in records] == ["50000001"]
    reasons = {row.study_id: row.reason for row in bad}
    assert reasons["51000002"].startswith("report is not UTF-8 text") and "report not found" in reasons["53000000"]
    assert records[0].labels[13] == 1  # labels from mimic-cxr-2.0.0-chexpert.csv.gz
