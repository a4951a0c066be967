"""Supervised warm start with TRL's SFTTrainer on the same studies and prompt format as GRPO."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unirg.recipe import Recipe
from unirg.training.callbacks import use_compact_progress, use_tensorboard_dir
from unirg.training.checkpoints import save_policy


def sft_dataset(train, prompt_format: str):
    """Add the assistant turn SFT learns: the reference report, after a reasoning block when asked for."""
    from unirg.data import completion_for

    def add_completion(example: dict[str, Any]) -> dict[str, Any]:
        return {"completion": [{"role": "assistant", "content": completion_for(example, prompt_format)}]}

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
        "save_strategy": "no",
        "push_to_hub": False,
        # Whole reports are the target: truncating them would teach the policy to stop mid-sentence.
        "max_length": None,
    }
    if not torch.cuda.is_available():
        fields.update(use_cpu=True, bf16=False)
    fields.update(recipe.sft or {})
    return SFTConfig(**fields)


def run_sft(recipe: Recipe, run_dir: Path, splits, model_path: str) -> Path:
    """Fine-tune `model_path` on the training split; returns the folder of the SFT checkpoint.

    The checkpoint is written to `<run>/sft/final`; when it is already there (a resumed run), SFT is skipped.
    """
    from trl import SFTTrainer

    from unirg.models.loading import load_policy, load_processor, peft_config_for

    out_dir = run_dir / "sft"
    final = out_dir / "final"
    if (final / "config.json").is_file():
        return final
    processor = load_processor(model_path, trust_remote_code=recipe.model.trust_remote_code)
    use_tensorboard_dir(out_dir / "tensorboard")
    trainer = SFTTrainer(
        model=load_policy(model_path, recipe.model),
        args=sft_config(recipe, out_dir),
        train_dataset=sft_dataset(splits.train, recipe.prompt.format),
        processing_class=processor,
        peft_config=peft_config_for(recipe.model),
    )
    use_compact_progress(trainer, "SFT", recipe.logging.progress)
    trainer.train()
    return save_policy(trainer.accelerator.unwrap_model(trainer.model), processor, final)
