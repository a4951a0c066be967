"""The rexrank scoring mode: what is scored against what, 1/mean(RadCliQ-v1), leaderboard places, model reuse."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
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
