"""Terminal output of a finished run: the summary table users read first."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from unirg.evaluation.report import REFERENCES, format_value, ordered_parts


def print_run_summary(result: Any, console: Console | None = None) -> None:
    """Print steps, each reward over the first and last tenth of training, the step time, and the outputs."""
    console = console or Console()
    summary = result.summary
    reused = getattr(result, "reused", [])
    sft_only_done = summary.get("steps") == 0 and "sft" in reused
    if "grpo" in reused or sft_only_done:
        redone = [] if all(f"evaluation {n}" in reused for n in summary.get("evaluation") or {}) else \
            ["the held-out evaluation"]
        console.print(f"[bold]run already complete[/bold]: reused {', '.join(reused)}"
                      + (f"; redid {', '.join(redone)}" if redone else "; nothing was retrained or re-evaluated"))
    elif reused:
        console.print(f"reused finished stages: {', '.join(reused)}")
    table = Table(title=f"unirg rl: {summary.get('steps', 0)} GRPO steps")
    size = summary.get("steps_averaged", 1)
    span = "step" if size == 1 else f"{size} steps"
    table.add_column("reward")
    table.add_column(f"first {span} (mean)", justify="right")
    table.add_column(f"last {span} (mean)", justify="right")
    total = summary.get("reward", {})
    table.add_row("total (weighted)", format_value("reward", total.get("first_10pct")),
                  format_value("reward", total.get("last_10pct")))
    for name, values in summary.get("rewards", {}).items():
        table.add_row(name, format_value(name, values.get("first_10pct")), format_value(name, values.get("last_10pct")))
    console.print(table)
    if summary.get("mean_step_time") is not None:
        mean = summary["mean_step_time"]
        parts = summary.get("mean_step_time_parts") or {}
        shares = ", ".join(f"{part} {100 * parts[part] / mean:.0f}%" for part in ordered_parts(list(parts))
                           if mean and parts[part] / mean >= 0.005)
        console.print(f"mean step time: {format_value('seconds', mean)} s" + (f" ({shares})" if shares else ""))
    evaluation = summary.get("evaluation")
    if evaluation:
        columns = {**evaluation, **({REFERENCES: summary[REFERENCES]} if summary.get(REFERENCES) else {})}
        held_out = Table(title="held-out evaluation (findings + impression)")
        held_out.add_column("metric")
        for name in columns:
            held_out.add_column(name, justify="right")
        for metric in next(iter(evaluation.values())):
            held_out.add_row(metric, *(format_value(metric, columns[name].get(metric)) for name in columns))
        console.print(held_out)
    if getattr(result, "report", None):
        console.print(f"run report:  {result.report}")
    console.print(f"run folder:  {result.run_dir}  (metrics.jsonl, recipe.yaml, checkpoints, tensorboard/)")
    console.print(f"final model: {result.final_model}")
