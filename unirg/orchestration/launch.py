"""Run the `unirg rl` pipeline in this process, or as N torch.distributed trainer processes placed by Ray Train.

`launch(recipe, run_dir)` is what `unirg rl` calls, locally and under `ray job submit` alike:

- one trainer process and no Ray address: the pipeline runs right here, without starting Ray (the demo);
- otherwise Ray Train's `TorchTrainer` starts `cluster.trainer_workers` processes, each reserving
  `trainer_cpus_per_worker` CPUs and `trainer_gpus_per_worker` GPUs in one placement group, joined in a
  process group (gloo on CPU, NCCL on GPU), and every process runs the same `run_pipeline`. Rank 0 writes
  the run folder and hands the result back; `unirg.distributed` tells the pipeline which rank it is.

What this module guards against, each measured with TRL 1.16 under Ray Train on CPU: workers start in
Ray's artifacts folder (paths are made absolute, the submitting directory restored); Ray's print patch
corrupts dill output (`RAY_TRAIN_ENABLE_PRINT_PATCH=0`); a worker group that cannot be placed is retried
without end (the budget is checked first, and a failed start ends the run); a rank whose accelerate state
is not distributed trains alone without any error (the world size is asserted in every process).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from unirg.data.config import DATA_DIR_ENV, resolve_data_paths
from unirg.errors import RecipeError
from unirg.orchestration.ray_cluster import (
    ClusterError,
    ensure_ray,
    ray_address,
    resource_budget,
    trainer_bundles,
    trainer_gpus,
    wait_for_budget,
)
from unirg.recipe import Recipe

logger = logging.getLogger(__name__)

# Variables a trainer process needs from the submitting shell; Ray workers on a joined cluster inherit
# the environment of `ray start`, not this one.
FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HOME", "HF_HUB_CACHE",
                 "UNIRG_DATA_DIR", "TOKENIZERS_PARALLELISM", "PYTHONHASHSEED")

# Ray Train settings read from the driver's environment and propagated to its controller and workers.
# The print patch rewrites every print of a worker and corrupts the dill output datasets' map() hashes by.
RAY_TRAIN_ENV = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}

# GRPOConfig / SFTConfig fields that choose the sharding; set from `cluster.trainer_backend`.
SHARDING_FIELDS = ("fsdp", "fsdp_config", "deepspeed")


def placement(recipe: Recipe, address: str | None, local_gpus: int, launched_world: int = 1) -> Literal["in_process", "ray"]:
    """Where the trainer runs: `in_process` (this process, no Ray placement) or `ray` (Ray Train workers).

    `launched_world` > 1 means this process is already one rank of a torchrun launch: it trains in
    place. A GPU trainer next to Ray actors (vllm_ray rollouts, reward actors) goes through Ray even
    alone, so that Ray reserves its GPU and never places an actor on it.
    """
    cluster = recipe.cluster
    if launched_world > 1:
        if cluster.trainer_workers not in (1, launched_world):
            raise RecipeError(f"cluster.trainer_workers={cluster.trainer_workers} but this process is one of "
                              f"{launched_world} already launched (torchrun); drop the override or launch with "
                              "`unirg rl` alone and let Ray start the trainer processes.")
        return "in_process"
    if address or cluster.trainer_workers > 1:
        return "ray"
    uses_ray_actors = recipe.rollout.backend == "vllm_ray" or bool(cluster.ray_rewards)
    trainer_on_gpu = local_gpus > 0 and cluster.trainer_gpus_per_worker != 0
    return "ray" if uses_ray_actors and trainer_on_gpu else "in_process"


def sharding_fields(backend: str, on_gpu: bool) -> dict[str, Any]:
    """TrainingArguments fields (GRPOConfig and SFTConfig alike) for `cluster.trainer_backend`."""
    if backend == "ddp":
        return {}
    if not on_gpu:
        raise RecipeError(f"cluster.trainer_backend={backend} shards the model across GPUs; these trainer "
                          "processes have none (cluster.trainer_gpus_per_worker is 0 or the cluster has no "
                          "GPU). Use cluster.trainer_backend=ddp on CPU.")
    if backend == "fsdp":
        # Each decoder layer becomes one FSDP unit (transformers wraps the classes in _no_split_modules).
        return {"fsdp": "full_shard auto_wrap", "fsdp_config": {"use_orig_params": True}}
    if backend == "deepspeed_zero3":
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise RecipeError("cluster.trainer_backend=deepspeed_zero3 needs the deepspeed package in every "
                              "node's environment (`pip install deepspeed`); it is not part of unirg's install.")
        # "auto" values are filled in by transformers from the GRPOConfig (batch size, accumulation, bf16).
        return {"deepspeed": {
            "zero_optimization": {"stage": 3, "overlap_comm": True, "contiguous_gradients": True,
                                  "stage3_gather_16bit_weights_on_model_save": True},
            "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"},
            "train_micro_batch_size_per_gpu": "auto", "train_batch_size": "auto",
            "gradient_accumulation_steps": "auto", "gradient_clipping": "auto"}}
    raise RecipeError(f"cluster.trainer_backend: unknown backend {backend!r} (ddp, fsdp or deepspeed_zero3)")


def with_sharding(recipe: Recipe, on_gpu: bool) -> Recipe:
    """The recipe with `cluster.trainer_backend` written into its grpo (and sft) sections.

    Sharding set by hand under grpo/sft is refused without GPUs: on CPU transformers leaves it out and
    trains plain DDP without a word (measured: `grpo.fsdp` with 2 gloo ranks saved an unsharded checkpoint).
    """
    backend = recipe.cluster.trainer_backend
    for section in ("grpo", "sft"):
        values = getattr(recipe, section) or {}
        chosen = sorted(key for key in SHARDING_FIELDS if values.get(key))
        if chosen and backend != "ddp":
            raise RecipeError(f"{section}.{chosen[0]} and cluster.trainer_backend={backend} both choose the "
                              "sharding; keep one of them.")
        if chosen and not on_gpu:
            raise RecipeError(f"{section}.{chosen[0]} is set but the trainer processes have no GPU: transformers "
                              "ignores it on CPU and trains unsharded. Remove it (or set it to null) on CPU.")
    fields = sharding_fields(backend, on_gpu)
    if not fields:
        return recipe
    update = {section: {**getattr(recipe, section), **fields} for section in ("grpo", "sft")
              if getattr(recipe, section) is not None}
    return recipe.model_copy(update=update)


def forwarded_env() -> dict[str, str]:
    """The FORWARDED_ENV variables set here, for the trainer processes' runtime env."""
    return {name: os.environ[name] for name in FORWARDED_ENV if os.environ.get(name)}


def submitted_job() -> bool:
    """True inside the driver of a `ray job submit` (Ray's job supervisor sets this variable for it)."""
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ


def job_run_dir(recipe: Recipe, run_dir: str | Path | None, data_dir: str | None) -> Path | None:
    """The run folder of a submitted job: a relative one resolves from `data_dir` (UNIRG_DATA_DIR).

    The job runs in an uploaded copy of the code that Ray deletes after the job: a run folder left
    relative would vanish with it. Without UNIRG_DATA_DIR a relative run folder is refused.
    """
    path = Path(run_dir) if run_dir else recipe.run_dir()
    if path.is_absolute():
        return path
    if data_dir:
        return Path(data_dir).expanduser() / path
    raise RecipeError(f"output.dir (or --run-dir) {str(path)!r} is relative, and a submitted job runs in an uploaded "
                      "copy of the code that Ray deletes afterwards. Give an absolute path on storage every node "
                      f"sees (ARGS=\"output.dir=/shared/runs/{{recipe}}\") or set {DATA_DIR_ENV} (`make submit` sets it "
                      "to the checkout, so runs/ lands there as with `make rl`).")


def launch(recipe: Recipe, run_dir: str | Path | None = None):
    """Run the whole pipeline (SFT, GRPO, evaluation) where the recipe's `cluster` section says; return its RunResult."""
    from unirg.distributed import world_size

    recipe = recipe.model_copy(update={"data": resolve_data_paths(recipe.data)})
    if submitted_job():
        run_dir = job_run_dir(recipe, run_dir, os.environ.get(DATA_DIR_ENV))
    local_gpus = _local_gpus()
    if placement(recipe, ray_address(recipe.cluster), local_gpus, world_size()) == "in_process":
        from unirg.training.pipeline import run_pipeline

        recipe = with_sharding(recipe, on_gpu=local_gpus > 0 and recipe.cluster.trainer_gpus_per_worker != 0)
        return run_pipeline(recipe, Path(run_dir) if run_dir else None)
    return launch_on_ray(recipe, run_dir)


def launch_on_ray(recipe: Recipe, run_dir: str | Path | None = None):
    """Run the pipeline in `cluster.trainer_workers` Ray Train processes; return rank 0's RunResult."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.torch import TorchConfig, TorchTrainer

    cluster = recipe.cluster
    # Absolute: the trainer processes do not start in this directory.
    run_dir = Path(run_dir or recipe.run_dir()).resolve()
    for name, value in RAY_TRAIN_ENV.items():
        os.environ.setdefault(name, value)
    os.environ["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] = str(cluster.trainer_start_timeout_s)
    # Ray Train's placement-group cleaner asks the state API (served by the dashboard) whether the run
    # is alive, and warns every few seconds without it: a locally started Ray gets one, on loopback.
    ensure_ray(cluster.model_copy(update={"dashboard": True}))
    cluster_gpus = ray.cluster_resources().get("GPU", 0.0)
    gpus = trainer_gpus(cluster, cluster_gpus)
    wait_for_budget(resource_budget(cluster, recipe.rollout, gpus, recipe.rewards, cluster_has_gpus=cluster_gpus > 0),
                    cluster.trainer_start_timeout_s)
    recipe = with_sharding(recipe, on_gpu=gpus > 0)
    box = ray.remote(num_cpus=0)(ResultBox).remote()
    bundle = trainer_bundles(cluster, gpus)[0]
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"recipe": recipe, "run_dir": str(run_dir), "cwd": str(Path.cwd()),
                           "world_size": cluster.trainer_workers, "result_box": box},
        torch_config=TorchConfig(backend="nccl" if gpus > 0 else "gloo", timeout_s=int(cluster.trainer_timeout_s)),
        scaling_config=ScalingConfig(num_workers=cluster.trainer_workers, use_gpu=gpus > 0,
                                     resources_per_worker=bundle,
                                     placement_strategy=cluster.trainer_placement_strategy),
        run_config=RunConfig(
            name="trainer", storage_path=str(run_dir / "ray_train"),
            # max_failures restarts the worker group (each restart resumes from the last checkpoint);
            # controller_failure_limit=0 turns "could not place the workers" into an error, not a retry loop.
            failure_config=FailureConfig(max_failures=cluster.trainer_max_failures, controller_failure_limit=0),
            worker_runtime_env={"env_vars": {**forwarded_env(), **RAY_TRAIN_ENV}}),
    )
    logger.info("starting %d trainer processes of %s each (%s)", cluster.trainer_workers, bundle,
                "nccl" if gpus > 0 else "gloo")
    try:
        trainer.fit()
    except TrainingFailedError as error:
        raise ClusterError(describe_failure(error, cluster.trainer_workers)) from error
    result = ray.get(box.get.remote())
    if result is None:
        raise ClusterError("the trainer processes finished but rank 0 handed back no result; see the Ray "
                           "worker logs (`ray logs`, or the job's log).")
    return result


def describe_failure(error: BaseException, workers: int) -> str:
    """One readable message for a failed Ray Train run: which rank failed with what, or why it never started."""
    failures = getattr(error, "worker_failures", None)
    if failures:
        parts = []
        for rank, failure in sorted(failures.items()):
            cause = getattr(failure, "cause", None) or failure
            text = str(cause).strip().splitlines()
            parts.append(f"rank {rank}: {type(cause).__name__}: {text[-1] if text else ''}")
        return f"trainer process failed ({len(failures)} of {workers}): " + "; ".join(parts)
    cause = getattr(error, "controller_failure", None) or error
    return (f"the {workers} trainer processes could not be started: {type(cause).__name__}: {cause}. "
            "Check `ray status` against cluster.trainer_*_per_worker, or raise cluster.trainer_start_timeout_s.")


class ResultBox:
    """A Ray actor (no CPU) that holds rank 0's RunResult until the launching process reads it."""

    def __init__(self) -> None:
        self.result: Any = None

    def put(self, result: Any) -> None:
        """Keep `result` (called by rank 0)."""
        self.result = result

    def get(self) -> Any:
        """The result rank 0 put, or None."""
        return self.result


def train_worker(config: dict[str, Any]) -> None:
    """Body of each Ray Train process: check the process group, run the pipeline, rank 0 hands back the result."""
    import ray

    from unirg.distributed import is_main_process, world_size
    from unirg.training.pipeline import run_pipeline

    os.chdir(working_dir(config["cwd"]))
    expected = config["world_size"]
    if world_size() != expected:
        raise ClusterError(f"this trainer process sees a world of {world_size()} processes, expected "
                           f"cluster.trainer_workers={expected}: the process group was not set up by Ray Train.")
    result = run_pipeline(config["recipe"], Path(config["run_dir"]))
    check_accelerate_world(expected)
    if is_main_process():
        ray.get(config["result_box"].put.remote(result))


def working_dir(launch_dir: str) -> Path:
    """Where a trainer process works, so relative paths (reward files, a local model) mean what they meant at launch.

    Ray Train starts workers in its artifacts folder. The launching directory when this node has it (one
    machine, or a shared filesystem); else the copy of the code Ray unpacked here for the job, whose
    layout is the submitted checkout's; else the artifacts folder, where only absolute paths work.
    """
    import unirg

    if Path(launch_dir).is_dir():
        return Path(launch_dir)
    code_root = Path(unirg.__file__).resolve().parents[1]
    return code_root if (code_root / "recipes").is_dir() else Path.cwd()


def check_accelerate_world(expected: int) -> None:
    """Fail when accelerate trained as fewer processes than were started.

    Without `use_cpu=True` on CPU, transformers' Trainer leaves accelerate undistributed: every rank then
    trains its own copy on the whole batch, and nothing else fails.
    """
    from accelerate.state import PartialState

    if not PartialState._shared_state:  # no trainer was built (every stage was already finished)
        return
    seen = PartialState().num_processes
    if seen != expected:
        raise ClusterError(f"accelerate trained with {seen} process(es) while {expected} trainer processes ran: "
                           "the ranks trained independently. On CPU the GRPO/SFT config needs use_cpu=True.")


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
