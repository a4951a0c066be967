"""`ray start --head` on loopback, `ray job submit` with unirg's runtime env, logs, `ray stop` (sandboxed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ray_sandbox import sandbox_unavailable  # noqa: E402
from rollout_scenarios import run_scenario  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def job_result() -> dict:
    if reason := sandbox_unavailable():
        pytest.skip(f"Ray tests need a private network namespace: {reason}")
    return run_scenario(SCENARIOS / "ray_job.py", "{home}", str(REPO), timeout=420, cwd=REPO)


def test_head_starts_on_loopback_only(job_result: dict) -> None:
    assert job_result["start_rc"] == 0, job_result["start_err"]
    # /proc/net/tcp addresses are hex words in host order: 0100007F is 127.0.0.1; in tcp6, ::1 and the
    # IPv4-mapped ::ffff:127.0.0.1. A wildcard bind (0.0.0.0 or ::) would show up as zeros.
    loopback = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}
    wildcard = [address for address in job_result["listening"] if address.split(":")[0] not in loopback]
    assert not wildcard, f"Ray listens beyond loopback: {wildcard}"


def test_job_submit_succeeds_and_logs_are_retrievable(job_result: dict) -> None:
    assert job_result["submit_rc"] == 0, job_result["submit_out"]
    assert "succeeded" in job_result["status"].lower(), job_result["status"]
    assert '"excludes"' in job_result["logs"], job_result["logs"]


def test_runtime_env_excludes_heavy_folders(job_result: dict) -> None:
    excludes = job_result["runtime_env"]["excludes"]
    for path in (".git", ".venv", ".venv-*", "data", "runs", "checkpoints"):
        assert path in excludes


def test_ray_stop_leaves_no_process(job_result: dict) -> None:
    assert job_result["stop_rc"] == 0
    leftovers = [line for line in job_result["left"] if "ray" in line.lower() or "python" in line.lower()]
    assert not leftovers, f"processes left after `ray stop`: {leftovers}"
