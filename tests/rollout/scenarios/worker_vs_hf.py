"""Scenario: a Ray vLLM rollout worker matches HF greedy generation before and after a weight sync (tied head)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from common import build_model, emit, hf_greedy, perturb, prompts, requests
from safetensors.torch import load_file

from unirg.rollout.config import ClusterConfig, RolloutConfig
from unirg.rollout.generation import RolloutPool, add_tied_head, engine_kwargs, write_weights

MAX_NEW = 12


def vllm_greedy(pool: RolloutPool, rows: list[dict]) -> list[dict]:
    results = pool.generate(requests(rows), {"n": 1, "temperature": 0.0, "max_tokens": MAX_NEW, "logprobs": 0})
    return [{"token_ids": r["completions"][0]["token_ids"],
             "logprobs": [lp[0] for lp in r["completions"][0]["logprobs"]]} for r in results]


def main(work: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = build_model(work / "model")
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
    rows = prompts(processor)

    rollout = RolloutConfig(backend="vllm_ray", num_workers=1, dtype="float32", max_model_len=512)
    cluster = ClusterConfig(num_cpus=2)
    pool = RolloutPool(str(path), engine_kwargs(rollout, cluster), rollout, cluster)
    before = {"hf": hf_greedy(model, rows, MAX_NEW), "vllm": vllm_greedy(pool, rows)}

    # A training step's worth of change, then the CPU weight sync exactly as the trainer does it.
    perturb(model, seed=7, scale=0.3)
    state = {name: p.detach().clone() for name, p in model.named_parameters()}
    add_tied_head(state, model)
    synced = write_weights(state, work / "sync", version=1)
    pool.sync_from_file(str(synced), 1)
    after = {"hf": hf_greedy(model, rows, MAX_NEW), "vllm": vllm_greedy(pool, rows)}

    # Negative control: the same weights without the explicit lm_head.weight leave vLLM's head stale.
    perturb(model, seed=8, scale=0.3)
    stale = {name: p.detach().clone() for name, p in model.named_parameters()}
    pool.sync_from_file(str(write_weights(stale, work / "sync", version=2)), 2)
    untied = {"hf": hf_greedy(model, rows, MAX_NEW), "vllm": vllm_greedy(pool, rows)}

    emit({"before": before, "after": after, "untied": untied,
          "tied_in_model": model.lm_head.weight is model.get_input_embeddings().weight,
          "lm_head_written": "lm_head.weight" in load_file(synced),
          "head_in_named_parameters": "lm_head.weight" in dict(model.named_parameters())})
    pool.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
