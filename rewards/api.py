"""The reward plugin API: what a plugin declares and how it scores a batch of completions.

A plugin is either a plain function or an object with a `score` method. Its parameters name the inputs
it needs; the adapter passes exactly those:

- `completions`: the raw completion text; `parsed`: `ParsedCompletion` objects;
- `reports`: the report text to score (findings + impression, the reasoning block removed);
- `reasoning`, `findings`, `impression`: the completion's parts;
- `references`: the reference report; any dataset column by its name (`reference_findings`,
  `reference_impression`, `reference_labels`, `study_id`, `sections`, …).

It returns one float per completion, or None where the completion cannot be scored (TRL then leaves it
out of that reward), or a `RewardOutput` that adds named sub-scores, logged as `rewards/<name>/<part>`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

Scores = list[float | None]


@dataclass
class RewardOutput:
    """Scores plus named sub-scores (each a list aligned with the scores)."""

    scores: Scores
    parts: dict[str, Scores] = field(default_factory=dict)


class RewardPlugin:
    """Base class for plugins with options, state or a model to load. Subclasses set `name` and `score`.

    Class attributes describe the plugin: `higher_is_better`, `value_range` (scores outside it are
    treated as faults), and `resources` (what a Ray reward actor hosting it asks for, e.g. {"num_gpus": 0.25}).
    """

    name: str = ""
    higher_is_better: bool = True
    value_range: tuple[float, float] = (0.0, 1.0)
    resources: dict[str, float] = {}

    def setup(self) -> None:
        """Load models or caches; called once before the first score."""

    def teardown(self) -> None:
        """Release what setup acquired."""

    def score(self, reports: Sequence[str], **inputs) -> Scores | RewardOutput:  # pragma: no cover
        raise NotImplementedError
