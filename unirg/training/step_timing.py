"""Where a GRPO step's wall time goes: generation, each reward, log-prob passes, training, weight sync, the rest.

`install_step_timing(trainer)` wraps a few methods of one GRPOTrainer instance (TRL 1.16) and adds a
callback that puts, at each log, the mean over the logged steps of:

- `step_time`: wall time from the end of the previous optimizer step to the end of this one (the first
  step from its first batch fetch). It includes the data loading, generation and rewards of the step,
  and the logging and checkpointing of the previous one. This replaces TRL's own `step_time`, which
  times `training_step` only and misses the optimizer step and everything between micro-batches;
- `time/<part>`: seconds spent in each part (below), each counted exclusively: a part running inside
  another (weight sync inside generation) is subtracted from the outer one, so the parts never overlap;
- `time/other`: `step_time` minus the parts, i.e. unirg's own overhead (callbacks, reward adapters,
  wrappers) plus what TRL does between the parts (tokenising, advantages, gathers, logging).

Parts: `data` (fetching and decoding the batch), `generation` (`_generate`: HF generate or vLLM, with
decoding), `weight_sync` (vLLM backends), `reward/<name>` (inside each reward function),
`old_logprobs` and `ref_logprobs` (the no-grad forward passes of the scoring step), `train` (forward,
backward, gradient clipping, optimizer and scheduler step), `checkpoint` (saving and what runs on save,
e.g. checkpoint scoring) and `evaluation` (the Trainer's eval loop).

TRL generates once per `steps_per_generation` steps; the steps in between reuse the buffer and show
no generation, reward or log-prob time. Each rank times itself; rank 0's numbers reach metrics.jsonl.
Async reward functions run concurrently: each gets its share of their common wall time. A reward that
is an `nn.Module` (a reward model) is not wrapped; its time counts in `other`.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from transformers import TrainerCallback

from unirg.errors import UnirgError

STEP_TIME = "step_time"
PREFIX = "time/"
OTHER = "other"


class StepTimer(TrainerCallback):
    """Exclusive wall time per named part within each optimizer step; see the module docstring."""

    def __init__(self, synchronize: Callable[[], None] | None = None):
        # On CUDA, kernels run after the call that queues them returns: without a sync at each part's
        # boundaries, a part's time would show up in whichever later part first waits for the device.
        # Only there, and only at part boundaries (a few per step); on CPU nothing is synchronised.
        self._synchronize = synchronize
        # Open frames: [part or None (unattributed), started, seconds spent in nested frames, opaque].
        self._stack: list[list[Any]] = []
        self._parts: dict[str, float] = defaultdict(float)
        self._seen: dict[str, None] = {}  # parts met so far in the run, in order; each logged from then on
        self._step_started: float | None = None
        self._interval: dict[str, float] = defaultdict(float)
        self._interval_steps = 0
        self._async_calls: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()
        self.steps: list[dict[str, float]] = []  # every finished step's breakdown, for benchmarks and tests

    # Frames ----------------------------------------------------------------------------------------
    def enter(self, part: str | None, opaque: bool = False) -> bool:
        """Open a frame; returns False (nothing opened) inside an opaque frame, whose time is all its own."""
        if self._stack and self._stack[-1][3]:
            return False
        if self._synchronize is not None and part is not None:
            self._synchronize()
        self._stack.append([part, time.perf_counter(), 0.0, opaque])
        return True

    def exit(self) -> None:
        """Close the innermost frame, charging its exclusive time to its part and its whole time to its parent."""
        part, started, nested, _ = self._stack[-1]
        if self._synchronize is not None and part is not None:
            self._synchronize()
        self._stack.pop()
        elapsed = time.perf_counter() - started
        if part is not None:
            self._parts[part] += elapsed - nested
            self._seen.setdefault(part, None)
        if self._stack:
            self._stack[-1][2] += elapsed

    @contextmanager
    def part(self, name: str | None, opaque: bool = False) -> Iterator[None]:
        opened = self.enter(name, opaque)
        try:
            yield
        finally:
            if opened:
                self.exit()

    def record_async(self, name: str, started: float, ended: float) -> None:
        """An async reward call (run on TRL's event-loop thread, possibly beside others)."""
        with self._lock:
            self._async_calls.append((name, started, ended))

    def _fold_async(self) -> None:
        with self._lock:
            calls, self._async_calls = self._async_calls, []
        if not calls:
            return
        # Concurrent calls share their union of wall time in proportion to their own durations.
        union, reach = 0.0, float("-inf")
        for _, started, ended in sorted(calls, key=lambda c: c[1]):
            union += max(0.0, ended - max(started, reach))
            reach = max(reach, ended)
        total = sum(ended - started for _, started, ended in calls) or 1.0
        for name, started, ended in calls:
            self._parts[name] += (ended - started) * union / total
            self._seen.setdefault(name, None)

    # Step boundaries -------------------------------------------------------------------------------
    def start_step_if_idle(self) -> None:
        if self._step_started is None:
            self._step_started = time.perf_counter()
            self._parts.clear()

    def on_train_begin(self, args, state, control, **kwargs):
        self._stack.clear()
        self._parts.clear()
        self._step_started = None
        self._interval.clear()
        self._interval_steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        while self._stack:  # the optimizer frame opened after the last micro-batch
            self.exit()
        if self._synchronize is not None:
            self._synchronize()
        now = time.perf_counter()
        if self._step_started is None:
            return
        self._fold_async()
        step_time = now - self._step_started
        breakdown = {name: self._parts.get(name, 0.0) for name in self._seen}
        breakdown[OTHER] = step_time - sum(breakdown.values())
        self.steps.append({STEP_TIME: step_time, **breakdown})
        self._interval[STEP_TIME] += step_time
        for name, seconds in breakdown.items():
            self._interval[name] += seconds
        self._interval_steps += 1
        self._parts.clear()
        self._step_started = now

    def on_log(self, args, state, control, logs=None, **kwargs):
        # Placed first among the callbacks: the keys added here reach metrics.jsonl and TensorBoard.
        if logs is None or "train_runtime" in logs or not self._interval_steps:
            return
        count = self._interval_steps
        for name, seconds in self._interval.items():
            logs[name if name == STEP_TIME else PREFIX + name] = round(seconds / count, 4)
        self._interval.clear()
        self._interval_steps = 0


class _TimedReward:
    """A reward callable timed as `reward/<name>`; keeps `__name__` and the wrapped object's attributes."""

    def __init__(self, func: Any, timer: StepTimer):
        self.func = func
        self.timer = timer
        self.__name__ = getattr(func, "__name__", type(func).__name__)
        self.part_name = f"reward/{self.__name__}"

    def __call__(self, *args, **kwargs):
        with self.timer.part(self.part_name):
            return self.func(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the wrapper lacks; none during unpickling, before `func` is set.
        if "func" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["func"], name)


class _TimedAsyncReward(_TimedReward):
    async def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return await self.func(*args, **kwargs)
        finally:
            self.timer.record_async(self.part_name, started, time.perf_counter())


def _timed(timer: StepTimer, method: Callable, part: str | None, opaque: bool = False) -> Callable:
    def timed(*args, **kwargs):
        with timer.part(part, opaque):
            return method(*args, **kwargs)

    timed.__wrapped__ = method  # type: ignore[attr-defined]
    return timed


def install_step_timing(trainer: Any) -> StepTimer:
    """Time `trainer`'s steps by part (see the module docstring); returns the timer, also its first callback.

    Call it once the trainer is complete (after a vLLM rollout backend is installed, whose weight sync is
    timed through `trainer.vllm_generation`).
    """
    import torch
    from torch import nn
    from trl.trainer.utils import is_async_callable

    if getattr(trainer, "step_timer", None) is not None:
        raise UnirgError("install_step_timing: this trainer is already timed (trainer.step_timer is set)")
    on_cuda = trainer.accelerator.device.type == "cuda"
    timer = StepTimer(synchronize=torch.cuda.synchronize if on_cuda else None)

    get_batch_samples = trainer.get_batch_samples

    def timed_batch_samples(*args, **kwargs):
        timer.start_step_if_idle()
        with timer.part("data"):
            return get_batch_samples(*args, **kwargs)

    trainer.get_batch_samples = timed_batch_samples

    training_step = trainer.training_step

    def timed_training_step(*args, **kwargs):
        with timer.part("train"):
            loss = training_step(*args, **kwargs)
        if trainer.accelerator.sync_gradients:
            # The last micro-batch of the step: clipping, optimizer and scheduler step follow, up to on_step_end.
            timer.enter("train")
        return loss

    trainer.training_step = timed_training_step
    # Generation and scoring run inside training_step, under _prepare_inputs; what they do outside the
    # parts below (tokenising, advantages, gathers) is TRL's bookkeeping, left to `other`, not to `train`.
    trainer._prepare_inputs = _timed(timer, trainer._prepare_inputs, None)
    trainer._generate = _timed(timer, trainer._generate, "generation")

    generate_and_score = trainer._generate_and_score_completions
    # No-grad log-prob passes made by this call so far; None outside it (e.g. the training forward pass).
    scoring_calls: list[int | None] = [None]

    def timed_generate_and_score(*args, **kwargs):
        scoring_calls[0] = 0
        try:
            return generate_and_score(*args, **kwargs)
        finally:
            scoring_calls[0] = None

    trainer._generate_and_score_completions = timed_generate_and_score

    logps = trainer._get_per_token_logps_and_entropies

    def timed_logps(model, *args, **kwargs):
        call = scoring_calls[0]
        if call is None or torch.is_grad_enabled():  # not a scoring pass: its time stays with its caller
            return logps(model, *args, **kwargs)
        scoring_calls[0] = call + 1
        with timer.part(_logps_part(trainer, model, call)):
            return logps(model, *args, **kwargs)

    trainer._get_per_token_logps_and_entropies = timed_logps

    generation = getattr(trainer, "vllm_generation", None)
    if generation is not None and getattr(trainer, "use_vllm", False):
        generation.sync_weights = _timed(timer, generation.sync_weights, "weight_sync")
    trainer._save_checkpoint = _timed(timer, trainer._save_checkpoint, "checkpoint", opaque=True)
    trainer.callback_handler.on_save = _timed(timer, trainer.callback_handler.on_save, "checkpoint", opaque=True)
    trainer._evaluate = _timed(timer, trainer._evaluate, "evaluation", opaque=True)

    for index, func in enumerate(trainer.reward_funcs):
        if isinstance(func, nn.Module):
            continue
        wrapper = _TimedAsyncReward if is_async_callable(func) else _TimedReward
        trainer.reward_funcs[index] = wrapper(func, timer)

    trainer.callback_handler.callbacks.insert(0, timer)
    trainer.step_timer = timer
    return timer


def _logps_part(trainer: Any, model: Any, call: int) -> str:
    """Which no-grad log-prob pass of `_generate_and_score_completions` its `call`-th one is (TRL 1.16's order)."""
    if model is not None and model is getattr(trainer, "ref_model", None):
        return "ref_logprobs"
    # TRL computes the old-policy pass first, and only under these conditions; the reference pass (with
    # PEFT: the same model with its adapter off) comes after it.
    generate_every = trainer.args.steps_per_generation * trainer.num_iterations
    computes_old = trainer.args.gradient_accumulation_steps % generate_every != 0 or (
        trainer.use_vllm and trainer.vllm_importance_sampling_correction)
    return "old_logprobs" if computes_old and call == 0 else "ref_logprobs"
