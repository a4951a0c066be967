"""Trainer callbacks: the metrics JSONL of a run, step timing, and the end-of-run summary."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from unirg.run_folder import mark_checkpoint_complete, read_rows, write_text_atomically

# Keys copied from the logs into metrics.jsonl (plus every rewards/, sampling/, reflection/ and time/ key).
_KEPT_KEYS = ("loss", "reward", "reward_std", "kl", "entropy", "completions/mean_length", "learning_rate",
              "grad_norm", "frac_reward_zero_std", "step_time")


class MetricsFileCallback(TrainerCallback):
    """Append one JSON line per logged step to `<run>/metrics.jsonl` and keep them for the summary.

    Each line has the step, each reward's mean, the loss, KL and mean completion length, and the step
    time with its breakdown (`step_time`, `time/<part>`, see unirg.training.step_timing). Only numbers are
    written: completions never reach this file.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        # Rows of earlier, resumed-from runs count too, so the summary spans the whole run.
        self.rows: list[dict[str, Any]] = read_rows(self.path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # Every rank logs the same (already gathered) numbers; rank 0 alone owns the run folder.
        if not logs or "train_runtime" in logs or not state.is_world_process_zero:
            return
        row: dict[str, Any] = {"step": state.global_step}
        for key, value in logs.items():
            # sampling/*: vLLM-vs-policy importance-sampling ratios; near 0 means broken rollouts.
            # reflection/*: how often the reflection pass changed the report, F1 of draft and final.
            # step_time and time/*: the step-time breakdown added by unirg.training.step_timing.
            if key in _KEPT_KEYS or key.startswith(("rewards/", "sampling/", "reflection/", "time/")):
                row[key] = _number(value)
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


# The summary compares the mean of the first and of the last tenth of the logged steps (one step at least).
EDGE_FRACTION = 0.1


def edge_size(count: int) -> int:
    """How many logged steps each end of a run's summary averages: a tenth of them, at least one."""
    return max(1, int(count * EDGE_FRACTION))


def summarize(rows: list[dict[str, Any]], reward_names: list[str]) -> dict[str, Any]:
    """The run in a few numbers: reward means over its first and last 10% of steps, and its step time.

    `reward` and `rewards/<name>` hold `first_10pct` and `last_10pct` (means over `steps_averaged` logged
    steps at each end); `mean_step_time_parts` is the mean step-time breakdown (seconds per part).
    """
    if not rows:
        return {"steps": 0}
    size = edge_size(len(rows))
    first, last = rows[:size], rows[-size:]

    def ends(key: str) -> dict[str, float | None]:
        return {"first_10pct": _mean([r.get(key) for r in first]), "last_10pct": _mean([r.get(key) for r in last])}

    timed = [row for row in rows if row.get("step_time") is not None]
    parts = sorted({key for row in timed for key in row if key.startswith("time/")})
    return {
        "steps": rows[-1]["step"],
        "steps_averaged": size,
        "reward": ends("reward"),
        "rewards": {name: ends(f"rewards/{name}/mean") for name in reward_names},
        "mean_step_time": _mean([row["step_time"] for row in timed]),
        # A part a step did not run (no generation on a step that reuses the buffer) counts as 0 s there.
        "mean_step_time_parts": {key.removeprefix("time/"): _mean([row.get(key) or 0.0 for row in timed])
                                 for key in parts},
    }


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def use_tensorboard_dir(path: Path) -> None:
    """Point the Trainer's TensorBoard writer at `path`.

    transformers 5 dropped `TrainingArguments.logging_dir`; its TensorBoard callback reads this variable.
    """
    import os

    os.environ["TENSORBOARD_LOGGING_DIR"] = str(path)


class CheckpointCompleteCallback(TrainerCallback):
    """Mark a checkpoint folder complete once the Trainer has written all of it.

    The Trainer writes checkpoint-N in place, file by file; a run killed halfway leaves a folder that looks
    like a checkpoint. Resuming only from marked folders means a half-written one is never picked.
    """

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                mark_checkpoint_complete(folder, state.global_step)


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop metrics rows logged after `last_step`, so a resumed run logs each step exactly once."""
    if not path.is_file():
        return
    kept = [row for row in read_rows(path) if isinstance(row.get("step"), int) and row["step"] <= last_step]
    write_text_atomically(path, "".join(json.dumps(row) + "\n" for row in kept))


class CompactProgressCallback(TrainerCallback):
    """A progress bar showing the step and the total reward, instead of the Trainer's printed log dicts."""

    def __init__(self, description: str):
        self.description = description
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=self.description,
                            dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs and "reward" in logs:
            self.bar.set_postfix(reward=f"{float(logs['reward']):.3f}", refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def use_compact_progress(trainer, description: str, show: bool) -> None:
    """Swap the Trainer's progress and printer callbacks for one compact bar (or none)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    if show:
        trainer.add_callback(CompactProgressCallback(description))
