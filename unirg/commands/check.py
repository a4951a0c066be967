"""`unirg check --recipe R`: list every model-weight file a recipe's rewards need, present or missing."""

from __future__ import annotations

import argparse

from rewards.weight_check import missing_weights, require_recipe_weights, reward_weight_files  # noqa: F401


def register(subparsers) -> None:
    """Add the `check` subcommand."""
    parser = subparsers.add_parser(
        "check", help="List the model weights a recipe's rewards need, and whether each is on this machine.",
        description="For each reward of the recipe, list the weight files it loads: 'ok' with the path, or "
                    "'MISSING' with where it was looked for and how to get it. Exits 1 when anything is "
                    "missing. Nothing is downloaded and no model is loaded.")
    parser.add_argument("--recipe", default="demo", help="Recipe file or name under recipes/ (default: demo).")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Recipe overrides, as for `unirg rl`.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the weights table of the recipe; exit status 1 when a file is missing."""
    from unirg.errors import RewardError
    from unirg.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    missing = unknown = 0
    print(f"recipe {recipe.name}: {len(recipe.rewards)} reward(s)")
    for entry in recipe.rewards:
        try:
            files = reward_weight_files(entry.name, entry.options)
        except RewardError as error:  # keep going: the user wants every problem of the recipe at once
            print(f"  {entry.name} (weight {entry.weight:g}): ERROR {error}")
            unknown += 1
            continue
        print(f"  {entry.name} (weight {entry.weight:g})" + ("" if files else ": no model weights"))
        for weight_file in files:
            print(f"    {weight_file.describe()}")
            missing += not weight_file.present
    if missing or unknown:
        print(f"{missing} file(s) missing, {unknown} reward(s) not found: see docs/model_weights.md")
        return 1
    print("all weights present")
    return 0
