"""The model-based reward plugins through the registry and the TRL adapter, on tiny weights."""

from __future__ import annotations

import pickle

import pytest
from tiny_weights import REPORTS

from rewards import build_reward_functions
from rewards.chexbert.plugins import CheXbertF1, SembScore
from rewards.llm_judge import LLMErrors
from rewards.radgraph.plugins import RadGraphF1
from rewards.registry import resolve
from unirg.errors import RewardError

COMPLETIONS = [f"Findings: {report} Impression: {report}" for report in REPORTS]


@pytest.fixture
def chexbert_options(tiny_chexbert) -> dict:
    return {"checkpoint": str(tiny_chexbert["checkpoint"]), "bert_dir": str(tiny_chexbert["bert_dir"])}


def test_names_resolve_to_the_plugins():
    assert resolve("semb_score") is SembScore and resolve("chexbert_f1") is CheXbertF1
    assert resolve("radgraph_f1") is RadGraphF1 and resolve("llm_errors") is LLMErrors
    for name in ("radgraph_simple", "radgraph_partial", "radgraph_complete", "ratescore"):
        assert resolve(name).name == name


def test_chexbert_rewards_through_the_trl_adapter(chexbert_options):
    entries = [{"name": "semb_score", "weight": 0.253, "options": chexbert_options},
               {"name": "chexbert_f1", "weight": 1.0, "options": {"labels": 5, **chexbert_options}}]
    functions, weights = build_reward_functions(entries)
    assert [f.__name__ for f in functions] == ["semb_score", "chexbert_f1"] and weights == [0.253, 1.0]
    references = [completion.replace("Findings: ", "").split(" Impression:")[0] for completion in COMPLETIONS]
    semb = functions[0](COMPLETIONS, reference=references)
    assert len(semb) == len(COMPLETIONS) and all(-1.0 <= s <= 1.0 for s in semb)
    f1 = functions[1](COMPLETIONS, reference=[REPORTS[0]] * len(COMPLETIONS))
    assert all(0.0 <= s <= 1.0 for s in f1)
    assert functions[0].plugin.labeler is functions[1].plugin.labeler  # one model copy per process


def test_identical_reports_score_one(chexbert_options):
    semb, f1 = SembScore(**chexbert_options), CheXbertF1(**chexbert_options)
    assert semb.score(REPORTS, REPORTS) == pytest.approx([1.0] * len(REPORTS), abs=1e-5)
    assert f1.score(REPORTS, REPORTS) == [1.0] * len(REPORTS)
    table = f1.corpus_f1(REPORTS, REPORTS)
    assert set(table) == {"micro_14", "macro_14", "micro_5", "macro_5"}


def test_plugins_pickle_without_their_model(chexbert_options):
    functions, _ = build_reward_functions([{"name": "chexbert_f1", "options": chexbert_options}])
    functions[0](COMPLETIONS[:1], reference=REPORTS[:1])
    payload = pickle.dumps(functions[0])
    assert len(payload) < 20_000  # what Ray ships to a reward actor holds no weights
    assert pickle.loads(payload)(COMPLETIONS[:2], reference=[c for c in COMPLETIONS[:2]]) is not None


def test_resources_are_declared_for_ray_actors():
    assert SembScore.resources == {"num_gpus": 0.25} and RadGraphF1.resources == {"num_gpus": 0.25}
    assert LLMErrors.resources == {}


def test_missing_weights_stop_at_build_time(tmp_path):
    with pytest.raises(RewardError, match="reward 'semb_score' needs model weights"):
        build_reward_functions([{"name": "semb_score", "options": {"checkpoint": str(tmp_path / "chexbert.pth"),
                                                                   "bert_dir": str(tmp_path)}}])
    with pytest.raises(RewardError, match="reward 'radgraph_complete' needs model weights"):
        build_reward_functions([{"name": "radgraph_complete",
                                 "options": {"model_path": str(tmp_path / "radgraph.tar.gz")}}])


def test_radgraph_rewards_share_one_annotator(tmp_path_factory, monkeypatch):
    pytest.importorskip("radgraph", reason="the radgraph package is not installed (pip install 'unirg[radgraph]')")
    from tiny_weights import write_tiny_radgraph

    archive = write_tiny_radgraph(tmp_path_factory.mktemp("radgraph-plugin"))
    monkeypatch.setattr("rewards.radgraph.model.UNPACK_ROOT", tmp_path_factory.mktemp("unpack"))
    names = ("radgraph_f1", "radgraph_simple", "radgraph_partial", "radgraph_complete")
    functions, _ = build_reward_functions([{"name": n, "options": {"model_path": str(archive)}} for n in names])
    assert len({id(f.plugin.scorer) for f in functions}) == 1
    logged = {}
    completions = ["Findings: mild pulmonary edema.", ""]  # an empty completion scores 0 without the model
    for function in functions:
        scores = function(completions, reference=["mild pulmonary edema", "no effusion"],
                          log_metric=lambda key, value: logged.__setitem__(key, value))
        assert scores[0] is not None and 0.0 <= scores[0] <= 1.0
    assert "rewards/radgraph_f1/entity_f1" in logged and "rewards/radgraph_f1/relation_f1" in logged
    assert pickle.loads(pickle.dumps(functions[0])).__name__ == "radgraph_f1"
