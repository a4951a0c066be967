"""Clinical rewards and the rule-based labeler: oracles (../shared/oracles), conventions, per-report cases."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rewards.clinical import CheXpertF1, consistency, corpus_f1, positives, sample_f1
from rewards.labeler import OBSERVATIONS, TOP5, label_report, label_reports

ORACLES = Path(__file__).resolve().parents[2].parent / "shared" / "oracles"
TOP5_INDICES = [OBSERVATIONS.index(name) for name in TOP5]


def oracle(relative: str) -> Path:
    path = ORACLES / relative
    if not path.exists():
        pytest.skip(f"{path}: ../shared/oracles not present (a user's clone has none)")
    return path


def labels_of(text: str) -> dict[str, int]:
    """The mentioned observations of a text, {name: 1 | 0 | -1}."""
    return {name: value for name, value in zip(OBSERVATIONS, label_report(text), strict=True) if value is not None}


# --- corpus F1 against f1chexbert / sklearn ------------------------------------------------------------

def test_corpus_f1_matches_f1chexbert_aggregation():
    data = json.loads(oracle("f1_aggregation/f1chexbert_aggregation_expected.json").read_text())
    labels = data["binary_labels"]
    assert labels["target_names"] == list(OBSERVATIONS)
    hyps, refs = labels["hyp_labels_rrg"], labels["ref_labels_rrg"]
    all14 = corpus_f1(hyps, refs)
    assert all14["micro"] == pytest.approx(data["expected_f1"]["all14"]["micro"], abs=1e-12)
    assert all14["macro"] == pytest.approx(data["expected_f1"]["all14"]["macro"], abs=1e-12)
    top5 = [labels["target_names"].index(name) for name in labels["top5"]]
    assert sorted(top5) == sorted(TOP5_INDICES)
    five = corpus_f1([[h[i] for i in top5] for h in hyps], [[r[i] for i in top5] for r in refs])
    assert five["micro"] == pytest.approx(data["expected_f1"]["top5"]["micro"], abs=1e-12)
    assert five["macro"] == pytest.approx(data["expected_f1"]["top5"]["macro"], abs=1e-12)


def test_corpus_f1_own_fixture():
    # Label 0: TP 1, FP 1 -> F1 2/3; label 1: FN 1 -> 0; label 2: never present -> 0 (zero_division=0).
    hyps = [[1, 0, 0], [1, 0, 0]]
    refs = [[1, 1, 0], [0, 0, 0]]
    result = corpus_f1(hyps, refs)
    assert result["micro"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))
    assert result["macro"] == pytest.approx((2 / 3 + 0 + 0) / 3)
    assert corpus_f1([], []) == {"micro": 0.0, "macro": 0.0}


# --- chexpert_f1 per report ----------------------------------------------------------------------------

F1_CASES = [
    # (report, reference, expected F1 over 14, uncertain as positive)
    ("Small left pleural effusion.", "Left pleural effusion and cardiomegaly.", 2 * 1 / (1 + 2)),
    ("Heart size normal. Lungs are clear.", "No acute cardiopulmonary process. Lungs clear.", 1.0),  # No Finding both
    ("Cardiomegaly.", "Cardiomegaly.", 1.0),
    ("Possible pneumonia.", "Pneumonia.", 1.0),                           # uncertain counts as positive
    ("Large right pneumothorax.", "No pneumothorax.", 0.0),               # hyp PTX vs ref No Finding
    ("", "Right pleural effusion.", 0.0),                                  # empty report = No Finding
]


@pytest.mark.parametrize(("report", "reference", "expected"), F1_CASES)
def test_chexpert_f1_cases(report, reference, expected):
    assert CheXpertF1().score([report], [reference]) == [pytest.approx(expected)]


def test_chexpert_f1_options_and_reference_labels():
    uncertain = CheXpertF1(uncertain_as_positive=False)
    # "Possible pneumonia" is not positive now; with nothing else positive both sides agree on... nothing.
    assert uncertain.score(["Possible pneumonia."], ["Pneumonia."]) == [0.0]
    five = CheXpertF1(labels=5)
    # Fracture is outside the 5: both empty on the 5 -> 1.0.
    assert five.score(["Rib fracture."], ["No fracture."]) == [1.0]
    with pytest.raises(ValueError, match="14 or 5"):
        CheXpertF1(labels=7)
    # Known reference labels are used instead of labeling the reference text.
    known = [None] * 14
    known[OBSERVATIONS.index("Cardiomegaly")] = 1
    assert CheXpertF1().score(["Cardiomegaly."], ["unrelated text"], reference_labels=[tuple(known)]) == [1.0]


def test_sample_f1_and_positives():
    assert sample_f1([0, 0], [0, 0]) == 1.0
    assert sample_f1([1, 0], [0, 1]) == 0.0
    assert positives([1, -1, 0, None]) == [1, 1, 0, 0]
    assert positives([1, -1, 0, None], uncertain_as_positive=False) == [1, 0, 0, 0]


# --- consistency ---------------------------------------------------------------------------------------

def test_consistency():
    scores = consistency(
        ["There is a right pleural effusion and cardiomegaly.", "", "Right pleural effusion.", "   "],
        ["Right pleural effusion. Cardiomegaly.", "Cardiomegaly.", "Lungs are clear.", "x"],
    )
    assert scores[0] == 1.0
    assert scores[1] is None and scores[3] is None  # no reasoning block: nothing to check
    assert scores[2] == 0.0                          # effusion vs No Finding


# --- labeler conventions on invented sentences ---------------------------------------------------------

CONVENTIONS = [
    # negation before and after the mention
    ("No pleural effusion.", "Pleural Effusion", 0),
    ("No evidence of pneumonia or pulmonary edema.", "Edema", 0),
    ("Pleural effusion is not seen.", "Pleural Effusion", 0),
    ("Interval resolution of the pneumonia.", "Pneumonia", 0),
    # plain positives
    ("There is a right pleural effusion.", "Pleural Effusion", 1),
    ("The heart is enlarged.", "Cardiomegaly", 1),
    ("Endotracheal tube terminates 4 cm above the carina.", "Support Devices", 1),
    # pseudo-negations are positive
    ("No change in the right pleural effusion.", "Pleural Effusion", 1),
    ("No significant interval change in the left pneumothorax.", "Pneumothorax", 1),
    # hedges
    ("Pneumothorax cannot be excluded.", "Pneumothorax", -1),
    ("Cannot exclude early pneumonia.", "Pneumonia", -1),
    ("Findings may represent atelectasis.", "Atelectasis", -1),
    ("Possible small left pleural effusion.", "Pleural Effusion", -1),
    ("Borderline cardiomegaly.", "Cardiomegaly", -1),
    # scope: a negation does not cross a clause boundary
    ("No pneumothorax, but there is a small effusion.", "Pleural Effusion", 1),
    ("No pneumothorax, but there is a small effusion.", "Pneumothorax", 0),
    ("No pneumothorax. There is a small effusion.", "Pleural Effusion", 1),
]


@pytest.mark.parametrize(("text", "observation", "expected"), CONVENTIONS)
def test_labeler_conventions(text, observation, expected):
    assert labels_of(text).get(observation) == expected


def test_positive_beats_uncertain_beats_negative():
    assert labels_of("No effusion on the left. Possible effusion on the right.")["Pleural Effusion"] == -1
    assert labels_of("Possible effusion on the right. Small effusion on the left.")["Pleural Effusion"] == 1
    assert labels_of("No left effusion. Right effusion is present.")["Pleural Effusion"] == 1


NO_FINDING = [
    ("Heart size is normal. Lungs are clear.", 1),
    ("Lungs are clear. Right PICC line in place.", 1),      # support devices alone keep No Finding
    ("No pneumothorax or pleural effusion.", 1),            # negatives keep it
    ("Right pleural effusion.", None),                      # a positive removes it
    ("Possible pneumonia.", None),                          # so does an uncertain finding
]


@pytest.mark.parametrize(("text", "expected"), NO_FINDING)
def test_no_finding_rule(text, expected):
    assert labels_of(text).get("No Finding") == expected


def test_labeler_output_shape_and_odd_input():
    for text in ["", "   ", "XXXX", "ünïcödé 肺 effusion?", "." * 1000, None]:
        labels = label_reports([text])[0]
        assert len(labels) == 14
        assert all(v in (1, 0, -1, None) for v in labels)


# --- agreement with the reference CheXpert labeler and CheXbert on their sample reports ----------------

def _reference_rows(name: str, text_column: str):
    with oracle(f"chexpert_labels/{name}").open(newline="") as handle:
        for row in csv.DictReader(handle):
            yield row[text_column], [_value(row[o]) for o in OBSERVATIONS]


def _value(cell: str) -> int | None:
    if cell.strip() in ("", "nan"):
        return None
    return int(float(cell))


@pytest.mark.parametrize(("name", "column"), [("labeled_reports.csv", "Reports"),
                                              ("chexbert_labeled_reports.csv", "Report Impression")])
def test_agreement_with_reference_labelers(name, column, capsys):
    rows = list(_reference_rows(name, column))
    assert rows
    cells = exact = 0
    hyps, refs = [], []
    for text, expected in rows:
        got = label_report(text)
        cells += len(OBSERVATIONS)
        exact += sum(g == e for g, e in zip(got, expected, strict=True))
        hyps.append(positives(got))
        refs.append(positives(expected))
    agreement = exact / cells
    f1 = corpus_f1(hyps, refs)
    with capsys.disabled():
        print(f"\n{name}: {len(rows)} reports, cell agreement {agreement:.3f}, "
              f"micro-F1 {f1['micro']:.3f} (uncertain as positive)")
    # Different rule sets and lexicons: agreement is reported, only a floor is asserted.
    assert agreement > 0.8
    assert f1["micro"] > 0.6


def test_issue15_iu_example():
    data = json.loads(oracle("chexpert_labels/issue15_iu_example_expected.json").read_text())
    got = labels_of(data["report"])
    expected = {k: int(v) for k, v in data["labels"].items() if v is not None}
    assert got.get("No Finding") == expected["No Finding"] == 1
    for name in ("Pneumothorax", "Pleural Effusion"):
        assert got.get(name) == expected[name]
    assert not any(v in (1, -1) for k, v in got.items() if k != "No Finding")
