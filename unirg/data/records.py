"""The study record every source produces, and the CheXpert-14 observation order."""

from __future__ import annotations

from dataclasses import dataclass, field

CHEXPERT_OBSERVATIONS: tuple[str, ...] = (
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
    "No Finding",
)


@dataclass(frozen=True)
class StudyImage:
    """One image of a study; `key` marks the frontal image the report is mainly about."""

    path: str
    view: str = "unknown"
    key: bool = False


@dataclass(frozen=True)
class PriorStudy:
    """The previous study of the same patient, for longitudinal prompts."""

    image: str
    report: str


@dataclass(frozen=True)
class StudyRecord:
    """A study as every source hands it on: images, context and the reference report sections."""

    study_id: str
    images: tuple[StudyImage, ...]
    findings: str = ""
    impression: str = ""
    indication: str = ""
    comparison: str = ""
    age: str = ""
    sex: str = ""
    prior: PriorStudy | None = None
    labels: tuple[int | None, ...] | None = None
    source_file: str = ""
    source_row: int = 0
    extra: dict = field(default_factory=dict, compare=False)

    def ordered_images(self) -> list[StudyImage]:
        """Images with the key (frontal) image first."""
        return sorted(self.images, key=lambda image: not image.key)
