"""Find model-weight files on this machine (a local path or the Hugging Face hub cache), never downloading.

Shared by the CheXbert and RadGraph rewards: both read the files the RRG scorers publish in the hub
repository `StanfordAIMI/RRG_scorers`. `unirg check` prints the same records.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from unirg.errors import RewardError

RRG_SCORERS_REPO = "StanfordAIMI/RRG_scorers"


@dataclass(frozen=True)
class WeightFile:
    """One file (or folder) a reward needs, where it was found, and how to get it when it was not."""

    what: str                 # e.g. "CheXbert checkpoint"
    path: Path | None         # where it was found; None when missing
    looked_in: str            # where we looked, for the message
    how_to_get: str           # one command or step that puts it there

    @property
    def present(self) -> bool:
        return self.path is not None

    def describe(self) -> str:
        """One line for `unirg check`: present with its path, or missing with how to get it."""
        if self.present:
            return f"ok       {self.what}: {self.path}"
        return f"MISSING  {self.what} (looked in {self.looked_in}); get it with: {self.how_to_get}"


def hub_cached_file(repo_ids: Sequence[str], filename: str) -> Path | None:
    """The path of `filename` in the local hub cache under any of `repo_ids`, or None; never downloads."""
    from huggingface_hub import try_to_load_from_cache

    for repo_id in repo_ids:
        found = try_to_load_from_cache(repo_id, filename)
        # try_to_load_from_cache returns a sentinel object (not a str) for "known not to exist".
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


def find_file(what: str, local: str | os.PathLike | None, repo_ids: Sequence[str], filename: str,
              option_hint: str) -> WeightFile:
    """Locate a single file: the `local` path when given (and only there), else the hub cache.

    `option_hint` says how to point the reward at a local copy instead, e.g. "options.checkpoint: /path/chexbert.pth".
    """
    download = f"huggingface-cli download {repo_ids[0]} {filename}   (or set {option_hint})"
    if local:
        path = Path(local).expanduser()
        return WeightFile(what, path if path.is_file() else None, str(path), download)
    return WeightFile(what, hub_cached_file(repo_ids, filename),
                      f"the hub cache: {filename} of {' or '.join(repo_ids)}", download)


def require(files: Sequence[WeightFile], reward: str) -> None:
    """Raise one RewardError naming every missing file of `reward` and how to obtain it."""
    missing = [f for f in files if not f.present]
    if missing:
        lines = "\n".join(f"  - {f.what}: not found in {f.looked_in}\n    get it with: {f.how_to_get}"
                          for f in missing)
        raise RewardError(f"reward '{reward}' needs model weights that are not on this machine:\n{lines}\n"
                          "Runs never download weights (HF_HUB_OFFLINE=1); see docs/model_weights.md, and "
                          "`unirg check --recipe <recipe>` lists everything a recipe needs.")


BERT_BASE_REPOS = ("google-bert/bert-base-uncased", "bert-base-uncased")


def chexbert_files(checkpoint: str | os.PathLike | None = None,
                   bert_dir: str | os.PathLike | None = None) -> list[WeightFile]:
    """The CheXbert checkpoint and the bert-base-uncased config and vocabulary it is built from."""
    files = [find_file("CheXbert checkpoint chexbert.pth", checkpoint, (RRG_SCORERS_REPO,), "chexbert.pth",
                       "options.checkpoint: /path/chexbert.pth")]
    for filename in ("config.json", "vocab.txt"):
        local = Path(bert_dir) / filename if bert_dir else None
        files.append(find_file(f"bert-base-uncased {filename}", local, BERT_BASE_REPOS, filename,
                               "options.bert_dir: a folder holding config.json and vocab.txt"))
    return files
