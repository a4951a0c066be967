"""Generate one report per study with a checkpoint (greedy, batched), for evaluation."""

from __future__ import annotations

from typing import Any


def generate_reports(model_path: str, dataset, max_new_tokens: int = 128, batch_size: int = 8,
                     trust_remote_code: bool = False, progress: bool = True) -> list[str]:
    """Greedy-decode a completion for every prompt of `dataset` (columns `prompt` and `images`)."""
    import torch
    from transformers import AutoModelForImageTextToText
    from trl.data_utils import prepare_multimodal_messages

    from unirg.models.loading import load_processor

    processor = load_processor(model_path, trust_remote_code=trust_remote_code)
    model = AutoModelForImageTextToText.from_pretrained(model_path, trust_remote_code=trust_remote_code).eval()
    tokenizer = processor.tokenizer
    # Left padding keeps every prompt's last token at the end, where generation continues.
    tokenizer.padding_side = "left"
    outputs: list[str] = []
    indices = range(0, len(dataset), batch_size)
    if progress:
        from rich.progress import track

        indices = track(indices, description="generating reports", transient=True)
    for start in indices:
        batch: list[dict[str, Any]] = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        texts, images = [], []
        for example in batch:
            study_images = example.get("images") or []
            messages = prepare_multimodal_messages(example["prompt"], images=study_images)
            texts.append(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
            images.extend(image.convert("RGB") for image in study_images)
        inputs = processor(text=texts, images=images or None, return_tensors="pt", padding=True)
        with torch.no_grad():
            generated = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new_tokens = generated[:, inputs["input_ids"].shape[1]:]
        outputs.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return outputs
