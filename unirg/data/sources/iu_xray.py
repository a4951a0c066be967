"""IU X-ray / OpenI: the R2Gen split JSON (annotation.json), or indiana_reports.csv + indiana_projections.csv."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from unirg.data.config import DataConfig
from unirg.data.manifest import BadRow
from unirg.data.records import StudyRecord
from unirg.data.reports import clean
from unirg.data.sources import normalise_split, source_path
from unirg.data.sources.common import image_root, records_from_rows
from unirg.data.sources.csvfiles import find_file, read_csv
from unirg.errors import DataError

DOC = "docs/data/iu_xray.md"


def _hash_split(uid: str) -> str:
    """The CSV release has no split: a stable 70/10/20 split by uid (R2Gen's proportions)."""
    bucket = int(hashlib.sha256(uid.encode()).hexdigest()[:8], 16) % 10
    return "train" if bucket < 7 else "validate" if bucket < 8 else "test"


def _read_r2gen(data: DataConfig, path: Path, split: str) -> tuple[list[StudyRecord], list[BadRow]]:
    payload = json.loads(path.read_text(encoding="utf-8"))
    by_split = {normalise_split(key): value for key, value in payload.items()}
    if split not in by_split:
        raise DataError(f"{path}: no split {split!r}; it has {', '.join(sorted(by_split))}")
    base = image_root(data, path.parent / "images")
    # R2Gen's report is the findings section only; its image_path lists frontal then lateral.
    rows = [(str(path), i, {"study_id": str(entry.get("id", "")), "images": entry.get("image_path") or [],
                            "views": ["frontal", "lateral"], "findings": entry.get("report"), "impression": ""})
            for i, entry in enumerate(by_split[split], start=1)]
    return records_from_rows(rows, data, base)


def _read_csvs(data: DataConfig, root: Path, split: str) -> tuple[list[StudyRecord], list[BadRow]]:
    reports = find_file(root, ("indiana_reports.csv",), "reports CSV", DOC)
    projections = find_file(root, ("indiana_projections.csv",), "projections CSV", DOC)
    images: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for _, row in read_csv(projections):
        images[row["uid"]].append((row["filename"], (row.get("projection") or "unknown").strip()))
    base = image_root(data, root / "images" / "images_normalized")
    if not base.is_dir() and not data.image_root:
        base = root / "images"
    rows = []
    for line, row in read_csv(reports):
        uid = row.get("uid", "")
        if _hash_split(uid) != split:
            continue
        ordered = sorted(images.get(uid, []), key=lambda image: image[1].lower() != "frontal")
        entry: dict[str, Any] = {
            "study_id": uid, "images": [name for name, _ in ordered], "views": [view for _, view in ordered],
            "findings": clean(row.get("findings", "")), "impression": clean(row.get("impression", "")),
            "indication": clean(row.get("indication", "")), "comparison": clean(row.get("comparison", "")),
        }
        if not ordered:
            entry["_problem"] = f"no images listed for uid {uid} in {projections}"
        rows.append((str(reports), line, entry))
    return records_from_rows(rows, data, base)


def read_split(data: DataConfig, split: str) -> tuple[list[StudyRecord], list[BadRow]]:
    """One split: R2Gen's when data.path is (or holds) annotation.json, else a stable split of the CSVs."""
    root = source_path(data)
    split = normalise_split(split)
    if root.is_file() and root.suffix == ".json":
        return _read_r2gen(data, root, split)
    if (root / "annotation.json").is_file():
        return _read_r2gen(data, root / "annotation.json", split)
    return _read_csvs(data, root, split)
