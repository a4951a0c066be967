"""Scenario: the engine pool's collective weight sync over gloo on CPU, with an engine killed between syncs.

Runs `unirg.rollout.sync_check.collective_sync_check` (the same code `make gpu-check` runs over NCCL) with two
vLLM engines in Ray actors on a tiny Qwen2-VL, and prints its result row.
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import build_model, emit

from unirg.rollout.config import ClusterConfig
from unirg.rollout.sync_check import collective_sync_check


def main(work: Path) -> None:
    path = build_model(work / "model")
    emit(collective_sync_check(path, backend="gloo", num_engines=2, cluster=ClusterConfig(num_cpus=2)))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
