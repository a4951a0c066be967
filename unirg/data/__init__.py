"""Study sources, synthetic chest X-rays and the datasets handed to the trainers."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unirg.data.config import DataConfig, PromptConfig
from unirg.data.manifest import BadRow, read_manifest
from unirg.data.records import StudyRecord
from unirg.errors import DataError

__all__ = ["BadRow", "DataSplits", "build_dataset", "completion_for", "load_records", "load_splits", "read_splits"]


def completion_for(example: dict[str, Any], prompt_format: str) -> str:
    """The SFT target of a dataset row (see unirg.prompts.formats.completion_for)."""
    # Imported here: unirg.prompts.formats imports unirg.data.records, which runs this package first.
    from unirg.prompts.formats import completion_for as _completion_for

    return _completion_for(example, prompt_format)


@dataclass
class DataSplits:
    """Training and held-out datasets, and the rows left out of them."""

    train: Any
    eval: Any | None
    bad_rows: list[BadRow] = field(default_factory=list)


def _synthetic_manifests(data: DataConfig, work_dir: Path) -> dict[str, Path]:
    """Render the synthetic train/eval studies once per configuration; reuse them afterwards."""
    from unirg.data.synthetic import GENERATOR_VERSION, generate_studies

    settings = {**data.synthetic.model_dump(), "generator_version": GENERATOR_VERSION}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    root = work_dir / "synthetic" / key
    manifests = {}
    # Held-out studies use another seed stream so no image or report is shared with training.
    for split, n, seed in (("train", data.synthetic.n_train, data.synthetic.seed),
                           ("eval", data.synthetic.n_eval, data.synthetic.seed + 100_003)):
        if n == 0:
            continue
        manifest = root / split / "manifest.jsonl"
        if not manifest.is_file():
            generate_studies(root / split, n, seed=seed, size=data.synthetic.size, prefix=f"synth-{split}")
        manifests[split] = manifest
    return manifests


def source_manifests(data: DataConfig, work_dir: Path) -> dict[str, Path]:
    """Manifest file per split for the manifest-backed sources."""
    if data.source == "synthetic":
        return _synthetic_manifests(data, work_dir)
    if data.source == "manifest":
        if not data.path:
            raise DataError("data.path: the manifest source needs the path of a .jsonl or .csv manifest")
        path = Path(data.path).expanduser()
        if not path.is_file():
            raise DataError(f"data.path: manifest not found: {path}")
        manifests = {"train": path}
        if data.eval_split:
            eval_path = Path(data.eval_split).expanduser()
            if not eval_path.is_file():
                raise DataError(f"data.eval_split: manifest not found: {eval_path}")
            manifests["eval"] = eval_path
        return manifests
    raise DataError(f"data.source: {data.source!r} is not a manifest source")


def read_splits(data: DataConfig, work_dir: Path) -> dict[str, tuple[list[StudyRecord], list[BadRow]]]:
    """Split name ('train', 'eval') → (good records, bad rows), before `on_bad_row` is applied."""
    from unirg.data.sources import ALL_SOURCES, read_source_split

    if data.source not in ALL_SOURCES:
        raise DataError(f"data.source: unknown source {data.source!r}; available: {', '.join(ALL_SOURCES)}")
    if data.source in ("synthetic", "manifest"):
        root = Path(data.image_root).expanduser() if data.image_root else None
        return {split: read_manifest(manifest, data.check_images, data.min_image_side, root)
                for split, manifest in source_manifests(data, work_dir).items()}
    splits = {"train": read_source_split(data, data.split)}
    if data.eval_split:
        splits["eval"] = read_source_split(data, data.eval_split)
    return splits


def load_records(data: DataConfig, work_dir: Path) -> tuple[dict[str, list[StudyRecord]], list[BadRow]]:
    """Read every split's records, applying `on_bad_row`."""
    splits, bad_rows = {}, []
    for split, (records, bad) in read_splits(data, work_dir).items():
        if bad and data.on_bad_row == "fail":
            first = bad[0]
            raise DataError(f"{first.describe()}. {len(bad)} bad row(s) in all; fix them, or set "
                            "data.on_bad_row=skip to leave them out (they are then listed in bad_rows.jsonl); "
                            "`unirg data check` lists every one")
        bad_rows += bad
        if split == "train" and data.max_studies:
            records = records[: data.max_studies]
        splits[split] = records
    return splits, bad_rows


def _dataset_image(path: str, data: DataConfig | None) -> Any:
    """The path itself when the datasets Image feature can decode it as is, else a decoded RGB PIL image.

    DICOM, 16-bit images and recipes with pixel bounds go through unirg.data.images; plain 8-bit
    PNG/JPEG stay paths so a large dataset is not decoded up front.
    """
    from PIL import Image as PILImage

    from unirg.data.images import DICOM_SUFFIXES, load_image

    bounds = (data.min_pixels, data.max_pixels) if data else (None, None)
    if Path(path).suffix.lower() not in DICOM_SUFFIXES and not any(bounds):
        with PILImage.open(path) as image:
            if image.mode in ("L", "RGB", "RGBA", "P", "LA"):
                return {"bytes": None, "path": path}
    buffer = io.BytesIO()
    load_image(path, *bounds).save(buffer, format="PNG")
    # Same struct as a path entry, so one Arrow column holds both kinds.
    return {"bytes": buffer.getvalue(), "path": None}


def build_dataset(records: list[StudyRecord], prompt: PromptConfig, data: DataConfig | None = None):
    """A datasets.Dataset with the columns TRL and the reward plugins read."""
    from datasets import Dataset, Image, Sequence

    from unirg.prompts.formats import build_prompt, reference_report, sections_of

    columns: dict[str, list] = {name: [] for name in (
        "prompt", "images", "study_id", "reference", "reference_findings", "reference_impression",
        "reference_labels", "sections")}
    for record in records:
        messages, _ = build_prompt(record, prompt.format, prompt.longitudinal, prompt.system_prompt)
        images = [image.path for image in record.ordered_images()]
        if prompt.longitudinal and record.prior is not None:
            images = [record.prior.image, *images]
        columns["prompt"].append(messages)
        columns["images"].append([_dataset_image(path, data) for path in images])
        columns["study_id"].append(record.study_id)
        columns["reference"].append(reference_report(record.findings, record.impression))
        columns["reference_findings"].append(record.findings)
        columns["reference_impression"].append(record.impression)
        columns["reference_labels"].append(list(record.labels) if record.labels else None)
        columns["sections"].append(sections_of(record.findings, record.impression))
    dataset = Dataset.from_dict(columns)
    # Decoded lazily to RGB PIL images (the synthetic PNGs and most radiographs are stored grayscale).
    return dataset.cast_column("images", Sequence(Image(mode="RGB")))


def load_splits(data: DataConfig, prompt: PromptConfig, work_dir: Path) -> DataSplits:
    """Load the recipe's studies as train (and held-out) datasets; bad rows go to `bad_rows.jsonl`."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    records, bad_rows = load_records(data, work_dir)
    if bad_rows:
        with (work_dir / "bad_rows.jsonl").open("w", encoding="utf-8") as handle:
            for bad in bad_rows:
                handle.write(json.dumps(bad.__dict__) + "\n")
    if not records.get("train"):
        raise DataError("the training split has no usable studies"
                        + (f" ({len(bad_rows)} bad rows, see bad_rows.jsonl)" if bad_rows else ""))
    return DataSplits(
        train=build_dataset(records["train"], prompt, data),
        eval=build_dataset(records["eval"], prompt, data) if records.get("eval") else None,
        bad_rows=bad_rows,
    )
