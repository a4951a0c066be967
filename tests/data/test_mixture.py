"""A mixture of sources in their on-disk layouts: ratios, the carved validation split, bad rows, key images."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from layouts import write_chexpert_plus_many, write_iu_csv_many, write_mimic_many

from unirg.data.config import DataConfig, PromptConfig
from unirg.data.loading import load_splits
from unirg.errors import DataError

N_MIMIC, N_CHEXPERT, N_IU = 90, 90, 60


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sources")
    return {"mimic_cxr": write_mimic_many(root / "mimic-cxr-jpg", N_MIMIC, lateral_only=(7,)),
            "chexpert_plus": write_chexpert_plus_many(root / "chexpert-plus", N_CHEXPERT).parent,
            "iu_xray": write_iu_csv_many(root / "iu-xray", N_IU)}


def mixture(layouts: dict[str, Path], weights=(0.5, 0.3, 0.2), seed: int = 0, holdout: int | None = 10,
            **fields) -> DataConfig:
    sources = [{"source": name, "path": str(path), "weight": weight}
               for (name, path), weight in zip(layouts.items(), weights, strict=True)]
    sources[0]["holdout"] = holdout
    return DataConfig(sources=sources, seed=seed, **fields)


def stored_paths(dataset) -> list[list[str]]:
    """The image paths a dataset holds, read without decoding any image."""
    from datasets import Image, List

    return [[image["path"] for image in row] for row in dataset.cast_column("images", List(Image(decode=False)))["images"]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_dataset_counts_follow_the_weights(layouts, tmp_path, seed) -> None:
    splits = load_splits(mixture(layouts, seed=seed), PromptConfig(), tmp_path)
    names = list(splits.train["dataset"])
    total = len(names)
    # first_exhausted: the epoch ends when one source runs out, so no study repeats.
    studies = list(zip(splits.train["dataset"], splits.train["study_id"], strict=True))
    assert len(set(studies)) == total
    for name, weight in zip(layouts, (0.5, 0.3, 0.2), strict=True):
        count = names.count(name)
        # Each row is a draw from the weights: the count is binomial(total, weight); 3 standard deviations.
        bound = 3 * math.sqrt(total * weight * (1 - weight))
        assert abs(count - total * weight) <= bound, (name, count, total * weight, bound)


def test_validation_is_carved_by_count_disjoint_and_stable(layouts, tmp_path) -> None:
    first = load_splits(mixture(layouts), PromptConfig(), tmp_path / "a")
    held = list(first.eval["study_id"])
    assert len(held) == 10 and set(first.eval["dataset"]) == {"mimic_cxr"}
    mimic_train = {s for d, s in zip(first.train["dataset"], first.train["study_id"], strict=True) if d == "mimic_cxr"}
    assert not mimic_train & set(held)
    # Another run, other weights and a cap on training studies: the same held-out studies.
    again = load_splits(mixture(layouts, weights=(1, 1, 1), seed=0), PromptConfig(), tmp_path / "b")
    assert list(again.eval["study_id"]) == held
    other_seed = load_splits(mixture(layouts, seed=5), PromptConfig(), tmp_path / "c")
    assert set(other_seed.eval["study_id"]) != set(held)
    summary = json.loads((tmp_path / "a" / "data_summary.json").read_text())
    assert summary["mimic_cxr"]["held_out"] == 10 and summary["mimic_cxr"]["train"] == N_MIMIC - 10


def test_holdout_larger_than_the_source_names_the_field(layouts, tmp_path) -> None:
    with pytest.raises(DataError, match=r"data\.sources\.0\.holdout: 500 studies .* mimic_cxr has only 90"):
        load_splits(mixture(layouts, holdout=500), PromptConfig(), tmp_path)


def test_a_bad_row_is_named_with_its_source_file_and_row(tmp_path) -> None:
    root = tmp_path / "sources"
    layouts = {"mimic_cxr": write_mimic_many(root / "mimic", 6, missing_report=(3,)),
               "chexpert_plus": write_chexpert_plus_many(root / "chexpert", 6).parent,
               "iu_xray": write_iu_csv_many(root / "iu", 6)}
    data = mixture(layouts, holdout=None)
    with pytest.raises(DataError) as error:
        load_splits(data, PromptConfig(), tmp_path / "run")
    # MIMIC names a study by its key image's metadata line: study 3's PA is line 9 (header, 2 lines a study).
    assert str(error.value).startswith(f"mimic_cxr: {layouts['mimic_cxr'] / 'mimic-cxr-2.0.0-metadata.csv'}, "
                                       "row 9 (study 50000003): report not found")
    skipped = load_splits(data.model_copy(update={"on_bad_row": "skip"}), PromptConfig(), tmp_path / "skip")
    [bad] = skipped.bad_rows
    assert (bad.dataset, bad.row, bad.study_id) == ("mimic_cxr", 9, "50000003")


def test_key_image_is_the_frontal_view_and_lateral_only_studies_fall_back(layouts, tmp_path) -> None:
    splits = load_splits(mixture(layouts, holdout=None, weights=(1, 1, 1)), PromptConfig(), tmp_path)
    rows = zip(splits.train["dataset"], splits.train["study_id"], stored_paths(splits.train), strict=True)
    for dataset, study_id, paths in rows:
        assert len(paths) == 1, (dataset, study_id)
        if study_id == "50000007":  # laterals only: the first listed image
            assert Path(paths[0]).name == "lat7.jpg"
        else:
            assert Path(paths[0]).name.startswith(("pa", "view1_frontal")) or "-1001" in paths[0], paths
    summary = json.loads((tmp_path / "data_summary.json").read_text())
    assert [summary[name]["no_frontal_view"] for name in layouts] == [1, 0, 0]


def test_data_check_reads_each_dataset_of_a_mixture(layouts, tmp_path) -> None:
    from unirg.data.loading import read_splits

    splits = read_splits(mixture(layouts), tmp_path)
    assert sorted(splits) == ["chexpert_plus/train", "iu_xray/train", "mimic_cxr/train"]
    assert len(splits["mimic_cxr/train"][0]) == N_MIMIC and splits["mimic_cxr/train"][1] == []
