"""Resume bookkeeping: only complete checkpoints are picked, metrics rows are never duplicated."""

from __future__ import annotations

import json
from types import SimpleNamespace

from unirg.run_folder import CHECKPOINT_COMPLETE as COMPLETE_MARKER
from unirg.run_folder import last_checkpoint
from unirg.training.callbacks import (
    CheckpointCompleteCallback,
    MetricsFileCallback,
    summarize,
    truncate_metrics,
)


def test_half_written_checkpoint_is_never_picked(tmp_path):
    for step in (2, 4, 6):
        (tmp_path / f"checkpoint-{step}").mkdir()
    callback = CheckpointCompleteCallback()
    for step in (2, 4):
        callback.on_save(SimpleNamespace(output_dir=str(tmp_path)),
                         SimpleNamespace(global_step=step, is_world_process_zero=True), None)
    assert (tmp_path / "checkpoint-4" / COMPLETE_MARKER).is_file()
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-4"


def test_no_checkpoint(tmp_path):
    assert last_checkpoint(tmp_path) is None
    assert last_checkpoint(tmp_path / "missing") is None


def test_truncate_drops_rows_after_resume_point_and_torn_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "reward": s / 10}) + "\n" for s in range(1, 6)) + '{"step": 6, "rew')
    truncate_metrics(path, 3)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]


def test_metrics_callback_writes_numbers_only_and_summarizes(tmp_path):
    path = tmp_path / "metrics.jsonl"
    callback = MetricsFileCallback(path)
    state = SimpleNamespace(global_step=1, is_world_process_zero=True)
    callback.on_log(None, state, None, logs={"loss": 0.5, "reward": 0.1, "rewards/format/mean": 0.2,
                                              "completions/mean_length": 12.0, "epoch": 0.1, "step_time": 2.0,
                                              "time/generation": 1.5, "time/other": 0.5})
    state.global_step = 2
    callback.on_log(None, state, None, logs={"loss": 0.4, "reward": 0.3, "rewards/format/mean": float("nan"),
                                              "step_time": 4.0, "time/generation": 3.0, "time/checkpoint": 0.5,
                                              "time/other": 0.5})
    callback.on_log(None, state, None, logs={"train_runtime": 3.0})
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0]["rewards/format/mean"] == 0.2 and "epoch" not in rows[0] and rows[0]["step_time"] == 2.0
    assert rows[0]["time/generation"] == 1.5
    assert rows[1]["rewards/format/mean"] is None
    summary = summarize(MetricsFileCallback(path).rows, ["format"])
    assert summary["steps"] == 2 and summary["steps_averaged"] == 1
    assert summary["reward"] == {"first_10pct": 0.1, "last_10pct": 0.3}
    assert summary["rewards"]["format"] == {"first_10pct": 0.2, "last_10pct": None}
    assert summary["mean_step_time"] == 3.0
    # A part missing from a step (no checkpoint written in it) counts as 0 s there.
    assert summary["mean_step_time_parts"] == {"checkpoint": 0.25, "generation": 2.25, "other": 0.5}


def test_summary_averages_the_first_and_last_tenth_of_the_steps():
    rows = [{"step": step, "reward": float(step)} for step in range(1, 41)]
    summary = summarize(rows, [])
    assert summary["steps_averaged"] == 4
    assert summary["reward"] == {"first_10pct": 2.5, "last_10pct": 38.5}


def test_metrics_callback_writes_nothing_on_other_ranks(tmp_path):
    path = tmp_path / "metrics.jsonl"
    callback = MetricsFileCallback(path)
    callback.on_log(None, SimpleNamespace(global_step=1, is_world_process_zero=False), None, logs={"loss": 0.5})
    assert not path.exists() and callback.rows == []
