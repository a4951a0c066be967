"""The GPU-only rollout code against the installed vLLM's signatures: every module imports, every vLLM name it
imports exists, and every call it makes into vLLM binds (positional count and keyword names).

The calls are read from the source with `ast`, so a keyword added to the code that vLLM does not accept fails
here without a GPU. Covered: calls to names imported from `vllm…`, methods of `vllm.LLM` called as
`self.llm.<method>`, of its engine as `self.llm.llm_engine.<method>`, and worker methods reached through
`collective_rpc("<method>", kwargs={...})`. The payloads built as dicts (engine arguments, sampling parameters,
weight-transfer init and update info) are constructed with vLLM's own classes.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest

vllm = pytest.importorskip("vllm")

REPO = Path(__file__).resolve().parents[2]
# Every module the vllm_ray backend runs on GPU, and the gpu-check row.
GPU_MODULES = ["unirg.rollout.generation", "unirg.rollout.worker", "unirg.rollout.weight_transfer",
               "unirg.rollout.sync_check", "unirg.rollout.vllm_compat"]
# Worker methods that hand their arguments on: check the keywords against where they land.
FORWARDED = {"reload_weights": ("vllm.v1.worker.gpu_model_runner", "GPUModelRunner", "reload_weights")}


def _vllm_targets() -> dict[str, Any]:
    from vllm import LLM
    from vllm.v1.engine.llm_engine import LLMEngine
    from vllm.v1.worker.gpu_worker import Worker

    return {"llm": LLM, "engine": LLMEngine, "worker": Worker}


def _bind(target: Any, positional: int, keywords: list[str], *, unbound_method: bool) -> str | None:
    """None when `target` accepts `positional` arguments and `keywords`, else why not."""
    signature = inspect.signature(target)
    placeholders = [object()] * (positional + (1 if unbound_method else 0))
    try:
        signature.bind_partial(*placeholders, **dict.fromkeys(keywords, object()))
    except TypeError as error:
        return f"{getattr(target, '__qualname__', target)}{signature}: {error}"
    return None


def _attribute_chain(node: ast.AST) -> list[str]:
    """`self.llm.llm_engine.reset` → ['self', 'llm', 'llm_engine', 'reset'] (empty when not a plain chain)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return []


def _is_unbound_method(owner: type, name: str) -> bool:
    return not isinstance(inspect.getattr_static(owner, name), (staticmethod, classmethod))


def check_source(source: str, where: str) -> list[str]:
    """Problems with the vLLM calls in `source`: missing names, calls that do not bind."""
    tree = ast.parse(source)
    targets = _vllm_targets()
    problems: list[str] = []
    imported: dict[str, Any] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vllm":
            for alias in node.names:
                try:
                    imported[alias.asname or alias.name] = getattr(importlib.import_module(node.module), alias.name)
                except (ImportError, AttributeError) as error:
                    problems.append(f"{where}:{node.lineno}: from {node.module} import {alias.name}: {error}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        positional = sum(1 for arg in node.args if not isinstance(arg, ast.Starred))
        keywords = [kw.arg for kw in node.keywords if kw.arg is not None]
        chain = _attribute_chain(node.func)
        target, unbound, owner = None, False, None
        if len(chain) == 1 and chain[0] in imported:
            target = imported[chain[0]]
        elif len(chain) == 2 and chain[0] in imported and inspect.isclass(imported[chain[0]]):
            owner = imported[chain[0]]
        elif chain[:2] == ["self", "llm"] and len(chain) == 3:
            owner = targets["llm"]
        elif chain[:3] == ["self", "llm", "llm_engine"] and len(chain) == 4:
            owner = targets["engine"]
        if owner is not None:
            name = chain[-1]
            if not hasattr(owner, name):
                problems.append(f"{where}:{node.lineno}: {owner.__qualname__} has no attribute {name!r}")
                continue
            target, unbound = getattr(owner, name), _is_unbound_method(owner, name)
        if target is not None and callable(target):
            if problem := _bind(target, positional, keywords, unbound_method=unbound):
                problems.append(f"{where}:{node.lineno}: {problem}")
        if chain[-1:] == ["collective_rpc"] and node.args and isinstance(node.args[0], ast.Constant):
            problems += _check_rpc(node, where, targets["worker"])
    return problems


def _check_rpc(node: ast.Call, where: str, worker: type) -> list[str]:
    """`collective_rpc("method", args=(...), kwargs={...})`: the worker has the method and takes those arguments."""
    method = node.args[0].value
    if not hasattr(worker, method):
        return [f"{where}:{node.lineno}: vLLM's GPU worker has no method {method!r} for collective_rpc"]
    keywords: list[str] = []
    positional = 0
    for kw in node.keywords:
        if kw.arg == "kwargs" and isinstance(kw.value, ast.Dict):
            keywords = [key.value for key in kw.value.keys if isinstance(key, ast.Constant)]
        elif kw.arg == "args" and isinstance(kw.value, ast.Tuple):
            positional = len(kw.value.elts)
    if method in FORWARDED:
        module, cls, name = FORWARDED[method]
        owner = getattr(importlib.import_module(module), cls)
    else:
        owner, name = worker, method
    problem = _bind(getattr(owner, name), positional, keywords, unbound_method=True)
    return [f"{where}:{node.lineno}: collective_rpc({method!r}): {problem}"] if problem else []


@pytest.mark.parametrize("module", GPU_MODULES)
def test_gpu_module_imports_and_its_vllm_calls_bind(module: str) -> None:
    imported = importlib.import_module(module)
    path = Path(imported.__file__)
    problems = check_source(path.read_text(), str(path.relative_to(REPO)))
    assert not problems, "\n".join(problems)


def test_the_checker_finds_calls_vllm_would_refuse() -> None:
    """Negative control: each line passes a keyword or method the installed vLLM does not have."""
    source = '''
from vllm.distributed.weight_transfer.nccl_common import trainer_init
from vllm.distributed.weight_transfer.packed_tensor import packed_nccl_broadcast_producer
trainer_init({}, rnak=0)
packed_nccl_broadcast_producer(iterator=[], group=None, src=0, post_iter_func=None, buffer_bytes=1)
self.llm.update_weights({}, version=3)
self.llm.shutdown_weight_transfer()
self.llm.llm_engine.reset_encoder_cache(everything=True)
self.llm.collective_rpc("reload_weights", kwargs={"weights_iter": []})
self.llm.collective_rpc("no_such_worker_method")
'''
    problems = check_source(source, "snippet")
    assert [problem.split(":")[1] for problem in problems] == ["4", "5", "6", "7", "8", "9", "10"], problems


def test_engine_arguments_are_engine_args_fields(tmp_path) -> None:
    from vllm.engine.arg_utils import EngineArgs

    from unirg.rollout.config import ClusterConfig, RolloutConfig
    from unirg.rollout.generation import engine_kwargs

    rollout = RolloutConfig(backend="vllm_ray", max_model_len=512)
    for cluster in (ClusterConfig(), ClusterConfig(rollout_gpus_per_worker=1), ClusterConfig(rollout_gpus_per_worker=2)):
        kwargs = engine_kwargs(rollout, cluster, max_num_seqs=8)
        # A dataclass: an unknown field raises TypeError. A local folder: offline, vLLM resolves hub ids.
        EngineArgs(model=str(tmp_path), **kwargs, seed=0)
        assert _bind(vllm.LLM, 0, ["model", *kwargs, "seed"], unbound_method=False) is None


def test_sampling_parameters_construct_vllm_sampling_params() -> None:
    from vllm import SamplingParams

    from unirg.rollout.worker import with_placeholders_blocked

    generation = type("G", (), {})()
    from unirg.rollout.generation import RayVLLMGeneration

    for name, value in dict(repetition_penalty=1.0, temperature=1.0, top_p=1.0, top_k=0, min_p=None,
                            max_completion_length=16, logprobs=0, generation_kwargs={"seed": 1},
                            _blocked_tokens=[5, 6]).items():
        setattr(generation, name, value)
    params = RayVLLMGeneration.sampling_params(generation, 4)
    assert params["logit_bias"] == {5: -100.0, 6: -100.0}
    SamplingParams(**params)
    SamplingParams(**with_placeholders_blocked({"n": 1, "temperature": 0.0, "max_tokens": 4, "logprobs": 0}, [5]))


def test_weight_transfer_payloads_construct_vllm_info_classes() -> None:
    from vllm.config.weight_transfer import WeightTransferConfig
    from vllm.distributed.weight_transfer.nccl_engine import (
        NCCLWeightTransferInitInfo,
        NCCLWeightTransferUpdateInfo,
    )

    from unirg.rollout.weight_transfer import (
        nccl_worker_init_info,
        require_nccl_weight_transfer,
        transfer_layout,
        update_info,
    )

    require_nccl_weight_transfer()  # the installed vLLM has the API the NCCL path calls
    layout = transfer_layout(2, 2)
    infos = [NCCLWeightTransferInitInfo(**nccl_worker_init_info("10.0.0.1", 29000, layout, i)) for i in range(2)]
    assert [info.rank_offset for info in infos] == [1, 3] and {info.world_size for info in infos} == {5}
    assert all(info.packed for info in infos)
    NCCLWeightTransferUpdateInfo(**update_info([("a", "bfloat16", [2, 3]), ("b", "float32", [4])]))
    WeightTransferConfig(backend="nccl")
    # LLM.init_weight_transfer_engine / update_weights take the {"init_info"|"update_info": ...} dicts we send.
    for method in ("init_weight_transfer_engine", "update_weights"):
        annotation = str(inspect.signature(getattr(vllm.LLM, method)).parameters["request"].annotation)
        assert "dict" in annotation, f"LLM.{method} no longer takes a dict request: {annotation}"


def test_gpu_check_row_is_skipped_without_gpus(tmp_path) -> None:
    import torch

    from unirg.rollout.sync_check import nccl_sync_check

    if torch.cuda.is_available() and torch.cuda.device_count() >= 2:
        pytest.skip("GPUs present: the row would run for real (make gpu-check)")
    row = nccl_sync_check(tmp_path)
    assert row["ok"] is None and "needs 2+ GPUs" in row["skipped"]


def test_qwen2_vl_registry_hook_exists() -> None:
    """vllm_compat rewrites the registry's inspection subprocess command; the attribute must still exist."""
    from vllm.model_executor.models import registry

    assert isinstance(registry._SUBPROCESS_COMMAND, list)
