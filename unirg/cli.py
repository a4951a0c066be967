"""The `unirg` command line: one subcommand per module in `unirg.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module defines `register(subparsers)`, which adds its subcommand and sets `func`
# on the parser it adds. Imports stay lazy inside each command so `unirg --help` is fast.
COMMAND_MODULES: tuple[str, ...] = (
    "unirg.commands.rl",
    "unirg.commands.model",
    "unirg.commands.eval",
    "unirg.commands.check",
    "unirg.commands.data",
    "unirg.commands.label",
    "unirg.commands.traces",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand."""
    from unirg import __version__

    parser = argparse.ArgumentParser(
        prog="unirg",
        description="RL post-training for vision-language models that write radiology reports.",
    )
    parser.add_argument("--version", action="version", version=f"unirg {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    from unirg.errors import UnirgError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UnirgError as error:
        print(f"unirg {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unirg {args.command}: interrupted", file=sys.stderr)
        return 130
