"""The KL reference of GRPO: which policy `model.reference` names, and refusing what TRL cannot honour.

With full fine-tuning TRL loads the reference from the policy config's `_name_or_path`, which
`build_trainer` points at `model.reference` (default: the start policy). With LoRA, TRL has no
reference model at all: it disables the adapter, so the reference is always the model the adapter was
put on, i.e. the start policy. A LoRA recipe whose `model.reference` names anything else would be
silently measured against the wrong policy, so it is refused here. UniRG step 2 with LoRA therefore
starts from a merged step-1 model (adapter folded into the base weights, a full model folder) with a
fresh adapter, and leaves `model.reference` unset or pointing at that same folder.
"""

from __future__ import annotations

from pathlib import Path

from unirg.errors import RecipeError


def _same_model(a: str, b: str) -> bool:
    left, right = Path(a).expanduser(), Path(b).expanduser()
    if left.exists() and right.exists():
        return left.resolve() == right.resolve()
    return a == b


def check_reference(lora: bool, beta: float, start: str, reference: str | None) -> None:
    """Stop when the recipe's KL reference cannot be the one TRL uses (LoRA with another reference)."""
    if not lora or not beta or reference is None or _same_model(start, reference):
        return
    raise RecipeError(
        f"model.reference: with model.lora, TRL measures the KL term (grpo.beta={beta}) against the start "
        f"model with the adapter disabled ({start}), not against {reference}. Start from the reference "
        "instead (model.name_or_path set to it, a full model folder: merge a step-1 LoRA adapter into its base "
        "first), drop model.reference, or train without model.lora")
