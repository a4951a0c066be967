"""Open study images (PNG/JPEG of any bit depth, DICOM) as RGB PIL images within pixel bounds."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from unirg.errors import DataError

DICOM_SUFFIXES = (".dcm", ".dicom")


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Stretch any integer or float array to 0..255 by its own range (16-bit radiographs use ~12 bits)."""
    pixels = pixels.astype(np.float32)
    low, high = float(pixels.min()), float(pixels.max())
    if high <= low:
        return np.zeros(pixels.shape, dtype=np.uint8)
    return ((pixels - low) * (255.0 / (high - low))).round().astype(np.uint8)


def _read_dicom(path: Path) -> Image.Image:
    try:
        import pydicom
    except ImportError as error:  # pydicom is a core dependency; this only guards broken installs
        raise DataError(f"{path}: reading DICOM needs pydicom; run `pip install pydicom`") from error
    try:
        dataset = pydicom.dcmread(str(path))
        pixels = dataset.pixel_array
    except Exception as error:  # pydicom raises many types for truncated or compressed data
        raise DataError(f"unreadable DICOM image {path} ({type(error).__name__}: {error}); "
                        "re-export it or leave the study out") from error
    if pixels.ndim == 3 and pixels.shape[-1] not in (3, 4):
        pixels = pixels[0]  # multi-frame: the first frame is the radiograph
    pixels = _to_uint8(pixels)
    # MONOCHROME1 stores bone dark; radiographs are shown (and models trained) with bone bright.
    if str(getattr(dataset, "PhotometricInterpretation", "")) == "MONOCHROME1":
        pixels = 255 - pixels
    return Image.fromarray(pixels).convert("RGB")


def _read_raster(path: Path, at_least: int | None = None) -> Image.Image:
    try:
        with Image.open(path) as image:
            if at_least and image.format == "JPEG":
                # Decode a JPEG at the smallest 1/2^k scale that still covers at_least x at_least: a
                # 2,500-pixel MIMIC-CXR film decodes several times faster, and is resized below anyway.
                image.draft(image.mode, (at_least, at_least))
            image.load()
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                # PIL's convert("L") clips 16-bit values at 255; rescale by the image's own range instead.
                return Image.fromarray(_to_uint8(np.asarray(image))).convert("RGB")
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"unreadable image {path} ({type(error).__name__}: {error}); "
                        "re-export it or leave the study out (data.on_bad_row=skip)") from error


def fit_pixels(image: Image.Image, min_pixels: int | None = None, max_pixels: int | None = None) -> Image.Image:
    """Resize keeping the aspect ratio so width*height lies within [min_pixels, max_pixels]."""
    area = image.width * image.height
    scale = 1.0
    if max_pixels and area > max_pixels:
        scale = math.sqrt(max_pixels / area)
    elif min_pixels and area < min_pixels:
        scale = math.sqrt(min_pixels / area)
    if scale == 1.0:
        return image
    # floor/ceil so rounding never pushes the area back across the bound it was scaled to.
    rounding = math.floor if scale < 1 else math.ceil
    size = (max(1, rounding(image.width * scale)), max(1, rounding(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def fit_square(image: Image.Image, size: int | None) -> Image.Image:
    """`image` resized to size x size when it is wider or taller than `size` (UniRG feeds 512 x 512); else as is.

    Smaller images are left alone: upsampling adds nothing the model's own processor could not.
    """
    if not size or (image.width <= size and image.height <= size):
        return image
    return image.resize((size, size), Image.Resampling.BICUBIC)


def load_image(path: str | Path, min_pixels: int | None = None, max_pixels: int | None = None,
               image_size: int | None = None) -> Image.Image:
    """An RGB PIL image from a PNG/JPEG (8/16-bit, grayscale or colour) or DICOM file, resized within bounds.

    `image_size` first squares an image larger than it (see `fit_square`), then the pixel bounds apply.

    Raises DataError naming the path when the file is missing or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image not found: {path}; check data.path and the image paths of the source")
    image = _read_dicom(path) if path.suffix.lower() in DICOM_SUFFIXES else _read_raster(path, image_size)
    return fit_pixels(fit_square(image, image_size), min_pixels, max_pixels)
