"""Recipe sections that choose the study source and the prompt format."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from unirg.errors import DataError

# Folder that relative data paths of a recipe resolve against (default: the current directory).
# A `ray job submit` runs in an uploaded copy of the code without data/; `make submit` sets this to the
# submitting checkout so `data/...` paths still point at the data.
DATA_DIR_ENV = "UNIRG_DATA_DIR"
_PATH_FIELDS = ("path", "image_root", "reports_path")
# Fields that name one source; with data.sources they are given per entry instead.
_SINGLE_SOURCE_FIELDS = ("source", "path", "split", "eval_split", "max_studies", "image_root", "reports_path",
                         "options", "holdout")


class SyntheticConfig(BaseModel):
    """Synthetic chest X-ray studies rendered locally (the embedded demo's data)."""

    model_config = ConfigDict(extra="forbid")

    n_train: int = Field(64, ge=1, description="Number of training studies to render.")
    n_eval: int = Field(16, ge=0, description="Number of held-out studies to render.")
    n_val: int = Field(0, ge=0, description="Number of validation studies to render for checkpoint selection "
                       "(grpo.metric_for_best_model) only, apart from the held-out table, so the best checkpoint "
                       "is not chosen on the studies it is then reported on. 0: selection uses the held-out studies.")
    seed: int = Field(0, description="Seed of the generator: same seed, same bytes.")
    size: int = Field(224, ge=32, description="Image side in pixels.")


class SourceConfig(BaseModel):
    """One dataset of a mixture (`data.sources`): where it is, which splits train, and its share."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(..., description="Study source: manifest, rexrank, mimic_cxr, chexpert_plus, iu_xray or "
                        "rexgradient.")
    name: str | None = Field(None, description="Dataset name written in each row's `dataset` column (metrics are "
                             "logged per name); default: the source name.")
    path: str | None = Field(None, description="File or folder the source reads.")
    weight: float | None = Field(None, gt=0, description="Relative share of the mixture (a ratio; normalised over "
                                 "the sources). Unset on every source: each study once per epoch, shuffled.")
    splits: list[str] = Field(default_factory=lambda: ["train"], min_length=1,
                              description="The source's splits whose studies are training studies.")
    eval_split: str | None = Field(None, description="A split of the source added to the validation set as it is.")
    holdout: int | None = Field(None, ge=1, description="Carve this many training studies out as validation "
                                "(UniRG: 1,024 MIMIC-CXR training studies); chosen by data.seed, disjoint from "
                                "training.")
    max_studies: int | None = Field(None, ge=1, description="Keep at most this many training studies of the source.")
    image_root: str | None = Field(None, description="As data.image_root, for this source.")
    reports_path: str | None = Field(None, description="As data.reports_path (mimic_cxr), for this source.")
    options: dict[str, Any] = Field(default_factory=dict, description="Source-specific options.")

    @property
    def dataset_name(self) -> str:
        return self.name or self.source


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
    holdout: int | None = Field(None, ge=1, description="Carve this many training studies out as the validation "
                                "split (chosen by data.seed, disjoint from training); with data.eval_split both "
                                "are used.")
    sources: list[SourceConfig] | None = Field(
        None, min_length=1, description="A mixture of datasets in one recipe (replaces data.source/path/split/"
        "eval_split/max_studies/image_root/reports_path/holdout/options, which then stay unset).")
    stopping_strategy: Literal["first_exhausted", "all_exhausted"] = Field(
        "first_exhausted", description="With weights: first_exhausted ends the epoch when one source runs out (no "
        "study repeats); all_exhausted oversamples until every source has been seen.")
    seed: int = Field(0, description="Seed of the mixture order and of the held-out studies.")
    images: Literal["key", "all"] = Field(
        "key", description="key: only the study's key frontal image (PA, then AP, then any frontal view; the first "
        "listed image when a study has no frontal view, counted in the data summary); all: every image, key first.")
    image_size: int | None = Field(
        512, ge=32, description="Images wider or taller than this are resized to image_size x image_size when read "
        "(UniRG: 512); smaller ones keep their size; null keeps native size.")

    @model_validator(mode="after")
    def _one_way_to_name_sources(self) -> DataConfig:
        if self.sources is None:
            return self
        clash = sorted(self.model_fields_set & set(_SINGLE_SOURCE_FIELDS))
        if clash:
            raise ValueError(f"data.sources is set, so data.{', data.'.join(clash)} must not be: give them per "
                             "source under data.sources")
        names = [entry.dataset_name for entry in self.sources]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"data.sources: dataset name(s) {', '.join(repeated)} appear twice; give each entry "
                             "its own `name`")
        weighted = [entry.weight is not None for entry in self.sources]
        if any(weighted) and not all(weighted):
            raise ValueError("data.sources: set `weight` on every source or on none (none: each study once per "
                             "epoch)")
        return self



class PromptConfig(BaseModel):
    """How a study becomes a prompt, and which completion format the policy must write."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["unirg", "reasoning"] = Field(
        "unirg", description="unirg: plain 'Findings: … Impression: …'; reasoning: a <think> block first.")
    template: Literal["project", "unirg_paper"] = Field(
        "project", description="Wording of the user turn. project: this project's templates; unirg_paper: UniRG's "
        "two templates (findings only, findings + impression; see unirg/prompts/formats.py). Either way the "
        "template is chosen per study by which reference sections exist.")
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
    update: dict[str, Any] = _resolved_paths(data, "data", base, data_dir)
    if data.sources:
        entries = [entry.model_copy(update=_resolved_paths(entry, f"data.sources.{i}", base, data_dir))
                   for i, entry in enumerate(data.sources)]
        if entries != data.sources:
            update["sources"] = entries
    return data.model_copy(update=update) if update else data


def _resolved_paths(section: BaseModel, where: str, base: Path, data_dir: str | None) -> dict[str, str]:
    """The relative path fields of `section` (a DataConfig or one of its sources) made absolute against `base`."""
    update: dict[str, str] = {}
    for name in _PATH_FIELDS:
        value = getattr(section, name)
        if not value or Path(value).expanduser().is_absolute():
            continue
        resolved = (base / value).resolve()
        if not resolved.exists():
            place = f"{DATA_DIR_ENV}={data_dir}" if data_dir else f"the current directory {base} ({DATA_DIR_ENV} is unset)"
            raise DataError(
                f"{where}.{name}: {value!r} is relative and does not exist under {place}. A `ray job submit` runs "
                f"in an uploaded copy of the code without data/: set {DATA_DIR_ENV} to the folder relative data "
                "paths start from (`make submit` sets it to the checkout) or give an absolute path on storage "
                "every node reads.")
        update[name] = str(resolved)
    return update
