"""Writers of small images and files for the data tests (all report text is invented)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from unirg.data.records import CHEXPERT_OBSERVATIONS


def write_png(path: Path, size: int = 64, value: int = 120) -> str:
    """A small grayscale PNG; returns its path as a string."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size, size), value, dtype=np.uint8)
    pixels[size // 4: size // 2, size // 4: size // 2] = 250
    Image.fromarray(pixels, mode="L").save(path)
    return str(path)


def write_jpg(path: Path, size: int = 64) -> str:
    """A small grayscale JPEG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), 90, dtype=np.uint8), mode="L").save(path, format="JPEG")
    return str(path)


def write_csv(path: Path, rows: list[dict]) -> Path:
    """A CSV with the union of the rows' keys as header (rows must share keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


# ---------------------------------------------------------------- sources in their real layouts

def write_rexrank(root: Path) -> Path:
    """A ReXrank test JSON keyed by study id; image paths relative to the JSON's folder."""
    import json

    for name in ("s1_frontal", "s1_lateral", "s2_frontal"):
        write_png(root / "images" / f"{name}.png")
    payload = {
        "s1": {"key_image_path": "images/s1_frontal.png",
               "image_path": ["images/s1_lateral.png", "images/s1_frontal.png"],
               "context": "Age: 70. Gender: M. Indication: Dyspnea. Comparison: None.",
               "section_findings": "Mild cardiomegaly. No effusion.", "section_impression": "Cardiomegaly."},
        "s2": {"key_image_path": "images/s2_frontal.png", "image_path": ["images/s2_frontal.png"],
               "context": "", "section_findings": "Clear lungs.", "section_impression": ""},
        "s3": {"key_image_path": "images/missing.png", "image_path": ["images/missing.png"],
               "context": "", "section_findings": "Clear lungs.", "section_impression": ""},
    }
    path = root / "mimic-cxr_test.json"
    path.write_text(json.dumps(payload))
    return path


MIMIC_REPORT_BOTH = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with cough, evaluate for pneumonia.

 COMPARISON:  None.

 FINDINGS:
 
 The lungs are clear without
 focal consolidation.  No pleural effusion or pneumothorax.
 
 IMPRESSION:
 
 No acute cardiopulmonary process.
"""
MIMIC_REPORT_IMPRESSION_ONLY = """                                 FINAL REPORT
 INDICATION:  Follow-up.

 IMPRESSION:  Interval improvement of the left basilar opacity.
"""


def write_mimic(root: Path) -> Path:
    """MIMIC-CXR-JPG: metadata and split CSVs, files/pXX/pSUBJECT/sSTUDY/DICOM.jpg, reports as sSTUDY.txt.

    Subject 10000001 has two studies (the second has the first as prior); 10000002 is in validate;
    study 53000000 has no report file.
    """
    studies = [  # subject, study, dicoms (id, view), date, split, report
        ("10000001", "50000001", [("d1a", "PA"), ("d1b", "LATERAL")], "21800101", "train", MIMIC_REPORT_BOTH),
        ("10000001", "51000002", [("d2b", "LATERAL"), ("d2a", "AP")], "21800305", "train",
         MIMIC_REPORT_IMPRESSION_ONLY),
        ("10000002", "52000003", [("d3a", "PA")], "21810101", "validate", MIMIC_REPORT_BOTH),
        ("10000001", "53000000", [("d4a", "PA")], "21800401", "train", None),
    ]
    metadata, splits = [], []
    for subject, study, dicoms, date, split, report in studies:
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}"
        for dicom, view in dicoms:
            write_jpg(folder / f"s{study}" / f"{dicom}.jpg")
            metadata.append({"dicom_id": dicom, "subject_id": subject, "study_id": study,
                             "PerformedProcedureStepDescription": "CHEST (PA AND LAT)", "ViewPosition": view,
                             "Rows": 64, "Columns": 64, "StudyDate": date, "StudyTime": "101500.000"})
            splits.append({"dicom_id": dicom, "study_id": study, "subject_id": subject, "split": split})
        if report is not None:
            (folder / f"s{study}.txt").write_text(report)
    # The earliest study's StudyTime written as MIMIC sometimes does ("1500.0" = 00:15:00).
    metadata[0]["StudyTime"] = "1500.0"
    write_csv(root / "mimic-cxr-2.0.0-metadata.csv", metadata)
    labels = {name: "" for name in CHEXPERT_OBSERVATIONS}
    write_csv(root / "mimic-cxr-2.0.0-chexpert.csv", [
        {"subject_id": "10000001", "study_id": "50000001", **labels, "No Finding": "1.0"},
        {"subject_id": "10000001", "study_id": "51000002", **labels, "Lung Opacity": "1.0", "Pneumonia": "-1.0",
         "Pleural Effusion": "0.0"},
    ])
    write_csv(root / "mimic-cxr-2.0.0-split.csv", splits)
    return root


def write_chexpert_plus(root: Path) -> Path:
    """CheXpert Plus: df_chexpert_plus_240401.csv, one row per image, PNG release under PNG/."""
    rows, base = [], {"section_narrative": "", "section_clinical_history": "", "section_history": "",
                      "section_comparison": "", "section_technique": "", "section_findings": "",
                      "section_impression": "", "age": "", "sex": ""}
    entries = [
        ("train/patient00001/study1/view1_frontal.jpg", "Frontal", "PA", "train",
         {"section_findings": "Left basilar opacity.", "section_impression": "Possible pneumonia.",
          "section_clinical_history": "Fever.", "age": "54", "sex": "Female"}),
        ("train/patient00001/study1/view2_lateral.jpg", "Lateral", "", "train",
         {"section_findings": "Left basilar opacity.", "section_impression": "Possible pneumonia."}),
        ("train/patient00002/study1/view1_frontal.jpg", "Frontal", "AP", "train",
         {"section_impression": "Stable support devices."}),
        ("valid/patient00003/study1/view1_frontal.jpg", "Frontal", "PA", "valid",
         {"section_findings": "Normal heart size."}),
        ("train/patient00001/study2/view1_frontal.jpg", "Frontal", "PA", "train",
         {"section_findings": "Improving left basilar opacity.", "section_impression": "Resolving pneumonia."}),
        ("train/patient00004/study1/view1_frontal.jpg", "Frontal", "PA", "train",
         {"section_findings": "BAD_BYTES"}),
    ]
    for path, frontal_lateral, ap_pa, split, sections in entries:
        write_png(root / "PNG" / Path(path).with_suffix(".png"))
        rows.append({"path_to_image": path, "path_to_dcm": path.replace(".jpg", ".dcm"),
                     "frontal_lateral": frontal_lateral, "ap_pa": ap_pa, "deid_patient_id": path.split("/")[1],
                     "patient_report_date_order": 2 if "study2" in path else 1, "report": "", **base,
                     **sections, "split": split})
    table = write_csv(root / "df_chexpert_plus_240401.csv", rows)
    # One report cell holds Latin-1 bytes, as a mis-exported CSV would.
    table.write_bytes(table.read_bytes().replace(b"BAD_BYTES", b"Pleural \xe9panchement."))
    return table


def write_iu_csv(root: Path) -> Path:
    """IU X-ray (Kaggle/OpenI CSV release): indiana_reports.csv, indiana_projections.csv, images/images_normalized/."""
    reports, projections = [], []
    for uid in range(1, 31):
        reports.append({"uid": uid, "MeSH": "normal", "Problems": "normal", "image": "Xray Chest PA and Lateral",
                        "indication": "Chest pain.", "comparison": "None.",
                        "findings": "" if uid == 2 else "The heart is normal in size. The lungs are clear.",
                        "impression": "No acute disease."})
        for view, suffix in (("Frontal", "1001"), ("Lateral", "2001")):
            name = f"{uid}_IM-{uid:04d}-{suffix}.dcm.png"
            projections.append({"uid": uid, "filename": name, "projection": view})
            write_png(root / "images" / "images_normalized" / name)
    write_csv(root / "indiana_reports.csv", reports)
    write_csv(root / "indiana_projections.csv", projections)
    return root


def write_iu_r2gen(root: Path) -> Path:
    """IU X-ray as prepared by R2Gen: annotation.json with train/val/test, images/<id>/0.png and 1.png."""
    import json

    payload = {}
    for split, ids in (("train", ["CXR1_1_IM-0001", "CXR2_IM-0652"]), ("val", ["CXR3_IM-1384"]),
                       ("test", ["CXR4_IM-2050"])):
        payload[split] = []
        for study in ids:
            for index in (0, 1):
                write_png(root / "images" / study / f"{index}.png")
            payload[split].append({"id": study, "report": "The cardiac silhouette is normal. No effusion.",
                                   "image_path": [f"{study}/0.png", f"{study}/1.png"], "split": split})
    (root / "annotation.json").write_text(json.dumps(payload))
    return root


def write_rexgradient(root: Path) -> Path:
    """ReXGradient-160K: a DatasetDict saved with save_to_disk, images in deid_png/ beside it."""
    from datasets import Dataset, DatasetDict

    def split_rows(prefix: str, n: int) -> Dataset:
        rows = {"id": [], "PatientID": [], "PatientAge": [], "PatientSex": [], "StudyDate": [], "Indication": [],
                "Comparison": [], "Findings": [], "Impression": [], "ImagePath": [], "ImageViewPosition": []}
        for i in range(n):
            path = f"deid_png/{prefix}/study{i}/image0.png"
            write_png(root / path)
            rows["id"].append(f"{prefix}-{i}")
            rows["PatientID"].append(f"{prefix}-pat{0 if i < 2 else i}")
            rows["PatientAge"].append(f"{40 + i}Y")
            rows["PatientSex"].append("M")
            rows["StudyDate"].append(f"202{i}-01-01")
            rows["Indication"].append("Shortness of breath.")
            rows["Comparison"].append("")
            rows["Findings"].append("Small right effusion." if i else "")
            rows["Impression"].append("Right effusion.")
            rows["ImagePath"].append([path])
            rows["ImageViewPosition"].append(["PA"])
        return Dataset.from_dict(rows)

    DatasetDict({"train": split_rows("train", 3), "valid": split_rows("valid", 2),
                 "test": split_rows("test", 1)}).save_to_disk(str(root / "hf"))
    return root / "hf"


# ---------------------------------------------------------------- larger layouts for mixture tests

def write_mimic_many(root: Path, n: int, lateral_only: tuple[int, ...] = (), missing_report: tuple[int, ...] = ()) -> Path:
    """MIMIC-CXR-JPG with `n` training studies, each a LATERAL listed before a PA (or a lateral alone).

    Study i has id 5{i:07d}; studies in `lateral_only` have no frontal image, those in `missing_report`
    have no report file (a bad row).
    """
    metadata, splits = [], []
    for i in range(n):
        subject, study = f"1{i:07d}", f"5{i:07d}"
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}"
        views = [(f"lat{i}", "LATERAL")] + ([] if i in lateral_only else [(f"pa{i}", "PA")])
        for dicom, view in views:
            write_jpg(folder / f"s{study}" / f"{dicom}.jpg", size=40)
            metadata.append({"dicom_id": dicom, "subject_id": subject, "study_id": study, "ViewPosition": view,
                             "StudyDate": "21800101", "StudyTime": "101500.000"})
            splits.append({"dicom_id": dicom, "study_id": study, "subject_id": subject, "split": "train"})
        if i not in missing_report:
            (folder / f"s{study}.txt").write_text(MIMIC_REPORT_BOTH)
    write_csv(root / "mimic-cxr-2.0.0-metadata.csv", metadata)
    write_csv(root / "mimic-cxr-2.0.0-split.csv", splits)
    return root


def write_chexpert_plus_many(root: Path, n: int) -> Path:
    """CheXpert Plus with `n` training studies, each a lateral row listed before its frontal (PA) row."""
    rows = []
    for i in range(n):
        for name, frontal_lateral, ap_pa in (("view2_lateral", "Lateral", ""), ("view1_frontal", "Frontal", "PA")):
            path = f"train/patient{i:05d}/study1/{name}.jpg"
            write_png(root / "PNG" / Path(path).with_suffix(".png"), size=40)
            rows.append({"path_to_image": path, "frontal_lateral": frontal_lateral, "ap_pa": ap_pa,
                         "deid_patient_id": f"patient{i:05d}", "patient_report_date_order": 1,
                         "section_findings": "Clear lungs.", "section_impression": "Normal.", "split": "train"})
    return write_csv(root / "df_chexpert_plus_240401.csv", rows)


def write_iu_csv_many(root: Path, n: int) -> Path:
    """IU X-ray CSV release with `n` studies (about 70% land in train), lateral projection listed first."""
    reports, projections = [], []
    for uid in range(1, n + 1):
        reports.append({"uid": uid, "indication": "Chest pain.", "comparison": "None.",
                        "findings": "The heart is normal in size.", "impression": "No acute disease."})
        for view, suffix in (("Lateral", "2001"), ("Frontal", "1001")):
            name = f"{uid}_IM-{uid:04d}-{suffix}.dcm.png"
            projections.append({"uid": uid, "filename": name, "projection": view})
            write_png(root / "images" / "images_normalized" / name, size=40)
    write_csv(root / "indiana_reports.csv", reports)
    write_csv(root / "indiana_projections.csv", projections)
    return root
