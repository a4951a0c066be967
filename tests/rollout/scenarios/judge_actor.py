"""Scenario: a served judge inside a named Ray actor: two ranks share it, requests get answers, stop ends it."""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import ray
from common import emit

from rewards.judge_server import JudgeServer, RayJudgeServer
from rewards.llm_judge import LLMErrors
from unirg.orchestration import ensure_ray
from unirg.rollout.config import ClusterConfig


def judge_actors() -> list[str]:
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["name"].startswith("unirg-judge-"))


def gone(pid: int, within_s: float = 60.0) -> bool:
    """Whether the process has exited (a zombie waiting for PID 1 of the sandbox to reap it counts as exited)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status")
        try:
            state = next(line for line in status.read_text().splitlines() if line.startswith("State:"))
        except (FileNotFoundError, ProcessLookupError):
            return True
        if "Z" in state.split()[1]:
            return True
        time.sleep(0.5)
    return False


def main(judge_dir: str) -> None:
    ensure_ray(ClusterConfig(num_cpus=2))
    serve = {"model": judge_dir, "python": sys.executable, "startup_timeout_s": 400,
             "extra_args": ["--max-model-len", "2048", "--dtype", "float32", "--enforce-eager"],
             "env": {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}}
    out: dict = {}
    # The Ray actor's options: the recipe's GPU fraction when given; on a CPU cluster none by default.
    out["options_fraction"] = RayJudgeServer(JudgeServer(judge_dir, gpu_fraction=0.25), 0.25).actor_options()
    out["options_default"] = RayJudgeServer(JudgeServer(judge_dir)).actor_options()

    # Two trainer ranks of one run, each with its own plugin: the first starts the server, the second attaches.
    started = time.monotonic()
    ranks = [LLMErrors(serve=dict(serve), max_tokens=8, parse_retries=0, retries=1, max_workers=4)
             for _ in range(2)]
    for rank in ranks:
        rank.setup()
    out["start_seconds"] = time.monotonic() - started
    out["in_ray"] = [rank.server.remote is not None for rank in ranks]
    out["urls"] = [rank.server.base_url for rank in ranks]
    out["actors_running"] = judge_actors()
    actor = ranks[0].server.remote._actor
    pid = ray.get(actor.pid.remote())
    out["server_pid_alive"] = not gone(pid, within_s=0)

    # Requests from both ranks get answers (a random model's text; the key is required).
    out["answers"] = [type(rank.judge.client.complete("Count the errors.")).__name__ for rank in ranks]
    counts = ranks[1].judge.counts(["Findings: Clear lungs.", "Findings: Effusion."], ["Normal.", "Normal."])
    out["judged_requests"] = ranks[1].judge.requests
    out["counts"] = [c is not None for c in counts]
    request = urllib.request.Request(out["urls"][0] + "/chat/completions", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=30)
        out["without_key"] = 200
    except urllib.error.HTTPError as error:
        out["without_key"] = error.code

    ranks[0].teardown()  # the end of the run
    out["server_gone_after_stop"] = gone(pid)
    deadline = time.monotonic() + 30  # ray.kill returns before the actor is gone
    while judge_actors() and time.monotonic() < deadline:
        time.sleep(0.5)
    out["actors_after_stop"] = judge_actors()
    try:
        with urllib.request.urlopen(out["urls"][0].removesuffix("/v1") + "/health", timeout=5):
            out["health_after_stop"] = "answered"
    except OSError as error:
        out["health_after_stop"] = type(error).__name__
    emit(out)


if __name__ == "__main__":
    main(sys.argv[1])
