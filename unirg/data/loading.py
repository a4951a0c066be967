"""Load a recipe's studies, one source or a mixture, into the train and validation datasets the trainers read.

Per dataset (a single `data.source`, or each entry of `data.sources`): read the training splits and the
optional eval split, apply `on_bad_row`, carve `holdout` studies out of training as validation, and build
a dataset whose rows carry the dataset's name. Then the training sets are mixed (interleaved by weight,
or concatenated when no weights are set) and the validation sets concatenated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unirg.data.config import DataConfig, PromptConfig
from unirg.data.manifest import BadRow, read_manifest
from unirg.data.records import StudyRecord
from unirg.data.views import key_image, views_known
from unirg.errors import DataError

log = logging.getLogger(__name__)
SUMMARY_FILE = "data_summary.json"
BAD_ROWS_FILE = "bad_rows.jsonl"
# Split read by checkpoint selection only (rendered by the synthetic source when data.synthetic.n_val > 0).
SELECTION_SPLIT = "val"


@dataclass
class DataSplits:
    """Training and held-out datasets, the rows left out of them, and counts per dataset."""

    train: Any
    eval: Any | None
    # Studies only checkpoint selection reads (data.synthetic.n_val); None: selection reads `eval`.
    selection: Any | None = None
    bad_rows: list[BadRow] = field(default_factory=list)
    summary: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a recipe, read through a single-source DataConfig."""

    name: str
    data: DataConfig
    splits: tuple[str, ...]
    weight: float | None = None
    where: str = "data"  # the recipe section, for error messages


def dataset_specs(data: DataConfig) -> list[DatasetSpec]:
    """The recipe's datasets: `data.sources` entries, or the single `data.source`."""
    if not data.sources:
        return [DatasetSpec(data.source, data, (data.split,))]
    specs = []
    for i, entry in enumerate(data.sources):
        single = data.model_copy(update={
            "source": entry.source, "path": entry.path, "split": entry.splits[0], "eval_split": entry.eval_split,
            "max_studies": entry.max_studies, "image_root": entry.image_root, "reports_path": entry.reports_path,
            "options": entry.options, "holdout": entry.holdout, "sources": None})
        specs.append(DatasetSpec(entry.dataset_name, single, tuple(entry.splits), entry.weight, f"data.sources.{i}"))
    return specs


def _synthetic_manifests(data: DataConfig, work_dir: Path) -> dict[str, Path]:
    """Render the synthetic train/eval studies once per configuration; reuse them afterwards."""
    from unirg.data.synthetic import GENERATOR_VERSION, generate_studies

    settings = {**data.synthetic.model_dump(), "generator_version": GENERATOR_VERSION}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    root = work_dir / "synthetic" / key
    manifests = {}
    # Held-out and validation studies use other seed streams so no image or report is shared between splits.
    for split, n, seed in (("train", data.synthetic.n_train, data.synthetic.seed),
                           ("eval", data.synthetic.n_eval, data.synthetic.seed + 100_003),
                           (SELECTION_SPLIT, data.synthetic.n_val, data.synthetic.seed + 200_003)):
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


def _read_single(data: DataConfig, work_dir: Path,
                 train_splits: tuple[str, ...] | None = None) -> dict[str, tuple[list[StudyRecord], list[BadRow]]]:
    """'train' and 'eval' → (good records, bad rows) of one source; several training splits are joined."""
    from unirg.data.sources import ALL_SOURCES, read_source_split

    if data.source not in ALL_SOURCES:
        raise DataError(f"data.source: unknown source {data.source!r}; available: {', '.join(ALL_SOURCES)}")
    if data.source in ("synthetic", "manifest"):
        root = Path(data.image_root).expanduser() if data.image_root else None
        return {split: read_manifest(manifest, data.check_images, data.min_image_side, root)
                for split, manifest in source_manifests(data, work_dir).items()}
    records, bad, seen = [], [], set()
    for split in train_splits or (data.split,):
        split_records, split_bad = read_source_split(data, split)
        bad += split_bad
        for record in split_records:
            if record.study_id in seen:
                bad.append(BadRow(record.study_id, record.source_file, record.source_row,
                                  f"duplicate study_id {record.study_id!r} (in more than one training split)"))
                continue
            seen.add(record.study_id)
            records.append(record)
    splits = {"train": (records, bad)}
    if data.eval_split:
        splits["eval"] = read_source_split(data, data.eval_split)
    return splits


def read_splits(data: DataConfig, work_dir: Path) -> dict[str, tuple[list[StudyRecord], list[BadRow]]]:
    """Split name → (good records, bad rows), before `on_bad_row` is applied.

    One source: 'train' and 'eval'. A mixture: '<dataset>/train' and '<dataset>/eval', bad rows tagged with
    the dataset's name.
    """
    if not data.sources:
        return _read_single(data, work_dir)
    splits = {}
    for spec in dataset_specs(data):
        for split, (records, bad) in _read_single(spec.data, work_dir, spec.splits).items():
            splits[f"{spec.name}/{split}"] = (records, [dataclasses.replace(row, dataset=spec.name) for row in bad])
    return splits


def _check_bad_rows(data: DataConfig, bad: list[BadRow]) -> None:
    if bad and data.on_bad_row == "fail":
        raise DataError(f"{bad[0].describe()}. {len(bad)} bad row(s) in all; fix them, or set "
                        "data.on_bad_row=skip to leave them out (they are then listed in bad_rows.jsonl); "
                        "`unirg data check` lists every one")


def load_records(data: DataConfig, work_dir: Path) -> tuple[dict[str, list[StudyRecord]], list[BadRow]]:
    """Read every split's records of a single-source recipe, applying `on_bad_row` and `max_studies`."""
    splits, bad_rows = {}, []
    for split, (records, bad) in _read_single(data, work_dir).items():
        _check_bad_rows(data, bad)
        bad_rows += bad
        if split == "train" and data.max_studies:
            records = records[: data.max_studies]
        splits[split] = records
    return splits, bad_rows


def holdout_order(study_id: str, seed: int, name: str) -> str:
    """Sort key of the held-out draw: a hash of (seed, dataset, study), so the draw depends on nothing else
    (not the row order of the files, not the other datasets, not max_studies)."""
    return hashlib.sha256(f"{seed}\0{name}\0{study_id}".encode()).hexdigest()


def carve_holdout(records: list[StudyRecord], count: int, seed: int, name: str,
                  where: str = "data") -> tuple[list[StudyRecord], list[StudyRecord]]:
    """(training, held out): `count` studies chosen by `holdout_order`, both lists in the original order."""
    if count >= len(records):
        raise DataError(f"{where}.holdout: {count} studies asked for validation, but {name} has only {len(records)} "
                        "usable training studies; lower holdout")
    held = set(sorted((holdout_order(record.study_id, seed, name), record.study_id) for record in records)[:count])
    held_ids = {study_id for _, study_id in held}
    return ([record for record in records if record.study_id not in held_ids],
            [record for record in records if record.study_id in held_ids])


def mix(train_sets: list[Any], weights: list[float | None], seed: int, stopping_strategy: str):
    """One training dataset: interleaved by weight (probabilities, seeded), or concatenated without weights."""
    from datasets import concatenate_datasets, interleave_datasets

    if len(train_sets) == 1:
        return train_sets[0]
    if weights[0] is None:
        # The trainers' samplers shuffle; every study appears once per epoch.
        return concatenate_datasets(train_sets)
    total = sum(weights)
    return interleave_datasets(train_sets, probabilities=[w / total for w in weights], seed=seed,
                               stopping_strategy=stopping_strategy)


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def load_splits(data: DataConfig, prompt: PromptConfig, work_dir: Path) -> DataSplits:
    """Load the recipe's studies as train (and validation) datasets; bad rows go to `bad_rows.jsonl`.

    Every row has a `dataset` column with its dataset's name. The counts per dataset (training, validation,
    held out, bad rows, studies whose key image is the first listed one because no view is frontal or none
    is recorded) are logged and written to `data_summary.json`.
    """
    from datasets import concatenate_datasets

    from unirg.data.dataset import build_dataset

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    train_sets, weights, eval_sets, selection_sets, bad_rows, summary = [], [], [], [], [], {}
    for spec in dataset_specs(data):
        splits = _read_single(spec.data, work_dir, spec.splits)
        bad = [dataclasses.replace(row, dataset=spec.name) for _, rows in splits.values() for row in rows]
        _check_bad_rows(data, bad)
        bad_rows += bad
        train = splits["train"][0]
        validation = list(splits["eval"][0]) if "eval" in splits else []
        held: list[StudyRecord] = []
        if spec.data.holdout:
            train, held = carve_holdout(train, spec.data.holdout, data.seed, spec.name, spec.where)
        if spec.data.max_studies:
            train = train[: spec.data.max_studies]
        if not train:
            raise DataError(f"{spec.where}: {spec.name} has no usable training studies"
                            + (f" ({len(bad)} bad rows, see bad_rows.jsonl)" if bad else ""))
        validation += held
        selection = list(splits[SELECTION_SPLIT][0]) if SELECTION_SPLIT in splits else []
        studies = (*train, *validation, *selection)
        summary[spec.name] = {
            "train": len(train), "validation": len(validation), "held_out": len(held), "selection": len(selection),
            "bad_rows": len(bad),
            # Key image by fallback (the first listed image): views recorded but none frontal, or none recorded.
            "no_frontal_view": sum(views_known(r.images) and key_image(r.images)[1] for r in studies),
            "no_view_metadata": sum(not views_known(r.images) for r in studies)}
        train_sets.append(build_dataset(train, prompt, data, spec.name))
        weights.append(spec.weight)
        if validation:
            eval_sets.append(build_dataset(validation, prompt, data, spec.name))
        if selection:
            selection_sets.append(build_dataset(selection, prompt, data, spec.name))
    if bad_rows:
        _write_atomically(work_dir / BAD_ROWS_FILE,
                          "".join(json.dumps(dataclasses.asdict(bad)) + "\n" for bad in bad_rows))
    _write_atomically(work_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    for name, counts in summary.items():
        log.info("data %s: %s", name, ", ".join(f"{key} {value}" for key, value in counts.items()))
        if counts["no_frontal_view"]:
            log.warning("data %s: %d studies have no frontal view in their view metadata; their first listed "
                        "image is the key image", name, counts["no_frontal_view"])
    return DataSplits(
        train=mix(train_sets, weights, data.seed, data.stopping_strategy),
        eval=concatenate_datasets(eval_sets) if eval_sets else None,
        selection=concatenate_datasets(selection_sets) if selection_sets else None,
        bad_rows=bad_rows,
        summary=summary,
    )
