"""Check the engine pool's collective weight sync end to end, as one row of results: vLLM agrees with HF after each sync.

`nccl_sync_check` is the engine-pool row of `make gpu-check` (2+ GPUs: the trainer on one, an engine on each
other, up to two); the CPU tests run the same `collective_sync_check` over gloo. The row says whether:
- before a sync, the engines' greedy completions score far from the changed policy (the change is visible);
- after a sync, every engine's greedy completions score the same under the policy (teacher forcing) as the
  engine says, within the dtype's tolerance, and every engine reports the new weights version;
- after an engine is killed during generation, it is restarted and takes no rollouts until the next sync
  (its prompts go to an engine with the latest weights; with one engine generation refuses with
  `WeightsOutdated`), and that sync rebuilds the transfer group on every member (a new port) and reaches
  the restarted engine: parity again on every engine.

    python -m unirg.rollout.sync_check MODEL_DIR --backend nccl

prints `RESULT {json}` and exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from unirg.rollout.config import ClusterConfig, RolloutConfig

# Largest |vLLM - HF| per-token logprob accepted, by dtype (float32 measured about 4e-5 on CPU).
LOGPROB_TOLERANCE = {"float32": 1e-3, "bfloat16": 5e-2, "float16": 2e-2}
# Before a sync the engines must be at least this many tolerances from the changed policy.
STALE_FACTOR = 10.0


def _prompts(processor: Any, count: int) -> list[dict[str, Any]]:
    """`count` chat prompts with one synthetic image each (sizes differ, so their image-pad runs differ)."""
    from PIL import Image

    rows = []
    for index in range(count):
        image = Image.new("RGB", (112 + 28 * (index % 3), 112), ((50 * index) % 256, 120, 200 - 20 * (index % 8)))
        messages = [{"role": "user", "content": [
            {"type": "image"}, {"type": "text", "text": f"Describe chest X-ray number {index}."}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[text], images=[image], return_tensors="pt")
        rows.append({"inputs": inputs, "request": {"prompt_ids": inputs["input_ids"][0].tolist(), "images": [image]}})
    return rows


def _teacher_forced(model: Any, inputs: Any, completion_ids: list[int], blocked: list[int]) -> list[float]:
    """The policy's logprob of each completion token after the prompt, with the engine's blocked tokens masked."""
    import torch

    device = next(model.parameters()).device
    ids = inputs["input_ids"].to(device)
    completion = torch.tensor([completion_ids], dtype=ids.dtype, device=device)
    full = {key: value.to(device) if torch.is_tensor(value) else value for key, value in inputs.items()}
    for key, value in list(full.items()):
        # Per-token side inputs (transformers 5's mm_token_type_ids) extend as text tokens.
        if key != "input_ids" and torch.is_tensor(value) and value.shape == ids.shape:
            full[key] = torch.cat([value, torch.zeros_like(completion, dtype=value.dtype)], dim=1)
    full["input_ids"] = torch.cat([ids, completion], dim=1)
    full["attention_mask"] = torch.ones_like(full["input_ids"])
    with torch.no_grad():
        logits = model(**full).logits[0].float()  # [prompt + completion, vocab]
    logits[:, blocked] = float("-inf")  # the engine samples with these biased away (PLACEHOLDER_BIAS)
    logprobs = torch.log_softmax(logits[ids.shape[1] - 1:-1], -1)  # position i predicts token i + 1
    return [logprobs[i, token].item() for i, token in enumerate(completion_ids)]


def _parity(pool: Any, model: Any, rows: list[dict[str, Any]], max_new_tokens: int, blocked: list[int]) -> float:
    """Largest |engine - policy| logprob over the engines' greedy completions of `rows` (spread over engines)."""
    from unirg.rollout.worker import with_placeholders_blocked

    sampling = with_placeholders_blocked({"n": 1, "temperature": 0.0, "max_tokens": max_new_tokens, "logprobs": 0},
                                         blocked)
    results = pool.generate([row["request"] for row in rows], sampling)
    worst = 0.0
    for row, result in zip(rows, results, strict=True):
        completion = result["completions"][0]
        engine = [position[0] for position in completion["logprobs"]]
        policy = _teacher_forced(model, row["inputs"], completion["token_ids"], blocked)
        worst = max([worst, *(abs(a - b) for a, b in zip(engine, policy, strict=True))])
    return worst


def _perturb(model: Any, seed: int, scale: float) -> None:
    """A training step's worth of change: seeded noise on every weight (tied ones move together)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_((torch.randn(param.shape, generator=generator) * scale).to(param.device, param.dtype))


def _named_weights(model: Any):
    """The weights as the trainer sends them: named parameters, then the tied head vLLM keeps apart."""
    from unirg.rollout.generation import has_tied_head

    names = set()
    for name, param in model.named_parameters():
        names.add(name)
        yield name, param.detach()
    if has_tied_head(model) and "lm_head.weight" not in names:
        yield "lm_head.weight", model.get_input_embeddings().weight.detach()


def collective_sync_check(model_dir: str | Path, *, backend: str, num_engines: int = 2,
                          cluster: ClusterConfig | None = None, dtype: str = "float32", device: str = "cpu",
                          max_new_tokens: int = 8, scale: float = 0.3, max_model_len: int = 512) -> dict[str, Any]:
    """Run the pool's collective sync with `num_engines` engines on `model_dir`; return the result row."""
    import ray
    import torch
    from transformers import AutoModelForImageTextToText

    import unirg.models.processor  # noqa: F401  registers the image-only processor
    from unirg.rollout.generation import (
        RolloutPool,
        WeightsOutdated,
        engine_kwargs,
        engine_tensor_parallel_size,
        image_token_id_of,
    )
    from unirg.rollout.weight_transfer import CollectiveWeightSync, tensor_meta
    from unirg.rollout.worker import placeholder_token_ids

    cluster = cluster or ClusterConfig(num_cpus=2)
    rollout = RolloutConfig(backend="vllm_ray", num_workers=num_engines, dtype=dtype, max_model_len=max_model_len,
                            weight_sync=backend, max_restarts=2, startup_timeout_s=300,
                            gpu_memory_utilization=0.3)
    tolerance = LOGPROB_TOLERANCE[dtype]
    from unirg.models.loading import load_processor

    processor = load_processor(str(model_dir))
    rows = _prompts(processor, 2 * num_engines)
    blocked = placeholder_token_ids(processor)
    pool = RolloutPool(str(model_dir), engine_kwargs(rollout, cluster), rollout, cluster,
                       image_token_id=image_token_id_of(processor))
    sync = CollectiveWeightSync(pool, backend, ranks_per_engine=engine_tensor_parallel_size(cluster))
    row: dict[str, Any] = {"check": f"engine pool {backend} weight sync", "backend": backend,
                           "engines": num_engines, "dtype": dtype, "tolerance": tolerance}
    try:
        if device.startswith("cuda"):
            engine_gpus = sorted({gpu for info in pool.infos for gpu in info.get("gpu_ids", [])})
            row["engine_gpus"], row["trainer_gpu"] = engine_gpus, device
            if device.split(":")[-1] in engine_gpus:
                raise RuntimeError(f"the trainer's {device} is also an engine's GPU ({engine_gpus}); NCCL needs "
                                   "each rank of the group on its own device")
        model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(device).eval()
        metadata = [tensor_meta(name, tensor) for name, tensor in _named_weights(model)]

        _perturb(model, seed=1, scale=scale)
        row["stale_logprob_max_abs_diff"] = _parity(pool, model, rows, max_new_tokens, blocked)
        row["send_1"] = sync.send(_named_weights(model), metadata, version=1)
        row["synced_logprob_max_abs_diff"] = _parity(pool, model, rows, max_new_tokens, blocked)
        row["versions_after_sync"] = [ray.get(w.info.remote())["weights_version"] for w in pool.workers]

        # Engine 0 dies; the next generation finds out, restarts it (initial weights) and gives its
        # prompts to an engine with the latest weights, or refuses when there is none.
        os.kill(pool.infos[0]["pid"], signal.SIGKILL)
        try:
            row["restarted_excluded_logprob_max_abs_diff"] = _parity(pool, model, rows, max_new_tokens, blocked)
            row["generate_with_restarted_engine"] = "generated"
        except WeightsOutdated:
            row["restarted_excluded_logprob_max_abs_diff"] = None
            row["generate_with_restarted_engine"] = "WeightsOutdated"
        row["restarts_after_kill"] = pool.restarts
        row["stale_after_restart"] = sorted(pool.state.stale)
        row["rebuild_pending_after_restart"] = pool.state.needs_rebuild()

        _perturb(model, seed=2, scale=scale)
        row["send_2"] = sync.send(_named_weights(model), metadata, version=2)
        row["resynced_logprob_max_abs_diff"] = _parity(pool, model, rows, max_new_tokens, blocked)
        row["versions_after_resync"] = [ray.get(w.info.remote())["weights_version"] for w in pool.workers]
        row["groups"] = sync.rebuilds
        row["restarts"] = pool.restarts
    finally:
        sync.close()
        pool.shutdown()
    problems = failures(row)
    row.update(ok=not problems, failures=problems)
    return row


def failures(row: dict[str, Any]) -> list[str]:
    """Which checks a result row fails, in words (empty when all pass)."""
    tolerance, engines = row["tolerance"], row["engines"]
    out = []
    if not row["stale_logprob_max_abs_diff"] > STALE_FACTOR * tolerance:
        out.append(f"before the sync the engines were only {row['stale_logprob_max_abs_diff']:.2e} from the changed "
                   "policy: the change is too small to tell whether the sync works")
    if not row["synced_logprob_max_abs_diff"] <= tolerance:
        out.append(f"after the sync the engines' logprobs differ from the policy's by "
                   f"{row['synced_logprob_max_abs_diff']:.2e} > {tolerance:.0e}")
    if row["versions_after_sync"] != [1] * engines:
        out.append(f"engines report weights versions {row['versions_after_sync']} after sync 1")
    if (row["restarts_after_kill"] != 1 or row["stale_after_restart"] != [0]
            or not row["rebuild_pending_after_restart"]):
        out.append(f"after killing engine 0: {row['restarts_after_kill']} restarts, stale engines "
                   f"{row['stale_after_restart']}, rebuild pending {row['rebuild_pending_after_restart']} "
                   "(expected 1, [0], True)")
    if engines > 1 and not (row["restarted_excluded_logprob_max_abs_diff"] or 0.0) <= tolerance:
        out.append("with the restarted engine excluded the others did not match the policy "
                   f"({row['restarted_excluded_logprob_max_abs_diff']})")
    if engines == 1 and row["generate_with_restarted_engine"] != "WeightsOutdated":
        out.append("the only engine was restarted with old weights, yet generation went ahead")
    if not row["resynced_logprob_max_abs_diff"] <= tolerance:
        out.append(f"after the restart and resync the engines' logprobs differ from the policy's by "
                   f"{row['resynced_logprob_max_abs_diff']:.2e} > {tolerance:.0e}")
    if row["versions_after_resync"] != [2] * engines:
        out.append(f"engines report weights versions {row['versions_after_resync']} after sync 2")
    groups = row.get("groups", [])
    if len(groups) != 2 or groups[0]["port"] == groups[1]["port"]:
        out.append(f"expected the group built twice on different ports (once more after the restart), got {groups}")
    return out


def nccl_sync_check(model_dir: str | Path, *, dtype: str = "float32") -> dict[str, Any]:
    """The `make gpu-check` row: the pool's NCCL sync with the trainer on one GPU and an engine on each other.

    Needs 2+ GPUs (one engine with 2, two with 3 or more); with fewer the row says it was skipped.
    """
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus < 2:
        return {"check": "engine pool nccl weight sync", "ok": None, "skipped": f"needs 2+ GPUs, found {gpus}"}
    engines = min(2, gpus - 1)
    trainer_gpu = gpus - 1
    import ray

    from unirg.orchestration import LOOPBACK

    if not ray.is_initialized():
        # Ray gets every GPU but the trainer's: NCCL refuses two ranks of one group on one device.
        ray.init(num_gpus=gpus - 1, num_cpus=engines + 1, _node_ip_address=LOOPBACK, include_dashboard=False)
    torch.cuda.set_device(trainer_gpu)
    cluster = ClusterConfig(rollout_gpus_per_worker=1, rollout_cpus_per_worker=1)
    return collective_sync_check(model_dir, backend="nccl", num_engines=engines, cluster=cluster, dtype=dtype,
                                 device=f"cuda:{trainer_gpu}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--backend", choices=["nccl", "gloo"], default="nccl")
    parser.add_argument("--engines", type=int, default=2, help="gloo: number of engines (nccl: from the GPUs)")
    parser.add_argument("--dtype", default="float32", choices=sorted(LOGPROB_TOLERANCE))
    options = parser.parse_args(argv)
    if options.backend == "nccl":
        row = nccl_sync_check(options.model_dir, dtype=options.dtype)
    else:
        row = collective_sync_check(options.model_dir, backend="gloo", num_engines=options.engines,
                                    cluster=ClusterConfig(num_cpus=max(2, options.engines)), dtype=options.dtype)
    sys.stdout.write("RESULT " + json.dumps(row) + "\n")
    sys.stdout.flush()
    return 0 if row["ok"] in (True, None) else 1


if __name__ == "__main__":
    sys.exit(main())
