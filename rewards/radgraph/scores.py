"""RadGraph reward layer: scores computed from two RadGraph annotations, no model involved.

An annotation is the dict the `radgraph` package returns per report:
``{"text": ..., "entities": {"1": {"tokens": str, "label": str, "start_ix": int, "end_ix": int,
"relations": [[relation_type, target_entity_id], ...]}, ...}}``.

Two families of scores, both pinned to their reference implementations:

- the `radgraph` package's rewards (simple, partial, complete; radgraph 0.1.18 ``rewards.py``):
  F1 between sets of entity keys, where *simple* keys an entity by (tokens, label), *partial* also
  marks whether it has any relation, and *complete* expands each entity into one key per relation
  (tokens, label, relation type, target tokens). A report without any entity scores 0.
- CXR-Report-Metric's RadGraph-F1 (the RadCliQ input and ReXrank's "RadGraph" column): the mean of
  entity F1 over {(tokens, label)} and relation F1 over {((tokens, label), (tokens, label), type)}.

Version note: radgraph 0.1.18 lower-cases entity tokens only inside the relation keys of *complete*;
its repository (after 0.1.18, commit b5ab8d0) lower-cases tokens in every key. `lowercase=False`
reproduces 0.1.18, the published package; `lowercase=True` reproduces the later repository code.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Annotation = Mapping[str, Any]

# Bump when a definition below changes, so logged numbers stay comparable across releases.
REWARD_DEFINITION_VERSION = "radgraph-0.1.18 rewards + CXR-Report-Metric@9c9ecad compute_f1"


@dataclass(frozen=True)
class RadGraphScores:
    """All RadGraph scores of one hypothesis against one reference."""

    simple: float
    partial: float
    complete: float
    entity_f1: float
    relation_f1: float

    @property
    def radgraph_f1(self) -> float:
        """CXR-Report-Metric's combined score: mean of entity and relation F1 (ReXrank's 'RadGraph')."""
        return (self.entity_f1 + self.relation_f1) / 2


def set_f1(hypothesis: set[Hashable], reference: set[Hashable]) -> float:
    """F1 of two sets of keys; 0 when either side is empty or nothing matches."""
    matched = len(hypothesis & reference)
    if matched == 0:
        return 0.0
    precision = matched / len(hypothesis)
    recall = matched / len(reference)
    return 2 * precision * recall / (precision + recall)


def _entities(annotation: Annotation) -> Iterable[Mapping[str, Any]]:
    return annotation.get("entities", {}).values()


def _tokens(text: str, lowercase: bool) -> str:
    return text.lower() if lowercase else text


def simple_keys(annotation: Annotation, lowercase: bool = False) -> set[Hashable]:
    """Entity keys of the *simple* reward: (tokens, label)."""
    return {(_tokens(e["tokens"], lowercase), e["label"]) for e in _entities(annotation)}


def partial_keys(annotation: Annotation, lowercase: bool = False) -> set[Hashable]:
    """Entity keys of the *partial* reward: (tokens, label), plus a marker when it has a relation."""
    keys: set[Hashable] = set()
    for entity in _entities(annotation):
        key = (_tokens(entity["tokens"], lowercase), entity["label"])
        keys.add((*key, True) if entity["relations"] else key)
    return keys


def complete_keys(annotation: Annotation, lowercase: bool = False) -> set[Hashable]:
    """Entity keys of the *complete* reward: one per relation, with its type and target tokens."""
    entities = annotation.get("entities", {})
    keys: set[Hashable] = set()
    for entity in entities.values():
        if not entity["relations"]:
            keys.add((_tokens(entity["tokens"], lowercase), entity["label"]))
            continue
        # radgraph 0.1.18 already lower-cases both ends of a relation key, whatever `lowercase` says.
        for relation_type, target in entity["relations"]:
            keys.add((entity["tokens"].lower(), entity["label"], relation_type,
                      entities[target]["tokens"].lower()))
    return keys


def entity_set(annotation: Annotation) -> set[Hashable]:
    """CXR-Report-Metric entity set: (tokens, label), case kept."""
    return {(e["tokens"], e["label"]) for e in _entities(annotation)}


def relation_set(annotation: Annotation) -> set[Hashable]:
    """CXR-Report-Metric relation set: ((tokens, label) of source, (tokens, label) of target, type)."""
    entities = annotation.get("entities", {})
    relations: set[Hashable] = set()
    for entity in entities.values():
        for relation_type, target in entity["relations"]:
            other = entities[target]
            relations.add(((entity["tokens"], entity["label"]), (other["tokens"], other["label"]),
                           relation_type))
    return relations


def radgraph_scores(hypothesis: Annotation, reference: Annotation, lowercase: bool = False) -> RadGraphScores:
    """Every RadGraph score of `hypothesis` against `reference` (both RadGraph annotations).

    Example: identical annotations give 1.0 everywhere (``radgraph_f1`` included) as soon as the
    reference has at least one entity and one relation; an annotation without entities gives 0.0.
    """
    if not hypothesis.get("entities") or not reference.get("entities"):
        # The radgraph package returns 0 for all three rewards when either report has no entity.
        simple = partial = complete = 0.0
    else:
        simple = set_f1(simple_keys(hypothesis, lowercase), simple_keys(reference, lowercase))
        partial = set_f1(partial_keys(hypothesis, lowercase), partial_keys(reference, lowercase))
        complete = set_f1(complete_keys(hypothesis, lowercase), complete_keys(reference, lowercase))
    return RadGraphScores(
        simple=simple, partial=partial, complete=complete,
        entity_f1=set_f1(entity_set(hypothesis), entity_set(reference)),
        relation_f1=set_f1(relation_set(hypothesis), relation_set(reference)),
    )
