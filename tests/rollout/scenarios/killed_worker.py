"""Scenario: a killed rollout worker is restarted (with the synced weights) and the batch retried; a hung one
exhausts the restart budget and the run stops with a clear error in bounded time."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import torch
from common import build_model, emit, prompts, requests

from unirg.rollout.config import ClusterConfig, RolloutConfig
from unirg.rollout.generation import (
    RolloutPool,
    RolloutWorkerError,
    add_tied_head,
    engine_kwargs,
    write_weights,
)

SAMPLING = {"n": 2, "temperature": 1.0, "max_tokens": 8, "logprobs": 0}
TIMEOUT_S = 25.0


def main(work: Path) -> None:
    import ray
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = build_model(work / "model")
    processor = AutoProcessor.from_pretrained(path)
    rows = requests(prompts(processor, count=4))
    rollout = RolloutConfig(backend="vllm_ray", num_workers=2, dtype="float32", max_model_len=512,
                            max_restarts=1, generate_timeout_s=TIMEOUT_S, startup_timeout_s=180)
    cluster = ClusterConfig(num_cpus=2)
    pool = RolloutPool(str(path), engine_kwargs(rollout, cluster), rollout, cluster)
    pool.generate(rows, SAMPLING)

    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    state = {name: p.detach().clone() for name, p in model.named_parameters()}
    add_tied_head(state, model)
    pool.sync_from_file(str(write_weights(state, work / "sync", version=1)), 1)

    killed_pid = pool.infos[1]["pid"]
    os.kill(killed_pid, signal.SIGKILL)
    started = time.monotonic()
    results = pool.generate(rows, SAMPLING)
    kill = {"seconds": time.monotonic() - started, "restarts": pool.restarts, "rows": len(results),
            "completions": sum(len(r["completions"]) for r in results), "killed_pid": killed_pid,
            "new_info": ray.get(pool.workers[1].info.remote())}

    os.kill(pool.infos[0]["pid"], signal.SIGSTOP)  # a hang: alive to Ray, silent to us
    started = time.monotonic()
    try:
        pool.generate(rows, SAMPLING)
        hang = {"error": None}
    except RolloutWorkerError as error:
        hang = {"error": str(error), "type": type(error).__name__}
    hang["seconds"] = time.monotonic() - started
    emit({"kill": kill, "hang": hang, "timeout_s": TIMEOUT_S})
    pool.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
