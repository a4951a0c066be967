"""A real `unirg rl` run killed with SIGKILL at several points resumes, logs every step exactly once and ends
with the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from unirg.run_folder import read_rows

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MAX_STEPS = 8
ARGS = ["rl", "--recipe", str(REPO / "recipes" / "demo.yaml"), "sft=null", "evaluate=false",
        f"grpo.max_steps={MAX_STEPS}", "output.save_steps=2", "data.synthetic.n_train=16",
        "data.synthetic.n_eval=0", "grpo.per_device_train_batch_size=4", "grpo.num_generations=2",
        "rollout.max_new_tokens=12", "logging.progress=false", "logging.tensorboard=false"]


def _start(run_dir: Path) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.Popen([sys.executable, "-m", "unirg", *ARGS, "--run-dir", str(run_dir)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _steps(run_dir: Path) -> list[int]:
    return [row["step"] for row in read_rows(run_dir / "metrics.jsonl") if "step" in row]


def _kill_when(process: subprocess.Popen, condition, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"run ended before the kill point: {process.stderr.read()[-3000:]}")
        if condition():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return
        time.sleep(0.01)
    process.kill()
    pytest.fail("kill point never reached")


def _checkpoint_being_written(run_dir: Path) -> bool:
    return any(not (c / "unirg_checkpoint_complete").exists() for c in (run_dir / "grpo").glob("checkpoint-*"))


def test_killed_run_resumes_without_duplicated_or_skipped_steps(tmp_path):
    run_dir = tmp_path / "run"
    # 1: during training steps (generation dominates a step), after the first checkpoint.
    _kill_when(_start(run_dir), lambda: len(_steps(run_dir)) >= 3)
    first = _steps(run_dir)
    # 2: while a checkpoint folder exists but is not marked complete (mid-write).
    _kill_when(_start(run_dir), lambda: _checkpoint_being_written(run_dir) and len(_steps(run_dir)) >= 4)
    # 3: straight after start, while data and model load.
    _kill_when(_start(run_dir), lambda: True)
    final = _finish(run_dir)
    assert "missing keys" not in final.stderr.lower(), "checkpoint weights were not loaded on resume"
    assert first, "the first run logged no step before it was killed"
    assert _steps(run_dir) == list(range(1, MAX_STEPS + 1))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == MAX_STEPS
    assert (run_dir / "grpo" / f"checkpoint-{MAX_STEPS}" / "unirg_checkpoint_complete").is_file()
    _finish(tmp_path / "uninterrupted")
    resumed = load_file(run_dir / "grpo" / "final" / "model.safetensors")
    uninterrupted = load_file(tmp_path / "uninterrupted" / "grpo" / "final" / "model.safetensors")
    assert max((resumed[k] - uninterrupted[k]).abs().max().item() for k in uninterrupted) <= 1e-6
    start = load_file(next(run_dir.glob("tiny-*/model.safetensors")))
    assert not torch.equal(resumed["model.embed_tokens.weight"], start["model.embed_tokens.weight"])


def _finish(run_dir: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "unirg", *ARGS, "--run-dir", str(run_dir)], cwd=REPO,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result
