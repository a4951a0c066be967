"""The CheXbert rewards: `semb_score` (embedding cosine) and `chexbert_f1` (label agreement).

Both share one loaded labeler per process (or per Ray reward actor): the first plugin to score loads
it, the other reuses it. Weights are located when a plugin is built, so a run without them stops
before training; the model itself loads in `setup`, inside whichever process scores.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from rewards.api import RewardPlugin
from rewards.chexbert.model import CLASS_TO_LABEL, CheXbert
from rewards.chexbert.scores import semb_scores
from rewards.chexbert.weights import WeightFile, chexbert_files, require
from rewards.clinical import TOP5_INDICES, corpus_f1, positives, sample_f1

# One labeler per (checkpoint, bert folder, device) in this process.
_LABELERS: dict[tuple[str, str, str], CheXbert] = {}


def resolve_device(device: str) -> str:
    """`auto` means the GPU when this process sees one (a Ray reward actor given a GPU share), else the CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def shared_labeler(files: Sequence[WeightFile], device: str, batch_size: int) -> CheXbert:
    """The process-wide CheXbert for these files, loaded on first call."""
    checkpoint, config, _vocab = (f.path for f in files)
    device = resolve_device(device)
    key = (str(checkpoint), str(config.parent), device)
    if key not in _LABELERS:
        _LABELERS[key] = CheXbert(checkpoint, config.parent, device=device, batch_size=batch_size)
    return _LABELERS[key]


class _CheXbertReward(RewardPlugin):
    """Shared options: where the weights are (default: the hub cache), the device, reports per forward pass."""

    # Ray reward actors host it with this share of a GPU when one exists (a 110M-parameter BERT).
    resources = {"num_gpus": 0.25}

    def __init__(self, checkpoint: str | os.PathLike | None = None, bert_dir: str | os.PathLike | None = None,
                 device: str = "auto", batch_size: int = 32) -> None:
        self.files = chexbert_files(checkpoint, bert_dir)
        require(self.files, self.name)
        self.device = device
        self.batch_size = batch_size

    @staticmethod
    def weight_files(checkpoint: str | None = None, bert_dir: str | None = None, **_options) -> list[WeightFile]:
        """What `unirg check` lists for this reward."""
        return chexbert_files(checkpoint, bert_dir)

    @property
    def labeler(self) -> CheXbert:
        return shared_labeler(self.files, self.device, self.batch_size)

    def setup(self) -> None:
        self.labeler  # noqa: B018 - loads the model now rather than inside the first timed score

    def labels(self, reports: Sequence[str], cached: bool = False) -> list[list[int | None]]:
        """CheXpert labels (1, 0, -1, None) per report in CONDITIONS order; `cached` for references."""
        _, classes = (self.labeler.encode_cached if cached else self.labeler.encode)(list(reports))
        return [[CLASS_TO_LABEL[c] for c in row] for row in classes.tolist()]


class SembScore(_CheXbertReward):
    """Cosine similarity of the CheXbert [CLS] embeddings of report and reference (SembScore).

    Inputs: reports, references. Range [-1, 1] (about 0-1 in practice); higher is better; identical
    reports score 1.0. A RadCliQ-v1 input; UniRG step-1 weight 0.253. Options: checkpoint (path to
    chexbert.pth), bert_dir (folder with bert-base-uncased config.json and vocab.txt), device, batch_size.
    """

    name = "semb_score"
    value_range = (-1.0, 1.0)

    def score(self, reports: Sequence[str], references: Sequence[str]) -> list[float | None]:
        hypotheses, _ = self.labeler.encode(list(reports))
        targets, _ = self.labeler.encode_cached(list(references))
        return semb_scores(hypotheses, targets)


class CheXbertF1(_CheXbertReward):
    """F1 between the CheXbert labels of report and reference, uncertain counted as positive by default.

    Inputs: reports, references. Per report: 2·|shared positives| / (|report positives| + |reference
    positives|), 1.0 when neither has one (rewards.clinical.sample_f1, as chexpert_f1). Range [0, 1],
    higher is better. Options: labels (14 or 5), uncertain_as_positive, and the CheXbert options of
    semb_score. `corpus_f1` gives the micro/macro F1-14 and F1-5 of report-generation papers.
    Example: report "Small left effusion." vs reference "Effusion and cardiomegaly." → 0.667.
    """

    name = "chexbert_f1"

    def __init__(self, labels: int = 14, uncertain_as_positive: bool = True, **chexbert_options) -> None:
        if labels not in (14, 5):
            raise ValueError("chexbert_f1: option 'labels' must be 14 or 5")
        super().__init__(**chexbert_options)
        self.indices = None if labels == 14 else TOP5_INDICES
        self.uncertain_as_positive = uncertain_as_positive

    def score(self, reports: Sequence[str], references: Sequence[str]) -> list[float | None]:
        hypotheses, targets = self.labels(reports), self.labels(references, cached=True)
        return [sample_f1(positives(h, self.uncertain_as_positive, self.indices),
                          positives(r, self.uncertain_as_positive, self.indices))
                for h, r in zip(hypotheses, targets, strict=True)]

    def corpus_f1(self, reports: Sequence[str], references: Sequence[str]) -> dict[str, float]:
        """CheXbert-F1 of a whole set: micro/macro over the 14 labels and over the 5, uncertain as positive."""
        return chexbert_corpus_f1(self.labels(reports), self.labels(references, cached=True))


def chexbert_corpus_f1(hypotheses: Sequence[Sequence[int | None]],
                       references: Sequence[Sequence[int | None]]) -> dict[str, float]:
    """micro_14, macro_14, micro_5, macro_5 from CheXpert label rows (uncertain as positive), as f1chexbert."""
    result = {}
    for suffix, indices in (("14", None), ("5", TOP5_INDICES)):
        scores = corpus_f1([positives(h, True, indices) for h in hypotheses],
                           [positives(r, True, indices) for r in references])
        result[f"micro_{suffix}"], result[f"macro_{suffix}"] = scores["micro"], scores["macro"]
    return result


__all__ = ["CheXbertF1", "SembScore", "chexbert_corpus_f1"]
