"""Step 1 -> step 2 on the tiny demo: checkpoints scored, `best:` resolved, KL measured against `model.reference`.

One short step-1 run scores its two GRPO checkpoints on the validation split; step 2 starts from
`best:<step1>`. At step 2's first step the policy still equals its start, so the logged KL is ~0 when
the reference is that same checkpoint, and clearly above 0 when the reference is another model (the
untrained tiny model the demo starts SFT from).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from unirg.errors import RecipeError
from unirg.recipe import load_recipe
from unirg.run_folder import read_json, read_rows
from unirg.training.reference import check_reference

pytestmark = pytest.mark.slow

SMALL = ["data.synthetic.n_train=32", "data.synthetic.n_eval=8", "data.synthetic.n_val=8",
         "grpo.per_device_train_batch_size=8", "grpo.num_generations=4", "rollout.max_new_tokens=16",
         "logging.progress=false", "logging.tensorboard=false"]


@pytest.fixture(scope="module")
def step1(tmp_path_factory) -> Path:
    from unirg.training.pipeline import run_pipeline

    run_dir = tmp_path_factory.mktemp("runs") / "step1"
    recipe = load_recipe("demo", [*SMALL, "sft.num_train_epochs=1", "grpo.max_steps=4", "output.save_steps=2",
                                  "evaluate=false", "grpo.metric_for_best_model=auto"])
    run_pipeline(recipe, run_dir)
    return run_dir


def _step2_first_kl(step1: Path, out: Path, reference: str, *extra: str) -> float:
    from unirg.training.pipeline import run_pipeline

    # The shipped step-2 recipe (labeler_errors at 0.5, beta 0.03), pointed at this step-1 run.
    recipe = load_recipe("demo-step2", [*SMALL, f"model.name_or_path=best:{step1}", f"model.reference={reference}",
                                        "grpo.max_steps=1", "evaluate=false", "grpo.metric_for_best_model=null",
                                        *extra])
    assert recipe.grpo["beta"] == 0.03 and recipe.rewards[3].name == "labeler_errors"
    run_pipeline(recipe, out)
    rows = [row for row in read_rows(out / "metrics.jsonl") if "kl" in row]
    assert rows, "no KL logged"
    assert 0 < rows[0]["rewards/labeler_errors/mean"] <= 1
    print(f"first-step KL against {reference}: {rows[0]['kl']:.3g}")
    return rows[0]["kl"]


def test_best_is_the_best_scored_checkpoint(step1):
    data = read_json(step1 / "grpo" / "selection.json")
    assert [e["step"] for e in data["evaluations"]] == [2, 4]
    assert data["metric"] == "chexpert_micro_f1_14"
    scores = [e["score"] for e in data["evaluations"]]
    best = data["evaluations"][scores.index(max(scores))]
    from unirg.training.selection import best_checkpoint

    assert best_checkpoint(f"best:{step1}") == str(step1 / "grpo" / best["checkpoint"])


def test_kl_is_zero_against_the_start_policy_and_positive_against_another(step1, tmp_path):
    same = _step2_first_kl(step1, tmp_path / "same", f"best:{step1}")
    untrained = next(step1.glob("tiny-*"))
    other = _step2_first_kl(step1, tmp_path / "other", str(untrained))
    assert abs(same) < 1e-6
    assert other > 1e-2, other


def test_lora_kl_against_its_start_and_refused_against_another(step1, tmp_path):
    lora = "model.lora={r: 4, alpha: 8}"
    assert abs(_step2_first_kl(step1, tmp_path / "lora", f"best:{step1}", lora)) < 1e-6
    with pytest.raises(RecipeError, match="model.reference: with model.lora"):
        _step2_first_kl(step1, tmp_path / "lora-other", str(next(step1.glob("tiny-*"))), lora)


def test_best_lora_checkpoint_is_merged(tmp_path):
    from unirg.training.pipeline import run_pipeline
    from unirg.training.selection import best_checkpoint

    run_dir = tmp_path / "lora-step1"
    run_pipeline(load_recipe("demo", [*SMALL, "sft=null", "grpo.max_steps=2", "output.save_steps=2",
                                      "evaluate=false", "grpo.metric_for_best_model=auto",
                                      "model.lora={r: 4, alpha: 8}"]), run_dir)
    checkpoint = run_dir / "grpo" / "checkpoint-2"
    assert (checkpoint / "adapter_config.json").is_file()
    merged = Path(best_checkpoint(f"best:{run_dir}"))
    assert merged == checkpoint / "merged" and (merged / "config.json").is_file()
    assert best_checkpoint(f"best:{run_dir}") == str(merged)  # made once, then reused


def test_lora_refuses_a_reference_it_cannot_use(tmp_path):
    start, other = tmp_path / "a", tmp_path / "b"
    start.mkdir()
    other.mkdir()
    check_reference(True, 0.03, str(start), str(start))  # the start model itself: what TRL uses
    check_reference(True, 0.0, str(start), str(other))  # no KL term
    check_reference(False, 0.03, str(start), str(other))  # full fine-tuning loads the reference
    with pytest.raises(RecipeError, match="model.reference: with model.lora"):
        check_reference(True, 0.03, str(start), str(other))
