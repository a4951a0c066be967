"""Checkpoint selection: validation scores recorded per checkpoint, the best marked, `best:RUN_DIR` resolved."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from unirg.errors import RecipeError
from unirg.models.loading import resolve_model_path
from unirg.recipe import ModelConfig
from unirg.training import selection
from unirg.training.selection import CheckpointSelectionCallback, best_checkpoint, record_score

# Validation micro-F1 by step: step 20 is the best, the last checkpoint is worse.
SCORES = {10: 0.30, 20: 0.55, 30: 0.41}


def _table(step: int) -> dict:
    return {"chexpert_micro_f1_14": SCORES[step], "radcliq_v1": None, "n": 4}


@pytest.fixture
def scored_run(tmp_path, monkeypatch):
    """A run folder whose three GRPO checkpoints went through the selection callback."""
    grpo = tmp_path / "step1" / "grpo"
    calls = []

    def fake_evaluate(model_path, dataset, recipe, models=None):  # greedy generation is covered by the evaluation tests
        step = int(model_path.rsplit("-", 1)[1])
        calls.append(step)
        return {"findings_impression": _table(step)}

    monkeypatch.setattr("unirg.evaluation.heldout.evaluate_dataset", fake_evaluate)
    recipe = SimpleNamespace(grpo={"metric_for_best_model": "auto"})
    callback = CheckpointSelectionCallback(recipe, grpo, validation=["study"])
    args = SimpleNamespace(output_dir=str(grpo))
    state = SimpleNamespace(is_world_process_zero=True, global_step=0, best_model_checkpoint=None, best_metric=None)
    for step in SCORES:
        (grpo / f"checkpoint-{step}").mkdir(parents=True)
        (grpo / f"checkpoint-{step}" / "config.json").write_text("{}")
        state.global_step = step
        callback.on_save(args, state, None)
    return SimpleNamespace(root=tmp_path / "step1", grpo=grpo, state=state, calls=calls, callback=callback,
                           args=args)


def test_best_resolves_to_the_best_scoring_checkpoint(scored_run):
    data = json.loads((scored_run.grpo / "selection.json").read_text())
    assert data["metric"] == "chexpert_micro_f1_14" and data["greater_is_better"] is True
    assert [e["score"] for e in data["evaluations"]] == [0.30, 0.55, 0.41]
    assert data["best"] == {"step": 20, "checkpoint": "checkpoint-20", "score": 0.55}
    # The trainer's rotation protects the best checkpoint from save_total_limit.
    assert scored_run.state.best_model_checkpoint == str(scored_run.grpo / "checkpoint-20")
    best = str(scored_run.grpo / "checkpoint-20")
    assert best_checkpoint(f"best:{scored_run.root}") == best
    model = ModelConfig(name_or_path=f"best:{scored_run.root}")
    assert resolve_model_path(model, scored_run.root) == best
    assert resolve_model_path(model.model_copy(update={"name_or_path": model.name_or_path}), scored_run.root) == best


def test_a_rerun_reads_scores_back(scored_run):
    scored_run.state.global_step = 20
    scored_run.callback.on_save(scored_run.args, scored_run.state, None)
    assert scored_run.calls == [10, 20, 30]  # step 20 was not generated again


def test_lower_is_better_metric(tmp_path):
    path = tmp_path / "selection.json"
    for step, score in ((10, 3.1), (20, 2.4), (30, 2.9)):
        data = record_score(path, step, f"checkpoint-{step}", "radcliq_v1", False, score, {})
    assert data["best"]["step"] == 20
    assert selection.resolve_metric("auto", {"radcliq_v1": 2.0}) == "radcliq_v1"


def test_missing_selection_or_deleted_checkpoint_is_a_clear_error(scored_run, tmp_path):
    with pytest.raises(RecipeError, match="metric_for_best_model"):
        best_checkpoint(f"best:{tmp_path / 'nothing'}")
    (scored_run.grpo / "checkpoint-20" / "config.json").unlink()
    with pytest.raises(RecipeError, match=r"checkpoint-20 \(step 20, chexpert_micro_f1_14 0.55\)"):
        best_checkpoint(f"best:{scored_run.root}")


def test_selection_reads_its_own_validation_studies_not_the_held_out_ones(tmp_path, monkeypatch):
    """With data.synthetic.n_val the best checkpoint is chosen on studies the held-out table never reports on."""
    from unirg.recipe import load_recipe

    recipe = load_recipe("demo", ["data.synthetic.n_train=4", "data.synthetic.n_eval=2", "data.synthetic.n_val=3",
                                  "data.synthetic.size=48", "grpo.metric_for_best_model=auto"])
    from unirg.data import load_splits

    splits = load_splits(recipe.data, recipe.prompt, tmp_path)
    train, held_out, chosen_on = (set(split["study_id"]) for split in (splits.train, splits.eval, splits.selection))
    assert len(chosen_on) == 3 and not chosen_on & held_out and not chosen_on & train
    seen = []

    def fake_evaluate(model_path, dataset, recipe, models=None):
        seen.append(set(dataset["study_id"]))
        return {"findings_impression": _table(10)}

    monkeypatch.setattr("unirg.evaluation.heldout.evaluate_dataset", fake_evaluate)
    checkpoint = tmp_path / "grpo" / "checkpoint-10"
    checkpoint.mkdir(parents=True)
    CheckpointSelectionCallback(recipe, tmp_path / "grpo").score_checkpoint(10, checkpoint)
    assert seen == [chosen_on]
