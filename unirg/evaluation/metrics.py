"""The ReXrank-style metric table: label F1, BLEU, ROUGE-L, BERTScore and RadCliQ when available, length, duplicates."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rewards.clinical import TOP5_INDICES, corpus_f1, positives
from rewards.label_errors import label_errors
from rewards.labeler import DERIVED, OBSERVATIONS, label_reports
from rewards.lexical import bleu2, bleu4, rouge_l
from unirg.prompts.parser import parse_completion

ERROR_INDICES = [i for i, name in enumerate(OBSERVATIONS) if name not in DERIVED]
# Column order of metrics.csv and of the terminal table.
METRIC_KEYS = ("n", "chexpert_micro_f1_14", "chexpert_macro_f1_14", "chexpert_micro_f1_5", "chexpert_macro_f1_5",
               "bleu2", "bleu4", "rouge_l", "bertscore", "semb_score", "radgraph", "radcliq_v1",
               "one_over_radcliq_v1", "ratescore", "green", "chexprompt_errors", "label_errors", "mean_words",
               "duplicate_rate")


def mean_scored(values: Sequence[float | None]) -> float | None:
    """Mean of the scored reports; a report a model metric could not score (None, non-finite) is left out."""
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return sum(kept) / len(kept) if kept else None


def duplicate_rate(reports: Sequence[str]) -> float:
    """Share of reports identical (case and spacing aside) to another report of the set."""
    normalized = [" ".join(r.lower().split()) for r in reports]
    counts = Counter(normalized)
    return sum(1 for r in normalized if counts[r] > 1) / len(reports) if reports else 0.0


# Table column → reward plugin computing it per report; filled only when the plugin's weights are present.
MODEL_METRICS = {"bertscore": "bertscore", "semb_score": "semb_score", "radgraph": "radgraph_f1"}
# Leaderboard columns outside RadCliQ, filled in the rexrank mode when their weights (or judge) are present.
EXTRA_MODEL_METRICS = {"ratescore": "ratescore", "green": "green", "chexprompt_errors": "chexprompt"}
# LLM-judged columns: option group → (`llm_errors` prompt style, the per-report part the column averages).
# green: matched / (matched + clinically significant errors), higher is better; chexprompt: clinically
# significant errors per report, lower is better.
JUDGE_METRICS = {"green": ("green", "green"), "chexprompt": ("chexprompt", "errors")}
# Options of a judge column that configure the vLLM server unirg starts for its `model_path`.
_SERVE_OPTIONS = ("gpu_memory_utilization", "max_model_len", "python", "extra_args", "startup_timeout_s", "env")


class MetricModels:
    """The model-based metric plugins of one evaluation, each loaded once and reused by every setting.

    `options` maps a plugin name to its options, e.g. {"bertscore": {"model": "/weights/distilroberta-base",
    "num_layers": 5, "baseline_path": "/weights/distilroberta-base.tsv"}}, so local weight folders can be used.
    The judge columns (`green`, `chexprompt`) take `model_path` (a local model folder unirg serves with vLLM,
    see rewards.judge_server, with that server's options) or `base_url` and `model` (a running OpenAI-compatible
    endpoint and its served model name), plus any other `llm_errors` option (max_workers, timeout, ...).
    Both judge columns given the same `model_path` share one server; `close()` stops it.
    """

    def __init__(self, options: dict[str, dict[str, Any]] | None = None):
        self.options = {name: dict(values) for name, values in (options or {}).items()}
        known = {*MODEL_METRICS.values(), *EXTRA_MODEL_METRICS.values()}
        unknown = sorted(set(self.options) - known)
        if unknown:
            from unirg.errors import UnirgError

            raise UnirgError(f"metric options for {', '.join(unknown)}: not a model metric of the table; "
                             f"options go to {', '.join(sorted(known))}")
        self._plugins: dict[str, Any] = {}
        self.unavailable: dict[str, str] = {}
        self._served: dict[str, str] = {}  # judge model folder → base URL of the server started for it

    def plugin(self, name: str):
        """The set-up plugin, or None when its weights or package are missing (the reason kept in `unavailable`)."""
        from rewards.registry import instantiate
        from unirg.errors import UnirgError

        if name in self._plugins:
            return self._plugins[name]
        if name in self.unavailable:
            return None
        try:
            if name in JUDGE_METRICS:
                plugin = self._judge(name)
            else:
                plugin = instantiate(name, self.options.get(name, {}))
                getattr(plugin, "setup", lambda: None)()
        except UnirgError as error:  # weights, package or judge missing: the column stays empty
            self.unavailable[name] = str(error).splitlines()[0]
            return None
        self._plugins[name] = plugin
        return plugin

    def _judge(self, name: str):
        """The set-up `llm_errors` plugin of a judge column (its server started when it serves a local folder)."""
        from rewards.registry import instantiate
        from unirg.errors import UnirgError

        style, _ = JUDGE_METRICS[name]
        options = dict(self.options.get(name, {}))
        model_path = options.pop("model_path", None)
        serve = {key: options.pop(key) for key in _SERVE_OPTIONS if key in options}
        if (model_path is None) == ("base_url" not in options):
            raise UnirgError(f"no judge configured: give one of --metric-option {name}.model_path=FOLDER (a local "
                             f"model unirg serves with vLLM) or {name}.base_url=URL (an OpenAI-compatible endpoint)")
        if model_path is not None:
            model_path = str(model_path)
            if model_path in self._served:  # the other judge column already serves this model
                options["base_url"] = self._served[model_path]
            else:
                options["serve"] = {"model": model_path, **serve}
        plugin = instantiate("llm_errors", {**options, "style": style,
                                            "score": "green" if style == "green" else "errors"})
        plugin.setup()
        if model_path is not None and getattr(plugin, "server", None) is not None:
            self._served[model_path] = plugin.server.base_url
        return plugin

    def close(self) -> None:
        """Release what the plugins hold (stops the judge servers unirg started)."""
        for plugin in self._plugins.values():
            getattr(plugin, "teardown", lambda: None)()

    def score(self, name: str, predictions: Sequence[str], references: Sequence[str]) -> list[float | None] | None:
        """Per-report scores (None where the metric gave no finite score), or None when unavailable."""
        from unirg.errors import UnirgError

        plugin = self.plugin(name)
        if plugin is None:
            return None
        try:
            scores = plugin.score(reports=list(predictions), references=list(references))
        except UnirgError as error:  # e.g. a judge without one readable answer: the column stays empty
            self.unavailable[name] = str(error).splitlines()[0]
            return None
        values = scores.parts[JUDGE_METRICS[name][1]] if name in JUDGE_METRICS else getattr(scores, "scores", scores)
        return [float(v) if v is not None and math.isfinite(float(v)) else None for v in values]


def score_reports(predictions: Sequence[str], references: Sequence[str],
                  reference_labels: Sequence | None = None, models: MetricModels | None = None) -> dict[str, Any]:
    """Every metric that can be computed here for paired predicted and reference report texts.

    Model-based metrics (BERTScore, SembScore, RadGraph) are None unless their weights are available, and
    RadCliQ-v1 is None unless all four of its inputs are.
    """
    hyp_labels = label_reports(predictions)
    ref_labels = [known if known is not None else computed for known, computed in zip(
        reference_labels or [None] * len(references), label_reports(references), strict=True)]
    table: dict[str, Any] = {"n": len(predictions)}
    for suffix, indices in (("14", None), ("5", TOP5_INDICES)):
        f1 = corpus_f1([positives(h, indices=indices) for h in hyp_labels],
                       [positives(r, indices=indices) for r in ref_labels])
        table[f"chexpert_micro_f1_{suffix}"] = f1["micro"]
        table[f"chexpert_macro_f1_{suffix}"] = f1["macro"]
    # Clinically significant errors per report by the labeler (false + missed findings), the offline
    # counterpart of the judge's error count that UniRG step 2 rewards.
    table["label_errors"] = mean_scored([sum(label_errors(h, r, ERROR_INDICES)) for h, r in
                                         zip(hyp_labels, ref_labels, strict=True)])
    per_report_bleu2 = bleu2(predictions, references)
    table["bleu2"] = mean_scored(per_report_bleu2)  # ReXrank: mean of per-report BLEU-2
    table["bleu4"] = mean_scored(bleu4(predictions, references))
    table["rouge_l"] = mean_scored(rouge_l(predictions, references))
    models = models or MetricModels()
    model_scores = {key: models.score(name, predictions, references) for key, name in MODEL_METRICS.items()}
    for key, scores in model_scores.items():
        table[key] = mean_scored(scores) if scores is not None else None
    table["radcliq_v1"] = None
    if all(scores is not None for scores in model_scores.values()):
        from rewards.radcliq import radcliq_v1

        # A report with any sub-score missing (non-finite) has no RadCliQ-v1 and is left out of the mean.
        table["radcliq_v1"] = mean_scored([radcliq_v1(r, b, s, b2) if None not in (r, b, s) else None
                                     for r, b, s, b2 in zip(model_scores["radgraph"], model_scores["bertscore"],
                                                            model_scores["semb_score"], per_report_bleu2,
                                                            strict=True)])
    table["mean_words"] = mean_scored([len(p.split()) for p in predictions])
    table["duplicate_rate"] = duplicate_rate(predictions)
    return table


def evaluate_settings(completions: Sequence[str], reference_findings: Sequence[str],
                      reference_impressions: Sequence[str], reference_labels: Sequence | None = None,
                      models: MetricModels | None = None) -> dict[str, dict[str, Any]]:
    """The table per ReXrank setting: `findings` (findings sections) and `findings_impression` (whole report).

    Section headers are stripped on both sides (the `sections` mode); `rexrank_settings` scores as the
    leaderboard does instead.
    """
    models = models or MetricModels()
    parsed = [parse_completion(c) for c in completions]
    full_refs = [" ".join(p for p in (f, i) if p) for f, i in zip(reference_findings, reference_impressions,
                                                                  strict=True)]
    settings = {"findings_impression": score_reports([p.report for p in parsed], full_refs, reference_labels,
                                                     models)}
    with_findings = [i for i, f in enumerate(reference_findings) if f.strip()]
    if with_findings:
        settings["findings"] = score_reports(
            [parsed[i].findings or parsed[i].report for i in with_findings],
            [reference_findings[i] for i in with_findings], models=models)
    return settings


def write_tables(settings: dict[str, dict[str, Any]], out_dir: Path) -> None:
    """metrics.json and metrics.csv (one row per setting) in `out_dir`.

    metrics.json holds the findings + impression metrics at the top level and every setting under `settings`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {**settings.get("findings_impression", {}), "settings": settings}
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    with (out_dir / "metrics.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["setting", *METRIC_KEYS])
        for name, table in settings.items():
            writer.writerow([name, *("" if table.get(k) is None else table[k] for k in METRIC_KEYS)])


def print_tables(settings: dict[str, dict[str, Any]], title: str = "unirg eval") -> None:
    """The table in the terminal: one column per setting."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    for name in settings:
        table.add_column(name.replace("_", " + "), justify="right")
    for key in METRIC_KEYS:
        cells = []
        for values in settings.values():
            value = values.get(key)
            cells.append("—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value))
        table.add_row(key, *cells)
    Console().print(table)
