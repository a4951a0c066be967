"""Scenario: `ray start --head` on loopback, `ray job submit` with unirg's runtime env, logs, `ray stop`, no leftovers.

Runs as PID 1 of the sandbox namespace, so `ps` here lists exactly what this scenario started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import emit

RAY = str(Path(sys.executable).parent / "ray")
DASHBOARD = "http://127.0.0.1:8265"


def run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def listening() -> list[str]:
    """Local addresses of listening TCP sockets (IPv4 and IPv6), as hex from /proc/net."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                found.append(fields[1])
    return found


def reap() -> None:
    """Collect exited orphans: as PID 1 of the namespace this process inherits them, and they stay zombies
    (dead, listed by ps as <defunct>) until reaped."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def processes() -> list[str]:
    """Command lines of every process in this PID namespace except this one and its children's ps."""
    reap()
    out = run("ps", "-eo", "pid=,args=").stdout.splitlines()
    return [line.strip() for line in out if line.split()[0] != str(os.getpid()) and " ps -eo" not in line]


def main(work: Path, repo: Path) -> None:
    temp_dir = work / "ray"
    start = run(RAY, "start", "--head", "--node-ip-address=127.0.0.1", "--port=6380",
                "--dashboard-host=127.0.0.1", "--dashboard-port=8265", "--num-cpus=1",
                f"--temp-dir={temp_dir}", "--disable-usage-stats", timeout=180)
    sockets = listening()
    runtime_env = run(sys.executable, "-m", "unirg.orchestration", "runtime-env", "--working-dir", str(repo)).stdout
    # The job runs a unirg module from the uploaded working_dir (the lead's `make submit` runs `unirg rl`).
    submit = run(RAY, "job", "submit", f"--address={DASHBOARD}", "--submission-id=unirg-smoke",
                 f"--runtime-env-json={runtime_env}", "--", "python", "-m", "unirg.orchestration", "runtime-env",
                 timeout=300)
    status = run(RAY, "job", "status", f"--address={DASHBOARD}", "unirg-smoke")
    logs = run(RAY, "job", "logs", f"--address={DASHBOARD}", "unirg-smoke")
    stop = run(RAY, "stop", "--force", timeout=120)
    time.sleep(2)
    emit({"start_rc": start.returncode, "start_err": start.stderr[-1500:], "listening": sockets,
          "runtime_env": json.loads(runtime_env or "{}"), "submit_rc": submit.returncode,
          "submit_out": (submit.stdout + submit.stderr)[-3000:], "status": status.stdout + status.stderr,
          "logs": logs.stdout, "stop_rc": stop.returncode, "left": processes()})


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
