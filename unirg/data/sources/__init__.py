"""Dispatch a recipe's `data.source` to the module that reads it; every source yields StudyRecords."""

from __future__ import annotations

import importlib
from pathlib import Path

from unirg.data.config import DataConfig
from unirg.data.manifest import BadRow
from unirg.data.records import StudyRecord
from unirg.errors import DataError

# source name → module under unirg.data.sources with `read_split(data, split) -> (records, bad_rows)`.
SOURCES: dict[str, str] = {
    "rexrank": "unirg.data.sources.rexrank",
    "mimic_cxr": "unirg.data.sources.mimic_cxr",
    "chexpert_plus": "unirg.data.sources.chexpert_plus",
    "iu_xray": "unirg.data.sources.iu_xray",
    "rexgradient": "unirg.data.sources.rexgradient",
}
ALL_SOURCES = ("synthetic", "manifest", *SOURCES)

# Each dataset names its held-out split differently; a recipe may use any of these spellings.
SPLIT_ALIASES = {"val": "validate", "valid": "validate", "validation": "validate", "dev": "validate"}


def normalise_split(split: str) -> str:
    """'valid', 'val', 'validation' → 'validate'; other names lower-cased."""
    split = split.strip().lower()
    return SPLIT_ALIASES.get(split, split)


def source_path(data: DataConfig) -> Path:
    """data.path, checked to exist."""
    if not data.path:
        raise DataError(f"data.path: the {data.source} source needs data.path (see docs/data/{data.source}.md)")
    path = Path(data.path).expanduser()
    if not path.exists():
        raise DataError(f"data.path: {path} does not exist (source {data.source}); see docs/data/{data.source}.md")
    return path


def read_source_split(data: DataConfig, split: str) -> tuple[list[StudyRecord], list[BadRow]]:
    """Records and bad rows of one split of a non-manifest source."""
    if data.source not in SOURCES:
        raise DataError(f"data.source: unknown source {data.source!r}; available: {', '.join(ALL_SOURCES)}")
    module = importlib.import_module(SOURCES[data.source])
    return module.read_split(data, split)
