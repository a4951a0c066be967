"""Whether a teacher's answer becomes a kept trace: its sections parse, and its findings agree with the reference.

Parsing: the answer's `<think>` block (or, without tags, the whole answer) must hold the sections
`Perception:`, `Diagnosis:` and `Reflection:`, each once, in that order and non-empty (headers at a line
start; markdown bold or `#` allowed). Text after `</think>` is ignored: SFT appends the reference report.
The kept trace is rewritten in the project's layout, `<think>\\nPerception: …\\nDiagnosis: …\\nReflection:
…\\n</think>\\n`, which unirg.prompts.parser splits from the report that follows.

Agreement, with the project's labeler (rewards.labeler) on the Perception and Diagnosis text (the
Reflection is not labeled: it names findings it considered and ruled out) against the reference's
labels (the dataset's, else the labeler's on the reference report). "Present" means positive or
uncertain (CheXpert -1), as in the project's clinical scores; "No Finding" is derived and skipped. For
each other observation, the trace
- asserts it: present in the trace, not present in the reference (negative or not mentioned) -> drop;
- denies it: negative in the trace, present in the reference -> drop;
- leaves it out: not mentioned in the trace, present in the reference -> drop, unless omissions are allowed.
Positive vs uncertain is certainty, not presence, and never drops a trace. CheXpert's label hierarchy is
respected: a trace may name the general finding above a specific one the reference reports ("an opacity …
consistent with consolidation" for a reference consolidation: Lung Opacity is not asserted beyond the
reference), and names the general one when it names a specific one under it (a trace with consolidation
does not leave out the reference's lung opacity). A trace that speaks of "the
reference" or "the report" is dropped too: the student never sees the report, so it must not cite it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rewards.labeler import OBSERVATIONS, label_report

SECTIONS = ("Perception", "Diagnosis", "Reflection")
# CheXpert's label hierarchy (child -> parent): a consolidation is a lung opacity, a pneumonia a consolidation.
PARENT = {"Edema": "Lung Opacity", "Consolidation": "Lung Opacity", "Lung Lesion": "Lung Opacity",
          "Atelectasis": "Lung Opacity", "Pneumonia": "Consolidation", "Cardiomegaly": "Enlarged Cardiomediastinum"}
SKIPPED = ("No Finding",)
_HEADER = re.compile(r"(?im)^[ \t>#*_-]*(perception|diagnosis|reflection)[ \t*_]*:[ \t*_]*")
_CITES_REPORT = re.compile(r"(?i)\b(?:the|this) (?:reference|ground[- ]truth|given|provided|original) report\b|"
                           r"\breference (?:report|text|findings|labels?)\b|\bthe report (?:says|states|mentions|"
                           r"describes|notes|reports)\b")

# Reason categories, as the summary counts them.
REQUEST_FAILED = "request failed"
EMPTY = "empty answer"
TRUNCATED = "cut off at max_tokens"
UNPARSEABLE = "unparseable (no Perception/Diagnosis/Reflection sections)"
MISSING_SECTIONS = "missing or empty sections"
CITES_REFERENCE = "cites the reference report"
CONTRADICTS = "contradicts the reference"


@dataclass(frozen=True)
class Verdict:
    """A teacher answer's fate: the normalised trace when kept, else the reason and its details."""

    trace: str | None
    reason: str = ""
    details: tuple[str, ...] = field(default_factory=tuple)

    @property
    def kept(self) -> bool:
        return self.trace is not None


@dataclass(frozen=True)
class Sections:
    perception: str
    diagnosis: str
    reflection: str

    def trace(self) -> str:
        return (f"<think>\nPerception: {self.perception}\nDiagnosis: {self.diagnosis}\n"
                f"Reflection: {self.reflection}\n</think>\n")


def split_sections(answer: str) -> tuple[Sections | None, str, tuple[str, ...]]:
    """(sections, reason, details): the three sections of an answer, or why there are none."""
    if not answer or not answer.strip():
        return None, EMPTY, ()
    body = answer
    start = body.find("<think>")
    if start >= 0:
        end = body.find("</think>", start)
        body = body[start + len("<think>"): end if end >= 0 else len(body)]
    elif "</think>" in body:
        # The chat template may have opened the block in the prompt.
        body = body[: body.find("</think>")]
    headers = list(_HEADER.finditer(body))
    if not headers:
        return None, UNPARSEABLE, ()
    found: dict[str, list[str]] = {name: [] for name in SECTIONS}
    order = []
    for i, match in enumerate(headers):
        name = match.group(1).capitalize()
        end = headers[i + 1].start() if i + 1 < len(headers) else len(body)
        text = "\n".join(line.strip() for line in body[match.end():end].strip().splitlines() if line.strip())
        found[name].append(text)
        order.append(name)
    problems = [f"{name}: missing" for name in SECTIONS if not found[name]]
    problems += [f"{name}: repeated" for name in SECTIONS if len(found[name]) > 1]
    problems += [f"{name}: empty" for name in SECTIONS if len(found[name]) == 1 and not found[name][0]]
    if any("<think>" in text or "</think>" in text for texts in found.values() for text in texts):
        problems.append("a second <think> block")
    if not problems and order != list(SECTIONS):
        problems.append(f"order {' > '.join(order)}")
    if problems:
        return None, MISSING_SECTIONS, tuple(problems)
    return Sections(*(found[name][0] for name in SECTIONS)), "", ()


def disagreements(trace_labels: Sequence[int | None], reference_labels: Sequence[int | None],
                  allow_omissions: bool = False) -> tuple[str, ...]:
    """'<Observation>: asserts' / ': denies' / ': leaves out' for each observation the two disagree on."""
    said_present = {name for name, label in zip(OBSERVATIONS, trace_labels, strict=True) if label in (1, -1)}
    truly_present = {name for name, label in zip(OBSERVATIONS, reference_labels, strict=True) if label in (1, -1)}
    found = []
    for i, name in enumerate(OBSERVATIONS):
        if name in SKIPPED:
            continue
        said = trace_labels[i]
        if name in said_present and name not in truly_present:
            if not _descendants(name) & truly_present:  # the general name of a specific reference finding
                found.append(f"{name}: asserts")
        elif name in truly_present and said == 0:
            found.append(f"{name}: denies")
        elif name in truly_present and said is None and not allow_omissions:
            if not _descendants(name) & said_present:  # named through a more specific finding
                found.append(f"{name}: leaves out")
    return tuple(found)


def _descendants(name: str) -> set[str]:
    """Observations below `name` in CheXpert's hierarchy (Lung Opacity: edema, consolidation, pneumonia, …)."""
    below = {child for child, parent in PARENT.items() if parent == name}
    return below.union(*(_descendants(child) for child in below)) if below else set()


def check_answer(answer: str, reference_labels: Sequence[int | None], finish_reason: str | None = None,
                 allow_omissions: bool = False) -> Verdict:
    """The verdict on one teacher answer against the reference's 14 CheXpert labels (1, 0, -1 or None)."""
    sections, reason, details = split_sections(answer)
    if sections is None:
        if finish_reason == "length" and reason != EMPTY:
            return Verdict(None, TRUNCATED, (reason, *details))
        return Verdict(None, reason, details)
    if _CITES_REPORT.search(f"{sections.perception}\n{sections.diagnosis}\n{sections.reflection}"):
        return Verdict(None, CITES_REFERENCE)
    labels = label_report(f"{sections.perception}\n{sections.diagnosis}")
    found = disagreements(labels, reference_labels, allow_omissions)
    if found:
        return Verdict(None, CONTRADICTS, found)
    return Verdict(sections.trace())
