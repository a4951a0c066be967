"""Radiology knowledge as data: load and validate a versioned chest X-ray checklist, render it, look entries up.

A checklist (YAML, shipped under unirg/reasoning/checklists/) lists anatomical regions in reading order and,
for each, the CheXpert-14 observations it reports, each with a definition, typical signs and what makes a
mention of it uncertain. Every CheXpert observation belongs to exactly one region. The `reasoning` prompt
format takes its anatomy walk from it, the rule-based traces their grouping, and `unirg traces` gives the
full text to the teacher.

    checklist = load_checklist()                     # the shipped default, cxr-chexpert14 v1
    checklist.observation("Pleural Effusion").signs
    render_checklist(checklist, "compact")           # one line for the policy's prompt
    render_checklist(checklist, "full")              # definitions, signs and uncertainty, for a teacher
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

from unirg.data.records import CHEXPERT_OBSERVATIONS
from unirg.errors import UnirgError

CHECKLISTS_DIR = Path(__file__).resolve().parent / "checklists"
DEFAULT_CHECKLIST = CHECKLISTS_DIR / "cxr_checklist_v1.yaml"


class ChecklistError(UnirgError):
    """A checklist file is missing, not valid YAML, or breaks the checklist schema."""


@dataclass(frozen=True)
class Observation:
    """One CheXpert observation: what it means, how it looks, when a mention of it is uncertain."""

    name: str
    definition: str
    signs: tuple[str, ...]
    uncertain: str


@dataclass(frozen=True)
class Region:
    """One step of the anatomy walk and the observations reported under it.

    `walk` is how the prompt names the step ("lungs by zone"); `normal` what a trace says when nothing is
    seen there; `terms` the lower-case word stems that place a report sentence in this region; `walked`
    false for a summary step (the whole study) that is not a place to look at.
    """

    name: str
    walk: str
    look_at: str
    normal: str
    terms: tuple[str, ...]
    observations: tuple[Observation, ...]
    walked: bool = True

    @property
    def observation_names(self) -> tuple[str, ...]:
        return tuple(observation.name for observation in self.observations)


@dataclass(frozen=True)
class Checklist:
    """A validated checklist: regions in reading order, every CheXpert observation in exactly one of them."""

    name: str
    version: int
    description: str
    uncertainty: str
    sentence_order: tuple[str, ...]
    regions: tuple[Region, ...]
    source: str = ""

    @property
    def tag(self) -> str:
        """Name and version, as traces record them: 'cxr-chexpert14 v1'."""
        return f"{self.name} v{self.version}"

    @property
    def walked_regions(self) -> tuple[Region, ...]:
        """The regions a reader looks at, in order (the summary step left out)."""
        return tuple(region for region in self.regions if region.walked)

    def region(self, name: str) -> Region:
        """The region called `name`."""
        for region in self.regions:
            if region.name == name:
                return region
        raise ChecklistError(f"{self.tag}: no region {name!r}{_did_you_mean(name, [r.name for r in self.regions])}")

    def observation(self, name: str) -> Observation:
        """The entry of a CheXpert observation, by its exact name ('Pleural Effusion')."""
        region = self.region_of(name)
        return region.observations[region.observation_names.index(name)]

    def region_of(self, observation: str) -> Region:
        """The region that reports `observation`."""
        for region in self.regions:
            if observation in region.observation_names:
                return region
        raise ChecklistError(f"{self.tag}: no observation {observation!r}"
                             f"{_did_you_mean(observation, CHEXPERT_OBSERVATIONS)}")

    def region_for_sentence(self, sentence: str) -> str | None:
        """The region a report sentence describes, by its terms in `sentence_order`; None when none matches."""
        lowered = sentence.lower()
        for name in self.sentence_order:
            if any(term in lowered for term in self.region(name).terms):
                return name
        return None


def lookup(observation: str, checklist: Checklist | None = None) -> Observation:
    """The checklist entry of a CheXpert observation (default checklist unless one is given)."""
    return (checklist or load_checklist()).observation(observation)


def render_checklist(checklist: Checklist, detail: Literal["compact", "full"] = "compact") -> str:
    """The checklist as prompt text.

    compact: one line, the walk with each region's observations in brackets (for the policy's prompt).
    full: a heading per region with what to look at, then each observation's definition, signs and what
    counts as uncertain (for a teacher model; several hundred words).
    """
    if detail == "compact":
        steps = []
        for region in checklist.walked_regions:
            names = ", ".join(name.lower() for name in region.observation_names)
            steps.append(f"{region.walk} ({names})" if names else region.walk)
        return "; ".join(steps)
    if detail != "full":
        raise ValueError(f"render_checklist: detail must be 'compact' or 'full', not {detail!r}")
    lines = [f"Checklist {checklist.tag}: {checklist.description}", f"Uncertain: {checklist.uncertainty}"]
    for number, region in enumerate(checklist.regions, start=1):
        lines.append(f"{number}. {region.walk.capitalize()}: {region.look_at}")
        for observation in region.observations:
            lines.append(f"   - {observation.name}: {observation.definition}")
            lines.append(f"     Signs: {'; '.join(observation.signs)}.")
            lines.append(f"     Uncertain when: {observation.uncertain}")
    return "\n".join(lines)


def load_checklist(path: str | Path | None = None) -> Checklist:
    """Read and validate a checklist file (default: the shipped cxr_checklist_v1.yaml).

    Raises ChecklistError naming the file and the field (e.g. `regions[1].observations[0].signs`) when the
    file breaks the schema, and listing observations that are missing or reported twice.
    """
    path = Path(path).expanduser().resolve() if path is not None else DEFAULT_CHECKLIST
    if not path.is_file():
        raise ChecklistError(f"checklist file not found: {path}; give a checklist YAML file, or leave it unset "
                             f"for the shipped {DEFAULT_CHECKLIST.name}")
    return _load_cached(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _load_cached(path: str, _mtime_ns: int) -> Checklist:
    try:
        tree = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ChecklistError(f"{path}: not valid YAML: {error}") from None
    return parse_checklist(tree, source=path)


_TOP_KEYS = {"name", "version", "description", "uncertainty", "sentence_order", "regions"}
_REGION_KEYS = {"name", "walk", "look_at", "normal", "terms", "observations", "walked"}
_OBSERVATION_KEYS = {"name", "definition", "signs", "uncertain"}


def parse_checklist(tree: Any, source: str = "<checklist>") -> Checklist:
    """Validate a checklist already read from YAML; errors name `source` and the field."""
    where = _Where(source)
    mapping = where.mapping(tree, "", _TOP_KEYS, required=_TOP_KEYS)
    version = mapping["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        where.fail("version", f"must be a whole number from 1 (got {version!r})")
    raw_regions = mapping["regions"]
    if not isinstance(raw_regions, list) or not raw_regions:
        where.fail("regions", "must be a non-empty list of regions")
    regions = [_parse_region(where, raw, f"regions[{i}]") for i, raw in enumerate(raw_regions)]
    names = [region.name for region in regions]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        where.fail("regions", f"region names must be unique; repeated: {repeated}")
    _check_coverage(where, regions)
    order = where.strings(mapping["sentence_order"], "sentence_order", allow_empty=False)
    unknown = [name for name in order if name not in names]
    if unknown:
        where.fail("sentence_order", f"names regions that do not exist: {unknown} (regions: {names})")
    missing = [r.name for r in regions if r.terms and r.name not in order]
    if missing or len(set(order)) != len(order):
        where.fail("sentence_order", "must list each region that has terms exactly once"
                   + (f"; missing: {missing}" if missing else "; a region is listed twice"))
    return Checklist(name=where.text(mapping["name"], "name"), version=version,
                     description=where.text(mapping["description"], "description"),
                     uncertainty=where.text(mapping["uncertainty"], "uncertainty"),
                     sentence_order=tuple(order), regions=tuple(regions), source=source)


def _parse_region(where: _Where, raw: Any, at: str) -> Region:
    mapping = where.mapping(raw, at, _REGION_KEYS, required=_REGION_KEYS - {"walked"})
    observations = mapping["observations"]
    if not isinstance(observations, list):
        where.fail(f"{at}.observations", "must be a list (empty for a region without CheXpert observations)")
    walked = mapping.get("walked", True)
    if not isinstance(walked, bool):
        where.fail(f"{at}.walked", f"must be true or false (got {walked!r})")
    terms = mapping["terms"]
    if not isinstance(terms, list) or not all(isinstance(t, str) and t.strip() for t in terms):
        where.fail(f"{at}.terms", "must be a list of non-empty strings (empty for a summary region)")
    return Region(name=where.text(mapping["name"], f"{at}.name"), walk=where.text(mapping["walk"], f"{at}.walk"),
                  look_at=where.text(mapping["look_at"], f"{at}.look_at"),
                  normal=where.text(mapping["normal"], f"{at}.normal"),
                  terms=tuple(term.lower() for term in terms),
                  observations=tuple(_parse_observation(where, item, f"{at}.observations[{j}]")
                                     for j, item in enumerate(observations)),
                  walked=walked)


def _parse_observation(where: _Where, raw: Any, at: str) -> Observation:
    mapping = where.mapping(raw, at, _OBSERVATION_KEYS, required=_OBSERVATION_KEYS)
    name = where.text(mapping["name"], f"{at}.name")
    if name not in CHEXPERT_OBSERVATIONS:
        where.fail(f"{at}.name", f"{name!r} is not a CheXpert observation"
                   f"{_did_you_mean(name, CHEXPERT_OBSERVATIONS)}; known: {', '.join(CHEXPERT_OBSERVATIONS)}")
    return Observation(name=name, definition=where.text(mapping["definition"], f"{at}.definition"),
                       signs=tuple(where.strings(mapping["signs"], f"{at}.signs", allow_empty=False)),
                       uncertain=where.text(mapping["uncertain"], f"{at}.uncertain"))


def _check_coverage(where: _Where, regions: list[Region]) -> None:
    """Every CheXpert observation in exactly one region."""
    seen: dict[str, list[str]] = {}
    for region in regions:
        for name in region.observation_names:
            seen.setdefault(name, []).append(region.name)
    twice = {name: places for name, places in seen.items() if len(places) > 1}
    if twice:
        where.fail("regions", "each observation belongs to exactly one region; listed more than once: "
                   + "; ".join(f"{name} in {places}" for name, places in twice.items()))
    missing = [name for name in CHEXPERT_OBSERVATIONS if name not in seen]
    if missing:
        where.fail("regions", f"every CheXpert observation must be covered; missing: {missing}")


class _Where:
    """Field checks that fail with the file and the field path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field: str, message: str) -> None:
        raise ChecklistError(f"{self.source}: {field or 'top level'}: {message}")

    def mapping(self, raw: Any, at: str, known: set[str], required: set[str]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            self.fail(at, f"must be a mapping with keys {sorted(required)}")
        for key in raw:
            if key not in known:
                self.fail(f"{at}.{key}" if at else str(key), f"unknown key{_did_you_mean(str(key), known)}")
        absent = sorted(required - set(raw))
        if absent:
            self.fail(at, f"missing key(s) {absent}")
        return raw

    def text(self, value: Any, at: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(at, f"must be non-empty text (got {value!r})")
        return " ".join(value.split())

    def strings(self, value: Any, at: str, allow_empty: bool) -> list[str]:
        if not isinstance(value, list) or (not value and not allow_empty):
            self.fail(at, "must be a non-empty list of text")
        return [self.text(item, f"{at}[{i}]") for i, item in enumerate(value)]


def _did_you_mean(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
