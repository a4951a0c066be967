"""Read and check a predictions JSONL file for `unirg eval --predictions`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from unirg.errors import DataError


@dataclass(frozen=True)
class PredictionRow:
    """One study's generated report and its reference."""

    study_id: str
    prediction: str
    reference: str
    reference_findings: str | None = None
    reference_impression: str | None = None


def read_predictions(path: Path, references: Path | None = None) -> list[PredictionRow]:
    """Read `{"study_id", "prediction", "reference"}` lines; references may come from a second JSONL file.

    With `references`, each of its lines carries `study_id` and `reference` (and optionally the two
    sections), and the predictions file needs only `study_id` and `prediction`.
    """
    reference_rows = {row["study_id"]: row for row in _read_jsonl(references, ("study_id", "reference"))} \
        if references else {}
    required = ("study_id", "prediction") if references else ("study_id", "prediction", "reference")
    rows, seen = [], set()
    for line_number, raw in enumerate(_read_jsonl(path, required), start=1):
        study_id = str(raw["study_id"])
        if study_id in seen:
            raise DataError(f"{path}, line {line_number}: duplicate study_id {study_id!r}; each study is "
                            "scored once, remove the duplicate line")
        seen.add(study_id)
        if references:
            if study_id not in reference_rows:
                raise DataError(f"{path}, line {line_number}: study_id {study_id!r} has no line in {references}")
            raw = {**reference_rows[study_id], **raw}
        rows.append(PredictionRow(
            study_id=study_id,
            prediction=_text(raw["prediction"]),
            reference=_text(raw["reference"]),
            reference_findings=_optional_text(raw.get("reference_findings")),
            reference_impression=_optional_text(raw.get("reference_impression")),
        ))
    if not rows:
        raise DataError(f"{path}: no predictions; expected JSONL lines with study_id, prediction, reference")
    return rows


def _read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}, line {line_number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}, line {line_number}: expected a JSON object")
            missing = [key for key in required if key not in row]
            if missing:
                raise DataError(f"{path}, line {line_number}: missing field(s) {', '.join(missing)}; each line "
                                f"needs {', '.join(required)}")
            rows.append(row)
    return rows


def _text(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _optional_text(value: object) -> str | None:
    return None if value is None else _text(value)
