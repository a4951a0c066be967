"""Supervised warm start with TRL's SFTTrainer on the same studies and prompt format as GRPO."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trl import SFTTrainer

from unirg.recipe import Recipe
from unirg.run_folder import FINAL_DIR, model_identity
from unirg.training.callbacks import CheckpointCompleteCallback, use_compact_progress, use_tensorboard_dir
from unirg.training.checkpoints import (
    PolicyFromCheckpointMixin,
    finished_stage,
    resume_point,
    save_trained_policy,
    stage_settings,
)


class ResumableSFTTrainer(PolicyFromCheckpointMixin, SFTTrainer):
    """trl.SFTTrainer that resumes with the policy loaded by `from_pretrained` (see checkpoints.py)."""


def sft_dataset(train, prompt_format: str, traces: dict[tuple[str, str], str] | None = None):
    """Add the assistant turn SFT learns: the reference report, after a reasoning block when asked for.

    `traces` (from `unirg traces`, keyed by dataset and study id) replaces the rule-based reasoning block
    of the studies it covers.
    """
    from unirg.data import completion_for

    def add_completion(example: dict[str, Any]) -> dict[str, Any]:
        return {"completion": [{"role": "assistant", "content": completion_for(example, prompt_format, traces)}]}

    return train.map(add_completion, desc="SFT targets")


def sft_config(recipe: Recipe, out_dir: Path):
    """Build trl.SFTConfig from the recipe's `sft` section."""
    import torch
    from trl import SFTConfig

    fields: dict[str, Any] = {
        "output_dir": str(out_dir),
        "seed": recipe.seed,
        "logging_steps": recipe.logging.logging_steps,
        "report_to": ["tensorboard"] if recipe.logging.tensorboard else [],
        # Checkpoints at the run's cadence, so a killed warm start resumes mid-run like GRPO.
        "save_strategy": "steps",
        "save_steps": recipe.output.save_steps,
        "save_total_limit": recipe.output.save_total_limit,
        "push_to_hub": False,
        # Whole reports are the target: truncating them would teach the policy to stop mid-sentence.
        "max_length": None,
    }
    if not torch.cuda.is_available():
        fields.update(use_cpu=True, bf16=False)
    fields.update(recipe.sft or {})
    return SFTConfig(**fields)


def run_sft(recipe: Recipe, run_dir: Path, splits, model_path: str) -> tuple[Path, bool]:
    """Fine-tune `model_path` on the training split; returns the SFT checkpoint folder and whether it was reused.

    The checkpoint is written to `<run>/sft/final`. A finished SFT stage is reused as it is; a killed one
    resumes from its last complete checkpoint in `<run>/sft/`.
    """
    from unirg.models.loading import load_policy, load_processor, peft_config_for

    out_dir = run_dir / "sft"
    final = out_dir / FINAL_DIR
    from unirg.reasoning.traces_file import traces_for_sft

    settings = stage_settings(recipe, "sft", model_identity(model_path))
    if finished_stage("SFT", final, settings) is not None:
        return final, True
    resume_from, weights_from = resume_point(out_dir)
    processor = load_processor(model_path, trust_remote_code=recipe.model.trust_remote_code)
    policy = load_policy(str(weights_from or model_path), recipe.model)
    policy.config._name_or_path = model_path
    use_tensorboard_dir(out_dir / "tensorboard")
    trainer = ResumableSFTTrainer(
        model=policy,
        args=sft_config(recipe, out_dir),
        train_dataset=sft_dataset(splits.train, recipe.prompt.format, traces_for_sft(recipe, splits.train)),
        processing_class=processor,
        peft_config=peft_config_for(recipe.model),
        callbacks=[CheckpointCompleteCallback()],
    )
    trainer.policy_loaded_from = str(weights_from) if weights_from else None
    use_compact_progress(trainer, "SFT", recipe.logging.progress)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    save_trained_policy(trainer, final, "sft", trainer.state.global_step, settings)
    return final, False
