"""Evaluate a checkpoint on a recipe's held-out studies: generate reports, then score them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unirg.errors import DataError
from unirg.recipe import Recipe

# Key of `evaluate_dataset(..., by_dataset=True)`'s result holding one findings + impression table per dataset.
BY_DATASET = "by_dataset"


def evaluate_dataset(model_path: str, dataset, recipe: Recipe, models=None,
                     by_dataset: bool = False) -> dict[str, dict[str, Any]]:
    """Greedy reports of `model_path` on `dataset`, scored per setting.

    `models` (a `unirg.evaluation.metrics.MetricModels`) lets several evaluations share the loaded metric
    models, e.g. when every saved checkpoint is scored; by default each call loads its own. With
    `by_dataset` and a held-out mixture (several names in the `dataset` column), the result also holds
    `BY_DATASET`: {dataset name: its findings + impression table}.
    """
    from unirg.evaluation.generate import generate_reports

    if recipe.rollout.reflection:
        # The policy was trained to answer after its reflection turn: score that final answer.
        from unirg.reasoning.reflection import two_pass_completions

        completions = two_pass_completions(model_path, dataset, recipe)[1]
    else:
        completions = generate_reports(model_path, dataset, max_new_tokens=recipe.rollout.max_new_tokens,
                                       trust_remote_code=recipe.model.trust_remote_code,
                                       progress=recipe.logging.progress)
    return score_completions(completions, dataset, models, by_dataset)


def score_completions(completions: list[str], dataset, models=None, by_dataset: bool = False) -> dict[str, Any]:
    """The metric tables of `completions` (one per row of `dataset`); see `evaluate_dataset`."""
    from unirg.evaluation.metrics import evaluate_settings

    settings: dict[str, Any] = evaluate_settings(completions, dataset["reference_findings"],
                                                 dataset["reference_impression"], dataset["reference_labels"], models)
    groups = dataset_groups(dataset)
    if by_dataset and len(groups) > 1:
        settings[BY_DATASET] = {
            name: evaluate_settings([completions[i] for i in rows], [dataset["reference_findings"][i] for i in rows],
                                    [dataset["reference_impression"][i] for i in rows],
                                    [dataset["reference_labels"][i] for i in rows], models)["findings_impression"]
            for name, rows in groups.items()}
    return settings


def dataset_groups(dataset) -> dict[str, list[int]]:
    """Row indices per name in the `dataset` column (one group when the column is missing)."""
    names = dataset["dataset"] if "dataset" in dataset.column_names else [""] * len(dataset)
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        groups.setdefault(name or "", []).append(index)
    return groups


def reference_stats(findings: list[str], impressions: list[str]) -> dict[str, Any]:
    """Count, mean length in words and duplicate rate of the reference reports themselves.

    Measured on findings + impression joined, as the model's reports are scored against them, and with the
    same duplicate definition as the model's column, so the two read side by side.
    """
    from unirg.evaluation.metrics import duplicate_rate

    references = [" ".join(part for part in (f, i) if part) for f, i in zip(findings, impressions, strict=True)]
    words = [len(text.split()) for text in references]
    return {"n": len(references), "mean_words": sum(words) / len(words) if words else None,
            "duplicate_rate": duplicate_rate(references)}


def heldout_references(dataset, by_dataset: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Summary entries of the held-out references: `references`, and `evaluation_by_dataset` for a mixture.

    `by_dataset` is {dataset name: {model column: table}}; each dataset gets its references' column too.
    """
    findings, impressions = list(dataset["reference_findings"]), list(dataset["reference_impression"])
    entries: dict[str, Any] = {"references": reference_stats(findings, impressions)}
    if by_dataset:
        groups = dataset_groups(dataset)
        entries["evaluation_by_dataset"] = {
            name: {**columns, "references": reference_stats([findings[i] for i in groups.get(name, [])],
                                                            [impressions[i] for i in groups.get(name, [])])}
            for name, columns in by_dataset.items()}
    return entries


def evaluate_checkpoint(recipe: Recipe, checkpoint: str | None, work_dir: Path) -> dict[str, dict[str, Any]]:
    """Load the recipe's held-out split and evaluate `checkpoint` (default: the recipe's model) on it."""
    from unirg.data import load_splits
    from unirg.models.loading import resolve_model_path

    splits = load_splits(recipe.data, recipe.prompt, work_dir)
    if splits.eval is None:
        raise DataError("the recipe has no held-out split: set data.eval_split (or data.synthetic.n_eval)")
    model_path = checkpoint or resolve_model_path(recipe.model, work_dir, corpus=list(splits.train["reference"]))
    return evaluate_dataset(model_path, splits.eval, recipe)
