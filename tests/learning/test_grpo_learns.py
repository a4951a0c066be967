"""The clinical reward rises over a short, seeded GRPO run from an SFT checkpoint: a check that fails if the
reward or the policy update is broken (a broken sign, a reward that ignores the report, no weight update)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
STEPS = 60
WINDOW = 20


def test_clinical_reward_rises_during_grpo(tmp_path):
    run_dir = tmp_path / "run"
    args = ["rl", "--recipe", "demo", "--run-dir", str(run_dir), "seed=0", "evaluate=false",
            "data.synthetic.n_eval=0",
            f"grpo.max_steps={STEPS}", "output.save_steps=100", "logging.progress=false",
            "logging.tensorboard=false"]
    result = subprocess.run([sys.executable, "-m", "unirg", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=1200, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    clinical = [row["rewards/chexpert_f1/mean"] for row in rows]
    assert len(clinical) == STEPS
    first, last = sum(clinical[:WINDOW]) / WINDOW, sum(clinical[-WINDOW:]) / WINDOW
    assert last > first + 0.02, f"chexpert_f1 did not rise: first {WINDOW} steps {first:.3f}, last {last:.3f}"
