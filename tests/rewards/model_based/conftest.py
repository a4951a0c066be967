"""Fixtures for the model-based reward tests (helpers live in tiny_weights.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_weights import write_tiny_bert_dir, write_tiny_chexbert


@pytest.fixture(scope="session")
def tiny_chexbert(tmp_path_factory) -> dict[str, Path]:
    """Paths of a tiny CheXbert: {'checkpoint': chexbert.pth, 'bert_dir': folder with config.json and vocab.txt}."""
    root = tmp_path_factory.mktemp("chexbert")
    bert_dir = write_tiny_bert_dir(root / "bert-base-uncased")
    vocab_size = json.loads((bert_dir / "config.json").read_text())["vocab_size"]
    return {"checkpoint": write_tiny_chexbert(root, vocab_size), "bert_dir": bert_dir}
