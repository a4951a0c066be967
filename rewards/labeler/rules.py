"""Rule-based CheXpert-14 labeling: mentions, then negation and uncertainty within their clause."""

from __future__ import annotations

import re
from functools import lru_cache

from rewards.labeler.vocabulary import ATTRIBUTES, KEYWORDS, MENTIONS, OBSERVATIONS, OTHER_ABNORMALITIES

Labels = tuple[int | None, ...]
POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1

_SENTENCE = re.compile(r"(?<!\d)[.!?](?!\d)|\n+|;")
# A clause ends at these; a negation or hedge does not reach across them.
_CLAUSE = re.compile(r"\b(?:but|however|although|though|whereas|except|apart from|other than|"
                     r"which|with the exception of|aside from|while)\b|:")
# Phrases that contain a negation word but do not negate the finding ("no change in the effusion").
_PSEUDO_NEGATION = re.compile(r"\b(?:no|without|not) (?:significant |appreciable |substantial |definite )?"
                              r"(?:interval )?(?:change|increase|decrease|improvement|worsening)\b|"
                              r"\bnot only\b|\bno longer (?:enlarged|widened)\b|\bnot significantly changed\b|"
                              r"\bgram[- ]negative\b")
# Hedges that contain negation words: checked before plain negation.
_NEGATED_HEDGE = re.compile(r"\b(?:cannot|can ?not|can't|could not|not) (?:be )?(?:entirely |completely |"
                            r"definitely )?(?:exclude|excluded|ruled? out|be ruled out|be excluded)\b|"
                            r"\bnot (?:entirely |completely )?excluded\b|\bno definite\b(?= .*\bbut\b)")
_NEGATION_BEFORE = re.compile(
    r"\b(?:no|not|without|negative for|free of|absence of|absent|resolution of|resolved|clear of|"
    r"no evidence of|no signs? of|no radiographic evidence of|removal of|removed|rather than|"
    r"neither|nor|never|deny|denies|exclude[sd]?|ruled out)\b")
_NEGATION_AFTER = re.compile(
    r"^[^.]{0,40}?\b(?:is|are|was|were|has|have)? ?(?:not (?:seen|identified|present|visualized|demonstrated|"
    r"appreciated|evident|noted|enlarged)|absent|resolved|removed|cleared|no longer (?:seen|present|visualized))\b")
_UNCERTAIN_BEFORE = re.compile(
    r"\b(?:may|might|could|possible|possibly|probable|probably|likely|questionable|question of|suspect(?:ed)?|"
    r"suspicious for|concern(?:ing)? for|suggest(?:s|ing|ive of)?|borderline|equivocal|indeterminate|"
    r"presumed|presumably|versus|vs|differential|atypical|rule out|r/o|evaluate for|cannot exclude|"
    r"either|or|apparent|potential|would|consider|favor|favored)\b")
_UNCERTAIN_AFTER = re.compile(
    r"^[^.]{0,40}?\b(?:is|are|was|were)? ?(?:possible|suspected|questioned|likely|not excluded|"
    r"cannot be excluded|can not be excluded|versus|vs|or)\b")

_MENTION_PATTERNS = {name: re.compile(r"\b(?:" + "|".join(phrases) + r")")
                     for name, phrases in MENTIONS.items()}
_ATTRIBUTE_PATTERNS = {
    name: (re.compile(r"\b(?:" + anatomy + r")\b"), re.compile(r"\b(?:" + big + r")\b"),
           re.compile(r"\b(?:" + normal + r")\b"), re.compile(r"\b(?:" + border + r")\b"))
    for name, (anatomy, big, normal, border) in ATTRIBUTES.items()
}
_OTHER = re.compile(r"\b(?:" + "|".join(OTHER_ABNORMALITIES) + r")")
_ANY_ANATOMY = re.compile("|".join(a[0].pattern for a in _ATTRIBUTE_PATTERNS.values()))


def _clause_bounds(sentence: str, start: int, end: int) -> tuple[int, int]:
    left, right = 0, len(sentence)
    for match in _CLAUSE.finditer(sentence):
        if match.end() <= start:
            left = match.end()
        elif match.start() >= end:
            right = match.start()
            break
    return left, right


def _status(prefix: str, suffix: str) -> int:
    """Negated, uncertain or positive, from the clause text before and after a mention."""
    prefix = _PSEUDO_NEGATION.sub(" ", prefix)
    suffix = _PSEUDO_NEGATION.sub(" ", suffix)
    if _NEGATED_HEDGE.search(prefix) or _NEGATED_HEDGE.search(suffix):
        return UNCERTAIN
    if _NEGATION_BEFORE.search(prefix) or _NEGATION_AFTER.search(suffix):
        return NEGATIVE
    if _UNCERTAIN_BEFORE.search(prefix) or _UNCERTAIN_AFTER.search(suffix):
        return UNCERTAIN
    return POSITIVE


def _attribute_status(clause: str, patterns) -> int | None:
    """Status from how an anatomy is described ("heart size is normal"), or None if it is not described."""
    anatomy, big, normal, border = patterns
    if not anatomy.search(clause):
        return None
    if border.search(clause):
        return UNCERTAIN
    if normal.search(clause):
        return NEGATIVE
    match = big.search(clause)
    if match:
        return _status(clause[: match.start()], clause[match.end():])
    return None


def _merge(current: int | None, new: int) -> int:
    """Across mentions, positive beats uncertain beats negative."""
    if current is None:
        return new
    rank = {POSITIVE: 2, UNCERTAIN: 1, NEGATIVE: 0}
    return new if rank[new] > rank[current] else current


@lru_cache(maxsize=100_000)
def _label_sentence(sentence: str) -> tuple[tuple[tuple[str, int], ...], bool]:
    """(observation, status) pairs of one lower-cased sentence and whether it states another abnormality.

    Cached: report sentences are highly templated ("lungs are clear."), so most are seen before.
    """
    other_abnormality = False
    for match in _OTHER.finditer(sentence):
        left, right = _clause_bounds(sentence, match.start(), match.end())
        if _status(sentence[left:match.start()], sentence[match.end():right]) != NEGATIVE:
            other_abnormality = True
            break
    # Substring checks run in C and rule out most observations before any pattern runs.
    candidates = [name for name, keys in KEYWORDS.items() if any(key in sentence for key in keys)]
    if not candidates and not _ANY_ANATOMY.search(sentence):
        return (), other_abnormality
    found: dict[str, int] = {}
    for name in candidates:
        for match in _MENTION_PATTERNS[name].finditer(sentence):
            left, right = _clause_bounds(sentence, match.start(), match.end())
            status = _status(sentence[left:match.start()], sentence[match.end():right])
            found[name] = _merge(found.get(name), status)
    for name, patterns in _ATTRIBUTE_PATTERNS.items():
        if found.get(name) == POSITIVE:
            continue
        for clause in _CLAUSE.split(sentence):
            status = _attribute_status(clause, patterns)
            if status is not None:
                found[name] = _merge(found.get(name), status)
    return tuple(found.items()), other_abnormality


@lru_cache(maxsize=200_000)
def label_report(text: str) -> Labels:
    """CheXpert-14 labels of one report: 1 positive, 0 negative, -1 uncertain, None not mentioned."""
    found: dict[str, int] = {}
    other_abnormality = False
    lowered = text.lower() if isinstance(text, str) else ""
    for sentence in _SENTENCE.split(lowered):
        mentions, other = _label_sentence(sentence.strip())
        other_abnormality = other_abnormality or other
        for name, status in mentions:
            found[name] = _merge(found.get(name), status)
    labels = [found.get(name) for name in OBSERVATIONS]
    # No Finding: nothing but support devices is positive or uncertain.
    pathology = [found.get(name) for name in OBSERVATIONS if name not in ("No Finding", "Support Devices")]
    abnormal = other_abnormality or any(v in (POSITIVE, UNCERTAIN) for v in pathology)
    labels[OBSERVATIONS.index("No Finding")] = None if abnormal else 1
    return tuple(labels)
