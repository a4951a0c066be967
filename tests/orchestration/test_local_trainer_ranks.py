"""`unirg rl` with cluster.trainer_workers=2 and no Ray address: a local Ray instance on loopback, two gloo ranks,
every step logged once; a run whose ranks fail ends at once with the failing rank named (sandboxed, CPU)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ray_sandbox import run_sandboxed, sandbox_unavailable, short_tmp_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STEPS = 3
ARGS = ["rl", "--recipe", str(REPO / "recipes" / "demo.yaml"), "sft=null", "evaluate=false",
        f"grpo.max_steps={STEPS}", "output.save_steps=2", "data.synthetic.n_train=16", "data.synthetic.n_eval=0",
        "grpo.per_device_train_batch_size=4", "grpo.num_generations=2", "rollout.max_new_tokens=12",
        "logging.progress=false", "logging.tensorboard=false", "cluster.trainer_workers=2", "cluster.num_cpus=2"]

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def unirg_rl(home: Path, *extra: str, timeout: float = 420) -> dict:
    """Run `python -m unirg rl` in the sandbox; its return code, output tail and wall time."""
    started = time.monotonic()
    result = run_sandboxed([sys.executable, "-m", "unirg", *ARGS, *extra], home=home, timeout=timeout, cwd=REPO)
    # Ray keeps streaming the workers' logs after the error line, so it is picked out rather than tailed.
    errors = [line for line in result.stderr.splitlines() if line.startswith("unirg rl: error")]
    return {"rc": result.returncode, "timed_out": result.timed_out, "seconds": time.monotonic() - started,
            "error": "\n".join(errors), "stdout": result.stdout[-3000:], "stderr": result.stderr[-3000:]}


@pytest.fixture(scope="module")
def runs() -> dict:
    if reason := sandbox_unavailable():
        pytest.skip(f"Ray tests need a private network namespace: {reason}")
    home = short_tmp_dir()
    try:
        # 3 completions per rank, 6 per step: not a multiple of 4 generations, which TRL refuses in every rank.
        failed = unirg_rl(home, "grpo.num_generations=4", "grpo.per_device_train_batch_size=3",
                          "--run-dir", str(home / "failed"), timeout=300)
        trained = unirg_rl(home, "--run-dir", str(home / "run"))
        run_dir = home / "run"
        metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()] \
            if (run_dir / "metrics.jsonl").is_file() else []
        check = subprocess.run(
            [sys.executable, "-c", "import sys, torch; from transformers import AutoModelForImageTextToText as M; "
             "M.from_pretrained(sys.argv[1], dtype=torch.float32)", str(run_dir / "grpo" / "final")],
            capture_output=True, text=True, timeout=300)
        print("wall s: failing run", round(failed["seconds"], 1), "| 2-rank run", round(trained["seconds"], 1))
        return {"failed": failed, "trained": trained, "steps": [row["step"] for row in metrics],
                "final_loads": check.returncode == 0, "final_error": check.stderr[-1500:],
                "ray_train_dir": (run_dir / "ray_train").is_dir()}
    finally:
        import shutil

        shutil.rmtree(home, ignore_errors=True)


def test_two_local_ranks_log_every_step_once(runs: dict) -> None:
    trained = runs["trained"]
    assert trained["rc"] == 0, trained["stderr"]
    assert runs["steps"] == list(range(1, STEPS + 1))
    assert runs["ray_train_dir"], "the run did not go through Ray Train"


def test_final_model_of_the_ranks_loads(runs: dict) -> None:
    assert runs["final_loads"], runs["final_error"]


def test_failing_ranks_end_the_run_with_the_rank_named(runs: dict) -> None:
    failed = runs["failed"]
    assert not failed["timed_out"], "a failure in the trainer ranks was retried instead of ending the run"
    assert failed["rc"] == 2, failed["stderr"]
    error = failed["error"]
    assert re.search(r"trainer process failed \([12] of 2\): rank [01]: ValueError", error), failed["stderr"]
    assert "num_generations" in error, error
