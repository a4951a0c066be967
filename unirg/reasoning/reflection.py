"""Med-R2 reflection as a second generation pass: draft, a reflection turn, then the final report.

Pass 1 drafts a completion in the reasoning format (a <think> block with perception and diagnosis, then a
report). Pass 2 appends a user turn asking the policy to re-check each perceived finding against the image
and to write the final report, and the policy answers in a final assistant turn. Where Med-R2 reflects
inside one completion, this makes reflection a turn of its own, so the final report can differ from the
draft and the change can be measured (`reflection/changed_rate`, CheXpert-14 F1 of draft and final).

GRPO trains on one completion per rollout: draft tokens + reflection-turn tokens + final tokens. The
reflection-turn tokens were not sampled from the policy, so they carry mask 0 in TRL's `tool_mask` (the
mask TRL 1.16 applies to tool results in multi-turn rollouts: loss, entropy and KL are averaged over
mask 1 only); old-policy and reference log-probabilities are computed by TRL on the same sequence.
Rewards score the final turn only (`rewards.adapter.final_turn`). Evaluation runs the same two passes
greedily. Each pass may use `rollout.max_new_tokens`; TRL's `completions/*_length` metrics count both
passes and the reflection turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from unirg.errors import UnirgError


def reflection_request(checklist: Any = None) -> str:
    """The user turn of pass 2: re-check each perceived finding, region by region in the checklist's order."""
    from unirg.reasoning.knowledge import load_checklist

    regions = ", ".join(region.name for region in (checklist or load_checklist()).walked_regions)
    return (f"Reflect: re-check each finding you perceived against the image, region by region ({regions}), "
            "and correct what is wrong or missing. Then write the final answer: <think> </think>, then the report.")


# The user turn of pass 2, from the shipped checklist; fixed, so every rollout shares its tokens.
REFLECTION_REQUEST = reflection_request()


# Rows the held-out table of a reasoning-format policy adds (see `evaluate_reasoning`).
REASONING_METRICS = ("consistency", "reflection_changed_rate", "reflection_f1_draft", "reflection_f1_final")


def reflection_messages(draft: str, final: str) -> list[dict[str, str]]:
    """A two-pass completion as TRL's reward functions receive it: draft turn, reflection request, final turn."""
    return [{"role": "assistant", "content": draft}, {"role": "user", "content": REFLECTION_REQUEST},
            {"role": "assistant", "content": final}]


@dataclass(frozen=True)
class ReflectionTurn:
    """Token ids between the draft and the final turn: the draft's turn end, then the reflection request
    and the assistant header of the final turn, as the chat template writes them."""

    end_of_turn: int
    request: tuple[int, ...]

    def second_prompt(self, prompt_ids: Sequence[int], draft_ids: Sequence[int]) -> tuple[list[int], int]:
        """Pass-2 input (prompt + draft + reflection turn) and how many tokens were inserted (mask 0).

        A draft cut at the token budget has no turn end: one is inserted, and it is masked too.
        """
        inserted = ([] if draft_ids and draft_ids[-1] == self.end_of_turn else [self.end_of_turn]) + list(self.request)
        return [*prompt_ids, *draft_ids, *inserted], len(inserted)


def reflection_turn(processing_class: Any, end_tokens: Sequence[str] = ()) -> ReflectionTurn:
    """Render the reflection turn with the model's chat template and tokenize it.

    The text between the end of an assistant turn and the generation prompt after the reflection request
    is cut from two renderings of a short conversation (with and without the request), so any Qwen-style
    template works; the end-of-turn token is the tokenizer's EOS or one of `end_tokens`.
    """
    tokenizer = getattr(processing_class, "tokenizer", processing_class)
    base = [{"role": "user", "content": "study"}, {"role": "assistant", "content": "draft"}]
    before = processing_class.apply_chat_template(base, tokenize=False)
    after = processing_class.apply_chat_template(
        [*base, {"role": "user", "content": REFLECTION_REQUEST}], tokenize=False, add_generation_prompt=True)
    if not after.startswith(before):
        raise UnirgError("rollout.reflection: the chat template renders earlier turns differently once a "
                         "reflection turn follows; two-pass generation needs a template that appends turns")
    candidates = [t for t in (tokenizer.eos_token, *end_tokens) if t]
    ends = [(before.rfind(token), token) for token in candidates if before.rfind(token) >= 0]
    if not ends:
        raise UnirgError(f"rollout.reflection: none of the end-of-turn tokens {candidates} appears in the chat "
                         "template's assistant turn; cannot tell where the draft turn ends")
    position, token = max(ends)
    request = tokenizer(after[position + len(token):], add_special_tokens=False)["input_ids"]
    return ReflectionTurn(end_of_turn=tokenizer.convert_tokens_to_ids(token), request=tuple(request))


def join_passes(draft_ids: Sequence[int], inserted: int, final_ids: Sequence[int], turn: ReflectionTurn,
                draft_logps: Sequence[float] | None = None,
                final_logps: Sequence[float] | None = None) -> tuple[list[int], list[int], list[float] | None]:
    """The trained completion (draft + reflection turn + final), its mask (0 on the reflection turn) and
    sampling log-probabilities (0.0 on the reflection turn, where the mask ignores them)."""
    middle = ([turn.end_of_turn] if inserted > len(turn.request) else []) + list(turn.request)
    ids = [*draft_ids, *middle, *final_ids]
    mask = [1] * len(draft_ids) + [0] * len(middle) + [1] * len(final_ids)
    logps = None
    if draft_logps is not None and final_logps is not None:
        logps = [*draft_logps, *([0.0] * len(middle)), *final_logps]
    return ids, mask, logps


def extend_token_fields(fields: dict[str, Any], lengths: Sequence[int]) -> dict[str, Any]:
    """Multimodal processor fields for the longer pass-2 prompts: per-token lists (mm_token_type_ids)
    padded with 0 (text) to each new length; image tensors are unchanged (same images, same order)."""
    extended: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, list) and value and isinstance(value[0], list):
            extended[key] = [row + [0] * (length - len(row)) for row, length in zip(value, lengths, strict=True)]
        elif hasattr(value, "dim") and key.endswith("token_type_ids"):
            extended[key] = [row.tolist() + [0] * (length - row.shape[-1]) for row, length in
                             zip(value, lengths, strict=True)]
        else:
            extended[key] = value
    return extended


def _normalized(text: str) -> str:
    return " ".join(text.lower().split())


def reflection_metrics(drafts: Sequence[str], finals: Sequence[str], references: Sequence[str],
                       reference_labels: Sequence | None = None) -> dict[str, float]:
    """How often reflection changed the report, and CheXpert-14 micro-F1 of the draft and final reports.

    `drafts` and `finals` are completion texts; each is parsed and only its report part is compared and
    labeled (the project's rule-based labeler); references are labeled unless their labels are given.
    """
    from rewards.clinical import corpus_f1, positives, reference_labels_for
    from rewards.labeler import label_report
    from unirg.prompts.parser import parse_completion

    draft_reports = [parse_completion(text).report for text in drafts]
    final_reports = [parse_completion(text).report for text in finals]
    targets = [positives(labels) for labels in reference_labels_for(list(references), reference_labels)]
    changed = [_normalized(d) != _normalized(f) for d, f in zip(draft_reports, final_reports, strict=True)]
    return {
        "changed_rate": sum(changed) / len(changed) if changed else 0.0,
        "f1_draft": corpus_f1([positives(label_report(r)) for r in draft_reports], targets)["micro"],
        "f1_final": corpus_f1([positives(label_report(r)) for r in final_reports], targets)["micro"],
    }


class ReflectionTrainerMixin:
    """GRPOTrainer mixin: two-pass rollouts when `reflection` is on (see the module docstring).

    Pass 2 goes through TRL's own `_generate_single_turn` with the pass-1 tokens appended to each prompt,
    the way TRL's tool loop continues a conversation, so it uses the same generation settings.
    """

    reflection: bool = False
    _reflection_batch: list[dict[str, Any]] | None = None
    _reflection_passes: tuple | None = None

    @property
    def _reflection_turn(self) -> ReflectionTurn:
        return _cached_turn(self.processing_class)

    def _generate_and_score_completions(self, inputs):
        # The references of this batch, for the draft-vs-final metrics logged from `_generate`.
        self._reflection_batch = inputs
        try:
            return super()._generate_and_score_completions(inputs)
        finally:
            self._reflection_batch = None

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        draft_ids, draft_logps = super()._generate_single_turn(prompt_ids, images, multimodal_fields,
                                                               num_generations, has_tool_images)
        if not self.reflection:
            return draft_ids, draft_logps
        if self.tools or self.rollout_func is not None:
            raise UnirgError("rollout.reflection cannot be combined with tool calling or a rollout_func")
        turn = self._reflection_turn
        second, inserted = zip(*(turn.second_prompt(p, d) for p, d in zip(prompt_ids, draft_ids, strict=True)),
                               strict=True)
        fields = extend_token_fields(multimodal_fields, [len(ids) for ids in second])
        # Each pass-2 prompt already carries its own draft: one completion each.
        final_ids, final_logps = super()._generate_single_turn(list(second), images, fields, 1, has_tool_images)
        completions, masks, logps = [], [], []
        for i, (draft, count, final) in enumerate(zip(draft_ids, inserted, final_ids, strict=True)):
            ids, mask, lp = join_passes(draft, count, final, turn,
                                        draft_logps[i] if draft_logps is not None else None,
                                        final_logps[i] if final_logps is not None else None)
            completions.append(ids)
            masks.append(mask)
            logps.append(lp)
        self._reflection_passes = (list(draft_ids), list(final_ids), masks)
        return completions, (logps if draft_logps is not None else None)

    def _generate(self, prompts):
        outputs = list(super()._generate(prompts))
        if not self.reflection:
            return tuple(outputs)
        draft_ids, final_ids, masks = self._reflection_passes
        self._reflection_passes = None
        decode = self.processing_class.batch_decode
        drafts = decode(draft_ids, skip_special_tokens=True)
        finals = decode(final_ids, skip_special_tokens=True)
        # outputs: prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields, images, tool_images
        outputs[2] = masks
        outputs[3] = [reflection_messages(d, f) for d, f in zip(drafts, finals, strict=True)]
        rows = self._reflection_batch or []
        if len(rows) == len(drafts) and all("reference" in row for row in rows):
            metrics = reflection_metrics(drafts, finals, [row["reference"] for row in rows],
                                         [row.get("reference_labels") for row in rows])
            mode = "train" if self.model.training else "eval"
            for name, value in metrics.items():
                self._metrics[mode][f"reflection/{name}"].append(value)
        return tuple(outputs)


@lru_cache(maxsize=8)
def _cached_turn(processing_class: Any) -> ReflectionTurn:
    return reflection_turn(processing_class)


def generate_with_reflection(generator: Any, examples: Sequence[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Greedy draft and final completions of `examples` with an `HFGenerator` (evaluation's two passes).

    Pass 2 feeds each prompt's token ids + the draft's ids + the reflection turn back to `generate`, the
    same sequence GRPO's rollouts build, with the prompt's images.
    """
    import torch

    from unirg.evaluation.generate import _chat_text

    processor, model = generator.processor, generator.model
    tokenizer = processor.tokenizer
    turn = _cached_turn(processor)
    texts, images = [], []
    for example in examples:
        text, study_images = _chat_text(processor, example)
        texts.append(text)
        images.extend(study_images)
    inputs = processor(text=texts, images=images or None, return_tensors="pt", padding=True)
    pad = tokenizer.pad_token_id
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=generator.max_new_tokens, do_sample=False)
    width = inputs["input_ids"].shape[1]
    prompts = [row[mask.bool()].tolist() for row, mask in zip(inputs["input_ids"], inputs["attention_mask"],
                                                              strict=True)]
    drafts_ids = [_until_end(row[width:].tolist(), turn.end_of_turn, pad) for row in generated]
    second = [turn.second_prompt(p, d)[0] for p, d in zip(prompts, drafts_ids, strict=True)]
    longest = max(len(ids) for ids in second)
    # Left padding, as in pass 1, so every prompt ends where generation continues.
    input_ids = torch.tensor([[pad] * (longest - len(ids)) + ids for ids in second])
    attention = torch.tensor([[0] * (longest - len(ids)) + [1] * len(ids) for ids in second])
    extra = {key: value for key, value in inputs.items() if key not in ("input_ids", "attention_mask")}
    if "mm_token_type_ids" in extra:
        types = extra["mm_token_type_ids"]
        extra["mm_token_type_ids"] = torch.stack([
            torch.cat([types.new_zeros(longest - len(ids)), types[i][inputs["attention_mask"][i].bool()],
                       types.new_zeros(len(ids) - len(prompts[i]))]) for i, ids in enumerate(second)])
    with torch.no_grad():
        generated = model.generate(input_ids=input_ids, attention_mask=attention, **extra,
                                   max_new_tokens=generator.max_new_tokens, do_sample=False)
    finals_ids = [_until_end(row[longest:].tolist(), turn.end_of_turn, pad) for row in generated]
    decode = tokenizer.batch_decode
    return decode(drafts_ids, skip_special_tokens=True), decode(finals_ids, skip_special_tokens=True)


def _until_end(ids: list[int], end_of_turn: int, pad: int | None) -> list[int]:
    """Generated ids up to and including the first end-of-turn token (padding after it dropped)."""
    if end_of_turn in ids:
        return ids[:ids.index(end_of_turn) + 1]
    return [token for token in ids if token != pad]


def two_pass_completions(model_path: str, dataset, recipe: Any, batch_size: int = 8) -> tuple[list[str], list[str]]:
    """Greedy drafts and final completions (after the reflection turn) for every row of `dataset`."""
    from unirg.evaluation.generate import HFGenerator

    generator = HFGenerator(model_path, recipe.rollout.max_new_tokens, recipe.model.trust_remote_code)
    drafts: list[str] = []
    finals: list[str] = []
    for start in range(0, len(dataset), batch_size):
        draft, final = generate_with_reflection(generator, [dataset[i] for i in
                                                            range(start, min(start + batch_size, len(dataset)))])
        drafts += draft
        finals += final
    return drafts, finals


def evaluate_reasoning(model_path: str, dataset, recipe: Any, batch_size: int = 8) -> dict[str, dict[str, Any]]:
    """The held-out table of a reasoning-format policy: one greedy pass, or two with `rollout.reflection`.

    The `findings_impression` setting gains `consistency` (mean agreement of the findings in the <think>
    block with the report, over completions that have one) and, with reflection, `reflection_changed_rate`,
    `reflection_f1_draft` and `reflection_f1_final` (CheXpert-14 micro-F1 of the draft and final reports).
    The table scores the final reports.
    """
    from rewards.clinical import consistency
    from unirg.evaluation.generate import generate_reports
    from unirg.evaluation.metrics import evaluate_settings, mean_scored
    from unirg.prompts.parser import parse_completion

    extra: dict[str, Any] = {}
    if recipe.rollout.reflection:
        drafts, completions = two_pass_completions(model_path, dataset, recipe, batch_size)
        metrics = reflection_metrics(drafts, completions, dataset["reference"], dataset["reference_labels"])
        extra.update({f"reflection_{name}": value for name, value in metrics.items()})
    else:
        completions = generate_reports(model_path, dataset, max_new_tokens=recipe.rollout.max_new_tokens,
                                       batch_size=batch_size, trust_remote_code=recipe.model.trust_remote_code,
                                       progress=recipe.logging.progress)
    parsed = [parse_completion(text) for text in completions]
    extra["consistency"] = mean_scored(consistency([p.reasoning for p in parsed], [p.report for p in parsed]))
    settings = evaluate_settings(completions, dataset["reference_findings"], dataset["reference_impression"],
                                 dataset["reference_labels"])
    settings["findings_impression"].update(extra)
    return settings
