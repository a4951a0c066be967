"""Scenario: reward plugins in Ray actors: batching, failures as None, timeouts, and the stop after N failed calls."""

from __future__ import annotations

import time

from common import emit

from unirg.errors import RewardError
from unirg.rollout.config import ClusterConfig
from unirg.rollout.reward_actor import RayReward, wrap_ray_rewards


def length(completions, **kwargs):
    """Length of each completion, and proof that per-sample columns arrive batched."""
    return [float(len(c)) + 0.0 * len(kwargs["reference"]) for c in completions]


def picky(completions, **kwargs):
    if any("bad" in c for c in completions):
        raise ValueError("cannot score 'bad'")
    return [1.0] * len(completions)


def slow(completions, **kwargs):
    time.sleep(60)
    return [1.0] * len(completions)


def broken(completions, **kwargs):
    raise RuntimeError("model weights not found")


def main() -> None:
    cluster = ClusterConfig(num_cpus=2, reward_cpus_per_worker=0.5, reward_batch_size=2, reward_timeout_s=5,
                            reward_max_consecutive_failures=2, ray_rewards=["length", "picky", "slow", "broken"])
    completions = ["a", "bb", "bad", "dddd", "eeeee"]
    references = ["r"] * 5
    wrapped = wrap_ray_rewards([length, picky, slow, broken], cluster)
    ok, partial, hang, failing = wrapped
    out = {"names": [w.__name__ for w in wrapped], "types": [type(w).__name__ for w in wrapped],
           "ok": ok(completions, reference=references), "partial": partial(completions, reference=references),
           "partial_stats": partial.stats()}
    started = time.monotonic()
    out["hang"] = hang(completions, reference=references)
    out["hang_seconds"] = time.monotonic() - started
    out["hang_stats"] = hang.stats()
    out["failing_first"] = failing(completions, reference=references)
    try:
        failing(completions, reference=references)
        out["failing_error"] = None
    except RewardError as error:
        out["failing_error"] = str(error)
    try:
        wrap_ray_rewards([length], ClusterConfig(ray_rewards=["lenght"]))
    except RewardError as error:
        out["unknown_name_error"] = str(error)
    out["isinstance"] = isinstance(ok, RayReward)
    # Two trainer ranks of one run wrap the same plugin: they must reach one actor, not two.
    one = cluster.model_copy(update={"ray_rewards": ["length"]})
    rank0, = wrap_ray_rewards([length], one, run_key="runs/shared")
    rank1, = wrap_ray_rewards([length], one, run_key="runs/shared")
    other, = wrap_ray_rewards([length], one, run_key="runs/other")
    out["shared_scores"] = [rank0(completions, reference=references), rank1(completions, reference=references)]
    ids = [w._host()._actor_id.hex() for w in (rank0, rank1, other)]
    out["shared_same_actor"] = ids[0] == ids[1]
    out["other_run_other_actor"] = ids[0] != ids[2]
    emit(out)


if __name__ == "__main__":
    main()
