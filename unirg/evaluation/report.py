"""The run report: PNG plots of a run's metrics.jsonl and a markdown summary with the before/after table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unirg.run_folder import METRICS_FILE, REPORT_DIR, folder_written_atomically, read_rows


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(row["step"], row[key]) for row in rows if row.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_metrics(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Write one PNG per concern (rewards, completion length, KL, step time); returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    reward_keys = sorted({k for row in rows for k in row if k.startswith("rewards/") and k.endswith("/mean")})
    figures = [
        ("rewards.png", "Reward per plugin (mean over completions)", "reward", ["reward", *reward_keys]),
        ("completion_length.png", "Completion length", "tokens", ["completions/mean_length"]),
        ("kl.png", "KL to the reference policy", "KL", ["kl"]),
        ("step_time.png", "Wall time per optimizer step", "seconds", ["step_time"]),
    ]
    written = []
    for filename, title, ylabel, keys in figures:
        present = [key for key in keys if _series(rows, key)[0]]
        if not present:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for key in present:
            steps, values = _series(rows, key)
            label = "total (weighted)" if key == "reward" else key.removeprefix("rewards/").removesuffix("/mean")
            ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("GRPO step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(present) > 1:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / filename, dpi=110)
        plt.close(fig)
        written.append(out_dir / filename)
    return written


def comparison_table(columns: dict[str, dict[str, Any]], metrics: Sequence[str]) -> str:
    """A markdown table with one row per metric and one column per evaluated model."""
    names = list(columns)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for metric in metrics:
        cells = []
        for name in names:
            value = columns[name].get(metric)
            cells.append("—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value))
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(run_dir: Path, summary: dict[str, Any], evaluations: dict[str, dict[str, Any]] | None = None,
                 metrics: Sequence[str] = ()) -> Path:
    """Write `<run>/report/report.md` with the plots and, when given, the before/after evaluation table.

    The folder is replaced as a whole, so a kill mid-write leaves the previous report.
    """
    report_dir = run_dir / REPORT_DIR
    with folder_written_atomically(report_dir) as scratch:
        plots = plot_metrics(read_rows(run_dir / METRICS_FILE), scratch)
        lines = [f"# Run report: {run_dir.name}", ""]
        steps = summary.get("steps", 0)
        total = summary.get("reward", {})
        lines.append(f"{steps} GRPO steps; total reward {total.get('start')} at the first step, "
                     f"{total.get('end')} at the last.")
        if evaluations:
            lines += ["", "## Held-out evaluation", "", comparison_table(evaluations, metrics)]
        if plots:
            lines += ["", "## Training curves", ""]
            lines += [f"![{p.stem}]({p.name})" for p in plots]
        (scratch / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report_dir / "report.md"
