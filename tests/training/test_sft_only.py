"""An SFT-only recipe (`grpo: null`) ends after SFT, evaluates the SFT checkpoint, and is reused on a re-run."""

from __future__ import annotations

import pytest

from unirg.errors import RecipeError
from unirg.recipe import load_recipe

pytestmark = pytest.mark.slow

SFT_ONLY = ["grpo=null", "sft.num_train_epochs=1", "data.synthetic.n_train=16", "data.synthetic.n_eval=4",
            "rollout.max_new_tokens=8", "logging.progress=false", "logging.tensorboard=false"]


def test_sft_only_run_stops_after_sft_and_is_reused(tmp_path):
    from unirg.training.pipeline import run_pipeline

    result = run_pipeline(load_recipe("demo", SFT_ONLY), tmp_path)
    assert result.final_model == tmp_path / "sft" / "final"
    assert not (tmp_path / "grpo").exists()
    assert list(result.summary["evaluation"]) == ["before SFT", "after SFT"]
    again = run_pipeline(load_recipe("demo", SFT_ONLY), tmp_path)
    assert again.reused == ["sft", "evaluation before SFT", "evaluation after SFT"]
    assert again.summary == result.summary


def test_recipe_that_trains_nothing_is_refused():
    with pytest.raises(RecipeError, match="trains nothing"):
        load_recipe("demo", ["grpo=null", "sft=null"])
