"""Check colocated vLLM rollout on a model folder: a few GRPO steps plus vLLM-vs-HF parity, as one row of results.

Runs on CPU (CI) and on GPU (`make gpu-check`). The row says whether:
- greedy vLLM completions equal HF `generate` greedy completions for the same prompts and images, with the
  same per-token logprobs (before any training);
- after the optimizer steps, the engine's logprobs of a fixed completion match the policy's once the weights
  are synced, and differed before the sync (so the sync really moved the engine's weights);
- TRL's importance-sampling ratios over the GRPO steps are near 1, not about 0 (what doubly expanded
  image pads produce).

    python -m unirg.rollout.colocate_check MODEL_DIR [--steps 2] [--dtype float32]
    torchrun --nproc_per_node 2 -m unirg.rollout.colocate_check MODEL_DIR     (one engine per process)

prints `RESULT {json}` (one line per process) and exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from unirg.rollout.config import RolloutConfig

# Largest |vLLM - HF| per-token logprob accepted, by dtype. float32 on both sides differs only by kernel
# order (measured about 1e-5 on CPU); bfloat16 rounds every activation to 8 bits of mantissa.
LOGPROB_TOLERANCE = {"float32": 1e-3, "bfloat16": 5e-2, "float16": 2e-2}
# The stale engine must be at least this many tolerances away, else the check could not tell a sync happened.
STALE_FACTOR = 10.0
# Importance-sampling ratios below this mean the engine and the trainer score different sequences.
MIN_IS_RATIO_MEAN = 0.5


def distinct_characters(completions: list, **_: Any) -> list[float]:
    """Toy reward in [0, 1]: share of distinct characters in a completion ("aab" → 2/3)."""
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [len(set(text)) / max(1, len(text)) for text in texts]


def check_rows(count: int) -> list[dict[str, Any]]:
    """Chat prompts with one synthetic image each, of different sizes so their pad runs differ."""
    from PIL import Image

    rows = []
    for index in range(count):
        image = Image.new("RGB", (112 + 28 * (index % 3), 112), (40 * index % 256, 120, 200 - 20 * (index % 8)))
        rows.append({"prompt": [{"role": "user", "content": [
            {"type": "image"}, {"type": "text", "text": f"Describe chest X-ray number {index}."}]}],
            "images": [image]})
    return rows


def encode(processor: Any, row: dict[str, Any]) -> Any:
    """The prompt as the trainer tokenizes it: chat template, then the processor (image pads expanded)."""
    text = processor.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
    return processor(text=[text], images=row["images"], return_tensors="pt")


def hf_greedy(model: Any, inputs: Any, max_new_tokens: int, suppress: list[int]) -> tuple[list[int], list[float]]:
    """HF greedy completion and each chosen token's logprob, with the tokens the engine blocks suppressed too."""
    import torch

    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, suppress_tokens=suppress,
                             output_scores=True, return_dict_in_generate=True)
    ids = out.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    logprobs = [torch.log_softmax(score[0].float(), -1)[token].item() for score, token in zip(out.scores, ids, strict=False)]
    return ids, logprobs


def hf_completion_logprobs(model: Any, inputs: Any, completion_ids: list[int]) -> list[float]:
    """The policy's logprob of each token of a fixed completion after the prompt (teacher forcing, raw logits)."""
    import torch

    prompt_len = inputs["input_ids"].shape[1]
    completion = torch.tensor([completion_ids], dtype=inputs["input_ids"].dtype, device=inputs["input_ids"].device)
    full = dict(inputs)
    for key, value in inputs.items():
        # Per-token fields beside the ids (transformers 5 adds mm_token_type_ids) extend as text tokens (0).
        if key != "input_ids" and torch.is_tensor(value) and value.shape == inputs["input_ids"].shape:
            full[key] = torch.cat([value, torch.zeros_like(completion, dtype=value.dtype)], dim=1)
    full["input_ids"] = torch.cat([inputs["input_ids"], completion], dim=1)
    full["attention_mask"] = torch.ones_like(full["input_ids"])
    with torch.no_grad():
        logits = model(**full).logits[0].float()  # [prompt + completion, vocab]
    logprobs = torch.log_softmax(logits[prompt_len - 1:-1], -1)  # position i predicts token i + 1
    return [logprobs[i, token].item() for i, token in enumerate(completion_ids)]


@contextmanager
def greedy(generation: Any):
    """Make the generation backend decode greedily for the duration of the block."""
    temperature = generation.temperature
    generation.temperature = 0.0
    try:
        yield
    finally:
        generation.temperature = temperature


def _max_abs_diff(a: list[float], b: list[float]) -> float:
    return max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)


def _max_diff(rows_a: list[list[float]], rows_b: list[list[float]]) -> float:
    return max(_max_abs_diff(a, b) for a, b in zip(rows_a, rows_b, strict=True))


def colocate_check(model_dir: str | Path, *, steps: int = 2, rollout: RolloutConfig | None = None,
                   num_prompts: int = 4, max_new_tokens: int = 8, learning_rate: float = 5e-3,
                   seed: int = 0, tolerance: float | None = None) -> dict[str, Any]:
    """Run `steps` colocated GRPO steps on the model in `model_dir` with parity checks; return one row of results.

    `rollout` sets the engine (default: float32, max_model_len 512). The row's `ok` is true when every check
    passed; the other fields hold the measured figures.
    """
    import torch
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText
    from trl import GRPOConfig, GRPOTrainer

    from unirg.models.loading import load_processor
    from unirg.rollout.colocate import blocked_token_ids, install_colocated_rollout

    started = time.perf_counter()
    rollout = rollout or RolloutConfig(backend="vllm_colocate", dtype="float32", max_model_len=512)
    dtype = "float32" if rollout.dtype == "auto" else rollout.dtype
    tolerance = tolerance if tolerance is not None else LOGPROB_TOLERANCE[dtype]
    on_gpu = torch.cuda.is_available()
    processor = load_processor(str(model_dir))
    # The policy in the engine's dtype: the check compares like with like.
    policy = AutoModelForImageTextToText.from_pretrained(str(model_dir), dtype=getattr(torch, dtype))
    rows = check_rows(num_prompts)
    output_dir = Path(tempfile.mkdtemp(prefix="colocate-check-"))
    try:
        args = GRPOConfig(output_dir=str(output_dir), use_cpu=not on_gpu, bf16=False, max_steps=steps,
                          per_device_train_batch_size=4, num_generations=4, max_completion_length=max_new_tokens,
                          learning_rate=learning_rate, beta=0.0, loss_type="dapo", logging_steps=1,
                          save_strategy="no", report_to=[], use_vllm=False, seed=seed)
        trainer = GRPOTrainer(model=policy, reward_funcs=[distinct_characters], args=args,
                              train_dataset=Dataset.from_list(rows), processing_class=processor)
        generation = install_colocated_rollout(trainer, rollout)
        engine_start_s = time.perf_counter() - started
        model = trainer.accelerator.unwrap_model(trainer.model)
        device = trainer.accelerator.device
        inputs = [encode(processor, row).to(device) for row in rows]
        prompt_ids = [encoded["input_ids"][0].tolist() for encoded in inputs]
        images = [row["images"] for row in rows]

        # (a) greedy parity before training. The first sync gives the engine the trainer's weights, as
        # GRPOTrainer does before its first generation.
        generation.sync_weights()
        model.eval()
        hf = [hf_greedy(model, encoded, max_new_tokens, blocked_token_ids(processor)) for encoded in inputs]
        with greedy(generation):
            _, vllm_ids, vllm_logprobs, _ = generation.generate(prompt_ids, images, num_generations=1)
        vllm_logprobs = [[position[0] for position in sequence] for sequence in vllm_logprobs]
        greedy_equal = [list(v) == h[0] for v, h in zip(vllm_ids, hf, strict=True)]
        greedy_diff = max(_max_abs_diff(v, h[1]) for v, h, same in zip(vllm_logprobs, hf, greedy_equal, strict=True)
                          if same) if any(greedy_equal) else float("nan")

        # The fixed completion of (b): each prompt's greedy HF completion, scored before any training.
        fixed = [h[0] for h in hf]
        engine_before = [generation.completion_logprobs(p, i, ids) for p, i, ids in zip(prompt_ids, images, fixed, strict=True)]
        policy_before = [hf_completion_logprobs(model, encoded, ids) for encoded, ids in zip(inputs, fixed, strict=True)]

        # (c) GRPO steps: GRPOTrainer syncs the engine before each step's generation.
        initial = {name: param.detach().clone() for name, param in model.named_parameters()}
        syncs_before = generation.weights_version
        trainer.train()
        syncs_in_training = generation.weights_version - syncs_before
        model.eval()
        changed = sum(not torch.equal(initial[name], param.detach()) for name, param in model.named_parameters())
        logs = [row for row in trainer.state.log_history if "sampling/importance_sampling_ratio/mean" in row]
        is_mean = [row["sampling/importance_sampling_ratio/mean"] for row in logs]
        is_min = [row["sampling/importance_sampling_ratio/min"] for row in logs]
        logp_diff = [row["sampling/sampling_logp_difference/max"] for row in logs]

        # (b) after the steps and a sync the engine scores the fixed completions like the policy, and unlike
        # itself before training. Without sleep mode the last optimizer step has not reached the engine yet,
        # which shows the sync is what moves it; in sleep mode the engine drops its weights and any use
        # re-pushes them, so there is no stale engine to look at.
        policy_after = [hf_completion_logprobs(model, encoded, ids) for encoded, ids in zip(inputs, fixed, strict=True)]
        stale_diff = None
        if not generation.enable_sleep_mode:
            stale = [generation.completion_logprobs(p, i, ids) for p, i, ids in zip(prompt_ids, images, fixed, strict=True)]
            stale_diff = max(_max_abs_diff(s, h) for s, h in zip(stale, policy_after, strict=True))
        generation.sync_weights()
        engine_after = [generation.completion_logprobs(p, i, ids) for p, i, ids in zip(prompt_ids, images, fixed, strict=True)]
        # Negative control: the trainer's ids sent as they are, each image's pads expanded a second time by vLLM.
        doubled = generation.completion_logprobs(prompt_ids[0], images[0], fixed[0], collapse_image_pads=False)

        row = {
            "backend": "vllm_colocate",
            "device": torch.cuda.get_device_name() if on_gpu else "cpu",
            "dtype": dtype,
            "processes": trainer.accelerator.num_processes,
            "rank": trainer.accelerator.process_index,
            "tensor_parallel_size": generation.tensor_parallel_size,
            "sleep_mode": generation.enable_sleep_mode,
            "tolerance": tolerance,
            "greedy_prompts": len(hf),
            "greedy_equal": sum(greedy_equal),
            "greedy_logprob_max_abs_diff": greedy_diff,
            "greedy_tokens_per_prompt": [len(h[0]) for h in hf],
            "steps": len(logs),
            "params_changed": f"{changed}/{len(initial)}",
            "weight_syncs_during_training": syncs_in_training,
            "is_ratio_mean": is_mean,
            "is_ratio_min": is_min,
            "train_logp_difference_max": logp_diff,
            "fixed_logprob_max_abs_diff_before": _max_diff(engine_before, policy_before),
            "synced_logprob_max_abs_diff": _max_diff(engine_after, policy_after),
            "engine_moved_logprob_max_abs_diff": _max_diff(engine_after, engine_before),
            "stale_logprob_max_abs_diff": stale_diff,
            "uncollapsed_logprob_max_abs_diff": _max_abs_diff(doubled, policy_after[0]),
            "sync_seconds_mean": sum(generation.sync_seconds) / len(generation.sync_seconds),
            "engine_start_s": engine_start_s,
        }
        if on_gpu:
            row["gpu_memory_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
            free, total = torch.cuda.mem_get_info()
            row["gpu_memory_in_use_gib"] = (total - free) / 2**30
        row["failures"] = failures(row)
        row["ok"] = not row["failures"]
        row["seconds"] = time.perf_counter() - started
        return row
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)


def failures(row: dict[str, Any]) -> list[str]:
    """Which checks a result row fails, in words (empty when all pass)."""
    tolerance = row["tolerance"]
    out = []
    if row["greedy_equal"] != row["greedy_prompts"]:
        out.append(f"greedy vLLM completions differ from HF on {row['greedy_prompts'] - row['greedy_equal']} prompts")
    if not row["greedy_logprob_max_abs_diff"] <= tolerance:
        out.append(f"greedy logprobs differ by {row['greedy_logprob_max_abs_diff']:.2e} > {tolerance:.0e}")
    for key, when in (("fixed_logprob_max_abs_diff_before", "before training"), ("synced_logprob_max_abs_diff",
                                                                                 "after training and a sync")):
        if not row[key] <= tolerance:
            out.append(f"{when} the engine's logprobs of the fixed completions differ from the policy's by "
                       f"{row[key]:.2e} > {tolerance:.0e}")
    if not row["engine_moved_logprob_max_abs_diff"] > STALE_FACTOR * tolerance:
        out.append(f"the engine's logprobs moved only {row['engine_moved_logprob_max_abs_diff']:.2e} over training: "
                   "the optimizer steps did not change the weights enough to tell whether the sync works")
    if row["stale_logprob_max_abs_diff"] is not None and not row["stale_logprob_max_abs_diff"] > STALE_FACTOR * tolerance:
        out.append(f"the engine before the last sync was only {row['stale_logprob_max_abs_diff']:.2e} from the "
                   "policy: the last optimizer step did not change the weights enough to tell whether the sync works")
    if row["steps"] < 1 or min(row["is_ratio_mean"]) < MIN_IS_RATIO_MEAN:
        out.append(f"importance-sampling ratio means {row['is_ratio_mean']} (below {MIN_IS_RATIO_MEAN}: the engine "
                   "and the trainer score different sequences)")
    if row["weight_syncs_during_training"] != row["steps"]:
        out.append(f"{row['weight_syncs_during_training']} weight syncs during {row['steps']} training steps")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--max-model-len", type=int, default=512)
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    parser.add_argument("--no-sleep", action="store_true", help="GPU: keep the engine awake")
    options = parser.parse_args(argv)
    rollout = RolloutConfig(backend="vllm_colocate", dtype=options.dtype, max_model_len=options.max_model_len,
                            tensor_parallel_size=options.tensor_parallel_size,
                            gpu_memory_utilization=options.gpu_memory_utilization, sleep_mode=not options.no_sleep)
    row = colocate_check(options.model_dir, steps=options.steps, rollout=rollout)
    sys.stdout.write("RESULT " + json.dumps(row) + "\n")
    sys.stdout.flush()
    return 0 if row["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
