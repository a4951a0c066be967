"""An image-only Qwen2-VL processor (no torchvision) registered with AutoProcessor, and its chat template."""

from __future__ import annotations

from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen2VLConfig
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin

# Qwen's chat layout: a default system turn, then <|im_start|>role\n…<|im_end|>\n per message, and
# each image block rendered as <|vision_start|><|image_pad|><|vision_end|> (the processor expands the
# pad to one token per merged patch).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif -%}"
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


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """Qwen2-VL processor with the PIL image processor and no video processor.

    The stock processor insists on a video processor, which imports torchvision; torchvision has no CPU
    build that imports beside torch 2.13's CPU wheel. Images are all report generation needs.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


def register_processors() -> None:
    """Make AutoProcessor return the image-only processor for Qwen2-VL and Qwen2.5-VL folders.

    Without the registration AutoProcessor falls back to the bare tokenizer when the video processor
    cannot load, and training silently goes text-only.
    """
    for config_class in (Qwen2VLConfig, Qwen2_5_VLConfig):
        AutoProcessor.register(config_class, ImageOnlyQwen2VLProcessor, exist_ok=True)


def build_processor(tokenizer, image_size: int = 224) -> ImageOnlyQwen2VLProcessor:
    """Wrap a tokenizer with a PIL image processor bounded to about `image_size`² pixels."""
    pixels = image_size * image_size
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=min(56 * 56, pixels), max_pixels=pixels, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    return ImageOnlyQwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                     chat_template=CHAT_TEMPLATE)


register_processors()
