"""A corpus with every kind of bad row: `data check` names each one, and training with skip uses all good rows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from unirg.data.synthetic import generate_studies

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def build_corpus(root: Path) -> tuple[Path, int, dict[str, str]]:
    """Good synthetic studies plus one bad row of each kind; returns manifest, good count, bad id → reason word."""
    good_manifest = generate_studies(root / "good", 12, seed=3, size=64)
    rows = [json.loads(line) for line in good_manifest.read_text().splitlines()]
    for row in rows:
        row["images"] = [f"good/{p}" for p in row["images"]]
    images = root / "bad"
    images.mkdir()
    (images / "zero.png").write_bytes(b"")
    (images / "text.png").write_text("this is not an image")
    png = (root / "good" / rows[0]["images"][0].removeprefix("good/")).read_bytes()
    (images / "truncated.png").write_bytes(png[: len(png) // 3])
    Image.new("L", (1, 1)).save(images / "tiny.png")
    Image.new("L", (20_000, 20_000)).save(images / "huge.png")
    ok_image = rows[0]["images"]
    bad = {
        "missing-image": ({"images": ["bad/nowhere.png"]}, "not found"),
        "zero-byte": ({"images": ["bad/zero.png"]}, "empty"),
        "not-an-image": ({"images": ["bad/text.png"]}, "unreadable"),
        "truncated": ({"images": ["bad/truncated.png"]}, "unreadable"),
        "one-pixel": ({"images": ["bad/tiny.png"]}, "too small"),
        "huge-image": ({"images": ["bad/huge.png"]}, "too large"),
        "empty-report": ({"findings": "", "impression": ""}, "empty"),
        "blank-report": ({"findings": "  \n ", "impression": "\t"}, "empty"),
        "megabyte-report": ({"findings": "No effusion. " * 80_000}, "too long"),
        "non-text-report": ({"findings": 42}, "not text"),
        "no-columns": ({"images": None, "findings": None, "impression": None}, ""),
    }
    lines = [json.dumps(row) for row in rows]
    for study_id, (change, _) in bad.items():
        row = {"study_id": study_id, "images": ok_image, "findings": "Clear lungs.", "impression": "Normal."}
        row.update(change)
        lines.append(json.dumps({k: v for k, v in row.items() if v is not None}))
    lines.append(json.dumps(rows[1]))  # duplicate study id
    manifest = root / "manifest.jsonl"
    raw = "\n".join(lines).encode() + b'\n{"study_id": "latin1", "findings": "\xe9panchement"}\n'
    manifest.write_bytes(raw)
    reasons = {k: v for k, (_, v) in bad.items()} | {rows[1]["study_id"]: "duplicate", "": "UTF-8"}
    return manifest, len(rows), reasons


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    yield build_corpus(root)
    shutil.rmtree(root, ignore_errors=True)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unirg", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, HF_HUB_OFFLINE="1"))


def test_data_check_names_every_bad_row(corpus):
    manifest, _, reasons = corpus
    result = run("data", "check", "--manifest", str(manifest))
    assert result.returncode == 1
    out = result.stdout + result.stderr
    for study_id, reason in reasons.items():
        lines = [line for line in out.splitlines() if (study_id and study_id in line) or (not study_id and "UTF-8" in line)]
        assert lines, f"bad row {study_id!r} not reported"
        assert reason.lower() in " ".join(lines).lower(), (study_id, lines)


def test_training_with_skip_uses_every_good_row(corpus, tmp_path):
    manifest, good, reasons = corpus
    run_dir = tmp_path / "run"
    result = run("rl", "--recipe", "demo", "--run-dir", str(run_dir), "data.source=manifest",
                 f"data.path={manifest}", "data.on_bad_row=skip", "sft=null", "evaluate=false", "grpo.max_steps=1",
                 "grpo.per_device_train_batch_size=4", "grpo.num_generations=2", "rollout.max_new_tokens=8",
                 "logging.progress=false")
    assert result.returncode == 0, result.stderr[-3000:]
    bad_rows = [json.loads(line) for line in (run_dir / "bad_rows.jsonl").read_text().splitlines()]
    assert len(bad_rows) == len(reasons)
    assert all(row["reason"] and row["row"] for row in bad_rows)
    from unirg.data import load_splits
    from unirg.recipe import load_recipe

    recipe = load_recipe("demo", ["data.source=manifest", f"data.path={manifest}", "data.on_bad_row=skip"])
    splits = load_splits(recipe.data, recipe.prompt, tmp_path / "again")
    assert len(splits.train) == good
    assert len(splits.bad_rows) == len(reasons)


def test_fail_mode_stops_at_the_first_bad_row_with_its_place(corpus, tmp_path):
    manifest, good, _ = corpus
    result = run("rl", "--recipe", "demo", "--run-dir", str(tmp_path / "r"), "data.source=manifest",
                 f"data.path={manifest}")
    assert result.returncode == 2
    assert f"{manifest}, row {good + 1}" in result.stderr and "on_bad_row=skip" in result.stderr
