"""The shipped checklist covers every CheXpert observation once, with every field filled; broken files say where."""

from __future__ import annotations

import copy

import pytest
import yaml

from unirg.data.records import CHEXPERT_OBSERVATIONS
from unirg.reasoning.knowledge import (
    DEFAULT_CHECKLIST,
    ChecklistError,
    load_checklist,
    lookup,
    parse_checklist,
    render_checklist,
)


def test_every_chexpert_observation_is_covered_exactly_once_by_a_region():
    checklist = load_checklist()
    listed = [name for region in checklist.regions for name in region.observation_names]
    assert sorted(listed) == sorted(CHEXPERT_OBSERVATIONS) and len(listed) == len(set(listed))
    for name in CHEXPERT_OBSERVATIONS:
        assert name in checklist.region_of(name).observation_names


def test_every_entry_has_non_empty_fields():
    checklist = load_checklist()
    assert checklist.tag == "cxr-chexpert14 v1" and checklist.uncertainty and checklist.description
    for region in checklist.regions:
        assert region.name and region.walk and region.look_at and region.normal
        assert region.walked == (region.name != "whole study")
        for observation in region.observations:
            assert observation.definition.strip() and observation.uncertain.strip()
            assert observation.signs and all(sign.strip() for sign in observation.signs)


def test_lookup_and_sentence_regions():
    assert lookup("Pleural Effusion").name == "Pleural Effusion"
    assert "costophrenic" in " ".join(lookup("Pleural Effusion").signs)
    checklist = load_checklist()
    assert checklist.region_of("Cardiomegaly").name == "heart and mediastinum"
    # Earlier regions of sentence_order win: a tube is a device, an effusion is pleura.
    assert checklist.region_for_sentence("Endotracheal tube 4 cm above the carina.") == "devices"
    assert checklist.region_for_sentence("Small left pleural effusion.") == "pleura"
    assert checklist.region_for_sentence("Left lower lobe consolidation.") == "lungs"
    assert checklist.region_for_sentence("Unremarkable.") is None
    with pytest.raises(ChecklistError, match="did you mean 'Pleural Effusion'"):
        lookup("Pleural Efusion")


def test_renderings():
    checklist = load_checklist()
    compact = render_checklist(checklist)
    assert compact.startswith("airway; lungs by zone (lung opacity") and "devices (support devices)" in compact
    assert "no finding" not in compact  # the summary step is not a place to look at
    full = render_checklist(checklist, "full")
    for name in CHEXPERT_OBSERVATIONS:
        assert f"- {name}: {lookup(name).definition}" in full
    assert full.count("Uncertain when:") == len(CHEXPERT_OBSERVATIONS)


def _tree() -> dict:
    return yaml.safe_load(DEFAULT_CHECKLIST.read_text())


def _edited(edit) -> dict:
    tree = copy.deepcopy(_tree())
    edit(tree)
    return tree


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t["regions"][1]["observations"].pop(0), r"missing: \['Lung Opacity'\]"),
    (lambda t: t["regions"][2]["observations"].append(t["regions"][1]["observations"][0]),
     "listed more than once: Lung Opacity in"),
    (lambda t: t["regions"][1]["observations"][0].update(signs=[]), r"regions\[1\]\.observations\[0\]\.signs: must"),
    (lambda t: t["regions"][1]["observations"][0].update(definition="  "),
     r"regions\[1\]\.observations\[0\]\.definition: must be non-empty"),
    (lambda t: t["regions"][1]["observations"][0].update(name="Lung Opacities"),
     "not a CheXpert observation; did you mean 'Lung Opacity'"),
    (lambda t: t["regions"][0].update(look_at_=1), r"regions\[0\]\.look_at_: unknown key; did you mean 'look_at'"),
    (lambda t: t.update(version="one"), "version: must be a whole number"),
    (lambda t: t.update(sentence_order=["lungs"]), "sentence_order: must list each region that has terms"),
    (lambda t: t.pop("regions"), r"missing key\(s\) \['regions'\]"),
])
def test_broken_checklists_name_the_field(edit, message):
    with pytest.raises(ChecklistError, match=message):
        parse_checklist(_edited(edit), source="my.yaml")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ChecklistError, match="checklist file not found"):
        load_checklist(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("regions: [")
    with pytest.raises(ChecklistError, match="bad.yaml: not valid YAML"):
        load_checklist(bad)
