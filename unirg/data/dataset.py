"""Turn StudyRecords into the datasets.Dataset the trainers read: prompt, lazily decoded images, references."""

from __future__ import annotations

import dataclasses
from typing import Any

from unirg.data.config import DataConfig, PromptConfig
from unirg.data.records import StudyImage, StudyRecord
from unirg.data.views import key_image

# Columns of every dataset unirg hands to a trainer; extra columns reach reward plugins as keyword arguments.
COLUMNS = ("prompt", "images", "study_id", "dataset", "reference", "reference_findings", "reference_impression",
           "reference_labels", "sections")


def prompt_images(record: StudyRecord, mode: str = "key") -> tuple[list[StudyImage], bool]:
    """The study's images that go in the prompt (`data.images`), and whether the key-image fallback was used.

    key: the key frontal view only (unirg.data.views.key_image); all: every image, the key one first.
    """
    key, fallback = key_image(record.images)
    if mode == "key":
        return [key], fallback
    return [key, *(image for image in record.images if image is not key)], fallback


def image_feature(data: DataConfig | None):
    """The images column's feature: a list of paths decoded to RGB PIL images when a row is read."""
    from datasets import List

    from unirg.data.lazy_image import StudyImageFile

    data = data or DataConfig()
    return List(StudyImageFile(image_size=data.image_size, min_pixels=data.min_pixels, max_pixels=data.max_pixels))


def build_dataset(records: list[StudyRecord], prompt: PromptConfig, data: DataConfig | None = None,
                  name: str = ""):
    """A datasets.Dataset with the columns TRL and the reward plugins read; `name` fills the `dataset` column.

    Images are stored as paths and decoded (and resized) only when a row is read; nothing is decoded here.
    The prior study's image is added before the study's own only with `prompt.longitudinal`.
    """
    from datasets import Dataset, Features, List, Value

    from unirg.prompts.formats import build_prompt, reference_report, sections_of

    mode = data.images if data else "key"
    columns: dict[str, list] = {column: [] for column in COLUMNS}
    for record in records:
        images, _ = prompt_images(record, mode)
        # The prompt holds one image placeholder per image it is given.
        shown = dataclasses.replace(record, images=tuple(images))
        messages, _ = build_prompt(shown, prompt.format, prompt.longitudinal, prompt.system_prompt, prompt.template)
        paths = [image.path for image in images]
        if prompt.longitudinal and record.prior is not None:
            paths = [record.prior.image, *paths]
        columns["prompt"].append(messages)
        columns["images"].append([{"path": path, "bytes": None} for path in paths])
        columns["study_id"].append(record.study_id)
        columns["dataset"].append(name)
        columns["reference"].append(reference_report(record.findings, record.impression))
        columns["reference_findings"].append(record.findings)
        columns["reference_impression"].append(record.impression)
        columns["reference_labels"].append(list(record.labels) if record.labels else None)
        columns["sections"].append(sections_of(record.findings, record.impression))
    # The prompt's type is inferred from a few rows (its shape depends on longitudinal and system_prompt, and
    # is the same for every row); the others are fixed so datasets built from different sources interleave.
    inferred = Dataset.from_dict({"prompt": columns["prompt"][:16]}).features if records else {}
    features: dict[str, Any] = {
        "prompt": inferred.get("prompt", List({"content": Value("string"), "role": Value("string")})),
        "images": image_feature(data),
        "reference_labels": List(Value("int64")),
        **{column: Value("string") for column in COLUMNS if column not in ("prompt", "images", "reference_labels")},
    }
    return Dataset.from_dict(columns, features=Features({column: features[column] for column in COLUMNS}))
