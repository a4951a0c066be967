"""Assemble TRL's GRPOTrainer from a recipe and run it: the `unirg rl` training path, top to bottom."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unirg.recipe import Recipe
from unirg.training.callbacks import MetricsFileCallback, summarize


@dataclass
class RunResult:
    """What a finished run leaves behind."""

    run_dir: Path
    final_model: Path
    summary: dict[str, Any]


def grpo_config(recipe: Recipe, run_dir: Path, reward_weights: list[float]):
    """Build trl.GRPOConfig: the recipe's `grpo` section plus the fields the recipe owns elsewhere."""
    import torch
    from trl import GRPOConfig

    on_cpu = not torch.cuda.is_available()
    fields: dict[str, Any] = {
        "output_dir": str(run_dir),
        "seed": recipe.seed,
        "save_steps": recipe.output.save_steps,
        "save_total_limit": recipe.output.save_total_limit,
        "logging_steps": recipe.logging.logging_steps,
        "max_completion_length": recipe.rollout.max_new_tokens,
        "temperature": recipe.rollout.temperature,
        "top_p": recipe.rollout.top_p,
        "reward_weights": reward_weights,
        "report_to": ["tensorboard"] if recipe.logging.tensorboard else [],
        "log_completions": recipe.logging.completions,
        "disable_tqdm": not recipe.logging.progress,
        "push_to_hub": False,
    }
    if on_cpu:
        # GRPOConfig defaults to bf16 mixed precision, which the CPU trainer path rejects.
        fields.update(use_cpu=True, bf16=False)
    fields.update(recipe.grpo)
    return GRPOConfig(**fields)


def build_trainer(recipe: Recipe, run_dir: Path, callbacks: list | None = None):
    """Load data, policy, processor and rewards, and return a ready trl.GRPOTrainer."""
    from trl import GRPOTrainer

    from rewards import build_reward_functions
    from unirg.data import load_splits
    from unirg.models.loading import load_policy, load_processor, peft_config_for, resolve_model_path

    splits = load_splits(recipe.data, recipe.prompt, run_dir)
    model_path = resolve_model_path(recipe.model, run_dir, corpus=list(splits.train["reference"]))
    processor = load_processor(model_path, trust_remote_code=recipe.model.trust_remote_code)
    policy = load_policy(model_path, recipe.model)
    reward_funcs, reward_weights = build_reward_functions(recipe.rewards)
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(run_dir / "tensorboard"))
    trainer = GRPOTrainer(
        model=policy,
        reward_funcs=reward_funcs,
        args=grpo_config(recipe, run_dir, reward_weights),
        train_dataset=splits.train,
        processing_class=processor,
        peft_config=peft_config_for(recipe.model),
        callbacks=callbacks or [],
    )
    if recipe.rollout.backend == "vllm_ray":
        from unirg.rollout.generation import install_ray_rollout

        install_ray_rollout(trainer, recipe.rollout, recipe.cluster)
    return trainer


def last_checkpoint(run_dir: Path) -> str | None:
    """The newest complete checkpoint folder of a run, if any."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(run_dir)) if run_dir.is_dir() else None


def train(recipe: Recipe, run_dir: Path | None = None) -> RunResult:
    """Run GRPO for a recipe, resuming from the run's last checkpoint when there is one."""
    run_dir = Path(run_dir or recipe.run_dir())
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
    metrics = MetricsFileCallback(run_dir / "metrics.jsonl")
    trainer = build_trainer(recipe, run_dir, callbacks=[metrics])
    trainer.train(resume_from_checkpoint=last_checkpoint(run_dir))
    final = run_dir / "final"
    trainer.save_model(str(final))
    trainer.processing_class.save_pretrained(str(final))
    reward_names = [f.__name__ for f in trainer.reward_funcs]
    summary = summarize(metrics.rows, reward_names)
    summary["run_dir"] = str(run_dir)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return RunResult(run_dir=run_dir, final_model=final, summary=summary)
