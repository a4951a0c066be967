"""UniRG's templates beside the project's: chosen per study by its sections, same headers as evaluation."""

from __future__ import annotations

import pytest

from unirg.data.records import StudyImage, StudyRecord
from unirg.prompts.formats import build_prompt, completion_for, reference_report, sections_of
from unirg.prompts.parser import parse_completion


def record(findings: str = "Clear lungs.", impression: str = "Normal chest.") -> StudyRecord:
    return StudyRecord("s1", (StudyImage("a.png", view="PA", key=True),), findings=findings, impression=impression,
                       indication="Cough.", comparison="None.", age="60", sex="F")


@pytest.mark.parametrize(("findings", "impression", "asks"), [
    ("Clear lungs.", "Normal chest.", "the findings and the impression"),
    ("Clear lungs.", "", "the findings of"),
])
def test_paper_template_is_chosen_by_the_reference_sections(findings, impression, asks) -> None:
    [message], n_images = build_prompt(record(findings, impression), "unirg", template="unirg_paper")
    text = message["content"]
    assert asks in text and n_images == 1
    # UniRG's context is the indication and the comparison; the project's template adds age and sex.
    assert "Indication: Cough." in text and "Comparison: None." in text and "Age:" not in text
    [project], _ = build_prompt(record(findings, impression), "unirg")
    assert project["content"] != text and "Age: 60" in project["content"]


def test_impression_only_study_keeps_the_project_wording() -> None:
    [paper], _ = build_prompt(record(findings=""), "unirg", template="unirg_paper")
    [project], _ = build_prompt(record(findings=""), "unirg")
    assert paper["content"].splitlines()[0] == project["content"].splitlines()[0]
    assert "Impression: ..." in paper["content"] and "Findings" not in paper["content"]


def test_unknown_template_is_refused() -> None:
    with pytest.raises(ValueError, match="prompt.template: unknown template 'paper'"):
        build_prompt(record(), "unirg", template="paper")


@pytest.mark.parametrize(("findings", "impression"), [("Clear lungs.", "Normal chest."), ("Clear lungs.", ""),
                                                      ("", "Normal chest.")])
@pytest.mark.parametrize("prompt_format", ["unirg", "reasoning"])
def test_sft_target_and_reward_reference_parse_into_the_sections_evaluation_scores(findings, impression,
                                                                                   prompt_format) -> None:
    reference = reference_report(findings, impression)
    example = {"reference": reference, "reference_findings": findings, "reference_impression": impression,
               "reference_labels": None}
    target = parse_completion(completion_for(example, prompt_format))
    assert (target.findings, target.impression) == (findings, impression)
    assert target.has_findings_header == bool(findings) and target.has_impression_header == bool(impression)
    assert parse_completion(reference).report == target.report
    # The prompt's answer form names the same headers the parser reads.
    [message], _ = build_prompt(record(findings, impression), prompt_format, template="unirg_paper")
    form = message["content"].split("Answer as:\n", 1)[1]
    assert parse_completion(form).has_findings_header == bool(findings)
    assert sections_of(findings, impression) in ("findings_impression", "findings", "impression")
