"""Study sources, synthetic chest X-rays and the datasets handed to the trainers."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unirg.data.config import DataConfig, PromptConfig
from unirg.data.manifest import BadRow, read_manifest
from unirg.data.records import StudyRecord
from unirg.errors import DataError
from unirg.prompts.formats import build_prompt, completion_for, reference_report, sections_of

__all__ = ["BadRow", "DataSplits", "build_dataset", "completion_for", "load_splits", "load_records"]


@dataclass
class DataSplits:
    """Training and held-out datasets, and the rows left out of them."""

    train: Any
    eval: Any | None
    bad_rows: list[BadRow] = field(default_factory=list)


def _synthetic_manifests(data: DataConfig, work_dir: Path) -> dict[str, Path]:
    """Render the synthetic train/eval studies once per configuration; reuse them afterwards."""
    from unirg.data.synthetic import generate_studies

    settings = data.synthetic.model_dump()
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
    raise DataError(f"data.source: unknown source {data.source!r}; available: synthetic, manifest")


def load_records(data: DataConfig, work_dir: Path) -> tuple[dict[str, list[StudyRecord]], list[BadRow]]:
    """Read every split's records, applying `on_bad_row`."""
    splits, bad_rows = {}, []
    for split, manifest in source_manifests(data, work_dir).items():
        records, bad = read_manifest(manifest)
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


def build_dataset(records: list[StudyRecord], prompt: PromptConfig):
    """A datasets.Dataset with the columns TRL and the reward plugins read."""
    from datasets import Dataset, Image, Sequence

    columns: dict[str, list] = {name: [] for name in (
        "prompt", "images", "study_id", "reference", "reference_findings", "reference_impression",
        "reference_labels", "sections")}
    for record in records:
        messages, _ = build_prompt(record, prompt.format, prompt.longitudinal, prompt.system_prompt)
        images = [image.path for image in record.ordered_images()]
        if prompt.longitudinal and record.prior is not None:
            images = [record.prior.image, *images]
        columns["prompt"].append(messages)
        columns["images"].append(images)
        columns["study_id"].append(record.study_id)
        columns["reference"].append(reference_report(record.findings, record.impression))
        columns["reference_findings"].append(record.findings)
        columns["reference_impression"].append(record.impression)
        columns["reference_labels"].append(list(record.labels) if record.labels else None)
        columns["sections"].append(sections_of(record.findings, record.impression))
    dataset = Dataset.from_dict(columns)
    # Decoded lazily to PIL images, converted to RGB by the processor.
    return dataset.cast_column("images", Sequence(Image()))


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
        train=build_dataset(records["train"], prompt),
        eval=build_dataset(records["eval"], prompt) if records.get("eval") else None,
        bad_rows=bad_rows,
    )
