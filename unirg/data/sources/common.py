"""Turn a source's rows, written as manifest rows, into checked StudyRecords and bad rows."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from unirg.data.config import DataConfig
from unirg.data.manifest import BadRow, not_utf8, record_from_row
from unirg.data.records import StudyRecord


def image_root(data: DataConfig, default: Path) -> Path:
    """data.image_root when set, else the source's own default folder."""
    return Path(data.image_root).expanduser() if data.image_root else default


def prior_report(findings: str, impression: str) -> str:
    """A prior study's report as it goes in a longitudinal prompt (the completion format)."""
    parts = [f"{name}: {text.strip()}" for name, text in (("Findings", findings or ""),
                                                         ("Impression", impression or "")) if text.strip()]
    return "\n".join(parts)


def attach_priors(rows: list[dict[str, Any]], patient: dict[str, str], order: dict[str, Any]) -> None:
    """Give each row the previous study of its patient (by `order`) as `prior` (key image + report).

    `patient` and `order` map study_id → patient id and a sortable date or rank. Rows without a patient,
    and priors without an image or any report text, get no prior.
    """
    by_patient: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if patient.get(row["study_id"]):
            by_patient.setdefault(patient[row["study_id"]], []).append(row)
    for studies in by_patient.values():
        studies.sort(key=lambda row: order[row["study_id"]])
        for earlier, later in zip(studies, studies[1:], strict=False):
            text = prior_report(str(earlier.get("findings") or ""), str(earlier.get("impression") or ""))
            if earlier.get("images") and text and order[earlier["study_id"]] != order[later["study_id"]]:
                later["prior"] = {"image": earlier["images"][0], "report": text}


def records_from_rows(rows: Iterable[tuple[str, int, dict[str, Any]]], data: DataConfig,
                      base: Path) -> tuple[list[StudyRecord], list[BadRow]]:
    """Check each (file, row number, manifest-style row) like a manifest row; duplicates are bad rows.

    Sources convert to the manifest's row shape so that every source gets the same checks
    (missing or unreadable image, both sections empty, non-text report, image too small).
    """
    records, bad, seen = [], [], set()
    for file, number, row in rows:
        # A source may already know why a row is unusable (e.g. its report file is missing).
        problem = row.get("_problem", "") or ("not UTF-8 text" if not_utf8(row) else "")
        record = None
        if not problem:
            record, problem = record_from_row(row, base, file, number, data.check_images, data.min_image_side)
        if record is not None and record.study_id in seen:
            record, problem = None, f"duplicate study_id {record.study_id!r}"
        if record is None:
            bad.append(BadRow(str(row.get("study_id") or ""), file, number, problem))
            continue
        seen.add(record.study_id)
        records.append(record)
    return records, bad
