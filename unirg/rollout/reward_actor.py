"""Run a heavy reward plugin in its own Ray actor: batched calls, a timeout, failures become missing rewards.

`RayReward(reward_func, cluster)` is itself a TRL reward callable `(completions, **kwargs) -> list[float | None]`
with the wrapped function's `__name__`, so it drops into `GRPOTrainer(reward_funcs=[...])` unchanged:

- the completions are sent in batches of `cluster.reward_batch_size` to an actor holding the plugin (with
  `cluster.reward_cpus_per_worker` / `reward_gpus_per_worker`), so a model-based metric loads once, away
  from the trainer;
- a batch that raises, times out (`cluster.reward_timeout_s`) or loses its actor gets `None` for each of
  its samples (TRL leaves those samples out of the reward) and is counted and logged; a dead or stuck actor
  is replaced before the next batch;
- `cluster.reward_max_consecutive_failures` failed calls in a row stop the run with a `RewardError` that
  names the plugin;
- with a `run_key`, the actor is a named one that every trainer rank of the run finds and shares, so a
  model-based metric is loaded once per run, not once per rank.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from unirg.errors import RewardError
from unirg.rollout.config import ClusterConfig

logger = logging.getLogger(__name__)

# Ray namespace of the shared reward actors, so their names never clash with a user's own actors.
_NAMESPACE = "unirg"
# Reward keyword arguments that live in the trainer process only (TRL 1.16 GRPOTrainer._calculate_rewards).
_TRAINER_ONLY = {"log_metric", "log_extra", "environments"}


class RewardHost:
    """Body of the reward actor: holds the plugin and scores one batch per call."""

    def __init__(self, reward_func: Callable[..., list[float | None]]) -> None:
        self.reward_func = reward_func

    def score(self, completions: list[Any], kwargs: dict[str, list[Any]]) -> list[float | None]:
        """Call the plugin on one batch and check it returned one value per completion."""
        values = list(self.reward_func(completions, **kwargs))
        if len(values) != len(completions):
            raise ValueError(f"returned {len(values)} rewards for {len(completions)} completions")
        return [None if v is None else float(v) for v in values]


class RayReward:
    """A TRL reward callable that forwards to a reward plugin living in a Ray actor (see the module docstring)."""

    def __init__(self, reward_func: Callable[..., list[float | None]], cluster: ClusterConfig,
                 name: str | None = None, shared_name: str | None = None) -> None:
        self.reward_func = reward_func
        self.shared_name = shared_name
        self.cluster = cluster
        self.__name__ = name or getattr(reward_func, "__name__", type(reward_func).__name__)
        self.calls = 0
        self.failed_calls = 0  # calls in which every batch failed
        self.failed_samples = 0
        self.consecutive_failures = 0
        self._actor = None

    def _host(self):
        import ray

        from unirg.orchestration import ensure_ray, reward_actor_options

        if self._actor is None:
            ensure_ray(self.cluster)
            options = dict(max_restarts=0, **reward_actor_options(self.cluster))
            if self.shared_name:
                # The first rank to get here creates it; the others (and this rank after a replacement)
                # attach to the same actor.
                options.update(name=self.shared_name, namespace=_NAMESPACE, get_if_exists=True)
            self._actor = ray.remote(RewardHost).options(**options).remote(self.reward_func)
        return self._actor

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        """Score `completions` batch by batch; a failed batch yields None for its samples."""
        import ray

        size = self.cluster.reward_batch_size
        columns = {key: value for key, value in kwargs.items() if _is_per_sample(value, len(completions))}
        # TRL's log_metric/log_extra are bound to the trainer and cannot be pickled into the actor.
        shared = {key: value for key, value in kwargs.items() if key not in columns and key not in _TRAINER_ONLY}
        host = self._host()
        refs = []
        for start in range(0, len(completions), size):
            batch_kwargs = {key: list(value[start:start + size]) for key, value in columns.items()}
            batch_kwargs.update(shared)
            refs.append((start, host.score.remote(list(completions[start:start + size]), batch_kwargs)))
        rewards: list[float | None] = [None] * len(completions)
        deadline = time.monotonic() + self.cluster.reward_timeout_s
        last_error: BaseException | None = None
        scored_batches = 0
        for start, ref in refs:
            count = min(size, len(completions) - start)
            try:
                values = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
            except Exception as error:  # noqa: BLE001 - every failure is handled the same way, below
                last_error = error
                self._batch_failed(count, error)
                continue
            rewards[start:start + count] = values
            scored_batches += 1
        self.calls += 1
        if scored_batches == 0 and last_error is not None:
            self.failed_calls += 1
            self.consecutive_failures += 1
            if self.consecutive_failures >= self.cluster.reward_max_consecutive_failures:
                raise RewardError(
                    f"reward plugin '{self.__name__}' failed {self.consecutive_failures} calls in a row "
                    f"(cluster.reward_max_consecutive_failures={self.cluster.reward_max_consecutive_failures}); "
                    f"last error: {_reason(last_error, self.cluster.reward_timeout_s)}. Fix the plugin or remove "
                    "it from the recipe's rewards.")
        else:
            self.consecutive_failures = 0
        return rewards

    def _batch_failed(self, count: int, error: BaseException) -> None:
        import ray

        self.failed_samples += count
        logger.warning("reward %s: a batch of %d failed (%s); those samples get no reward (%d samples so far)",
                       self.__name__, count, _reason(error, self.cluster.reward_timeout_s), self.failed_samples)
        if isinstance(error, (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError)):
            # A stuck or dead actor would fail every later batch too: start a fresh one on the next call.
            if self._actor is not None:
                ray.kill(self._actor, no_restart=True)
            self._actor = None

    def stats(self) -> dict[str, int]:
        """Calls, failed calls and samples left without a reward so far."""
        return {"calls": self.calls, "failed_calls": self.failed_calls, "failed_samples": self.failed_samples}


def shared_actor_name(run_key: str, reward_name: str) -> str:
    """Name of the reward actor every rank of one run shares (Ray actor names are cluster-wide)."""
    digest = hashlib.sha256(run_key.encode()).hexdigest()[:12]
    return f"unirg-reward-{digest}-{reward_name}"


def wrap_ray_rewards(reward_funcs: list[Callable[..., Any]], cluster: ClusterConfig,
                     run_key: str | None = None) -> list[Callable[..., Any]]:
    """Replace the plugins named in `cluster.ray_rewards` by `RayReward` wrappers; keep the others as they are.

    `run_key` (the run folder) makes each wrapped plugin's actor shared by every rank of that run.
    """
    names = {getattr(f, "__name__", type(f).__name__) for f in reward_funcs}
    unknown = sorted(set(cluster.ray_rewards) - names)
    if unknown:
        raise RewardError(f"cluster.ray_rewards names {unknown}, which are not among the recipe's rewards "
                          f"{sorted(names)}")
    wrapped = []
    for f in reward_funcs:
        name = getattr(f, "__name__", type(f).__name__)
        if name not in cluster.ray_rewards:
            wrapped.append(f)
            continue
        wrapped.append(RayReward(f, cluster, shared_name=shared_actor_name(run_key, name) if run_key else None))
    return wrapped


def _is_per_sample(value: Any, count: int) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == count


def _reason(error: BaseException, timeout_s: float) -> str:
    import ray

    if isinstance(error, ray.exceptions.GetTimeoutError):
        return f"no answer within cluster.reward_timeout_s={timeout_s:.0f} s"
    if isinstance(error, ray.exceptions.RayTaskError):
        cause = error.cause if getattr(error, "cause", None) is not None else error
        return f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1][:300] if str(cause).strip() else ''}"
    return f"{type(error).__name__}: {str(error).strip()[:300]}"
