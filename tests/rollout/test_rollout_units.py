"""Pure pieces of the rollout backend: prompt handling, batching, tied heads, weight files, config, runtime env."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from unirg.errors import UnirgError
from unirg.orchestration import SUBMIT_EXCLUDES, rollout_bundles, submit_runtime_env
from unirg.orchestration import main as orchestration_main
from unirg.rollout.config import ClusterConfig, RolloutConfig
from unirg.rollout.generation import (
    _flatten,
    _split,
    add_tied_head,
    check_cpu_head_size,
    engine_kwargs,
    install_ray_rollout,
    weight_sync_mode,
    write_weights,
)
from unirg.rollout.worker import collapse_runs, ranked_logprobs


@pytest.mark.parametrize(("ids", "expected"), [
    ([1, 5, 5, 5, 4, 2], [1, 5, 4, 2]),
    ([5, 5, 9, 5, 5], [5, 9, 5]),  # two images: one placeholder each
    ([1, 2, 3], [1, 2, 3]),
    ([], []),
])
def test_collapse_runs_keeps_one_placeholder_per_image(ids: list[int], expected: list[int]) -> None:
    assert collapse_runs(ids, 5) == expected


@pytest.mark.parametrize(("count", "parts", "sizes"), [(5, 2, [3, 2]), (4, 4, [1, 1, 1, 1]), (1, 3, [1, 0, 0])])
def test_split_is_contiguous_and_balanced(count: int, parts: int, sizes: list[int]) -> None:
    chunks = _split(list(range(count)), parts)
    assert [len(c) for c in chunks] == sizes
    assert [x for c in chunks for x in c] == list(range(count))


def test_flatten_gives_one_row_per_completion_in_group_order() -> None:
    results = [{"prompt_ids": [1], "completions": [{"token_ids": [7], "logprobs": [[-0.1]], "logprob_token_ids": [[7]]},
                                                   {"token_ids": [8], "logprobs": [[-0.2]], "logprob_token_ids": [[8]]}]},
               {"prompt_ids": [2], "completions": [{"token_ids": [9], "logprobs": [[-0.3]], "logprob_token_ids": [[9]]},
                                                   {"token_ids": [6], "logprobs": [[-0.4]], "logprob_token_ids": [[6]]}]}]
    prompt_ids, completion_ids, logprobs, token_ids = _flatten(results)
    assert prompt_ids == [[1], [1], [2], [2]]
    assert completion_ids == [[7], [8], [9], [6]]
    assert logprobs == [[[-0.1]], [[-0.2]], [[-0.3]], [[-0.4]]]
    assert token_ids == [[[7]], [[8]], [[9]], [[6]]]


def test_ranked_logprobs_sorts_by_rank_and_maps_nan_to_none() -> None:
    entry = SimpleNamespace
    positions = [{4: entry(logprob=-2.0, rank=2), 3: entry(logprob=-0.5, rank=1)},
                 {8: entry(logprob=math.nan, rank=1)}]
    assert ranked_logprobs(positions) == ([[-0.5, -2.0], [None]], [[3, 4], [8]])
    assert ranked_logprobs(None) == (None, None)


class Tied(torch.nn.Module):
    def __init__(self, tie: bool) -> None:
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(10, 4)
        self.lm_head = torch.nn.Linear(4, 10, bias=False)
        if tie:
            self.lm_head.weight = self.embed_tokens.weight

    def get_input_embeddings(self):
        return self.embed_tokens

    def get_output_embeddings(self):
        return self.lm_head


def test_tied_head_is_added_as_its_own_tensor_and_written(tmp_path) -> None:
    model = Tied(tie=True)
    state = {name: p.detach().clone() for name, p in model.named_parameters()}
    assert "lm_head.weight" not in state  # named_parameters yields a tied weight once
    add_tied_head(state, model)
    assert torch.equal(state["lm_head.weight"], model.embed_tokens.weight)
    path = write_weights(state, tmp_path / "sync", version=3)  # safetensors refuses shared storage
    assert path.name == "weights-000003.safetensors"
    assert set(load_file(path)) == {"embed_tokens.weight", "lm_head.weight"}
    assert not list((tmp_path / "sync").glob("*.partial"))


def test_untied_head_is_left_alone() -> None:
    model = Tied(tie=False)
    state = {name: p.detach().clone() for name, p in model.named_parameters()}
    before = {k: v.clone() for k, v in state.items()}
    add_tied_head(state, model)
    assert state.keys() == before.keys() and all(torch.equal(state[k], before[k]) for k in state)


def test_cpu_head_size_check_names_the_fix() -> None:
    check_cpu_head_size(SimpleNamespace(text_config=SimpleNamespace(hidden_size=128, num_attention_heads=4,
                                                                    head_dim=None)))
    with pytest.raises(UnirgError, match="model.tiny.hidden_size: 128"):
        check_cpu_head_size(SimpleNamespace(hidden_size=64, num_attention_heads=4, head_dim=None, text_config=None))


def test_engine_kwargs_follow_the_recipe() -> None:
    rollout = RolloutConfig(backend="vllm_ray", max_model_len=512, dtype="float32")
    cpu = engine_kwargs(rollout, ClusterConfig(), max_num_seqs=8)
    assert cpu["logprobs_mode"] == "processed_logprobs"  # what TRL's importance sampling needs
    assert cpu["limit_mm_per_prompt"] == {"image": 4, "video": 0}
    assert cpu["max_model_len"] == 512 and cpu["max_num_seqs"] == 8
    assert "weight_transfer_config" not in cpu and "gpu_memory_utilization" not in cpu
    gpu = engine_kwargs(rollout, ClusterConfig(rollout_gpus_per_worker=1))
    assert gpu["weight_transfer_config"] == {"backend": "nccl"} and gpu["gpu_memory_utilization"] == 0.9
    assert weight_sync_mode(RolloutConfig(weight_sync="disk"), ClusterConfig(rollout_gpus_per_worker=1)) == "disk"


def test_config_rejects_unknown_and_invalid_fields() -> None:
    with pytest.raises(ValidationError):
        RolloutConfig(num_wokers=2)
    with pytest.raises(ValidationError):
        ClusterConfig(placement_strategy="EVERYWHERE")
    for model in (RolloutConfig, ClusterConfig):
        assert all(field.description for field in model.model_fields.values())


def test_rollout_bundles_from_cluster_section() -> None:
    assert rollout_bundles(ClusterConfig(rollout_cpus_per_worker=2), 2) == [{"CPU": 2.0}, {"CPU": 2.0}]
    assert rollout_bundles(ClusterConfig(rollout_gpus_per_worker=1), 1) == [{"CPU": 1.0, "GPU": 1.0}]


def test_submit_runtime_env_excludes_what_is_not_code(capsys, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    env = submit_runtime_env()
    assert env["working_dir"] == "." and env["excludes"] == SUBMIT_EXCLUDES
    assert {".git", ".venv", "data", "runs", "checkpoints", "*.safetensors"} <= set(env["excludes"])
    assert env["env_vars"]["HF_HUB_OFFLINE"] == "1"
    assert orchestration_main(["runtime-env"]) == 0
    assert json.loads(capsys.readouterr().out)["excludes"] == SUBMIT_EXCLUDES


def test_install_refuses_a_trainer_that_already_started_vllm() -> None:
    trainer = SimpleNamespace(use_vllm=True, args=SimpleNamespace())
    with pytest.raises(UnirgError, match="use_vllm=False"):
        install_ray_rollout(trainer, RolloutConfig(backend="vllm_ray"), ClusterConfig())
