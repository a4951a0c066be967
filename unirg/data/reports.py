"""Split a free-text radiology report into its sections (FINDINGS, IMPRESSION, INDICATION, …)."""

from __future__ import annotations

import re

# A heading is an upper-case phrase at the start of a line followed by a colon ("FINAL REPORT" has none).
_HEADING = re.compile(r"^[ \t]*([A-Z][A-Z /&()-]{2,40}):", re.MULTILINE)
# Headings that mean the same section in different hospitals' templates.
_ALIASES = {
    "FINDINGS": "findings", "FINDING": "findings", "REPORT": "findings",
    # Combined headings: the text describes the image, so it is the findings.
    "FINDINGS AND IMPRESSION": "findings", "FINDINGS/IMPRESSION": "findings",
    "IMPRESSION": "impression", "IMPRESSIONS": "impression", "CONCLUSION": "impression",
    "INDICATION": "indication", "INDICATIONS": "indication", "HISTORY": "indication",
    "CLINICAL HISTORY": "indication", "REASON FOR EXAM": "indication", "CLINICAL INDICATION": "indication",
    "COMPARISON": "comparison", "COMPARISONS": "comparison",
    "TECHNIQUE": "technique", "EXAMINATION": "examination",
}


def clean(text: str) -> str:
    """Collapse runs of whitespace (reports wrap lines at a fixed width) and strip."""
    return re.sub(r"\s+", " ", text or "").strip()


def split_sections(report: str) -> dict[str, str]:
    """Section name → cleaned text; unknown headings are kept under their lower-cased name.

    A report with no recognised heading at all is taken as its findings, so one-section reports are
    not lost. When a heading repeats, the texts are joined.
    """
    matches = list(_HEADING.finditer(report or ""))
    sections: dict[str, str] = {}
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(report)
        name = _ALIASES.get(match.group(1).strip(), match.group(1).strip().lower())
        text = clean(report[match.end():end])
        if text:
            sections[name] = f"{sections[name]} {text}".strip() if name in sections else text
    if not any(key in sections for key in ("findings", "impression")) and not matches:
        body = clean(report)
        if body:
            sections["findings"] = body
    return sections
