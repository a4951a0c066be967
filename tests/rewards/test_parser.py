"""The completion parser on adversarial completions: it never raises and always returns usable parts."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unirg.prompts.parser import MAX_CHARS, ParsedCompletion, parse_completion

# Examples per property test; `make fuzz` raises it for a nightly-style run.
FUZZ_EXAMPLES = int(os.environ.get("UNIRG_FUZZ_EXAMPLES", "300"))


def test_plain_format():
    p = parse_completion("Findings: Mild cardiomegaly.\nImpression: No acute process.")
    assert (p.findings, p.impression) == ("Mild cardiomegaly.", "No acute process.")
    assert p.report == "Mild cardiomegaly. No acute process."
    assert p.has_findings_header and p.has_impression_header and p.section_order_ok and not p.has_think


def test_reasoning_format():
    p = parse_completion("<think>Effusion on the right?</think>\nFINDINGS: Right effusion.\nIMPRESSION: Effusion.")
    assert p.reasoning == "Effusion on the right?"
    assert p.findings == "Right effusion." and p.impression == "Effusion."
    assert p.has_think and p.think_closed and not p.problems


@pytest.mark.parametrize(("text", "problem"), [
    ("No headers at all, just text.", "no section headers"),
    ("<think>never closed Findings: x", "<think> never closed"),
    ("reasoning without opener</think>Findings: x", "</think> without <think>"),
    ("preamble <think>a</think>Findings: x", "text before <think>"),
    ("<think>a <think>b</think>Findings: x", "nested <think>"),
    ("<think>a</think><think>b</think>Findings: x", "more than one <think> block"),
    ("Impression: y\nFindings: x", "impression before findings"),
    ("Findings: x\nFindings: y", "findings repeated"),
])
def test_malformed_completions_are_flagged(text, problem):
    p = parse_completion(text)
    assert problem in p.problems


def test_missing_and_empty_sections():
    p = parse_completion("Findings:\nImpression:")
    assert p.has_findings_header and p.has_impression_header
    assert p.findings == "" and p.impression == "" and p.report == ""
    only = parse_completion("Impression: Cardiomegaly.")
    assert only.findings == "" and only.impression == "Cardiomegaly." and only.report == "Cardiomegaly."
    unclosed = parse_completion("<think>all of it is reasoning Findings: x")
    assert unclosed.report == "" and not unclosed.think_closed


def test_markdown_headers_and_inline_headers():
    p = parse_completion("**Findings:** Lungs clear.\n## Impression\nNormal.")
    assert p.findings == "Lungs clear." and p.impression == "Normal."
    inline = parse_completion("The study shows Findings: clear lungs. Impression: normal.")
    assert inline.findings == "clear lungs." and inline.impression == "normal."


def test_odd_inputs():
    for value in (None, 42, b"Findings: bytes", "", " \n\t ", "\x00\x01Findings:\x00 x", "\ud800 lone surrogate"):
        p = parse_completion(value)
        assert isinstance(p, ParsedCompletion)
        assert isinstance(p.report, str)


def test_non_ascii():
    p = parse_completion("Findings: Épanchement pleural droit. 肺野清晰 😀\nImpression: Ünremarkable.")
    assert "肺野清晰" in p.findings and p.impression == "Ünremarkable."


def test_huge_completion_is_bounded():
    text = "Findings: " + "no pleural effusion " * 2_500 + "Impression: " + "normal " * 2_500  # ~10k tokens
    started = time.perf_counter()
    p = parse_completion(text)
    assert time.perf_counter() - started < 2.0
    assert p.findings.startswith("no pleural effusion") and p.impression.startswith("normal")
    huge = parse_completion("x" * (MAX_CHARS + 10))
    assert "truncated for parsing" in huge.problems and len(huge.report) <= MAX_CHARS


PIECES = st.sampled_from(["<think>", "</think>", "Findings:", "findings", "Impression:", "IMPRESSION", "\n",
                          " ", "**", "#", ":", "no effusion.", "ü", "肺", "\x00", "<", ">", "/"])


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(text=st.one_of(st.text(max_size=400), st.lists(PIECES, max_size=60).map("".join)))
def test_parser_never_raises(text):
    p = parse_completion(text)
    assert isinstance(p.report, str) and isinstance(p.reasoning, str)
    assert len(p.report) <= len(text) and len(p.reasoning) <= len(text)
    if not p.has_think:
        assert p.reasoning == ""
