"""The `unirg rl` pipeline: data, model, optional SFT warm start, GRPO, held-out evaluation, run summary.

Every stage is idempotent: a finished stage (its final folder carries a stage record) is reused, a
killed one resumes from its last complete checkpoint, an evaluation already made of the same weights is
read back, and summary.json and report/ are replaced atomically. Running the same command again after a
kill at any point ends with the same weights, metrics.jsonl and summary as a run never interrupted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unirg.distributed import barrier, is_main_process, main_process_first
from unirg.evaluation.heldout import BY_DATASET, evaluate_dataset, heldout_references
from unirg.evaluation.report import write_report
from unirg.recipe import Recipe
from unirg.run_folder import (
    EVALUATION_DIR,
    RECIPE_FILE,
    SUMMARY_FILE,
    model_identity,
    read_json,
    write_json_atomically,
    write_text_atomically,
)
from unirg.training.checkpoints import check_finished_stages
from unirg.training.grpo import RunResult, run_grpo

# Rows of the before/after table in the run report and the terminal summary.
REPORT_METRICS = ("chexpert_micro_f1_14", "chexpert_macro_f1_14", "chexpert_micro_f1_5", "bleu2", "rouge_l",
                  "label_errors", "mean_words", "duplicate_rate", "n")


def run_pipeline(recipe: Recipe, run_dir: Path | None = None) -> RunResult:
    """Run every stage the recipe asks for; each stage resumes from what an earlier run left."""
    from rewards.weight_check import require_recipe_weights
    from unirg.data import load_splits
    from unirg.models.loading import load_processor, resolve_model_path
    from unirg.rollout.prompt_budget import check_prompt_budget
    from unirg.training.sft import run_sft

    # Before any stage: a missing reward model found after SFT would waste the whole warm start.
    require_recipe_weights(recipe)

    run_dir = Path(run_dir or recipe.run_dir())
    # A changed recipe must not replace the recipe.yaml of a run whose stages it would not match.
    check_finished_stages(recipe, run_dir)
    with main_process_first():
        # Rank 0 renders data and builds the tiny model; the other ranks then read what it wrote.
        if is_main_process():
            run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomically(run_dir / RECIPE_FILE, recipe.to_yaml())
        splits = load_splits(recipe.data, recipe.prompt, run_dir)
        model_path = resolve_model_path(recipe.model, run_dir, corpus=list(splits.train["reference"]))
    # Before any stage: vLLM would reject every over-long prompt at the first GRPO step, after SFT.
    check_prompt_budget(splits.train, load_processor(model_path, trust_remote_code=recipe.model.trust_remote_code),
                        recipe.data, recipe.rollout)
    reused: list[str] = []
    start_path = model_path
    if recipe.sft is not None:
        sft_final, sft_reused = run_sft(recipe, run_dir, splits, model_path)
        model_path = str(sft_final)
        reused += ["sft"] if sft_reused else []
    if recipe.grpo is not None:
        result = run_grpo(recipe, run_dir, splits.train, model_path)
        compared = (("before GRPO", model_path), ("after GRPO", str(result.final_model)))
    else:
        # An SFT-only recipe: its product is the SFT checkpoint, compared with the model it started from.
        result = RunResult(run_dir=run_dir, final_model=Path(model_path), summary={"steps": 0})
        compared = (("before SFT", start_path), ("after SFT", model_path))
    result.reused = reused + result.reused
    result.summary["run_dir"] = str(run_dir)
    if not is_main_process():
        barrier()
        return result
    evaluations = None
    if splits.eval is not None and recipe.evaluate:
        evaluations, by_dataset = {}, {}
        for name, path in compared:
            table, per_dataset, cached = _evaluation(run_dir, name, path, splits.eval, recipe)
            evaluations[name] = table
            for dataset_name, dataset_table in per_dataset.items():
                by_dataset.setdefault(dataset_name, {})[name] = dataset_table
            result.reused += [f"evaluation {name}"] if cached else []
        result.summary["evaluation"] = evaluations
        # The references' own length and duplicate rate, and a table per dataset of a held-out mixture.
        result.summary.update(heldout_references(splits.eval, by_dataset))
    rows = REPORT_METRICS
    if recipe.prompt.format == "reasoning":
        from unirg.reasoning.reflection import REASONING_METRICS

        rows = (*REPORT_METRICS, *REASONING_METRICS)
    result.report = write_report(run_dir, result.summary, evaluations, rows)
    write_json_atomically(run_dir / SUMMARY_FILE, result.summary)
    barrier()
    return result


def _evaluation(run_dir: Path, name: str, model_path: str, dataset,
                recipe: Recipe) -> tuple[dict[str, Any], dict[str, dict[str, Any]], bool]:
    """The held-out table of `model_path` (and one per dataset of a mixture), read back when these exact
    weights were already evaluated."""
    path = run_dir / EVALUATION_DIR / (name.replace(" ", "_").lower() + ".json")
    identity = model_identity(model_path)
    # Greedy generation depends on the weights, the studies and the completion budget only.
    key = {"model": identity, "n": len(dataset), "max_new_tokens": recipe.rollout.max_new_tokens}
    if recipe.rollout.reflection:
        key["reflection"] = True
    saved = read_json(path)
    if isinstance(saved, dict) and saved.get("key") == key and "by_dataset" in saved:
        return saved["table"], saved["by_dataset"], True
    per_dataset: dict[str, dict[str, Any]] = {}
    if recipe.prompt.format == "reasoning":
        from unirg.reasoning.reflection import REASONING_METRICS, evaluate_reasoning

        # Reasoning policies add their consistency (and, with reflection, draft-vs-final) rows.
        table = evaluate_reasoning(model_path, dataset, recipe)["findings_impression"]
        table = {metric: table.get(metric) for metric in (*REPORT_METRICS, *REASONING_METRICS) if metric in table}
    else:
        settings = evaluate_dataset(model_path, dataset, recipe, by_dataset=True)
        table = {metric: settings["findings_impression"][metric] for metric in REPORT_METRICS}
        per_dataset = {dataset_name: {metric: values[metric] for metric in REPORT_METRICS}
                       for dataset_name, values in settings.get(BY_DATASET, {}).items()}
    write_json_atomically(path, {"key": key, "table": table, "by_dataset": per_dataset})
    return table, per_dataset, False
