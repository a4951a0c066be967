"""Writing a trained policy atomically, as a full model folder any later stage can load."""

from __future__ import annotations

import shutil
from pathlib import Path


def save_policy(model, processor, dest: Path) -> Path:
    """Save `model` (LoRA merged into full weights) and its processor to `dest`, atomically.

    The folder is written beside `dest` and renamed into place, so a kill mid-write never leaves a
    `dest` that looks complete.
    """
    if hasattr(model, "merge_and_unload"):
        # Later stages (GRPO after SFT, eval, step 2) load plain model folders; an adapter folder would
        # need the base model path carried along.
        model = model.merge_and_unload()
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    processor.save_pretrained(partial)
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    return dest
