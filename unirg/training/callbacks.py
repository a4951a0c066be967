"""Trainer callbacks: the metrics JSONL of a run, step timing, and the end-of-run summary."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

# Keys copied from TRL's logs into metrics.jsonl (plus every rewards/<name>/... key).
_KEPT_KEYS = ("loss", "reward", "reward_std", "kl", "entropy", "completions/mean_length", "learning_rate",
              "grad_norm", "frac_reward_zero_std")


class MetricsFileCallback(TrainerCallback):
    """Append one JSON line per logged step to `<run>/metrics.jsonl` and keep them for the summary.

    Each line has the step, the wall time of the step, each reward's mean and the loss, KL and mean
    completion length. Only numbers are written: completions never reach this file.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        self._step_started = time.perf_counter()
        self._step_seconds: float | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._step_seconds = time.perf_counter() - self._step_started

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "train_runtime" in logs:
            return
        row: dict[str, Any] = {"step": state.global_step}
        for key, value in logs.items():
            if key in _KEPT_KEYS or key.startswith("rewards/"):
                row[key] = _number(value)
        if self._step_seconds is not None:
            row["step_time"] = round(self._step_seconds, 4)
        self.rows.append(row)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def summarize(rows: list[dict[str, Any]], reward_names: list[str]) -> dict[str, Any]:
    """Reward means at the first and last logged step, per reward and in total."""
    if not rows:
        return {"steps": 0}
    first, last = rows[0], rows[-1]
    per_reward = {
        name: {"start": first.get(f"rewards/{name}/mean"), "end": last.get(f"rewards/{name}/mean")}
        for name in reward_names
    }
    return {
        "steps": last["step"],
        "reward": {"start": first.get("reward"), "end": last.get("reward")},
        "rewards": per_reward,
        "mean_step_time": _mean([r["step_time"] for r in rows if r.get("step_time") is not None]),
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
