"""LLM-judge reward: answer parsing on fixed answers, and the client against a local stub server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from rewards.llm_judge import (
    ChatClient,
    LLMErrorJudge,
    build_prompt,
    error_count_reward,
    parse_error_counts,
)
from unirg.errors import RewardError

CLEAN = """[Clinically Significant Errors]:
(a) False report of a finding in the candidate: 0
(b) Missing a finding present in the reference: 0
(c) Misidentification of a finding's anatomic location or position: 0
(d) Misassessment of the severity of a finding: 0
(e) Mentioning a comparison that is not in the reference: 0
(f) Omitting a comparison that the reference describes: 0
[Clinically Insignificant Errors]:
(a) False report of a finding in the candidate: 0
(b) Missing a finding present in the reference: 0
(c) Misidentification of a finding's anatomic location or position: 0
(d) Misassessment of the severity of a finding: 0
(e) Mentioning a comparison that is not in the reference: 0
(f) Omitting a comparison that the reference describes: 0
"""

GREEN_STYLE = """Here is my assessment.

[Clinically Significant Errors]:
(a) False report of a finding in the candidate: 1. Right pneumothorax.
(b) Missing a finding present in the reference: 2. Left effusion; cardiomegaly.
(c) Misidentification of a finding's anatomic location/position: 0.
(d) Misassessment of the severity of a finding: 0.
(e) Mentioning a comparison that isn't in the reference: 0.
(f) Omitting a comparison detailing a change from a prior study: 0.

[Clinically Insignificant Errors]:
(a) False report of a finding in the candidate: 0.
(b) Missing a finding present in the reference: 1. Degenerative spine changes.
(c) Misidentification of a finding's anatomic location/position: 0.
(d) Misassessment of the severity of a finding: 0.
(e) Mentioning a comparison that isn't in the reference: 0.
(f) Omitting a comparison detailing a change from a prior study: 0.

[Matched Findings]:
1. Support devices.
"""

MARKDOWN = """**[Clinically Significant Errors]**:
- **(a) False report of a finding in the candidate**: 1
- **(d) Misassessment of the severity of a finding**: **2**
**[Clinically Insignificant Errors]**:
- (c) Misidentification of a finding's anatomic location or position: 3
"""


@pytest.mark.parametrize(("answer", "significant", "insignificant", "reward"), [
    (CLEAN, (0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0), 1.0),
    (GREEN_STYLE, (1, 2, 0, 0, 0, 0), (0, 1, 0, 0, 0, 0), 0.25),
    (MARKDOWN, (1, 0, 0, 2, 0, 0), (0, 0, 3, 0, 0, 0), 0.25),
])
def test_parse_fixed_answers(answer, significant, insignificant, reward):
    counts = parse_error_counts(answer)
    assert counts.significant == significant and counts.insignificant == insignificant
    assert error_count_reward(counts) == reward
    assert error_count_reward(counts, include_insignificant=True) == 1 / (sum(significant) + sum(insignificant) + 1)


@pytest.mark.parametrize("answer", ["", "I cannot grade these reports.", "[Clinically Significant Errors]:\nnone"])
def test_unreadable_answers_give_none(answer):
    assert parse_error_counts(answer) is None
    assert error_count_reward(None) is None


def test_prompt_holds_both_reports_and_every_category():
    prompt = build_prompt("Small left effusion.", "No effusion.")
    assert "Small left effusion." in prompt and "No effusion." in prompt
    assert prompt.count("(f) ") == 3  # listed once, and once per answer section


class _Judge(BaseHTTPRequestHandler):
    answers: list[str] = []
    seen: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"path": self.path, "auth": self.headers.get("Authorization"), **request})
        prompt = request["messages"][-1]["content"]
        # Answer by content so concurrent requests get deterministic answers.
        answer = GREEN_STYLE if "pneumothorax" in prompt.split("Candidate report:")[1] else CLEAN
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def judge_server():
    _Judge.seen = []
    server = HTTPServer(("127.0.0.1", 0), _Judge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_client_against_local_server(judge_server, monkeypatch):
    monkeypatch.setenv("UNIRG_TEST_JUDGE_KEY", "secret")
    client = ChatClient(judge_server, model="judge-7b", api_key_env="UNIRG_TEST_JUDGE_KEY")
    judge = LLMErrorJudge(client, max_workers=2)
    rewards = judge.rewards(["Right pneumothorax.", "No acute findings."], ["Left effusion.", "No acute findings."])
    assert rewards == [0.25, 1.0]
    assert {seen["path"] for seen in _Judge.seen} == {"/v1/chat/completions"}
    assert all(seen["model"] == "judge-7b" and seen["auth"] == "Bearer secret" for seen in _Judge.seen)


def test_unreachable_judge_names_the_endpoint(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    client = ChatClient("http://127.0.0.1:9/v1", model="judge", timeout=2, retries=1)
    with pytest.raises(RewardError, match=r"127\.0\.0\.1:9/v1/chat/completions \(model judge\) did not answer"):
        client.complete("x")


def test_missing_api_key_variable_is_reported(monkeypatch):
    monkeypatch.delenv("UNIRG_NO_SUCH_KEY", raising=False)
    with pytest.raises(RewardError, match="UNIRG_NO_SUCH_KEY"):
        ChatClient("http://127.0.0.1:9/v1", model="judge", api_key_env="UNIRG_NO_SUCH_KEY")


def test_llm_errors_plugin_through_the_adapter(judge_server):
    import pickle

    from rewards import build_reward_functions

    functions, weights = build_reward_functions(
        [{"name": "llm_errors", "weight": 0.5, "options": {"base_url": judge_server, "model": "judge-7b"}}])
    reward = pickle.loads(pickle.dumps(functions[0]))  # what a Ray reward actor receives
    scores = reward(["Findings: Right pneumothorax.", "Findings: No acute findings."],
                    reference=["Left effusion.", "No acute findings."])
    assert reward.__name__ == "llm_errors" and weights == [0.5] and scores == [0.25, 1.0]
