"""ReXGradient-160K: a local copy in Hugging Face datasets format (save_to_disk folder or parquet files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unirg.data.config import DataConfig
from unirg.data.manifest import BadRow
from unirg.data.records import StudyRecord
from unirg.data.sources import normalise_split, source_path
from unirg.data.sources.common import attach_priors, image_root, records_from_rows
from unirg.errors import DataError

DOC = "docs/data/rexgradient.md"


def _load(path: Path):
    """DatasetDict from save_to_disk, or from a folder of parquet/JSON files (the hub snapshot)."""
    import datasets

    try:
        return datasets.load_from_disk(str(path))
    except FileNotFoundError:
        pass
    try:
        return datasets.load_dataset(str(path))
    except Exception as error:  # datasets raises several types for folders it cannot read
        raise DataError(f"{path}: not a Hugging Face dataset folder ({error}); see {DOC}") from error


def _column(row: dict[str, Any], *names: str) -> Any:
    """The first present column among `names` (the release capitalises column names)."""
    lowered = {key.lower(): value for key, value in row.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def read_split(data: DataConfig, split: str) -> tuple[list[StudyRecord], list[BadRow]]:
    """One split (train, valid/validate, test) of the dataset at data.path."""
    root = source_path(data)
    dataset = _load(root)
    splits = {normalise_split(name): name for name in getattr(dataset, "keys", lambda: ["train"])()}
    wanted = normalise_split(split)
    if hasattr(dataset, "keys"):
        if wanted not in splits:
            raise DataError(f"{root}: no split {split!r}; it has {', '.join(sorted(dataset.keys()))}")
        dataset = dataset[splits[wanted]]
    base = image_root(data, root)
    rows, patient, order = [], {}, {}
    for i, row in enumerate(dataset, start=1):
        study_id = _column(row, "id", "study_id", "StudyInstanceUid")
        patient[str(study_id)] = str(_column(row, "PatientID", "patient_id") or "")
        order[str(study_id)] = str(_column(row, "StudyDate", "study_date") or "")
        paths = _column(row, "ImagePath", "image_path", "images") or []
        paths = [paths] if isinstance(paths, str) else list(paths)
        views = _column(row, "ImageViewPosition", "views") or []
        rows.append((f"{root}[{splits.get(wanted, wanted)}]", i, {
            "study_id": study_id, "images": paths,
            "views": [views] if isinstance(views, str) else list(views),
            "findings": _column(row, "Findings", "findings"), "impression": _column(row, "Impression", "impression"),
            "indication": _column(row, "Indication", "indication"), "comparison": _column(row, "Comparison", "comparison"),
            "age": _column(row, "PatientAge", "age"), "sex": _column(row, "PatientSex", "sex"),
        }))
    # Priors: the patient's previous study in this split, by StudyDate (for longitudinal prompts).
    attach_priors([row for _, _, row in rows if isinstance(row["study_id"], str)], patient, order)
    return records_from_rows(rows, data, base)
