"""Fixtures of the data tests: a manifest with one row of each bad kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from layouts import write_png


@pytest.fixture
def manifest_dir(tmp_path: Path) -> Path:
    """A JSONL manifest with one good row and one row of each bad kind."""
    write_png(tmp_path / "img" / "good.png")
    write_png(tmp_path / "img" / "small.png", size=8)
    (tmp_path / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    rows = [
        {"study_id": "good", "images": ["img/good.png"], "findings": "Lungs are clear.", "impression": "Normal."},
        {"study_id": "missing", "images": ["img/nope.png"], "findings": "Lungs are clear.", "impression": ""},
        {"study_id": "broken", "images": ["img/broken.png"], "findings": "Lungs are clear.", "impression": ""},
        {"study_id": "empty", "images": ["img/good.png"], "findings": "  ", "impression": ""},
        {"study_id": "nontext", "images": ["img/good.png"], "findings": 42, "impression": ""},
        {"study_id": "small", "images": ["img/small.png"], "findings": "Lungs are clear.", "impression": ""},
    ]
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return tmp_path
