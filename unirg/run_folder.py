"""The run folder: names of its files, atomic writes, stage-complete markers, and reading them back.

Training writes through this module and evaluation and reporting read through it, so a file's name and
format live in one place. Every file a finished stage leaves (a model folder, summary.json, the report)
is written beside its final name and renamed into place: a kill mid-write leaves the old file or none,
never a half-written one under the final name.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RECIPE_FILE = "recipe.yaml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
REPORT_DIR = "report"
EVALUATION_DIR = "evaluation"
FINAL_DIR = "final"

# Written by unirg into a Trainer checkpoint folder once the Trainer has finished writing it.
CHECKPOINT_COMPLETE = "unirg_checkpoint_complete"
# Written into a stage's final model folder before it is renamed into place: its presence means the
# stage finished; its content says how (steps, settings fingerprint, a unique id for the weights).
STAGE_COMPLETE = "unirg_stage_complete.json"


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl file; a line torn by a kill is skipped."""
    rows = []
    if Path(path).is_file():
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def write_json_atomically(path: Path, data: Any) -> None:
    """Write `data` as indented JSON to `path`, atomically."""
    write_text_atomically(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> Any | None:
    """The JSON content of `path`, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def scratch_folder(dest: Path) -> Path:
    """An empty folder beside `dest` to write its next version into (see `commit_folder`)."""
    dest = Path(dest)
    recover_folder(dest)
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial


def commit_folder(scratch: Path, dest: Path, record: dict[str, Any] | None = None) -> Path:
    """Put a fully written `scratch` folder in the place of `dest`, with `record` as its stage marker.

    The old `dest` is moved aside before the new one is renamed in; a kill between the two renames is
    undone by `recover_folder` (called by `scratch_folder` and `stage_record`), so the folder is never lost.
    """
    dest = Path(dest)
    if record is not None:
        # Written last: a folder with a record is a complete one.
        write_json_atomically(Path(scratch) / STAGE_COMPLETE, record)
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    Path(scratch).rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


@contextmanager
def folder_written_atomically(dest: Path, record: dict[str, Any] | None = None) -> Iterator[Path]:
    """Yield a scratch folder beside `dest`; when the block ends without error it replaces `dest`."""
    scratch = scratch_folder(dest)
    yield scratch
    commit_folder(scratch, dest, record)


def recover_folder(dest: Path) -> None:
    """Finish or undo a folder swap that a kill interrupted, leaving `dest` whole when it ever was."""
    dest = Path(dest)
    old = dest.with_name(dest.name + ".old")
    if dest.exists() or not old.exists():
        return
    partial = dest.with_name(dest.name + ".partial")
    # The scratch folder is renamed only after it is complete, so a complete one is the newer version.
    newer = partial if (partial / STAGE_COMPLETE).is_file() else old
    newer.rename(dest)


def checkpoint_step(checkpoint: Path) -> int:
    """The global step in a `checkpoint-N` folder name."""
    return int(Path(checkpoint).name.split("-")[-1])


def last_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint folder marked complete; half-written ones are ignored."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    complete = [p for p in output_dir.glob("checkpoint-*")
                if p.name.split("-")[-1].isdigit() and (p / CHECKPOINT_COMPLETE).is_file()]
    return max(complete, key=checkpoint_step, default=None)


def mark_checkpoint_complete(folder: Path, step: int) -> None:
    """Mark a Trainer checkpoint folder as fully written."""
    marker = folder / f".{CHECKPOINT_COMPLETE}.tmp"
    marker.write_text(str(step))
    marker.replace(folder / CHECKPOINT_COMPLETE)


def stage_record(model_dir: Path) -> dict[str, Any] | None:
    """What a finished stage recorded in its final model folder, or None when the stage is not finished."""
    recover_folder(Path(model_dir))
    record = read_json(Path(model_dir) / STAGE_COMPLETE)
    return record if isinstance(record, dict) else None


def new_stage_record(stage: str, **fields: Any) -> dict[str, Any]:
    """A stage-complete record with a fresh id that names these exact weights."""
    return {"stage": stage, "weights_id": uuid.uuid4().hex, **fields}


def model_identity(model_path: str) -> str:
    """A string that changes whenever the weights at `model_path` do (for caching evaluations).

    A folder written by a unirg stage carries a unique id; anything else (a hub id, a downloaded or
    locally built base model) is named by its path, which unirg never rewrites.
    """
    record = stage_record(Path(model_path))
    return f"{model_path}#{record['weights_id']}" if record else str(model_path)
