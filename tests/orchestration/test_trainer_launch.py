"""Trainer launch decisions without starting Ray: where the trainer runs, what it reserves, the budget check,
sharding fields, failure messages and data-path resolution (CPU only, fast)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from unirg.data.config import DataConfig, resolve_data_paths
from unirg.errors import DataError, RecipeError
from unirg.orchestration.launch import (
    describe_failure,
    forwarded_env,
    job_run_dir,
    placement,
    sharding_fields,
    with_sharding,
)
from unirg.orchestration.ray_cluster import (
    ClusterError,
    check_budget,
    resource_budget,
    reward_actor_count,
    trainer_bundles,
    trainer_gpus,
)
from unirg.recipe import load_recipe
from unirg.rollout.config import ClusterConfig, RolloutConfig

REPO = Path(__file__).resolve().parents[2]


def demo(*overrides: str):
    return load_recipe("demo", list(overrides))


# --- where the trainer runs ---------------------------------------------------------------------------

@pytest.mark.parametrize(("overrides", "address", "gpus", "expected"), [
    ((), None, 0, "in_process"),                                         # the demo: no Ray at all
    (("cluster.trainer_workers=2",), None, 0, "ray"),                    # local Ray, 2 ranks
    ((), "127.0.0.1:6379", 0, "ray"),                                    # a cluster (or inside `ray job submit`)
    (("rollout.backend=vllm_ray",), None, 0, "in_process"),              # CPU trainer beside rollout actors
    (("rollout.backend=vllm_ray",), None, 1, "ray"),                     # GPU trainer: Ray must reserve its GPU
    (("cluster.ray_rewards=[chexpert_f1]",), None, 2, "ray"),
    (("rollout.backend=vllm_ray", "cluster.trainer_gpus_per_worker=0"), None, 1, "in_process"),
    ((), None, 1, "in_process"),                                         # GPU trainer, nothing else on Ray
])
def test_placement(overrides, address, gpus, expected) -> None:
    assert placement(demo(*overrides), address, gpus) == expected


def test_placement_under_torchrun_trains_in_place_and_refuses_a_different_world() -> None:
    assert placement(demo(), None, 0, launched_world=2) == "in_process"
    assert placement(demo("cluster.trainer_workers=2"), None, 0, launched_world=2) == "in_process"
    with pytest.raises(RecipeError, match="cluster.trainer_workers=3"):
        placement(demo("cluster.trainer_workers=3"), None, 0, launched_world=2)


# --- what the trainer reserves ------------------------------------------------------------------------

def test_trainer_gpus_auto_follows_the_cluster_and_an_explicit_value_wins() -> None:
    assert trainer_gpus(ClusterConfig(), 0) == 0
    assert trainer_gpus(ClusterConfig(), 8) == 1
    assert trainer_gpus(ClusterConfig(trainer_gpus_per_worker=0.5), 8) == 0.5
    assert trainer_gpus(ClusterConfig(trainer_gpus_per_worker=0), 8) == 0


def test_trainer_bundles_hold_the_gpu_each_process_trains_on() -> None:
    cluster = ClusterConfig(trainer_workers=3, trainer_cpus_per_worker=4)
    assert trainer_bundles(cluster, 1) == [{"CPU": 4, "GPU": 1}] * 3
    assert trainer_bundles(cluster, 0) == [{"CPU": 4}] * 3


def test_trainer_config_refuses_more_than_one_gpu_per_process_and_zero_workers() -> None:
    with pytest.raises(ValidationError, match="trainer_gpus_per_worker"):
        ClusterConfig(trainer_gpus_per_worker=2)
    with pytest.raises(ValidationError, match="trainer_workers"):
        ClusterConfig(trainer_workers=0)


def test_budget_adds_trainers_rollout_workers_and_one_shared_reward_actor_per_plugin() -> None:
    cluster = ClusterConfig(trainer_workers=2, trainer_cpus_per_worker=2, rollout_cpus_per_worker=1,
                            rollout_gpus_per_worker=1, ray_rewards=["bertscore", "radgraph"],
                            reward_cpus_per_worker=0.5, reward_gpus_per_worker=0.25)
    budget = resource_budget(cluster, RolloutConfig(backend="vllm_ray", num_workers=3), gpus_per_trainer=1)
    assert reward_actor_count(cluster) == 2
    assert budget["CPU"] == 2 * 2 + 3 * 1 + 2 * 0.5
    assert budget["GPU"] == 2 * 1 + 3 * 1 + 2 * 0.25
    assert len(budget["parts"]) == 3


def test_budget_counts_one_actor_per_served_judge_model(tmp_path) -> None:
    from unirg.recipe import RewardEntry

    judge, other = tmp_path / "judge", tmp_path / "other-judge"
    judge.mkdir()
    other.mkdir()
    rewards = [
        RewardEntry(name="llm_errors", options={"serve": {"model": str(judge), "gpu_fraction": 0.3, "cpus": 2}}),
        # The same model again (another prompt style) attaches to the same actor.
        RewardEntry(name="llm_errors", options={"serve": {"model": str(judge), "gpu_fraction": 0.3, "cpus": 2},
                                                "style": "chexprompt"}),
        # No gpu_fraction: the share vLLM is told to fill, on a cluster with GPUs.
        RewardEntry(name="llm_errors", options={"serve": {"model": str(other), "gpu_memory_utilization": 0.2}}),
        RewardEntry(name="llm_errors", options={"serve": {"model": str(other), "ray": False}, "model": "local"}),
        RewardEntry(name="llm_errors", options={"base_url": "http://judge.example/v1"}),
        RewardEntry(name="chexpert_f1"),
    ]
    cluster = ClusterConfig(trainer_workers=2, trainer_cpus_per_worker=1)
    budget = resource_budget(cluster, RolloutConfig(backend="hf"), 1, rewards, cluster_has_gpus=True)
    assert (budget["CPU"], budget["GPU"]) == (2 * 1 + 2 + 1, pytest.approx(2 * 1 + 0.3 + 0.2))
    without_gpus = resource_budget(cluster, RolloutConfig(backend="hf"), 0, rewards[2:3], cluster_has_gpus=False)
    assert (without_gpus["CPU"], without_gpus["GPU"]) == (3, 0)
    with pytest.raises(ClusterError, match="serve.gpu_fraction"):
        check_budget(budget, {"CPU": 16.0, "GPU": 2.0})


def test_budget_leaves_out_rollout_workers_of_in_process_backends() -> None:
    budget = resource_budget(ClusterConfig(trainer_workers=2), RolloutConfig(backend="hf", num_workers=4), 0)
    assert (budget["CPU"], budget["GPU"]) == (2, 0)


def test_check_budget_names_each_group_when_the_cluster_is_short() -> None:
    cluster = ClusterConfig(trainer_workers=2, ray_rewards=["chexpert_f1"])
    budget = resource_budget(cluster, RolloutConfig(backend="vllm_ray", num_workers=2), 0)
    check_budget(budget, {"CPU": 5.0})
    with pytest.raises(ClusterError) as error:
        check_budget(budget, {"CPU": 4.0})
    message = str(error.value)
    assert "needs 5 CPU" in message and "4 CPU" in message
    for field in ("cluster.trainer_", "rollout.num_workers", "cluster.ray_rewards"):
        assert field in message


# --- sharding ---------------------------------------------------------------------------------------

def test_ddp_adds_nothing_and_sharding_needs_gpus() -> None:
    assert sharding_fields("ddp", on_gpu=False) == {}
    with pytest.raises(RecipeError, match="trainer_backend=fsdp"):
        sharding_fields("fsdp", on_gpu=False)


def test_fsdp_reaches_grpo_and_sft_and_refuses_a_clash() -> None:
    recipe = with_sharding(demo("cluster.trainer_backend=fsdp"), on_gpu=True)
    assert recipe.grpo["fsdp"] == "full_shard auto_wrap" and recipe.sft["fsdp"] == "full_shard auto_wrap"
    with pytest.raises(RecipeError, match="grpo.fsdp and cluster.trainer_backend"):
        with_sharding(demo("cluster.trainer_backend=fsdp", "grpo.fsdp=full_shard"), on_gpu=True)


def test_sharding_set_by_hand_is_refused_on_cpu_where_transformers_ignores_it() -> None:
    with pytest.raises(RecipeError, match="grpo.fsdp is set but the trainer processes have no GPU"):
        with_sharding(demo("grpo.fsdp=full_shard"), on_gpu=False)
    assert with_sharding(demo("grpo.fsdp=null"), on_gpu=False).grpo["fsdp"] is None
    assert with_sharding(demo("grpo.fsdp=full_shard"), on_gpu=True).grpo["fsdp"] == "full_shard"


def test_deepspeed_zero3_is_stage_3_or_names_the_missing_package() -> None:
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(RecipeError, match="deepspeed package"):
            sharding_fields("deepspeed_zero3", on_gpu=True)
    else:
        assert sharding_fields("deepspeed_zero3", on_gpu=True)["deepspeed"]["zero_optimization"]["stage"] == 3


# --- failures and environment ---------------------------------------------------------------------------

def test_failure_message_names_the_rank_and_its_error() -> None:
    cause = RecipeError("grpo.learning_rate: must be positive")
    error = SimpleNamespace(worker_failures={1: SimpleNamespace(cause=cause)})
    message = describe_failure(error, 2)
    assert "rank 1" in message and "RecipeError" in message and "grpo.learning_rate" in message
    start = describe_failure(SimpleNamespace(controller_failure=TimeoutError("no resources")), 2)
    assert "could not be started" in start and "trainer_start_timeout_s" in start


def test_forwarded_env_carries_offline_and_data_dir(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("UNIRG_DATA_DIR", "/shared")
    monkeypatch.delenv("HF_HOME", raising=False)
    env = forwarded_env()
    assert env["HF_HUB_OFFLINE"] == "1" and env["UNIRG_DATA_DIR"] == "/shared" and "HF_HOME" not in env


def test_runtime_env_command_of_make_submit() -> None:
    out = subprocess.run([sys.executable, "-m", "unirg.orchestration", "runtime-env"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert '"excludes"' in out.stdout and '"data"' in out.stdout


# --- data paths in a submitted job ------------------------------------------------------------------

def test_relative_data_paths_resolve_from_unirg_data_dir(tmp_path, monkeypatch) -> None:
    (tmp_path / "data" / "mimic").mkdir(parents=True)
    (tmp_path / "images").mkdir()
    monkeypatch.setenv("UNIRG_DATA_DIR", str(tmp_path))
    data = resolve_data_paths(DataConfig(source="mimic_cxr", path="data/mimic", image_root="images"))
    assert data.path == str(tmp_path / "data" / "mimic") and data.image_root == str(tmp_path / "images")
    assert data.reports_path is None


def test_absolute_paths_and_synthetic_data_are_left_alone(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("UNIRG_DATA_DIR", str(tmp_path))
    absolute = DataConfig(source="manifest", path="/nowhere/manifest.jsonl")
    assert resolve_data_paths(absolute) == absolute
    assert resolve_data_paths(DataConfig()) == DataConfig()


def test_missing_relative_path_names_the_field_and_the_fix(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("UNIRG_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as error:
        resolve_data_paths(DataConfig(source="mimic_cxr", path="data/mimic-cxr"))
    assert "data.path" in str(error.value) and "UNIRG_DATA_DIR" in str(error.value)
    monkeypatch.setenv("UNIRG_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="data.reports_path"):
        resolve_data_paths(DataConfig(source="mimic_cxr", path=str(tmp_path), reports_path="reports"))
    monkeypatch.setenv("UNIRG_DATA_DIR", str(tmp_path / "absent"))
    with pytest.raises(DataError, match="not a folder"):
        resolve_data_paths(DataConfig(source="mimic_cxr", path="data/mimic-cxr"))


def test_run_folder_of_a_submitted_job_is_absolute_or_refused(tmp_path) -> None:
    recipe = demo()
    assert job_run_dir(recipe, None, str(tmp_path)) == tmp_path / "runs" / "demo"
    assert job_run_dir(recipe, "/shared/run", None) == Path("/shared/run")
    with pytest.raises(RecipeError, match="output.dir .*UNIRG_DATA_DIR"):
        job_run_dir(recipe, None, None)
