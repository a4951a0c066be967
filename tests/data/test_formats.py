"""Prompt templates per reference sections, context, reasoning format and SFT completions."""

from __future__ import annotations

from unirg.data.records import StudyImage, StudyRecord
from unirg.prompts.formats import build_prompt, completion_for, reasoning_block, reference_report
from unirg.prompts.parser import parse_completion

LABELS = [None, 1, None, 0, 0, 1, None, 0, 0, 1, None, None, None, None]
FINDINGS = ("The heart is enlarged. There is a small right pleural effusion. No pneumothorax. "
            "There is consolidation in the left upper lobe.")


def _record(impression: str = "Cardiomegaly.") -> StudyRecord:
    return StudyRecord("s1", (StudyImage("/x.png", "PA", True),), findings=FINDINGS, impression=impression,
                       indication="Cough.", age="70", sex="F")


def test_template_follows_reference_sections_and_fills_context() -> None:
    [message], n_images = build_prompt(_record(), "unirg")
    assert n_images == 1 and message["role"] == "user" and isinstance(message["content"], str)
    assert "Findings: ...\nImpression: ..." in message["content"]
    assert "Indication: Cough." in message["content"] and "Age: 70" in message["content"]
    [message], _ = build_prompt(_record(impression=""), "unirg")
    assert "Impression" not in message["content"] and "Findings: ..." in message["content"]


def test_reasoning_prompt_and_system_message() -> None:
    messages, _ = build_prompt(_record(), "reasoning", system_prompt="Be concise.")
    assert messages[0] == {"role": "system", "content": "Be concise."}
    assert "<think>" in messages[1]["content"] and "lungs by zone" in messages[1]["content"]


def test_completions_parse_back() -> None:
    example = {"reference": reference_report(FINDINGS, "Cardiomegaly."), "reference_labels": LABELS,
               "reference_findings": FINDINGS, "reference_impression": "Cardiomegaly."}
    assert completion_for(example, "unirg") == f"Findings: {FINDINGS}\nImpression: Cardiomegaly."
    text = completion_for(example, "reasoning")
    assert text.startswith("<think>\nPerception: airway") and "\n</think>\nFindings: " in text
    parsed = parse_completion(text)
    assert parsed.has_think and parsed.think_closed and not parsed.problems
    assert parsed.findings == FINDINGS and parsed.impression == "Cardiomegaly."
    for part in ("Perception:", "Diagnosis: consolidation, pleural effusion, cardiomegaly.", "Reflection:", "left lung: There is consolidation"):
        assert part in parsed.reasoning
    assert "right lung: clear" in parsed.reasoning


def test_reasoning_without_labels_uses_the_impression() -> None:
    block = reasoning_block(None, "Lungs are clear. Normal heart size.", "No acute disease.")
    assert "Diagnosis: No acute disease." in block and "lungs: Lungs are clear" in block


def test_impression_only_study_asks_for_the_impression_only() -> None:
    record = StudyRecord("s2", (StudyImage("/x.png", "PA", True),), impression="No acute process.")
    [message], _ = build_prompt(record, "unirg")
    assert "Impression: ..." in message["content"] and "Findings" not in message["content"]
    assert reference_report("", "No acute process.") == "Impression: No acute process."


def test_longitudinal_prompt_without_a_prior_keeps_block_content() -> None:
    from unirg.data.records import PriorStudy

    [message], n_images = build_prompt(_record(), "unirg", longitudinal=True)
    assert n_images == 1 and [block["type"] for block in message["content"]] == ["image", "text"]
    with_prior = StudyRecord("s3", (StudyImage("/x.png", "PA", True),), findings=FINDINGS,
                             prior=PriorStudy("/prior.png", "Findings: Clear lungs."))
    [message], n_images = build_prompt(with_prior, "reasoning", longitudinal=True)
    assert n_images == 2
    assert [block["type"] for block in message["content"]] == ["text", "image", "text", "image", "text"]
    assert "Prior report: Findings: Clear lungs." in message["content"][2]["text"]
    assert "<think>" in message["content"][-1]["text"]
