"""Recipe sections that choose the rollout backend and how Ray places workers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RolloutConfig(BaseModel):
    """Who generates completions during GRPO."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["hf", "vllm_ray"] = Field(
        "hf", description="hf: TRL's own HF generate in the trainer process (CPU fallback); "
        "vllm_ray: vLLM engines hosted in Ray actors.")
    num_workers: int = Field(1, ge=1, description="Number of rollout workers (vllm_ray).")
    max_new_tokens: int = Field(128, ge=1, description="Longest completion, in tokens.")
    temperature: float = Field(1.0, ge=0.0, description="Sampling temperature of rollouts.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling threshold.")


class ClusterConfig(BaseModel):
    """Where Ray runs and what each worker group asks for."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(None, description="Ray address to join; None starts a local instance "
                                "on loopback (RAY_ADDRESS overrides).")
    rollout_gpus_per_worker: float = Field(0.0, ge=0.0, description="GPUs per rollout worker.")
    rollout_cpus_per_worker: float = Field(1.0, ge=0.0, description="CPUs per rollout worker.")
    reward_gpus_per_worker: float = Field(0.0, ge=0.0, description="GPUs per heavy reward worker.")
