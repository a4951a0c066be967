"""Plugging a unirg vLLM generation backend into a built GRPOTrainer, the way TRL would build its own.

Both backends (colocated engines, the Ray engine pool) subclass TRL's `VLLMGeneration`; GRPOTrainer builds
one itself only with `use_vllm=True`, which would also start TRL's own engine. So the trainer is built with
`use_vllm=False`, and these functions check it, give the backend the arguments GRPOTrainer would have,
and switch the trainer's vLLM path on (weight sync before each new step's generation, importance-sampling
correction on the engines' logprobs).
"""

from __future__ import annotations

from typing import Any

from unirg.errors import UnirgError


def check_trainer_for_vllm(trainer: Any, installer: str) -> None:
    """Refuse a trainer that already runs TRL's own vLLM, or a loss that needs another IS mode."""
    args = trainer.args
    if getattr(trainer, "use_vllm", False):
        raise UnirgError(f"{installer} needs a GRPOTrainer built with GRPOConfig(use_vllm=False): with "
                         "use_vllm=True TRL has already started its own vLLM engine in the trainer process.")
    if (trainer.loss_type == "vespo" and args.vllm_importance_sampling_correction
            and args.vllm_importance_sampling_mode not in ("token_truncate", "token_mask")):
        # The check GRPOTrainer makes itself only when it was built with use_vllm=True.
        raise UnirgError("loss_type 'vespo' needs grpo.vllm_importance_sampling_mode 'token_truncate' or "
                         f"'token_mask', got {args.vllm_importance_sampling_mode!r}")


def generation_arguments(trainer: Any) -> dict[str, Any]:
    """The `VLLMGeneration` arguments GRPOTrainer derives from itself and its config (TRL 1.16)."""
    args = trainer.args
    return {
        "model": trainer.model,
        "accelerator": trainer.accelerator,
        "processing_class": trainer.processing_class,
        "max_model_length": args.vllm_max_model_length,
        "model_impl": args.vllm_model_impl,
        "trust_remote_code": args.trust_remote_code,
        "repetition_penalty": trainer.repetition_penalty,
        "temperature": trainer.temperature,
        "top_p": trainer.top_p,
        "top_k": trainer.top_k,
        "min_p": trainer.min_p,
        "max_completion_length": trainer.max_completion_length,
        "logprobs": 0,  # the sampled token's logprob: what the importance-sampling correction uses
        "generation_kwargs": args.generation_kwargs,
    }


def attach_generation(trainer: Any, generation: Any, mode: str) -> None:
    """Make `generation` the trainer's vLLM backend; it syncs weights before the first generation."""
    trainer.vllm_generation = generation
    trainer.use_vllm = True
    # "colocate": TRL's tool loop reads the context length from the engine; any other mode: from the config.
    trainer.vllm_mode = mode
    trainer._last_loaded_step = -1  # GRPOTrainer syncs weights when global_step differs from this
