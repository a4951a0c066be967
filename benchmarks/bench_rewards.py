"""Benchmark the CPU reward stack: labeler reports/s on one core, and one GRPO step's 4,096 completions."""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rewards import build_reward_functions  # noqa: E402
from rewards.adapter import _parse  # noqa: E402
from rewards.labeler.rules import _label_sentence, label_report  # noqa: E402
from rewards.lexical import _stem  # noqa: E402

# Synthetic report sentences, so the benchmark needs no data set; every report text is distinct.
SENTENCES = (
    "The heart size is normal.", "Mild cardiomegaly.", "The cardiomediastinal silhouette is within normal limits.",
    "No focal consolidation, pleural effusion or pneumothorax.", "Small left pleural effusion.",
    "Bibasilar atelectasis.", "Patchy opacity in the right lower lobe may represent pneumonia.",
    "Mild pulmonary edema.", "No acute bony abnormality.", "Healed right rib fractures.",
    "Left subclavian central venous catheter with tip in the SVC.", "A 1 cm nodule in the left upper lobe.",
    "Cannot exclude a small right pneumothorax.", "Degenerative changes of the thoracic spine.",
    "Lungs are clear.", "Calcified granuloma in the right upper lobe.", "Pleural thickening at the left apex.",
    "No change in the small bilateral effusions.", "Low lung volumes with bronchovascular crowding.",
)
STACK = ("chexpert_f1", "bleu2", "rouge_l", "format", "consistency", "length")


def synthetic_report(rng: random.Random, serial: int) -> str:
    body = " ".join(rng.sample(SENTENCES, rng.randint(3, 7)))
    return f"Findings: {body} Study {serial}.\nImpression: {rng.choice(SENTENCES)}"


def bench_labeler(n: int, seed: int = 0) -> float:
    """Reports/s of the labeler on one core, every report distinct (the report cache never hits).

    The sentence cache starts empty and fills as it goes, as in training: templated sentences repeat.
    """
    rng = random.Random(seed)
    texts = [synthetic_report(rng, i) for i in range(n)]
    _label_sentence.cache_clear()
    label = label_report.__wrapped__  # bypass the report cache
    started = time.perf_counter()
    for text in texts:
        label(text)
    return n / (time.perf_counter() - started)


def bench_labeler_file(path: Path) -> float:
    """Reports/s of the labeler on a CSV with findings and impression columns (e.g. the IU dev split)."""
    with path.open(newline="", encoding="utf-8") as handle:
        texts = [f"{r.get('findings') or ''}\n{r.get('impression') or ''}" for r in csv.DictReader(handle)]
    _label_sentence.cache_clear()
    label = label_report.__wrapped__
    started = time.perf_counter()
    for text in texts:
        label(text)
    return len(texts) / (time.perf_counter() - started)


def bench_step(prompts: int, generations: int, seed: int = 0) -> tuple[float, dict[str, float]]:
    """Seconds to score prompts × generations reasoning-format completions with the CPU reward stack."""
    rng = random.Random(seed)
    references = [synthetic_report(rng, i) for i in range(prompts)]
    completions, columns = [], {"reference": [], "reference_labels": [], "sections": [], "study_id": []}
    for p, reference in enumerate(references):
        for g in range(generations):
            thought = " ".join(rng.sample(SENTENCES, 3))
            completions.append(f"<think>\nPerception: {thought}\n</think>\n{synthetic_report(rng, p * 100 + g)}")
            columns["reference"].append(reference)
            columns["reference_labels"].append(None)
            columns["sections"].append("findings_impression")
            columns["study_id"].append(str(p))
    functions, _ = build_reward_functions([{"name": name, "weight": 1.0} for name in STACK])
    for function in functions:  # imports and plugin setup happen once per run, not per step
        function(completions[:2], **{k: v[:2] for k, v in columns.items()})
    # The step starts cold otherwise: no completion parsed, no report, sentence or word seen yet.
    for cache in (label_report, _label_sentence, _parse, _stem):
        cache.cache_clear()
    per_reward = {}
    started = time.perf_counter()
    for function in functions:
        t0 = time.perf_counter()
        function(completions, **columns)
        per_reward[function.__name__] = time.perf_counter() - t0
    return time.perf_counter() - started, per_reward


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=20_000, help="distinct reports for the labeler rate")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--generations", type=int, default=16)
    parser.add_argument("--iu", default=str(Path(__file__).resolve().parents[2] / "shared/data/iu_xray/reports_dev.csv"),
                        help="optional CSV of real reports for a second labeler rate (skipped when absent)")
    args = parser.parse_args()
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else None
    if cores:
        os.sched_setaffinity(0, {min(cores)})  # the labeler figure is for one core
    print(f"labeler, synthetic reports: {bench_labeler(args.reports):,.0f} reports/s (one core)")
    if Path(args.iu).is_file():
        print(f"labeler, {Path(args.iu).name}: {bench_labeler_file(Path(args.iu)):,.0f} reports/s (one core)")
    if cores:
        os.sched_setaffinity(0, cores)
    total, per_reward = bench_step(args.prompts, args.generations)
    n = args.prompts * args.generations
    print(f"reward stack ({' + '.join(STACK)}) on {n:,} completions: {total:.2f} s")
    for name, seconds in per_reward.items():
        print(f"  {name:12s} {seconds:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
