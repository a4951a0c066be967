"""A datasets feature that stores a study image as its path and decodes it only when a row is read.

Why a feature and not `Dataset.set_transform`: with datasets 5.x a custom transform runs on whole rows
even when one column is read (`dataset["reference"]` iterates every row through it) and inside
`Dataset.map`, so listing the references of a 500k-study mixture would decode 500k images. A feature's
`decode_example` runs only when the images column of a row is read: reading other columns, `map`
functions that do not touch `images`, `select`, `shuffle` and `interleave_datasets` never open an image.
The trainers (TRL's GRPOTrainer and SFTTrainer read `dataset[i]` / `__getitems__`) get RGB PIL images.
"""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import datasets
from PIL import Image

from unirg.data.images import fit_pixels, fit_square, load_image

FEATURE_TYPE = "UnirgStudyImage"
# datasets decodes the first element of a list twice (once to see whether the list needs decoding at
# all, datasets 5.2 features.decode_nested_example); this one-entry, per-thread memo hands the second
# call the image the first one made instead of reading the file again. It holds at most one image.
_last = threading.local()


@dataclass
class StudyImageFile(datasets.Image):
    """An image column entry `{"path": ..., "bytes": None}`, decoded on read to RGB within the size rules.

    `image_size` squares an image larger than it (UniRG: 512 x 512); `min_pixels`/`max_pixels` then
    bound width*height keeping the aspect ratio. DICOM and 16-bit files go through unirg.data.images.
    """

    image_size: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    _type: str = field(default=FEATURE_TYPE, init=False, repr=False)

    def decode_example(self, value: Any, token_per_repo_id: Any = None) -> Image.Image:
        if isinstance(value, Image.Image):
            return value  # already decoded (decoding is idempotent, as datasets expects)
        if isinstance(value, str):
            value = {"path": value, "bytes": None}
        key = (value.get("path"), id(value.get("bytes")), self.image_size, self.min_pixels, self.max_pixels)
        memo = getattr(_last, "entry", None)
        if memo is not None and memo[0] == key:
            _last.entry = None
            return memo[1]
        if value.get("bytes") is not None:
            with Image.open(io.BytesIO(value["bytes"])) as opened:
                image = fit_pixels(fit_square(opened.convert("RGB"), self.image_size), self.min_pixels,
                                   self.max_pixels)
        else:
            image = load_image(value["path"], self.min_pixels, self.max_pixels, self.image_size)
        _last.entry = (key, image)
        return image


with warnings.catch_warnings():
    # register_feature is flagged experimental; it is the documented way to make datasets rebuild a
    # custom feature from a schema (select, interleave and pickling all do).
    warnings.simplefilter("ignore", UserWarning)
    datasets.features.features.register_feature(StudyImageFile, FEATURE_TYPE)
