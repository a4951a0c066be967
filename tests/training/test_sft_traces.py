"""Reasoning SFT learns the teacher traces of `unirg traces` where it has them, and new traces retrain SFT."""

import json

from unirg.data import load_splits
from unirg.reasoning.traces_file import traces_for_sft
from unirg.recipe import load_recipe
from unirg.training.checkpoints import stage_settings
from unirg.training.sft import sft_dataset

TEACHER = "<think>\nPerception: the heart is of normal size.\nDiagnosis: normal.\nReflection: checked.\n</think>\n"


def test_sft_targets_use_teacher_traces_and_their_fingerprint(tmp_path, capsys):
    traces = tmp_path / "traces.jsonl"
    recipe = load_recipe("demo", ["prompt.format=reasoning", f"traces.path={traces}", "data.synthetic.n_train=6",
                                  "data.synthetic.n_eval=2", "data.synthetic.size=32"])
    splits = load_splits(recipe.data, recipe.prompt, tmp_path)
    first = splits.train[0]
    traces.write_text(json.dumps({"study_id": first["study_id"], "dataset": first.get("dataset") or "",
                                  "trace": TEACHER, "teacher": "teacher-x", "checklist": "cxr-chexpert14 v1",
                                  "format": 1}) + "\n", encoding="utf-8")

    targets = [row["completion"][0]["content"] for row in
               sft_dataset(splits.train, "reasoning", traces_for_sft(recipe, splits.train))]
    assert "1 of 6 training studies use teacher traces" in capsys.readouterr().out
    assert targets[0].startswith(TEACHER)
    assert all("<think>" in t and not t.startswith(TEACHER) for t in targets[1:])
    rule_based = sft_dataset(splits.train.select([0]), "reasoning")[0]["completion"][0]["content"]
    assert targets[0].split("</think>")[1] == rule_based.split("</think>")[1]  # the report is still the reference

    before = stage_settings(recipe, "sft", "start")["traces.sha256"]
    traces.write_text(traces.read_text(encoding="utf-8").replace("checked", "re-checked"), encoding="utf-8")
    assert stage_settings(recipe, "sft", "start")["traces.sha256"] != before
    assert "traces.sha256" not in stage_settings(load_recipe("demo"), "sft", "start")
