"""Heavy reward plugins in Ray actors: batched, None on failure, bounded by a timeout, stop after N failed calls."""

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
def outcome() -> dict:
    if reason := sandbox_unavailable():
        pytest.skip(f"Ray tests need a private network namespace: {reason}")
    return run_scenario(SCENARIOS / "reward_actor.py", timeout=300, cwd=REPO)


def test_wrapped_rewards_keep_their_names(outcome: dict) -> None:
    assert outcome["names"] == ["length", "picky", "slow", "broken"]
    assert outcome["isinstance"]


def test_batches_score_every_sample(outcome: dict) -> None:
    assert outcome["ok"] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_failed_batch_marks_only_its_samples_none(outcome: dict) -> None:
    # Batches of 2: ["a", "bb"], ["bad", "dddd"], ["eeeee"]; only the middle one raises.
    assert outcome["partial"] == [1.0, 1.0, None, None, 1.0]
    assert outcome["partial_stats"] == {"calls": 1, "failed_calls": 0, "failed_samples": 2}


def test_hanging_plugin_times_out_as_missing_rewards(outcome: dict) -> None:
    assert outcome["hang"] == [None] * 5
    assert outcome["hang_seconds"] < 5 + 10
    assert outcome["hang_stats"]["failed_calls"] == 1


def test_plugin_failing_every_call_stops_the_run_naming_it(outcome: dict) -> None:
    assert outcome["failing_first"] == [None] * 5
    assert "reward plugin 'broken' failed 2 calls in a row" in outcome["failing_error"]
    assert "model weights not found" in outcome["failing_error"]


def test_unknown_ray_reward_name_is_reported(outcome: dict) -> None:
    assert "lenght" in outcome["unknown_name_error"]


def test_ranks_of_one_run_share_one_reward_actor(outcome: dict) -> None:
    assert outcome["shared_scores"] == [[1.0, 2.0, 3.0, 4.0, 5.0]] * 2
    assert outcome["shared_same_actor"]
    assert outcome["other_run_other_actor"]
