"""ReXrank's scoring protocol: the raw completion against the header-formatted reference, ranked by 1/mean(RadCliQ-v1).

The leaderboard (CXR-Report-Metric's scorer) does not parse reports: it scores the model's text as written
against the reference text. Two settings:
- `findings`: the completion against the reference findings section;
- `findings_impression`: the completion against "Findings: <findings> Impression: <impression>".
Only a reasoning block (`<think>…</think>`) is removed from the completion, since it is not part of the report.
The ranking figure is 1 / mean(RadCliQ-v1) over the test set (never a per-report inverse: RadCliQ-v1 crosses 0).
RaTEScore is added when its weights are present, and two LLM-judged columns when a judge is configured
(`--metric-option green.model_path=FOLDER` or `green.base_url=URL`, likewise `chexprompt.*`): `green`, the GREEN
score matched / (matched + clinically significant errors) with GREEN's six error categories, and
`chexprompt_errors`, CheXprompt's clinically significant errors per report. Both use unirg's own prompt wording
(rewards/llm_judge.py), so they follow the published definitions but are comparable to published GREEN or
CheXprompt numbers only with the same judge model and prompt. `<column>_unscored` counts reports the judge gave
no readable answer for (left out of the mean).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unirg.errors import DataError
from unirg.evaluation.metrics import EXTRA_MODEL_METRICS, MetricModels, mean_scored, score_reports

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"

# Leaderboard CSV files per test set and setting, as ReXrank publishes them (results/*.csv).
_CSV_NAMES = {"findings": "findings_result_{test_set}.csv", "findings_impression": "result_{test_set}.csv"}
RANK_COLUMN = "1/RadCliQ-v1"


def without_reasoning(completion: str) -> str:
    """The completion with its reasoning block removed; an unclosed block leaves only the text before it."""
    close = completion.find(_THINK_CLOSE)
    if close >= 0:
        return completion[close + len(_THINK_CLOSE):].strip()
    start = completion.find(_THINK_OPEN)
    return (completion[:start] if start >= 0 else completion).strip()


def formatted_reference(findings: str, impression: str) -> str:
    """ReXrank's whole-report reference: "Findings: … Impression: …", a missing section left out."""
    parts = [f"Findings: {findings.strip()}" if findings and findings.strip() else "",
             f"Impression: {impression.strip()}" if impression and impression.strip() else ""]
    return " ".join(p for p in parts if p)


def one_over(mean_radcliq: float | None) -> float | None:
    """The leaderboard figure 1/mean(RadCliQ-v1); None when RadCliQ-v1 is missing or the mean is 0."""
    return None if mean_radcliq is None or mean_radcliq == 0 else 1.0 / mean_radcliq


def rexrank_settings(completions: Sequence[str], reference_findings: Sequence[str],
                     reference_impressions: Sequence[str], models: MetricModels | None = None,
                     ) -> dict[str, dict[str, Any]]:
    """The table per ReXrank setting, scored as the leaderboard scores (see the module docstring).

    The findings setting covers the studies whose reference has a findings section.
    """
    models = models or MetricModels()
    predictions = [without_reasoning(c) for c in completions]
    references = [formatted_reference(f, i) for f, i in zip(reference_findings, reference_impressions, strict=True)]
    pairs: dict[str, tuple[list[str], list[str]]] = {}
    with_findings = [i for i, f in enumerate(reference_findings) if f and f.strip()]
    if with_findings:
        pairs["findings"] = ([predictions[i] for i in with_findings],
                             [reference_findings[i].strip() for i in with_findings])
    pairs["findings_impression"] = (predictions, references)
    settings: dict[str, dict[str, Any]] = {}
    for name, (hyps, refs) in pairs.items():
        table = score_reports(hyps, refs, models=models)
        table["one_over_radcliq_v1"] = one_over(table.get("radcliq_v1"))
        for key, plugin in EXTRA_MODEL_METRICS.items():  # RaTEScore, GREEN, CheXprompt when available
            scores = models.score(plugin, hyps, refs)
            table[key] = mean_scored(scores) if scores is not None else None
            if scores is not None and None in scores:
                table[f"{key}_unscored"] = scores.count(None)
        settings[name] = table
    return settings


def read_leaderboard(path: Path) -> list[dict[str, Any]]:
    """Rows (model name and 1/RadCliQ-v1) of a published ReXrank results CSV."""
    if not path.is_file():
        raise DataError(f"{path}: leaderboard CSV not found (ReXrank's results/<setting>_<test set>.csv)")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if RANK_COLUMN not in (reader.fieldnames or []) or "Model Name" not in (reader.fieldnames or []):
            raise DataError(f"{path}: expected columns 'Model Name' and '{RANK_COLUMN}' (ReXrank's results CSV)")
        rows = []
        for line_number, row in enumerate(reader, start=2):
            try:
                rows.append({"model": row["Model Name"], "value": float(row[RANK_COLUMN])})
            except (TypeError, ValueError):
                raise DataError(f"{path}, line {line_number}: '{RANK_COLUMN}' is not a number "
                                f"({row.get(RANK_COLUMN)!r})") from None
    return rows


def leaderboard_place(value: float, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Where `value` (1/mean RadCliQ-v1) would rank among published rows: place 1 is the best (highest)."""
    ordered = sorted(rows, key=lambda r: -r["value"])
    above = [r for r in ordered if r["value"] > value]
    below = [r for r in ordered if r["value"] <= value]
    return {"place": len(above) + 1, "of": len(ordered) + 1,
            "just_above": below[0]["model"] if below else None,
            "just_below": above[-1]["model"] if above else None}


def add_leaderboard_places(settings: dict[str, dict[str, Any]], leaderboard_dir: Path, test_set: str) -> None:
    """Put `leaderboard_place` into each setting's table whose 1/RadCliQ-v1 is known."""
    for name, table in settings.items():
        value = table.get("one_over_radcliq_v1")
        if value is None:
            continue
        rows = read_leaderboard(leaderboard_dir / _CSV_NAMES[name].format(test_set=test_set))
        table["leaderboard_place"] = leaderboard_place(value, rows)
