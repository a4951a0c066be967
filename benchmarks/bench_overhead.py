"""unirg's added time per GRPO step over a plain trl.GRPOTrainer doing the same steps, with unirg's breakdown.

    .venv/bin/python benchmarks/bench_overhead.py [--steps 10] [--warmup 3] [--rounds 4] [--threads N] [ARGS…]

Both trainers get the demo recipe's tiny model (built once, each trainer loads it afresh), its synthetic
training data, its reward functions (built the same way, one set per trainer) and the same GRPOConfig
(`unirg.training.grpo.grpo_config` of the recipe). unirg's trainer comes from `build_trainer`, the `unirg
rl` path, with the callbacks `run_grpo` adds (metrics.jsonl, checkpoint marker) and its step timing;
the plain one is `trl.GRPOTrainer(model, reward_funcs, args, train_dataset, processing_class)` with
TRL's default callbacks. They alternate in one process, `--rounds` times each, the order flipping every
round; every run trains `--warmup` + `--steps` steps and the last `--steps` are timed by the same
callback in both: wall and process CPU time between the ends of consecutive optimizer steps (CPU time
is less disturbed by other processes on a shared machine). Extra ARGS are recipe overrides (`grpo.num_generations=4`).
With the same seed both runs should make the same samples and losses; the script prints whether they did.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

# Recipe overrides that make the demo a GRPO-only benchmark: no SFT, no evaluation, no checkpoint within the run.
BENCH_OVERRIDES = ["sft=null", "evaluate=false", "output.save_steps=100000", "logging.logging_steps=1"]


class StepClock(TrainerCallback):
    """Wall-clock and process CPU time at the end of each optimizer step, and the logged reward and loss."""

    def __init__(self) -> None:
        self.ends: list[tuple[float, float]] = []
        self.logged: list[tuple[float | None, float | None]] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append((time.perf_counter(), time.process_time()))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "reward" in logs:
            self.logged.append((logs.get("reward"), logs.get("loss")))


def step_times(clock: StepClock, warmup: int) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of each step after the warm-up: from the end of the step before to its own end."""
    ends = clock.ends[warmup - 1:]
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(ends, ends[1:], strict=False)]


def run_unirg(recipe, work: Path, dataset, model_path: str, warmup: int) -> tuple[list[tuple[float, float]], StepClock, list]:
    from unirg.training.callbacks import CheckpointCompleteCallback, MetricsFileCallback
    from unirg.training.grpo import build_trainer

    clock = StepClock()
    run_dir = Path(tempfile.mkdtemp(dir=work, prefix="unirg-"))
    trainer = build_trainer(recipe, run_dir / "grpo", dataset, model_path,
                            callbacks=[MetricsFileCallback(run_dir / "metrics.jsonl"), CheckpointCompleteCallback(),
                                       clock])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        trainer.train()
    return step_times(clock, warmup), clock, trainer.step_timer.steps[warmup:]


def run_plain(recipe, work: Path, dataset, model_path: str, warmup: int) -> tuple[list[tuple[float, float]], StepClock]:
    from trl import GRPOTrainer

    from rewards import build_reward_functions, fit_reward_corpus
    from unirg.models.loading import load_policy, load_processor
    from unirg.training.grpo import grpo_config

    clock = StepClock()
    run_dir = Path(tempfile.mkdtemp(dir=work, prefix="plain-"))
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")
    reward_funcs, weights = build_reward_functions(recipe.rewards)
    fit_reward_corpus(reward_funcs, dataset)
    trainer = GRPOTrainer(model=load_policy(model_path, recipe.model), reward_funcs=reward_funcs,
                          args=grpo_config(recipe, run_dir, weights), train_dataset=dataset,
                          processing_class=load_processor(model_path), callbacks=[clock])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        trainer.train()
    return step_times(clock, warmup), clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps at the start of each run")
    parser.add_argument("--rounds", type=int, default=4, help="runs of each trainer, alternating")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (0: torch's default); 1 keeps a shared, busy machine from "
                             "stalling both trainers on threads that wait for each other")
    parser.add_argument("overrides", nargs="*", help="recipe overrides, e.g. grpo.num_generations=4")
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1 (a step is timed from the end of the one before)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch

    from unirg.data import load_splits
    from unirg.evaluation.report import ordered_parts
    from unirg.models.loading import resolve_model_path
    from unirg.recipe import load_recipe

    if args.threads:
        torch.set_num_threads(args.threads)
    total_steps = args.warmup + args.steps
    recipe = load_recipe("demo", [*BENCH_OVERRIDES, f"grpo.max_steps={total_steps}", *args.overrides])
    work = Path(tempfile.mkdtemp(prefix="unirg-bench-overhead-"))
    splits = load_splits(recipe.data, recipe.prompt, work)
    model_path = resolve_model_path(recipe.model, work, corpus=list(splits.train["reference"]))
    grpo = recipe.grpo
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"workload: demo recipe, {args.warmup} warm-up + {args.steps} timed GRPO steps per run, "
          f"{grpo.get('per_device_train_batch_size')} completions per step "
          f"({grpo.get('num_generations')} per prompt), max {recipe.rollout.max_new_tokens} new tokens, "
          f"rewards {', '.join(r.name for r in recipe.rewards)}; {args.rounds} rounds, alternating")

    unirg_times: list[tuple[float, float]] = []
    plain_times: list[tuple[float, float]] = []
    breakdown: list[dict[str, float]] = []
    same_numbers = True
    for round_index in range(args.rounds):
        # Which trainer goes first alternates too (unirg, plain | plain, unirg | …), so neither always runs on
        # a process the other has just warmed or cluttered.
        if round_index % 2:
            plain, plain_clock = run_plain(recipe, work, splits.train, model_path, args.warmup)
            times, unirg_clock, steps = run_unirg(recipe, work, splits.train, model_path, args.warmup)
        else:
            times, unirg_clock, steps = run_unirg(recipe, work, splits.train, model_path, args.warmup)
            plain, plain_clock = run_plain(recipe, work, splits.train, model_path, args.warmup)
        unirg_times += times
        plain_times += plain
        breakdown += steps
        same_numbers &= unirg_clock.logged == plain_clock.logged
        print(f"round {round_index + 1} ({'plain first' if round_index % 2 else 'unirg first'}): median s/step "
              f"wall unirg {statistics.median(t[0] for t in times):.3f}, plain {statistics.median(t[0] for t in plain):.3f};"
              f" CPU unirg {statistics.median(t[1] for t in times):.3f}, plain {statistics.median(t[1] for t in plain):.3f}"
              f" ({len(times)} steps each); load average {os.getloadavg()[0]:.2f}")

    print("\n| trainer | median wall s/step | mean wall s/step | median CPU s/step | steps timed |")
    print("|---|---:|---:|---:|---:|")
    for name, times in (("unirg (`build_trainer`)", unirg_times), ("plain `trl.GRPOTrainer`", plain_times)):
        print(f"| {name} | {statistics.median(t[0] for t in times):.3f} | {statistics.fmean(t[0] for t in times):.3f} "
              f"| {statistics.median(t[1] for t in times):.3f} | {len(times)} |")
    # Both runs make the same samples (same seed), so step k of a unirg run and step k of the plain run of
    # its round do the same work: the paired differences cancel most of what the workload itself varies.
    for index, clock in ((0, "wall"), (1, "CPU")):
        added = statistics.median(u[index] - p[index] for u, p in zip(unirg_times, plain_times, strict=True))
        step = statistics.median(u[index] for u in unirg_times)
        print(f"unirg's added {clock} time per step: {added * 1000:+.1f} ms = {100 * added / step:+.1f} points of "
              f"unirg's step time (median of paired step differences; target: within 2 points)")
    print(f"same rewards and losses logged at every step in both: {same_numbers}")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    parts = ordered_parts(sorted({name for step in breakdown for name in step if name != "step_time"}))
    mean_step = statistics.fmean(step["step_time"] for step in breakdown)
    print("\nunirg's step-time breakdown (means over the timed steps):\n")
    print("| part | mean ms | share |\n|---|---:|---:|")
    for part in parts:
        seconds = statistics.fmean(step.get(part, 0.0) for step in breakdown)
        print(f"| {part} | {seconds * 1000:.1f} | {100 * seconds / mean_step:.1f}% |")
    print(f"| **step** | {mean_step * 1000:.1f} | 100% |")

if __name__ == "__main__":
    main()
