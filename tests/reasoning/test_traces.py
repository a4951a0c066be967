"""`unirg traces` against a fake teacher: consistent traces kept, the rest dropped and counted by reason; resumable;
SFT targets use the kept traces and the rule-based block for the others."""

from __future__ import annotations

import importlib.util
import json

import pytest
from fake_teacher import STUDIES, FakeTeacher, write_studies

from rewards.labeler import OBSERVATIONS, label_report
from unirg.cli import main
from unirg.prompts.formats import completion_for
from unirg.prompts.parser import parse_completion
from unirg.reasoning.trace_check import (
    CITES_REFERENCE,
    CONTRADICTS,
    EMPTY,
    MISSING_SECTIONS,
    REQUEST_FAILED,
    TRUNCATED,
    UNPARSEABLE,
    check_answer,
)
from unirg.reasoning.traces_file import (
    TracesError,
    drop_partial_row,
    dropped_path,
    load_traces_for_sft,
    read_traces,
    traces_for_sft,
)


def _labels(**values: int) -> list[int | None]:
    return [values.get(name.replace(" ", "_").lower()) for name in OBSERVATIONS]


TRACE = "<think>\nPerception: {p}\nDiagnosis: {d}\nReflection: re-checked.\n</think>"


@pytest.mark.parametrize(("answer", "reference", "reason", "details"), [
    (TRACE.format(p="Small left pleural effusion.", d="Effusion."), _labels(pleural_effusion=1), "", ()),
    # Positive vs uncertain is certainty, not presence.
    (TRACE.format(p="Possible small left effusion.", d="Possible effusion."), _labels(pleural_effusion=1), "", ()),
    (TRACE.format(p="Left effusion and cardiomegaly.", d="Effusion."), _labels(pleural_effusion=1), CONTRADICTS,
     ("Cardiomegaly: asserts",)),
    (TRACE.format(p="No effusion.", d="Normal."), _labels(pleural_effusion=-1), CONTRADICTS,
     ("Pleural Effusion: denies",)),
    (TRACE.format(p="Lungs are clear.", d="Normal."), _labels(pleural_effusion=1), CONTRADICTS,
     ("Pleural Effusion: leaves out",)),
    # CheXpert's hierarchy: the general name of a specific reference finding is not a new finding ...
    (TRACE.format(p="Right basal opacity with air bronchograms, consistent with consolidation.", d="Pneumonia."),
     _labels(pneumonia=1), "", ()),
    # ... and a specific finding names the general one the reference reports; not the other way round.
    (TRACE.format(p="Right basal consolidation.", d="Consolidation."), _labels(lung_opacity=1, consolidation=1), "",
     ()),
    (TRACE.format(p="Right basal consolidation.", d="Consolidation."), _labels(lung_opacity=1), CONTRADICTS,
     ("Consolidation: asserts",)),
    (TRACE.format(p="Hazy right basal opacity.", d="Opacity."), _labels(lung_opacity=1, consolidation=1),
     CONTRADICTS, ("Consolidation: leaves out",)),
    ("Perception: Clear lungs.\nDiagnosis: Normal.", _labels(), MISSING_SECTIONS, ("Reflection: missing",)),
    ("Diagnosis: a.\nPerception: b.\nReflection: c.", _labels(), MISSING_SECTIONS, ("order Diagnosis > Perception > "
                                                                                    "Reflection",)),
    ("Perception:\nDiagnosis: a.\nReflection: b.", _labels(), MISSING_SECTIONS, ("Perception: empty",)),
    ("the the the", _labels(), UNPARSEABLE, ()),
    ("  \n", _labels(), EMPTY, ()),
    (TRACE.format(p="The reference report says clear lungs.", d="Normal."), _labels(), CITES_REFERENCE, ()),
])
def test_check_answer(answer, reference, reason, details):
    verdict = check_answer(answer, reference)
    assert (verdict.reason, verdict.details) == (reason, details)
    assert verdict.kept == (reason == "")
    if verdict.kept:
        parsed = parse_completion(verdict.trace + "Findings: x.")
        assert parsed.think_closed and not parsed.problems and parsed.reasoning.startswith("Perception: ")


def test_omissions_can_be_allowed_and_truncation_is_named():
    answer = TRACE.format(p="Lungs are clear.", d="Normal.")
    assert check_answer(answer, _labels(pleural_effusion=1), allow_omissions=True).kept
    verdict = check_answer("<think>\nPerception: the lungs are", _labels(), finish_reason="length")
    assert verdict.reason == TRUNCATED and verdict.details == (MISSING_SECTIONS, "Diagnosis: missing",
                                                                "Reflection: missing")


@pytest.fixture
def studies(tmp_path):
    manifest = write_studies(tmp_path / "data")
    out = tmp_path / "traces.jsonl"
    overrides = ["data.source=manifest", f"data.path={manifest}", "data.holdout=null", "prompt.format=reasoning",
                 f"traces.path={out}", "traces.retries=0", "traces.concurrency=3"]
    return {"out": out, "overrides": overrides, "run_dir": str(tmp_path / "run")}


def _run(studies, url, *extra):
    return main(["traces", "--recipe", "demo", "--teacher-url", url, "--run-dir", studies["run_dir"],
                 "--no-progress", *extra, *studies["overrides"]])


def test_traces_kept_dropped_counted_and_resumed(studies, capsys):
    with FakeTeacher() as teacher:
        assert _run(studies, teacher.url) == 0
        first = capsys.readouterr()
        assert _run(studies, teacher.url) == 0  # resumes: only the failed request is asked again
        second = capsys.readouterr()
    assert not teacher.problems
    out = studies["out"]
    summary = json.loads(out.with_name("traces.summary.json").read_text())
    assert summary["asked"] == 1 and summary["kept"] == 1 and summary["already_done"] == len(STUDIES) - 1
    assert teacher.requests["flaky"] == 2 and all(teacher.requests[case] == 1 for case, *_ in STUDIES
                                                  if case != "flaky")
    assert "asked the teacher about 8 studies: kept 1, dropped 7" in first.out
    for line in (f"dropped, {CONTRADICTS}: 2", "Pneumothorax: asserts: 1", "Pleural Effusion: denies: 1",
                 "Pleural Effusion: leaves out: 1", f"dropped, {UNPARSEABLE}: 1", f"dropped, {MISSING_SECTIONS}: 1",
                 f"dropped, {EMPTY}: 1", f"dropped, {CITES_REFERENCE}: 1", f"dropped, {REQUEST_FAILED}: 1",
                 "HTTPError: HTTP Error 500", "run again to retry them", "traces file: 1 kept, 6 dropped"):
        assert line in first.out, line
    assert "asked the teacher about 1 studies: kept 1, dropped 0 (7 done by an earlier run, skipped)" in second.out
    assert "traces file: 2 kept, 6 dropped" in second.out

    kept = read_traces(out)
    assert sorted(kept) == [("manifest", "s0"), ("manifest", "s7")]
    row = kept[("manifest", "s0")]
    assert row.teacher == "teacher-x" and row.checklist == "cxr-chexpert14 v1"
    parsed = parse_completion(row.trace)
    assert parsed.think_closed and "Cardiomegaly" in parsed.reasoning and "model may add" not in row.trace
    assert label_report(parsed.reasoning)[OBSERVATIONS.index("Cardiomegaly")] == 1
    dropped = [json.loads(line) for line in dropped_path(out).read_text().splitlines()]
    assert sorted(d["study_id"] for d in dropped) == ["s1", "s2", "s3", "s4", "s5", "s6"]
    # No report or trace text in the logs or the dropped list.
    for _case, findings, impression in STUDIES:
        for text in (findings, impression):
            assert text not in first.out + first.err + second.out + second.err + dropped_path(out).read_text()
    assert "pneumothorax with a visible pleural line" not in first.out + first.err


def test_sft_targets_use_kept_traces_and_fall_back_to_rules(studies, capsys):
    with FakeTeacher() as teacher:
        assert _run(studies, teacher.url) == 0
    capsys.readouterr()
    from unirg.data import load_splits
    from unirg.recipe import load_recipe

    recipe = load_recipe("demo", studies["overrides"])
    train = load_splits(recipe.data, recipe.prompt, studies["run_dir"]).train
    traces = traces_for_sft(recipe, train)
    assert "SFT targets: 1 of 8 training studies use teacher traces" in capsys.readouterr().out
    assert traces_for_sft(recipe.model_copy(update={"traces": recipe.traces.model_copy(update={"path": None})}),
                          train) is None
    targets = {row["study_id"]: completion_for(row, "reasoning", traces) for row in
               train.select_columns(["dataset", "study_id", "reference", "reference_findings",
                                     "reference_impression", "reference_labels"])}
    assert targets["s0"] == read_traces(recipe.traces.path)[("manifest", "s0")].trace + train[0]["reference"]
    assert targets["s1"].startswith("<think>\nPerception: airway: normal.")  # the rule-based block
    for text in targets.values():
        parsed = parse_completion(text)
        assert parsed.think_closed and parsed.findings and not parsed.problems
    with pytest.raises(TracesError, match="file not found; write it with `unirg traces"):
        load_traces_for_sft(studies["run_dir"] + "/none.jsonl")


def test_no_teacher_or_no_file_is_a_clear_error(studies, capsys):
    overrides = [o for o in studies["overrides"] if not o.startswith("traces.path")]
    assert main(["traces", "--recipe", "demo", "--teacher-url", "http://127.0.0.1:9/v1", *overrides]) == 2
    assert "no traces file: pass --out or set traces.path" in capsys.readouterr().err
    assert main(["traces", "--recipe", "demo", *studies["overrides"]]) == 2
    assert "no teacher: set traces.teacher" in capsys.readouterr().err
    assert main(["traces", "--recipe", "demo", "--teacher", "/no/such/teacher", "--run-dir", studies["run_dir"],
                 *studies["overrides"]]) == 2
    assert "traces.teacher: /no/such/teacher is not a local model folder" in capsys.readouterr().err
    if importlib.util.find_spec("vllm") is None:  # the CPU test profile: serving needs the vLLM one
        assert main(["traces", "--recipe", "demo", "--teacher", str(studies["out"].parent), "--run-dir", studies["run_dir"],
                     *studies["overrides"]]) == 2
        assert "serving the teacher needs vLLM in this Python" in capsys.readouterr().err


def test_repeated_studies_are_asked_once_and_a_partial_row_is_cut(tmp_path):
    from datasets import concatenate_datasets

    from unirg.data import load_splits
    from unirg.data.config import DataConfig, PromptConfig
    from unirg.reasoning.generate import generate_traces
    from unirg.reasoning.knowledge import load_checklist
    from unirg.reasoning.teacher import TeacherClient

    manifest = write_studies(tmp_path / "data")
    train = load_splits(DataConfig(source="manifest", path=str(manifest)), PromptConfig(format="reasoning"),
                        tmp_path / "run").train
    twice = concatenate_datasets([train.select([0, 1]), train.select([0])])  # a mixture repeating study s0
    out = tmp_path / "traces.jsonl"
    out.write_text('{"study_id": "s9", "trace": "<think>\\nPercep')  # a run killed mid-write
    with FakeTeacher() as teacher:
        summary = generate_traces(twice, TeacherClient(teacher.url, "teacher-x", retries=0), out, "teacher-x",
                                  load_checklist(), progress=False)
    assert (summary.asked, summary.kept) == (2, 1) and teacher.requests["consistent"] == 1
    assert list(read_traces(out)) == [("manifest", "s0")] and summary.file_dropped == 1
    assert not drop_partial_row(out)  # whole rows only, nothing to cut
