"""The traces file: one kept teacher trace per study (JSONL), its dropped-study log, and the SFT lookup.

A row of `traces.jsonl`:

    {"study_id": "s1", "dataset": "mimic_cxr", "trace": "<think>\\nPerception: ...\\nDiagnosis: ...\\n
     Reflection: ...\\n</think>\\n", "teacher": "Qwen3-VL-235B", "checklist": "cxr-chexpert14 v1", "format": 1}

`trace` is a whole reasoning block in the project's format (unirg.prompts.parser splits trace + report);
SFT appends the reference report. Studies whose trace was dropped go to `<name>.dropped.jsonl` beside it,
with the reason and the observations involved, never the text (a teacher's trace restates the report).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unirg.recipe import Recipe

from unirg.errors import UnirgError

FORMAT_VERSION = 1


class TracesError(UnirgError):
    """A traces file, teacher or traces setting is unusable."""


@dataclass(frozen=True)
class TraceRecord:
    """One kept trace."""

    study_id: str
    dataset: str
    trace: str
    teacher: str
    checklist: str
    format: int = FORMAT_VERSION

    @property
    def key(self) -> tuple[str, str]:
        return self.dataset, self.study_id


@dataclass(frozen=True)
class DroppedRecord:
    """One study whose trace was not kept, and why (reason category and the observations involved)."""

    study_id: str
    dataset: str
    reason: str
    details: tuple[str, ...] = field(default_factory=tuple)
    teacher: str = ""
    checklist: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.dataset, self.study_id


def dropped_path(path: str | Path) -> Path:
    """Where the dropped studies of a traces file are listed: traces.jsonl -> traces.dropped.jsonl."""
    path = Path(path)
    return path.with_name(f"{path.stem}.dropped{path.suffix or '.jsonl'}")


def _rows(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                # A run killed mid-write leaves a partial last line; anything else is a damaged file.
                raise TracesError(f"{path}, line {number}: not valid JSON ({error.msg}); delete the line "
                                  "(a run killed mid-write leaves a partial last line) and run again") from None
            if not isinstance(row, dict):
                raise TracesError(f"{path}, line {number}: a row is a JSON object, got {type(row).__name__}")
            yield number, row


def read_traces(path: str | Path) -> dict[tuple[str, str], TraceRecord]:
    """Kept traces by (dataset, study id); a study listed twice keeps its last row."""
    from unirg.prompts.parser import parse_completion

    path = Path(path)
    if not path.is_file():
        return {}
    traces: dict[tuple[str, str], TraceRecord] = {}
    for number, row in _rows(path):
        missing = [name for name in ("study_id", "trace") if not isinstance(row.get(name), str) or not row[name]]
        if missing:
            raise TracesError(f"{path}, line {number}: field(s) {missing} missing or not text")
        if row.get("format", FORMAT_VERSION) != FORMAT_VERSION:
            raise TracesError(f"{path}, line {number}: format {row.get('format')!r}, this version reads format "
                              f"{FORMAT_VERSION}; regenerate the traces with `unirg traces`")
        parsed = parse_completion(row["trace"])
        if not (parsed.think_closed and parsed.reasoning) or parsed.problems != ("no section headers",):
            raise TracesError(f"{path}, line {number} (study {row['study_id']}): 'trace' is not one closed "
                              f"<think> block ({', '.join(p for p in parsed.problems if p != 'no section headers')})")
        record = TraceRecord(study_id=row["study_id"], dataset=str(row.get("dataset") or ""), trace=row["trace"],
                             teacher=str(row.get("teacher") or ""), checklist=str(row.get("checklist") or ""))
        traces[record.key] = record
    return traces


def read_dropped(path: str | Path) -> dict[tuple[str, str], DroppedRecord]:
    """Dropped studies of a traces file by (dataset, study id)."""
    listing = dropped_path(path)
    if not listing.is_file():
        return {}
    dropped = {}
    for _, row in _rows(listing):
        record = DroppedRecord(study_id=str(row.get("study_id", "")), dataset=str(row.get("dataset") or ""),
                               reason=str(row.get("reason", "")), details=tuple(row.get("details") or ()),
                               teacher=str(row.get("teacher") or ""), checklist=str(row.get("checklist") or ""))
        dropped[record.key] = record
    return dropped


def drop_partial_row(path: str | Path) -> bool:
    """Cut an unfinished last row (a run killed mid-write) so appended rows start on a line of their own."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return False
    path.write_bytes(data[: data.rfind(b"\n") + 1])
    return True


def append_row(handle, record: TraceRecord | DroppedRecord) -> None:
    """Write one row and flush it, so a killed run keeps every finished study."""
    row = asdict(record)
    if isinstance(record, DroppedRecord):
        row["details"] = list(record.details)
    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    handle.flush()


def load_traces_for_sft(path: str | Path, rows: Iterable[Mapping[str, Any]] | None = None,
                        out=print) -> dict[tuple[str, str], str]:
    """The teacher traces SFT uses, by (dataset, study id), for `completion_for(example, "reasoning", traces)`.

    With `rows` (the training rows' `dataset` and `study_id`), prints how many training studies get a
    teacher trace and how many the rule-based fallback. Fails when the file does not exist: a recipe that
    names a traces file expects teacher traces, and silently training on rule traces would hide it.
    """
    path = Path(path)
    if not path.is_file():
        raise TracesError(f"traces.path {path}: file not found; write it with `unirg traces --recipe ...` "
                          "or unset traces.path to train on the rule-based traces")
    records = read_traces(path)
    traces = {key: record.trace for key, record in records.items()}
    if rows is not None:
        from unirg.prompts.formats import trace_key

        keys = [trace_key(row) for row in rows]
        used = sum(key in traces for key in keys)
        tags = sorted({f"{r.teacher or '?'} / {r.checklist or '?'}" for r in records.values()})
        out(f"SFT targets: {used} of {len(keys)} training studies use teacher traces from {path} "
            f"({'; '.join(tags) or 'none'}); {len(keys) - used} use the rule-based trace")
    return traces


def traces_for_sft(recipe: Recipe, train: Any, out=print) -> dict[tuple[str, str], str] | None:
    """The teacher traces a recipe's SFT stage uses: None unless `prompt.format` is reasoning and `traces.path` set.

    `train` is the training dataset (only its `dataset` and `study_id` columns are read). Pass the result to
    `completion_for(example, recipe.prompt.format, traces)`.
    """
    path = recipe.traces.resolved_path(recipe.name)
    if recipe.prompt.format != "reasoning" or not path:
        return None
    columns = [name for name in ("dataset", "study_id") if name in train.column_names]
    return load_traces_for_sft(path, train.select_columns(columns), out=out)


def traces_fingerprint(path: str | Path) -> str:
    """sha256 of a traces file: what a finished SFT stage records, so new traces retrain it."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
