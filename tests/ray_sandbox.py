"""Run a command inside a private network and PID namespace so Ray can start without listening beyond loopback.

Ray binds to all interfaces by default and writes token-auth files under HOME. Tests that start Ray run
their body here: `unshare --net` gives a namespace whose only interface is `lo` (brought up first), and
`--pid --fork --kill-child` makes the command PID 1 of its own PID namespace, so when it exits, times out
or is killed, the kernel kills every process it started (raylet, GCS, workers, vLLM engines): nothing leaks.
HOME, TMPDIR and RAY_TMPDIR point at a fresh temporary folder.

Usage from a test:

    result = run_python_sandboxed("import ray; ray.init(); print(ray.cluster_resources())", tmp_path)
    assert result.returncode == 0, result.output

Needs root (or user namespaces) and the `unshare` and `ip` tools; `sandbox_unavailable()` says why not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Ray puts unix sockets under its temp dir, and a socket path may not exceed 107 bytes: keep it short.
_SHORT_TMP_ROOT = "/tmp"


@dataclass
class SandboxResult:
    """What a sandboxed command left behind."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool

    @property
    def output(self) -> str:
        """stdout and stderr together, for assertion messages."""
        return f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


def sandbox_unavailable() -> str | None:
    """Why a network namespace cannot be made here, or None when it can."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (util-linux / iproute2)"
    probe = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "true"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"cannot create network/PID namespaces (needs root): {probe.stderr.strip()}"
    return None


def sandbox_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a sandboxed command: private HOME and temp dirs, no proxies, hub offline."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.pop("RAY_ADDRESS", None)
    ray_tmp = home / "ray"
    ray_tmp.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        TMPDIR=str(home),
        RAY_TMPDIR=str(ray_tmp),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        # Ray's usage stats would try the network and wait for it.
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def run_sandboxed(argv: list[str], home: Path | None = None, timeout: float = 300.0,
                  env: dict[str, str] | None = None, cwd: str | Path | None = None) -> SandboxResult:
    """Run `argv` as PID 1 of a fresh network + PID namespace with only `lo` up; kill all it started at exit."""
    owned = home is None
    home = Path(tempfile.mkdtemp(prefix="rs", dir=_SHORT_TMP_ROOT)) if owned else Path(home)
    wrapped = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child",
               "sh", "-c", 'ip link set lo up && exec "$@"', "sandbox", *argv]
    process = subprocess.Popen(wrapped, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=sandbox_env(home, env), cwd=cwd, start_new_session=True)
    timed_out = False
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        # Killing unshare SIGKILLs its child (--kill-child), PID 1 of the namespace, and the kernel
        # then kills every other process in that namespace.
        process.kill()
        stdout, stderr = process.communicate()
    if owned:
        shutil.rmtree(home, ignore_errors=True)
    return SandboxResult(process.returncode, stdout, stderr, timed_out)


def run_python_sandboxed(code: str, home: Path | None = None, timeout: float = 300.0,
                         env: dict[str, str] | None = None, python: str = sys.executable,
                         cwd: str | Path | None = None) -> SandboxResult:
    """Run a Python snippet inside the sandbox (see `run_sandboxed`)."""
    return run_sandboxed([python, "-c", code], home=home, timeout=timeout, env=env, cwd=cwd)


def short_tmp_dir(prefix: str = "rs") -> Path:
    """A new folder with a short path (Ray's socket paths must stay under 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_SHORT_TMP_ROOT))
