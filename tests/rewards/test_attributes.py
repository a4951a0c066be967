"""The finding-attributes reward: side, zone and severity of each reference finding, checked sentence by sentence."""

from __future__ import annotations

import pytest

from rewards.attributes import FindingAttributes, attribute_matches, finding_attributes
from rewards.registry import instantiate

REFERENCE = ("Findings: The heart is enlarged. There is a moderate left pleural effusion. No pneumothorax. "
             "There is consolidation in the right upper lobe. Impression: Left pleural effusion. "
             "Right upper lobe consolidation.")


def test_attributes_belong_to_the_finding_their_sentence_states():
    found = finding_attributes("No effusion. Small left pneumothorax.")
    assert set(found) == {"Pneumothorax"}
    assert found["Pneumothorax"]["side"] == {"left"} and found["Pneumothorax"]["severity"] == {"small"}
    reference = finding_attributes(REFERENCE)
    assert reference["Pleural Effusion"]["side"] == {"left"} and reference["Pleural Effusion"]["severity"] == {"moderate"}
    assert reference["Consolidation"]["zone"] == {"upper"} and not reference["Cardiomegaly"]["side"]


def test_wrong_side_costs_one_attribute_and_a_missed_finding_all_of_its_own():
    swapped = ("Findings: The heart is enlarged. A moderate right pleural effusion is present. "
               "Focal consolidation in the right upper lung.")
    # Effusion: side wrong, severity right; consolidation: side and zone right.
    assert attribute_matches(swapped, REFERENCE) == (3, 4)
    assert attribute_matches("The heart is enlarged. Right upper lobe consolidation.", REFERENCE) == (2, 4)
    assert attribute_matches("Right basilar atelectasis.", "Right basal atelectasis.") == (2, 2)


def test_plugin_scores_and_parts():
    plugin = instantiate("finding_attributes", {})
    assert isinstance(plugin, FindingAttributes)
    out = plugin.score(["Large left pleural effusion.", "No acute process.", "Anything."],
                       ["Small left pleural effusion.", "Small left pleural effusion.", "Normal chest."])
    assert out.scores == [pytest.approx(0.5), 0.0, 1.0]
    assert out.parts == {"matched": [1.0, 0.0, 0.0], "stated": [2.0, 2.0, 0.0]}
