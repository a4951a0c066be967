"""A run stopped at any stage boundary and run again ends exactly where an uninterrupted run ends.

Each case stops a short demo run at one point (mid-SFT at a checkpoint, after SFT, mid-GRPO at a
checkpoint, after GRPO before evaluation, after the whole run), runs the same command again, and compares
with one uninterrupted run of the same recipe and seed: every final tensor (max |Δ| ≤ 1e-6), every
metrics row logged exactly once with the same numbers, the same summary. A "missing keys" warning while
loading a checkpoint fails the test: it means weights silently kept their start values.

The stop is an exception raised from inside the pipeline at the boundary, in this process: it leaves the
run folder as a kill at that instant would (nothing the pipeline writes is flushed by an exception
handler), and unlike a timed SIGKILL it always lands on the boundary the case names.
`test_resume_after_kill.py` kills real subprocesses with SIGKILL at random points.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from unirg.recipe import load_recipe
from unirg.run_folder import read_json, read_rows

pytestmark = pytest.mark.slow

OVERRIDES = ["sft.num_train_epochs=1", "data.synthetic.n_train=32", "data.synthetic.n_eval=8",
             "output.save_steps=2", "grpo.max_steps=4", "grpo.per_device_train_batch_size=8",
             "grpo.num_generations=4", "rollout.max_new_tokens=16", "logging.progress=false",
             "logging.tensorboard=false"]
# Fields of summary.json that are wall-clock measurements or name the folder, not results.
UNCOMPARED = ("mean_step_time", "mean_step_time_parts", "run_dir")


class Stopped(Exception):
    """Stands for a kill at a stage boundary."""


class LoadWarnings(logging.Handler):
    """Collects transformers' warnings about checkpoint keys that were not loaded."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "missing" in message.lower() and "key" in message.lower():
            self.messages.append(message[:300])


@pytest.fixture(autouse=True)
def load_warnings():
    handler = LoadWarnings()
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    assert not handler.messages, f"checkpoint weights were not loaded: {handler.messages}"


def run(run_dir: Path, *extra: str):
    from unirg.training.pipeline import run_pipeline

    return run_pipeline(load_recipe("demo", [*OVERRIDES, *extra]), run_dir)


def outcome(run_dir: Path) -> dict:
    """What a finished run left: final weights, metrics rows (minus step times), summary (minus timings)."""
    rows = [{k: v for k, v in row.items()
             if k != "step_time" and not k.startswith("time/") and not k.endswith("/seconds")}
            for row in read_rows(run_dir / "metrics.jsonl")]
    summary = {k: v for k, v in read_json(run_dir / "summary.json").items() if k not in UNCOMPARED}
    return {"sft": load_file(run_dir / "sft" / "final" / "model.safetensors"),
            "grpo": load_file(run_dir / "grpo" / "final" / "model.safetensors"),
            "rows": rows, "summary": summary}


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((x - b[name]).abs().max().item() for name, x in a.items())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    run(run_dir)
    return outcome(run_dir)


def stop_at_checkpoint(monkeypatch, stage: str, step: int) -> None:
    from unirg.training.callbacks import CheckpointCompleteCallback

    original = CheckpointCompleteCallback.on_save

    def on_save(self, args, state, control, **kwargs):
        original(self, args, state, control, **kwargs)
        if Path(args.output_dir).name == stage and state.global_step == step:
            raise Stopped(f"{stage} checkpoint-{step}")

    monkeypatch.setattr(CheckpointCompleteCallback, "on_save", on_save)


def stop_before(monkeypatch, module: str, name: str) -> None:
    def stopped(*args, **kwargs):
        raise Stopped(f"before {name}")

    monkeypatch.setattr(f"{module}.{name}", stopped)


BOUNDARIES = {
    "mid-SFT at checkpoint-2": lambda mp: stop_at_checkpoint(mp, "sft", 2),
    "after SFT, before GRPO": lambda mp: stop_before(mp, "unirg.training.pipeline", "run_grpo"),
    "mid-GRPO at checkpoint-2": lambda mp: stop_at_checkpoint(mp, "grpo", 2),
    "after GRPO, before evaluation": lambda mp: stop_before(mp, "unirg.training.pipeline", "evaluate_dataset"),
    "after evaluation, before the report": lambda mp: stop_before(mp, "unirg.training.pipeline", "write_report"),
}


@pytest.mark.parametrize("boundary", list(BOUNDARIES))
def test_stopped_run_ends_like_an_uninterrupted_one(boundary, uninterrupted, tmp_path):
    with pytest.MonkeyPatch.context() as monkeypatch:
        BOUNDARIES[boundary](monkeypatch)
        with pytest.raises(Stopped):
            run(tmp_path)
    run(tmp_path)
    resumed = outcome(tmp_path)
    assert max_difference(resumed["sft"], uninterrupted["sft"]) <= 1e-6
    assert max_difference(resumed["grpo"], uninterrupted["grpo"]) <= 1e-6
    assert [row["step"] for row in resumed["rows"]] == [1, 2, 3, 4]
    assert resumed["rows"] == uninterrupted["rows"]
    assert resumed["summary"] == uninterrupted["summary"]


def test_rerun_of_a_finished_run_changes_nothing_and_says_so(uninterrupted, tmp_path, capsys):
    from unirg.reporting import print_run_summary

    first = run(tmp_path)
    digest = hashlib.sha256((tmp_path / "grpo" / "final" / "model.safetensors").read_bytes()).hexdigest()
    summary = (tmp_path / "summary.json").read_text()
    second = run(tmp_path)
    assert hashlib.sha256((tmp_path / "grpo" / "final" / "model.safetensors").read_bytes()).hexdigest() == digest
    assert (tmp_path / "summary.json").read_text() == summary
    assert first.reused == [] and "grpo" in second.reused
    print_run_summary(second)
    assert "run already complete" in capsys.readouterr().out
    assert max_difference(outcome(tmp_path)["grpo"], uninterrupted["grpo"]) <= 1e-6


def test_lora_run_stopped_mid_grpo_ends_like_an_uninterrupted_one(tmp_path):
    # A LoRA checkpoint holds only the adapter: the Trainer restores it, and the final folder is merged.
    lora = "model.lora={r: 8, alpha: 16}"
    run(tmp_path / "uninterrupted", lora)
    with pytest.MonkeyPatch.context() as monkeypatch:
        stop_at_checkpoint(monkeypatch, "grpo", 2)
        with pytest.raises(Stopped):
            run(tmp_path / "resumed", lora)
    run(tmp_path / "resumed", lora)
    resumed, uninterrupted = outcome(tmp_path / "resumed"), outcome(tmp_path / "uninterrupted")
    assert max_difference(resumed["grpo"], uninterrupted["grpo"]) <= 1e-6
    assert max_difference(resumed["grpo"], resumed["sft"]) > 0
    assert resumed["rows"] == uninterrupted["rows"]
