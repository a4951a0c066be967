"""Generate predictions.jsonl for a test set, resumably: studies already written are never generated again."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unirg.errors import DataError

PREDICTIONS_FILE = "predictions.jsonl"


def load_test_set(source: str, path: str, split: str = "test", max_studies: int | None = None, prompt=None):
    """The studies of one source file/folder as a dataset (prompt, images, study_id, reference columns)."""
    from unirg.data.config import DataConfig, PromptConfig
    from unirg.data.dataset import build_dataset
    from unirg.data.sources import read_source_split

    data = DataConfig(source=source, path=path, on_bad_row="skip")
    records, bad = read_source_split(data, split)
    if bad:
        print(f"{len(bad)} studies of {path} are left out as bad rows (first: {bad[0]})")
    if max_studies:
        records = records[:max_studies]
    if not records:
        raise DataError(f"--data {source}:{path}: no usable studies")
    return build_dataset(records, prompt or PromptConfig(), data, source)


def read_done(path: Path) -> dict[str, dict[str, Any]]:
    """Rows already in predictions.jsonl by study id. A last line cut off by a kill is dropped from the file."""
    if not path.is_file():
        return {}
    done: dict[str, dict[str, Any]] = {}
    kept: list[str] = []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # the write in progress when the run was killed: generate it again
                break
            raise DataError(f"{path}, line {number}: not valid JSON; remove the line to resume") from None
        done[str(row["study_id"])] = row
        kept.append(line if line.endswith("\n") else line + "\n")
    if len(kept) != len(lines) or (lines and not lines[-1].endswith("\n")):
        path.write_text("".join(kept), encoding="utf-8")
    return done


def write_predictions(generate: Callable[[list[dict[str, Any]]], list[str]], dataset, out_file: Path,
                      batch_size: int = 8, progress: bool = True) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Append a line per study not yet in `out_file` (a batch at a time, flushed), then return every row.

    Rows carry study_id, prediction, reference ("Findings: … Impression: …" as the dataset formats it),
    reference_findings and reference_impression. Returns (rows in dataset order, timing of this call).
    """
    out_file.parent.mkdir(parents=True, exist_ok=True)
    done = read_done(out_file)
    study_ids = [str(s) for s in dataset["study_id"]]  # the column alone: no image is decoded here
    todo = [i for i, study_id in enumerate(study_ids) if study_id not in done]
    batches = [todo[start:start + batch_size] for start in range(0, len(todo), batch_size)]
    if progress and batches:
        from rich.progress import track

        batches = track(batches, description=f"generating {len(todo)} reports", transient=True)
    started = time.perf_counter()
    with out_file.open("a", encoding="utf-8") as handle:
        for batch in batches:
            examples = [dataset[i] for i in batch]
            for example, prediction in zip(examples, generate(examples), strict=True):
                row = {"study_id": str(example["study_id"]), "prediction": prediction,
                       "reference": example["reference"], "reference_findings": example["reference_findings"] or "",
                       "reference_impression": example["reference_impression"] or ""}
                done[row["study_id"]] = row
                handle.write(json.dumps(row) + "\n")
            handle.flush()
    seconds = time.perf_counter() - started
    timing = {"generated": len(todo), "reused": len(dataset) - len(todo), "seconds": seconds,
              "studies_per_second": len(todo) / seconds if todo and seconds > 0 else 0.0}
    return [done[study_id] for study_id in study_ids], timing
