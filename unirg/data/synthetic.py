"""Render synthetic chest radiographs with known findings, their reports and CheXpert-14 labels."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from unirg.data.records import CHEXPERT_OBSERVATIONS

LABEL_INDEX = {name: i for i, name in enumerate(CHEXPERT_OBSERVATIONS)}
# Part of the cache key of rendered studies: bump it when images, reports or labels change.
GENERATOR_VERSION = 2

# Finding → (CheXpert observation, prevalence). Prevalences are high so a few hundred studies hold enough
# positives of each kind to learn from.
FINDINGS: dict[str, tuple[str, float]] = {
    "cardiomegaly": ("Cardiomegaly", 0.30),
    "effusion": ("Pleural Effusion", 0.30),
    "pneumothorax": ("Pneumothorax", 0.15),
    "consolidation": ("Consolidation", 0.20),
    "atelectasis": ("Atelectasis", 0.15),
    "edema": ("Edema", 0.15),
    "nodule": ("Lung Lesion", 0.15),
    "devices": ("Support Devices", 0.20),
}
SIDES = ("right", "left")
ZONES = ("upper", "lower")
SEVERITIES = ("small", "moderate", "large")


@dataclass(frozen=True)
class DrawnStudy:
    """The findings drawn for one study: finding name → attributes (side, zone, severity)."""

    findings: dict[str, dict[str, str]]


def draw_findings(rng: np.random.Generator, prevalence_scale: float = 1.0) -> DrawnStudy:
    """Draw which findings a study has, with their side, zone and severity."""
    drawn: dict[str, dict[str, str]] = {}
    for name, (_, prevalence) in FINDINGS.items():
        if rng.random() < prevalence * prevalence_scale:
            drawn[name] = {"side": str(rng.choice(SIDES)), "zone": str(rng.choice(ZONES)),
                           "severity": str(rng.choice(SEVERITIES))}
    if "edema" in drawn:
        drawn["edema"]["side"] = "bilateral"
    return DrawnStudy(drawn)


def labels_for(study: DrawnStudy) -> tuple[int | None, ...]:
    """CheXpert-14 labels of the report written for `study`: 1 stated, 0 explicitly negated, None unmentioned."""
    labels: list[int | None] = [None] * len(CHEXPERT_OBSERVATIONS)
    for name, (observation, _) in FINDINGS.items():
        # Every report states each finding or negates it (see write_report), except devices, which are
        # only mentioned when present.
        if name in study.findings:
            labels[LABEL_INDEX[observation]] = 1
        elif name != "devices":
            labels[LABEL_INDEX[observation]] = 0
    clinical = [name for name in study.findings if name != "devices"]
    labels[LABEL_INDEX["No Finding"]] = None if clinical else 1
    return tuple(labels)


# ---------------------------------------------------------------- images

def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    return np.meshgrid(axis, axis)  # x grows to the image's right, y downwards


def _ellipse(x, y, cx, cy, rx, ry) -> np.ndarray:
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _smooth(mask: np.ndarray, passes: int = 2) -> np.ndarray:
    out = mask.astype(np.float32)
    for _ in range(passes):
        out = (out + np.roll(out, 1, 0) + np.roll(out, -1, 0) + np.roll(out, 1, 1) + np.roll(out, -1, 1)) / 5
    return out


def render_image(study: DrawnStudy, rng: np.random.Generator, size: int = 224) -> np.ndarray:
    """A radiograph-like uint8 grayscale image (PA view: the patient's right is the image's left)."""
    x, y = _grid(size)
    image = np.full((size, size), 0.06, dtype=np.float32)
    jitter = lambda scale: float(rng.normal(0, scale))  # noqa: E731  (positional variation per study)
    body = _ellipse(x, y, 0, 0.1, 0.92 + jitter(0.02), 1.05)
    image[body] = 0.42
    # Lungs: patient right on the image left.
    lung_y, lung_ry = -0.05 + jitter(0.02), 0.62
    lung_masks = {
        "right": _ellipse(x, y, -0.38, lung_y, 0.3, lung_ry),
        "left": _ellipse(x, y, 0.38, lung_y, 0.3, lung_ry),
    }
    lungs = lung_masks["right"] | lung_masks["left"]
    image[lungs] = 0.16
    # Ribs: bright arcs across the lungs.
    ribs = (np.sin((y + 0.15 * x**2) * 22 + jitter(0.3)) > 0.82) & lungs
    image[ribs] += 0.12
    # Vascular markings: faint texture inside the lungs.
    texture = _smooth(rng.random((size, size)) > 0.7, 1)
    image[lungs] += 0.06 * texture[lungs]
    # Diaphragm domes below the lungs, mediastinum and spine in the middle.
    image[(y > lung_y + lung_ry * 0.85) & body & ~lungs] = 0.55
    image[(np.abs(x) < 0.1) & (y > -0.75) & body] = 0.58
    findings = study.findings
    heart_rx = 0.38 if "cardiomegaly" in findings else 0.23
    heart = _ellipse(x, y, 0.06, 0.32, heart_rx, 0.24)
    image[heart] = 0.62

    def zone_mask(side: str, zone: str) -> np.ndarray:
        upper = y < lung_y
        return lung_masks[side] & (upper if zone == "upper" else ~upper)

    if "edema" in findings:
        haze = np.clip(1.0 - np.sqrt((x / 0.7) ** 2 + ((y - 0.05) / 0.6) ** 2), 0, 1)
        image[lungs] += 0.32 * haze[lungs]
    if "consolidation" in findings:
        f = findings["consolidation"]
        blob = _smooth(zone_mask(f["side"], f["zone"]) & (rng.random((size, size)) > 0.15), 2)
        image += 0.38 * blob
    if "atelectasis" in findings:
        f = findings["atelectasis"]
        band = lung_masks[f["side"]] & (np.abs(y - (lung_y + 0.38)) < 0.05)
        image[band] = 0.6
    if "nodule" in findings:
        f = findings["nodule"]
        cx = -0.38 if f["side"] == "right" else 0.38
        cy = lung_y + (-0.3 if f["zone"] == "upper" else 0.25)
        image[_ellipse(x, y, cx + jitter(0.04), cy + jitter(0.04), 0.08, 0.08)] = 0.78
    if "effusion" in findings:
        f = findings["effusion"]
        level = {"small": 0.35, "moderate": 0.2, "large": 0.0}[f["severity"]]
        cx = -0.38 if f["side"] == "right" else 0.38
        meniscus = y > lung_y + level + 0.25 * np.abs(x - cx) * -1 + 0.1
        image[lung_masks[f["side"]] & meniscus] = 0.66
    if "pneumothorax" in findings:
        f = findings["pneumothorax"]
        edge = {"small": 0.15, "moderate": 0.25, "large": 0.35}[f["severity"]]
        lateral = x < -0.68 + edge if f["side"] == "right" else x > 0.68 - edge
        region = lung_masks[f["side"]] & (lateral | (y < lung_y - lung_ry + edge * 1.6))
        image[region] = 0.01
    if "devices" in findings:
        tube = (np.abs(x - 0.02) < 0.018) & (y > -1.0) & (y < 0.0)
        line = (np.abs(x + 0.25 - 0.3 * (y + 0.6) ** 2) < 0.014) & (y > -0.8) & (y < 0.1)
        image[tube | line] = 0.97
    image += rng.normal(0, 0.03, size=image.shape).astype(np.float32)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


# ---------------------------------------------------------------- reports

_NORMAL = {
    "cardiomegaly": ["The heart size is normal.", "Normal cardiac silhouette.",
                     "Heart size is within normal limits."],
    "effusion": ["No pleural effusion.", "There is no pleural effusion.", "No effusion is seen."],
    "pneumothorax": ["No pneumothorax.", "There is no pneumothorax.", "No evidence of pneumothorax."],
    "consolidation": ["No focal consolidation.", "There is no focal consolidation.",
                      "No consolidation is seen."],
    "atelectasis": ["No atelectasis.", "There is no atelectasis."],
    "edema": ["No pulmonary edema.", "There is no pulmonary edema.", "No edema."],
    "nodule": ["No pulmonary nodule.", "No nodule or mass is seen.", "There is no lung nodule."],
}
_POSITIVE = {
    "cardiomegaly": ["The heart is enlarged.", "Cardiomegaly is present.", "There is {severity} cardiomegaly."],
    "effusion": ["There is a {severity} {side} pleural effusion.", "{Severity} {side} pleural effusion.",
                 "A {severity} {side} pleural effusion is present."],
    "pneumothorax": ["There is a {severity} {side} pneumothorax.", "{Severity} {side} pneumothorax.",
                     "A {severity} {side} pneumothorax is seen."],
    "consolidation": ["There is consolidation in the {side} {zone} lobe.",
                      "Focal consolidation in the {side} {zone} lung.",
                      "{Side} {zone} lobe consolidation is present."],
    "atelectasis": ["There is {side} basilar atelectasis.", "{Side} basal atelectasis.",
                    "Atelectasis at the {side} lung base."],
    "edema": ["There is {severity} pulmonary edema.", "{Severity} pulmonary edema.",
              "Pulmonary edema is present."],
    "nodule": ["There is a nodule in the {side} {zone} lung.", "A {side} {zone} lobe nodule is seen.",
               "{Side} {zone} lung nodule."],
    "devices": ["An endotracheal tube and a central venous catheter are in place.",
                "Support devices are in place: endotracheal tube and central line.",
                "Endotracheal tube and central venous catheter are present."],
}
_IMPRESSION = {
    "cardiomegaly": "Cardiomegaly.",
    "effusion": "{Side} pleural effusion.",
    "pneumothorax": "{Side} pneumothorax.",
    "consolidation": "{Side} {zone} lobe consolidation.",
    "atelectasis": "{Side} basilar atelectasis.",
    "edema": "Pulmonary edema.",
    "nodule": "{Side} lung nodule.",
    "devices": "Support devices in place.",
}
_NORMAL_IMPRESSION = ["No acute cardiopulmonary abnormality.", "No acute cardiopulmonary process.",
                      "Normal chest radiograph."]
_STRUCTURES = ["The mediastinal contours are normal.", "The osseous structures are intact.",
               "The trachea is midline."]


# How often a report uses each phrase of a bank, most common first. Real report corpora have a house style:
# one wording dominates and the others are occasional. Uniform choice (generator version 1) made no wording
# more likely than another, so a greedy model's wording flipped between synonyms with image noise, and
# text variety did not reflect what it saw (BENCHMARKS.md, "Why GRPO raises the duplicate rate here").
WORDING_FREQUENCIES = (0.75, 0.17, 0.08)


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    weights = np.asarray(WORDING_FREQUENCIES[:len(options)])
    return str(options[int(rng.choice(len(options), p=weights / weights.sum()))])


def _fill(template: str, attrs: dict[str, str]) -> str:
    values = {**attrs, **{k.capitalize(): v.capitalize() for k, v in attrs.items()}}
    return template.format(**values)


def write_report(study: DrawnStudy, rng: np.random.Generator) -> tuple[str, str]:
    """Findings and impression text for `study`, each sentence from its phrase bank at WORDING_FREQUENCIES."""
    findings = study.findings
    sentences = []
    for name in FINDINGS:
        if name in findings:
            sentences.append(_fill(_pick(rng, _POSITIVE[name]), findings[name]))
        elif name in _NORMAL:
            sentences.append(_pick(rng, _NORMAL[name]))
    sentences.append(_pick(rng, _STRUCTURES))
    clinical = [name for name in FINDINGS if name in findings and name != "devices"]
    if clinical:
        impression = " ".join(_fill(_IMPRESSION[name], findings[name]) for name in clinical)
    else:
        impression = _pick(rng, _NORMAL_IMPRESSION)
    if "devices" in findings:
        impression += " " + _IMPRESSION["devices"]
    return " ".join(sentences), impression


# ---------------------------------------------------------------- studies

def generate_studies(out_dir: str | Path, n: int, seed: int = 0, size: int = 224,
                     prefix: str = "synth") -> Path:
    """Render `n` studies into `out_dir` (PNG images + manifest.jsonl); same seed, same bytes."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for index in range(n):
        study_id = f"{prefix}-{seed}-{index:05d}"
        drawn = draw_findings(rng)
        pixels = render_image(drawn, rng, size)
        image_path = out / "images" / f"{study_id}.png"
        # No PNG metadata and a fixed compression level keep the bytes identical across runs.
        Image.fromarray(pixels, mode="L").save(image_path, optimize=False, compress_level=6)
        findings, impression = write_report(drawn, rng)
        lines.append(json.dumps({
            "study_id": study_id,
            "images": [f"images/{study_id}.png"],
            "views": ["PA"],
            "findings": findings,
            "impression": impression,
            "indication": str(rng.choice(["Cough.", "Shortness of breath.", "Fever.", "Chest pain.",
                                          "Follow-up."])),
            "labels": list(labels_for(drawn)),
            "drawn": drawn.findings,
        }))
    manifest = out / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def phrase_corpus() -> list[str]:
    """Every sentence the generator can write, for training the tiny model's tokenizer."""
    corpus = [s for bank in (_NORMAL, _POSITIVE) for options in bank.values() for s in options]
    return corpus + list(_IMPRESSION.values()) + _NORMAL_IMPRESSION + _STRUCTURES
