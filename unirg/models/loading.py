"""Load the policy and its processor from an HF id, a local folder, or the tiny offline factory."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from unirg.errors import RecipeError
from unirg.recipe import ModelConfig

TINY = "tiny"


def tiny_model_dir(model: ModelConfig, cache_root: Path) -> Path:
    """Where the tiny model for these settings lives; the name changes whenever a setting does."""
    key = hashlib.sha256(json.dumps(model.tiny.model_dump(), sort_keys=True).encode()).hexdigest()[:10]
    return cache_root / f"tiny-{model.tiny.arch}-{key}"


def resolve_model_path(model: ModelConfig, cache_root: Path, corpus: list[str] | None = None) -> str:
    """Return what `from_pretrained` should load, building the tiny model first when asked for.

    `best:RUN_DIR` names the best validation checkpoint of another run (see unirg.training.selection).
    """
    if model.name_or_path.startswith("best:"):
        from unirg.training.selection import best_checkpoint

        return best_checkpoint(model.name_or_path)
    if model.name_or_path == TINY:
        from unirg.models.tiny import build_tiny_model

        folder = tiny_model_dir(model, cache_root)
        if not (folder / "config.json").is_file():
            tiny = model.tiny
            build_tiny_model(folder, arch=tiny.arch, texts=corpus or (), seed=tiny.seed,
                             hidden_size=tiny.hidden_size, num_layers=tiny.num_layers, image_size=tiny.image_size,
                             vision_width=tiny.vision_width, vision_depth=tiny.vision_depth)
        return str(folder)
    path = Path(model.name_or_path)
    looks_local = model.name_or_path.startswith((".", "/", "~")) or path.exists()
    if looks_local and not (path.expanduser() / "config.json").is_file():
        raise RecipeError(f"model.name_or_path: no model folder at {model.name_or_path} (expected a config.json "
                          "there); give a local model folder, a Hugging Face id, or 'tiny'")
    return str(path.expanduser()) if looks_local else model.name_or_path


def load_processor(name_or_path: str, trust_remote_code: bool = False):
    """Load the processor; fails loudly if only a tokenizer comes back (training would go text-only)."""
    from transformers import AutoConfig, AutoProcessor

    # Importing the module registers the image-only processors with AutoProcessor.
    from unirg.models.processor import image_only_processor_for

    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    image_only = image_only_processor_for(getattr(config, "model_type", ""))
    if image_only is not None:
        processor = image_only.from_pretrained(name_or_path)
    else:
        processor = AutoProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    if not hasattr(processor, "image_processor"):
        raise RecipeError(f"model.name_or_path: {name_or_path} has no image processor (AutoProcessor returned "
                          f"{type(processor).__name__}); unirg trains vision-language models")
    # Left padding, as TRL's GRPOTrainer loads a processor itself: it left-pads the prompt ids but takes
    # `mm_token_type_ids` from a processor call with the processor's own padding side. With right padding the
    # image run of a shorter prompt is misplaced, so M-RoPE positions in the loss forward are wrong (Qwen2-VL,
    # silently) or do not fit the mask (Qwen3-VL: "shape mismatch" in get_rope_index). SFT's collator sets its
    # padding side per call and is unaffected.
    processor.tokenizer.padding_side = "left"
    return processor


def load_policy(name_or_path: str, model: ModelConfig):
    """Load the policy weights with the recipe's dtype and attention settings."""
    import torch
    from transformers import AutoModelForImageTextToText

    dtype = "auto" if model.dtype == "auto" else getattr(torch, model.dtype)
    kwargs = {"dtype": dtype, "trust_remote_code": model.trust_remote_code}
    if model.attn_implementation:
        kwargs["attn_implementation"] = model.attn_implementation
    return AutoModelForImageTextToText.from_pretrained(name_or_path, **kwargs)


def peft_config_for(model: ModelConfig):
    """The peft.LoraConfig TRL should wrap the policy with, or None for full fine-tuning."""
    if model.lora is None:
        return None
    from peft import LoraConfig

    lora = model.lora
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM")
