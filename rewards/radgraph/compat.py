"""Lets radgraph 0.1.18 run beside transformers 5 by restoring two tokenizer methods it calls.

radgraph 0.1.18 vendors AllenNLP code written for transformers 4: it calls `tokenizer.encode_plus(...)`
and `tokenizer.build_inputs_with_special_tokens(ids)`, which transformers 5 removed from its
tokenizers-backed classes. Both are added back, only when missing, with transformers 4's meaning.
Delete this module once radgraph supports transformers 5.
"""

from __future__ import annotations


def _encode_plus(self, text, text_pair=None, **kwargs):
    # transformers 4: encode_plus(text, text_pair) == __call__ on a single example.
    return self(text, text_pair, **kwargs)


def _special_token_frame(tokenizer, pair: bool) -> tuple[list[int], ...]:
    """The special ids the tokenizer puts around (and between) sequences, read off a probe encoding."""
    cache = tokenizer.__dict__.setdefault("_unirg_special_frames", {})
    if pair not in cache:
        first = tokenizer.encode("a", add_special_tokens=False)
        second = tokenizer.encode("b", add_special_tokens=False)
        full = tokenizer("a", "b" if pair else None, add_special_tokens=True)["input_ids"]
        start = _find(full, first, 0)
        before, after_first = full[:start], start + len(first)
        if pair:
            middle_start = _find(full, second, after_first)
            cache[pair] = (before, full[after_first:middle_start], full[middle_start + len(second):])
        else:
            cache[pair] = (before, full[after_first:])
    return cache[pair]


def _find(sequence: list[int], part: list[int], start: int) -> int:
    for index in range(start, len(sequence) - len(part) + 1):
        if sequence[index:index + len(part)] == part:
            return index
    raise ValueError("cannot locate the probe tokens inside the tokenizer's special-token frame")


def _build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
    if token_ids_1 is None:
        before, after = _special_token_frame(self, pair=False)
        return before + list(token_ids_0) + after
    before, between, after = _special_token_frame(self, pair=True)
    return before + list(token_ids_0) + between + list(token_ids_1) + after


def patch_transformers_for_radgraph() -> None:
    """Add the two transformers-4 tokenizer methods radgraph 0.1.18 needs, where they are missing."""
    from transformers import PreTrainedTokenizerBase

    if not hasattr(PreTrainedTokenizerBase, "encode_plus"):
        PreTrainedTokenizerBase.encode_plus = _encode_plus
    if not hasattr(PreTrainedTokenizerBase, "build_inputs_with_special_tokens"):
        PreTrainedTokenizerBase.build_inputs_with_special_tokens = _build_inputs_with_special_tokens
