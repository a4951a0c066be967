"""Turn a reward plugin into a TRL reward function: inputs by name, timing, sub-scores and fault counting."""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from rewards.api import RewardOutput
from unirg.prompts.parser import parse_completion

logger = logging.getLogger(__name__)

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


class TRLReward:
    """A picklable TRL reward callable wrapping one plugin; `__name__` is the key in TRL's logs."""

    def __init__(self, plugin: Any, name: str):
        self.plugin = plugin
        self.__name__ = name
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
        texts = [completion_text(c) for c in completions]
        parsed = [parse_completion(t) for t in texts]
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

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        log_metric = kwargs.get("log_metric")
        if not self._setup_done:
            getattr(self.plugin, "setup", lambda: None)()
            self._setup_done = True
        self.calls += 1
        started = time.perf_counter()
        output = self.score_fn(**self._inputs(completions, kwargs))
        parts: dict[str, list] = {}
        if isinstance(output, RewardOutput):
            output, parts = output.scores, output.parts
        output = list(output)
        if len(output) != len(completions):
            self.faults += len(completions)
            logger.warning("reward %s returned %d scores for %d completions; marking them missing",
                           self.__name__, len(output), len(completions))
            scores: list[float | None] = [None] * len(completions)
        else:
            scores = [self._clean(v) for v in output]
        if log_metric is not None:
            log_metric(f"rewards/{self.__name__}/seconds", time.perf_counter() - started)
            log_metric(f"rewards/{self.__name__}/faults", float(self.faults))
            for part, values in parts.items():
                finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
                if finite:
                    log_metric(f"rewards/{self.__name__}/{part}", sum(finite) / len(finite))
        return scores
