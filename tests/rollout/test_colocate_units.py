"""Pure pieces of the colocated rollout backend: engine arguments, blocked tokens, prompt ids, install checks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from unirg.errors import UnirgError
from unirg.recipe import load_recipe
from unirg.rollout.colocate import (
    BLOCKED_TOKEN_BIAS,
    ColocatedVLLMGeneration,
    blocked_token_ids,
    colocate_engine_kwargs,
    install_colocated_rollout,
)
from unirg.rollout.colocate_check import failures
from unirg.rollout.config import RolloutConfig


def test_engine_kwargs_on_cpu_have_no_gpu_only_settings() -> None:
    rollout = RolloutConfig(backend="vllm_colocate", dtype="float32", max_model_len=512, tensor_parallel_size=2,
                            seed=3)
    cpu = colocate_engine_kwargs(rollout, on_gpu=False, process_index=1, max_num_seqs=8)
    assert cpu["distributed_executor_backend"] == "external_launcher"
    assert cpu["dtype"] == "float32"  # vLLM would run a float32 policy in bfloat16 with "auto"
    assert cpu["limit_mm_per_prompt"] == {"image": 4, "video": 0}  # no dummy video at start-up
    assert cpu["logprobs_mode"] == "processed_logprobs"  # what TRL's importance sampling needs
    assert cpu["tensor_parallel_size"] == 1 and cpu["seed"] == 4  # one engine per process on CPU
    assert cpu["max_model_len"] == 512 and cpu["max_num_seqs"] == 8
    assert "enable_sleep_mode" not in cpu and "gpu_memory_utilization" not in cpu


def test_engine_kwargs_on_gpu_take_sleep_share_and_tensor_parallel_from_the_recipe() -> None:
    rollout = RolloutConfig(backend="vllm_colocate", gpu_memory_utilization=0.35, tensor_parallel_size=2, seed=10)
    ranks = [colocate_engine_kwargs(rollout, on_gpu=True, process_index=i) for i in range(4)]
    assert all(r["enable_sleep_mode"] and r["gpu_memory_utilization"] == 0.35 for r in ranks)
    assert all(r["tensor_parallel_size"] == 2 for r in ranks)
    # The two processes of a tensor-parallel group sample alike; the groups differ.
    assert [r["seed"] for r in ranks] == [10, 10, 11, 11]
    awake = colocate_engine_kwargs(rollout.model_copy(update={"sleep_mode": False}), on_gpu=True, process_index=0)
    assert awake["enable_sleep_mode"] is False
    assert "max_model_len" not in awake  # None: vLLM takes the model config's


def test_blocked_tokens_come_from_the_processor() -> None:
    assert blocked_token_ids(SimpleNamespace(image_token_id=151655, video_token_id=151656)) == [151655, 151656]
    assert blocked_token_ids(SimpleNamespace(image_token_id=7)) == [7]
    assert blocked_token_ids(SimpleNamespace()) == []


def bare_generation(image_token_id: int | None) -> ColocatedVLLMGeneration:
    """A generation object without an engine, for its prompt handling."""
    generation = ColocatedVLLMGeneration.__new__(ColocatedVLLMGeneration)
    generation.image_token_id = image_token_id
    generation.processing_class = SimpleNamespace()
    return generation


def test_engine_prompt_ids_collapse_image_pads_only_with_images() -> None:
    generation = bare_generation(image_token_id=5)
    ids = [1, 5, 5, 5, 2, 5, 5, 3]  # two images, already expanded by the HF processor
    assert generation.engine_prompt_ids(ids, images=["a", "b"]) == [1, 5, 2, 5, 3]
    assert generation.engine_prompt_ids(ids, images=None) == ids


def test_image_prompt_without_image_token_id_fails_with_the_fix() -> None:
    with pytest.raises(UnirgError, match="no image_token_id"):
        bare_generation(image_token_id=None).engine_prompt_ids([1, 2], images=["a"])


def test_install_refuses_a_trainer_that_already_started_vllm() -> None:
    trainer = SimpleNamespace(use_vllm=True, args=SimpleNamespace())
    with pytest.raises(UnirgError, match="use_vllm=False"):
        install_colocated_rollout(trainer, RolloutConfig(backend="vllm_colocate"))


def test_recipe_accepts_the_colocate_backend_and_keeps_hf_as_the_default() -> None:
    assert RolloutConfig().backend == "hf" and load_recipe("demo").rollout.backend == "hf"
    recipe = load_recipe("demo", ["rollout.backend=vllm_colocate", "rollout.tensor_parallel_size=2",
                                  "rollout.sleep_mode=false"])
    assert recipe.rollout.backend == "vllm_colocate" and recipe.rollout.tensor_parallel_size == 2
    assert recipe.rollout.sleep_mode is False
    assert BLOCKED_TOKEN_BIAS == -100.0  # vLLM clamps biases to [-100, 100]


def passing_row() -> dict:
    return {"tolerance": 1e-3, "greedy_prompts": 4, "greedy_equal": 4, "greedy_logprob_max_abs_diff": 3e-5,
            "fixed_logprob_max_abs_diff_before": 3e-5, "synced_logprob_max_abs_diff": 3e-5,
            "engine_moved_logprob_max_abs_diff": 9.0, "stale_logprob_max_abs_diff": 7.0, "steps": 2,
            "is_ratio_mean": [0.98, 0.99], "weight_syncs_during_training": 2}


@pytest.mark.parametrize(("change", "words"), [
    ({"greedy_equal": 3}, "greedy vLLM completions differ"),
    ({"fixed_logprob_max_abs_diff_before": 0.5}, "before training"),
    ({"synced_logprob_max_abs_diff": 0.5}, "after training and a sync"),
    ({"engine_moved_logprob_max_abs_diff": 5e-3}, "moved only"),
    ({"stale_logprob_max_abs_diff": 5e-3}, "before the last sync"),
    ({"is_ratio_mean": [0.01, 0.98]}, "importance-sampling"),
    ({"weight_syncs_during_training": 1}, "weight syncs"),
    ({"greedy_logprob_max_abs_diff": float("nan")}, "greedy logprobs"),
])
def test_check_names_each_failure(change: dict, words: str) -> None:
    assert failures(passing_row()) == []
    assert failures({**passing_row(), "stale_logprob_max_abs_diff": None}) == []  # sleep mode: not measurable
    found = failures({**passing_row(), **change})
    assert len(found) == 1 and words in found[0]


def test_vllm_calls_match_the_installed_vllm() -> None:
    """Every engine argument (GPU ones included) and every engine call the colocated path makes exists in the
    installed vLLM with the parameters used: a version change that drops one fails here, not on a GPU."""
    import dataclasses
    import inspect

    pytest.importorskip("vllm")
    from vllm import LLM, SamplingParams
    from vllm.engine.arg_utils import EngineArgs
    from vllm.v1.engine.llm_engine import LLMEngine
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    rollout = RolloutConfig(backend="vllm_colocate", max_model_len=512)
    kwargs = colocate_engine_kwargs(rollout, on_gpu=True, process_index=0, max_num_seqs=4)
    assert set(kwargs) <= {field.name for field in dataclasses.fields(EngineArgs)}
    assert "external_launcher" in str(inspect.signature(EngineArgs).parameters["distributed_executor_backend"])
    assert "level" in inspect.signature(LLM.sleep).parameters
    assert "tags" in inspect.signature(LLM.wake_up).parameters
    assert callable(LLM.reset_mm_cache) and callable(LLM.reset_prefix_cache) and callable(LLMEngine.reset_encoder_cache)
    assert "kwargs" in inspect.signature(LLM.collective_rpc).parameters
    assert "weights_iterator" in inspect.signature(GPUModelRunner.reload_weights).parameters
    params = SamplingParams(max_tokens=1, prompt_logprobs=0, logprobs=0, logit_bias={5: BLOCKED_TOKEN_BIAS})
    assert params.logit_bias == {5: BLOCKED_TOKEN_BIAS}
