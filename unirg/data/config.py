"""Recipe sections that choose the study source and the prompt format."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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
