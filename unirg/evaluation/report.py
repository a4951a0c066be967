"""The run report: PNG plots of a run's metrics.jsonl and a markdown summary with the before/after table.

Every curve shows its per-step values faint and a centred moving average on top (the window grows with
the run: a tenth of its steps, odd, at least 1); the step time is a stacked plot of its breakdown
(unirg.training.step_timing). Numbers are rounded for reading: scores to 3 decimals, lengths to 1,
seconds to 1 (2 below one second).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unirg.run_folder import METRICS_FILE, REPORT_DIR, folder_written_atomically, read_rows

# Breakdown parts in the order of a step (the stacked plot and the table); reward/<name> parts go after
# weight_sync, any part not listed before `other`.
PART_ORDER = ("data", "generation", "weight_sync", "reward/", "old_logprobs", "ref_logprobs", "train", "checkpoint",
              "evaluation")
REFERENCES = "references"


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(row["step"], row[key]) for row in rows if row.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def smoothing_window(count: int) -> int:
    """Moving-average window for a curve of `count` points: a tenth of them, odd so it centres, at least 1."""
    window = max(1, count // 10)
    return window if window % 2 else window + 1


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Centred moving average; near the ends the window shrinks to the points that exist."""
    half = window // 2
    averaged = []
    for index in range(len(values)):
        chunk = values[max(0, index - half):index + half + 1]
        averaged.append(sum(chunk) / len(chunk))
    return averaged


def ordered_parts(names: Sequence[str]) -> list[str]:
    """Breakdown parts in step order (see PART_ORDER), `other` last."""
    def rank(name: str) -> tuple[int, str]:
        for index, prefix in enumerate(PART_ORDER):
            if name == prefix or (prefix.endswith("/") and name.startswith(prefix)):
                return index, name
        return (len(PART_ORDER) + (1 if name == "other" else 0)), name

    return sorted(names, key=rank)


def format_value(metric: str, value: Any) -> str:
    """A table cell: counts as they are, words to 1 decimal, seconds to 1 (2 below 1 s), scores to 3."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if metric == "mean_words" or metric.endswith("length"):
        return f"{value:.1f}"
    if metric.endswith("seconds") or metric.endswith("time"):
        # Sub-second parts keep two decimals so they do not all read 0.0.
        if value and abs(value) < 0.01:
            return "<0.01"
        return f"{value:.1f}" if abs(value) >= 1 else f"{value:.2f}"
    return f"{value:.3f}"


def _label(key: str) -> str:
    return "total (weighted)" if key == "reward" else key.removeprefix("rewards/").removesuffix("/mean")


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
        ("loss.png", "GRPO loss", "loss", ["loss"]),
    ]
    written = []
    for filename, title, ylabel, keys in figures:
        present = [key for key in keys if _series(rows, key)[0]]
        if not present:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        window = 1
        for index, key in enumerate(present):
            steps, values = _series(rows, key)
            window = smoothing_window(len(values))
            color = f"C{index}"
            if window > 1:
                ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
            ax.plot(steps, moving_average(values, window), color=color, linewidth=1.8, label=_label(key),
                    marker="o" if len(steps) < 15 else None, markersize=3)
        _finish(fig, ax, title, ylabel, window, legend=len(present) > 1)
        fig.savefig(out_dir / filename, dpi=110)
        plt.close(fig)
        written.append(out_dir / filename)
    breakdown = plot_step_time(rows, out_dir)
    return written + ([breakdown] if breakdown else [])


def plot_step_time(rows: list[dict[str, Any]], out_dir: Path) -> Path | None:
    """Stacked step-time breakdown (moving averages) over the measured step time; None without step times."""
    import matplotlib.pyplot as plt

    timed = [row for row in rows if row.get("step_time") is not None]
    if not timed:
        return None
    steps = [row["step"] for row in timed]
    totals = [row["step_time"] for row in timed]
    window = smoothing_window(len(timed))
    parts = ordered_parts({key.removeprefix("time/") for row in timed for key in row if key.startswith("time/")})
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    if parts:
        # A part a step did not run counts 0 there; `other` can be a hair below 0 from rounding.
        raw = [[max(0.0, row.get(f"time/{part}") or 0.0) for row in timed] for part in parts]
        layers = [moving_average(values, window) for values in raw]
        shares = [100 * sum(values) / (sum(totals) or 1.0) for values in raw]
        labels = [f"{part} ({share:.0f}%)" for part, share in zip(parts, shares, strict=True)]
        colors = ["lightgray" if part == "other" else plt.get_cmap("tab10")(i % 10) for i, part in enumerate(parts)]
        ax.stackplot(steps, layers, labels=labels, colors=colors, alpha=0.85)
    else:  # a run logged before the breakdown existed: the step time alone
        ax.plot(steps, moving_average(totals, window), color="C0", linewidth=1.8, label="step time (average)")
    ax.plot(steps, totals, color="black", alpha=0.3, linewidth=0.8, label="step time (per step)")
    title = "Step time by part" if parts else "Wall time per optimizer step"
    _finish(fig, ax, title, "seconds", window, legend=True,
            smoothed="areas: moving average" if parts else "line: moving average")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path = out_dir / "step_time.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _finish(fig, ax, title: str, ylabel: str, window: int, legend: bool,
            smoothed: str = "line: moving average") -> None:
    ax.set_title(title if window <= 1 else f"{title}\n(faint: each step; {smoothed} over {window} steps)",
                 fontsize=10)
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("GRPO step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=8)
    fig.tight_layout()


def comparison_table(columns: dict[str, dict[str, Any]], metrics: Sequence[str]) -> str:
    """A markdown table with one row per metric and one column per evaluated model (or the references)."""
    names = list(columns)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for metric in metrics:
        cells = [format_value(metric, columns[name].get(metric)) for name in names]
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def dataset_table(by_dataset: dict[str, dict[str, dict[str, Any]]], metrics: Sequence[str]) -> str:
    """A markdown table with one row per (dataset, model or references) and one column per metric."""
    lines = ["| dataset | model | " + " | ".join(metrics) + " |", "|---|---|" + "---:|" * len(metrics)]
    for dataset, columns in by_dataset.items():
        for name, table in columns.items():
            cells = [format_value(metric, table.get(metric)) for metric in metrics]
            lines.append(f"| {dataset} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reward_table(summary: dict[str, Any]) -> list[str]:
    """Markdown lines comparing each reward's mean over the first and last tenth of the run."""
    size = summary.get("steps_averaged", 1)
    span = "step" if size == 1 else f"{size} steps"
    lines = [f"| reward | first {span} | last {span} | change |", "|---|---:|---:|---:|"]
    entries = [("total (weighted)", summary.get("reward") or {}),
               *((name, values) for name, values in (summary.get("rewards") or {}).items())]
    for name, values in entries:
        first, last = values.get("first_10pct"), values.get("last_10pct")
        change = last - first if first is not None and last is not None else None
        change_text = "—" if change is None else f"{change:+.3f}"
        lines.append(f"| {name} | {format_value(name, first)} | {format_value(name, last)} | {change_text} |")
    return lines


def step_time_table(summary: dict[str, Any]) -> list[str]:
    """Markdown lines with the mean seconds and share of each step-time part."""
    total = summary.get("mean_step_time")
    parts = summary.get("mean_step_time_parts") or {}
    if not total or not parts:
        return []
    lines = ["| part | mean seconds | share |", "|---|---:|---:|"]
    for part in ordered_parts(list(parts)):
        lines.append(f"| {part} | {format_value('seconds', parts[part])} | {100 * parts[part] / total:.1f}% |")
    lines.append(f"| **step** | {format_value('seconds', total)} | 100% |")
    return lines


def write_report(run_dir: Path, summary: dict[str, Any], evaluations: dict[str, dict[str, Any]] | None = None,
                 metrics: Sequence[str] = ()) -> Path:
    """Write `<run>/report/report.md` with the plots and, when given, the before/after evaluation table.

    The evaluation table gets the references' own column (`summary["references"]`) and, for a held-out
    mixture, a table per dataset (`summary["evaluation_by_dataset"]`). The folder is replaced as a whole,
    so a kill mid-write leaves the previous report.
    """
    report_dir = run_dir / REPORT_DIR
    with folder_written_atomically(report_dir) as scratch:
        plots = plot_metrics(read_rows(run_dir / METRICS_FILE), scratch)
        lines = [f"# Run report: {run_dir.name}", ""]
        steps = summary.get("steps", 0)
        if steps:
            size = summary.get("steps_averaged", 1)
            span = "logged step" if size == 1 else f"{size} logged steps"
            lines += [f"{steps} GRPO steps. Rewards averaged over the first and the last {span} "
                      "(a tenth of the run, at least one step):", ""]
            lines += reward_table(summary)
        timing = step_time_table(summary)
        if timing:
            lines += ["", "## Step time", "", "Mean wall time of an optimizer step and where it goes "
                      "(`other`: what no part covers, unirg's own overhead included).", "", *timing]
        if evaluations:
            columns = dict(evaluations)
            if summary.get(REFERENCES):
                columns[REFERENCES] = summary[REFERENCES]
            lines += ["", "## Held-out evaluation", "", comparison_table(columns, metrics)]
            if summary.get("evaluation_by_dataset"):
                lines += ["", "### Per dataset", "", dataset_table(summary["evaluation_by_dataset"], metrics)]
        if plots:
            lines += ["", "## Training curves", ""]
            lines += [f"![{p.stem}]({p.name})" for p in plots]
        (scratch / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report_dir / "report.md"
