"""Assemble TRL's GRPOTrainer from a recipe and run it: the `unirg rl` training path, top to bottom."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unirg.recipe import Recipe
from unirg.training.callbacks import (
    COMPLETE_MARKER,
    CheckpointCompleteCallback,
    MetricsFileCallback,
    summarize,
    truncate_metrics,
    use_compact_progress,
    use_tensorboard_dir,
)
from unirg.training.checkpoints import save_policy


@dataclass
class RunResult:
    """What a finished run leaves behind."""

    run_dir: Path
    final_model: Path
    summary: dict[str, Any]
    report: Path | None = None


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
        "push_to_hub": False,
    }
    if on_cpu:
        # GRPOConfig defaults to bf16 mixed precision, which the CPU trainer path rejects.
        fields.update(use_cpu=True, bf16=False)
    fields.update(recipe.grpo)
    return GRPOConfig(**fields)


def build_trainer(recipe: Recipe, run_dir: Path, train_dataset, model_path: str, callbacks: list | None = None):
    """Load policy, processor and rewards, and return a ready trl.GRPOTrainer."""
    from trl import GRPOTrainer

    from rewards import build_reward_functions
    from unirg.models.loading import load_policy, load_processor, peft_config_for, resolve_model_path

    processor = load_processor(model_path, trust_remote_code=recipe.model.trust_remote_code)
    policy = load_policy(model_path, recipe.model)
    if recipe.model.reference:
        # TRL builds the KL reference from the policy config's `_name_or_path`; pointing it at another
        # checkpoint is how UniRG step 2 measures KL against the best step-1 policy (TRL 1.16).
        policy.config._name_or_path = resolve_model_path(recipe.model.model_copy(
            update={"name_or_path": recipe.model.reference}), run_dir)
    reward_funcs, reward_weights = build_reward_functions(recipe.rewards)
    if recipe.cluster.ray_rewards:
        from unirg.rollout.reward_actor import wrap_ray_rewards

        reward_funcs = wrap_ray_rewards(reward_funcs, recipe.cluster)
    use_tensorboard_dir(run_dir / "tensorboard")
    trainer = GRPOTrainer(
        model=policy,
        reward_funcs=reward_funcs,
        args=grpo_config(recipe, run_dir, reward_weights),
        train_dataset=train_dataset,
        processing_class=processor,
        peft_config=peft_config_for(recipe.model),
        callbacks=callbacks or [],
    )
    policy.config._name_or_path = model_path
    use_compact_progress(trainer, "GRPO", recipe.logging.progress)
    if recipe.rollout.backend == "vllm_ray":
        from unirg.rollout.generation import install_ray_rollout

        install_ray_rollout(trainer, recipe.rollout, recipe.cluster)
    if recipe.rollout.backend == "vllm_colocate":
        from unirg.rollout.colocate import install_colocated_rollout

        install_colocated_rollout(trainer, recipe.rollout)
    return trainer


def last_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint folder marked complete; half-written ones are ignored."""
    if not output_dir.is_dir():
        return None
    complete = [p for p in output_dir.glob("checkpoint-*")
                if p.name.split("-")[-1].isdigit() and (p / COMPLETE_MARKER).is_file()]
    return max(complete, key=lambda p: int(p.name.split("-")[-1]), default=None)


def _checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[-1])


def run_grpo(recipe: Recipe, run_dir: Path, train_dataset, model_path: str) -> RunResult:
    """Run GRPO from `model_path`, resuming from the run's last checkpoint when there is one."""
    grpo_dir = run_dir / "grpo"
    metrics_path = run_dir / "metrics.jsonl"
    resume_from = last_checkpoint(grpo_dir)
    truncate_metrics(metrics_path, _checkpoint_step(resume_from) if resume_from else 0)
    metrics = MetricsFileCallback(metrics_path)
    trainer = build_trainer(recipe, grpo_dir, train_dataset, model_path,
                            callbacks=[metrics, CheckpointCompleteCallback()])
    finished = resume_from is not None and 0 < trainer.args.max_steps <= _checkpoint_step(resume_from)
    if not finished:
        # transformers 5.23 runs one extra step when resumed from a checkpoint already at max_steps.
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    final = save_policy(trainer.accelerator.unwrap_model(trainer.model), trainer.processing_class,
                        grpo_dir / "final")
    summary = summarize(metrics.rows, [f.__name__ for f in trainer.reward_funcs])
    return RunResult(run_dir=run_dir, final_model=final, summary=summary)
