"""Evaluate a checkpoint on a recipe's held-out studies: generate reports, then score them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unirg.errors import DataError
from unirg.recipe import Recipe


def evaluate_dataset(model_path: str, dataset, recipe: Recipe, models=None) -> dict[str, dict[str, Any]]:
    """Greedy reports of `model_path` on `dataset`, scored per setting.

    `models` (a `unirg.evaluation.metrics.MetricModels`) lets several evaluations share the loaded metric
    models, e.g. when every saved checkpoint is scored; by default each call loads its own.
    """
    from unirg.evaluation.generate import generate_reports
    from unirg.evaluation.metrics import evaluate_settings

    completions = generate_reports(model_path, dataset, max_new_tokens=recipe.rollout.max_new_tokens,
                                   trust_remote_code=recipe.model.trust_remote_code, progress=recipe.logging.progress)
    return evaluate_settings(completions, dataset["reference_findings"], dataset["reference_impression"],
                             dataset["reference_labels"], models)


def evaluate_checkpoint(recipe: Recipe, checkpoint: str | None, work_dir: Path) -> dict[str, dict[str, Any]]:
    """Load the recipe's held-out split and evaluate `checkpoint` (default: the recipe's model) on it."""
    from unirg.data import load_splits
    from unirg.models.loading import resolve_model_path

    splits = load_splits(recipe.data, recipe.prompt, work_dir)
    if splits.eval is None:
        raise DataError("the recipe has no held-out split: set data.eval_split (or data.synthetic.n_eval)")
    model_path = checkpoint or resolve_model_path(recipe.model, work_dir, corpus=list(splits.train["reference"]))
    return evaluate_dataset(model_path, splits.eval, recipe)
