"""The tiny offline VLMs (Qwen2-VL, Qwen2.5-VL, Qwen3-VL): build, reload through the Auto classes offline, see
images, keep <think>, and pad prompts on the side TRL's GRPO expects."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from PIL import Image

from unirg.models.tiny import build_tiny_model

PROCESSOR_CLASS = {"qwen2_vl": "ImageOnlyQwen2VLProcessor", "qwen2_5_vl": "ImageOnlyQwen2VLProcessor",
                   "qwen3_vl": "ImageOnlyQwen3VLProcessor"}
MODEL_CLASS = {"qwen2_vl": "Qwen2VLForConditionalGeneration", "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
               "qwen3_vl": "Qwen3VLForConditionalGeneration"}


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def tiny_dir(request, tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp(request.param), arch=request.param, image_size=112)


def _arch(tiny_dir) -> str:
    import json

    return json.loads((tiny_dir / "unirg_tiny.json").read_text())["arch"]


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
    assert out.split() == [PROCESSOR_CLASS[_arch(tiny_dir)], "True", MODEL_CLASS[_arch(tiny_dir)]]


def test_image_changes_the_logits(tiny_dir):
    from transformers import AutoModelForImageTextToText

    from unirg.models.loading import load_processor

    processor = load_processor(str(tiny_dir))
    model = AutoModelForImageTextToText.from_pretrained(tiny_dir).eval()
    text = processor.apply_chat_template(_messages(), add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n")
    # Qwen2-VL's template adds a default system turn; Qwen3-VL's adds none.
    assert text.startswith("<|im_start|>system\n") == (_arch(tiny_dir) != "qwen3_vl")
    logits = []
    for shade in (0, 255):
        inputs = processor(text=[text], images=[Image.new("RGB", (112, 112), (shade,) * 3)], return_tensors="pt")
        assert (inputs["input_ids"] == processor.image_token_id).sum() == inputs["image_grid_thw"].prod() // 4
        # Qwen3-VL cuts 16-pixel patches, the Qwen2 family 14-pixel ones.
        patch = 16 if _arch(tiny_dir) == "qwen3_vl" else 14
        assert inputs["pixel_values"].shape[1] == 3 * 2 * patch * patch
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


def test_image_token_types_follow_left_padding(tiny_dir):
    """TRL's GRPO left-pads each prompt's ids itself but takes mm_token_type_ids from one padded processor call:
    both must mark the same positions, or M-RoPE positions in the loss forward are wrong (Qwen3-VL fails)."""
    from trl.trainer.utils import pad

    from unirg.models.loading import load_processor

    processor = load_processor(str(tiny_dir))
    texts = [processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": words}]}],
        add_generation_prompt=True, tokenize=False) for words in ("Report.", "Write the full report, please.")]
    image = Image.new("RGB", (112, 112), (90, 90, 90))
    each = [processor(text=[text], images=[image], return_tensors="pt")["input_ids"][0] for text in texts]
    assert len(each[0]) != len(each[1])
    prompt_ids = pad(each, padding_value=processor.tokenizer.pad_token_id, padding_side="left")
    types = processor(text=texts, images=[image, image], padding=True, return_tensors="pt")["mm_token_type_ids"]
    assert torch.equal(types == 1, prompt_ids == processor.image_token_id)


STOCK = {"qwen2_vl": ("Qwen2VLProcessor", "Qwen2VLVideoProcessor"),
         "qwen2_5_vl": ("Qwen2_5_VLProcessor", "Qwen2VLVideoProcessor"),
         "qwen3_vl": ("Qwen3VLProcessor", "Qwen3VLVideoProcessor")}


def test_hub_layout_loads_the_image_only_processor_without_torchvision(tiny_dir, tmp_path):
    """A hub checkpoint names the stock processor and ships a video processor config; without torchvision the
    stock processor cannot load, so load_processor takes the image-only one for the family."""
    import importlib.util
    import json
    import shutil

    from unirg.models.loading import load_processor

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("with torchvision the stock processor loads (GPU profile)")
    processor_class, video_class = STOCK[_arch(tiny_dir)]
    hub = shutil.copytree(tiny_dir, tmp_path / "hub")
    config = json.loads((hub / "processor_config.json").read_text())
    (hub / "processor_config.json").write_text(json.dumps({**config, "processor_class": processor_class}))
    (hub / "video_preprocessor_config.json").write_text(json.dumps({"video_processor_type": video_class}))
    processor = load_processor(str(hub))
    assert type(processor).__name__ == PROCESSOR_CLASS[_arch(tiny_dir)]
    assert processor.image_processor.patch_size == (16 if _arch(tiny_dir) == "qwen3_vl" else 14)


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
