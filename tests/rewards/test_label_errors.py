"""Offline error counter: CheXpert-label disagreements between report and reference, reward 1/(errors+1)."""

from __future__ import annotations

import pytest

from rewards import build_reward_functions
from rewards.label_errors import LabelerErrors
from rewards.labeler import OBSERVATIONS, label_report


@pytest.mark.parametrize(("report", "reference", "false_findings", "missed"), [
    ("Small left effusion.", "Left pleural effusion and cardiomegaly.", 0, 1),
    ("Right pneumothorax. Cardiomegaly.", "No acute cardiopulmonary process.", 2, 0),
    ("No pneumothorax. No effusion.", "No acute cardiopulmonary process.", 0, 0),
    ("Possible left lower lobe pneumonia.", "Left lower lobe pneumonia.", 0, 0),  # certainty, not presence
])
def test_errors_are_presence_disagreements(report, reference, false_findings, missed):
    plugin = LabelerErrors()
    assert plugin.count([report], [reference]) == [(false_findings, missed)]
    output = plugin.score([report], [reference])
    assert output.scores == [1 / (false_findings + missed + 1)]
    assert output.parts["errors"] == [float(false_findings + missed)]


def test_dataset_labels_replace_the_reference_text():
    labels = list(label_report("Cardiomegaly."))
    labels[OBSERVATIONS.index("Fracture")] = 1
    scores = LabelerErrors().score(["Cardiomegaly."], ["ignored"], reference_labels=[labels]).scores
    assert scores == [0.5]  # the fracture in the labels is missed


def test_registered_and_options_checked():
    functions, weights = build_reward_functions([{"name": "labeler_errors", "weight": 0.5,
                                                  "options": {"ignore": ["Support Devices"]}}])
    assert functions[0].__name__ == "labeler_errors" and weights == [0.5]
    assert functions[0](["Findings: Cardiomegaly."], reference=["No acute process."]) == [0.5]
    with pytest.raises(ValueError, match="Heart Failure"):
        LabelerErrors(ignore=["Heart Failure"])


@pytest.mark.parametrize(("report", "reference", "location", "severity"), [
    ("Small left effusion.", "Large right pleural effusion.", 1, 1),
    ("Large right pleural effusion.", "Large right pleural effusion.", 0, 0),
    ("Pleural effusion.", "Small right pleural effusion.", 1, 1),  # leaving the side out is an error too
    ("Right and left pleural effusions.", "Right pleural effusion.", 1, 0),
    ("Consolidation in the right upper lobe.", "Right lower lobe consolidation.", 1, 0),
    # the missing effusion is a missed finding, not an attribute error; the pneumothorax's side is wrong
    ("Left pneumothorax.", "Small right effusion. Right pneumothorax.", 1, 0),
    ("No effusion. Small left pneumothorax.", "Small left pneumothorax. No effusion.", 0, 0),
])
def test_attribute_errors_count_location_and_severity_of_findings_both_state(report, reference, location,
                                                                             severity):
    plain = LabelerErrors().score([report], [reference]).parts["errors"][0]
    output = LabelerErrors(attributes=True).score([report], [reference])
    assert output.parts["location_errors"] == [float(location)]
    assert output.parts["severity_errors"] == [float(severity)]
    assert output.parts["errors"] == [plain + location + severity]
    assert output.scores == [1 / (plain + location + severity + 1)]


def test_attributes_option_through_the_recipe_entry():
    functions, _ = build_reward_functions([{"name": "labeler_errors", "weight": 0.5,
                                            "options": {"attributes": True}}])
    assert functions[0](["Findings: Small left pleural effusion."],
                        reference=["Large right pleural effusion."]) == [1 / 3]
