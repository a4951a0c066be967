"""Start or join Ray, size and place worker groups from the recipe's `cluster` section, describe a `ray job submit`.

- `ensure_ray(cluster)`: join `RAY_ADDRESS` / `cluster.address`, or start a local instance bound to
  127.0.0.1 (dashboard, if any, on loopback too).
- `trainer_bundles(...)` / `rollout_bundles(...)`: one resource bundle per trainer process / rollout worker;
  `resource_budget(...)` adds them up with the reward actors, and `check_budget(...)` refuses a run the
  cluster cannot hold before anything waits for resources that will never come.
- `rollout_placement_group(...)`: the rollout workers' bundles reserved as one placement group.
- `submit_runtime_env()` / `python -m unirg.orchestration runtime-env`: the runtime env `make submit`
  hands to `ray job submit` (working_dir without .git, data, runs, checkpoints or virtual environments).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from unirg.errors import UnirgError
from unirg.rollout.config import ClusterConfig, RolloutConfig

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

# Paths `ray job submit` must not upload: Ray caps a working_dir at 100 MiB, and none of these are code.
SUBMIT_EXCLUDES = [
    ".git", ".venv", ".venv-*", "venv", "data", "runs", "outputs", "checkpoints", "wandb",
    "*.safetensors", "*.bin", "*.pt", "*.ckpt", "__pycache__", "*.pyc", ".cache", ".pytest_cache",
    ".ruff_cache", ".hypothesis", "*.egg-info", "build", "dist",
]


class ClusterError(UnirgError):
    """Ray could not be started, joined, or could not place the requested workers."""


def ray_address(cluster: ClusterConfig) -> str | None:
    """The Ray cluster to join: RAY_ADDRESS wins over the recipe's `cluster.address`; None means start one."""
    return os.environ.get("RAY_ADDRESS") or cluster.address


def ensure_ray(cluster: ClusterConfig, runtime_env: dict[str, Any] | None = None) -> dict[str, Any]:
    """Connect this process to Ray (join or start on loopback) unless it already is; return the context info."""
    import ray

    if ray.is_initialized():
        return {"address": ray.get_runtime_context().gcs_address, "started": False}
    address = ray_address(cluster)
    common: dict[str, Any] = {"runtime_env": runtime_env, "logging_level": logging.WARNING,
                              "log_to_driver": True}
    try:
        if address:
            context = ray.init(address=address, **common)
            started = False
        else:
            # Ray binds its ports to the node IP and the dashboard to 0.0.0.0 unless told otherwise;
            # a local instance is for this machine only.
            context = ray.init(num_cpus=cluster.num_cpus, _node_ip_address=LOOPBACK,
                               include_dashboard=cluster.dashboard, dashboard_host=LOOPBACK, **common)
            started = True
    except ConnectionError as error:
        raise ClusterError(f"cannot join Ray at {address!r} (from {'RAY_ADDRESS' if os.environ.get('RAY_ADDRESS') else 'cluster.address'}): "
                           f"{error}. Start the head with `ray start --head` (see docs/multinode.md) or unset "
                           "it to start a local instance.") from None
    info = {"address": context.address_info.get("gcs_address") if hasattr(context, "address_info") else None,
            "dashboard_url": getattr(context, "dashboard_url", None), "started": started}
    logger.info("Ray %s: %s", "started locally" if started else "joined", info)
    return info


def trainer_gpus(cluster: ClusterConfig, gpus_available: float) -> float:
    """GPUs per trainer process: `cluster.trainer_gpus_per_worker`, or 1 when GPUs are there and it is None."""
    if cluster.trainer_gpus_per_worker is not None:
        return cluster.trainer_gpus_per_worker
    return 1.0 if gpus_available > 0 else 0.0


def trainer_bundles(cluster: ClusterConfig, gpus_per_worker: float) -> list[dict[str, float]]:
    """One resource bundle per trainer process: its CPUs and, on GPU, the GPU share it trains on.

    The GPU is in the bundle so that Ray counts it as taken: rollout and reward actors placed later
    (PACK) can then never land on a trainer's device.
    """
    bundle: dict[str, float] = {"CPU": cluster.trainer_cpus_per_worker}
    if gpus_per_worker > 0:
        bundle["GPU"] = gpus_per_worker
    return [dict(bundle) for _ in range(cluster.trainer_workers)]


def reward_actor_count(cluster: ClusterConfig) -> int:
    """Reward actors a run starts: one per plugin, shared by every trainer rank."""
    return len(cluster.ray_rewards)


def resource_budget(cluster: ClusterConfig, rollout: RolloutConfig, gpus_per_trainer: float,
                    rewards: Sequence[Any] = (), cluster_has_gpus: bool = False) -> dict[str, Any]:
    """CPUs and GPUs the whole run holds at once: trainer processes, rollout workers, reward and judge actors.

    `rewards` (the recipe's reward entries) adds one actor per judge model a reward serves in Ray
    (`options.serve`, see rewards.judge_server), with its `serve.gpu_fraction` and `serve.cpus`.

    Returns {"CPU": …, "GPU": …, "parts": {group: (count, bundle)}} so an error can say where it went.
    """
    parts: dict[str, tuple[int, dict[str, float]]] = {}
    parts["trainer processes (cluster.trainer_*)"] = (cluster.trainer_workers,
                                                      trainer_bundles(cluster, gpus_per_trainer)[0])
    if rollout.backend == "vllm_ray":
        parts["rollout workers (rollout.num_workers, cluster.rollout_*_per_worker)"] = (
            rollout.num_workers, rollout_bundles(cluster, 1)[0])
    if cluster.ray_rewards:
        reward = {"CPU": cluster.reward_cpus_per_worker}
        if cluster.reward_gpus_per_worker > 0:
            reward["GPU"] = cluster.reward_gpus_per_worker
        parts["reward actors (cluster.ray_rewards x trainer_workers, cluster.reward_*_per_worker)"] = (
            reward_actor_count(cluster), reward)
    from rewards.judge_server import served_judge_bundles

    for index, bundle in enumerate(served_judge_bundles(rewards, cluster_has_gpus)):
        parts[f"served judge {index + 1} (rewards.*.options.serve.gpu_fraction, serve.cpus)"] = (1, bundle)
    total = {key: sum(count * bundle.get(key, 0.0) for count, bundle in parts.values()) for key in ("CPU", "GPU")}
    return {**total, "parts": parts}


def check_budget(budget: dict[str, Any], available: dict[str, float]) -> None:
    """Raise ClusterError, itemised, when the run needs more CPUs or GPUs than Ray has free.

    Ray would otherwise keep the trainer waiting for a placement group that cannot be satisfied (an
    actor already holding the CPU it needs), retrying without end.
    """
    short = [key for key in ("CPU", "GPU") if budget[key] > available.get(key, 0.0) + 1e-9]
    if not short:
        return
    lines = [f"  {count} x {bundle}  {group}" for group, (count, bundle) in budget["parts"].items()]
    raise ClusterError(
        "the run needs " + ", ".join(f"{budget[key]:g} {key}" for key in ("CPU", "GPU") if budget[key])
        + f" but Ray has {', '.join(f'{available.get(key, 0.0):g} {key}' for key in ('CPU', 'GPU'))} free:\n"
        + "\n".join(lines) + "\nLower those counts or per-worker shares, or add nodes "
        "(`ray status` shows what each node offers).")


def wait_for_budget(budget: dict[str, Any], timeout_s: float, poll_s: float = 2.0) -> None:
    """Return once Ray has `budget` free; fail at once if the whole cluster is too small, else after `timeout_s`.

    A job submitted right after another was stopped finds that job's actors still being torn down for a
    few seconds; a cluster that is simply too small never gets better.
    """
    import ray

    check_budget(budget, ray.cluster_resources())
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            check_budget(budget, ray.available_resources())
            return
        except ClusterError as error:
            if time.monotonic() >= deadline:
                raise ClusterError(f"{error}\n(waited {timeout_s:.0f} s, cluster.trainer_start_timeout_s, for "
                                   "other work on the cluster to free them)") from None
        time.sleep(poll_s)


def rollout_bundles(cluster: ClusterConfig, num_workers: int) -> list[dict[str, float]]:
    """One resource bundle per rollout worker, from `cluster.rollout_{cpus,gpus}_per_worker`."""
    bundle: dict[str, float] = {"CPU": cluster.rollout_cpus_per_worker}
    if cluster.rollout_gpus_per_worker > 0:
        bundle["GPU"] = cluster.rollout_gpus_per_worker
    return [dict(bundle) for _ in range(num_workers)]


def rollout_placement_group(cluster: ClusterConfig, num_workers: int, timeout_s: float = 120.0):
    """Reserve the rollout workers' resources as one placement group, or fail saying what is missing."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    bundles = rollout_bundles(cluster, num_workers)
    group = placement_group(bundles, strategy=cluster.placement_strategy, name="unirg-rollout")
    ready, _ = ray.wait([group.ready()], timeout=timeout_s)
    if not ready:
        remove_placement_group(group)
        raise ClusterError(
            f"Ray could not place {num_workers} rollout workers of {bundles[0]} each "
            f"(strategy {cluster.placement_strategy}) within {timeout_s:.0f} s; the cluster offers "
            f"{ray.cluster_resources()}. Lower rollout.num_workers or cluster.rollout_*_per_worker, or add nodes.")
    return group


def reward_actor_options(cluster: ClusterConfig) -> dict[str, Any]:
    """Ray options for a heavy reward actor: its own CPU and GPU share from the recipe."""
    options: dict[str, Any] = {"num_cpus": cluster.reward_cpus_per_worker}
    if cluster.reward_gpus_per_worker > 0:
        options["num_gpus"] = cluster.reward_gpus_per_worker
    return options


def submit_runtime_env(working_dir: str = ".") -> dict[str, Any]:
    """Runtime env for `ray job submit`: the code as working_dir, without data, runs or environments."""
    env_vars = {"TOKENIZERS_PARALLELISM": "false"}
    for name in ("HF_HUB_OFFLINE", "HF_HOME", "UNIRG_DATA_DIR"):
        if os.environ.get(name):
            env_vars[name] = os.environ[name]
    return {"working_dir": working_dir, "excludes": SUBMIT_EXCLUDES, "env_vars": env_vars}


def main(argv: list[str] | None = None) -> int:
    """`python -m unirg.orchestration runtime-env`: print the submit runtime env as JSON (for the Makefile)."""
    parser = argparse.ArgumentParser(prog="python -m unirg.orchestration")
    sub = parser.add_subparsers(dest="command", required=True)
    env = sub.add_parser("runtime-env", help="print the runtime env JSON for `ray job submit`")
    env.add_argument("--working-dir", default=".")
    args = parser.parse_args(argv)
    if args.command == "runtime-env":
        json.dump(submit_runtime_env(args.working_dir), sys.stdout)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
