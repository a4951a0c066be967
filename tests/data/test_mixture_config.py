"""The data.sources schema: one way to name sources, weights on all or none, paths from UNIRG_DATA_DIR."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from unirg.data.config import DATA_DIR_ENV, DataConfig, resolve_data_paths
from unirg.errors import DataError
from unirg.recipe import load_recipe


def test_sources_and_a_single_source_are_exclusive() -> None:
    with pytest.raises(ValidationError, match=r"data\.sources is set, so data\.path, data\.source must not be"):
        DataConfig(source="mimic_cxr", path="x", sources=[{"source": "iu_xray", "path": "y"}])


def test_weights_on_every_source_or_none_and_names_unique() -> None:
    with pytest.raises(ValidationError, match="set `weight` on every source or on none"):
        DataConfig(sources=[{"source": "iu_xray", "weight": 1.0}, {"source": "mimic_cxr"}])
    with pytest.raises(ValidationError, match="iu_xray appear twice"):
        DataConfig(sources=[{"source": "iu_xray"}, {"source": "iu_xray"}])
    DataConfig(sources=[{"source": "iu_xray"}, {"source": "iu_xray", "name": "iu_xray_r2gen"}])


def test_source_paths_resolve_from_the_data_dir_and_a_missing_one_is_named(tmp_path, monkeypatch) -> None:
    (tmp_path / "data" / "mimic").mkdir(parents=True)
    (tmp_path / "data" / "iu").mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    data = resolve_data_paths(DataConfig(sources=[{"source": "mimic_cxr", "path": "data/mimic"},
                                                  {"source": "iu_xray", "path": "data/iu"}]))
    assert [entry.path for entry in data.sources] == [str(tmp_path / "data" / "mimic"), str(tmp_path / "data" / "iu")]
    with pytest.raises(DataError, match=r"data\.sources\.1\.path: 'data/chexpert' is relative and does not exist"):
        resolve_data_paths(DataConfig(sources=[{"source": "mimic_cxr", "path": "data/mimic"},
                                               {"source": "chexpert_plus", "path": "data/chexpert"}]))


def test_cxr_starts_from_cxr_sft_on_the_same_studies_and_held_out_set() -> None:
    sft, step1 = load_recipe("cxr-sft"), load_recipe("cxr")
    assert step1.model.name_or_path.rstrip("/").endswith("runs/cxr-sft/sft/final")
    assert step1.data == sft.data and step1.prompt == sft.prompt
    assert [entry.source for entry in sft.data.sources] == ["mimic_cxr", "chexpert_plus", "rexgradient", "iu_xray"]
    assert sft.data.sources[0].holdout == 1024 and sft.data.image_size == 512 and sft.data.images == "key"
    # UniRG SFT: lr 5e-5, 3 epochs, global batch 256 = processes x per device x accumulation.
    assert sft.sft["learning_rate"] == 5e-5 and sft.sft["num_train_epochs"] == 3
    global_batch = (sft.cluster.trainer_workers * sft.sft["per_device_train_batch_size"]
                    * sft.sft["gradient_accumulation_steps"])
    assert global_batch == 256
    assert step1.rollout.backend == "vllm_colocate" and step1.cluster.trainer_workers == 8
