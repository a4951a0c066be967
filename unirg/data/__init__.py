"""Study sources, synthetic chest X-rays and the datasets handed to the trainers.

The logic lives in the modules; this package hands on the names callers use:
- loading: `load_splits`, `read_splits`, `load_records`, `DataSplits` (one source or a mixture)
- dataset: `build_dataset` (records → datasets.Dataset with lazily decoded images)
- manifest: `BadRow`; prompts: `completion_for` (the SFT target)
"""

from __future__ import annotations

from typing import Any

from unirg.data.manifest import BadRow

__all__ = ["BadRow", "DataSplits", "build_dataset", "completion_for", "load_records", "load_splits", "read_splits"]

# name → module; imported on first use, so `import unirg.data.records` stays free of datasets and of
# unirg.prompts (which imports unirg.data.records itself).
_LAZY = {
    "DataSplits": "unirg.data.loading", "load_splits": "unirg.data.loading", "read_splits": "unirg.data.loading",
    "load_records": "unirg.data.loading", "build_dataset": "unirg.data.dataset",
    "completion_for": "unirg.prompts.formats",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'unirg.data' has no attribute {name!r}")
