"""`make gpu-check`: run on a GPU machine every check that only a GPU can run, print one table, fail on a mismatch.

CI runs on CPUs, where vLLM's CPU backend stands in for the GPU paths. What differs on a GPU (TRL's
per-parameter weight load and sleep mode in colocated vLLM, NCCL between trainer ranks and to rollout
engines, CUDA kernels in float32) is exercised here with the tiny offline model, each check in a fresh
process so one engine's GPU memory never leaks into the next:

| check | GPUs | what it proves |
|---|---|---|
| colocate, 1 rank | 1 | vLLM inside the trainer: greedy output equals HF, logprobs match after a sync, IS ratios near 1 |
| colocate, 2 ranks | 2 | the same with one engine per NCCL rank |
| engine pool, NCCL | 2 | unique ranks, broadcast to 2 engines, logprob parity after the sync (`unirg.rollout.sync_check`) |
| unirg rl, colocate | 1 | a few GRPO steps of the demo recipe end to end on the GPU, every step logged |
| unirg rl, 2 NCCL ranks | 2 | the same as 2 trainer processes under torchrun, rank 0 alone logging |

Checks that need more GPUs than the machine has are reported as skipped, not passed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unirg.run_folder import read_rows

_RL_ARGS = ["rl", "--recipe", "demo", "sft=null", "evaluate=false", "grpo.max_steps=3", "output.save_steps=3",
            "data.synthetic.n_train=16", "data.synthetic.n_eval=0", "grpo.per_device_train_batch_size=4",
            "grpo.num_generations=4", "rollout.max_new_tokens=16", "rollout.backend=vllm_colocate",
            "rollout.max_model_len=512", "rollout.gpu_memory_utilization=0.3", "logging.progress=false"]


@dataclass
class Check:
    """One GPU check: a command, the GPUs it needs, and how to read its outcome."""

    name: str
    gpus: int
    command: list[str]
    run_dir: Path | None = None


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]


def plan(model_dir: Path, out: Path) -> list[Check]:
    """The checks in the order they run."""
    python = [sys.executable, "-m"]
    return [
        Check("colocate, 1 rank", 1, [*python, "unirg.rollout.colocate_check", str(model_dir)]),
        Check("colocate, 2 ranks", 2, _torchrun("-m", "unirg.rollout.colocate_check", str(model_dir))),
        Check("engine pool, NCCL", 2, [*python, "unirg.rollout.sync_check", str(model_dir), "--backend", "nccl"]),
        Check("unirg rl, colocate", 1, [*python, "unirg", *_RL_ARGS, "--run-dir", str(out / "rl-1")],
              run_dir=out / "rl-1"),
        Check("unirg rl, 2 NCCL ranks", 2, _torchrun("-m", "unirg", *_RL_ARGS, "--run-dir", str(out / "rl-2")),
              run_dir=out / "rl-2"),
    ]


def run_check(check: Check, gpus: int, timeout_s: float) -> dict[str, Any]:
    """Run one check and return its row: name, status (pass / FAIL / skipped), seconds, details."""
    if gpus < check.gpus:
        return {"check": check.name, "status": "skipped", "seconds": 0.0,
                "details": {"reason": f"needs {check.gpus} GPUs, this machine has {gpus}"}}
    started = time.monotonic()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    try:
        done = subprocess.run(check.command, capture_output=True, text=True, timeout=timeout_s, env=env)
        returncode, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as error:
        returncode, output = -1, f"timed out after {timeout_s:.0f} s\n{error.stdout or ''}{error.stderr or ''}"
    results = [json.loads(line[len("RESULT "):]) for line in output.splitlines() if line.startswith("RESULT ")]
    details: dict[str, Any] = {"results": results} if results else {}
    ok = returncode == 0
    if check.run_dir is not None:
        steps = [row.get("step") for row in read_rows(check.run_dir / "metrics.jsonl")]
        details["steps_logged"] = steps
        ok = ok and steps == [1, 2, 3] and (check.run_dir / "grpo" / "final" / "config.json").is_file()
    if not ok:
        details["output_tail"] = output[-3000:]
    return {"check": check.name, "status": "pass" if ok else "FAIL",
            "seconds": round(time.monotonic() - started, 1), "details": details}


def format_table(rows: list[dict[str, Any]], machine: str) -> str:
    """The markdown table BENCHMARKS.md keeps."""
    lines = [f"GPU check on {machine}", "", "| check | status | seconds | figures |", "|---|---|---:|---|"]
    for row in rows:
        details = row["details"]
        figures = details.get("results") or details.get("reason") or details.get("steps_logged") or ""
        lines.append(f"| {row['check']} | {row['status']} | {row['seconds']} | {json.dumps(figures)[:300]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unirg.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/gpu-check", help="Folder for the tiny model, runs and the table.")
    parser.add_argument("--arch", default="qwen2_vl", help="Tiny model family to check (model.tiny.arch).")
    parser.add_argument("--timeout", type=float, default=600.0, help="Seconds allowed per check.")
    args = parser.parse_args(argv)

    import torch

    gpus = torch.cuda.device_count()
    if gpus == 0:
        print("gpu-check: no CUDA device visible; run it on a GPU machine (CI covers the CPU paths)",
              file=sys.stderr)
        return 2
    machine = f"{gpus} x {torch.cuda.get_device_name(0)}"
    out = Path(args.out).resolve()
    model_dir = out / f"tiny-{args.arch}"
    if not (model_dir / "config.json").is_file():
        from unirg.models.tiny import build_tiny_model

        build_tiny_model(model_dir, arch=args.arch, hidden_size=128)
    rows = []
    for check in plan(model_dir, out):
        row = run_check(check, gpus, args.timeout)
        print(f"{row['status']:>7}  {row['check']}  ({row['seconds']} s)", flush=True)
        rows.append(row)
    table = format_table(rows, machine)
    (out / "gpu_check.md").write_text(table + "\n", encoding="utf-8")
    (out / "gpu_check.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    print("\n" + table)
    return 1 if any(row["status"] == "FAIL" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
