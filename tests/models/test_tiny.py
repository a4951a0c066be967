"""The tiny offline VLM: builds, reloads through the Auto classes offline, sees images, keeps <think>."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from PIL import Image

from unirg.models.tiny import build_tiny_model


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def tiny_dir(request, tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp(request.param), arch=request.param, image_size=112)


def _messages():
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Write the report."}]}]


def test_reloads_offline_in_a_fresh_process(tiny_dir):
    code = (
        "import os; os.environ['HF_HUB_OFFLINE'] = '1'\n"
        "import unirg.models.processor\n"
        "from transformers import AutoProcessor, AutoModelForImageTextToText\n"
        f"p = AutoProcessor.from_pretrained({str(tiny_dir)!r})\n"
        f"m = AutoModelForImageTextToText.from_pretrained({str(tiny_dir)!r})\n"
        "print(type(p).__name__, hasattr(p, 'image_processor'), type(m).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "ImageOnlyQwen2VLProcessor True" in out
    assert "ForConditionalGeneration" in out


def test_image_changes_the_logits(tiny_dir):
    from transformers import AutoModelForImageTextToText

    from unirg.models.loading import load_processor

    processor = load_processor(str(tiny_dir))
    model = AutoModelForImageTextToText.from_pretrained(tiny_dir).eval()
    text = processor.apply_chat_template(_messages(), add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n")
    logits = []
    for shade in (0, 255):
        inputs = processor(text=[text], images=[Image.new("RGB", (112, 112), (shade,) * 3)], return_tensors="pt")
        assert (inputs["input_ids"] == processor.image_token_id).sum() == inputs["image_grid_thw"].prod() // 4
        with torch.no_grad():
            logits.append(model(**inputs).logits[0, -1])
    assert not torch.allclose(logits[0], logits[1])


def test_think_tags_are_ordinary_tokens_that_survive_decoding(tiny_dir):
    from unirg.models.loading import load_processor

    tokenizer = load_processor(str(tiny_dir)).tokenizer
    ids = tokenizer("<think>lungs clear</think>\nFindings: normal.")["input_ids"]
    assert tokenizer.convert_tokens_to_ids("<think>") in ids
    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    assert decoded.startswith("<think>lungs clear</think>")
    assert "<|im_end|>" not in tokenizer.decode(ids + [tokenizer.eos_token_id], skip_special_tokens=True)


def test_tied_head_and_eos(tiny_dir):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_dir)
    assert config.tie_word_embeddings
    from unirg.models.loading import load_processor

    tokenizer = load_processor(str(tiny_dir)).tokenizer
    assert config.text_config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")


def test_cli_builds_model(tmp_path):
    out = subprocess.run([sys.executable, "-m", "unirg", "model", "tiny", "--out", str(tmp_path / "m")],
                         capture_output=True, text=True, check=True).stdout
    assert "parameters written to" in out
    assert (tmp_path / "m" / "model.safetensors").is_file()
