"""`unirg label` on an invented CSV: uid plus the 14 observations with 1, 0, -1 or blank."""

from __future__ import annotations

import csv

import pytest

from rewards.labeler import OBSERVATIONS
from unirg.cli import main
from unirg.errors import UnirgError

ROWS = [
    {"uid": "a1", "findings": "Heart size is normal. Lungs are clear.", "impression": "No acute disease."},
    {"uid": "b2", "findings": "Small right pleural effusion.", "impression": "Possible pneumonia."},
    {"uid": "c3", "findings": "", "impression": "Pneumothorax cannot be excluded. Left PICC line in place."},
    {"uid": "d4", "findings": "Épanchement, 肺. Mild cardiomegaly,\nno edema.", "impression": ""},
]


@pytest.fixture
def reports_csv(tmp_path):
    path = tmp_path / "reports.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["uid", "findings", "impression", "extra"])
        writer.writeheader()
        for row in ROWS:
            writer.writerow({**row, "extra": "ignored"})
    return path


def _run(*argv: str) -> int:
    return main(["label", *argv])


def test_label_writes_uid_and_14_columns(reports_csv, tmp_path, capsys):
    out = tmp_path / "sub" / "labels.csv"
    assert _run("--input", str(reports_csv), "--text-columns", "findings,impression", "--id-column", "uid",
                "--out", str(out)) == 0
    with out.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["uid", *OBSERVATIONS]
        rows = {row["uid"]: row for row in reader}
    assert list(rows) == ["a1", "b2", "c3", "d4"]
    assert all(v in ("1", "0", "-1", "") for row in rows.values() for k, v in row.items() if k != "uid")
    assert rows["a1"]["No Finding"] == "1" and rows["a1"]["Cardiomegaly"] == "0"
    assert rows["b2"]["Pleural Effusion"] == "1" and rows["b2"]["Pneumonia"] == "-1"
    assert rows["b2"]["No Finding"] == ""
    assert rows["c3"]["Pneumothorax"] == "-1" and rows["c3"]["Support Devices"] == "1"
    assert rows["d4"]["Cardiomegaly"] == "1" and rows["d4"]["Edema"] == "0"


def test_label_errors_name_the_file_and_column(reports_csv, tmp_path, capsys):
    import argparse

    from unirg.commands.label import run

    out = str(tmp_path / "labels.csv")

    def args(**overrides):
        values = {"input": str(reports_csv), "text_columns": "findings,impression", "id_column": "uid", "out": out}
        return argparse.Namespace(**{**values, **overrides})

    with pytest.raises(UnirgError, match="reports.csv.*summary"):
        run(args(text_columns="findings,summary"))
    with pytest.raises(UnirgError, match="reports.csv.*study"):
        run(args(id_column="study"))
    with pytest.raises(UnirgError, match="missing.csv"):
        run(args(input=str(tmp_path / "missing.csv")))
    # Through the command line: exit status 2 and the message, no traceback.
    assert _run("--input", str(reports_csv), "--text-columns", "summary", "--out", out) == 2
    assert "summary" in capsys.readouterr().err
