"""MIMIC-CXR-JPG: metadata and split CSVs, files/pXX/pXXXXXXXX/sXXXXXXXX/*.jpg, free-text reports per study."""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise
from pathlib import Path
from typing import Any

from unirg.data.config import DataConfig
from unirg.data.manifest import BadRow
from unirg.data.records import CHEXPERT_OBSERVATIONS, StudyRecord
from unirg.data.reports import split_sections
from unirg.data.sources import normalise_split, source_path
from unirg.data.sources.common import image_root, records_from_rows
from unirg.data.sources.csvfiles import find_file, read_csv
from unirg.errors import DataError

DOC = "docs/data/mimic_cxr.md"
# Frontal views first: the report is mainly about the PA (or, in bed, AP) image.
_VIEW_ORDER = {"PA": 0, "AP": 1, "LATERAL": 2, "LL": 3}


def _timestamp(date: str, time: str) -> str:
    """Sortable 'YYYYMMDDhhmmss': StudyTime is a float-like hhmmss ('1500.0' is 00:15:00)."""
    try:
        clock = f"{int(float(time)):06d}" if time.strip() else "000000"
    except ValueError:
        clock = "000000"
    return f"{date.strip():0>8}{clock}"


def _study_folder(subject: str, study: str) -> str:
    return f"files/p{subject[:2]}/p{subject}/s{study}"


def _report_path(data: DataConfig, root: Path, subject: str, study: str) -> Path:
    """Where the study's report is: reports_path, data.path, or data.path/mimic-cxr-reports."""
    relative = f"{_study_folder(subject, study)}.txt"
    bases = [Path(data.reports_path).expanduser()] if data.reports_path else [root, root / "mimic-cxr-reports"]
    for base in bases:
        if (base / relative).is_file():
            return base / relative
    return bases[0] / relative


def _chexpert_labels(root: Path) -> dict[str, list[int | None]]:
    """study_id → CheXpert-14 labels from mimic-cxr-2.0.0-chexpert.csv when present (1, 0, -1, None)."""
    try:
        table = find_file(root, ("mimic-cxr-2.0.0-chexpert.csv",), "CheXpert labels CSV", DOC)
    except DataError:
        return {}
    labels = {}
    for _, row in read_csv(table):
        values: list[int | None] = []
        for name in CHEXPERT_OBSERVATIONS:
            try:
                values.append(int(float(row[name])) if (row.get(name) or "").strip() else None)
            except ValueError:
                values.append(None)
        labels[row.get("study_id", "")] = values
    return labels


def read_split(data: DataConfig, split: str) -> tuple[list[StudyRecord], list[BadRow]]:
    """Studies of one official split (train, validate, test), key frontal image first, priors attached."""
    root = source_path(data)
    metadata = find_file(root, ("mimic-cxr-2.0.0-metadata.csv",), "metadata CSV", DOC)
    split_csv = find_file(root, ("mimic-cxr-2.0.0-split.csv",), "split CSV", DOC)
    wanted = normalise_split(split)
    split_of = {row["dicom_id"]: normalise_split(row["split"]) for _, row in read_csv(split_csv)}
    # study_id → its images (dicom_id, view, line) and its subject and date.
    studies: dict[str, dict[str, Any]] = defaultdict(lambda: {"images": []})
    for line, row in read_csv(metadata):
        study = studies[row["study_id"]]
        study["subject"] = row["subject_id"]
        study["date"] = _timestamp(row.get("StudyDate", ""), row.get("StudyTime", ""))
        study["split"] = split_of.get(row["dicom_id"], "")
        study["images"].append((row["dicom_id"], (row.get("ViewPosition") or "").upper(), line))
    base = image_root(data, root)
    labels = _chexpert_labels(root)
    # Priors: the same patient's previous study by date (MIMIC splits by patient, so it is in the same split).
    by_subject: dict[str, list[str]] = defaultdict(list)
    for study_id, study in studies.items():
        by_subject[study["subject"]].append(study_id)
    prior_of = {}
    for ids in by_subject.values():
        ids.sort(key=lambda s: studies[s]["date"])
        prior_of.update({later: earlier for earlier, later in pairwise(ids)})

    def report(study_id: str) -> tuple[dict[str, str], str]:
        study = studies[study_id]
        path = _report_path(data, root, study["subject"], study_id)
        if not path.is_file():
            return {}, f"report not found: {path} (set data.reports_path to the mimic-cxr-reports folder)"
        try:
            return split_sections(path.read_text(encoding="utf-8")), ""
        except UnicodeDecodeError:
            return {}, f"report is not UTF-8 text: {path}"

    def key_image(study_id: str) -> tuple[str, str, int]:
        study = studies[study_id]
        return sorted(study["images"], key=lambda image: _VIEW_ORDER.get(image[1], 9))[0]

    rows = []
    for study_id, study in studies.items():
        if study["split"] != wanted:
            continue
        images = sorted(study["images"], key=lambda image: _VIEW_ORDER.get(image[1], 9))
        folder = _study_folder(study["subject"], study_id)
        sections, problem = report(study_id)
        row: dict[str, Any] = {
            "study_id": study_id, "images": [f"{folder}/{dicom}.jpg" for dicom, _, _ in images],
            "views": [view or "unknown" for _, view, _ in images],
            "findings": sections.get("findings", ""), "impression": sections.get("impression", ""),
            "indication": sections.get("indication", ""), "comparison": sections.get("comparison", ""),
        }
        if problem:
            row["_problem"] = problem
        if study_id in labels:
            row["labels"] = labels[study_id]
        prior_id = prior_of.get(study_id)
        if prior_id:
            prior_sections, prior_problem = report(prior_id)
            if not prior_problem:
                prior_text = "\n".join(f"{name.capitalize()}: {prior_sections[name]}"
                                       for name in ("findings", "impression") if prior_sections.get(name))
                dicom = key_image(prior_id)[0]
                row["prior"] = {"image": f"{_study_folder(studies[prior_id]['subject'], prior_id)}/{dicom}.jpg",
                                "report": prior_text}
        rows.append((str(metadata), images[0][2], row))
    return records_from_rows(rows, data, base)
