"""Turn a reward plugin into a TRL reward function: inputs by name, timing, sub-scores, fault counting, missing scores.

Missing scores: TRL 1.16 turns a None into NaN and sums the weighted rewards with `nansum`, so a
completion whose score from one reward is missing gets 0 for that reward: against the other
completions of its group it loses that reward's whole weight (0.5 for the UniRG judge). The adapter
therefore replaces a missing score by the mean of that reward over the other completions of the same
prompt in the batch (the group TRL normalises the advantage in), which leaves that completion's
advantage from this reward at 0. A group where no completion has a score keeps None for all of them:
TRL then adds the same 0 to every member, which does not change any advantage. Completions are grouped
by their prompt's text plus the `reference` and `study_id` columns when present; without TRL's
`prompts` argument (a direct call) nothing is filled. The number filled is logged as
`rewards/<name>/filled`.
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from rewards.api import RewardOutput
from unirg.errors import RewardError
from unirg.prompts.parser import parse_completion

logger = logging.getLogger(__name__)

# Every reward of a step parses the same completions: parse each text once (ParsedCompletion is frozen).
_parse = lru_cache(maxsize=16_384)(parse_completion)

# Keyword arguments TRL adds to every reward call; not dataset columns.
_TRL_KWARGS = {"prompts", "completion_ids", "trainer_state", "log_extra", "log_metric", "environments"}


def completion_text(completion: Any) -> str:
    """Text of a TRL completion: a string, or a conversational list of messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        parts = []
        for message in completion:
            content = message.get("content", "") if isinstance(message, dict) else message
            if isinstance(content, list):
                content = "".join(block.get("text", "") or "" for block in content if isinstance(block, dict))
            parts.append(content if isinstance(content, str) else "")
        return "".join(parts)
    return "" if completion is None else str(completion)


def final_turn(completion: Any) -> Any:
    """The messages after the last user turn: a reflection completion (draft, reflection request, final
    turn) is scored on its final turn only. Strings and single-turn completions are returned as they are."""
    if not isinstance(completion, list):
        return completion
    users = [i for i, m in enumerate(completion) if isinstance(m, dict) and m.get("role") == "user"]
    return completion[users[-1] + 1:] if users else completion


class TRLReward:
    """A picklable TRL reward callable wrapping one plugin; `__name__` is the key in TRL's logs."""

    def __init__(self, plugin: Any, name: str, timeout_s: float | None = None, max_consecutive_failures: int = 3):
        self.plugin = plugin
        self.__name__ = name
        self.timeout_s = timeout_s
        self.max_consecutive_failures = max_consecutive_failures
        self.consecutive_failures = 0
        self.score_fn: Callable = plugin.score if hasattr(plugin, "score") else plugin
        params = inspect.signature(self.score_fn).parameters
        self.accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        self.wanted = [n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        low, high = getattr(plugin, "value_range", (-math.inf, math.inf))
        self.low, self.high = low, high
        self.faults = 0
        self.calls = 0
        self._setup_done = False

    def _inputs(self, completions: Sequence[Any], columns: dict[str, Any]) -> dict[str, Any]:
        texts = [completion_text(final_turn(c)) for c in completions]
        parsed = [_parse(t) for t in texts]
        available = {
            "completions": texts,
            "parsed": parsed,
            "reports": [p.report for p in parsed],
            "reasoning": [p.reasoning for p in parsed],
            "findings": [p.findings for p in parsed],
            "impression": [p.impression for p in parsed],
            "references": columns.get("reference", [""] * len(texts)),
            **{k: v for k, v in columns.items() if k not in _TRL_KWARGS},
        }
        if self.accepts_any:
            return available
        missing = [n for n in self.wanted if n not in available]
        if missing:
            raise TypeError(f"reward {self.__name__!r} asks for {missing}, which this dataset does not have "
                            f"(available: {sorted(available)})")
        return {n: available[n] for n in self.wanted}

    def _run(self, inputs: dict[str, Any]) -> Any:
        if self.timeout_s is None:
            return self.score_fn(**inputs)
        # A daemon thread: a hung plugin is abandoned after the timeout instead of stalling training.
        result: dict[str, Any] = {}

        def target() -> None:
            try:
                result["value"] = self.score_fn(**inputs)
            except Exception as error:  # re-raised in the caller's thread
                result["error"] = error

        worker = threading.Thread(target=target, daemon=True, name=f"reward-{self.__name__}")
        worker.start()
        worker.join(self.timeout_s)
        if worker.is_alive():
            raise TimeoutError(f"no answer within {self.timeout_s} s")
        if "error" in result:
            raise result["error"]
        return result["value"]

    def _failed(self, error: Exception, count: int) -> None:
        self.faults += count
        self.consecutive_failures += 1
        logger.warning("reward %s failed (%s: %s); its %d scores of this batch are missing",
                       self.__name__, type(error).__name__, error, count)
        if self.consecutive_failures >= self.max_consecutive_failures:
            raise RewardError(
                f"reward {self.__name__!r} failed on {self.consecutive_failures} calls in a row; last error: "
                f"{type(error).__name__}: {error}. Fix the plugin or remove it from the recipe's rewards") from error

    def _clean(self, value: Any) -> float | None:
        """None for values TRL must not use: missing, non-numbers, NaN/inf, outside the declared range."""
        if value is None:
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.faults += 1
            return None
        if not math.isfinite(number) or not self.low - 1e-9 <= number <= self.high + 1e-9:
            self.faults += 1
            return None
        return number

    @staticmethod
    def _group_keys(count: int, columns: dict[str, Any]) -> list[tuple] | None:
        """One key per completion naming its prompt group, or None when the call does not say (no `prompts`)."""
        prompts = columns.get("prompts")
        if prompts is None or len(prompts) != count:
            return None
        keyed = [completion_text(p) for p in prompts]
        for column in ("reference", "study_id"):
            values = columns.get(column)
            if values is not None and len(values) == count:
                keyed = [f"{k}\x00{v}" for k, v in zip(keyed, values, strict=True)]
        return [(k,) for k in keyed]

    def fill_missing(self, scores: list[float | None], columns: dict[str, Any]) -> tuple[list[float | None], int]:
        """Scores with each None replaced by its group's mean of the present scores (see the module docstring)."""
        keys = self._group_keys(len(scores), columns)
        if keys is None or all(s is not None for s in scores):
            return scores, 0
        present: dict[tuple, list[float]] = {}
        for key, score in zip(keys, scores, strict=True):
            if score is not None:
                present.setdefault(key, []).append(score)
        filled = list(scores)
        count = 0
        for index, (key, score) in enumerate(zip(keys, scores, strict=True)):
            if score is None and present.get(key):
                filled[index] = sum(present[key]) / len(present[key])
                count += 1
        return filled, count

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        log_metric = kwargs.get("log_metric")
        if not self._setup_done:
            getattr(self.plugin, "setup", lambda: None)()
            self._setup_done = True
        self.calls += 1
        started = time.perf_counter()
        inputs = self._inputs(completions, kwargs)
        parts: dict[str, list] = {}
        try:
            output = self._run(inputs)
            if isinstance(output, RewardOutput):
                output, parts = output.scores, output.parts
            output = list(output)
            if len(output) != len(completions):
                raise ValueError(f"returned {len(output)} scores for {len(completions)} completions")
        except Exception as error:  # a plugin's failure costs its scores for this batch, not the run
            self._failed(error, len(completions))
            scores: list[float | None] = [None] * len(completions)
        else:
            self.consecutive_failures = 0
            scores = [self._clean(v) for v in output]
        scores, filled = self.fill_missing(scores, kwargs)
        if log_metric is not None:
            log_metric(f"rewards/{self.__name__}/filled", float(filled))
            log_metric(f"rewards/{self.__name__}/seconds", time.perf_counter() - started)
            log_metric(f"rewards/{self.__name__}/faults", float(self.faults))
            for part, values in parts.items():
                finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
                if finite:
                    log_metric(f"rewards/{self.__name__}/{part}", sum(finite) / len(finite))
        return scores
