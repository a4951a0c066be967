"""RaTEScore (entity-aware report similarity, Zhao et al. 2024) through the optional `ratescore` package.

The package holds the metric: a DeBERTa NER model finds medical entities, BioLORD embeds them, and
typed entity matches are weighted by an affinity matrix. unirg only checks that both models are on
this machine (a local folder or the hub cache) before loading, and imports the package lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rewards.api import RewardPlugin
from rewards.chexbert.weights import WeightFile, hub_cached_file, require
from unirg.errors import RewardError

NER_MODEL = "Angelakeke/RaTE-NER-Deberta"
EMBEDDING_MODEL = "FremyCompany/BioLORD-2023-C"
INSTALL_HINT = "pip install 'unirg[ratescore]'   (the RaTEScore package)"


def _model_file(what: str, name: str, option: str) -> WeightFile:
    how = f"huggingface-cli download {name}   (or set options.{option}: a local folder)"
    path = Path(name).expanduser()
    if path.is_dir() or name.startswith(("/", ".", "~")):  # a local folder, present or not
        return WeightFile(what, path if path.is_dir() else None, name, how)
    return WeightFile(what, hub_cached_file((name,), "config.json"), f"the hub cache: {name}", how)


def ratescore_files(ner_model: str = NER_MODEL, embedding_model: str = EMBEDDING_MODEL) -> list[WeightFile]:
    """The two models RaTEScore loads: the entity tagger and the entity encoder."""
    return [_model_file(f"RaTEScore NER model {ner_model}", ner_model, "ner_model"),
            _model_file(f"RaTEScore entity encoder {embedding_model}", embedding_model, "embedding_model")]


class RaTEScorer:
    """One loaded RaTEScore (both models) per process or Ray actor."""

    def __init__(self, ner_model: str = NER_MODEL, embedding_model: str = EMBEDDING_MODEL,
                 device: str = "cpu", batch_size: int = 8, affinity_matrix: str = "long") -> None:
        files = ratescore_files(ner_model, embedding_model)
        require(files, "ratescore")
        try:
            from RaTEScore import RaTEScore
        except ImportError:
            raise RewardError(f"the ratescore reward needs the RaTEScore package: {INSTALL_HINT}") from None
        # The package takes hub ids or folders; hand it the resolved local folders so nothing is fetched.
        ner, embedding = (str(f.path.parent if f.path.is_file() else f.path) for f in files)
        self.scorer = RaTEScore(bert_model=ner, eval_model=embedding, batch_size=batch_size,
                                use_gpu=str(device).startswith("cuda"), affinity_matrix=affinity_matrix)

    def score(self, candidates: Sequence[str], references: Sequence[str]) -> list[float]:
        """RaTEScore per pair, in [0, 1]."""
        return [float(s) for s in self.scorer.compute_score(list(candidates), list(references))]


class RaTEScoreReward(RewardPlugin):
    """`ratescore`: RaTEScore of each report against its reference; range [0, 1], higher is better.

    Options: ner_model, embedding_model (hub ids in the cache, or local folders), device, batch_size,
    affinity_matrix ("long" or "short", or a JSON file).
    """

    name = "ratescore"
    resources = {"num_gpus": 0.25}

    def __init__(self, ner_model: str = NER_MODEL, embedding_model: str = EMBEDDING_MODEL, device: str = "auto",
                 batch_size: int = 8, affinity_matrix: str = "long") -> None:
        require(ratescore_files(ner_model, embedding_model), self.name)
        self.options = {"ner_model": ner_model, "embedding_model": embedding_model, "device": device,
                        "batch_size": batch_size, "affinity_matrix": affinity_matrix}
        self._scorer: RaTEScorer | None = None

    @staticmethod
    def weight_files(ner_model: str = NER_MODEL, embedding_model: str = EMBEDDING_MODEL, **_options) -> list[WeightFile]:
        return ratescore_files(ner_model, embedding_model)

    def __getstate__(self) -> dict:
        # Ray ships the plugin to its actor without the loaded models; the actor loads its own copy.
        return {**self.__dict__, "_scorer": None}

    def score(self, reports: Sequence[str], references: Sequence[str]) -> list[float | None]:
        if self._scorer is None:
            from rewards.chexbert.plugins import resolve_device

            self._scorer = RaTEScorer(**{**self.options, "device": resolve_device(self.options["device"])})
        return list(self._scorer.score(reports, references))
