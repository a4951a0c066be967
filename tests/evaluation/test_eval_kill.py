"""`unirg eval --model` killed for real (SIGKILL) once predictions.jsonl is part written: the same command then
generates only the missing studies, and the finished file equals an uninterrupted run's, each study once."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
STUDIES = 10
KILL_AFTER = 2  # complete lines in predictions.jsonl before the kill

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def rexrank_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rexrank")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    payload = {}
    for i in range(STUDIES):
        Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8), mode="L").save(root / "images" / f"{i}.png")
        payload[f"s{i}"] = {"key_image_path": f"images/{i}.png", "image_path": [f"images/{i}.png"],
                            "context": f"Age: {40 + i}.", "section_findings": "Clear lungs.",
                            "section_impression": "Normal."}
    path = root / "iu_xray_test.json"
    path.write_text(json.dumps(payload))
    return path


def command(model: Path, data: Path, out: Path) -> list[str]:
    # One study per batch (one flushed line each) and long enough reports that a study takes a visible time.
    return [sys.executable, "-m", "unirg", "eval", "--model", str(model), "--data", f"rexrank:{data}",
            "--backend", "hf", "--batch-size", "1", "--max-new-tokens", "48", "--mode", "rexrank", "--out", str(out)]


def complete_lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]


def generated_and_reused(stdout: str) -> tuple[int, int]:
    found = re.search(r"(\d+) reports generated, (\d+) already there", stdout)
    assert found, stdout[-2000:]
    return int(found.group(1)), int(found.group(2))


def test_killed_run_is_finished_by_the_same_command(tiny_model, rexrank_file, tmp_path):
    reference = tmp_path / "uninterrupted"
    result = subprocess.run(command(tiny_model, rexrank_file, reference), cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert generated_and_reused(result.stdout) == (STUDIES, 0)
    expected = [json.loads(line) for line in complete_lines(reference / "predictions.jsonl")]

    out = tmp_path / "killed"
    predictions = out / "predictions.jsonl"
    process = subprocess.Popen(command(tiny_model, rexrank_file, out), cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while len(complete_lines(predictions)) < KILL_AFTER:
            assert process.poll() is None, "the run ended before it was killed"
            assert time.monotonic() < deadline, "no predictions written within 300 s"
            time.sleep(0.01)
        process.kill()  # SIGKILL: no handler runs, the file is left as the kernel has it
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -9
    done_at_kill = len(complete_lines(predictions))
    assert KILL_AFTER <= done_at_kill < STUDIES, f"{done_at_kill} of {STUDIES} written at the kill"

    result = subprocess.run(command(tiny_model, rexrank_file, out), cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert generated_and_reused(result.stdout) == (STUDIES - done_at_kill, done_at_kill)
    timing = json.loads((out / "generation.json").read_text())
    assert (timing["generated"], timing["reused"]) == (STUDIES - done_at_kill, done_at_kill)
    finished = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert sorted(r["study_id"] for r in finished) == sorted(f"s{i}" for i in range(STUDIES))  # each exactly once
    assert finished == expected  # greedy: the same reports, in the same order, as the uninterrupted run
    assert (out / "metrics.json").is_file()
