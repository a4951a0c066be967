"""The key-image rule: which image of a study goes in the prompt, from the source's view metadata."""

from __future__ import annotations

from collections.abc import Sequence

from unirg.data.records import StudyImage

# Lower is preferred. PA is the standard upright frontal film; AP is the bedside one; other frontal
# projections (decubitus, lordotic/axial, or a release that only says "frontal") come next.
_FRONTAL_RANK = {"PA": 0, "AP": 1, "FRONTAL": 2}
_FRONTAL_PREFIXES = ("PA ", "AP ")  # MIMIC-CXR: "AP AXIAL", "PA LLD", "AP RLD", …


def frontal_rank(view: str) -> int | None:
    """0 for PA, 1 for AP, 2 for any other frontal projection; None for laterals and unknown views."""
    name = " ".join((view or "").upper().replace("_", " ").split())
    if name in _FRONTAL_RANK:
        return _FRONTAL_RANK[name]
    if name.startswith(_FRONTAL_PREFIXES):
        return 2
    return None


def key_image(images: Sequence[StudyImage]) -> tuple[StudyImage, bool]:
    """The study's key image and whether the fallback chose it.

    The rule: the best frontal view by `frontal_rank` (PA, then AP, then other frontal), ties broken by
    the order the source lists the images in. Fallback, when no image has a frontal view in the source's
    metadata (laterals only, or no view recorded): the first image the source lists. Sources without view
    metadata list their key image first (the manifest convention; ReXrank's key_image_path).
    """
    if not images:
        raise ValueError("a study without images has no key image")
    ranked = [(rank, i) for i, image in enumerate(images) if (rank := frontal_rank(image.view)) is not None]
    if ranked:
        return images[min(ranked)[1]], False
    return images[0], True


def views_known(images: Sequence[StudyImage]) -> bool:
    """True when the source recorded a view for at least one image (manifest rows without `views` do not)."""
    return any((image.view or "").strip().lower() not in ("", "unknown") for image in images)
