"""Run a scenario script inside the Ray sandbox and read back its `RESULT {json}` line, or fail with its output."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from ray_sandbox import SandboxResult, run_sandboxed, short_tmp_dir


def result_of(result: SandboxResult) -> dict:
    """The scenario's JSON result; a test failure with the tail of its output when it has none."""
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.timed_out or result.returncode != 0 or not lines:
        state = "timed out" if result.timed_out else f"exited {result.returncode}"
        pytest.fail(f"scenario {state}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def run_scenario(script: Path, *args: str, timeout: float, cwd: Path) -> dict:
    """Run `python script args…` sandboxed with a fresh HOME (`{home}` in args is replaced by it), then delete it."""
    home = short_tmp_dir()
    try:
        argv = [sys.executable, str(script), *(arg.replace("{home}", str(home)) for arg in args)]
        return result_of(run_sandboxed(argv, home=home, timeout=timeout, cwd=cwd))
    finally:
        shutil.rmtree(home, ignore_errors=True)
