"""The rexrank scoring mode: what is scored against what, 1/mean(RadCliQ-v1), leaderboard places, model reuse."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from rewards.lexical import bleu2
from rewards.radcliq import radcliq_v1
from unirg.evaluation.metrics import MetricModels, score_reports
from unirg.evaluation.rexrank import (
    formatted_reference,
    leaderboard_place,
    read_leaderboard,
    rexrank_settings,
    without_reasoning,
)

REPO = Path(__file__).resolve().parents[2]
ORACLES = REPO / ".." / "shared" / "oracles"


class FakePlugin:
    """A model metric with fixed per-report scores: counts its set-ups and records what it was given."""

    setups = 0

    def __init__(self, value):
        self.value = value
        self.calls = []

    def setup(self):
        FakePlugin.setups += 1

    def score(self, reports, references):
        self.calls.append((list(reports), list(references)))
        return [self.value(r) if callable(self.value) else self.value for r in reports]


@pytest.fixture
def fake_models(monkeypatch):
    plugins = {"bertscore": FakePlugin(0.5), "semb_score": FakePlugin(0.4), "radgraph_f1": FakePlugin(0.3),
               "ratescore": FakePlugin(0.6)}
    FakePlugin.setups = 0
    monkeypatch.setattr("rewards.registry.instantiate", lambda name, options: plugins[name])
    return MetricModels(), plugins


def test_without_reasoning():
    assert without_reasoning("<think>lungs?</think>\nFindings: Clear. Impression: Normal.") == \
        "Findings: Clear. Impression: Normal."
    assert without_reasoning("Findings: Clear.") == "Findings: Clear."
    assert without_reasoning("Findings: Clear. <think>unfinished") == "Findings: Clear."
    assert without_reasoning("lungs?</think> Clear.") == "Clear."  # opener in the prompt


def test_formatted_reference():
    assert formatted_reference("Clear lungs.", "Normal.") == "Findings: Clear lungs. Impression: Normal."
    assert formatted_reference("", "Normal.") == "Impression: Normal."
    assert formatted_reference("Clear lungs. ", "") == "Findings: Clear lungs."


def test_settings_score_the_raw_completion_against_the_formatted_reference(fake_models):
    models, plugins = fake_models
    completions = ["<think>x</think>Findings: Mild cardiomegaly. Impression: Cardiomegaly.",
                   "Findings: Clear lungs. Impression: Normal."]
    settings = rexrank_settings(completions, ["Mild cardiomegaly.", ""], ["Cardiomegaly.", "Normal."], models)
    raw = ["Findings: Mild cardiomegaly. Impression: Cardiomegaly.", "Findings: Clear lungs. Impression: Normal."]
    refs = ["Findings: Mild cardiomegaly. Impression: Cardiomegaly.", "Impression: Normal."]
    full = settings["findings_impression"]
    assert full["bleu2"] == pytest.approx(sum(bleu2(raw, refs)) / 2)
    assert settings["findings"]["n"] == 1  # only the study whose reference has findings
    assert settings["findings"]["bleu2"] == pytest.approx(bleu2(raw[:1], ["Mild cardiomegaly."])[0])
    assert plugins["bertscore"].calls[-1] == (raw, refs)
    expected = sum(radcliq_v1(0.3, 0.5, 0.4, b) for b in bleu2(raw, refs)) / 2
    assert full["radcliq_v1"] == pytest.approx(expected)
    assert full["one_over_radcliq_v1"] == pytest.approx(1 / expected)
    assert full["ratescore"] == pytest.approx(0.6)
    assert FakePlugin.setups == 4  # one per model metric for both settings, not one per setting


def test_non_finite_model_score_is_left_out_not_float_none(fake_models):
    models, plugins = fake_models
    plugins["bertscore"].value = lambda report: None if report == "" else 0.5
    table = score_reports(["", "Clear lungs."], ["Normal.", "Clear lungs."], models=models)
    assert table["bertscore"] == 0.5
    assert table["radcliq_v1"] == pytest.approx(radcliq_v1(0.3, 0.5, 0.4, 1.0))  # the scored report only


def test_unknown_metric_option_is_named():
    from unirg.errors import UnirgError

    with pytest.raises(UnirgError, match="bertscor"):
        MetricModels({"bertscor": {"model": "/x"}})


def test_leaderboard_place(tmp_path):
    path = tmp_path / "result_iu_xray.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Rank", "Model Name", "1/RadCliQ-v1"])
        writer.writerows([[1, "A", 1.1], [2, "B", 0.9], [3, "C", 0.7]])
    rows = read_leaderboard(path)
    assert leaderboard_place(1.0, rows) == {"place": 2, "of": 4, "just_above": "B", "just_below": "A"}
    assert leaderboard_place(2.0, rows)["place"] == 1
    assert leaderboard_place(0.1, rows)["place"] == 4


def test_published_rows_reproduce_one_over_radcliq_from_their_means():
    """RadCliQ-v1 is affine, so 1/RadCliQ-v1 of the published metric means is the published 1/mean(RadCliQ-v1).

    Every findings table and the findings + impression tables of MIMIC-CXR and CheXpert Plus agree to 0.004
    (the means are published to 3 decimals). The findings + impression tables of IU X-ray and GradientHealth
    do not (up to 0.054 apart) on the leaderboard itself; they are checked to stay the only ones.
    """
    folder = ORACLES / "rexrank_published"
    if not folder.is_dir():
        pytest.skip(f"{folder}: ../shared/oracles not present (a user's clone has none)")
    checked, off = 0, set()
    for path in sorted(folder.glob("*.csv")):
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                value = radcliq_v1(float(row["RadGraph"]), float(row["BertScore"]), float(row["SembScore"]),
                                   float(row["BLEU"]))
                if abs(1 / value - float(row["1/RadCliQ-v1"])) > 0.004:
                    off.add(path.name)
                checked += 1
    assert checked > 100
    assert off <= {"result_iu_xray.csv", "result_gradienthealth.csv"}, off


def test_cli_rexrank_mode_writes_the_ranking_column(tmp_path):
    rows = [{"study_id": "a", "prediction": "<think>hm</think>Findings: Clear lungs. Impression: Normal.",
             "reference": "Findings: Clear lungs.\nImpression: Normal."}]
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = subprocess.run([sys.executable, "-m", "unirg", "eval", "--predictions", str(predictions), "--mode",
                             "rexrank", "--nlg", "--metric-option", "bertscore.model=/nonexistent/folder", "--out",
                             str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics["settings"]) == {"findings", "findings_impression"}
    assert metrics["bleu2"] == pytest.approx(1.0)  # the raw completion equals the formatted reference
    assert "one_over_radcliq_v1" in metrics
    findings = metrics["settings"]["findings"]
    assert {"nlg_bleu_1", "nlg_bleu_4", "nlg_rouge_l", "nlg_cider", "nlg_meteor"} <= set(findings)
    # The findings setting scores the raw completion: 2 of its 5 whitespace tokens are in the reference.
    assert findings["nlg_bleu_1"] == pytest.approx(2 / 5, rel=1e-8)
    assert "model folder not found: /nonexistent/folder" in result.stdout
    assert "green: not computed (no judge configured: give one of --metric-option green.model_path=FOLDER" \
        in result.stdout


# A stand-in judge: run as `vllm.entrypoints.openai.api_server` (same arguments) or served in-process. It
# answers GREEN- and CheXprompt-style by the candidate report: one missed effusion (1 significant error, 3
# matched findings), nothing wrong (2 matched), or an unreadable answer for a report starting "Garbage".
FAKE_JUDGE = textwrap.dedent('''
    import json, os
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    GREEN = ("[Explanation]:\\nx\\n[Clinically Significant Errors]:\\n(a) False report: 0\\n"
             "(b) Missing a finding: {errors}\\n[Clinically Insignificant Errors]:\\n(a) False report: 1\\n"
             "[Matched Findings]:\\n{matched}. heart; lungs; bones\\n")
    CHEX = ("Number of clinically significant errors by type: [(A, 0), (B, {errors}), (C, 0), (D, 0), (E, 0), (F, 0)]\\n"
            "Number of clinically insignificant errors by type: [(A, 2), (B, 0), (C, 0), (D, 0), (E, 0), (F, 0)]\\n")

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code, payload):
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._reply(200 if self.path == "/health" else 404, {})

        def do_POST(self):
            prompt = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["messages"][-1]["content"]
            candidate = prompt.rsplit("<<<CANDIDATE REPORT>>>", 1)[1].split("<<<END CANDIDATE REPORT>>>")[0].strip()
            errors = 1 if "effusion" in candidate.lower() else 0
            template = CHEX if "errors by type:" in prompt else GREEN
            content = "I cannot grade this." if candidate.startswith("Garbage") else \\
                template.format(errors=errors, matched=3 if errors else 2)
            self._reply(200, {"choices": [{"message": {"content": content}}]})

        def log_message(self, *a):
            pass

    if __name__ == "__main__":
        import argparse

        parser = argparse.ArgumentParser()
        for name in ("--model", "--served-model-name", "--host", "--port", "--gpu-memory-utilization"):
            parser.add_argument(name)
        args = parser.parse_args()
        with open(os.environ["FAKE_JUDGE_STARTS"], "a") as starts:
            starts.write(args.model + "\\n")
        ThreadingHTTPServer((args.host, int(args.port)), Handler).serve_forever()
''')

JUDGED = [{"study_id": "a", "prediction": "Findings: Small left effusion. Impression: Effusion.",
           "reference": "Findings: Clear lungs.\nImpression: Normal."},
          {"study_id": "b", "prediction": "Findings: Clear lungs. Impression: Normal.",
           "reference": "Findings: Clear lungs.\nImpression: Normal."},
          {"study_id": "c", "prediction": "Garbage words.", "reference": "Findings: Clear lungs.\nImpression: Normal."}]


def _check_judged(table: dict) -> None:
    assert table["green"] == pytest.approx((0.75 + 1.0) / 2)  # 3/(3+1) and 2/(2+0); "c" unreadable, left out
    assert table["green_unscored"] == 1
    assert table["chexprompt_errors"] == pytest.approx(0.5)  # significant errors only: 1 and 0
    assert table["chexprompt_errors_unscored"] == 1


def test_green_and_chexprompt_columns_from_a_served_judge(tmp_path):
    """model_path: unirg serves the judge (one server for both columns), scores both settings, stops it."""
    fake = tmp_path / "fake" / "vllm" / "entrypoints" / "openai"
    fake.mkdir(parents=True)
    for folder in (fake, fake.parent, fake.parent.parent):
        (folder / "__init__.py").write_text("")
    (fake / "api_server.py").write_text(FAKE_JUDGE)
    judge = tmp_path / "green-judge"
    judge.mkdir()
    starts = tmp_path / "starts.txt"
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps(r) + "\n" for r in JUDGED))
    options = []
    for column in ("green", "chexprompt"):
        options += ["--metric-option", f"{column}.model_path={judge}", "--metric-option", f"{column}.parse_retries=0"]
    options += ["--metric-option", f"green.env={{PYTHONPATH: {tmp_path / 'fake'}, FAKE_JUDGE_STARTS: {starts}}}",
                "--metric-option", "green.startup_timeout_s=60"]
    result = subprocess.run([sys.executable, "-m", "unirg", "eval", "--predictions", str(predictions), "--mode",
                             "rexrank", *options, "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for setting in ("findings", "findings_impression"):
        _check_judged(metrics["settings"][setting])
    assert starts.read_text().splitlines() == [str(judge)]  # one server, shared by both columns
    header = (tmp_path / "out" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"green", "chexprompt_errors"} <= set(header)
    assert "green: not computed" not in result.stdout and "chexprompt: not computed" not in result.stdout


def test_green_and_chexprompt_columns_from_a_judge_url():
    """base_url: a running OpenAI-compatible endpoint; absent judges are reported with the reason."""
    from http.server import ThreadingHTTPServer

    namespace: dict = {"__name__": "fake_judge"}
    exec(FAKE_JUDGE, namespace)  # noqa: S102 - the test's own server code
    server = ThreadingHTTPServer(("127.0.0.1", 0), namespace["Handler"])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        models = MetricModels({"green": {"base_url": url, "parse_retries": 0},
                               "chexprompt": {"base_url": url, "model": "judge", "parse_retries": 0}})
        settings = rexrank_settings([r["prediction"] for r in JUDGED], ["Clear lungs."] * 3, ["Normal."] * 3,
                                    models)
    finally:
        server.shutdown()
        server.server_close()
    _check_judged(settings["findings_impression"])
    _check_judged(settings["findings"])

    unconfigured = MetricModels()
    table = rexrank_settings(["Findings: Clear lungs."], ["Clear lungs."], [""], unconfigured)["findings"]
    assert table["green"] is None and table["chexprompt_errors"] is None
    assert unconfigured.unavailable["green"].startswith("no judge configured: give one of --metric-option "
                                                        "green.model_path=FOLDER")
    assert "chexprompt.base_url=URL" in unconfigured.unavailable["chexprompt"]


def test_judge_options_outside_the_rexrank_mode_are_refused(tmp_path):
    predictions = tmp_path / "p.jsonl"
    predictions.write_text(json.dumps(JUDGED[0]) + "\n")
    result = subprocess.run([sys.executable, "-m", "unirg", "eval", "--predictions", str(predictions),
                             "--metric-option", "green.base_url=http://127.0.0.1:9/v1", "--out", str(tmp_path / "o")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "green.*: those columns are computed with --mode rexrank only" in result.stdout + result.stderr
