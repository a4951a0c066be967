"""Split a completion into its reasoning block and report sections; never raises, whatever the text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Section headers as models write them: "Findings:", "FINDINGS:", "**Findings:**", "## Impression", …
_HEADER = re.compile(r"(?im)^[ \t>#*_-]*\b(findings|impression)\b[ \t*_]*:?[ \t*_]*")
_INLINE_HEADER = re.compile(r"(?i)\b(findings|impression)\s*:")
_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"
# Longer completions are cut before parsing so a runaway generation costs bounded time.
MAX_CHARS = 200_000


@dataclass(frozen=True)
class ParsedCompletion:
    """The parts of one completion."""

    reasoning: str = ""
    findings: str = ""
    impression: str = ""
    report: str = ""
    has_think: bool = False
    think_closed: bool = False
    has_findings_header: bool = False
    has_impression_header: bool = False
    section_order_ok: bool = True
    problems: tuple[str, ...] = field(default_factory=tuple)


def _split_think(text: str) -> tuple[str, str, bool, bool, list[str]]:
    """(reasoning, rest, has_think, closed, problems). Only the first block counts as reasoning."""
    problems = []
    start = text.find(_THINK_OPEN)
    close = text.find(_THINK_CLOSE)
    if start < 0 and close < 0:
        return "", text, False, False, problems
    if start < 0:
        # A close tag without an opener: the chat template may have put <think> in the prompt.
        problems.append("</think> without <think>")
        return text[:close].strip(), text[close + len(_THINK_CLOSE):], True, True, problems
    if text[:start].strip():
        problems.append("text before <think>")
    close = text.find(_THINK_CLOSE, start)
    if close < 0:
        problems.append("<think> never closed")
        return text[start + len(_THINK_OPEN):].strip(), "", True, False, problems
    reasoning = text[start + len(_THINK_OPEN):close]
    if _THINK_OPEN in reasoning:
        problems.append("nested <think>")
        reasoning = reasoning.replace(_THINK_OPEN, " ")
    rest = text[close + len(_THINK_CLOSE):]
    if _THINK_OPEN in rest or _THINK_CLOSE in rest:
        problems.append("more than one <think> block")
        rest = rest.replace(_THINK_OPEN, " ").replace(_THINK_CLOSE, " ")
    return reasoning.strip(), rest, True, True, problems


def _sections(text: str) -> tuple[str, str, bool, bool, bool, list[str]]:
    """(findings, impression, has_findings, has_impression, order_ok, problems) of the report part."""
    problems = []
    # Headers at a line start (with or without a colon) and "Findings:" inside a line both count.
    headers = []
    for match in sorted([*_HEADER.finditer(text), *_INLINE_HEADER.finditer(text)], key=lambda m: m.start()):
        if headers and match.start() < headers[-1].end():
            continue
        headers.append(match)
    spans: dict[str, list[str]] = {"findings": [], "impression": []}
    order = []
    for i, match in enumerate(headers):
        name = match.group(1).lower()
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        spans[name].append(text[match.end():end].strip())
        order.append(name)
    for name, parts in spans.items():
        if len(parts) > 1:
            problems.append(f"{name} repeated")
    order_ok = not ("impression" in order and "findings" in order
                    and order.index("impression") < order.index("findings"))
    if not order_ok:
        problems.append("impression before findings")
    findings = " ".join(p for p in spans["findings"] if p)
    impression = " ".join(p for p in spans["impression"] if p)
    return findings, impression, bool(spans["findings"]), bool(spans["impression"]), order_ok, problems


def parse_completion(text: object) -> ParsedCompletion:
    """Parse a completion in the plain or the reasoning format.

    `report` is the findings and impression text used for scoring; when the completion has no section
    headers at all, it is the whole text outside the reasoning block.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    problems: list[str] = []
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS]
        problems.append("truncated for parsing")
    reasoning, rest, has_think, closed, think_problems = _split_think(text)
    findings, impression, has_f, has_i, order_ok, section_problems = _sections(rest)
    problems += think_problems + section_problems
    if has_f or has_i:
        report = " ".join(part for part in (findings, impression) if part)
    else:
        report = rest.strip()
        problems.append("no section headers")
    return ParsedCompletion(
        reasoning=reasoning, findings=findings, impression=impression, report=report, has_think=has_think,
        think_closed=closed, has_findings_header=has_f, has_impression_header=has_i, section_order_ok=order_ok,
        problems=tuple(problems),
    )
