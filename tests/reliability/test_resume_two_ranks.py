"""Two gloo trainer ranks under torchrun: a run killed after a checkpoint resumes to the uninterrupted run's
weights, and rank 0 alone writes the run folder (every step logged once)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from unirg.run_folder import CHECKPOINT_COMPLETE, read_rows

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ARGS = ["rl", "--recipe", "demo", "sft=null", "evaluate=false", "grpo.max_steps=4", "output.save_steps=2",
        "data.synthetic.n_train=16", "data.synthetic.n_eval=0", "grpo.per_device_train_batch_size=2",
        "grpo.num_generations=2", "rollout.max_new_tokens=12", "logging.progress=false",
        "logging.tensorboard=false"]


def _torchrun(run_dir: Path) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "unirg", *ARGS, "--run-dir", str(run_dir)]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _finish(run_dir: Path) -> str:
    process = _torchrun(run_dir)
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, output[-4000:]
    return output


def test_two_rank_run_killed_after_a_checkpoint_resumes_to_the_same_weights(tmp_path):
    uninterrupted = tmp_path / "uninterrupted"
    output = _finish(uninterrupted)
    assert output.count("GRPO steps") == 1, "the summary must be printed by rank 0 only"

    resumed = tmp_path / "resumed"
    process = _torchrun(resumed)
    deadline = time.monotonic() + 600
    while not (resumed / "grpo" / "checkpoint-2" / CHECKPOINT_COMPLETE).is_file():
        assert process.poll() is None, process.stdout.read()[-4000:]
        assert time.monotonic() < deadline, "checkpoint-2 never completed"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    output = _finish(resumed)
    assert "missing keys" not in output.lower()

    for run_dir in (uninterrupted, resumed):
        assert [row["step"] for row in read_rows(run_dir / "metrics.jsonl")] == [1, 2, 3, 4]
    a = load_file(uninterrupted / "grpo" / "final" / "model.safetensors")
    b = load_file(resumed / "grpo" / "final" / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
