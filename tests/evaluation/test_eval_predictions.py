"""`unirg eval --predictions`: the metric table, its files, its errors, and the oracle values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ORACLES = REPO.parent / "shared" / "oracles"


def run_eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unirg", "eval", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


ROWS = [
    {"study_id": "a", "prediction": "Findings: Small left pleural effusion.\nImpression: Left effusion.",
     "reference": "Findings: Small left pleural effusion.\nImpression: Left pleural effusion."},
    {"study_id": "b", "prediction": "Findings: The lungs are clear.\nImpression: Normal.",
     "reference": "Findings: Moderate cardiomegaly. No effusion.\nImpression: Cardiomegaly."},
    {"study_id": "c", "prediction": "Findings: The lungs are clear.\nImpression: Normal.",
     "reference": "Findings: The lungs are clear.\nImpression: No acute process."},
]


def test_table_files_and_keys(tmp_path):
    result = run_eval("--predictions", str(write_jsonl(tmp_path / "p.jsonl", ROWS)), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for key in ("bleu2", "bleu4", "rouge_l", "chexpert_micro_f1_14", "chexpert_macro_f1_14", "chexpert_micro_f1_5",
                "chexpert_macro_f1_5", "bertscore", "radcliq_v1", "mean_words", "duplicate_rate", "n"):
        assert key in metrics, key
    assert metrics["n"] == 3
    assert metrics["bertscore"] is None and metrics["radcliq_v1"] is None
    assert metrics["duplicate_rate"] == pytest.approx(2 / 3)
    # a: effusion agrees; b: cardiomegaly missed; c: both normal (No Finding agrees).
    assert 0 < metrics["chexpert_micro_f1_14"] < 1
    assert set(metrics["settings"]) == {"findings", "findings_impression"}
    csv_lines = (tmp_path / "out" / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("setting,n,") and len(csv_lines) == 3
    assert "chexpert_micro_f1_14" in result.stdout


def test_bad_predictions_file_is_named_with_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    result = run_eval("--predictions", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert f"{path}, line 2: not valid JSON" in result.stderr
    write_jsonl(path, [ROWS[0], {"study_id": "x", "prediction": "y"}])
    result = run_eval("--predictions", str(path), "--out", str(tmp_path / "out"))
    assert "line 2: missing field(s) reference" in result.stderr


def test_bleu2_matches_the_rexrank_oracle(tmp_path):
    oracle = ORACLES / "bleu" / "cxr_report_metric_bleu2_derived.json"
    if not oracle.is_file():
        pytest.skip("../shared/oracles is not present (a user's clone has none)")
    pairs = json.loads(oracle.read_text())
    rows = [{"study_id": str(i), "prediction": p["hyp"], "reference": p["ref"], "reference_findings": p["ref"],
             "reference_impression": ""} for i, p in enumerate(pairs)]
    result = run_eval("--predictions", str(write_jsonl(tmp_path / "p.jsonl", rows)), "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    expected = sum(p["bleu2_nltk_method1"] for p in pairs) / len(pairs)
    assert metrics["bleu2"] == pytest.approx(expected, abs=1e-9)
