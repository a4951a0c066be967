"""The served judge's process management: started from the reward options, healthy, answering, stopped.

A stand-in for `vllm.entrypoints.openai.api_server` (a stdlib server taking the same arguments, found
first on PYTHONPATH) keeps this test free of vLLM; its first answer to each report is garbage, so the
parse-retry path runs too.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rewards import build_reward_functions
from rewards.judge_server import JudgeServer
from unirg.errors import RewardError
from unirg.models.tiny import build_tiny_text_model

FAKE_SERVER = textwrap.dedent('''
    import argparse, json
    from collections import Counter
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    parser = argparse.ArgumentParser()
    for name in ("--model", "--served-model-name", "--host", "--port", "--gpu-memory-utilization"):
        parser.add_argument(name)
    args = parser.parse_args()
    seen = Counter()
    ANSWER = ("[Clinically Significant Errors]:\\n(b) Missing a finding: 1\\n"
              "[Clinically Insignificant Errors]:\\n(a) x: 0\\n[Matched Findings]:\\n1. heart\\n")

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code, payload):
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._reply(200 if self.path == "/health" else 404, {})

        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert request["model"] == args.served_model_name
            prompt = request["messages"][-1]["content"]
            seen[prompt] += 1
            content = "garbage" if seen[prompt] == 1 else ANSWER
            self._reply(200, {"choices": [{"message": {"content": content}}]})

        def log_message(self, *a):
            pass

    ThreadingHTTPServer((args.host, int(args.port)), Handler).serve_forever()
''')


@pytest.fixture
def fake_vllm(tmp_path):
    package = tmp_path / "fake" / "vllm" / "entrypoints" / "openai"
    package.mkdir(parents=True)
    for folder in (package, package.parent, package.parent.parent):
        (folder / "__init__.py").write_text("")
    (package / "api_server.py").write_text(FAKE_SERVER)
    model = tmp_path / "judge-model"
    model.mkdir()
    return {"model": str(model), "env": {"PYTHONPATH": str(tmp_path / "fake")}, "startup_timeout_s": 60}


def test_served_judge_starts_answers_and_stops(fake_vllm):
    functions, _ = build_reward_functions([{"name": "llm_errors", "weight": 0.5,
                                            "options": {"serve": fake_vllm, "style": "green"}}])
    reward = functions[0]
    scores = reward(["Findings: Normal heart.", "Findings: Small effusion."], reference=["Effusion.", "Effusion."])
    server = reward.plugin.server
    assert scores == [0.5, 0.5] and reward.plugin.judge.requests == 4  # each answered after one retry
    process = server.process
    assert process.poll() is None and server.base_url.startswith("http://127.0.0.1:")
    reward.plugin.teardown()
    assert process.poll() is not None and server.process is None


def test_a_server_that_dies_reports_its_log(tmp_path):
    bad = tmp_path / "fake" / "vllm" / "entrypoints" / "openai"
    bad.mkdir(parents=True)
    for folder in (bad, bad.parent, bad.parent.parent):
        (folder / "__init__.py").write_text("")
    (bad / "api_server.py").write_text("raise SystemExit('no GPU for the judge')")
    model = tmp_path / "m"
    model.mkdir()
    server = JudgeServer(str(model), env={"PYTHONPATH": str(tmp_path / "fake")}, startup_timeout_s=60)
    with pytest.raises(RewardError, match="exited with code 1 before it was ready(.|\\n)*no GPU for the judge"):
        server.start()


def test_options_name_one_judge():
    with pytest.raises(RewardError, match="exactly one of options.base_url"):
        build_reward_functions([{"name": "llm_errors", "options": {}}])
    with pytest.raises(RewardError, match="local model folder"):
        build_reward_functions([{"name": "llm_errors", "options": {"serve": {"model": "/no/such/folder"}}}])


REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"


@pytest.mark.slow
@pytest.mark.skipif(not VLLM_PYTHON.is_file(), reason="needs .venv-vllm (make setup-vllm)")
def test_real_vllm_judge_garbage_goes_through_retries_and_missing_scores(tmp_path):
    judge = build_tiny_text_model(tmp_path / "judge")
    serve = {"model": str(judge), "python": str(VLLM_PYTHON), "startup_timeout_s": 420,
             "extra_args": ["--max-model-len", "4096", "--dtype", "float32", "--enforce-eager"],
             "env": {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}}
    functions, _ = build_reward_functions([{"name": "llm_errors", "weight": 0.5, "options": {
        "serve": serve, "max_tokens": 32, "parse_retries": 1, "retries": 1, "max_workers": 4}}])
    reward = functions[0]
    prompts = [[{"role": "user", "content": "Study A"}]] * 4
    try:
        scores = reward(["Findings: a.", "Findings: b.", "Findings: c.", "Findings: d."], prompts=prompts,
                        reference=["Effusion."] * 4)
        process = reward.plugin.server.process
        # A random model never answers in the format: each report is asked twice, then left unscored
        # (None for the whole group, which TRL adds as the same 0 to every member), and the call counted.
        assert scores == [None] * 4
        assert reward.plugin.judge.requests == 8 and reward.faults == 4 and reward.consecutive_failures == 1
        assert process.poll() is None
    finally:
        reward.plugin.teardown()
    assert process.poll() is not None


def _exited(pid: int, within_s: float) -> bool:
    """Whether `pid` has exited (a zombie not yet reaped by its new parent counts) within `within_s`."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return True
        if "\nState:\tZ" in status:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_server_ends_when_the_process_that_started_it_is_killed(fake_vllm, tmp_path):
    """A trainer (or Ray actor) killed with SIGKILL runs no cleanup; the server must not outlive it."""
    starter = textwrap.dedent(f'''
        import sys, time
        from rewards.judge_server import JudgeServer
        server = JudgeServer({fake_vllm["model"]!r}, env={fake_vllm["env"]!r}, startup_timeout_s=60)
        server.start()
        print(server.process.pid, flush=True)
        time.sleep(600)
    ''')
    parent = subprocess.Popen([sys.executable, "-c", starter], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(parent.stdout.readline())
        assert not _exited(server_pid, within_s=0)
    finally:
        parent.kill()
        parent.wait(timeout=30)
    assert _exited(server_pid, within_s=20)
