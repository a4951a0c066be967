"""The demo across seeds: SFT vs GRPO on the held-out studies, and optionally UniRG step 2 after it.

    .venv/bin/python benchmarks/bench_demo.py [--seeds 0 1 2] [--step2] [--runs runs/bench-demo]

For each seed runs `unirg rl --recipe demo` into `<runs>/demo-s<seed>` with its checkpoints scored on
the validation split (`grpo.metric_for_best_model=auto`), and with `--step2` then `unirg rl --recipe
demo-step2` from that run's best checkpoint into `<runs>/step2-s<seed>`. Runs already finished are reused
(unirg never retrains a finished stage), so the script can be stopped and started again. Prints one
Markdown table per stage pair, with the wall time of each command as measured here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from unirg.run_folder import read_json

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ("chexpert_micro_f1_14", "chexpert_macro_f1_14", "duplicate_rate", "label_errors", "mean_words")


def run(recipe: str, run_dir: Path, seed: int, *overrides: str) -> float:
    """Seconds `unirg rl` took (0 when every stage was reused)."""
    args = [sys.executable, "-m", "unirg", "rl", "--recipe", recipe, "--run-dir", str(run_dir), f"seed={seed}",
            "logging.progress=false", *overrides]
    started = time.perf_counter()
    log = run_dir.with_suffix(".log")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as handle:
        code = subprocess.call(args, cwd=REPO, env=dict(os.environ, HF_HUB_OFFLINE="1"), stdout=handle,
                               stderr=subprocess.STDOUT)
    if code:
        raise SystemExit(f"{' '.join(args)} failed with exit code {code}; see {log}")
    return time.perf_counter() - started


def evaluation(run_dir: Path) -> dict[str, dict[str, Any]]:
    summary = read_json(run_dir / "summary.json") or {}
    return summary.get("evaluation") or {}


def _cell(value: Any) -> str:
    return "—" if value is None else f"{value:.3f}"


def table(title: str, rows: list[tuple[int, dict, dict, float]]) -> str:
    """Markdown: per seed, each column before → after; then mean ± sd of each side."""
    lines = [f"### {title}", "", "| seed | " + " | ".join(COLUMNS) + " | wall time |",
             "|---" * (len(COLUMNS) + 2) + "|"]
    for seed, before, after, seconds in rows:
        cells = [f"{_cell(before.get(c))} → {_cell(after.get(c))}" for c in COLUMNS]
        lines.append(f"| {seed} | " + " | ".join(cells) + f" | {seconds / 60:.1f} min |")
    if len(rows) > 1:
        cells = []
        for column in COLUMNS:
            sides = [[r[i].get(column) for r in rows] for i in (1, 2)]
            if any(v is None for side in sides for v in side):
                cells.append("—")
                continue
            cells.append(" → ".join(f"{statistics.mean(s):.3f} ± {statistics.stdev(s):.3f}" for s in sides))
        lines.append("| mean ± sd | " + " | ".join(cells) + " | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--step2", action="store_true", help="also run demo-step2 from each seed's best checkpoint")
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-demo"))
    args = parser.parse_args()
    step1, step2 = [], []
    for seed in args.seeds:
        demo_dir = args.runs / f"demo-s{seed}"
        seconds = run("demo", demo_dir, seed, "grpo.metric_for_best_model=auto")
        tables = evaluation(demo_dir)
        step1.append((seed, tables.get("before GRPO", {}), tables.get("after GRPO", {}), seconds))
        print(table("demo: SFT → GRPO (held-out)", step1[-1:]), flush=True)
        if args.step2:
            best = f"best:{demo_dir}"
            step2_dir = args.runs / f"step2-s{seed}"
            seconds = run("demo-step2", step2_dir, seed, f"model.name_or_path={best}", f"model.reference={best}")
            tables = evaluation(step2_dir)
            step2.append((seed, tables.get("before GRPO", {}), tables.get("after GRPO", {}), seconds))
            print(table("demo-step2: step 1's best checkpoint → step 2 (held-out)", step2[-1:]), flush=True)
    print()
    print(table("demo: SFT → GRPO (held-out)", step1))
    if step2:
        print()
        print(table("demo-step2: step 1's best checkpoint → step 2 (held-out)", step2))


if __name__ == "__main__":
    main()
