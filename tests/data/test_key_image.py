"""The key-image rule, the 512 x 512 budget, and lazy decoding as the trainers read the dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from layouts import write_png
from PIL import Image

from unirg.data.config import DataConfig, PromptConfig
from unirg.data.loading import load_splits
from unirg.data.records import StudyImage
from unirg.data.views import frontal_rank, key_image
from unirg.errors import DataError


@pytest.mark.parametrize(("views", "expected", "fallback"), [
    (["LATERAL", "AP", "PA"], 2, False),           # PA beats AP whatever the order
    (["LL", "AP AXIAL", "AP"], 2, False),          # plain AP beats other frontal projections
    (["Lateral", "Frontal"], 1, False),            # IU X-ray / CheXpert wording
    (["LATERAL", "LL"], 0, True),                  # laterals only: the first listed image
    (["unknown", "unknown"], 0, True),             # no view recorded: the first listed image
])
def test_key_image_rule(views, expected, fallback) -> None:
    images = [StudyImage(f"{i}.png", view=view) for i, view in enumerate(views)]
    assert key_image(images) == (images[expected], fallback)


def test_frontal_rank_reads_source_spellings() -> None:
    assert [frontal_rank(v) for v in ("pa", "AP", "PA LLD", "frontal", "LATERAL", "", "XTABLE LATERAL")] == [
        0, 1, 2, 2, None, None, None]


def _manifest(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))
    return path


def test_big_image_is_resized_small_one_kept_and_lateral_only_falls_back(tmp_path: Path) -> None:
    Image.new("L", (900, 700), 128).save(tmp_path / "big_pa.png")
    write_png(tmp_path / "lat.png", size=300)
    write_png(tmp_path / "small_pa.png", size=100)
    path = _manifest(tmp_path, [
        {"study_id": "a", "images": ["lat.png", "big_pa.png"], "views": ["LATERAL", "PA"], "findings": "Clear."},
        {"study_id": "b", "images": ["lat.png", "small_pa.png"], "views": ["LATERAL", "PA"], "findings": "Clear."},
        {"study_id": "c", "images": ["lat.png"], "views": ["LATERAL"], "findings": "Clear."}])
    splits = load_splits(DataConfig(source="manifest", path=str(path)), PromptConfig(), tmp_path / "run")
    sizes = {row["study_id"]: [image.size for image in row["images"]] for row in splits.train}
    assert sizes == {"a": [(512, 512)], "b": [(100, 100)], "c": [(300, 300)]}
    assert splits.summary["manifest"]["no_frontal_view"] == 1
    native = load_splits(DataConfig(source="manifest", path=str(path), image_size=None), PromptConfig(),
                         tmp_path / "native")
    assert native.train[0]["images"][0].size == (900, 700)


def test_images_are_decoded_only_when_a_row_is_read(tmp_path: Path, monkeypatch) -> None:
    """Building, reading other columns and an SFT-style map open no image; a row read does, as TRL does."""
    from trl.data_utils import prepare_multimodal_messages

    import unirg.data.lazy_image as lazy_image
    from unirg.training.sft import sft_dataset

    write_png(tmp_path / "pa.png", size=64)
    rows = [{"study_id": f"s{i}", "images": ["pa.png"], "views": ["PA"], "findings": "Clear.", "impression": "Normal."}
            for i in range(20)]
    data = DataConfig(source="manifest", path=str(_manifest(tmp_path, rows)), check_images=False)
    opened: list[str] = []
    real = lazy_image.load_image
    monkeypatch.setattr(lazy_image, "load_image", lambda path, *a: opened.append(path) or real(path, *a))
    splits = load_splits(data, PromptConfig(), tmp_path / "run")
    assert list(splits.train["reference"])[0] == "Findings: Clear.\nImpression: Normal."
    sft = sft_dataset(splits.train, "unirg")
    assert opened == []
    batch = sft.__getitems__([0, 1])  # how the trainers' DataLoader fetches
    assert [type(row["images"][0]) for row in batch] == [Image.Image, Image.Image] and len(opened) == 2
    messages = prepare_multimodal_messages(batch[0]["prompt"], batch[0]["images"])
    assert [block["type"] for block in messages[0]["content"]] == ["image", "text"]
    # A file that disappears after loading fails when read, naming the file.
    (tmp_path / "pa.png").unlink()
    with pytest.raises(DataError, match="image not found: .*pa.png"):
        splits.train[3]
