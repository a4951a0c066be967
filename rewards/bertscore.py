"""BERTScore through the bert-score package, ReXrank's configuration by default; never downloads.

ReXrank (CXR-Report-Metric): distilroberta-base, layer 5, rescale_with_baseline=True, idf=False, F1.
The model comes from a local folder (`model: /path/to/folder`, with `num_layers` and, for rescaling,
`baseline_path`) or from the Hugging Face hub cache (offline). torch and bert-score are imported on
first use, so listing or importing this module stays light.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

from rewards.api import RewardPlugin
from unirg.errors import RewardError

REXRANK_MODEL = "distilroberta-base"
REXRANK_LAYER = 5
# The hub has moved distilroberta-base under the distilbert organisation; either cache entry works.
_HUB_IDS = {"distilroberta-base": ("distilroberta-base", "distilbert/distilroberta-base")}


def _cached_snapshot(model: str) -> str | None:
    """Local folder of a hub model already in the cache, or None (no network access)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - installed with transformers
        return None
    for repo_id in _HUB_IDS.get(model, (model,)):
        try:
            path = snapshot_download(repo_id, local_files_only=True)
        except Exception:  # not cached (or a malformed id): try the next name
            continue
        if (Path(path) / "config.json").is_file():
            return path
    return None


def _bundled_baseline(model: str) -> str | None:
    import bert_score

    path = Path(bert_score.__file__).parent / "rescale_baseline" / "en" / f"{model}.tsv"
    return str(path) if path.is_file() else None


def _patch_empty_input(tokenizer) -> None:
    """bert-score encodes an empty sentence with build_inputs_with_special_tokens([]), which transformers 5
    tokenizers no longer have; give it the same result (the special tokens alone)."""
    try:
        tokenizer.build_inputs_with_special_tokens  # noqa: B018 - probing for the attribute
    except AttributeError:
        def special_only(ids, _tokenizer=tokenizer):
            return _tokenizer("", add_special_tokens=True)["input_ids"] if not ids else list(ids)

        tokenizer.build_inputs_with_special_tokens = special_only


def _restore_prefix_space(tokenizer) -> None:
    """Make `encode(..., add_prefix_space=True)` prepend a space again, as bert-score relies on.

    bert-score encodes every sentence of a RoBERTa/GPT-2 tokenizer with add_prefix_space=True, so the first
    word gets the same byte-level token as any other word ("ĠNo", not "No"). transformers 5 tokenizers take
    the keyword and ignore it, which changes the first token of every report. bert-score strips each
    sentence before encoding, so one leading space is exactly what the option used to add.
    """
    from transformers import GPT2Tokenizer, RobertaTokenizer

    if not isinstance(tokenizer, (GPT2Tokenizer, RobertaTokenizer)):
        return
    probe = tokenizer.encode("a", add_special_tokens=False, add_prefix_space=True)
    if tokenizer.convert_ids_to_tokens(probe)[:1] != tokenizer.convert_ids_to_tokens(
            tokenizer.encode("a", add_special_tokens=False))[:1]:
        return  # the keyword is honoured (transformers 4): nothing to restore
    encode = tokenizer.encode

    def encode_with_prefix_space(text, *args, add_prefix_space: bool = False, **kwargs):
        if add_prefix_space and isinstance(text, str) and text and not text[0].isspace():
            text = " " + text
        return encode(text, *args, **kwargs)

    tokenizer.encode = encode_with_prefix_space


_SPACES = re.compile(r" +")


def collapse_spaces(text: str) -> str:
    """Runs of spaces to one space, as CXR-Report-Metric does to both sides before BERTScore."""
    return _SPACES.sub(" ", text)


class BERTScore(RewardPlugin):
    """BERTScore F1 between the generated report and the reference.

    Inputs: reports, references. Range: F1 rescaled with the baseline is at most 1 and usually in
    [0, 1] (it can go below 0 for unrelated text); without rescaling it is in [0, 1]. Options:
    `model` (hub name in the local cache, or a local folder; default distilroberta-base), `num_layers`
    (default 5 for distilroberta-base; required for a folder), `baseline_path` (a bert-score baseline
    TSV; the package's own file for hub models), `rescale_with_baseline` (True), `idf` (False),
    `batch_size`, `device` ("cpu", "cuda", …; default cuda when available). Example: identical
    reports → 1.0.
    """

    name = "bertscore"
    value_range = (-math.inf, 1.0)
    resources = {"num_gpus": 0.1}

    def __init__(self, model: str = REXRANK_MODEL, num_layers: int | None = None, baseline_path: str | None = None,
                 rescale_with_baseline: bool = True, idf: bool = False, batch_size: int = 64,
                 device: str | None = None):
        self.model = str(model)
        self.num_layers = num_layers
        self.baseline_path = None if baseline_path is None else str(baseline_path)
        self.rescale_with_baseline = rescale_with_baseline
        self.idf = idf
        self.batch_size = batch_size
        self.device = device
        self._scorer = None

    @staticmethod
    def weight_files(model: str = REXRANK_MODEL, **_options) -> list:
        """What `unirg check` lists (and what a run checks before any stage): the BERTScore model folder."""
        from rewards.chexbert.weights import WeightFile

        folder = Path(str(model)).expanduser()
        found = folder if folder.is_dir() else _cached_snapshot(str(model))
        hub_id = _HUB_IDS.get(str(model), (str(model),))[-1]
        return [WeightFile(what=f"BERTScore model {model}", path=Path(found) if found else None,
                           looked_in=f"a local folder, then the hub cache ({hub_id})",
                           how_to_get=f"hf download {hub_id}   (or set options.model: a local folder, "
                                      "with num_layers and baseline_path)")]

    def __getstate__(self) -> dict:
        # Ray ships the plugin to a reward actor without the model; setup() loads it there.
        state = dict(self.__dict__)
        state["_scorer"] = None
        return state

    def _resolve(self) -> tuple[str, int, str | None]:
        """(model folder, layer, baseline file) or a RewardError saying what to get."""
        folder = Path(self.model).expanduser()
        if folder.is_dir():
            if self.num_layers is None:
                raise RewardError(f"reward 'bertscore': option 'num_layers' is required with a local model folder "
                                  f"({folder}); ReXrank uses layer {REXRANK_LAYER} of distilroberta-base")
            baseline = self.baseline_path
            if self.rescale_with_baseline and baseline is None:
                raise RewardError(f"reward 'bertscore': rescale_with_baseline needs option 'baseline_path' (a "
                                  f"bert-score baseline TSV) for the local model {folder}, or set "
                                  "rescale_with_baseline: false")
            return str(folder), self.num_layers, baseline
        if self.model.startswith(("/", ".", "~")) or Path(self.model).suffix:
            raise RewardError(f"reward 'bertscore': model folder not found: {folder}")
        snapshot = _cached_snapshot(self.model)
        if snapshot is None:
            raise RewardError(
                f"reward 'bertscore' needs the model {self.model!r}, which is neither a local folder nor in the "
                f"Hugging Face cache ({os.environ.get('HF_HUB_CACHE') or '~/.cache/huggingface/hub'}). Runs never "
                f"download (HF_HUB_OFFLINE=1). Get it once with:\n  hf download "
                f"{_HUB_IDS.get(self.model, (self.model,))[-1]}\nor give options model: /path/to/folder, "
                "num_layers: N, baseline_path: /path/to/baseline.tsv")
        layers = self.num_layers
        if layers is None:
            if self.model != REXRANK_MODEL:
                from bert_score.utils import model2layers

                layers = model2layers.get(self.model)
            else:
                layers = REXRANK_LAYER
            if layers is None:
                raise RewardError(f"reward 'bertscore': give option 'num_layers' for model {self.model!r}")
        baseline = self.baseline_path or (_bundled_baseline(self.model) if self.rescale_with_baseline else None)
        if self.rescale_with_baseline and baseline is None:
            raise RewardError(f"reward 'bertscore': no baseline file for {self.model!r}; give 'baseline_path' "
                              "or set rescale_with_baseline: false")
        return snapshot, layers, baseline

    def setup(self) -> None:
        if self._scorer is not None:
            return
        model, layers, baseline = self._resolve()
        if baseline is not None and not Path(baseline).is_file():
            raise RewardError(f"reward 'bertscore': baseline file not found: {baseline}")
        try:
            from bert_score import BERTScorer
        except ImportError as error:
            raise RewardError(f"reward 'bertscore' needs the bert-score package ({error}); "
                              "pip install bert-score") from None
        try:
            self._scorer = BERTScorer(model_type=model, num_layers=layers, idf=self.idf,
                                      lang="en", rescale_with_baseline=self.rescale_with_baseline,
                                      baseline_path=baseline, batch_size=self.batch_size, device=self.device)
        except OSError as error:
            raise RewardError(f"reward 'bertscore': cannot load the model from {model}: {error}") from None
        _patch_empty_input(self._scorer._tokenizer)
        _restore_prefix_space(self._scorer._tokenizer)
        if self.rescale_with_baseline:
            with warnings.catch_warnings():  # bert-score wraps a read-only pandas array; harmless
                warnings.simplefilter("ignore", UserWarning)
                self._scorer.baseline_vals  # noqa: B018 - loads the baseline now, inside setup

    def score(self, reports: Sequence[str], references: Sequence[str]) -> list[float | None]:
        self.setup()
        if not reports:
            return []
        if self.idf:
            self._scorer.compute_idf(list(references))
        # bert-score truncates at the model's maximum length; empty strings score via special tokens only.
        # Runs of spaces collapsed on both sides, as the leaderboard's scorer does before bert-score.
        _, _, f1 = self._scorer.score([collapse_spaces(r) if isinstance(r, str) else "" for r in reports],
                                      [collapse_spaces(r) if isinstance(r, str) else "" for r in references],
                                      verbose=False, batch_size=self.batch_size)
        return [min(float(v), 1.0) if math.isfinite(float(v)) else None for v in f1.tolist()]
