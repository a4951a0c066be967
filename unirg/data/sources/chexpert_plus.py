"""CheXpert Plus: df_chexpert_plus_240401.csv (one row per image, report sections as columns) + its images."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from unirg.data.config import DataConfig
from unirg.data.manifest import BadRow
from unirg.data.records import StudyRecord
from unirg.data.reports import clean
from unirg.data.sources import normalise_split, source_path
from unirg.data.sources.common import attach_priors, image_root, records_from_rows
from unirg.data.sources.csvfiles import find_file, read_csv

DOC = "docs/data/chexpert_plus.md"
CSV_NAMES = ("df_chexpert_plus_240401.csv", "df_chexpert_plus.csv")


def _resolve_image(base: Path, relative: str) -> str:
    """The CSV names .jpg files; the PNG release keeps them under PNG/ with a .png suffix."""
    for candidate in (base / relative, base / "PNG" / Path(relative).with_suffix(".png"),
                      base / Path(relative).with_suffix(".png")):
        if candidate.is_file():
            return str(candidate)
    return str(base / relative)


def _order(row: dict[str, str]) -> float:
    try:
        return float(row.get("patient_report_date_order") or 0)
    except ValueError:
        return 0.0


def read_split(data: DataConfig, split: str) -> tuple[list[StudyRecord], list[BadRow]]:
    """Studies (one folder train/patientN/studyM each) of one split: train or valid.

    Each study's prior is the same patient's previous report (patient_report_date_order), for
    longitudinal prompts.
    """
    root = source_path(data)
    table = root if root.is_file() else find_file(root, CSV_NAMES, "CheXpert Plus CSV", DOC)
    base = image_root(data, table.parent)
    wanted = normalise_split(split)
    studies: dict[str, dict[str, Any]] = {}
    images: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for line, row in read_csv(table):
        path = row.get("path_to_image", "")
        study_id = str(Path(path).parent)  # train/patient00001/study1
        view = (row.get("ap_pa") or row.get("frontal_lateral") or "unknown").strip() or "unknown"
        images[study_id].append((path, view))
        if study_id not in studies:
            studies[study_id] = {"line": line, "row": row}
    rows, patient, order, split_of = [], {}, {}, {}
    for study_id, entry in studies.items():
        row = entry["row"]
        # Frontal first: the CSV's frontal_lateral column says which image is the key one.
        ordered = sorted(images[study_id], key=lambda image: image[1].upper() not in ("PA", "AP", "FRONTAL"))
        indication = " ".join(clean(row.get(key, "")) for key in ("section_clinical_history", "section_history")
                              if clean(row.get(key, ""))).strip()
        patient[study_id] = (row.get("deid_patient_id") or "").strip() or Path(study_id).parent.name
        order[study_id] = _order(row)
        split_of[study_id] = normalise_split(row.get("split", ""))
        rows.append((str(table), entry["line"], {
            "study_id": study_id, "images": [_resolve_image(base, path) for path, _ in ordered],
            "views": [view for _, view in ordered],
            "findings": clean(row.get("section_findings", "")), "impression": clean(row.get("section_impression", "")),
            "indication": indication, "comparison": clean(row.get("section_comparison", "")),
            "age": (row.get("age") or "").strip(), "sex": (row.get("sex") or "").strip(),
        }))
    # Priors across all splits of the file (a patient's studies share a split in the release anyway).
    attach_priors([row for _, _, row in rows], patient, order)
    return records_from_rows([entry for entry in rows if split_of[entry[2]["study_id"]] == wanted], data, base)
