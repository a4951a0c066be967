"""Checkpoint selection: score every GRPO checkpoint on the validation split and mark the best one.

Switched on by `grpo.metric_for_best_model` (a trl.GRPOConfig field): `auto` picks RadCliQ-v1 (lower is
better) when its model weights are available, else CheXpert-14 micro-F1; any other value names a
column of the evaluation table (`unirg.evaluation.metrics.score_reports`), with `grpo.greater_is_better`
saying which way is better (default: higher, except RadCliQ). Each checkpoint is scored when it is
saved (so K = `output.save_steps`): greedy reports on the validation split, scored on findings plus
impression. The scores go to `<run>/grpo/selection.json` (written atomically) with the best one marked,
and the trainer's `best_model_checkpoint` is set so `save_total_limit` never deletes the best.

Another recipe names that checkpoint as `best:RUN_DIR` in `model.name_or_path` or `model.reference`
(`best_checkpoint` resolves it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from unirg.errors import RecipeError
from unirg.run_folder import read_json, write_json_atomically

logger = logging.getLogger(__name__)

SELECTION_FILE = "selection.json"
BEST_PREFIX = "best:"
AUTO = "auto"
LOWER_IS_BETTER = ("radcliq_v1", "radcliq_v0", "duplicate_rate")


def resolve_metric(requested: str, table: dict[str, Any]) -> str:
    """The metric `requested` stands for, given an evaluation table (only `auto` depends on the table)."""
    if requested != AUTO:
        return requested
    return "radcliq_v1" if table.get("radcliq_v1") is not None else "chexpert_micro_f1_14"


def is_better(score: float, best: float | None, greater_is_better: bool) -> bool:
    return best is None or (score > best if greater_is_better else score < best)


def record_score(path: Path, step: int, checkpoint: str, metric: str, greater_is_better: bool, score: float,
                 table: dict[str, Any]) -> dict[str, Any]:
    """Add one checkpoint's score to the selection file (replacing an older score of that step); returns it."""
    saved = read_json(path)
    data = saved if isinstance(saved, dict) and saved.get("metric") == metric else {"evaluations": []}
    evaluations = [e for e in data.get("evaluations", []) if e["step"] != step]
    evaluations.append({"step": step, "checkpoint": checkpoint, "score": score, "table": table})
    evaluations.sort(key=lambda e: e["step"])
    best = None
    for entry in evaluations:
        if entry["score"] is not None and is_better(entry["score"], best and best["score"], greater_is_better):
            best = entry
    data = {"metric": metric, "greater_is_better": greater_is_better, "evaluations": evaluations,
            "best": None if best is None else {k: best[k] for k in ("step", "checkpoint", "score")}}
    write_json_atomically(path, data)
    return data


def best_checkpoint(reference: str) -> str:
    """The folder `best:RUN_DIR` names: the best-scoring GRPO checkpoint recorded in RUN_DIR/grpo/selection.json."""
    run_dir = Path(reference[len(BEST_PREFIX):]).expanduser()
    path = run_dir / "grpo" / SELECTION_FILE
    data = read_json(path)
    if not isinstance(data, dict) or not data.get("best"):
        raise RecipeError(f"{reference}: no scored checkpoint in {path}; train that run with "
                          "grpo.metric_for_best_model set (e.g. auto) so its checkpoints are scored")
    folder = run_dir / "grpo" / data["best"]["checkpoint"]
    if (folder / "adapter_config.json").is_file():  # a LoRA checkpoint: its config.json (if any) is not a model's
        return str(merged_adapter(folder))
    if not (folder / "config.json").is_file():
        raise RecipeError(f"{reference}: the best checkpoint {folder} (step {data['best']['step']}, "
                          f"{data['metric']} {data['best']['score']}) has no config.json; it was deleted. Keep it "
                          "(output.save_total_limit) or name a model folder instead")
    return str(folder)


def merged_adapter(checkpoint: Path) -> Path:
    """A full model folder of a LoRA checkpoint (adapter merged into its base), made once at `<checkpoint>/merged`.

    A step-2 run from it with a fresh adapter then has the step-1 policy as TRL's disabled-adapter reference.
    """
    from unirg.run_folder import stage_record

    merged = checkpoint / "merged"
    if stage_record(merged) is not None:
        return merged
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from unirg.models.loading import load_processor
    from unirg.run_folder import new_stage_record
    from unirg.training.checkpoints import save_policy

    base = read_json(checkpoint / "adapter_config.json")["base_model_name_or_path"]
    if not (Path(base) / "config.json").is_file():
        raise RecipeError(f"{checkpoint}: a LoRA checkpoint whose base model {base} is gone; it cannot be merged")
    model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base), str(checkpoint))
    # Training leaves the processor as it was: the base model's is the checkpoint's.
    save_policy(model, load_processor(str(base)), merged,
                new_stage_record("merged_adapter", source=checkpoint.name, base=str(base)))
    return merged


class CheckpointSelectionCallback(TrainerCallback):
    """Scores each saved checkpoint on the validation split (main process only) and records the best."""

    def __init__(self, recipe, output_dir: Path, validation=None) -> None:
        self.recipe = recipe
        self.output_dir = Path(output_dir)
        self.validation = validation
        self.requested = recipe.grpo.get("metric_for_best_model") or AUTO
        self.greater_is_better = recipe.grpo.get("greater_is_better")
        self.models = None

    @property
    def path(self) -> Path:
        return self.output_dir / SELECTION_FILE

    def _dataset(self):
        if self.validation is None:
            from unirg.data import load_splits

            splits = load_splits(self.recipe.data, self.recipe.prompt, self.output_dir.parent)
            if splits.selection is None and splits.eval is None:
                raise RecipeError("grpo.metric_for_best_model: checkpoint selection needs a validation split; set "
                                  "data.eval_split, data.holdout, data.synthetic.n_val or data.synthetic.n_eval")
            self.validation = splits.selection if splits.selection is not None else splits.eval
        return self.validation

    def score_checkpoint(self, step: int, checkpoint: Path) -> dict[str, Any]:
        """Evaluate one saved checkpoint and record it; a step already scored (a re-run) is read back."""
        saved = read_json(self.path)
        if isinstance(saved, dict):
            for entry in saved.get("evaluations", []):
                if entry["step"] == step and entry["checkpoint"] == checkpoint.name:
                    return saved
        from unirg.evaluation.heldout import evaluate_dataset

        if self.models is None:
            from unirg.evaluation.metrics import MetricModels

            self.models = MetricModels()  # loaded once, shared by every checkpoint's evaluation
        weights = merged_adapter(checkpoint) if (checkpoint / "adapter_config.json").is_file() else checkpoint
        table = evaluate_dataset(str(weights), self._dataset(), self.recipe,
                                 models=self.models)["findings_impression"]
        metric = resolve_metric(self.requested, table)
        if metric not in table:
            raise RecipeError(f"grpo.metric_for_best_model: {metric!r} is not an evaluation metric; choose auto or "
                              f"one of {', '.join(sorted(table))}")
        greater = self.greater_is_better if self.greater_is_better is not None else metric not in LOWER_IS_BETTER
        score = table[metric]
        data = record_score(self.path, step, checkpoint.name, metric, bool(greater),
                            None if score is None else float(score), table)
        logger.info("checkpoint %s: validation %s %s (best: step %s)", checkpoint.name, metric, score,
                    data["best"] and data["best"]["step"])
        return data

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return control
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not checkpoint.is_dir():
            return control
        data = self.score_checkpoint(state.global_step, checkpoint)
        if data.get("best"):
            # transformers' checkpoint rotation keeps this one whatever save_total_limit says.
            state.best_model_checkpoint = str(Path(args.output_dir) / data["best"]["checkpoint"])
            state.best_metric = data["best"]["score"]
        return control
