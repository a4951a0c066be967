"""Assemble TRL's GRPOTrainer from a recipe and run it: the `unirg rl` training path, top to bottom."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import GRPOTrainer

from unirg.distributed import barrier, is_main_process
from unirg.reasoning.reflection import ReflectionTrainerMixin
from unirg.recipe import Recipe
from unirg.run_folder import (
    FINAL_DIR,
    METRICS_FILE,
    checkpoint_step,
    model_identity,
    read_rows,
)
from unirg.training.callbacks import (
    CheckpointCompleteCallback,
    MetricsFileCallback,
    summarize,
    truncate_metrics,
    use_compact_progress,
    use_tensorboard_dir,
)
from unirg.training.checkpoints import (
    PolicyFromCheckpointMixin,
    finished_stage,
    resume_point,
    save_trained_policy,
    stage_settings,
)
from unirg.training.step_timing import install_step_timing


@dataclass
class RunResult:
    """What a finished run leaves behind."""

    run_dir: Path
    final_model: Path
    summary: dict[str, Any]
    report: Path | None = None
    # Stages this invocation found finished and reused instead of running, in order.
    reused: list[str] = field(default_factory=list)


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


def build_trainer(recipe: Recipe, run_dir: Path, train_dataset, model_path: str, callbacks: list | None = None,
                  weights_from: Path | None = None):
    """Load policy, processor and rewards, and return a ready trl.GRPOTrainer.

    `weights_from` is a checkpoint to take the policy weights from (a resumed run); `model_path` stays
    the run's start model, which TRL uses as the KL reference when `model.reference` is not set.
    """
    from rewards import build_reward_functions, fit_reward_corpus
    from unirg.models.loading import load_policy, load_processor, peft_config_for, resolve_model_path

    processor = load_processor(model_path, trust_remote_code=recipe.model.trust_remote_code)
    policy = load_policy(str(weights_from or model_path), recipe.model)
    policy.config._name_or_path = model_path
    if recipe.model.reference:
        # TRL builds the KL reference from the policy config's `_name_or_path`; pointing it at another
        # checkpoint is how UniRG step 2 measures KL against the best step-1 policy (TRL 1.16).
        policy.config._name_or_path = resolve_model_path(recipe.model.model_copy(
            update={"name_or_path": recipe.model.reference}), run_dir)
        from unirg.training.reference import check_reference

        check_reference(recipe.model.lora is not None, float(recipe.grpo.get("beta", 0.0)), model_path,
                        policy.config._name_or_path)
    reward_funcs, reward_weights = build_reward_functions(recipe.rewards)
    fit_reward_corpus(reward_funcs, train_dataset)
    if recipe.cluster.ray_rewards:
        from unirg.rollout.reward_actor import wrap_ray_rewards

        reward_funcs = wrap_ray_rewards(reward_funcs, recipe.cluster, run_key=str(Path(run_dir).resolve()))
    use_tensorboard_dir(run_dir / "tensorboard")
    if recipe.grpo.get("metric_for_best_model"):
        from unirg.training.selection import CheckpointSelectionCallback

        callbacks = [*(callbacks or []), CheckpointSelectionCallback(recipe, run_dir)]
    trainer_class = ReflectionGRPOTrainer if recipe.rollout.reflection else ResumableGRPOTrainer
    trainer = trainer_class(
        model=policy,
        reward_funcs=reward_funcs,
        args=grpo_config(recipe, run_dir, reward_weights),
        train_dataset=train_dataset,
        processing_class=processor,
        peft_config=peft_config_for(recipe.model),
        callbacks=callbacks or [],
    )
    policy.config._name_or_path = model_path
    trainer.policy_loaded_from = str(weights_from) if weights_from else None
    use_compact_progress(trainer, "GRPO", recipe.logging.progress)
    if recipe.rollout.backend == "vllm_ray":
        from unirg.rollout.generation import install_ray_rollout

        install_ray_rollout(trainer, recipe.rollout, recipe.cluster)
    if recipe.rollout.backend == "vllm_colocate":
        from unirg.rollout.colocate import install_colocated_rollout

        install_colocated_rollout(trainer, recipe.rollout)
    # Last: it times the rollout backend's weight sync and the final reward functions.
    install_step_timing(trainer)
    return trainer


def release_reward_plugins(reward_funcs: list) -> None:
    """Call each in-process plugin's `teardown` (e.g. stop a served judge) once training is over.

    Plugins in Ray reward actors are released with their actors.
    """
    for function in reward_funcs:
        teardown = getattr(getattr(function, "plugin", None), "teardown", None)
        if callable(teardown):
            teardown()


class ResumableGRPOTrainer(PolicyFromCheckpointMixin, GRPOTrainer):
    """trl.GRPOTrainer that resumes with the policy loaded by `from_pretrained` (see checkpoints.py)."""


class ReflectionGRPOTrainer(ReflectionTrainerMixin, ResumableGRPOTrainer):
    """ResumableGRPOTrainer with two-pass rollouts: draft, reflection turn (masked), final report."""

    reflection = True


def run_grpo(recipe: Recipe, run_dir: Path, train_dataset, model_path: str) -> RunResult:
    """Run GRPO from `model_path`, resuming from the run's last checkpoint when there is one.

    A finished GRPO stage (`grpo/final` with its stage record) is reused as it is, unless the recipe
    asks for more steps than it trained, in which case training continues from the last checkpoint.
    """
    grpo_dir = run_dir / "grpo"
    final = grpo_dir / FINAL_DIR
    metrics_path = run_dir / METRICS_FILE
    settings = stage_settings(recipe, "grpo", model_identity(model_path))
    record = finished_stage("GRPO", final, settings, ignore=("grpo.max_steps",))
    requested_steps = int(recipe.grpo.get("max_steps", -1))
    if record is not None:
        if not 0 < record["global_step"] < requested_steps:
            summary = summarize(read_rows(metrics_path), record["reward_names"])
            return RunResult(run_dir=run_dir, final_model=final, summary=summary, reused=["grpo"])

    resume_from, weights_from = resume_point(grpo_dir)
    if is_main_process():
        truncate_metrics(metrics_path, checkpoint_step(resume_from) if resume_from else 0)
    barrier()
    metrics = MetricsFileCallback(metrics_path)
    trainer = build_trainer(recipe, grpo_dir, train_dataset, model_path,
                            callbacks=[metrics, CheckpointCompleteCallback()], weights_from=weights_from)
    finished = resume_from is not None and 0 < trainer.args.max_steps <= checkpoint_step(resume_from)
    if finished:
        # transformers 5.23 runs one extra step when resumed from a checkpoint already at max_steps, so
        # the last checkpoint is taken as it is (a kill came after it and before grpo/final was written).
        if weights_from is None:
            trainer._load_from_checkpoint(str(resume_from))
        global_step = checkpoint_step(resume_from)
    else:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        global_step = trainer.state.global_step
    reward_names = [f.__name__ for f in trainer.reward_funcs]
    save_trained_policy(trainer, final, "grpo", global_step, settings, reward_names=reward_names)
    release_reward_plugins(trainer.reward_funcs)
    summary = summarize(read_rows(metrics_path), reward_names)
    return RunResult(run_dir=run_dir, final_model=final, summary=summary)
