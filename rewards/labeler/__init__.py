"""A fast, offline, rule-based CheXpert-14 labeler for radiology reports."""

from __future__ import annotations

from collections.abc import Iterable

from rewards.labeler.rules import Labels, label_report
from rewards.labeler.vocabulary import DERIVED, OBSERVATIONS, TOP5

__all__ = ["DERIVED", "OBSERVATIONS", "TOP5", "Labels", "label_report", "label_reports"]


def label_reports(texts: Iterable[str]) -> list[Labels]:
    """Labels of many reports (cached per distinct text)."""
    return [label_report(text if isinstance(text, str) else "") for text in texts]
