"""Prompt templates (the project's and UniRG's, Med-R2 reasoning, longitudinal) and the SFT target for each format.

The reasoning format's anatomy walk, and which observations each region reports, come from the radiology
checklist (unirg.reasoning.knowledge); its SFT target is a teacher trace when one is given, else a
rule-based block built from the reference.

Two wordings of the user turn (`prompt.template`):
- `project`: this project's own templates (findings + impression, findings only, impression only).
- `unirg_paper`: the two templates UniRG (arXiv 2601.17151) describes, findings only and findings +
  impression, with the indication and comparison as context. The wording follows the paper's description;
  it is NOT verified verbatim against the paper's text. Studies with an impression but no findings fit
  neither of the paper's templates and keep the project's impression-only wording.
In both, the template is fixed per study by which reference sections exist, and the answer form, the SFT
target and the reward reference all use the headers "Findings:" and "Impression:" that
unirg.prompts.parser (and so evaluation) reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from unirg.data.records import CHEXPERT_OBSERVATIONS, StudyRecord
from unirg.reasoning.knowledge import Checklist, load_checklist, render_checklist

# UniRG fixes the template per study by which reference sections exist.
_PAPER_TASK = {
    "findings_impression": "Given the chest X-ray and the clinical context below, generate the findings and the "
                           "impression of the radiology report.",
    "findings": "Given the chest X-ray and the clinical context below, generate the findings of the radiology "
                "report.",
}
_TASK = {
    "findings_impression": "Write the findings and impression sections of the radiology report for this "
                           "chest X-ray.",
    "findings": "Write the findings section of the radiology report for this chest X-ray.",
    "impression": "Write the impression section of the radiology report for this chest X-ray.",
}
_ANSWER_FORM = {
    "findings_impression": "Answer as:\nFindings: ...\nImpression: ...",
    "findings": "Answer as:\nFindings: ...",
    "impression": "Answer as:\nImpression: ...",
}


def reasoning_instruction(checklist: Checklist | None = None) -> str:
    """The reasoning format's instruction: the anatomy walk and each region's observations, from the checklist."""
    walk = render_checklist(checklist or load_checklist(), "compact")
    return ("First think inside <think> </think>. Perception: walk the anatomy region by region, saying what you "
            f"see and which of the region's findings are present, absent or uncertain: {walk}. Diagnosis: name "
            "the findings. Reflection: re-check each finding against the image. Then write the report.")


def sections_of(findings: str, impression: str) -> str:
    """Which template a study gets, from the reference sections it has (UniRG fixes it per study)."""
    if not findings.strip():
        # Common in MIMIC-CXR and CheXpert Plus: asking for findings would reward inventing them.
        return "impression"
    return "findings_impression" if impression.strip() else "findings"


def context_text(record: StudyRecord, template: str = "project") -> str:
    """The clinical context line(s) of a prompt; empty fields are left out.

    UniRG's inputs are the indication and the comparison; the project's template adds age and sex.
    """
    fields = [("Indication", record.indication), ("Comparison", record.comparison)]
    if template != "unirg_paper":
        fields += [("Age", record.age), ("Sex", record.sex)]
    parts = [(label, value.strip()) for label, value in fields if value and value.strip()]
    return "\n".join(f"{label}: {value}" for label, value in parts)


def task_text(sections: str, template: str = "project") -> str:
    """The instruction line of the template chosen for a study with these reference `sections`."""
    if template == "unirg_paper" and sections in _PAPER_TASK:
        return _PAPER_TASK[sections]
    if template not in ("project", "unirg_paper"):
        raise ValueError(f"prompt.template: unknown template {template!r}; use project or unirg_paper")
    return _TASK[sections]


def build_prompt(record: StudyRecord, prompt_format: str, longitudinal: bool = False,
                 system_prompt: str | None = None, template: str = "project") -> tuple[list[dict[str, Any]], int]:
    """Conversational prompt for a study, and how many images it expects (prior image included)."""
    sections = sections_of(record.findings, record.impression)
    lines = [task_text(sections, template)]
    context = context_text(record, template)
    if context:
        lines.append(context)
    if prompt_format == "reasoning":
        lines.append(reasoning_instruction())
    lines.append(_ANSWER_FORM[sections])
    text = "\n".join(lines)
    n_images = len(record.images)
    messages: list[dict[str, Any]] = []
    if system_prompt:
        # Longitudinal prompts use content blocks throughout (one Arrow type per column).
        system_content: Any = [{"type": "text", "text": system_prompt}] if longitudinal else system_prompt
        messages.append({"role": "system", "content": system_content})
    if longitudinal and record.prior is None:
        # Structured content for every row of a longitudinal dataset: one Arrow column cannot mix
        # string and list content, and some studies have no prior.
        content = [{"type": "image", "text": None} for _ in range(n_images)]
        content.append({"type": "text", "text": text})
        messages.append({"role": "user", "content": content})
    elif longitudinal and record.prior is not None:
        # The prior image comes first, with its report, so "compared with the prior" has a referent.
        content = [{"type": "text", "text": "Prior study:"}, {"type": "image", "text": None},
                   {"type": "text", "text": f"Prior report: {record.prior.report}\nCurrent study:"}]
        content += [{"type": "image", "text": None} for _ in range(n_images)]
        content.append({"type": "text", "text": text})
        messages.append({"role": "user", "content": content})
        n_images += 1
    else:
        messages.append({"role": "user", "content": text})
    return messages, n_images


def reference_report(findings: str, impression: str) -> str:
    """The reference written in the completion format the prompts ask for."""
    if not findings.strip():
        return f"Impression: {impression.strip()}"
    report = f"Findings: {findings.strip()}"
    return f"{report}\nImpression: {impression.strip()}" if impression.strip() else report


def _sentences(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"(?<=[.!?])\s+", text or "") if part.strip()]


def _by_region(findings: str, checklist: Checklist) -> dict[str, list[str]]:
    """The reference's sentences under the region each describes (the checklist's terms; unplaced ones dropped)."""
    regions: dict[str, list[str]] = {region.name: [] for region in checklist.regions}
    for sentence in _sentences(findings):
        region = checklist.region_for_sentence(sentence)
        if region is not None:
            regions[region].append(sentence.rstrip("."))
    return regions


def reasoning_block(labels: list[int | None] | None, findings: str, impression: str,
                    checklist: Checklist | None = None) -> str:
    """A rule-based Med-R2 style <think> block: perception (anatomy walk, lungs by side), diagnosis, reflection.

    The walk and which observations belong to each region come from the checklist (default: the shipped
    one). Perception restates the reference's own sentences under the region they describe (so the block
    and the report agree by construction); regions the report does not mention fall back to the labels.
    This is the offline fallback: `unirg traces` writes teacher traces that SFT prefers when it has them.
    """
    checklist = checklist or load_checklist()
    by_name = dict(zip(CHEXPERT_OBSERVATIONS, labels or [None] * len(CHEXPERT_OBSERVATIONS), strict=True))
    regions = _by_region(findings, checklist)
    perception, positives = [], []
    for walked in checklist.walked_regions:
        region, observations = walked.name, walked.observation_names
        seen = [name.lower() for name in observations if by_name.get(name) == 1]
        uncertain = [name.lower() for name in observations if by_name.get(name) == -1]
        positives += [(name, region) for name in seen]
        stated = regions[region]
        if region == "lungs" and stated:
            # Lungs by zone: the right and left lung, then what is bilateral or unsided (a rule of these
            # fallback traces, not of the checklist).
            sides = {"right lung": [], "left lung": [], "both lungs": []}
            for sentence in stated:
                lowered = sentence.lower()
                side = ("right lung" if "right" in lowered and "left" not in lowered else
                        "left lung" if "left" in lowered and "right" not in lowered else "both lungs")
                sides[side].append(sentence)
            if not sides["right lung"] and not sides["left lung"]:
                statement = ", ".join(sides["both lungs"])
            else:
                statement = "; ".join(f"{side}: {', '.join(found) if found else 'clear'}"
                                      for side, found in sides.items() if found or side != "both lungs")
        elif stated:
            statement = ", ".join(stated)
        elif seen:
            statement = ", ".join(seen)
        elif uncertain:
            statement = "possible " + ", ".join(uncertain)
        else:
            statement = walked.normal
        perception.append(f"{region}: {statement}")
    if positives:
        diagnosis = ", ".join(name for name, _ in positives)
    elif labels is None and impression.strip():
        diagnosis = impression.strip().rstrip(".")  # real data: no labels, the impression is the diagnosis
    else:
        summary = [region.normal for region in checklist.regions if not region.walked]
        diagnosis = summary[0] if summary else "no acute abnormality"
    reflection = ("; ".join(f"{name} re-checked in the {region}, consistent" for name, region in positives)
                  if positives else "re-checked each region, nothing missed")
    return (f"<think>\nPerception: {'. '.join(perception)}.\nDiagnosis: {diagnosis}.\n"
            f"Reflection: {reflection}.\n</think>\n")


def completion_for(example: dict[str, Any], prompt_format: str,
                   traces: Mapping[tuple[str, str], str] | None = None) -> str:
    """The SFT target for a dataset row: the reference report, after a reasoning block when asked for.

    The reasoning block is the row's teacher trace when `traces` (keyed by (dataset, study id); see
    unirg.reasoning.traces_file.load_traces_for_sft) has one, else the rule-based block.
    """
    report = example["reference"]
    if prompt_format == "reasoning":
        trace = traces.get(trace_key(example)) if traces else None
        if trace is None:
            trace = reasoning_block(example.get("reference_labels"), example.get("reference_findings", ""),
                                    example.get("reference_impression", ""))
        return trace + report
    return report


def trace_key(example: Mapping[str, Any]) -> tuple[str, str]:
    """Which teacher trace belongs to a dataset row: (dataset name, study id); study ids repeat across datasets."""
    return str(example.get("dataset") or ""), str(example.get("study_id") or "")
