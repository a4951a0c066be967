"""`unirg eval --model --data`: a tiny model on a ReXrank-format test file writes predictions.jsonl and both
settings' tables; a run killed mid-file is finished by the same command without regenerating done studies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
STUDIES = 5


@pytest.fixture(scope="module")
def rexrank_file(tmp_path_factory) -> Path:
    """A ReXrank test JSON (keyed by study id, image paths relative to its folder) of five studies."""
    root = tmp_path_factory.mktemp("rexrank")
    payload = {}
    for i in range(STUDIES):
        pixels = np.full((64, 64), 40 * i, dtype=np.uint8)
        (root / "images").mkdir(exist_ok=True)
        Image.fromarray(pixels, mode="L").save(root / "images" / f"s{i}.png")
        payload[f"s{i}"] = {"key_image_path": f"images/s{i}.png", "image_path": [f"images/s{i}.png"],
                            "context": "Age: 60. Gender: F. Indication: Cough.",
                            "section_findings": "Clear lungs." if i % 2 else "Mild cardiomegaly.",
                            "section_impression": "Normal." if i != 3 else ""}
    path = root / "mimic-cxr_test.json"
    path.write_text(json.dumps(payload))
    return path


def run_eval(model: Path, data: Path, out: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "unirg", "eval", "--model", str(model), "--data", f"rexrank:{data}",
               "--backend", "hf", "--batch-size", "2", "--max-new-tokens", "6", "--mode", "rexrank", "--out", str(out)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_predictions_tables_and_resume(tiny_model, rexrank_file, tmp_path):
    full = tmp_path / "full"
    result = run_eval(tiny_model, rexrank_file, full)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = lines(full / "predictions.jsonl")
    assert [r["study_id"] for r in rows] == [f"s{i}" for i in range(STUDIES)]
    assert set(rows[0]) >= {"study_id", "prediction", "reference", "reference_findings", "reference_impression"}
    assert rows[0]["reference_findings"] == "Mild cardiomegaly."
    metrics = json.loads((full / "metrics.json").read_text())
    assert set(metrics["settings"]) == {"findings", "findings_impression"}
    assert metrics["settings"]["findings"]["n"] == STUDIES
    assert json.loads((full / "generation.json").read_text())["generated"] == STUDIES

    # What a kill leaves: two finished lines and a third cut off mid-write. The first two carry a marker
    # prediction, so a regenerated study would show.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    kept = [dict(r, prediction=f"kept {r['study_id']}") for r in rows[:2]]
    (resumed / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept)
                                               + json.dumps(rows[2])[:25])
    result = run_eval(tiny_model, rexrank_file, resumed)
    assert result.returncode == 0, result.stderr[-3000:]
    again = lines(resumed / "predictions.jsonl")
    assert [r["study_id"] for r in again] == [f"s{i}" for i in range(STUDIES)]
    assert again[:2] == kept
    assert again[2:] == rows[2:]  # greedy: the same reports as the uninterrupted run
    timing = json.loads((resumed / "generation.json").read_text())
    assert (timing["generated"], timing["reused"]) == (3, 2)

    # Everything done: a third run scores without loading the model.
    result = run_eval(tiny_model, rexrank_file, resumed)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((resumed / "generation.json").read_text())["generated"] == 0
