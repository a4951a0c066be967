"""Terminal output of a finished run: the summary table users read first."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def print_run_summary(result: Any, console: Console | None = None) -> None:
    """Print steps, each reward at the start and end of training, and where the outputs are."""
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
    table.add_column("reward")
    table.add_column("first step", justify="right")
    table.add_column("last step", justify="right")
    total = summary.get("reward", {})
    table.add_row("total (weighted)", _fmt(total.get("start")), _fmt(total.get("end")))
    for name, values in summary.get("rewards", {}).items():
        table.add_row(name, _fmt(values.get("start")), _fmt(values.get("end")))
    console.print(table)
    if summary.get("mean_step_time") is not None:
        console.print(f"mean step time: {summary['mean_step_time']:.2f} s")
    evaluation = summary.get("evaluation")
    if evaluation:
        names = list(evaluation)
        held_out = Table(title="held-out evaluation (findings + impression)")
        held_out.add_column("metric")
        for name in names:
            held_out.add_column(name, justify="right")
        for metric in next(iter(evaluation.values())):
            held_out.add_row(metric, *(_fmt(evaluation[name].get(metric)) for name in names))
        console.print(held_out)
    if getattr(result, "report", None):
        console.print(f"run report:  {result.report}")
    console.print(f"run folder:  {result.run_dir}  (metrics.jsonl, recipe.yaml, checkpoints, tensorboard/)")
    console.print(f"final model: {result.final_model}")
