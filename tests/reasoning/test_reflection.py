"""Two-pass reflection rollouts: the reflection turn's tokens carry mask 0 and the loss gets no gradient
through them, the rewards see the final turn's report only, and the recipe refuses what is not supported.

The trainer tests build the tiny model and a ReflectionGRPOTrainer through `build_trainer` (the `unirg rl`
path) and run one real generation batch.
"""

from __future__ import annotations

import pytest
import torch

from unirg.errors import RecipeError
from unirg.prompts.parser import parse_completion
from unirg.reasoning.reflection import (
    REFLECTION_REQUEST,
    ReflectionTurn,
    join_passes,
    reflection_metrics,
    reflection_turn,
)
from unirg.recipe import load_recipe

RECORDER = '''
class Recorder:
    """Scores 0 and keeps what it was given."""

    def __init__(self):
        self.seen = []

    def score(self, completions, reports, reasoning):
        self.seen.append({"completions": list(completions), "reports": list(reports),
                          "reasoning": list(reasoning)})
        return [0.0] * len(reports)
'''


def test_second_prompt_closes_a_truncated_draft_and_join_masks_exactly_the_inserted_tokens():
    turn = ReflectionTurn(end_of_turn=2, request=(7, 8, 9))
    ids, inserted = turn.second_prompt([1, 1], [5, 6, 2])
    assert ids == [1, 1, 5, 6, 2, 7, 8, 9] and inserted == 3
    ids, inserted = turn.second_prompt([1, 1], [5, 6])  # cut at the token budget: no turn end yet
    assert ids == [1, 1, 5, 6, 2, 7, 8, 9] and inserted == 4
    completion, mask, logps = join_passes([5, 6], inserted, [4, 2], turn, [-0.1, -0.2], [-0.3, -0.4])
    assert completion == [5, 6, 2, 7, 8, 9, 4, 2]
    assert mask == [1, 1, 0, 0, 0, 0, 1, 1]
    assert logps == [-0.1, -0.2, 0.0, 0.0, 0.0, 0.0, -0.3, -0.4]


def test_reflection_metrics_compare_the_reports_only():
    draft = "<think>Perception: pleura: effusion.</think>\nFindings: Small right pleural effusion.\nImpression: Effusion."
    same = "<think>Reflection: effusion confirmed, no pneumothorax.</think>\nFindings: Small right pleural effusion." \
           "\nImpression: Effusion."
    fixed = "<think>Reflection: no effusion.</think>\nFindings: The lungs are clear.\nImpression: Normal."
    metrics = reflection_metrics([draft, draft], [same, fixed], ["Clear lungs.", "Clear lungs."])
    # Only the second report changed (the first final's reasoning differs, its report does not).
    assert metrics["changed_rate"] == pytest.approx(0.5)
    # References are "No Finding": the drafts' effusions miss both; the corrected final gets one of two.
    assert metrics["f1_draft"] == 0.0 and metrics["f1_final"] == pytest.approx(0.5)
    metrics = reflection_metrics([draft], [fixed], ["Right pleural effusion."])
    assert metrics["f1_draft"] == 1.0 and metrics["f1_final"] == 0.0


@pytest.mark.parametrize("override, field", [
    (["prompt.format=unirg"], "prompt.format"),
    (["rollout.backend=vllm_colocate"], "rollout.backend"),
    (["rollout.backend=vllm_ray"], "rollout.backend"),
])
def test_recipe_refuses_reflection_where_it_is_not_supported(override, field):
    with pytest.raises(RecipeError, match=field):
        load_recipe("demo-medr2", override)


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    from unirg.data import load_splits
    from unirg.models.loading import resolve_model_path
    from unirg.training.grpo import ReflectionGRPOTrainer, build_trainer

    run_dir = tmp_path_factory.mktemp("reflection")
    (run_dir / "recorder.py").write_text(RECORDER)
    recipe = load_recipe("demo-medr2", [
        "sft=null", "evaluate=false", "grpo.max_steps=1", "data.synthetic.n_train=4", "data.synthetic.n_eval=0",
        "grpo.per_device_train_batch_size=4", "grpo.num_generations=2", "rollout.max_new_tokens=12",
        "logging.progress=false", "logging.tensorboard=false", f"rewards.1.name={run_dir / 'recorder.py'}:Recorder"])
    splits = load_splits(recipe.data, recipe.prompt, run_dir)
    model_path = resolve_model_path(recipe.model, run_dir, corpus=list(splits.train["reference"]))
    built = build_trainer(recipe, run_dir / "grpo", splits.train, model_path)
    assert isinstance(built, ReflectionGRPOTrainer)
    return built, splits.train


@pytest.fixture(scope="module")
def batch(trainer):
    grpo, train = trainer
    torch.manual_seed(0)
    grpo.model.train()  # as inside `train()`: metrics go to the train log
    rows = [train[i // 2] for i in range(4)]  # two prompts, two generations each, as TRL's sampler repeats them
    return grpo._generate_and_score_completions(rows)


def test_reflection_turn_renders_the_request_between_the_turns(trainer):
    grpo, _ = trainer
    turn = reflection_turn(grpo.processing_class)
    tokenizer = grpo.processing_class.tokenizer
    assert turn.end_of_turn == tokenizer.convert_tokens_to_ids("<|im_end|>")
    text = tokenizer.decode(list(turn.request))
    assert text == f"\n<|im_start|>user\n{REFLECTION_REQUEST}<|im_end|>\n<|im_start|>assistant\n"


def test_the_reflection_turn_carries_mask_zero_and_nothing_else_does(trainer, batch):
    grpo, _ = trainer
    turn = reflection_turn(grpo.processing_class)
    mask, ids, attention = batch["tool_mask"], batch["completion_ids"], batch["completion_mask"]
    assert mask.shape == ids.shape
    for row in range(ids.shape[0]):
        length = int(attention[row].sum())
        zeros = [j for j in range(length) if mask[row, j] == 0]
        # One contiguous span: the reflection turn (with the end token a truncated draft lacked).
        assert zeros and zeros == list(range(zeros[0], zeros[-1] + 1))
        span = ids[row, zeros[0]:zeros[-1] + 1].tolist()
        assert span[-len(turn.request):] == list(turn.request)
        assert len(span) - len(turn.request) in (0, 1)
        # Draft before it and final turn after it are trained on.
        assert zeros[0] > 0 and zeros[-1] < length - 1


def test_rewards_receive_the_final_turn_without_its_reasoning(trainer, batch):
    grpo, _ = trainer
    recorder = next(f.plugin for f in grpo.reward_funcs if type(f.plugin).__name__ == "Recorder")
    seen = recorder.seen[-1]
    assert len(seen["reports"]) == 4
    finals = grpo.processing_class.batch_decode(
        [ids[mask.bool() & (torch.cumsum(1 - mask, 0) > 0) & attn.bool()].tolist() for ids, mask, attn in
         zip(batch["completion_ids"], batch["tool_mask"], batch["completion_mask"], strict=True)],
        skip_special_tokens=True)
    for completion, report, reasoning, final in zip(seen["completions"], seen["reports"], seen["reasoning"], finals,
                                                    strict=True):
        assert completion == final  # the final turn only: neither the draft nor the reflection request
        assert REFLECTION_REQUEST not in completion
        parsed = parse_completion(completion)
        assert report == parsed.report and reasoning == parsed.reasoning
        assert "<think>" not in report and "</think>" not in report


DRAFT = ("<think>\nPerception: pleura: small right pleural effusion.\nDiagnosis: pleural effusion.\n</think>\n"
         "Findings: Small right pleural effusion.\nImpression: Right pleural effusion.")
FINAL = ("<think>\nReflection: the costophrenic angles are sharp, nothing in the pleura.\n</think>\n"
         "Findings: The lungs are clear.\nImpression: No acute process.")


def test_rewards_score_the_final_report_of_a_scripted_rollout(trainer, monkeypatch):
    """Known draft and final texts: the reward gets exactly the final turn, its report without reasoning."""
    from trl import GRPOTrainer

    grpo, train = trainer
    tokenizer = grpo.processing_class.tokenizer
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    turn = reflection_turn(grpo.processing_class)
    calls = []

    def scripted(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        second_pass = all(list(ids[-len(turn.request):]) == list(turn.request) for ids in prompt_ids)
        calls.append(second_pass)
        text = FINAL if second_pass else DRAFT
        return [tokenizer(text, add_special_tokens=False)["input_ids"] + [end] for _ in prompt_ids], None

    monkeypatch.setattr(GRPOTrainer, "_generate_single_turn", scripted)
    grpo.model.train()
    out = grpo._generate_and_score_completions([train[i // 2] for i in range(4)])
    assert calls == [False, True]
    seen = next(f.plugin for f in grpo.reward_funcs if type(f.plugin).__name__ == "Recorder").seen[-1]
    final = parse_completion(tokenizer.decode(tokenizer(FINAL, add_special_tokens=False)["input_ids"]))
    assert seen["reports"] == [final.report] * 4
    assert seen["reasoning"] == [final.reasoning] * 4
    assert final.report == "The lungs are clear. No acute process."
    for completion in seen["completions"]:
        assert "effusion" not in completion and REFLECTION_REQUEST not in completion  # no draft, no request
        assert completion == tokenizer.decode(tokenizer(FINAL, add_special_tokens=False)["input_ids"])
    # The trained sequence is draft + reflection turn + final, masked 0 exactly on the reflection turn.
    draft_ids = tokenizer(DRAFT, add_special_tokens=False)["input_ids"] + [end]
    assert out["completion_ids"][0, :len(draft_ids)].tolist() == draft_ids
    mask = out["tool_mask"][0].tolist()
    assert mask[:len(draft_ids)] == [1] * len(draft_ids)
    assert mask[len(draft_ids):len(draft_ids) + len(turn.request)] == [0] * len(turn.request)
    assert set(mask[len(draft_ids) + len(turn.request):]) == {1}
    # The draft said effusion, the final report does not: reflection changed every report.
    assert grpo._metrics["train"]["reflection/changed_rate"][-1] == 1.0


def test_reflection_metrics_are_logged(trainer, batch):
    grpo, _ = trainer
    for name in ("changed_rate", "f1_draft", "f1_final"):
        values = grpo._metrics["train"][f"reflection/{name}"]
        assert values and 0.0 <= values[-1] <= 1.0


def test_loss_has_no_gradient_through_the_reflection_turn(trainer, batch):
    """The hidden states that predict reflection-turn tokens get exactly zero gradient; the others do not.

    The language model's final norm output at position t feeds only the log-probability of token t + 1
    (TRL 1.16 computes it with a fused head), so its gradient there says whether that token is in the loss.
    """
    grpo, _ = trainer
    inputs = dict(batch)
    # Fixed non-zero advantages: a group whose rewards tie would give zero gradient everywhere.
    inputs["advantages"] = torch.tensor([1.0, -1.0, 0.5, -0.5])
    captured = []

    def keep(_module, _args, output):
        output.retain_grad()
        captured.append(output)

    model = grpo.model
    model.train()
    model.zero_grad()
    grpo.current_gradient_accumulation_steps = 1  # set by the Trainer's loop, which this test does not run
    norm = next(module for name, module in model.named_modules() if name.endswith("language_model.norm"))
    handle = norm.register_forward_hook(keep)
    try:
        loss = grpo.compute_loss(model, inputs)
        loss.backward()
    finally:
        handle.remove()
    hidden = captured[-1]  # [batch, prompt + completion, hidden]
    width = inputs["completion_ids"].shape[1]
    # Position P + j - 1 predicts completion token j.
    grad = hidden.grad[:, -(width + 1):-1, :].abs().sum(-1)  # [batch, completion]
    trained = (inputs["completion_mask"] * inputs["tool_mask"]).bool()
    masked = inputs["completion_mask"].bool() & ~inputs["tool_mask"].bool()
    assert masked.any() and trained.any()
    assert torch.all(grad[masked] == 0), "the reflection turn's tokens reach the loss"
    assert torch.all(grad[trained] > 0), "draft or final tokens get no gradient"


def test_heldout_evaluation_scores_the_answer_after_reflection(tmp_path, monkeypatch):
    # Checkpoint selection and the run's held-out table go through evaluate_dataset: with reflection on, it
    # must score the final answers, and the single pass (reflection off) the drafts.
    from unirg.data import load_splits
    from unirg.evaluation.heldout import evaluate_dataset, score_completions
    from unirg.models.loading import resolve_model_path
    from unirg.reasoning import reflection

    overrides = ["data.synthetic.n_train=4", "data.synthetic.n_eval=3", "rollout.max_new_tokens=10",
                 "logging.progress=false"]
    recipe = load_recipe("demo-medr2", overrides)
    splits = load_splits(recipe.data, recipe.prompt, tmp_path)
    model_path = resolve_model_path(recipe.model, tmp_path, corpus=list(splits.train["reference"]))
    drafts, finals = reflection.two_pass_completions(model_path, splits.eval, recipe)
    assert evaluate_dataset(model_path, splits.eval, recipe) == score_completions(finals, splits.eval)
    single = load_recipe("demo-medr2", [*overrides, "rollout.reflection=false"])
    assert evaluate_dataset(model_path, splits.eval, single) == score_completions(drafts, splits.eval)

    # An untrained model writes the same text in both passes; distinct answers show which pass is scored.
    draft = "<think>Perception: clear.</think>\nFindings: No pleural effusion.\nImpression: Normal."
    final = "<think>Perception: fluid.</think>\nFindings: Large left pleural effusion.\nImpression: Effusion."
    monkeypatch.setattr(reflection, "two_pass_completions", lambda *_, **__: ([draft] * 3, [final] * 3))
    table = evaluate_dataset(model_path, splits.eval, recipe)
    assert table == score_completions([final] * 3, splits.eval) != score_completions([draft] * 3, splits.eval)
