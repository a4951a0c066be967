"""Trainer callbacks: the metrics JSONL of a run, step timing, and the end-of-run summary."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from unirg.run_folder import mark_checkpoint_complete, read_rows, write_text_atomically

# Keys copied from TRL's logs into metrics.jsonl (plus every rewards/<name>/... and sampling/... key).
_KEPT_KEYS = ("loss", "reward", "reward_std", "kl", "entropy", "completions/mean_length", "learning_rate",
              "grad_norm", "frac_reward_zero_std")


class MetricsFileCallback(TrainerCallback):
    """Append one JSON line per logged step to `<run>/metrics.jsonl` and keep them for the summary.

    Each line has the step, the wall time of the step, each reward's mean and the loss, KL and mean
    completion length. Only numbers are written: completions never reach this file.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        # Rows of earlier, resumed-from runs count too, so the summary spans the whole run.
        self.rows: list[dict[str, Any]] = read_rows(self.path)
        self._step_started = time.perf_counter()
        self._step_seconds: float | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._step_seconds = time.perf_counter() - self._step_started

    def on_log(self, args, state, control, logs=None, **kwargs):
        # Every rank logs the same (already gathered) numbers; rank 0 alone owns the run folder.
        if not logs or "train_runtime" in logs or not state.is_world_process_zero:
            return
        row: dict[str, Any] = {"step": state.global_step}
        for key, value in logs.items():
            # sampling/*: vLLM-vs-policy importance-sampling ratios; near 0 means broken rollouts.
            if key in _KEPT_KEYS or key.startswith(("rewards/", "sampling/")):
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
