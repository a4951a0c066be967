"""Error types whose messages are shown to users as they are (no traceback)."""

from __future__ import annotations


class UnirgError(Exception):
    """A user-facing error: the message says what was wrong, where, and what to do."""


class RecipeError(UnirgError):
    """A recipe file or override is invalid."""


class DataError(UnirgError):
    """A data source, row or image is invalid."""


class RewardError(UnirgError):
    """A reward plugin cannot be found, configured or run."""
