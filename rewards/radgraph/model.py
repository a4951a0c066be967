"""RadGraph annotations from the `radgraph` package, with weights from a local path or the hub cache.

The package (PyPI `radgraph`, the `radgraph` extra of unirg) holds the DyGIE++ model and its
pre- and post-processing; unirg only finds the weights, never lets the package download, batches the
reports, caches reference annotations per study, and computes the rewards itself (scores.py).

A model archive (`radgraph.tar.gz`, `radgraph-xl.tar.gz`, `modern-radgraph-xl.tar.gz` in the hub
repository StanfordAIMI/RRG_scorers) unpacks to `config.json`, `weights.th` and `vocabulary/`;
`config.json` names the base encoder (a hub model id) that transformers loads from the hub cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rewards.chexbert.weights import RRG_SCORERS_REPO, WeightFile, hub_cached_file, require
from rewards.radgraph.batching import annotate_batched
from rewards.radgraph.scores import RadGraphScores, radgraph_scores
from unirg.errors import RewardError

ARCHIVES = {"radgraph": "radgraph.tar.gz", "radgraph-xl": "radgraph-xl.tar.gz",
            "modern-radgraph-xl": "modern-radgraph-xl.tar.gz"}
INSTALL_HINT = "pip install 'unirg[radgraph]'   (the radgraph package, 0.1.18)"
UNPACK_ROOT = Path(os.environ.get("UNIRG_CACHE", Path.home() / ".cache" / "unirg")) / "radgraph"


def _check_model_type(model_type: str) -> None:
    if model_type not in ARCHIVES:
        raise RewardError(f"unknown RadGraph model_type {model_type!r}: use one of {', '.join(ARCHIVES)}")


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "weights.th").is_file()


def _package_cache_dir(model_type: str) -> Path | None:
    """Where the radgraph package itself unpacks a model (so earlier radgraph users need nothing new)."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        from appdirs import user_cache_dir
    except ImportError:
        return None
    try:
        return Path(user_cache_dir("radgraph")) / version("radgraph") / model_type
    except PackageNotFoundError:
        return None


def model_files(model_type: str = "radgraph", model_path: str | os.PathLike | None = None) -> list[WeightFile]:
    """The RadGraph model (archive or unpacked folder) and the base encoder its config.json names."""
    _check_model_type(model_type)
    archive = ARCHIVES[model_type]
    how = (f"huggingface-cli download {RRG_SCORERS_REPO} {archive}   (or set options.model_path: "
           f"/path/{archive} or its unpacked folder)")
    what = f"RadGraph model {archive}"
    if model_path:
        path = Path(model_path).expanduser()
        found = path if (path.is_file() or _is_model_dir(path)) else None
        model = WeightFile(what, found, str(path), how)
    else:
        found = hub_cached_file((RRG_SCORERS_REPO,), archive)
        package_dir = _package_cache_dir(model_type)
        if found is None and package_dir is not None and _is_model_dir(package_dir):
            found = package_dir
        looked = f"the hub cache: {archive} of {RRG_SCORERS_REPO}"
        model = WeightFile(what, found, looked + (f" and {package_dir}" if package_dir else ""), how)
    files = [model]
    unpacked = _unpacked_dir(model.path, model_type) if model.present else None
    if unpacked is not None:
        files.append(_encoder_file(unpacked))
    return files


def _encoder_file(model_dir: Path) -> WeightFile:
    """The base encoder named in an unpacked model's config.json: a local folder or a hub-cache model."""
    config = json.loads((model_dir / "config.json").read_text())
    name = config["model"]["embedder"]["token_embedders"]["bert"]["model_name"]
    what = f"RadGraph base encoder {name}"
    how = f"huggingface-cli download {name}"
    if Path(name).is_dir():
        return WeightFile(what, Path(name), name, how)
    return WeightFile(what, hub_cached_file((name,), "config.json"), f"the hub cache: {name}", how)


def _unpacked_dir(model: Path, model_type: str) -> Path | None:
    """The folder holding config.json and weights.th for `model` (a folder, or an archive already unpacked)."""
    if model.is_dir():
        return model
    target = _unpack_target(model, model_type)
    return target if _is_model_dir(target) else None


def _unpack_target(archive: Path, model_type: str) -> Path:
    # One folder per archive file (path, size, mtime), so a re-downloaded archive is unpacked again; the
    # last part is the model type because radgraph.RadGraph reads <model_cache_dir>/<model_type>/.
    stat = archive.resolve().stat()
    key = hashlib.sha256(f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return UNPACK_ROOT / key / model_type


def unpack(archive: Path, model_type: str) -> Path:
    """Unpack a model archive once into unirg's cache and return the folder."""
    target = _unpack_target(archive, model_type)
    if _is_model_dir(target):
        return target
    # Unpack beside the target and rename: several reward actors may start at once on one machine.
    staging = target.with_name(f"{target.name}.unpacking-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(staging, filter="data")  # "data" refuses absolute paths and links out of the folder
    if not _is_model_dir(staging):
        shutil.rmtree(staging, ignore_errors=True)
        raise RewardError(f"{archive} is not a RadGraph model archive: no config.json and weights.th inside")
    try:
        staging.rename(target)
    except OSError:  # another process finished first; its copy is identical
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _cache_dir_for(model_dir: Path, model_type: str) -> Path:
    """A folder whose `<model_type>` entry is `model_dir`: the layout radgraph.RadGraph reads without downloading.

    An unpacked archive already has that layout; a user's folder with another name gets a symlink.
    """
    if model_dir.name == model_type:
        return model_dir.parent
    link_root = UNPACK_ROOT / "links" / hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:16]
    link_root.mkdir(parents=True, exist_ok=True)
    link = link_root / model_type
    if not link.exists():
        link.symlink_to(model_dir.resolve(), target_is_directory=True)
    return link_root


def _device_index(device: str) -> int:
    """radgraph's `cuda` argument: -1 for CPU, else the GPU index."""
    if device == "cpu":
        return -1
    return int(device.split(":")[1]) if ":" in device else 0


DEFAULT_BATCH_SIZE = 16


def check_batch_size(batch_size: object) -> int:
    """The `batch_size` option (reports per model forward) if it is a whole number >= 1, else a clear error."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise RewardError(f"RadGraph option batch_size must be a whole number >= 1 (reports per model "
                          f"forward; 1 runs the radgraph package's own forward), got {batch_size!r}")
    return batch_size


class RadGraphAnnotator:
    """Annotates reports with one loaded RadGraph model (one copy per process or Ray actor).

    `batch_size` reports go through each model forward (batching.py); 1 runs the package's own
    one-report-at-a-time forward. Both give the same annotations.
    """

    def __init__(self, model_type: str = "radgraph", model_path: str | os.PathLike | None = None,
                 device: str = "cpu", batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.batch_size = check_batch_size(batch_size)
        files = model_files(model_type, model_path)
        require(files, f"RadGraph ({model_type})")
        try:
            import radgraph
        except ImportError:
            raise RewardError(f"the RadGraph rewards need the radgraph package: {INSTALL_HINT}") from None
        from rewards.radgraph.compat import patch_transformers_for_radgraph

        patch_transformers_for_radgraph()
        model = files[0].path
        model_dir = model if model.is_dir() else unpack(model, model_type)
        encoder = _encoder_file(model_dir)
        require([encoder], f"RadGraph ({model_type})")
        self.model_type = model_type
        try:
            self.model = radgraph.RadGraph(model_type=model_type, cuda=_device_index(str(device)),
                                           model_cache_dir=str(_cache_dir_for(model_dir, model_type)))
        except OSError as error:  # transformers could not load the base encoder offline
            raise RewardError(f"RadGraph ({model_type}) could not load its base encoder: {error}. "
                              f"Get it with: {encoder.how_to_get}") from None

    def annotate(self, reports: Sequence[str]) -> list[dict[str, Any]]:
        """One annotation per report; an empty report gets no entities without running the model."""
        texts = [report.strip() for report in reports]
        todo = [text for text in texts if text]
        found = annotate_batched(self.model, todo, self.batch_size) if todo else {}
        annotated = iter(found.get(str(index), {"entities": {}}) for index in range(len(todo)))
        return [next(annotated) if text else {"text": "", "entities": {}} for text in texts]


class RadGraphScorer:
    """Scores hypotheses against references, annotating each distinct text once.

    Two LRU caches keyed by text: references (one per study, scored against many completions) and generated
    reports (GRPO samples many identical completions, and evaluation re-scores the same predictions in each
    setting). Within a call, duplicates are annotated once and the model sees only texts in neither cache.
    """

    def __init__(self, annotator: RadGraphAnnotator, lowercase: bool = False, cache_size: int = 50_000) -> None:
        self.annotator = annotator
        self.lowercase = lowercase
        self.cache_size = cache_size
        self._references: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._hypotheses: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def _annotations(self, texts: Sequence[str], cache: OrderedDict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        todo = list(dict.fromkeys(text for text in texts if text not in cache))
        if todo:
            for text, annotation in zip(todo, self.annotator.annotate(todo), strict=True):
                cache[text] = annotation
        result = []
        for text in texts:
            cache.move_to_end(text)
            result.append(cache[text])
        while len(cache) > self.cache_size:
            cache.popitem(last=False)
        return result

    def reference_annotations(self, references: Sequence[str]) -> list[dict[str, Any]]:
        """Annotations of `references`, running the model only on distinct ones not cached yet."""
        return self._annotations(references, self._references)

    def hypothesis_annotations(self, hypotheses: Sequence[str]) -> list[dict[str, Any]]:
        """Annotations of generated reports, running the model only on distinct ones not cached yet."""
        return self._annotations(hypotheses, self._hypotheses)

    def score(self, hypotheses: Sequence[str], references: Sequence[str]) -> list[RadGraphScores]:
        """RadGraph scores of each hypothesis against its reference."""
        refs = self.reference_annotations(references)
        hyps = self.hypothesis_annotations(hypotheses)
        return [radgraph_scores(h, r, lowercase=self.lowercase) for h, r in zip(hyps, refs, strict=True)]
