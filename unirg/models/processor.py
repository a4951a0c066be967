"""Image-only Qwen2-VL and Qwen3-VL processors (no torchvision) registered with AutoProcessor, and their chat
templates."""

from __future__ import annotations

from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen2VLConfig, Qwen3VLConfig
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
from transformers.processing_utils import ProcessorMixin

# Qwen's chat layout: a default system turn, then <|im_start|>role\n…<|im_end|>\n per message, and
# each image block rendered as <|vision_start|><|image_pad|><|vision_end|> (the processor expands the
# pad to one token per merged patch).
# The turns of a Qwen chat: role header, text or image placeholders, end marker; then the assistant header.
_TURNS = (
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif -%}" + _TURNS
)

# Qwen3-VL's layout is the same except that no system turn is added when the conversation has none.
QWEN3_VL_CHAT_TEMPLATE = "{%- for message in messages -%}" + _TURNS

# Patch edge in pixels: Qwen2-VL and Qwen2.5-VL cut 14-pixel patches, Qwen3-VL 16-pixel ones; both merge 2×2.
PATCH_SIZE = {"qwen2_vl": 14, "qwen2_5_vl": 14, "qwen3_vl": 16}
MERGE_SIZE = 2


def _init_image_only(processor, image_processor, tokenizer, chat_template) -> None:
    """Set the image/video token fields the stock Qwen processors set, then initialise without a video half."""
    processor.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
    processor.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
    processor.image_token_id = tokenizer.convert_tokens_to_ids(processor.image_token)
    processor.video_token_id = tokenizer.convert_tokens_to_ids(processor.video_token)
    ProcessorMixin.__init__(processor, image_processor, tokenizer, chat_template=chat_template)


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """Qwen2-VL processor with the PIL image processor and no video processor.

    The stock processor insists on a video processor, which imports torchvision; torchvision has no CPU
    build that imports beside torch 2.13's CPU wheel. Images are all report generation needs.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        _init_image_only(self, image_processor, tokenizer, chat_template)


class ImageOnlyQwen3VLProcessor(Qwen3VLProcessor):
    """Qwen3-VL processor with the PIL image processor and no video processor.

    `Qwen3VLProcessor(video_processor=None)` fails, and its video processor needs torchvision (see
    ImageOnlyQwen2VLProcessor). Qwen3-VL reads images with the Qwen2-VL image processor at patch 16, so only
    the video half is left out; the vision start/end tokens Qwen3-VL's processor also records are kept.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        _init_image_only(self, image_processor, tokenizer, chat_template)
        self.vision_start_token = getattr(tokenizer, "vision_start_token", None) or "<|vision_start|>"
        self.vision_end_token = getattr(tokenizer, "vision_end_token", None) or "<|vision_end|>"
        self.vision_start_token_id = tokenizer.convert_tokens_to_ids(self.vision_start_token)
        self.vision_end_token_id = tokenizer.convert_tokens_to_ids(self.vision_end_token)


def register_processors() -> None:
    """Make AutoProcessor return the image-only processor for Qwen2-VL, Qwen2.5-VL and Qwen3-VL folders.

    Without the registration AutoProcessor falls back to the bare tokenizer when the video processor
    cannot load, and training silently goes text-only.
    """
    for config_class in (Qwen2VLConfig, Qwen2_5_VLConfig):
        AutoProcessor.register(config_class, ImageOnlyQwen2VLProcessor, exist_ok=True)
    AutoProcessor.register(Qwen3VLConfig, ImageOnlyQwen3VLProcessor, exist_ok=True)


IMAGE_ONLY_PROCESSORS = {"qwen2_vl": ImageOnlyQwen2VLProcessor, "qwen2_5_vl": ImageOnlyQwen2VLProcessor,
                         "qwen3_vl": ImageOnlyQwen3VLProcessor}


def image_only_processor_for(model_type: str):
    """The image-only processor class for a config's `model_type` where the stock one cannot load, else None.

    A hub checkpoint names the stock processor (`Qwen3VLProcessor`) in its processor config, so AutoProcessor
    takes that over the registration and fails on the video processor without torchvision. With torchvision
    (the GPU profile) the stock processor loads and nothing is replaced.
    """
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:
        return None
    return IMAGE_ONLY_PROCESSORS.get(model_type)


def build_processor(tokenizer, image_size: int = 224, arch: str = "qwen2_vl"):
    """Wrap a tokenizer with a PIL image processor bounded to about `image_size`² pixels, for `arch`'s patch size."""
    if arch not in PATCH_SIZE:
        raise ValueError(f"unknown architecture {arch!r}; use one of {', '.join(PATCH_SIZE)}")
    pixels = image_size * image_size
    patch = PATCH_SIZE[arch]
    # The smallest image is one merged 2×2 block of patches on each side, twice over (56² for patch 14).
    smallest = (2 * patch * MERGE_SIZE) ** 2
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=min(smallest, pixels), max_pixels=pixels, patch_size=patch, merge_size=MERGE_SIZE,
        temporal_patch_size=2,
    )
    if arch == "qwen3_vl":
        return ImageOnlyQwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                         chat_template=QWEN3_VL_CHAT_TEMPLATE)
    return ImageOnlyQwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                     chat_template=CHAT_TEMPLATE)


register_processors()
