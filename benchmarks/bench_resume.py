"""Memory of a demo GRPO run over its steps, and the time from a SIGKILL to resumed training.

    .venv/bin/python benchmarks/bench_resume.py [--steps 30]

Starts `unirg rl --recipe demo` (SFT and evaluation off) in a subprocess, samples its resident memory
every 0.2 s against the logged step, kills it with SIGKILL after `--kill-at` steps, restarts the same
command and measures the seconds until it logs its first new step. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from unirg.run_folder import read_rows

REPO = Path(__file__).resolve().parents[1]


def start(run_dir: Path, steps: int) -> subprocess.Popen:
    args = [sys.executable, "-m", "unirg", "rl", "--recipe", "demo", "--run-dir", str(run_dir), "sft=null",
            "evaluate=false", f"grpo.max_steps={steps}", "output.save_steps=5", "logging.progress=false"]
    return subprocess.Popen(args, cwd=REPO, env=dict(os.environ, HF_HUB_OFFLINE="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def logged_steps(run_dir: Path) -> list[int]:
    return [row["step"] for row in read_rows(run_dir / "metrics.jsonl") if "step" in row]


def rss_mib(process: subprocess.Popen) -> float:
    try:
        parent = psutil.Process(process.pid)
        return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)]) / 2**20
    except psutil.NoSuchProcess:
        return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--kill-at", type=int, default=12)
    args = parser.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="unirg-bench-")) / "run"
    process = start(run_dir, args.steps)
    memory_at_step: dict[int, float] = {}
    while process.poll() is None:
        steps = logged_steps(run_dir)
        if steps:
            memory_at_step[steps[-1]] = max(memory_at_step.get(steps[-1], 0.0), rss_mib(process))
        if steps and steps[-1] >= args.kill_at and (run_dir / "grpo" / f"checkpoint-{args.kill_at // 5 * 5}").is_dir():
            process.send_signal(signal.SIGKILL)
            process.wait()
            break
        time.sleep(0.2)
    before = logged_steps(run_dir)
    # The resumed run restarts after its last complete checkpoint (save_steps=5); its first step is the next one.
    checkpoint_step = max((int(p.name.split("-")[-1]) for p in (run_dir / "grpo").glob("checkpoint-*")
                           if (p / "unirg_checkpoint_complete").is_file()), default=0)
    killed_at = time.perf_counter()
    process = start(run_dir, args.steps)
    resumed_after = None
    while process.poll() is None:
        steps = logged_steps(run_dir)
        if resumed_after is None and steps == list(range(1, checkpoint_step + 2)):
            resumed_after = time.perf_counter() - killed_at
        if steps:
            memory_at_step[steps[-1]] = max(memory_at_step.get(steps[-1], 0.0), rss_mib(process))
        time.sleep(0.2)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; steps {args.steps}, killed after step "
          f"{before[-1] if before else 0}; final steps logged once each: "
          f"{logged_steps(run_dir) == list(range(1, args.steps + 1))}")
    print(f"resumed from checkpoint-{checkpoint_step}; kill → step {checkpoint_step + 1} logged again: "
          f"{resumed_after:.1f} s" if resumed_after else "no resumed step seen")
    print("| step | resident memory (MiB, trainer + children) |\n|---:|---:|")
    for step in sorted(memory_at_step):
        if step in (1, 2, 5) or step % 5 == 0:
            print(f"| {step} | {memory_at_step[step]:.0f} |")


if __name__ == "__main__":
    main()
