"""Image preprocessing: 16-bit and grayscale to RGB, DICOM, pixel bounds, corrupt files named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unirg.data.images import fit_pixels, load_image
from unirg.errors import DataError


def test_16_bit_png_is_stretched_to_rgb(tmp_path: Path) -> None:
    pixels = np.zeros((40, 50), dtype=np.uint16)
    pixels[:, 25:] = 4095  # 12-bit data in a 16-bit PNG: convert("L") would clip everything to white
    pixels[:, :10] = 1000
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    image = load_image(tmp_path / "deep.png")
    array = np.asarray(image)
    assert image.mode == "RGB" and image.size == (50, 40)
    assert array[0, 30, 0] == 255 and array[0, 15, 0] == 0 and 50 < array[0, 5, 0] < 80


def test_grayscale_jpeg_to_rgb(tmp_path: Path) -> None:
    Image.fromarray(np.full((30, 30), 90, dtype=np.uint8), mode="L").save(tmp_path / "g.jpg")
    assert load_image(tmp_path / "g.jpg").mode == "RGB"


def _write_dicom(path: Path, pixels: np.ndarray, photometric: str) -> None:
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
    dataset.PixelRepresentation = 0
    dataset.PixelData = pixels.astype(np.uint16).tobytes()
    pydicom.dcmwrite(str(path), dataset, enforce_file_format=True)


@pytest.mark.parametrize("photometric, bright_column", [("MONOCHROME2", 30), ("MONOCHROME1", 5)])
def test_dicom(tmp_path: Path, photometric: str, bright_column: int) -> None:
    pixels = np.zeros((40, 40), dtype=np.uint16)
    pixels[:, 20:] = 4000
    _write_dicom(tmp_path / "x.dcm", pixels, photometric)
    array = np.asarray(load_image(tmp_path / "x.dcm"))
    assert array.shape == (40, 40, 3) and array[0, bright_column, 0] == 255


def test_corrupt_and_missing_files_name_the_path(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"garbage")
    (tmp_path / "bad.dcm").write_bytes(b"garbage")
    for name in ("bad.png", "bad.dcm", "absent.png"):
        with pytest.raises(DataError, match=str(tmp_path / name)):
            load_image(tmp_path / name)


def test_pixel_bounds() -> None:
    big = Image.new("RGB", (400, 200))
    down = fit_pixels(big, max_pixels=20_000)
    assert down.width * down.height <= 20_000 and abs(down.width / down.height - 2) < 0.05
    up = fit_pixels(Image.new("RGB", (20, 10)), min_pixels=800)
    assert up.width * up.height >= 800
    assert fit_pixels(big, min_pixels=100, max_pixels=10**6) is big


def test_dicom_and_16_bit_studies_reach_the_dataset_as_rgb_within_bounds(tmp_path: Path) -> None:
    import json

    from unirg.data import load_splits
    from unirg.data.config import DataConfig, PromptConfig

    pixels = np.zeros((80, 80), dtype=np.uint16)
    pixels[:, 40:] = 4000
    _write_dicom(tmp_path / "a.dcm", pixels, "MONOCHROME2")
    Image.fromarray(pixels).save(tmp_path / "b.png")
    rows = [{"study_id": "a", "images": ["a.dcm"], "findings": "Clear."},
            {"study_id": "b", "images": ["b.png"], "findings": "Clear."}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    data = DataConfig(source="manifest", path=str(tmp_path / "m.jsonl"), max_pixels=40 * 40)
    splits = load_splits(data, PromptConfig(), tmp_path / "run")
    for row in splits.train:
        [image] = row["images"]
        assert image.mode == "RGB" and image.size == (40, 40)
        assert np.asarray(image)[0, 35, 0] == 255


def test_dicom_without_pydicom_says_how_to_install(tmp_path: Path, monkeypatch) -> None:
    import sys

    pixels = np.zeros((40, 40), dtype=np.uint16)
    _write_dicom(tmp_path / "x.dcm", pixels, "MONOCHROME2")
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom now raises ImportError
    with pytest.raises(DataError, match="pip install pydicom"):
        load_image(tmp_path / "x.dcm")
