"""`unirg data synth` renders synthetic studies; `unirg data check` lists every bad row of a source."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(subparsers) -> None:
    """Add the `data` subcommand with its `synth` and `check` actions."""
    parser = subparsers.add_parser("data", help="Render synthetic chest X-rays; check a data source.",
                                   description="Data tools: `synth` renders studies, `check` scans a source.")
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")

    synth = actions.add_parser(
        "synth", help="Render synthetic chest X-ray studies (PNG images + manifest.jsonl).",
        description="Render N synthetic studies with known findings, reference reports and CheXpert-14 "
                    "labels into DIR (DIR/manifest.jsonl, DIR/images/*.png). Same seed, same bytes.")
    synth.add_argument("--n", type=int, required=True, help="Number of studies.")
    synth.add_argument("--out", required=True, help="Output folder.")
    synth.add_argument("--seed", type=int, default=0, help="Generator seed (default 0).")
    synth.add_argument("--size", type=int, default=224, help="Image side in pixels (default 224).")
    synth.set_defaults(func=run_synth)

    check = actions.add_parser(
        "check", help="Report every bad row of a recipe's data source or of a manifest.",
        description="Scan every split of the source and print each bad row with its file, row, study id and "
                    "reason (missing or unreadable image, both sections empty, non-text report, image too "
                    "small). Exits 1 when any row is bad.")
    what = check.add_mutually_exclusive_group(required=True)
    what.add_argument("--recipe", help="Recipe file or name under recipes/.")
    what.add_argument("--manifest", help="A manifest file (.jsonl or .csv) on its own.")
    check.add_argument("--work-dir", default=None,
                       help="Where synthetic studies are rendered (default: a temporary folder).")
    check.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Recipe overrides, as for `unirg rl`.")
    check.set_defaults(func=run_check)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def run_synth(args: argparse.Namespace) -> int:
    """Render the studies and say where they went and how long it took."""
    from unirg.data.synthetic import generate_studies
    from unirg.errors import DataError

    if args.n < 1 or args.size < 32:
        raise DataError("--n must be at least 1 and --size at least 32")
    start = time.perf_counter()
    manifest = generate_studies(args.out, args.n, seed=args.seed, size=args.size)
    print(f"rendered {args.n} studies ({args.size}x{args.size}) in {time.perf_counter() - start:.1f} s: {manifest}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Print every bad row; exit 1 when there is any."""
    import tempfile

    from unirg.data import read_splits
    from unirg.data.config import DataConfig

    if args.manifest:
        data = DataConfig(source="manifest", path=args.manifest)
    else:
        from unirg.recipe import load_recipe

        data = load_recipe(args.recipe, args.overrides).data
    with tempfile.TemporaryDirectory() as scratch:
        splits = read_splits(data, Path(args.work_dir or scratch))
    total_bad = 0
    for split, (records, bad_rows) in splits.items():
        print(f"{split}: {len(records)} good, {len(bad_rows)} bad")
        for bad in bad_rows:
            print(f"  {bad.describe()}")
        total_bad += len(bad_rows)
    if total_bad:
        print(f"{total_bad} bad row(s): fix them, or set data.on_bad_row=skip to leave them out "
              "(they are then listed in the run folder's bad_rows.jsonl)", file=sys.stderr)
    return 1 if total_bad else 0
