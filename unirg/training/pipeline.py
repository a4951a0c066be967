"""The `unirg rl` pipeline: data, model, optional SFT warm start, GRPO, held-out evaluation, run summary."""

from __future__ import annotations

import json
from pathlib import Path

from unirg.evaluation.heldout import evaluate_dataset
from unirg.evaluation.report import write_report
from unirg.recipe import Recipe
from unirg.training.grpo import RunResult, run_grpo

# Rows of the before/after table in the run report and the terminal summary.
REPORT_METRICS = ("chexpert_micro_f1_14", "chexpert_macro_f1_14", "chexpert_micro_f1_5", "bleu2", "rouge_l",
                  "mean_words", "duplicate_rate", "n")


def run_pipeline(recipe: Recipe, run_dir: Path | None = None) -> RunResult:
    """Run every stage the recipe asks for; each stage resumes from what an earlier run left."""
    from rewards.weight_check import require_recipe_weights
    from unirg.data import load_splits
    from unirg.models.loading import resolve_model_path
    from unirg.training.sft import run_sft

    # Before any stage: a missing reward model found after SFT would waste the whole warm start.
    require_recipe_weights(recipe)

    run_dir = Path(run_dir or recipe.run_dir())
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
    splits = load_splits(recipe.data, recipe.prompt, run_dir)
    model_path = resolve_model_path(recipe.model, run_dir, corpus=list(splits.train["reference"]))
    if recipe.sft is not None:
        model_path = str(run_sft(recipe, run_dir, splits, model_path))
    result = run_grpo(recipe, run_dir, splits.train, model_path)
    result.summary["run_dir"] = str(run_dir)
    evaluations = None
    if splits.eval is not None and recipe.evaluate:
        evaluations = {}
        for name, path in (("before GRPO", model_path), ("after GRPO", str(result.final_model))):
            table = evaluate_dataset(path, splits.eval, recipe)["findings_impression"]
            evaluations[name] = {metric: table[metric] for metric in REPORT_METRICS}
        result.summary["evaluation"] = evaluations
    result.report = write_report(run_dir, result.summary, evaluations, REPORT_METRICS)
    (run_dir / "summary.json").write_text(json.dumps(result.summary, indent=2), encoding="utf-8")
    return result
