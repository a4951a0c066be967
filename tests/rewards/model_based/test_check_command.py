"""`unirg check --recipe R`: every weight file a recipe's rewards need, present or missing."""

from __future__ import annotations

from pathlib import Path

import yaml

from unirg.cli import COMMAND_MODULES
from unirg.commands.check import missing_weights
from unirg.commands.check import run as check
from unirg.recipe import load_recipe

DEMO = Path(__file__).resolve().parents[3] / "recipes" / "demo.yaml"


def main(argv: list[str]) -> int:
    """`unirg check …` without building the other subcommands' parsers."""
    import argparse

    from unirg.commands.check import register

    parser = argparse.ArgumentParser(prog="unirg")
    register(parser.add_subparsers(dest="command"))
    return check(parser.parse_args(argv))


def test_check_is_a_unirg_command():
    assert "unirg.commands.check" in COMMAND_MODULES


def _recipe(tmp_path: Path, rewards: list[dict]) -> Path:
    tree = yaml.safe_load(DEMO.read_text())
    tree["rewards"] = rewards
    path = tmp_path / "weights.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_lists_present_and_missing_files(tiny_chexbert, tmp_path, capsys):
    chexbert = {"checkpoint": str(tiny_chexbert["checkpoint"]), "bert_dir": str(tiny_chexbert["bert_dir"])}
    recipe = _recipe(tmp_path, [
        {"name": "bleu2", "weight": 0.0},
        {"name": "semb_score", "weight": 0.253, "options": chexbert},
        {"name": "radgraph_f1", "weight": 0.377, "options": {"model_path": str(tmp_path / "radgraph.tar.gz")}},
    ])
    assert main(["check", "--recipe", str(recipe)]) == 1
    out = capsys.readouterr().out
    assert "bleu2 (weight 0): no model weights" in out
    assert f"ok       CheXbert checkpoint chexbert.pth: {tiny_chexbert['checkpoint']}" in out
    assert "MISSING  RadGraph model radgraph.tar.gz" in out
    assert "huggingface-cli download StanfordAIMI/RRG_scorers radgraph.tar.gz" in out
    lines = missing_weights(load_recipe(recipe))
    assert len(lines) == 1 and lines[0].startswith("radgraph_f1: RadGraph model radgraph.tar.gz")


def test_all_present_exits_zero(tiny_chexbert, tmp_path, capsys):
    chexbert = {"checkpoint": str(tiny_chexbert["checkpoint"]), "bert_dir": str(tiny_chexbert["bert_dir"])}
    recipe = _recipe(tmp_path, [{"name": "chexbert_f1", "options": chexbert}])
    assert main(["check", "--recipe", str(recipe)]) == 0
    assert "all weights present" in capsys.readouterr().out


def test_unknown_reward_is_reported_with_the_rest(tmp_path, capsys):
    recipe = _recipe(tmp_path, [{"name": "sembscore"}, {"name": "bleu2"}])
    assert main(["check", "--recipe", str(recipe)]) == 1
    out = capsys.readouterr().out
    assert "sembscore (weight 1): ERROR unknown reward 'sembscore'; did you mean 'semb_score'?" in out
    assert "bleu2 (weight 1): no model weights" in out


def test_require_recipe_weights_lists_every_missing_file(tmp_path):
    import pytest

    from unirg.commands.check import require_recipe_weights
    from unirg.errors import RewardError

    recipe = load_recipe(_recipe(tmp_path, [
        {"name": "semb_score", "options": {"checkpoint": str(tmp_path / "c.pth"), "bert_dir": str(tmp_path)}},
        {"name": "radgraph_f1", "options": {"model_path": str(tmp_path / "radgraph.tar.gz")}}]))
    with pytest.raises(RewardError) as error:
        require_recipe_weights(recipe)
    message = str(error.value)
    assert message.count("\n  - ") == 4  # chexbert.pth, config.json, vocab.txt, radgraph.tar.gz
    assert "semb_score: CheXbert checkpoint chexbert.pth" in message and "radgraph_f1: RadGraph model" in message


def test_bertscore_model_is_listed_before_a_run(tmp_path):
    from rewards.bertscore import BERTScore

    (missing,) = BERTScore.weight_files(model="no-such-model-anywhere")
    assert not missing.present and "hf download no-such-model-anywhere" in missing.describe()
    (local,) = BERTScore.weight_files(model=str(tmp_path))
    assert local.present and local.path == tmp_path
