"""End to end with a Qwen3-VL policy: `unirg rl --recipe demo model.tiny.arch=qwen3_vl` runs SFT, GRPO (HF rollout)
and the held-out evaluation on synthetic data, offline, in a subprocess."""

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
# Four SFT steps (32 studies, batch 8, one epoch), three GRPO steps, eight held-out studies: about 45 s on 2 cores.
SHORT = ["model.tiny.arch=qwen3_vl", "sft.num_train_epochs=1", "data.synthetic.n_train=32",
         "data.synthetic.n_eval=8", "grpo.max_steps=3", "grpo.per_device_train_batch_size=4",
         "grpo.num_generations=2", "output.save_steps=3", "rollout.max_new_tokens=16",
         # 16-token completions hold only the sentences every report shares, which cider_d scores 0 alike
         # (no advantage, no update); bleu2 still tells two such completions apart.
         "rewards.1.name=bleu2", "rewards.1.weight=0.5"]
REWARDS = ("chexpert_f1", "bleu2", "format")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    run_dir = tmp_path_factory.mktemp("qwen3-vl")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    result = subprocess.run([sys.executable, "-m", "unirg", "rl", "--recipe", "demo", "--run-dir", str(run_dir),
                             *SHORT], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir, result


def _changed(before: dict, after: dict) -> int:
    return sum(not torch.equal(before[name], after[name]) for name in before if name in after)


def test_policy_is_qwen3_vl_with_its_processor(run) -> None:
    run_dir, _ = run
    for folder in (next(run_dir.glob("tiny-qwen3_vl-*")), run_dir / "sft" / "final", run_dir / "grpo" / "final"):
        config = json.loads((folder / "config.json").read_text())
        assert config["model_type"] == "qwen3_vl", folder
        assert config["vision_config"]["patch_size"] == 16
        processor = json.loads((folder / "processor_config.json").read_text())
        assert processor["processor_class"] == "ImageOnlyQwen3VLProcessor", folder


def test_sft_then_grpo_change_the_weights(run) -> None:
    run_dir, _ = run
    start = load_file(next(run_dir.glob("tiny-qwen3_vl-*")) / "model.safetensors")
    sft = load_file(run_dir / "sft" / "final" / "model.safetensors")
    grpo = load_file(run_dir / "grpo" / "final" / "model.safetensors")
    assert set(start) == set(sft) == set(grpo)
    assert _changed(start, sft) > len(start) // 2, "SFT left most tensors as initialised"
    assert _changed(sft, grpo) > len(start) // 2, "GRPO left most tensors as SFT wrote them"


def test_every_reward_computed_every_step(run) -> None:
    run_dir, _ = run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3]
    for row in rows:
        for name in REWARDS:
            assert row[f"rewards/{name}/mean"] is not None, (name, row)
            assert row[f"rewards/{name}/faults"] == 0, (name, row)
        assert row["loss"] is not None and row["step_time"] > 0


def test_both_checkpoints_evaluated_on_held_out_studies(run) -> None:
    run_dir, result = run
    evaluation = json.loads((run_dir / "summary.json").read_text())["evaluation"]
    assert set(evaluation) == {"before GRPO", "after GRPO"}
    for table in evaluation.values():
        assert table["n"] == 8
        assert table["mean_words"] > 0, "greedy decoding produced empty reports"
    assert "held-out evaluation" in result.stdout
