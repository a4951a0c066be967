"""`unirg eval`: the ReXrank-style metric table for a checkpoint (generate, then score) or a predictions file."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    """Add the `eval` subcommand."""
    parser = subparsers.add_parser(
        "eval", help="Score a checkpoint or a predictions file with the report-generation metrics.",
        description="Either --predictions P.jsonl (lines {study_id, prediction, reference}) or --recipe R "
                    "--checkpoint C (generates on the recipe's held-out split, then scores).")
    parser.add_argument("--predictions", type=Path, help="JSONL with study_id, prediction and reference.")
    parser.add_argument("--references", type=Path, help="Optional JSONL of study_id + reference (+ sections).")
    parser.add_argument("--recipe", help="Recipe whose held-out split is generated on.")
    parser.add_argument("--checkpoint", help="Model folder to generate with (default: the recipe's model).")
    parser.add_argument("--out", type=Path, default=Path("eval"), help="Folder for metrics.csv/json.")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Recipe overrides.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score, print the table, write metrics.csv and metrics.json."""
    from unirg.errors import UnirgError
    from unirg.evaluation.metrics import evaluate_settings, print_tables, write_tables

    if args.predictions:
        from unirg.evaluation.predictions import read_predictions

        rows = read_predictions(args.predictions, args.references)
        findings = [r.reference_findings if r.reference_findings is not None else _findings_of(r.reference)
                    for r in rows]
        impressions = [r.reference_impression if r.reference_impression is not None else _impression_of(r.reference)
                       for r in rows]
        settings = evaluate_settings([r.prediction for r in rows], findings, impressions)
    elif args.recipe:
        from unirg.evaluation.heldout import evaluate_checkpoint
        from unirg.recipe import load_recipe

        recipe = load_recipe(args.recipe, args.overrides)
        settings = evaluate_checkpoint(recipe, args.checkpoint, args.out)
    else:
        raise UnirgError("give --predictions FILE.jsonl, or --recipe R (with --checkpoint C)")
    write_tables(settings, args.out)
    print_tables(settings)
    print(f"metrics written to {args.out / 'metrics.csv'} and {args.out / 'metrics.json'}")
    return 0


def _findings_of(reference: str) -> str:
    from unirg.prompts.parser import parse_completion

    parsed = parse_completion(reference)
    return parsed.findings if parsed.has_findings_header else parsed.report


def _impression_of(reference: str) -> str:
    from unirg.prompts.parser import parse_completion

    return parse_completion(reference).impression
