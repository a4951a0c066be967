"""Fixtures shared by the evaluation tests."""

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """The tiny offline VLM, with a tokenizer that knows the fixture reports' words."""
    from unirg.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", image_size=112,
                            texts=["Findings: Clear lungs. Impression: Normal."])
