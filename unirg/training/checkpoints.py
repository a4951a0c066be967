"""Stage checkpoints: what defines a stage, writing its policy atomically, and resuming from a checkpoint.

Resuming a Trainer checkpoint has two halves: the policy weights and the optimizer/scheduler/RNG/data
state. transformers 5 saves Qwen2-VL-family checkpoints under one set of parameter names and
`Trainer._load_from_checkpoint` loads them back with `strict=False` and no renaming (transformers
#43701): the vision tower and language model report "missing keys" and silently keep the weights the
policy was built with. So the policy is loaded from the checkpoint with `from_pretrained` (which
renames), and the Trainer restores only the rest (`PolicyFromCheckpointMixin`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unirg.distributed import barrier, is_main_process
from unirg.errors import RecipeError
from unirg.recipe import Recipe
from unirg.run_folder import (
    FINAL_DIR,
    commit_folder,
    folder_written_atomically,
    last_checkpoint,
    new_stage_record,
    scratch_folder,
    stage_record,
)

# Recipe sections whose values decide what a stage trains; output, logging, cluster layout and
# evaluation do not change the weights a stage ends with.
_STAGE_SECTIONS = {
    "sft": ("seed", "model", "data", "prompt", "sft"),
    "grpo": ("seed", "model", "data", "prompt", "sft", "rewards", "grpo", "rollout"),
}
# Of the rollout section only the sampling settings shape the policy; engines, timeouts and restarts do not.
_ROLLOUT_SAMPLING = ("rollout.max_new_tokens", "rollout.temperature", "rollout.top_p")


def stage_settings(recipe: Recipe, stage: str, start_model: str) -> dict[str, Any]:
    """The flattened recipe values (dotted keys) and start weights that define what `stage` trains."""
    dumped = recipe.model_dump(mode="json")
    settings = {key: value for key, value in
                _flatten({section: dumped.get(section) for section in _STAGE_SECTIONS[stage]}).items()
                if not key.startswith("rollout.") or key in _ROLLOUT_SAMPLING}
    if stage == "grpo" and recipe.rollout.reflection:
        # Two-pass rollouts train other sequences; recorded only when on, so older runs' records still match.
        settings["rollout.reflection"] = True
    traces = recipe.traces.resolved_path(recipe.name) if stage == "sft" else None
    if traces and recipe.prompt.format == "reasoning" and Path(traces).is_file():
        from unirg.reasoning.traces_file import traces_fingerprint

        # Recorded only when teacher traces are used, so new traces retrain SFT and older records still match.
        settings["traces.sha256"] = traces_fingerprint(traces)
    settings["start_model"] = start_model
    return settings


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat or {prefix.rstrip("."): {}}
    if isinstance(node, list):
        return {prefix.rstrip("."): json.loads(json.dumps(node))}
    return {prefix.rstrip("."): node}


def changed_settings(record: dict[str, Any], settings: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose value differs between a finished stage's record and the current recipe."""
    before = record.get("settings", {})
    keys = sorted(set(before) | set(settings))
    return [key for key in keys if key not in ignore and before.get(key) != settings.get(key)]


def refuse_changed_stage(stage: str, folder: Path, changed: list[str]) -> None:
    """Stop with a clear error when a finished stage would be reused under different settings."""
    if changed:
        shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
        raise RecipeError(
            f"{folder} is a finished {stage} stage trained with different settings ({shown}); unirg never "
            "retrains or overwrites a finished stage. Use a new --run-dir (or output.dir) for the changed "
            "recipe, or restore the recipe the run was started with (its recipe.yaml).")


def finished_stage(stage: str, final: Path, settings: dict[str, Any], ignore: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The record of a finished stage in `final` (None when unfinished); refused when its settings differ."""
    record = stage_record(final)
    if record is not None:
        refuse_changed_stage(stage, final, changed_settings(record, settings, ignore=ignore))
    return record


def check_finished_stages(recipe: Recipe, run_dir: Path) -> None:
    """Refuse, before anything is written, a recipe that differs from the run's finished stages."""
    for stage, title in (("sft", "SFT"), ("grpo", "GRPO")):
        final = Path(run_dir) / stage / FINAL_DIR
        record = stage_record(final)
        if record is not None and (stage == "grpo" or recipe.sft is not None):
            settings = stage_settings(recipe, stage, start_model=record["settings"].get("start_model"))
            finished_stage(title, final, settings, ignore=("grpo.max_steps",))


def resume_point(stage_dir: Path) -> tuple[Path | None, Path | None]:
    """The stage's last complete checkpoint, and the same folder when the policy should load from it.

    The second is None for a LoRA checkpoint (an adapter only), which the Trainer restores itself.
    """
    checkpoint = last_checkpoint(stage_dir)
    return checkpoint, checkpoint if checkpoint is not None and loads_full_weights(checkpoint) else None


def loads_full_weights(checkpoint: Path) -> bool:
    """True when the checkpoint holds full model weights (not a LoRA adapter, not sharded FSDP state)."""
    checkpoint = Path(checkpoint)
    return (checkpoint / "config.json").is_file() and any(
        (checkpoint / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json"))


class PolicyFromCheckpointMixin:
    """Trainer mixin: skip the Trainer's own weight load when the policy was built from the checkpoint.

    Set `policy_loaded_from` to the checkpoint folder the policy came from (`from_pretrained`); resuming
    from that folder then restores optimizer, scheduler, RNG and data position only.
    """

    policy_loaded_from: str | None = None

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        if model is None and self.policy_loaded_from is not None and \
                Path(resume_from_checkpoint).resolve() == Path(self.policy_loaded_from).resolve():
            return
        super()._load_from_checkpoint(resume_from_checkpoint, model)  # type: ignore[misc]


def save_policy(model, processor, dest: Path, record: dict[str, Any]) -> Path:
    """Save `model` (LoRA merged into full weights) and its processor to `dest`, atomically, marked by `record`."""
    if hasattr(model, "merge_and_unload"):
        # Later stages (GRPO after SFT, eval, step 2) load plain model folders; an adapter folder would
        # need the base model path carried along.
        model = model.merge_and_unload()
    with folder_written_atomically(dest, record) as scratch:
        model.save_pretrained(scratch)
        processor.save_pretrained(scratch)
    return Path(dest)


def save_trained_policy(trainer, dest: Path, stage: str, global_step: int, settings: dict[str, Any],
                        **fields: Any) -> dict[str, Any]:
    """Write a finished stage's policy to `dest` and return its record; every rank calls this, rank 0 writes.

    Full weights go through `trainer.save_model`, which gathers FSDP/ZeRO-3 shards on every rank; a LoRA
    policy is merged into full weights first.
    """
    record = new_stage_record(stage, global_step=global_step, settings=settings, **fields)
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):
        if is_main_process():
            save_policy(model, trainer.processing_class, dest, record)
    else:
        scratch = Path(dest).with_name(Path(dest).name + ".partial")
        if is_main_process():
            scratch = scratch_folder(dest)
        barrier()
        trainer.save_model(str(scratch))
        if is_main_process():
            trainer.processing_class.save_pretrained(scratch)
            commit_folder(scratch, dest, record)
    barrier()
    return record
