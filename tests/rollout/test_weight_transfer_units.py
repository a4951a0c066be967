"""Collective weight sync without a cluster: rank layout, rendezvous address, group re-initialisation after a
restart, gather on every trainer rank, stale engines in generation, image token id, and GPU-only settings."""

from __future__ import annotations

import itertools
import json
import socket
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from unirg.errors import UnirgError
from unirg.rollout.config import ClusterConfig, RolloutConfig
from unirg.rollout.generation import (
    RayVLLMGeneration,
    RolloutPool,
    WeightsOutdated,
    engine_kwargs,
    engine_tensor_parallel_size,
    has_tied_head,
    weight_sync_mode,
)
from unirg.rollout.weight_transfer import (
    ENDPOINTS,
    CollectiveWeightSync,
    GroupState,
    WeightSyncError,
    checked,
    choose_rendezvous_host,
    free_port,
    tensor_meta,
    transfer_layout,
    update_info,
)
from unirg.rollout.worker import (
    CPU_ENGINE_ENV,
    engine_env,
    image_token_id_for,
    image_token_id_of,
    vllm_prompt,
)

# --- rank layout ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("engines", "tp"), list(itertools.product([1, 2, 3, 8], [1, 2, 4])))
def test_every_engine_rank_is_unique_and_the_ranks_are_contiguous(engines: int, tp: int) -> None:
    layout = transfer_layout(engines, tp)
    ranks = [rank for index in range(engines) for rank in layout.engine_ranks(index)]
    assert layout.world_size == 1 + engines * tp
    assert sorted(ranks) == list(range(1, layout.world_size))  # trainer 0, then each rank exactly once
    assert layout.rank_offsets == tuple(1 + index * tp for index in range(engines))


def test_layout_refuses_an_empty_pool() -> None:
    with pytest.raises(ValueError, match="at least one engine"):
        transfer_layout(0, 1)


@pytest.mark.parametrize(("engines", "tp"), [(3, 1), (2, 2)])
def test_vllm_ranks_each_worker_of_our_init_info_uniquely(monkeypatch, engines: int, tp: int) -> None:
    """vLLM's own worker-side rank arithmetic (dp_index * TP + tp_rank + rank_offset) on the init info we send."""
    pytest.importorskip("vllm")
    from vllm.distributed.weight_transfer import nccl_common

    from unirg.rollout.weight_transfer import nccl_worker_init_info

    joined: list[tuple[int, int]] = []
    monkeypatch.setattr(nccl_common, "stateless_init_process_group",
                        lambda host, port, rank, world_size, device: joined.append((rank, world_size)))
    monkeypatch.setattr(torch.accelerator, "current_device_index", lambda: 0)  # no GPU here
    layout = transfer_layout(engines, tp)
    for index in range(engines):
        info = nccl_common.NCCLWeightTransferInitInfo(**nccl_worker_init_info("10.0.0.1", 1234, layout, index))
        for tp_rank in range(tp):  # each engine is standalone: data_parallel_index 0
            parallel = SimpleNamespace(data_parallel_index=0, world_size=tp, rank=tp_rank)
            nccl_common.worker_init_process_group(info, parallel)
    assert sorted(rank for rank, _ in joined) == list(range(1, 1 + engines * tp))
    assert {world for _, world in joined} == {1 + engines * tp}


def test_vllm_trainer_init_gives_every_engine_rank_one() -> None:
    """Why the pool does not call NCCLTrainerWeightTransferEngine.trainer_init: it hard-codes rank_offset=1."""
    pytest.importorskip("vllm")
    import inspect

    from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerWeightTransferEngine

    assert "rank_offset=1" in inspect.getsource(NCCLTrainerWeightTransferEngine.trainer_init)


# --- rendezvous ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("trainer", "engines", "expected"), [
    ("10.0.0.5", ["10.0.0.6", "10.0.0.7"], "10.0.0.5"),  # engines on other nodes dial the trainer's node
    ("10.0.0.5", ["10.0.0.5"], "10.0.0.5"),  # same node: still the routable address
    ("127.0.0.1", ["127.0.0.1", "127.0.0.1"], "127.0.0.1"),  # a one-machine (loopback) Ray instance
    ("fd00::2", ["fd00::3"], "fd00::2"),
])
def test_rendezvous_is_the_trainer_node_address(trainer: str, engines: list[str], expected: str) -> None:
    assert choose_rendezvous_host(trainer, engines) == expected


@pytest.mark.parametrize("trainer", ["127.0.0.1", "localhost", "::1"])
def test_loopback_rendezvous_with_an_engine_on_another_node_is_refused(trainer: str) -> None:
    with pytest.raises(WeightSyncError, match="10.0.0.7.*node-ip-address"):
        choose_rendezvous_host(trainer, ["10.0.0.7"])


def test_free_port_can_be_bound() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as server:
        server.bind(("", port))


# --- group life cycle ----------------------------------------------------------------------------------------


def test_group_state_rebuilds_after_a_restart_and_keeps_the_restarted_engine_out_until_synced() -> None:
    state = GroupState()
    assert state.needs_rebuild()  # no group yet
    state.group_built()
    state.weights_sent(1)
    assert not state.needs_rebuild() and state.fresh(2) == [0, 1]

    state.engine_replaced(1, has_latest=False)  # collective sync: the new process has the initial weights
    assert state.needs_rebuild() and state.stale == {1} and state.fresh(2) == [0]
    state.group_built()
    state.weights_sent(2)
    assert not state.needs_rebuild() and state.fresh(2) == [0, 1]


def test_group_state_restart_before_any_sync_or_with_disk_replay_is_not_stale() -> None:
    state = GroupState()
    state.engine_replaced(0, has_latest=False)  # initial weights are the latest ones
    assert state.stale == set()
    state.weights_sent(3)
    state.engine_replaced(0, has_latest=True)  # disk sync replayed the latest file
    assert state.stale == set() and state.generation == 2


def test_group_state_two_restarts_between_syncs_need_one_rebuild() -> None:
    state = GroupState()
    state.group_built()
    state.weights_sent(1)
    state.engine_replaced(0, has_latest=False)
    state.engine_replaced(1, has_latest=False)
    assert state.fresh(2) == []
    state.group_built()
    assert not state.needs_rebuild()
    state.group_broken()
    assert state.needs_rebuild()


def test_group_state_after_a_broadcast_that_missed_an_engine() -> None:
    state = GroupState(stale={0})
    state.weights_sent(4, missed=[1])  # engine 0 caught up, engine 1 did not
    assert state.weights_version == 4 and state.fresh(2) == [0]


# --- the trainer-side driver with fake engines ---------------------------------------------------------------


class Call:
    """An actor method: `.remote(...)` records the call and returns a ref the fake pool resolves."""

    def __init__(self, engine: FakeEngine, name: str) -> None:
        self.engine, self.name = engine, name

    def remote(self, *args: Any) -> tuple:
        self.engine.calls.append((self.name, args))
        return (self.engine, self.name, args)


class FakeEngine:
    def __init__(self, pid: int) -> None:
        self.pid, self.calls, self.dead = pid, [], False

    def __getattr__(self, name: str) -> Call:
        return Call(self, name)


class FakePool:
    """What CollectiveWeightSync uses of RolloutPool: workers, infos, state, rollout, _get and restart."""

    def __init__(self, engines: int) -> None:
        self.rollout = RolloutConfig(backend="vllm_ray", weight_sync="gloo", startup_timeout_s=5)
        self.workers = [FakeEngine(pid) for pid in range(engines)]
        self.infos = [{"node_ip": "127.0.0.1"} for _ in range(engines)]
        self.state = GroupState()
        self.restarted: list[int] = []
        self.pids = itertools.count(100)

    def _get(self, ref: tuple, deadline: float, index: int, limit: str = "") -> dict | str:
        engine, name, _ = ref
        return "actor died: killed" if engine.dead else {"method": name}

    def restart(self, index: int, reason: str) -> None:
        self.restarted.append(index)
        self.workers[index] = FakeEngine(next(self.pids))
        self.state.engine_replaced(index, has_latest=False)


class FakeEndpoint:
    opened: list[tuple] = []

    def __init__(self, host: str, port: int, layout, timeout_s: float) -> None:
        FakeEndpoint.opened.append((host, port, layout.world_size, layout.rank_offsets))
        self.sent: list[str] = []
        self.fail_after: int | None = None

    def broadcast(self, pairs) -> None:
        for name, _ in pairs:
            self.sent.append(name)

    def close(self) -> None:
        pass


@pytest.fixture
def fake_transport(monkeypatch):
    FakeEndpoint.opened = []
    monkeypatch.setitem(ENDPOINTS, "gloo", FakeEndpoint)
    monkeypatch.setattr("unirg.rollout.weight_transfer.trainer_node_ip", lambda: "127.0.0.1")


def weights(count: int = 3) -> list[tuple[str, torch.Tensor]]:
    return [(f"w{i}", torch.full((2, i + 1), float(i))) for i in range(count)]


def test_sync_builds_the_group_once_then_rebuilds_on_every_member_after_a_restart(fake_transport) -> None:
    pool = FakePool(engines=2)
    sync = CollectiveWeightSync(pool, "gloo")
    metadata = [tensor_meta(n, t) for n, t in weights()]
    sync.send(iter(weights()), metadata, version=1)
    sync.send(iter(weights()), metadata, version=2)
    assert len(FakeEndpoint.opened) == 1  # the second sync reuses the group
    assert FakeEndpoint.opened[0][2:] == (3, (1, 2))
    joins = [call for engine in pool.workers for call in engine.calls if call[0] == "join_weight_group"]
    assert [args[1]["rank"] for _, args in joins] == [1, 2]

    pool.restart(1, "killed")
    assert pool.state.fresh(2) == [0]
    sync.send(iter(weights()), metadata, version=3)
    assert len(FakeEndpoint.opened) == 2 and FakeEndpoint.opened[1][2:] == (3, (1, 2))
    # Every member joined the new group: the survivor and the restarted engine.
    for engine in pool.workers:
        assert [args[1]["master_port"] for name, args in engine.calls if name == "join_weight_group"][-1] == \
            FakeEndpoint.opened[1][1]
    assert pool.state.fresh(2) == [0, 1] and pool.state.weights_version == 3
    assert [r["generation"] for r in sync.rebuilds] == [0, 1]


def test_an_engine_dead_at_rendezvous_is_restarted_and_the_group_built_again(fake_transport) -> None:
    pool = FakePool(engines=2)
    pool.workers[0].dead = True
    sync = CollectiveWeightSync(pool, "gloo")
    sync.send(iter(weights()), [tensor_meta(n, t) for n, t in weights()], version=1)
    assert pool.restarted == [0]
    assert len(FakeEndpoint.opened) == 2  # the first attempt, then the group with the replacement
    assert len(sync.rebuilds) == 1 and pool.state.fresh(2) == [0, 1]


def test_an_engine_dying_during_the_broadcast_comes_back_stale_and_forces_a_rebuild(fake_transport) -> None:
    pool = FakePool(engines=2)
    sync = CollectiveWeightSync(pool, "gloo")
    metadata = [tensor_meta(n, t) for n, t in weights()]
    sync.send(iter(weights()), metadata, version=1)
    pool.workers[1].dead = True  # its receive_weights call will report a dead actor
    reports = sync.send(iter(weights()), metadata, version=2)
    assert reports[1] == {"restarted": True} and pool.restarted == [1]
    assert pool.state.needs_rebuild() and pool.state.fresh(2) == [0]


def test_every_tensor_is_consumed_even_when_the_broadcast_fails(fake_transport, monkeypatch) -> None:
    """Other trainer ranks wait in the gather of each parameter: rank 0 must walk to the end whatever happens."""
    pool = FakePool(engines=1)
    sync = CollectiveWeightSync(pool, "gloo")
    walked: list[str] = []

    def walk():
        for name, tensor in weights(4):
            walked.append(name)
            yield name, tensor

    def broken(self, pairs) -> None:
        next(pairs)
        raise RuntimeError("Connection closed by peer")

    monkeypatch.setattr(FakeEndpoint, "broadcast", broken)
    sync.send(walk(), [tensor_meta(n, t) for n, t in weights(4)], version=1)
    assert walked == ["w0", "w1", "w2", "w3"]
    assert pool.state.stale == {0} and pool.state.needs_rebuild()


def test_metadata_mismatch_is_an_error_naming_the_tensor() -> None:
    metadata = [tensor_meta("a", torch.zeros(2)), tensor_meta("b", torch.zeros(3))]
    with pytest.raises(WeightSyncError, match="'b'"):
        list(checked([("a", torch.zeros(2)), ("b", torch.zeros(4))], metadata))
    with pytest.raises(WeightSyncError, match="announced 2"):
        list(checked([("a", torch.zeros(2))], metadata))
    assert update_info(metadata) == {"names": ["a", "b"], "dtype_names": ["float32", "float32"],
                                     "shapes": [[2], [3]]}


def test_gloo_cannot_serve_tensor_parallel_engines() -> None:
    with pytest.raises(WeightSyncError, match="tensor_parallel_size"):
        CollectiveWeightSync(FakePool(1), "gloo", ranks_per_engine=2)


# --- gather on every rank ------------------------------------------------------------------------------------


class Tied(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(10, 4)
        self.lm_head = torch.nn.Linear(4, 10, bias=False)
        self.lm_head.weight = self.embed_tokens.weight

    def get_input_embeddings(self):
        return self.embed_tokens

    def get_output_embeddings(self):
        return self.lm_head


class RecordingSync:
    def __init__(self) -> None:
        self.sent: list[tuple[list[str], int]] = []

    def send(self, pairs, metadata, version):
        self.sent.append(([name for name, _ in checked(pairs, metadata)], version))
        return []


def generation_on_rank(rank: int, gathers: list[int]) -> RayVLLMGeneration:
    """A RayVLLMGeneration as rank `rank` of 2 sees it, with a parameter walk that counts its gathers."""
    model = Tied()
    generation = object.__new__(RayVLLMGeneration)
    generation.rollout = RolloutConfig(backend="vllm_ray", weight_sync="gloo")
    generation.cluster = ClusterConfig()
    generation.accelerator = SimpleNamespace(is_main_process=rank == 0, process_index=rank,
                                             wait_for_everyone=lambda: None)
    generation.collective = RecordingSync() if rank == 0 else None
    generation._tied_head = has_tied_head(model)
    generation._weight_metadata = None
    generation.weights_version = 0
    generation.sync_seconds = []

    def walk():  # stands in for TRL's _iter_named_params, whose every step is a collective gather
        for name, param in model.named_parameters():
            gathers.append(rank)
            yield name, param.data

    generation._iter_named_params = walk
    return generation


def test_every_rank_takes_part_in_the_gather_and_only_rank_zero_sends() -> None:
    gathers: list[int] = []
    main, other = generation_on_rank(0, gathers), generation_on_rank(1, gathers)
    for _ in range(2):
        main.sync_weights()
        other.sync_weights()
    # One walk for the metadata, then one per sync, on both ranks: the gathers pair up.
    assert gathers.count(0) == gathers.count(1) == 3
    assert main.collective.sent == [(["embed_tokens.weight", "lm_head.weight"], 1),
                                    (["embed_tokens.weight", "lm_head.weight"], 2)]
    assert other.collective is None and other.weights_version == 2


def test_generation_resyncs_on_every_rank_when_no_engine_has_the_latest_weights(monkeypatch) -> None:
    from accelerate import PartialState

    PartialState()  # one process: gather and broadcast hand objects through
    generation = generation_on_rank(0, [])
    calls = {"generate": 0}

    class Pool:
        def generate(self, requests, sampling):
            calls["generate"] += 1
            if calls["generate"] == 1:
                raise WeightsOutdated("every engine restarted")
            return [{"prompt_ids": r["prompt_ids"], "completions": [
                {"token_ids": [7], "logprobs": [[-0.5]], "logprob_token_ids": [[7]]}]} for r in requests]

    generation.pool = Pool()
    monkeypatch.setattr(generation, "sampling_params", lambda n: {"n": n}, raising=False)
    prompt_ids, completion_ids, logprobs, _ = generation.generate([[1, 2], [3]], None, num_generations=1)
    assert calls["generate"] == 2 and len(generation.collective.sent) == 1  # one resync in between
    assert prompt_ids == [[1, 2], [3]] and completion_ids == [[7], [7]] and logprobs == [[[-0.5]], [[-0.5]]]


def test_a_pool_failure_on_the_main_process_is_raised_there(monkeypatch) -> None:
    from accelerate import PartialState

    from unirg.rollout.generation import RolloutWorkerError

    PartialState()
    generation = generation_on_rank(0, [])

    class Pool:
        def generate(self, requests, sampling):
            raise RolloutWorkerError("rollout worker 0 failed and the run already used its restarts")

    generation.pool = Pool()
    monkeypatch.setattr(generation, "sampling_params", lambda n: {"n": n}, raising=False)
    with pytest.raises(RolloutWorkerError, match="already used its restarts"):
        generation.generate([[1]], None, num_generations=1)


def test_has_tied_head_uses_identity_not_empty_shard_pointers() -> None:
    assert has_tied_head(Tied())
    untied = Tied()
    untied.lm_head.weight = torch.nn.Parameter(torch.empty(0))
    untied.embed_tokens.weight = torch.nn.Parameter(torch.empty(0))  # ZeRO-3 leaves empty placeholders
    assert not has_tied_head(untied)


# --- the pool's generation with stale engines ----------------------------------------------------------------


def pool_of(engines: int, results: dict[int, Any]) -> RolloutPool:
    """A RolloutPool with fake workers: `results[pid]` is what worker pid answers (str: it died)."""
    pool = object.__new__(RolloutPool)
    pool.rollout = RolloutConfig(backend="vllm_ray", weight_sync="gloo", generate_timeout_s=5)
    pool.cluster = ClusterConfig()
    pool.state = GroupState()
    pool.workers = [FakeEngine(pid) for pid in range(engines)]
    pool.restarts = 0
    pids = itertools.count(100)

    def get(ref, deadline, index, limit=""):
        engine, _, args = ref
        answer = results.get(engine.pid, "ok")
        return answer if answer != "ok" else [{"served_by": engine.pid, "prompt": request} for request in args[0]]

    def restart(index, reason):
        pool.restarts += 1
        pool.workers[index] = FakeEngine(next(pids))
        pool.state.engine_replaced(index, has_latest=False)

    pool._get, pool.restart = get, restart
    return pool


def test_a_chunk_of_a_dead_engine_goes_to_an_engine_with_the_latest_weights() -> None:
    pool = pool_of(2, {0: "actor died"})
    pool.state.weights_sent(1)
    rows = pool.generate([1, 2, 3, 4], {})
    assert [row["prompt"] for row in rows] == [1, 2, 3, 4]  # order kept
    assert {row["served_by"] for row in rows} == {1}  # the restarted engine (pid 100) got nothing
    assert pool.restarts == 1 and pool.state.stale == {0}
    assert {row["served_by"] for row in pool.generate([5, 6], {})} == {1}  # still excluded until a sync


def test_generation_refuses_when_every_engine_is_stale() -> None:
    pool = pool_of(1, {0: "actor died"})
    pool.state.weights_sent(1)
    with pytest.raises(WeightsOutdated, match="Sync the weights again"):
        pool.generate([1, 2], {})


# --- configuration: GPU-only settings ------------------------------------------------------------------------


def test_gpu_workers_get_no_cpu_engine_variables() -> None:
    assert engine_env(gpus_per_worker=1, cpu_kv_cache_gib=4) == {}
    assert engine_env(gpus_per_worker=0.5, cpu_kv_cache_gib=4) == {}
    cpu = engine_env(gpus_per_worker=0, cpu_kv_cache_gib=4)
    assert CPU_ENGINE_ENV.items() <= cpu.items() and cpu["VLLM_CPU_KVCACHE_SPACE"] == "4"


def test_weight_sync_mode_and_tensor_parallel_size() -> None:
    assert weight_sync_mode(RolloutConfig(), ClusterConfig()) == "disk"
    assert weight_sync_mode(RolloutConfig(), ClusterConfig(rollout_gpus_per_worker=1)) == "nccl"
    assert weight_sync_mode(RolloutConfig(weight_sync="gloo"), ClusterConfig()) == "gloo"
    with pytest.raises(UnirgError, match="rollout_gpus_per_worker > 0"):
        weight_sync_mode(RolloutConfig(weight_sync="nccl"), ClusterConfig())
    assert engine_tensor_parallel_size(ClusterConfig(rollout_gpus_per_worker=0.5)) == 1
    assert engine_tensor_parallel_size(ClusterConfig(rollout_gpus_per_worker=4)) == 4
    with pytest.raises(UnirgError, match="whole number"):
        engine_tensor_parallel_size(ClusterConfig(rollout_gpus_per_worker=1.5))
    tp = engine_kwargs(RolloutConfig(backend="vllm_ray"), ClusterConfig(rollout_gpus_per_worker=2))
    assert tp["tensor_parallel_size"] == 2 and tp["weight_transfer_config"] == {"backend": "nccl"}
    assert "tensor_parallel_size" not in engine_kwargs(RolloutConfig(backend="vllm_ray"), ClusterConfig())


# --- image token id from the processor -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Any:
    from unirg.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_image_token_id_comes_from_the_processor_not_the_config_file(tiny_model) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model)
    expected = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert image_token_id_of(processor) == expected
    assert image_token_id_of(processor.tokenizer) is None or image_token_id_of(processor.tokenizer) == expected
    # A config without the field (as a hub id gives the worker no local config at all) changes nothing.
    config_path = tiny_model / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("image_token_id", None)
    config_path.write_text(json.dumps(config))
    assert image_token_id_for(str(tiny_model)) == expected


def test_prompt_for_vllm_collapses_image_pads_with_the_given_id() -> None:
    request = {"prompt_ids": [1, 9, 9, 9, 2], "images": ["image"]}
    assert vllm_prompt(request, 9) == {"prompt_token_ids": [1, 9, 2], "multi_modal_data": {"image": "image"}}
    assert vllm_prompt({"prompt_ids": [1, 9, 9]}, None) == {"prompt_token_ids": [1, 9, 9]}  # text only
    with pytest.raises(ValueError, match="image token id"):
        vllm_prompt(request, None)
