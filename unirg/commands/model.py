"""`unirg model`: build the tiny offline vision-language model."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the `model` subcommand and its `tiny` action."""
    parser = subparsers.add_parser("model", help="Build models locally.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    tiny = actions.add_parser(
        "tiny", help="Build a tiny randomly initialised Qwen2-VL, Qwen2.5-VL or Qwen3-VL model with a locally trained tokenizer.")
    tiny.add_argument("--out", required=True, help="Folder to write the model, tokenizer and processor to.")
    tiny.add_argument("--arch", choices=["qwen2_vl", "qwen2_5_vl", "qwen3_vl"], default="qwen2_vl")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--hidden-size", type=int, default=64)
    tiny.add_argument("--num-layers", type=int, default=2)
    tiny.add_argument("--image-size", type=int, default=224, help="Largest image side the processor keeps.")
    tiny.set_defaults(func=run_tiny)


def run_tiny(args: argparse.Namespace) -> int:
    """Build the tiny model and say where it is."""
    import json

    from unirg.models.tiny import build_tiny_model

    out = build_tiny_model(args.out, arch=args.arch, seed=args.seed, hidden_size=args.hidden_size,
                           num_layers=args.num_layers, image_size=args.image_size)
    info = json.loads((out / "unirg_tiny.json").read_text())
    print(f"tiny {args.arch} model with {info['parameters']:,} parameters written to {out}")
    return 0
