"""Recipe sections that choose the rollout backend and how Ray places workers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RolloutConfig(BaseModel):
    """Who generates completions during GRPO."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["hf", "vllm_colocate", "vllm_ray"] = Field(
        "hf", description="hf: TRL's own HF generate in the trainer process (the CPU default); "
        "vllm_colocate: a vLLM engine inside each trainer process, sharing its device (the GPU default: "
        "nothing to rendezvous, weights loaded in memory); vllm_ray: vLLM engines hosted in Ray actors "
        "(CPU, or separate rollout GPUs).")
    num_workers: int = Field(1, ge=1, description="Number of rollout workers (vllm_ray).")
    max_new_tokens: int = Field(128, ge=1, description="Longest completion, in tokens.")
    temperature: float = Field(1.0, ge=0.0, description="Sampling temperature of rollouts.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling threshold.")
    reflection: bool = Field(
        False, description="Generate in two passes (Med-R2 reflection), at rollout and at evaluation: a draft "
        "(reasoning and report), then a user turn asking to re-check each perceived finding against the image, "
        "then the final report. Rewards score the final turn; the reflection turn's tokens are not trained on. "
        "Each pass may use max_new_tokens. Needs prompt.format: reasoning and backend: hf.")

    # --- vLLM engine (vllm_ray) ---
    max_model_len: int | None = Field(
        None, ge=16, description="Context length of each vLLM engine (prompt + completion); None: the "
        "model config's. Set it on CPU: the KV cache is sized for it.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype inside vLLM; auto follows the model config (bfloat16 on GPU). "
        "Use float32 to compare vLLM token for token with HF generate on CPU.")
    gpu_memory_utilization: float = Field(
        0.9, gt=0.0, le=1.0, description="Share of each worker's GPU vLLM may use (GPU only).")
    cpu_kv_cache_gib: int = Field(
        1, ge=1, description="KV cache per worker in GiB on CPU (vLLM's VLLM_CPU_KVCACHE_SPACE).")
    max_images_per_prompt: int = Field(
        4, ge=0, description="Most images one prompt may carry (vLLM's limit_mm_per_prompt).")
    enforce_eager: bool = Field(
        True, description="Skip CUDA-graph capture / torch.compile in vLLM: faster start-up, slower "
        "decoding. Turn off for long GPU runs.")
    seed: int = Field(0, description="Base seed of the engines; worker i uses seed + i.")

    # --- colocated engine (vllm_colocate) ---
    tensor_parallel_size: int = Field(
        1, ge=1, description="vllm_colocate on GPU: trainer processes (GPUs) that share one vLLM engine by "
        "tensor parallelism; must divide the number of trainer processes. 1 on CPU.")
    sleep_mode: bool = Field(
        True, description="vllm_colocate on GPU: put the engine to sleep (weights and KV cache released) "
        "while the trainer computes the loss and steps, so both fit on one GPU. Ignored on CPU, where vLLM "
        "has no sleep mode. The engine's share while awake is rollout.gpu_memory_utilization.")

    # --- weight sync ---
    weight_sync: Literal["auto", "disk", "nccl", "gloo"] = Field(
        "auto", description="How trained weights reach the vllm_ray workers after each optimizer step. disk: "
        "safetensors file + vLLM reload_weights (CPU, or GPU without a shared NCCL network; needs sync_dir "
        "on storage every node reads); nccl: broadcast from the trainer's rank 0 into vLLM's weight-transfer "
        "engine (GPU workers, vLLM >= 0.28; verified only by `make gpu-check`); gloo: the same broadcast "
        "over gloo to the rollout actors, loaded with reload_weights (CPU workers, no shared storage "
        "needed); auto: nccl when workers have GPUs, disk otherwise.")
    sync_dir: str | None = Field(
        None, description="Folder for disk weight sync; must be on storage every worker node can read "
        "(shared filesystem on a cluster). None: <run dir>/weight_sync.")

    # --- fault handling ---
    generate_timeout_s: float = Field(
        600.0, gt=0.0, description="A rollout batch that takes longer than this counts as a worker "
        "failure (the worker is restarted and the batch retried).")
    max_restarts: int = Field(
        2, ge=0, description="Restarts of a dead or stuck rollout worker before the run stops with an "
        "error naming it. Counted over the whole run.")
    startup_timeout_s: float = Field(
        600.0, gt=0.0, description="Longest wait for a worker's vLLM engine to load.")


class ClusterConfig(BaseModel):
    """Where Ray runs and what each worker group asks for."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(None, description="Ray address to join; None starts a local instance "
                                "on loopback (RAY_ADDRESS overrides). With an address (or RAY_ADDRESS, as "
                                "inside `ray job submit`) the trainer always runs in Ray-placed processes.")

    # --- trainer processes ---
    trainer_workers: int = Field(
        1, ge=1, description="Trainer processes (torch.distributed ranks), each a Ray Train worker; every "
        "rank trains on its share of each batch and rank 0 alone writes the run folder. 1 with no Ray "
        "address: the trainer runs in the `unirg rl` process itself, without Ray.")
    trainer_gpus_per_worker: float | None = Field(
        None, ge=0.0, le=1.0, description="GPUs Ray reserves for each trainer process (one process drives "
        "at most one GPU: use more trainer_workers for more GPUs). None: 1 when the cluster (or, without "
        "Ray, this machine) has GPUs, else 0. With GPUs the ranks talk over NCCL, without over gloo.")
    trainer_cpus_per_worker: float = Field(
        1.0, ge=0.0, description="CPUs Ray reserves for each trainer process.")
    trainer_backend: Literal["ddp", "fsdp", "deepspeed_zero3"] = Field(
        "ddp", description="How the trainer processes share the model, set on the grpo and sft sections "
        "for accelerate: ddp: a full copy per rank, gradients all-reduced; fsdp: parameters, gradients "
        "and optimizer state sharded (FSDP full_shard, GPU); deepspeed_zero3: DeepSpeed ZeRO stage 3 "
        "(GPU, needs the deepspeed package).")
    trainer_placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="Ray placement strategy of the trainer processes: PACK fills a node's GPUs "
        "first, SPREAD puts each rank on a different node.")
    trainer_timeout_s: float = Field(
        1800.0, gt=0.0, description="Longest wait of a collective (all-reduce, barrier) between trainer "
        "processes before the run fails; covers rank 0's checkpoint writing and evaluation while the "
        "others wait.")
    trainer_start_timeout_s: float = Field(
        120.0, gt=0.0, description="Longest wait for Ray to place and start the trainer processes; then "
        "the run stops with an error saying what was asked for.")
    trainer_max_failures: int = Field(
        0, ge=0, description="Times Ray restarts the trainer processes after one of them dies; each "
        "restart resumes from the last complete checkpoint. 0: the first failure ends the run.")

    rollout_gpus_per_worker: float = Field(0.0, ge=0.0, description="GPUs per rollout worker.")
    rollout_cpus_per_worker: float = Field(1.0, ge=0.0, description="CPUs per rollout worker.")
    reward_gpus_per_worker: float = Field(0.0, ge=0.0, description="GPUs per heavy reward worker.")

    reward_cpus_per_worker: float = Field(1.0, ge=0.0, description="CPUs per heavy reward worker.")
    ray_rewards: list[str] = Field(
        default_factory=list, description="Names of reward plugins (as listed under `rewards`) that run "
        "in their own Ray actor instead of the trainer process: model-based metrics that need a GPU "
        "share or much memory.")
    reward_batch_size: int = Field(64, ge=1, description="Completions per call to a reward actor.")
    reward_timeout_s: float = Field(
        300.0, gt=0.0, description="A reward-actor call slower than this fails: its samples get no "
        "reward (None) and the failure is counted.")
    reward_max_consecutive_failures: int = Field(
        3, ge=1, description="Stop the run when one reward plugin fails this many calls in a row.")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="Ray placement-group strategy for the rollout workers: PACK keeps them on as "
        "few nodes as possible, SPREAD puts them on different nodes.")
    num_cpus: int | None = Field(
        None, ge=1, description="CPUs a locally started Ray instance offers; None: all of this machine's.")
    dashboard: bool = Field(
        False, description="Start Ray's dashboard (on 127.0.0.1 only) with a local instance.")
