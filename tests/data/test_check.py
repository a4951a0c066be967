"""Bad rows: `unirg data check` finds each kind; on_bad_row fail raises, skip lists them; nothing silent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unirg.cli import main
from unirg.data import load_splits
from unirg.data.config import DataConfig, PromptConfig
from unirg.data.manifest import read_manifest
from unirg.errors import DataError

EXPECTED = {
    "missing": "image not found",
    "broken": "unreadable image",
    "empty": "both findings and impression are empty",
    "nontext": "not text",
    "small": "image too small",
    "zerobyte": "image file is empty",
    "cutjpg": "(truncated file",
    "cutpng": "(truncated file",
    "good": "duplicate study_id",
    "badprior": "prior image not found",
    "": "not UTF-8 text",  # the line cannot be decoded, so its study id is unknown
}


def test_each_kind_of_bad_row_is_found(manifest_dir: Path) -> None:
    records, bad = read_manifest(manifest_dir / "manifest.jsonl")
    assert [record.study_id for record in records] == ["good"]
    reasons = {row.study_id: row.reason for row in bad}
    for study_id, reason in EXPECTED.items():
        assert reason in reasons[study_id], (study_id, reasons[study_id])
    assert len(bad) == len(EXPECTED)
    assert {row.row for row in bad} == set(range(2, 13))
    assert all(row.file.endswith("manifest.jsonl") for row in bad)


def test_data_check_command_lists_every_bad_row(manifest_dir: Path, capsys) -> None:
    status = main(["data", "check", "--manifest", str(manifest_dir / "manifest.jsonl")])
    out = capsys.readouterr().out
    assert status == 1
    assert f"train: 1 good, {len(EXPECTED)} bad" in out
    for study_id, reason in EXPECTED.items():
        assert f"(study {study_id or '?'}): " in out and reason in out
    assert "manifest.jsonl, row 12 (study ?): not UTF-8 text" in out


def test_on_bad_row_fail_names_file_row_study_and_fix(manifest_dir: Path, tmp_path: Path) -> None:
    data = DataConfig(source="manifest", path=str(manifest_dir / "manifest.jsonl"))
    with pytest.raises(DataError) as error:
        load_splits(data, PromptConfig(), tmp_path / "run")
    message = str(error.value)
    assert "manifest.jsonl, row 2 (study missing)" in message and "image not found" in message
    assert "on_bad_row=skip" in message


def test_on_bad_row_skip_counts_and_lists(manifest_dir: Path, tmp_path: Path) -> None:
    data = DataConfig(source="manifest", path=str(manifest_dir / "manifest.jsonl"), on_bad_row="skip")
    splits = load_splits(data, PromptConfig(), tmp_path / "run")
    assert splits.train["study_id"] == ["good"]
    assert len(splits.bad_rows) == len(EXPECTED)
    listed = [json.loads(line) for line in (tmp_path / "run" / "bad_rows.jsonl").read_text().splitlines()]
    assert {row["study_id"] for row in listed} == set(EXPECTED)
    assert set(listed[0]) == {"study_id", "file", "row", "reason", "dataset"}
    assert listed[0]["dataset"] == "manifest"


def test_csv_manifest_and_duplicate_ids(tmp_path: Path) -> None:
    from layouts import write_csv, write_png

    write_png(tmp_path / "a.png")
    write_png(tmp_path / "b.png")
    write_csv(tmp_path / "m.csv", [
        {"study_id": "s1", "images": "a.png|b.png", "findings": "Clear lungs.", "impression": "Normal.",
         "indication": "Cough", "age": "61", "sex": "F"},
        {"study_id": "s1", "images": "a.png", "findings": "Clear lungs.", "impression": "", "indication": "",
         "age": "", "sex": ""},
    ])
    records, bad = read_manifest(tmp_path / "m.csv")
    assert len(records) == 1 and len(records[0].images) == 2 and records[0].age == "61"
    assert bad[0].row == 3 and "duplicate study_id" in bad[0].reason


def test_data_check_with_a_recipe_and_overrides(manifest_dir: Path, capsys) -> None:
    manifest = manifest_dir / "manifest.jsonl"
    assert main(["data", "check", "--recipe", "demo", "data.source=manifest", f"data.path={manifest}"]) == 1
    assert f"train: 1 good, {len(EXPECTED)} bad" in capsys.readouterr().out
    assert main(["data", "check", "--recipe", "demo", "data.synthetic.n_train=4",
                 "data.synthetic.n_eval=2", "data.synthetic.size=48"]) == 0
    assert "train: 4 good, 0 bad" in capsys.readouterr().out


def test_csv_manifest_row_that_is_not_utf8(tmp_path: Path) -> None:
    from layouts import write_png

    write_png(tmp_path / "a.png")
    (tmp_path / "m.csv").write_bytes(b"study_id,images,findings\ns1,a.png,Clear lungs.\n"
                                     b"s2,a.png,Epanchement pleural \xe9.\n")
    records, bad = read_manifest(tmp_path / "m.csv")
    assert [record.study_id for record in records] == ["s1"]
    assert [(row.study_id, row.row, row.reason) for row in bad] == [("s2", 3, "not UTF-8 text")]


def test_data_check_on_a_dataset_source_from_a_recipe(tmp_path: Path, capsys) -> None:
    from layouts import write_mimic

    root = write_mimic(tmp_path / "mimic-cxr-jpg")
    status = main(["data", "check", "--recipe", "demo", "data.source=mimic_cxr", f"data.path={root}",
                   "data.eval_split=validate"])
    out = capsys.readouterr().out
    assert status == 1
    assert "train: 2 good, 1 bad" in out and "eval: 1 good, 0 bad" in out
    assert "mimic-cxr-2.0.0-metadata.csv, row 7 (study 53000000): report not found" in out
