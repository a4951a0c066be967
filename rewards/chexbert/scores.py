"""SembScore: cosine similarity of paired CheXbert [CLS] embeddings.

Label-based scores (per-report F1, corpus micro/macro F1) reuse rewards.clinical, the same code the
rule-based labeler's rewards use, so both labelers are aggregated identically.
"""

from __future__ import annotations

import torch


def semb_scores(hypotheses: torch.Tensor, references: torch.Tensor) -> list[float]:
    """Cosine similarity of paired [n, hidden] embeddings (SembScore per pair); 0 where a vector is zero."""
    dot = (hypotheses * references).sum(dim=-1)
    norms = hypotheses.norm(dim=-1) * references.norm(dim=-1)
    cosine = torch.where(norms > 0, dot / norms.clamp_min(1e-12), torch.zeros_like(dot))
    return cosine.clamp(-1.0, 1.0).tolist()  # float32 rounding can land just past 1 for identical reports
