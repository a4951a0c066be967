"""A judge model served by vLLM's OpenAI-compatible server for `llm_errors`: a child process, or inside a Ray actor.

`JudgeServer.start()` launches `python -m vllm.entrypoints.openai.api_server` for a local model folder
on a free port, waits until `GET /health` answers 200 (failing early, with the tail of the server's
log, if the process exits), and `stop()` ends it (SIGTERM, then SIGKILL, to its whole process group) —
also at interpreter exit, and, on Linux, when the process that started it dies. Each server gets a
random API key (`VLLM_API_KEY`), so only its client can use it. The recipe names it under the
reward's options:

    options:
      serve: {model: /models/judge, gpu_memory_utilization: 0.3, max_model_len: 8192, gpu_fraction: 0.3}
      style: chexprompt

Where it runs (`serve.ray`): `auto` (default) starts it inside a Ray actor when the scoring process is
connected to Ray (a run with `cluster.address`, several trainer ranks, Ray rollout workers or reward
actors), else as a child process on 127.0.0.1; `true` always uses Ray (starting a local instance if
needed), `false` never. The actor:
- asks Ray for `serve.gpu_fraction` GPUs (default: `gpu_memory_utilization` when the cluster has GPUs,
  0 without) and `serve.cpus` CPUs (1), so Ray counts the judge's share of a device as taken;
- is named after the Ray job and the judge model, so every trainer rank of a run (and a reward actor)
  reaches the same server: the first to ask starts it, the others attach;
- serves on its node's IP, so ranks on other nodes can reach it;
- is owned by the process that created it rather than detached: it ends with the run (Ray ends an owned
  actor when its owner exits, and the server with the actor), so a crashed run cannot leave a server
  holding its GPU share. `stop()` ends it earlier.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unirg.errors import RewardError

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
LOOPBACK = "127.0.0.1"
# Ray namespace of the judge actors (shared with the reward actors), so names never clash with a user's own.
RAY_NAMESPACE = "unirg"


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies, so a killed trainer or actor leaves no server."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


# vLLM's share of device memory for a served judge unless serve.gpu_memory_utilization says otherwise.
DEFAULT_GPU_MEMORY_UTILIZATION = 0.3


def judge_gpu_share(gpu_fraction: float | None, gpu_memory_utilization: float, cluster_has_gpus: bool) -> float:
    """GPUs a judge actor asks Ray for: `serve.gpu_fraction`, else the memory share vLLM fills (0 without GPUs)."""
    if gpu_fraction is not None:
        return float(gpu_fraction)
    return float(gpu_memory_utilization) if cluster_has_gpus else 0.0


class JudgeServer:
    """One vLLM OpenAI-compatible server for a local judge model: a child process, or in a Ray actor (`ray`)."""

    def __init__(self, model: str, served_name: str = "judge",
                 gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
                 max_model_len: int | None = None, python: str | None = None, extra_args: Sequence[str] = (),
                 startup_timeout_s: float = 900.0, env: dict[str, str] | None = None, host: str = LOOPBACK,
                 ray: bool | str = "auto", gpu_fraction: float | None = None, cpus: float = 1.0) -> None:
        if not Path(model).expanduser().is_dir():
            raise RewardError(f"llm_errors: options.serve.model must be a local model folder; {model} is not one")
        if ray not in ("auto", True, False):
            raise RewardError(f"llm_errors: options.serve.ray must be auto, true or false, not {ray!r}")
        if ray is False and gpu_fraction is not None:
            raise RewardError("llm_errors: options.serve.gpu_fraction is what the Ray actor asks for; it needs "
                              "serve.ray true or auto")
        self.ray = ray
        self.gpu_fraction = gpu_fraction
        self.cpus = cpus
        self.remote: RayJudgeServer | None = None
        self.model = str(Path(model).expanduser())
        self.served_name = served_name
        self.gpu_memory_utilization = gpu_memory_utilization
        self.max_model_len = max_model_len
        self.python = python or sys.executable
        self.extra_args = list(extra_args)
        self.startup_timeout_s = startup_timeout_s
        self.env = env or {}
        self.host = host
        self.api_key = secrets.token_urlsafe(24)
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    @property
    def base_url(self) -> str:
        if self.remote is not None:
            return self.remote.base_url or ""
        return f"http://{self.host}:{self.port}/v1"

    def in_ray(self) -> bool:
        """Whether start() puts the server in a Ray actor: `ray` true, or auto and this process is connected."""
        if self.ray == "auto":
            try:
                import ray
            except ImportError:
                return False
            return ray.is_initialized()
        return bool(self.ray)

    def command(self) -> list[str]:
        command = [self.python, "-m", SERVER_MODULE, "--model", self.model, "--served-model-name", self.served_name,
                   "--host", self.host, "--port", str(self.port),
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
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/health", timeout=5) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def start(self) -> str:
        """Launch the server (or attach to the run's judge actor) and wait for it to be healthy; returns its base URL."""
        if self.remote is None and self.in_ray():
            local = self.__getstate__()
            local.update(ray=False, gpu_fraction=None)
            self.remote = RayJudgeServer(_from_state(local), gpu_fraction=self.gpu_fraction, cpus=self.cpus)
        if self.remote is not None:
            url = self.remote.start()
            self.api_key = self.remote.api_key or self.api_key
            return url
        if self.process is not None and self.process.poll() is None:
            return self.base_url
        self.port = free_port(self.host)
        handle, name = tempfile.mkstemp(prefix="unirg-judge-", suffix=".log")
        os.close(handle)
        self.log_path = Path(name)
        # The key goes through the environment, not the command line, which any local user can read.
        env = {**os.environ, **self.env, "VLLM_API_KEY": self.api_key}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True, preexec_fn=_die_with_parent)
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

    def running(self) -> bool:
        if self.remote is not None:
            return self.remote.running()
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """End the server and what it started (its process group): SIGTERM, then SIGKILL after 30 s.

        In Ray, the actor is killed: the run's one judge, for every rank.
        """
        if self.remote is not None:
            self.remote.stop()
            return
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=30)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["process"] = None  # a copy (a Ray actor) starts its own server, or attaches to the run's actor
        state["remote"] = None
        return state


def _from_state(state: dict) -> JudgeServer:
    server = JudgeServer.__new__(JudgeServer)
    server.__dict__.update(state)
    return server


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    # vLLM's API server runs its engine in a child process: signal the whole session it leads.
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        process.send_signal(signum)


class JudgeActor:
    """Body of the Ray actor holding a judge server (see the module docstring)."""

    def __init__(self, server: JudgeServer) -> None:
        self.server = server

    def start(self) -> tuple[str, str]:
        """Start the server on this node's IP (once: later calls get the running one); (base URL, API key)."""
        if not self.server.running():
            import ray

            self.server.host = ray.util.get_node_ip_address()
            self.server.start()
        return self.server.base_url, self.server.api_key

    def stop(self) -> None:
        self.server.stop()

    def pid(self) -> int | None:
        """The server process id (tests check it is gone after stop)."""
        return self.server.process.pid if self.server.running() else None


def judge_actor_name(job_id: str, model: str, served_name: str) -> str:
    """The per-run name every rank of one Ray job computes alike for one judge model."""
    digest = hashlib.sha256(f"{job_id}\0{model}\0{served_name}".encode()).hexdigest()[:12]
    return f"unirg-judge-{digest}"


def served_judge_bundles(rewards: Sequence[Any], cluster_has_gpus: bool) -> list[dict[str, float]]:
    """The Ray resources each judge actor of a recipe's rewards will ask for, one per distinct served model.

    `rewards` are the recipe's reward entries (`name`, `options`); an entry whose `options.serve` runs in
    Ray (`serve.ray` auto or true) starts one actor per (model folder, served name), whatever the number
    of trainer ranks, with the same CPU and GPU share as `RayJudgeServer.actor_options`.
    """
    bundles: dict[tuple[str, str], dict[str, float]] = {}
    for entry in rewards:
        options = entry.options or {}
        serve = options.get("serve")
        if not isinstance(serve, dict) or serve.get("ray", "auto") is False or not serve.get("model"):
            continue
        served_name = options.get("model") or "judge"
        gpus = judge_gpu_share(serve.get("gpu_fraction"),
                               serve.get("gpu_memory_utilization", DEFAULT_GPU_MEMORY_UTILIZATION), cluster_has_gpus)
        bundle = {"CPU": float(serve.get("cpus", 1.0))}
        if gpus > 0:
            bundle["GPU"] = float(gpus)
        bundles[(str(Path(serve["model"]).expanduser()), served_name)] = bundle
    return list(bundles.values())


class RayJudgeServer:
    """A JudgeServer inside a named Ray actor with a GPU fraction; same `start()`/`stop()` as JudgeServer."""

    def __init__(self, server: JudgeServer, gpu_fraction: float | None = None, cpus: float = 1.0) -> None:
        self.server = server
        self.gpu_fraction = gpu_fraction
        self.cpus = cpus
        self.base_url: str | None = None
        self.api_key: str | None = None
        self.name: str | None = None
        self._actor = None

    def actor_options(self) -> dict[str, Any]:
        """Ray options of the actor: its CPU and GPU share and its per-run name."""
        import ray

        gpus = judge_gpu_share(self.gpu_fraction, self.server.gpu_memory_utilization,
                               ray.cluster_resources().get("GPU", 0) > 0)
        self.name = judge_actor_name(ray.get_runtime_context().get_job_id(), self.server.model,
                                     self.server.served_name)
        options: dict[str, Any] = {"name": self.name, "namespace": RAY_NAMESPACE, "get_if_exists": True,
                                   "num_cpus": self.cpus, "max_restarts": 0}
        if gpus > 0:
            options["num_gpus"] = gpus
        return options

    def start(self) -> str:
        """Create (or attach to) the run's judge actor, wait for its server to be healthy; returns the base URL."""
        import ray

        if not ray.is_initialized():  # serve.ray: true in a process without Ray: start or join one
            from unirg.orchestration import ensure_ray
            from unirg.rollout.config import ClusterConfig

            ensure_ray(ClusterConfig())
        if self._actor is None:
            self._actor = ray.remote(JudgeActor).options(**self.actor_options()).remote(self.server)
        try:
            # The actor's own wait is bounded by startup_timeout_s; the margin covers placing the actor.
            self.base_url, self.api_key = ray.get(self._actor.start.remote(),
                                                  timeout=self.server.startup_timeout_s + 300)
        except ray.exceptions.RayTaskError as error:
            cause = error.cause if getattr(error, "cause", None) is not None else error
            raise RewardError(str(cause)) from None
        except ray.exceptions.RayActorError as error:
            self._actor = None
            raise RewardError(f"llm_errors: the judge actor {self.name} for {self.server.model} died: "
                              f"{str(error).strip().splitlines()[-1][:300]}") from None
        except ray.exceptions.GetTimeoutError:
            raise RewardError(f"llm_errors: the judge actor {self.name} for {self.server.model} did not start "
                              f"within {self.server.startup_timeout_s + 300:.0f} s; is there room for "
                              f"{self.actor_options().get('num_gpus', 0)} GPU and {self.cpus} CPU on the "
                              "cluster (`ray status`)?") from None
        return self.base_url

    def running(self) -> bool:
        return self._actor is not None

    def stop(self) -> None:
        """Stop the server and kill the actor (for every rank: it is the run's one judge)."""
        actor, self._actor = self._actor, None
        if actor is None:
            return
        import ray

        if not ray.is_initialized():  # Ray already shut down: the actor ended with it
            return
        try:
            ray.get(actor.stop.remote(), timeout=60)
        except Exception:  # noqa: BLE001 - already gone or stuck: it is killed below either way
            pass
        ray.kill(actor, no_restart=True)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_actor"] = None  # a copy attaches to the named actor by itself
        return state

