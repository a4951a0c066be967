"""The generic manifest source (JSONL or CSV, one study per line) and the checks every row goes through."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from unirg.data.records import CHEXPERT_OBSERVATIONS, PriorStudy, StudyImage, StudyRecord

MIN_IMAGE_SIDE = 32
MAX_IMAGE_PIXELS = 100_000_000
# Longest report section kept (characters). Real sections are a few hundred; a megabyte is a broken export,
# and scoring it would dominate a reward step.
MAX_SECTION_CHARS = 20_000
_SURROGATE = re.compile("[\udc80-\udcff]")


@dataclass(frozen=True)
class BadRow:
    """A row left out of a dataset, and why."""

    study_id: str
    file: str
    row: int
    reason: str
    dataset: str = ""  # the recipe's dataset name, in a mixture of sources

    def describe(self) -> str:
        where = f"{self.dataset}: " if self.dataset else ""
        return f"{where}{self.file}, row {self.row} (study {self.study_id or '?'}): {self.reason}"


def not_utf8(row: dict[str, Any]) -> bool:
    """True when a value read with errors='surrogateescape' held bytes that are not UTF-8."""
    values = [v for value in row.values() for v in (value if isinstance(value, list) else [value])]
    return any(isinstance(value, str) and _SURROGATE.search(value) for value in values)


def read_manifest_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """Yield (row number, row or None, reason) for each line of a JSONL or CSV manifest."""
    if path.suffix.lower() == ".csv":
        # surrogateescape keeps undecodable bytes visible (as lone surrogates) so the row is reported.
        with path.open(encoding="utf-8", errors="surrogateescape", newline="") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                images = row.get("images") or ""
                row = dict(row)
                row["images"] = [p for p in images.replace(";", "|").split("|") if p.strip()]
                yield reader.line_num, row, "not UTF-8 text" if not_utf8(row) else ""
        return
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield number, None, "not UTF-8 text"
                continue
            except json.JSONDecodeError as error:
                yield number, None, f"not valid JSON ({error.msg})"
                continue
            yield (number, row, "") if isinstance(row, dict) else (number, None, "not a JSON object")


def check_image(path: Path, min_side: int = MIN_IMAGE_SIDE) -> str:
    """Empty string when the image opens and is big enough; else the reason it cannot be used."""
    if not path.is_file():
        return f"image not found: {path}"
    if path.stat().st_size == 0:
        return f"image file is empty: {path}"
    if path.suffix.lower() in (".dcm", ".dicom"):
        from unirg.data.images import load_image
        from unirg.errors import DataError

        try:
            width, height = load_image(path).size
        except DataError as error:
            return str(error).split(";")[0]
        if min(width, height) < min_side:
            return f"image too small ({width}x{height}, needs at least {min_side} px a side): {path}"
        return ""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                return f"image too large ({width}x{height}): {path}"
            image.verify()  # PNG: checks every chunk's CRC, so a truncated file fails here
        if path.suffix.lower() in (".jpg", ".jpeg") or image.format == "JPEG":
            # verify() does not decode JPEG data: decode at 1/8 scale (fast) so truncation shows.
            with Image.open(path) as image:
                image.draft("L", (max(1, width // 8), max(1, height // 8)))
                image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        kind = "truncated file, " if "truncated" in str(error).lower() else ""
        return f"unreadable image {path} ({kind}{type(error).__name__})"
    except Image.DecompressionBombError:
        return f"image too large: {path}"
    if min(width, height) < min_side:
        return f"image too small ({width}x{height}, needs at least {min_side} px a side): {path}"
    return ""


def _text_field(row: dict[str, Any], key: str) -> tuple[str, str]:
    value = row.get(key)
    if value is None:
        return "", ""
    if not isinstance(value, str):
        return "", f"'{key}' is not text ({type(value).__name__})"
    if len(value) > MAX_SECTION_CHARS:
        return "", f"'{key}' is too long ({len(value):,} characters; at most {MAX_SECTION_CHARS:,})"
    return value.strip(), ""


def record_from_row(row: dict[str, Any], base: Path, file: str, number: int,
                    check_images: bool = True, min_side: int = MIN_IMAGE_SIDE) -> tuple[StudyRecord | None, str]:
    """Turn one manifest row into a StudyRecord, or say why it is bad."""
    study_id = str(row.get("study_id") or "").strip()
    if not study_id:
        return None, "missing study_id"
    texts = {}
    for key in ("findings", "impression", "indication", "comparison"):
        texts[key], problem = _text_field(row, key)
        if problem:
            return None, problem
    if not texts["findings"] and not texts["impression"]:
        return None, "both findings and impression are empty"
    paths = row.get("images")
    if isinstance(paths, str):
        paths = [paths]
    if not paths or not isinstance(paths, list):
        return None, "no images listed"
    views = row.get("views") or []
    images = []
    for i, relative in enumerate(paths):
        image_path = (base / str(relative)).resolve() if not Path(str(relative)).is_absolute() else Path(relative)
        if check_images:
            problem = check_image(image_path, min_side)
            if problem:
                return None, problem
        view = str(views[i]) if i < len(views) else "unknown"
        images.append(StudyImage(str(image_path), view=view, key=i == 0))
    prior = None
    if isinstance(row.get("prior"), dict) and row["prior"].get("image"):
        prior_path = Path(str(row["prior"]["image"]))
        prior_path = prior_path if prior_path.is_absolute() else (base / prior_path).resolve()
        report = row["prior"].get("report", "")
        if not isinstance(report, str):
            return None, f"prior report is not text ({type(report).__name__})"
        if check_images:
            problem = check_image(prior_path, min_side)
            if problem:
                return None, f"prior {problem}"
        prior = PriorStudy(image=str(prior_path), report=report.strip())
    labels = row.get("labels")
    if labels is not None and (not isinstance(labels, list) or len(labels) != len(CHEXPERT_OBSERVATIONS)):
        return None, f"'labels' must be a list of {len(CHEXPERT_OBSERVATIONS)} values (1, 0, -1 or null)"
    return StudyRecord(
        study_id=study_id, images=tuple(images), findings=texts["findings"], impression=texts["impression"],
        indication=texts["indication"], comparison=texts["comparison"], age=str(row.get("age") or ""),
        sex=str(row.get("sex") or ""), prior=prior, labels=tuple(labels) if labels else None,
        source_file=file, source_row=number,
    ), ""


def read_manifest(path: Path, check_images: bool = True, min_side: int = MIN_IMAGE_SIDE,
                  image_root: Path | None = None) -> tuple[list[StudyRecord], list[BadRow]]:
    """All good records of a manifest and every bad row with its reason; duplicate study ids are bad rows."""
    records, bad, seen = [], [], set()
    base = image_root or path.parent
    for number, row, problem in read_manifest_rows(path):
        record = None
        if row is not None and not problem:
            record, problem = record_from_row(row, base, str(path), number, check_images, min_side)
        if record is not None and record.study_id in seen:
            record, problem = None, f"duplicate study_id {record.study_id!r}"
        if record is None:
            study_id = str(row.get("study_id", "")) if isinstance(row, dict) else ""
            bad.append(BadRow(study_id, str(path), number, problem))
            continue
        seen.add(record.study_id)
        records.append(record)
    return records, bad
