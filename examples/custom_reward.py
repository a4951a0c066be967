"""A complete custom reward plugin: reward reports that state the heart size.

Use it in a recipe by file path, or register it as an entry point in your package's pyproject.toml:

    rewards:
      - {name: examples/custom_reward.py:mentions_heart, weight: 0.1}

    [project.entry-points."unirg.rewards"]
    mentions_heart = "my_package.rewards:mentions_heart"
"""

from __future__ import annotations


def mentions_heart(reports: list[str], **columns) -> list[float | None]:
    """1.0 when the report says something about the heart, else 0.0; None for an empty report.

    Inputs: reports (the findings + impression text; ask for `completions`, `reasoning`, `references` or
    any dataset column by naming it). Range [0, 1]. Example: "Heart size is normal." → 1.0.
    """
    return [None if not r.strip() else float("heart" in r.lower() or "cardiac" in r.lower()) for r in reports]
