"""Fixtures of the data tests: a manifest with one row of each bad kind."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from layouts import write_png
from PIL import Image


def _truncated(path: Path, fmt: str) -> None:
    """An image cut in half (a download that stopped): the header is intact, the pixel data is not."""
    buffer = io.BytesIO()
    noise = (np.random.default_rng(0).random((96, 96)) * 255).astype(np.uint8)
    Image.fromarray(noise, mode="L").save(buffer, format=fmt)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


@pytest.fixture
def manifest_dir(tmp_path: Path) -> Path:
    """A JSONL manifest with one good row and one row of each bad kind (row numbers are line numbers)."""
    write_png(tmp_path / "img" / "good.png")
    write_png(tmp_path / "img" / "small.png", size=8)
    (tmp_path / "img" / "broken.png").write_bytes(b"this is not an image, whatever its name says")
    (tmp_path / "img" / "empty.png").write_bytes(b"")
    _truncated(tmp_path / "img" / "cut.jpg", "JPEG")
    _truncated(tmp_path / "img" / "cut.png", "PNG")
    clear = "Lungs are clear."
    rows = [
        {"study_id": "good", "images": ["img/good.png"], "findings": clear, "impression": "Normal."},
        {"study_id": "missing", "images": ["img/nope.png"], "findings": clear, "impression": ""},
        {"study_id": "broken", "images": ["img/broken.png"], "findings": clear, "impression": ""},
        {"study_id": "empty", "images": ["img/good.png"], "findings": "  ", "impression": ""},
        {"study_id": "nontext", "images": ["img/good.png"], "findings": 42, "impression": ""},
        {"study_id": "small", "images": ["img/small.png"], "findings": clear, "impression": ""},
        {"study_id": "zerobyte", "images": ["img/empty.png"], "findings": clear},
        {"study_id": "cutjpg", "images": ["img/cut.jpg"], "findings": clear},
        {"study_id": "cutpng", "images": ["img/cut.png"], "findings": clear},
        {"study_id": "good", "images": ["img/good.png"], "findings": "Duplicate of row 1."},
        {"study_id": "badprior", "images": ["img/good.png"], "findings": clear,
         "prior": {"image": "img/gone.png", "report": "Findings: Clear."}},
    ]
    lines = [json.dumps(row).encode() for row in rows]
    lines.append(b'{"study_id": "latin1", "images": ["img/good.png"], "findings": "Pleural \xe9panchement."}')
    (tmp_path / "manifest.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return tmp_path
