"""Recipe sections that choose the study source and the prompt format."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from unirg.errors import DataError

# Folder that relative data paths of a recipe resolve against (default: the current directory).
# A `ray job submit` runs in an uploaded copy of the code without data/; `make submit` sets this to the
# submitting checkout so `data/...` paths still point at the data.
DATA_DIR_ENV = "UNIRG_DATA_DIR"
_PATH_FIELDS = ("path", "image_root", "reports_path")


class SyntheticConfig(BaseModel):
    """Synthetic chest X-ray studies rendered locally (the embedded demo's data)."""

    model_config = ConfigDict(extra="forbid")

    n_train: int = Field(64, ge=1, description="Number of training studies to render.")
    n_eval: int = Field(16, ge=0, description="Number of held-out studies to render.")
    seed: int = Field(0, description="Seed of the generator: same seed, same bytes.")
    size: int = Field(224, ge=32, description="Image side in pixels.")


class DataConfig(BaseModel):
    """Which studies to train and evaluate on."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field("synthetic", description="Study source: synthetic, manifest, rexrank, mimic_cxr, "
                        "chexpert_plus, iu_xray or rexgradient.")
    path: str | None = Field(None, description="File or folder the source reads (not used by synthetic).")
    split: str = Field("train", description="Split used for training.")
    eval_split: str | None = Field(None, description="Split used for held-out evaluation, if any.")
    max_studies: int | None = Field(None, ge=1, description="Keep at most this many training studies.")
    on_bad_row: Literal["fail", "skip"] = Field(
        "fail", description="fail: stop at the first bad row; skip: leave it out, count and list it.")
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    image_root: str | None = Field(
        None, description="Folder the source's image paths are relative to; default: the source's own "
                          "folder (rexrank, rexgradient, manifest) or data.path (mimic_cxr, chexpert_plus, iu_xray).")
    reports_path: str | None = Field(
        None, description="mimic_cxr only: folder holding files/pXX/pXXXXXXXX/sXXXXXXXX.txt reports "
                          "(default: data.path, then data.path/mimic-cxr-reports).")
    check_images: bool = Field(True, description="Open every image while loading; bad ones become bad rows.")
    min_image_side: int = Field(32, ge=1, description="Images with a shorter side are bad rows ('image too small').")
    min_pixels: int | None = Field(None, ge=1, description="Upscale images with fewer pixels (width*height).")
    max_pixels: int | None = Field(None, ge=1, description="Downscale images with more pixels (width*height).")
    options: dict[str, Any] = Field(default_factory=dict, description="Source-specific options.")


class PromptConfig(BaseModel):
    """How a study becomes a prompt, and which completion format the policy must write."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["unirg", "reasoning"] = Field(
        "unirg", description="unirg: plain 'Findings: … Impression: …'; reasoning: a <think> block first.")
    longitudinal: bool = Field(False, description="Put the prior image and report in the prompt when present.")
    system_prompt: str | None = Field(None, description="Optional system message.")


def resolve_data_paths(data: DataConfig, data_dir: str | None = None) -> DataConfig:
    """`data` with its relative path fields made absolute: against `data_dir` (default $UNIRG_DATA_DIR), else the cwd.

    Fails, naming the field, when a relative path does not exist there: in a submitted job the working
    directory is an uploaded copy without data/, and the source's own "not found" would not say why.
    """
    data_dir = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    base = Path(data_dir).expanduser() if data_dir else Path.cwd()
    if data_dir and not base.is_dir():
        raise DataError(f"{DATA_DIR_ENV}={data_dir} is not a folder on this machine; point it at the folder "
                        "relative data paths start from (the checkout that holds data/), or unset it.")
    update: dict[str, str] = {}
    for name in _PATH_FIELDS:
        value = getattr(data, name)
        if not value or Path(value).expanduser().is_absolute():
            continue
        resolved = (base / value).resolve()
        if not resolved.exists():
            where = f"{DATA_DIR_ENV}={data_dir}" if data_dir else f"the current directory {base} ({DATA_DIR_ENV} is unset)"
            raise DataError(
                f"data.{name}: {value!r} is relative and does not exist under {where}. A `ray job submit` runs "
                f"in an uploaded copy of the code without data/: set {DATA_DIR_ENV} to the folder relative data "
                "paths start from (`make submit` sets it to the checkout) or give an absolute path on storage "
                "every node reads.")
        update[name] = str(resolved)
    return data.model_copy(update=update) if update else data
