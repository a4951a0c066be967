"""End to end: `unirg rl --recipe demo-medr2`, shortened — reasoning SFT, GRPO with two-pass reflection, eval.

A reward plugin written by the test stands in for bleu2 (weight 0) and records what the reward adapter
hands it: the final turn's text, its report and its reasoning. The test checks that every completion
splits into reasoning and report, that the report a reward scores never carries the reasoning, that the
draft and the reflection request never reach a reward, and that the reflection metrics are logged per
step and in the held-out table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unirg.prompts.parser import parse_completion
from unirg.reasoning.reflection import REFLECTION_REQUEST

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RECORDER = '''
import json


class Recorder:
    """Scores 0 for every completion; appends what it received to a JSONL file."""

    def __init__(self, path):
        self.path = path

    def score(self, completions, reports, reasoning):
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"completions": list(completions), "reports": list(reports),
                                     "reasoning": list(reasoning)}) + "\\n")
        return [0.0] * len(reports)
'''
STEPS = 3
SHORT = ["data.synthetic.n_train=32", "data.synthetic.n_eval=8", "sft.num_train_epochs=8",
         f"grpo.max_steps={STEPS}", "grpo.per_device_train_batch_size=4", "grpo.num_generations=2",
         "output.save_steps=100", "rollout.max_new_tokens=160", "logging.progress=false", "logging.tensorboard=false"]


@pytest.fixture(scope="module")
def medr2_run(tmp_path_factory) -> tuple[Path, list[dict]]:
    work = tmp_path_factory.mktemp("medr2")
    (work / "recorder.py").write_text(RECORDER)
    seen = work / "seen.jsonl"
    run_dir = work / "run"
    args = ["rl", "--recipe", "demo-medr2", "--run-dir", str(run_dir), *SHORT,
            f"rewards.1.name={work / 'recorder.py'}:Recorder", f"rewards.1.options.path={seen}", "rewards.1.weight=0.0"]
    result = subprocess.run([sys.executable, "-m", "unirg", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=1500, env=dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"))
    assert result.returncode == 0, result.stderr[-4000:]
    calls = [json.loads(line) for line in seen.read_text(encoding="utf-8").splitlines()]
    return run_dir, calls


def test_every_completion_splits_into_reasoning_and_report(medr2_run):
    _, calls = medr2_run
    assert len(calls) == STEPS
    completions = 0
    for call in calls:
        for completion, report, reasoning in zip(call["completions"], call["reports"], call["reasoning"],
                                                 strict=True):
            parsed = parse_completion(completion)
            assert (parsed.reasoning, parsed.report) == (reasoning, report)
            completions += 1
    assert completions == STEPS * 4


def test_the_reward_never_sees_the_reasoning(medr2_run):
    _, calls = medr2_run
    reasoned = 0
    for call in calls:
        for completion, report, reasoning in zip(call["completions"], call["reports"], call["reasoning"],
                                                 strict=True):
            # The final turn only: the draft and the reflection request stay out of every reward.
            assert REFLECTION_REQUEST not in completion and "Reflect:" not in completion
            parsed = parse_completion(completion)
            if parsed.has_think and parsed.think_closed and not parsed.problems:
                # A well-formed completion: nothing of its reasoning block is left in the report.
                assert "<think>" not in report and "</think>" not in report
            if reasoning.strip() and report.strip():
                assert reasoning not in report
                reasoned += 1
    # Not vacuous: after reasoning SFT some final turns have both a reasoning block and a report.
    assert reasoned > 0, "no completion had both a reasoning block and a report"


def test_reflection_metrics_logged_every_step(medr2_run):
    run_dir, _ = medr2_run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(1, STEPS + 1))
    for row in rows:
        for name in ("changed_rate", "f1_draft", "f1_final"):
            assert 0.0 <= row[f"reflection/{name}"] <= 1.0, row
        for name in ("chexpert_f1", "format"):
            assert row[f"rewards/{name}/mean"] is not None, row


def test_held_out_table_has_reflection_rows(medr2_run):
    run_dir, _ = medr2_run
    evaluation = json.loads((run_dir / "summary.json").read_text())["evaluation"]
    for name in ("before GRPO", "after GRPO"):
        table = evaluation[name]
        assert table["n"] == 8
        for key in ("reflection_changed_rate", "reflection_f1_draft", "reflection_f1_final"):
            assert 0.0 <= table[key] <= 1.0, (name, key, table)
        assert "consistency" in table
    assert "reflection_changed_rate" in (run_dir / "report" / "report.md").read_text()
