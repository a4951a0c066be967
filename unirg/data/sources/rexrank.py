"""ReXrank test-set JSON: {study id: {key_image_path, image_path, context, section_findings, section_impression}}."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from unirg.data.config import DataConfig
from unirg.data.manifest import BadRow
from unirg.data.records import StudyRecord
from unirg.data.sources import source_path
from unirg.data.sources.common import image_root, records_from_rows
from unirg.errors import DataError

# ReXrank packs the clinical context into one string ("Age: 63. Gender: F. Indication: ... Comparison: ...").
_CONTEXT_FIELD = re.compile(r"\b(Age|Gender|Sex|Indication|History|Comparison)\s*:", re.IGNORECASE)


def parse_context(context: str) -> dict[str, str]:
    """indication / comparison / age / sex from ReXrank's context string; unlabelled text is the indication."""
    matches = list(_CONTEXT_FIELD.finditer(context or ""))
    fields: dict[str, str] = {}
    if not matches:
        return {"indication": (context or "").strip()} if (context or "").strip() else {}
    lead = context[: matches[0].start()].strip()
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(context)
        key = {"gender": "sex", "history": "indication"}.get(match.group(1).lower(), match.group(1).lower())
        fields[key] = context[match.end():end].strip().rstrip(".").strip()
    if lead:
        fields["indication"] = f"{lead} {fields.get('indication', '')}".strip()
    return fields


def _entries(payload: Any, path: Path) -> list[tuple[str, dict[str, Any]]]:
    if isinstance(payload, dict):
        return [(str(key), value) for key, value in payload.items()]
    if isinstance(payload, list):
        return [(str(value.get("study_id", i)) if isinstance(value, dict) else str(i), value)
                for i, value in enumerate(payload)]
    raise DataError(f"{path}: expected a JSON object keyed by study id (the ReXrank test-file format)")


def manifest_row(study_id: str, entry: Any) -> dict[str, Any]:
    """The manifest-shaped row of one ReXrank entry (key image first)."""
    if not isinstance(entry, dict):
        return {"study_id": study_id, "findings": None, "impression": None, "images": []}
    key = entry.get("key_image_path")
    paths = entry.get("image_path") or []
    paths = [paths] if isinstance(paths, str) else list(paths)
    if key:
        paths = [key, *[p for p in paths if p != key]]
    return {"study_id": study_id, "images": paths, "findings": entry.get("section_findings"),
            "impression": entry.get("section_impression"), **parse_context(str(entry.get("context") or ""))}


def read_split(data: DataConfig, split: str) -> tuple[list[StudyRecord], list[BadRow]]:
    """All studies of the JSON file at data.path (a ReXrank file is one split; `split` is not used)."""
    path = source_path(data)
    if path.is_dir():
        raise DataError(f"data.path: {path} is a folder; the rexrank source reads one JSON file "
                        "(e.g. mimic-cxr_test.json)")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not valid JSON ({error}); is it a ReXrank test file?") from error
    # Row numbers are the entry's position in the file (1-based), so a bad row can be found again.
    rows = [(str(path), i, manifest_row(study_id, entry))
            for i, (study_id, entry) in enumerate(_entries(payload, path), start=1)]
    return records_from_rows(rows, data, image_root(data, path.parent))
