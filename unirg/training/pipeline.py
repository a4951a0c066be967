"""The `unirg rl` pipeline: data, model, optional SFT warm start, GRPO, held-out evaluation, run summary."""

from __future__ import annotations

import json
from pathlib import Path

from unirg.recipe import Recipe
from unirg.training.grpo import RunResult, run_grpo


def run_pipeline(recipe: Recipe, run_dir: Path | None = None) -> RunResult:
    """Run every stage the recipe asks for; each stage resumes from what an earlier run left."""
    from unirg.data import load_splits
    from unirg.models.loading import resolve_model_path
    from unirg.training.sft import run_sft

    run_dir = Path(run_dir or recipe.run_dir())
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
    splits = load_splits(recipe.data, recipe.prompt, run_dir)
    model_path = resolve_model_path(recipe.model, run_dir, corpus=list(splits.train["reference"]))
    if recipe.sft is not None:
        model_path = str(run_sft(recipe, run_dir, splits, model_path))
    result = run_grpo(recipe, run_dir, splits.train, model_path)
    result.summary["run_dir"] = str(run_dir)
    (run_dir / "summary.json").write_text(json.dumps(result.summary, indent=2), encoding="utf-8")
    return result
