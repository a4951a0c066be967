"""`make gpu-check` on a CPU machine: it refuses clearly, skips what the GPUs cannot hold, reads results."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from unirg import gpu_check
from unirg.gpu_check import Check, format_table, plan, run_check


def test_refuses_without_a_gpu(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert gpu_check.main(["--out", "unused"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_plan_covers_colocate_engine_pool_and_trainer_ranks(tmp_path):
    checks = plan(tmp_path / "model", tmp_path)
    assert {c.gpus for c in checks} == {1, 2}
    commands = [" ".join(c.command) for c in checks]
    assert any("unirg.rollout.sync_check" in c and "--backend nccl" in c for c in commands)
    assert any("--nproc_per_node=2 -m unirg rl" in c for c in commands)
    assert any("unirg.rollout.colocate_check" in c for c in commands)


def test_check_needing_more_gpus_is_skipped_not_passed():
    row = run_check(Check("pool", 2, [sys.executable, "-c", "raise SystemExit(0)"]), gpus=1, timeout_s=10)
    assert row["status"] == "skipped" and "needs 2 GPUs" in row["details"]["reason"]


@pytest.mark.parametrize("code, status", [(0, "pass"), (1, "FAIL")])
def test_results_and_exit_status_are_read(code, status):
    command = [sys.executable, "-c", f"print('RESULT {{\"max_abs_diff\": 1e-5}}'); raise SystemExit({code})"]
    row = run_check(Check("colocate", 1, command), gpus=1, timeout_s=30)
    assert row["status"] == status
    assert row["details"]["results"] == [{"max_abs_diff": 1e-5}]
    assert "| colocate | " + status in format_table([row], "1 x test GPU")


def test_a_run_that_logs_the_wrong_steps_fails(tmp_path: Path):
    run_dir = tmp_path / "rl"
    (run_dir / "grpo" / "final").mkdir(parents=True)
    (run_dir / "grpo" / "final" / "config.json").write_text("{}")
    (run_dir / "metrics.jsonl").write_text('{"step": 1}\n{"step": 1}\n')
    row = run_check(Check("rl", 1, [sys.executable, "-c", "pass"], run_dir=run_dir), gpus=1, timeout_s=30)
    assert row["status"] == "FAIL" and row["details"]["steps_logged"] == [1, 1]
