"""`unirg rl`: run GRPO from a recipe, with dotted overrides."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the `rl` subcommand."""
    parser = subparsers.add_parser(
        "rl", help="Run GRPO post-training from a recipe.",
        description="Run GRPO from a recipe. Overrides are key.path=value and win over the file, "
                    "e.g. grpo.num_generations=8 rewards.0.weight=0.5. A run resumes from its last checkpoint.")
    parser.add_argument("--recipe", default="demo", help="Recipe file or name under recipes/ (default: demo).")
    parser.add_argument("--run-dir", default=None, help="Run folder (default: the recipe's output.dir).")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Recipe overrides.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the recipe, train, and print the summary."""
    from unirg.recipe import load_recipe
    from unirg.reporting import print_run_summary
    from unirg.training.pipeline import run_pipeline

    recipe = load_recipe(args.recipe, args.overrides)
    result = run_pipeline(recipe, args.run_dir)
    print_run_summary(result)
    return 0
