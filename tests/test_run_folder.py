"""The run folder's atomic writes: a kill at any point of a folder swap leaves a whole folder behind."""

from __future__ import annotations

import pytest

from unirg.run_folder import (
    commit_folder,
    folder_written_atomically,
    model_identity,
    new_stage_record,
    scratch_folder,
    stage_record,
    write_json_atomically,
)


def _write(folder, text):
    (folder / "weights.txt").write_text(text)


def test_failed_write_leaves_the_previous_folder(tmp_path):
    dest = tmp_path / "final"
    with folder_written_atomically(dest, new_stage_record("grpo")) as scratch:
        _write(scratch, "v1")
    with pytest.raises(RuntimeError), folder_written_atomically(dest, new_stage_record("grpo")) as scratch:
        _write(scratch, "half")
        raise RuntimeError("killed mid-write")
    assert (dest / "weights.txt").read_text() == "v1"
    assert stage_record(dest)["stage"] == "grpo"


@pytest.mark.parametrize("new_complete", [True, False])
def test_kill_between_the_two_renames_is_recovered(tmp_path, new_complete):
    dest = tmp_path / "final"
    with folder_written_atomically(dest, new_stage_record("sft")) as scratch:
        _write(scratch, "old")
    scratch = scratch_folder(dest)
    _write(scratch, "new")
    if new_complete:
        write_json_atomically(scratch / "unirg_stage_complete.json", new_stage_record("sft"))
    dest.rename(dest.with_name("final.old"))  # the swap's first rename; the kill comes before the second
    record = stage_record(dest)
    assert record is not None and dest.is_dir()
    assert (dest / "weights.txt").read_text() == ("new" if new_complete else "old")


def test_half_written_folder_has_no_stage_record(tmp_path):
    dest = tmp_path / "final"
    scratch = scratch_folder(dest)
    _write(scratch, "half")
    assert stage_record(dest) is None


def test_identity_changes_when_a_stage_rewrites_its_weights(tmp_path):
    dest = tmp_path / "final"
    commit_folder(scratch_folder(dest), dest, new_stage_record("grpo"))
    first = model_identity(str(dest))
    commit_folder(scratch_folder(dest), dest, new_stage_record("grpo"))
    assert model_identity(str(dest)) != first
    assert model_identity("Qwen/Qwen2-VL-2B-Instruct") == "Qwen/Qwen2-VL-2B-Instruct"
