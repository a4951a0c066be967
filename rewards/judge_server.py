"""A judge model served by vLLM's OpenAI-compatible server as a child process on loopback, for `llm_errors`.

`JudgeServer.start()` launches `python -m vllm.entrypoints.openai.api_server` for a local model folder
on 127.0.0.1 and a free port, waits until `GET /health` answers 200 (failing early, with the tail of
the server's log, if the process exits), and `stop()` ends it (SIGTERM, then SIGKILL) — also at
interpreter exit. The recipe names it under the reward's options:

    options:
      serve: {model: /models/judge, gpu_memory_utilization: 0.3, max_model_len: 8192}
      style: chexprompt

The server is started by the process that scores: with several trainer ranks, put `llm_errors` in
`cluster.ray_rewards` so one shared reward actor (and one server) serves every rank.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from unirg.errors import RewardError

SERVER_MODULE = "vllm.entrypoints.openai.api_server"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JudgeServer:
    """One vLLM OpenAI-compatible server process for a local judge model."""

    def __init__(self, model: str, served_name: str = "judge", gpu_memory_utilization: float = 0.3,
                 max_model_len: int | None = None, python: str | None = None, extra_args: Sequence[str] = (),
                 startup_timeout_s: float = 900.0, env: dict[str, str] | None = None) -> None:
        if not Path(model).expanduser().is_dir():
            raise RewardError(f"llm_errors: options.serve.model must be a local model folder; {model} is not one")
        self.model = str(Path(model).expanduser())
        self.served_name = served_name
        self.gpu_memory_utilization = gpu_memory_utilization
        self.max_model_len = max_model_len
        self.python = python or sys.executable
        self.extra_args = list(extra_args)
        self.startup_timeout_s = startup_timeout_s
        self.env = env or {}
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        command = [self.python, "-m", SERVER_MODULE, "--model", self.model, "--served-model-name", self.served_name,
                   "--host", "127.0.0.1", "--port", str(self.port),
                   "--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        if self.max_model_len:
            command += ["--max-model-len", str(self.max_model_len)]
        return command + self.extra_args

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return self.log_path.read_text(errors="replace")[-2000:]

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def start(self) -> str:
        """Launch the server and wait for it to be healthy; returns its base URL."""
        if self.process is not None and self.process.poll() is None:
            return self.base_url
        self.port = free_port()
        handle, name = tempfile.mkstemp(prefix="unirg-judge-", suffix=".log")
        os.close(handle)
        self.log_path = Path(name)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **self.env}, start_new_session=True)
        atexit.register(self.stop)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RewardError(f"llm_errors: the judge server for {self.model} exited with code "
                                  f"{self.process.returncode} before it was ready; its log ends:\n{self._log_tail()}")
            if self._healthy():
                return self.base_url
            time.sleep(1.0)
        self.stop()
        raise RewardError(f"llm_errors: the judge server for {self.model} was not healthy within "
                          f"{self.startup_timeout_s:.0f} s (options.serve.startup_timeout_s); its log ends:\n"
                          f"{self._log_tail()}")

    def stop(self) -> None:
        """End the server process (SIGTERM, then SIGKILL after 30 s)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["process"] = None  # a copy (a Ray actor) starts its own server
        return state
