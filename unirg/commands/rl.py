"""`unirg rl`: run GRPO from a recipe, with dotted overrides, in this process or in Ray-placed trainer processes."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the `rl` subcommand."""
    parser = subparsers.add_parser(
        "rl", help="Run GRPO post-training from a recipe.",
        description="Run GRPO from a recipe. Overrides are key.path=value and win over the file, "
                    "e.g. grpo.num_generations=8 rewards.0.weight=0.5. A run resumes from its last checkpoint. "
                    "cluster.trainer_workers=N trains in N processes placed by Ray (also under `ray job submit`).")
    parser.add_argument("--recipe", default="demo", help="Recipe file or name under recipes/ (default: demo).")
    parser.add_argument("--run-dir", default=None, help="Run folder (default: the recipe's output.dir).")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Recipe overrides.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the recipe, train where its `cluster` section says, and print the summary."""
    from unirg.distributed import is_main_process
    from unirg.orchestration.launch import launch
    from unirg.recipe import load_recipe
    from unirg.reporting import print_run_summary

    recipe = load_recipe(args.recipe, args.overrides)
    result = launch(recipe, args.run_dir)
    # Under torchrun every rank gets here; with Ray-placed trainers only this launching process does.
    if is_main_process():
        print_run_summary(result)
    return 0
