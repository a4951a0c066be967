"""The run report and terminal summary: smoothed curves, first/last 10% means, references' column, per-dataset table."""

from __future__ import annotations

import io
import json
import re
from types import SimpleNamespace

import pytest
from PIL import Image
from rich.console import Console

from unirg.evaluation.heldout import BY_DATASET, heldout_references, reference_stats, score_completions
from unirg.evaluation.report import format_value, moving_average, smoothing_window, write_report
from unirg.reporting import print_run_summary
from unirg.training.callbacks import summarize

METRICS = ("chexpert_micro_f1_14", "bleu2", "mean_words", "duplicate_rate", "n")
STEPS = 40


def metrics_rows() -> list[dict]:
    rows = []
    for step in range(1, STEPS + 1):
        generation = 1.0 + 0.1 * (step % 3)
        rows.append({"step": step, "reward": 0.01 * step + 0.0123456789, "rewards/format/mean": 0.5 + 0.01 * step,
                     "loss": 0.1, "kl": 0.001 * step, "completions/mean_length": 40.0 + step % 5,
                     "step_time": generation + 0.75, "time/generation": generation, "time/reward/format": 0.05,
                     "time/train": 0.5, "time/other": 0.2})
    return rows


def test_moving_average_window_grows_with_the_run():
    assert smoothing_window(3) == 1 and smoothing_window(40) == 5 and smoothing_window(120) == 13
    assert moving_average([1.0, 2.0, 3.0, 4.0, 5.0], 3) == [1.5, 2.0, 3.0, 4.0, 4.5]
    assert moving_average([2.0, 4.0], 1) == [2.0, 4.0]


def test_values_are_rounded_for_reading():
    assert format_value("chexpert_micro_f1_14", 0.62345678) == "0.623"
    assert format_value("mean_words", 41.2345) == "41.2"
    assert format_value("seconds", 12.345) == "12.3" and format_value("seconds", 0.1234) == "0.12"
    assert format_value("n", 256) == "256" and format_value("bleu2", None) == "—"


@pytest.fixture
def report(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in metrics_rows()))
    summary = summarize(metrics_rows(), ["format"])
    before = {"chexpert_micro_f1_14": 0.6221, "bleu2": 0.1, "mean_words": 30.04, "duplicate_rate": 0.77, "n": 6}
    after = {"chexpert_micro_f1_14": 0.6771, "bleu2": 0.12, "mean_words": 31.5, "duplicate_rate": 0.5, "n": 6}
    summary["evaluation"] = {"before GRPO": before, "after GRPO": after}
    summary["references"] = {"n": 6, "mean_words": 35.333, "duplicate_rate": 0.0}
    summary["evaluation_by_dataset"] = {
        "mimic": {"before GRPO": before, "after GRPO": after, "references": summary["references"]},
        "iu": {"before GRPO": before, "after GRPO": after, "references": summary["references"]}}
    path = write_report(tmp_path, summary, summary["evaluation"], METRICS)
    return path, summary


def test_report_compares_first_and_last_tenth_and_breaks_down_the_step(report):
    path, summary = report
    text = path.read_text()
    # 40 steps: 4 at each end; total reward 0.025 + 0.0123… over steps 1-4 and 0.385 + 0.0123… over 37-40.
    assert summary["steps_averaged"] == 4
    assert "| total (weighted) | 0.037 | 0.397 | +0.360 |" in text
    assert "| generation | 1.1 | 59.5% |" in text  # 1.1 s of 1.85 s
    assert "| reward/format | 0.05 | 2.7% |" in text
    assert text.index("| generation |") < text.index("| reward/format |") < text.index("| train |") \
        < text.index("| other |")
    assert not re.search(r"\d\.\d{4,}", text), "every number in the report is rounded"


def test_evaluation_table_has_the_references_column_and_a_table_per_dataset(report):
    path, _ = report
    text = path.read_text()
    assert "| metric | before GRPO | after GRPO | references |" in text
    assert "| duplicate_rate | 0.770 | 0.500 | 0.000 |" in text
    assert "| mean_words | 30.0 | 31.5 | 35.3 |" in text
    assert "| chexpert_micro_f1_14 | 0.622 | 0.677 | — |" in text
    assert "### Per dataset" in text
    assert "| mimic | references | — | — | 35.3 | 0.000 | 6 |" in text and "| iu | after GRPO |" in text


def test_every_plot_is_written_and_linked(report):
    path, _ = report
    text = path.read_text()
    for name in ("rewards", "completion_length", "kl", "loss", "step_time"):
        image = path.parent / f"{name}.png"
        assert f"![{name}]({name}.png)" in text
        with Image.open(image) as png:
            assert png.size[0] > 400 and png.size[1] > 300


def test_report_without_evaluation_or_timing_still_writes(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward": 0.5}) + "\n")
    path = write_report(tmp_path, summarize([{"step": 1, "reward": 0.5}], []))
    text = path.read_text()
    assert "1 GRPO steps" in text and "## Step time" not in text and "Held-out" not in text


def test_terminal_summary_reads_the_new_keys(report):
    _, summary = report
    output = io.StringIO()
    print_run_summary(SimpleNamespace(summary=summary, run_dir="run", final_model="run/grpo/final", reused=[]),
                      Console(file=output, width=160))
    text = output.getvalue()
    assert "first 4 steps (mean)" in text and "0.037" in text and "0.397" in text
    assert re.search(r"mean step time: 1\.[89] s \(generation 59%", text)
    assert "references" in text and "35.3" in text


def test_references_stats_and_per_dataset_scores():
    from datasets import Dataset

    findings = ["Heart size is normal.", "Heart size is normal.", "Small left effusion.", "Lungs are clear."]
    impressions = ["No acute disease.", "No acute disease.", "Effusion.", ""]
    dataset = Dataset.from_dict({"reference_findings": findings, "reference_impression": impressions,
                                 "reference_labels": [None] * 4, "dataset": ["a", "a", "b", "b"]})
    stats = reference_stats(findings, impressions)
    assert stats["n"] == 4 and stats["duplicate_rate"] == 0.5
    assert stats["mean_words"] == pytest.approx((7 + 7 + 4 + 3) / 4)
    completions = ["Findings: Heart size is normal. Impression: No acute disease."] * 4
    settings = score_completions(completions, dataset, by_dataset=True)
    assert settings["findings_impression"]["n"] == 4
    assert {name: table["n"] for name, table in settings[BY_DATASET].items()} == {"a": 2, "b": 2}
    assert settings[BY_DATASET]["a"]["duplicate_rate"] == 1.0
    assert BY_DATASET not in score_completions(completions, dataset.remove_columns("dataset"), by_dataset=True)
    entries = heldout_references(dataset, {name: {"after": table} for name, table in settings[BY_DATASET].items()})
    assert entries["references"] == stats
    assert entries["evaluation_by_dataset"]["b"]["references"]["duplicate_rate"] == 0.0
    assert "evaluation_by_dataset" not in heldout_references(dataset, {})


def test_pipeline_keeps_the_per_dataset_tables_and_reads_them_back(tmp_path, monkeypatch):
    from datasets import Dataset

    from unirg.recipe import load_recipe
    from unirg.training import pipeline

    calls = []

    def fake_evaluate(model_path, dataset, recipe, models=None, by_dataset=False):  # generation: other tests
        calls.append(by_dataset)
        table = {metric: 0.5 for metric in pipeline.REPORT_METRICS}
        return {"findings_impression": table, BY_DATASET: {"a": {**table, "n": 1}, "b": {**table, "n": 2}}}

    monkeypatch.setattr(pipeline, "evaluate_dataset", fake_evaluate)
    dataset = Dataset.from_dict({"dataset": ["a", "b", "b"]})
    model = str(tmp_path / "model")
    table, per_dataset, cached = pipeline._evaluation(tmp_path, "after GRPO", model, dataset, load_recipe("demo"))
    assert not cached and table["n"] == 0.5 and {name: t["n"] for name, t in per_dataset.items()} == {"a": 1, "b": 2}
    again = pipeline._evaluation(tmp_path, "after GRPO", model, dataset, load_recipe("demo"))
    assert again == (table, per_dataset, True) and calls == [True]
