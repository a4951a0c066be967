"""Scenario: a two-node Ray cluster on loopback runs `unirg rl` as a Ray job with 2 trainer ranks; stopped mid-run, it resumes.

Runs as PID 1 of the sandbox namespace. A head (`ray start --head`) and a worker node (`ray start --address`),
each with 3 logical CPUs, then `ray job submit -- python -m unirg rl` of the demo recipe cut down to 6 GRPO
steps with 2 trainer processes (gloo), 2 vLLM rollout workers and the clinical reward in Ray actors. The first
job is stopped (`ray job stop`, through the job SDK so no CLI start-up delays it) as soon as checkpoint-2 is
complete; the same command is submitted again and must resume from the last complete checkpoint and finish.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import emit

BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")
GCS = "127.0.0.1:6380"
DASHBOARD = "http://127.0.0.1:8265"
STEPS = 6
OVERRIDES = [
    "sft=null", "data.synthetic.n_train=16", "data.synthetic.n_eval=2", f"grpo.max_steps={STEPS}",
    "output.save_steps=2", "grpo.per_device_train_batch_size=4", "grpo.num_generations=2",
    "rollout.max_new_tokens=12", "logging.progress=false", "logging.tensorboard=false",
    # vLLM's CPU attention needs head sizes that are multiples of 32: hidden 128 with 4 heads.
    "model.tiny.hidden_size=128",
    "rollout.backend=vllm_ray", "rollout.num_workers=2", "rollout.dtype=float32", "rollout.max_model_len=512",
    "cluster.trainer_workers=2", "cluster.trainer_placement_strategy=SPREAD",
    "cluster.ray_rewards=[chexpert_f1]", "cluster.reward_cpus_per_worker=0.5",
]


def run(*argv: str, timeout: float = 180, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


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


def complete(checkpoint: Path) -> bool:
    return (checkpoint / "unirg_checkpoint_complete").is_file()


def rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    out = []
    for line in (path.read_text().splitlines() if path.is_file() else []):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def submit(job_id: str, run_dir: Path, runtime_env: str, wait: bool) -> subprocess.CompletedProcess:
    argv = [RAY, "job", "submit", f"--address={DASHBOARD}", f"--submission-id={job_id}",
            f"--runtime-env-json={runtime_env}", *([] if wait else ["--no-wait"]), "--",
            "python", "-m", "unirg", "rl", "--recipe", "recipes/demo.yaml", "--run-dir", str(run_dir), *OVERRIDES]
    return run(*argv, timeout=900)


def job_status(client, job_id: str) -> str:
    return str(client.get_job_status(job_id)).split(".")[-1]


def live_actors() -> list[list[str]]:
    """[class name, node id] of every live actor: trainer ranks, rollout workers, reward actors."""
    from ray.util.state import list_actors

    actors = list_actors(address=DASHBOARD, filters=[("state", "=", "ALIVE")], limit=200)
    return sorted([a.class_name, a.node_id] for a in actors)


def main(work: Path, repo: Path) -> None:
    from ray.job_submission import JobSubmissionClient

    started = time.monotonic()
    timings: dict[str, float] = {}
    # The job's `python` is the one on the PATH `ray start` had: this environment's.
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=3", "--object-store-memory=300000000", "--disable-usage-stats"]
    head = run(RAY, "start", "--head", f"--port={GCS.split(':')[1]}", "--dashboard-host=127.0.0.1",
               "--dashboard-port=8265", f"--temp-dir={work / 'ray'}", *common, env=env)
    # Its own temp dir, as on a separate machine: a runtime-env agent deletes packages it unpacked under its
    # temp dir when unused, and a shared one would pull the job's working_dir from under the head's driver.
    worker = run(RAY, "start", f"--address={GCS}", f"--temp-dir={work / 'ray-node2'}", *common, env=env)
    timings["cluster_start_s"] = time.monotonic() - started
    runtime_env = run(sys.executable, "-m", "unirg.orchestration", "runtime-env", "--working-dir", str(repo),
                      env=env).stdout
    client = JobSubmissionClient(DASHBOARD)
    sockets = listening()
    from ray.util.state import list_nodes

    nodes = [n.node_id for n in list_nodes(address=DASHBOARD) if n.state == "ALIVE"]
    run_dir = work / "run"

    # 1: submit, note where the actors run, stop it as soon as checkpoint-2 is complete (a GRPO step here
    # takes about a second once the engines are up: the stop must not wait for a CLI to start).
    t0 = time.monotonic()
    first = submit("unirg-first", run_dir, runtime_env, wait=False)
    placed: list[list[str]] = []
    stopped_at: list[int] = []
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        steps = [row["step"] for row in rows(run_dir)]
        if complete(run_dir / "grpo" / "checkpoint-2"):
            client.stop_job("unirg-first")
            stopped_at = steps
            break
        if steps and not placed:
            placed = live_actors()
        if job_status(client, "unirg-first") in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        time.sleep(0.05)
    timings["first_job_until_stop_s"] = time.monotonic() - t0
    for _ in range(240):
        if job_status(client, "unirg-first") in ("STOPPED", "FAILED", "SUCCEEDED"):
            break
        time.sleep(0.5)
    time.sleep(5)  # the trainer ranks die with their job's driver; let them go before looking
    first_status = job_status(client, "unirg-first")
    first_logs = client.get_job_logs("unirg-first")
    before = rows(run_dir)
    checkpoints_after_stop = sorted(int(c.name.split("-")[1]) for c in (run_dir / "grpo").glob("checkpoint-*")
                                    if complete(c))
    final_after_stop = (run_dir / "grpo" / "final").exists()

    # 2: the same command again resumes from checkpoint-2 and finishes.
    t0 = time.monotonic()
    second = submit("unirg-second", run_dir, runtime_env, wait=True)
    timings["second_job_s"] = time.monotonic() - t0
    second_status = job_status(client, "unirg-second")
    second_logs = client.get_job_logs("unirg-second")
    after = rows(run_dir)

    final_loads, final_error = False, ""
    try:
        import torch
        from transformers import AutoModelForImageTextToText

        AutoModelForImageTextToText.from_pretrained(run_dir / "grpo" / "final", dtype=torch.float32)
        final_loads = True
    except Exception as error:  # noqa: BLE001 - reported to the test
        final_error = repr(error)[-500:]
    summary_path = run_dir / "summary.json"
    stop = run(RAY, "stop", "--force", timeout=120)
    time.sleep(2)
    timings["total_s"] = time.monotonic() - started
    emit({"head_rc": head.returncode, "head_err": head.stderr[-1500:], "worker_rc": worker.returncode,
          "worker_err": worker.stderr[-1500:], "nodes": len(nodes), "actors": placed,
          "first_submit_rc": first.returncode, "first_submit_out": (first.stdout + first.stderr)[-2000:],
          "first_status": first_status, "first_logs": first_logs[-6000:], "stopped_at": stopped_at,
          "checkpoints_after_stop": checkpoints_after_stop, "final_after_stop": final_after_stop,
          "rows_before": before, "second_submit_rc": second.returncode, "second_status": second_status,
          "second_logs": second_logs[-6000:], "rows_after": after, "final_loads": final_loads,
          "final_error": final_error,
          "summary": json.loads(summary_path.read_text()) if summary_path.is_file() else None,
          "report": (run_dir / "report" / "report.md").is_file(), "stop_rc": stop.returncode, "listening": sockets,
          "left": processes(), "timings": timings})


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
