"""RadGraph annotation throughput: reports/s one report per forward (the radgraph package) vs batched.

Usage: python benchmarks/bench_radgraph.py [--reports 256] [--batch-sizes 1 16 64] [--threads 1] [--base]
    [--model-path ARCHIVE_OR_FOLDER] [--device cpu] [--work DIR]
Each row annotates the same `--reports` distinct synthetic reports (bench_rewards' generator) with
`RadGraphAnnotator(batch_size=...)`; batch size 1 is the package's own forward. Models: the tests' tiny
random DyGIE++ (2-layer, 32-wide BERT) always; with --base the same layout at BERT-base width and depth
(768 wide, 12 layers; random weights, so it shows compute cost, not annotation quality); and the published
radgraph model when --model-path is given or it sits in the hub cache. Each batched row also checks its
annotations equal the batch-size-1 ones. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "rewards" / "model_based"))

from bench_rewards import synthetic_report  # noqa: E402


def build_model(work: Path, base: bool) -> Path:
    """The tests' tiny RadGraph model, or (base=True) the same layout at BERT-base size, as a folder."""
    import tiny_weights

    if base:  # the helper reads these module constants when it builds the encoder
        tiny_weights.HIDDEN, tiny_weights.LAYERS, tiny_weights.INTERMEDIATE = 768, 12, 3072
    tiny_weights.write_tiny_radgraph(work)
    # A folder named after the model type is read in place, so nothing lands in the user's unpack cache.
    return (work / "unpacked").rename(work / "radgraph")


def bench(annotator, reports: list[str], batch_sizes: list[int]) -> tuple[list[tuple[int, float, bool | None]], str]:
    """(batch size, reports/s, same annotations as batch size 1) per batch size, a warm-up call first; and
    the mean entities and relations per report (their post-processing is Python, per prediction)."""
    rows, reference, found = [], None, "-"
    annotator.batch_size = 1
    annotator.annotate(reports[:4])
    for batch_size in batch_sizes:
        annotator.batch_size = batch_size
        started = time.perf_counter()
        annotations = annotator.annotate(reports)
        rate = len(reports) / (time.perf_counter() - started)
        if batch_size == 1:
            reference = annotations
        rows.append((batch_size, rate, None if reference is None else annotations == reference))
        entities = [e for a in annotations for e in a["entities"].values()]
        relations = sum(len(e["relations"]) for e in entities)
        found = f"{len(entities) / len(reports):.0f} / {relations / len(reports):.0f}"
    return rows, found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=256, help="distinct synthetic reports per row")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--base", action="store_true", help="also time a random BERT-base-size model")
    parser.add_argument("--model-path", help="the published radgraph archive or folder (default: the hub cache)")
    parser.add_argument("--work", type=Path, help="folder for the built models (default: a temporary one)")
    args = parser.parse_args()

    import torch

    from rewards.radgraph.model import RadGraphAnnotator, model_files

    torch.set_num_threads(args.threads)
    rng = random.Random(0)
    reports = [synthetic_report(rng, i) for i in range(args.reports)]
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-radgraph-"))
    models = [("tiny (random, 32 wide, 2 layers)", build_model(work / "tiny", base=False))]
    if args.base:
        models.append(("BERT-base size (random, 768 wide, 12 layers)", build_model(work / "base", base=True)))
    published = model_files("radgraph", args.model_path)
    if all(f.present for f in published):
        models.append(("published radgraph", published[0].path))
    else:
        print(f"published radgraph model not found ({published[0].looked_in}): skipped", file=sys.stderr)

    words = sum(len(r.split()) for r in reports) / len(reports)
    print(f"{args.reports} reports, {words:.0f} words each on average; device {args.device}, "
          f"{args.threads} torch thread(s)\n")
    print("| model | entities / relations per report | batch size | reports/s | speed-up | same annotations "
          "as batch size 1 |")
    print("|---|---|---:|---:|---:|---|")
    for name, path in models:
        annotator = RadGraphAnnotator("radgraph", model_path=path, device=args.device)
        rows, found = bench(annotator, reports, args.batch_sizes)
        single = dict((b, r) for b, r, _ in rows).get(1)
        for batch_size, rate, same in rows:
            speedup = f"{rate / single:.1f}x" if single else "-"
            check = "-" if same is None or batch_size == 1 else ("yes" if same else "NO")
            print(f"| {name} | {found} | {batch_size} | {rate:.1f} | {speedup} | {check} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
