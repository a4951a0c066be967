"""Scenario: a few GRPO steps of TRL's GRPOTrainer with rollouts on two Ray vLLM workers (`install_ray_rollout`).

Checks that weights reach both workers before every step's generation, that TRL's importance-sampling
correction sees the workers' logprobs, that metrics are logged and a checkpoint written.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from common import build_model, emit
from PIL import Image

from unirg.rollout.config import ClusterConfig, RolloutConfig
from unirg.rollout.generation import install_ray_rollout

STEPS = 3


def distinct_tokens(completions, **_) -> list[float]:
    """Toy reward: share of distinct characters in the completion text (0..1)."""
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [len(set(t)) / max(1, len(t)) for t in texts]


def main(work: Path) -> None:
    import ray
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import GRPOConfig, GRPOTrainer

    path = build_model(work / "model")
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    rows = [{"prompt": [{"role": "user", "content": [{"type": "image"},
                                                     {"type": "text", "text": f"Describe study {i}."}]}],
             "images": [Image.new("RGB", (112, 112), (30 * i, 100, 150))]} for i in range(8)]
    args = GRPOConfig(output_dir=str(work / "run"), use_cpu=True, bf16=False, max_steps=STEPS,
                      per_device_train_batch_size=4, num_generations=4, max_completion_length=8,
                      learning_rate=5e-3, beta=0.0, loss_type="dapo", epsilon_high=0.28, save_steps=STEPS,
                      logging_steps=1, report_to=[], use_vllm=False, seed=0)
    trainer = GRPOTrainer(model=model, reward_funcs=[distinct_tokens], args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=processor)
    generation = install_ray_rollout(
        trainer, RolloutConfig(backend="vllm_ray", num_workers=2, dtype="float32", max_model_len=512),
        ClusterConfig(num_cpus=2))

    seen = []  # after each sync: trainer step, and the weights version each worker reports
    sync = generation.sync_weights

    def recorded_sync() -> None:
        sync()
        versions = [info["weights_version"] for info in ray.get([w.info.remote() for w in generation.pool.workers])]
        seen.append({"step": trainer.state.global_step, "version": generation.weights_version, "workers": versions})

    generation.sync_weights = recorded_sync
    trainer.train()
    changed = sum(not torch.equal(initial[n], p.detach()) for n, p in trainer.model.named_parameters())
    logs = [row for row in trainer.state.log_history if "loss" in row]
    emit({"syncs": seen, "sync_seconds": generation.sync_seconds, "logged_steps": len(logs),
          "log_keys": sorted(logs[-1]) if logs else [],
          "logp_difference_max": max(row["sampling/sampling_logp_difference/max"] for row in logs),
          "is_ratio_mean": [row["sampling/importance_sampling_ratio/mean"] for row in logs], "params_changed": changed,
          "params_total": len(initial), "checkpoints": sorted(p.name for p in (work / "run").glob("checkpoint-*")),
          "pool_after_train": generation.pool is None})


if __name__ == "__main__":
    main(Path(sys.argv[1]))
