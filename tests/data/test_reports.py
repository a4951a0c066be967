"""Free-text report section splitting (MIMIC-style headings, one-section and heading-less reports)."""

from __future__ import annotations

import pytest

from unirg.data.reports import split_sections


@pytest.mark.parametrize("report, expected", [
    ("FINDINGS: Clear lungs.\n IMPRESSION:  Normal.", {"findings": "Clear lungs.", "impression": "Normal."}),
    (" INDICATION: Cough.\n\n IMPRESSION: No acute process.", {"indication": "Cough.",
                                                                "impression": "No acute process."}),
    ("HISTORY: Fever.\nFINDINGS:\n Left lower lobe\n opacity.", {"indication": "Fever.",
                                                                  "findings": "Left lower lobe opacity."}),
    ("Heart size normal. Lungs clear.", {"findings": "Heart size normal. Lungs clear."}),
    ("CONCLUSION: Stable.", {"impression": "Stable."}),
    ("FINDINGS AND IMPRESSION: No acute process.\nNOTIFICATION: Discussed with the team.",
     {"findings": "No acute process."}),
    ("", {}),
])
def test_split_sections(report: str, expected: dict[str, str]) -> None:
    sections = split_sections(report)
    for key, value in expected.items():
        assert sections[key] == value
    assert not ({"findings", "impression"} - set(expected)) & set(sections)
