"""End to end: `unirg rl` on the demo recipe in a subprocess, a few GRPO steps, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
FAST = ["grpo.max_steps=3", "data.synthetic.n_train=8", "data.synthetic.n_eval=4",
        "grpo.per_device_train_batch_size=4", "grpo.num_generations=2", "output.save_steps=2",
        "rollout.max_new_tokens=16"]


def run_unirg(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "-m", "unirg", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    run_dir = tmp_path_factory.mktemp("demo")
    result = run_unirg("rl", "--recipe", str(REPO / "recipes" / "demo.yaml"), "--run-dir", str(run_dir), *FAST,
                       cwd=REPO)
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir, result


def test_checkpoint_and_resolved_recipe_written(demo_run):
    run_dir, _ = demo_run
    assert (run_dir / "grpo" / "checkpoint-2" / "model.safetensors").is_file()
    assert (run_dir / "grpo" / "final" / "model.safetensors").is_file()
    resolved = (run_dir / "recipe.yaml").read_text()
    assert "max_steps: 3" in resolved and "num_generations: 2" in resolved


def test_every_reward_computed_every_step(demo_run):
    run_dir, _ = demo_run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3]
    for row in rows:
        for name in ("chexpert_f1", "cider_d", "format"):
            assert row[f"rewards/{name}/mean"] is not None, (name, row)
        assert row["loss"] is not None and row["step_time"] > 0


def test_policy_weights_changed(demo_run):
    run_dir, _ = demo_run
    start = load_file(next(run_dir.glob("tiny-*/model.safetensors")))
    end = load_file(run_dir / "grpo" / "final" / "model.safetensors")
    changed = [name for name in start if name in end and not torch.equal(start[name], end[name])]
    assert len(changed) > len(start) // 2, f"only {len(changed)} of {len(start)} tensors changed"


def test_summary_printed(demo_run):
    run_dir, result = demo_run
    assert "GRPO steps" in result.stdout and str(run_dir) in result.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 3


def test_tensorboard_events_written(demo_run):
    run_dir, _ = demo_run
    assert list((run_dir / "grpo" / "tensorboard").rglob("events.out.tfevents.*"))


def test_rerun_resumes_instead_of_starting_over(demo_run):
    run_dir, _ = demo_run
    result = run_unirg("rl", "--recipe", str(REPO / "recipes" / "demo.yaml"), "--run-dir", str(run_dir), *FAST,
                       cwd=REPO)
    assert result.returncode == 0, result.stderr[-4000:]
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # The second run resumes from checkpoint-3 (the final save) and has nothing left to train.
    assert steps == [1, 2, 3]


def test_bad_override_is_a_clear_error(tmp_path):
    result = run_unirg("rl", "--recipe", "demo", "grpo.num_generation=8", cwd=REPO)
    assert result.returncode == 2
    assert "did you mean 'num_generations'" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_report_text_outside_the_data_folder(demo_run):
    run_dir, result = demo_run
    references = []
    for manifest in (run_dir / "synthetic").rglob("manifest.jsonl"):
        for line in manifest.read_text().splitlines():
            study = json.loads(line)
            references += [study["findings"], study["impression"]]
    sentences = {s.strip() for text in references for s in text.split(". ") if len(s.strip()) > 25}
    assert sentences
    leaks = []
    for path in run_dir.rglob("*"):
        if not path.is_file() or "synthetic" in path.relative_to(run_dir).parts or path.suffix in (".safetensors",
                                                                                                   ".png", ".bin", ".pt", ".pth"):
            continue
        text = path.read_text(errors="ignore")
        leaks += [f"{path.relative_to(run_dir)}: {s[:40]}" for s in sentences if s in text]
    leaks += [f"stdout: {s[:40]}" for s in sentences if s in result.stdout or s in result.stderr]
    assert not leaks, leaks[:5]
