"""The reasoning format takes its anatomy walk from the checklist; SFT targets prefer a teacher trace."""

from __future__ import annotations

import copy

import yaml

from unirg.data.records import CHEXPERT_OBSERVATIONS, StudyImage, StudyRecord
from unirg.prompts.formats import build_prompt, completion_for, reasoning_block, reference_report
from unirg.prompts.parser import parse_completion
from unirg.reasoning.knowledge import DEFAULT_CHECKLIST, load_checklist, parse_checklist

FINDINGS = "Endotracheal tube in place. Small left pleural effusion. Heart size is normal."


def _labels(**present: int) -> list[int | None]:
    return [present.get(name.replace(" ", "_").lower()) for name in CHEXPERT_OBSERVATIONS]


def test_prompt_walks_the_checklist_regions_with_their_observations():
    record = StudyRecord("s1", (StudyImage("/x.png", "PA", True),), findings=FINDINGS, impression="Effusion.")
    [message], _ = build_prompt(record, "reasoning")
    text = message["content"]
    for region in load_checklist().walked_regions:
        assert region.walk in text
        for name in region.observation_names:
            assert name.lower() in text
    assert "no finding" not in text.lower()
    [plain], _ = build_prompt(record, "unirg")
    assert "<think>" not in plain["content"]


def test_rule_trace_groups_sentences_and_labels_by_checklist_region():
    labels = _labels(pleural_effusion=1, support_devices=1, fracture=-1)
    block = reasoning_block(labels, FINDINGS, "Effusion.")
    parsed = parse_completion(block + reference_report(FINDINGS, "Effusion."))
    assert parsed.think_closed and not parsed.problems and parsed.findings == FINDINGS
    lines = parsed.reasoning.splitlines()
    assert [line.split(":")[0] for line in lines] == ["Perception", "Diagnosis", "Reflection"]
    assert ("Perception: airway: normal. lungs: normal. pleura: Small left pleural effusion. heart and "
            "mediastinum: Heart size is normal. bones: possible fracture. devices: Endotracheal tube in place."
            ) == lines[0]
    assert lines[1] == "Diagnosis: pleural effusion, support devices."


def test_another_checklist_changes_the_walk():
    tree = copy.deepcopy(yaml.safe_load(DEFAULT_CHECKLIST.read_text()))
    # Bones before the heart, devices renamed "lines and tubes" and said "absent" when none.
    regions = {region["name"]: region for region in tree["regions"]}
    regions["devices"].update(walk="lines and tubes", normal="absent")
    order = ["airway", "lungs", "pleura", "bones", "heart and mediastinum", "devices", "whole study"]
    tree["regions"] = [regions[name] for name in order]
    checklist = parse_checklist(tree, "custom.yaml")
    block = reasoning_block(_labels(cardiomegaly=1), "Heart is enlarged.", "Cardiomegaly.", checklist=checklist)
    assert "pleura: normal. bones: normal. heart and mediastinum: Heart is enlarged. devices: absent." in block


def test_sft_target_uses_the_teacher_trace_when_the_study_has_one():
    example = {"reference": reference_report(FINDINGS, "Effusion."), "reference_findings": FINDINGS,
               "reference_impression": "Effusion.", "reference_labels": None, "study_id": "s1", "dataset": "mimic"}
    teacher = "<think>\nPerception: left costophrenic angle blunted.\nDiagnosis: effusion.\nReflection: ok.\n</think>\n"
    traces = {("mimic", "s1"): teacher}
    assert completion_for(example, "reasoning", traces) == teacher + example["reference"]
    # Same study id in another dataset, or no traces: the rule-based block.
    other = {**example, "dataset": "chexpert"}
    assert completion_for(other, "reasoning", traces) == completion_for(other, "reasoning")
    assert completion_for(other, "reasoning").startswith("<think>\nPerception: airway")
    assert completion_for(example, "unirg", traces) == example["reference"]
    parsed = parse_completion(completion_for(example, "reasoning", traces))
    assert parsed.reasoning.startswith("Perception: left costophrenic") and parsed.impression == "Effusion."
