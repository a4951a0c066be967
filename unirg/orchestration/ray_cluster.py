"""Start or join Ray, place worker groups from the recipe's `cluster` section, and describe a `ray job submit`.

- `ensure_ray(cluster)`: join `RAY_ADDRESS` / `cluster.address`, or start a local instance bound to
  127.0.0.1 (dashboard, if any, on loopback too).
- `rollout_placement_group(...)`: one bundle per rollout worker, strategy from the recipe.
- `submit_runtime_env()` / `python -m unirg.orchestration runtime-env`: the runtime env `make submit`
  hands to `ray job submit` (working_dir without .git, data, runs, checkpoints or virtual environments).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from unirg.errors import UnirgError
from unirg.rollout.config import ClusterConfig

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
