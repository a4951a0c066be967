"""The CheXbert labeler: bert-base-uncased with 14 classification heads, loaded from the published chexbert.pth.

Architecture (Smit et al. 2020, stanfordmlgroup/CheXbert): the [CLS] vector of BERT's last layer goes
through dropout into 13 four-class heads (blank, positive, negative, uncertain) for the 12 conditions and
Support Devices, and one two-class head (blank, positive) for No Finding. The [CLS] vector itself is the
report embedding SembScore compares (CXR-Report-Metric).

The published checkpoint was saved from `nn.DataParallel` with transformers 2.x/3.x: a dict with
`model_state_dict` whose keys start with `module.` (`module.bert.…`, `module.linear_heads.<i>.…`), plus
`epoch` and `optimizer_state_dict`. It is read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from unirg.errors import RewardError

# Head order of the checkpoint (CheXbert src/constants.py CONDITIONS).
CONDITIONS: tuple[str, ...] = (
    "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices", "No Finding",
)
# The five conditions of the "F1-5" columns in report-generation papers.
TOP5: tuple[str, ...] = ("Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion")

# Head class index -> CheXpert label: 1 positive, 0 negative, -1 uncertain, None blank (not mentioned).
CLASS_TO_LABEL: dict[int, int | None] = {0: None, 1: 1, 2: 0, 3: -1}

MAX_TOKENS = 512  # BERT's position limit; the reference keeps [CLS] + 510 word pieces + [SEP]


class CheXbertLabeler(nn.Module):
    """BERT plus the 14 CheXbert heads; key names match the published checkpoint without `module.`."""

    def __init__(self, config) -> None:
        from transformers import BertModel

        super().__init__()
        # The checkpoint carries pooler weights although the labeler never uses the pooled output.
        self.bert = BertModel(config, add_pooling_layer=True)
        self.dropout = nn.Dropout(0.1)
        hidden = config.hidden_size
        self.linear_heads = nn.ModuleList([nn.Linear(hidden, 4) for _ in range(13)] + [nn.Linear(hidden, 2)])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the [CLS] embeddings [batch, hidden] and the predicted class per head [batch, 14]."""
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        cls = hidden[:, 0, :]  # [batch, hidden]
        features = self.dropout(cls)
        classes = torch.stack([head(features).argmax(dim=-1) for head in self.linear_heads], dim=1)
        return cls, classes  # [batch, hidden], [batch, 14]


def clean_report(text: str) -> str:
    """The reference's cleaning: strip, newlines to spaces, runs of whitespace to one space."""
    return re.sub(r"\s+", " ", text.strip().replace("\n", " ")).strip()


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The labeler's state dict from a CheXbert checkpoint, `module.` prefixes removed."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated download or a pickle that weights_only refuses
        raise RewardError(f"cannot read the CheXbert checkpoint {path}: {error}. Download chexbert.pth "
                          "again (see docs/model_weights.md).") from None
    state = checkpoint.get("model_state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise RewardError(f"{path} is not a CheXbert checkpoint: expected a dict with 'model_state_dict'")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    # transformers 3.x saved position_ids as a buffer; current BertModel does not persist it.
    state.pop("bert.embeddings.position_ids", None)
    return state


def load_labeler(checkpoint: str | os.PathLike, config_file: str | os.PathLike,
                 device: str | torch.device = "cpu") -> CheXbertLabeler:
    """Build the labeler from a BERT config.json and load the checkpoint strictly, in eval mode."""
    from transformers import BertConfig

    config = BertConfig.from_json_file(str(config_file))
    model = CheXbertLabeler(config)
    state = read_checkpoint(checkpoint)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        raise RewardError(f"{checkpoint} does not fit the CheXbert architecture built from {config_file}: "
                          f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}, wrong shapes "
                          f"{wrong_shape[:5]}. Use the published chexbert.pth with the bert-base-uncased "
                          "config.json.")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def load_tokenizer(vocab_file: str | os.PathLike):
    """bert-base-uncased's WordPiece tokenizer (lower-casing) from its vocab.txt."""
    from transformers import BertTokenizer

    return BertTokenizer(vocab=str(vocab_file), do_lower_case=True, model_max_length=MAX_TOKENS)


class CheXbert:
    """Labels and embeds reports in batches with one loaded labeler (one copy per process or Ray actor)."""

    def __init__(self, checkpoint: str | os.PathLike, bert_dir: str | os.PathLike,
                 device: str | torch.device = "cpu", batch_size: int = 16) -> None:
        bert_dir = Path(bert_dir)
        self.model = load_labeler(checkpoint, bert_dir / "config.json", device)
        self.tokenizer = load_tokenizer(bert_dir / "vocab.txt")
        self.device = torch.device(device)
        self.batch_size = batch_size

    def encode_cached(self, reports: Sequence[str], cache_size: int = 50_000) -> tuple[torch.Tensor, torch.Tensor]:
        """Like `encode`, but remembers results per text: GRPO scores many completions against one reference."""
        cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = self.__dict__.setdefault("_cache", OrderedDict())
        todo = list(dict.fromkeys(text for text in reports if text not in cache))
        if todo:
            embeddings, classes = self.encode(todo)
            for index, text in enumerate(todo):
                cache[text] = (embeddings[index], classes[index])
        rows = []
        for text in reports:
            cache.move_to_end(text)
            rows.append(cache[text])
        while len(cache) > cache_size:
            cache.popitem(last=False)
        if not rows:
            return self.encode([])
        return torch.stack([row[0] for row in rows]), torch.stack([row[1] for row in rows])

    @torch.no_grad()
    def encode(self, reports: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """[CLS] embeddings [n, hidden] (float32, CPU) and head classes [n, 14] of `reports`."""
        embeddings, classes = [], []
        for start in range(0, len(reports), self.batch_size):
            batch = [clean_report(text) for text in reports[start:start + self.batch_size]]
            # truncation at 512 keeps [CLS] + the first 510 pieces + [SEP], as the reference does.
            encoded = self.tokenizer(batch, padding=True, truncation=True, max_length=MAX_TOKENS,
                                     return_tensors="pt").to(self.device)
            cls, predicted = self.model(encoded["input_ids"], encoded["attention_mask"])
            embeddings.append(cls.float().cpu())
            classes.append(predicted.cpu())
        if not embeddings:
            hidden = self.model.bert.config.hidden_size
            return torch.zeros(0, hidden), torch.zeros(0, len(CONDITIONS), dtype=torch.long)
        return torch.cat(embeddings), torch.cat(classes)

    def labels(self, reports: Sequence[str]) -> list[list[int | None]]:
        """CheXpert labels per report, in CONDITIONS order: 1, 0, -1, or None for blank."""
        _, classes = self.encode(reports)
        return [[CLASS_TO_LABEL[c] for c in row] for row in classes.tolist()]

    def embeddings(self, reports: Sequence[str]) -> torch.Tensor:
        """[CLS] embeddings [n, hidden] of `reports`."""
        return self.encode(reports)[0]
