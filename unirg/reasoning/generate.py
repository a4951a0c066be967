"""Ask the teacher for a trace per training study, keep those that agree with the reference, count the rest.

Studies already in the traces file (kept) or in its dropped list are skipped, so a killed run resumes
where it stopped; failed requests are never recorded and are asked again on the next run. Requests run
`concurrency` at a time; images are decoded and encoded in the calling thread, answers checked and
written there too, so the files have one writer. Nothing here prints report or trace text.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unirg.reasoning.knowledge import Checklist
from unirg.reasoning.teacher import TeacherClient, TeacherRequestError, student_request, teacher_messages
from unirg.reasoning.trace_check import CONTRADICTS, REQUEST_FAILED, check_answer
from unirg.reasoning.traces_file import (
    DroppedRecord,
    TraceRecord,
    append_row,
    drop_partial_row,
    dropped_path,
    read_dropped,
    read_traces,
)


@dataclass
class TracesSummary:
    """What one run of `unirg traces` did, and what the files hold afterwards."""

    asked: int = 0
    kept: int = 0
    already_done: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> studies
    contradictions: Counter = field(default_factory=Counter)  # "Observation: asserts|denies|leaves out" -> studies
    request_errors: list[str] = field(default_factory=list)  # a few distinct messages (endpoint and error only)
    file_kept: int = 0
    file_dropped: int = 0

    def lines(self) -> list[str]:
        """The summary as printed: counts only, never text."""
        dropped = sum(self.dropped.values())
        lines = [f"asked the teacher about {self.asked} studies: kept {self.kept}, dropped {dropped}"
                 + (f" ({self.already_done} done by an earlier run, skipped)" if self.already_done else "")]
        for reason, count in self.dropped.most_common():
            lines.append(f"  dropped, {reason}: {count}")
            if reason == CONTRADICTS:
                lines += [f"    {detail}: {n}" for detail, n in sorted(self.contradictions.items(),
                                                                         key=lambda item: (-item[1], item[0]))]
            if reason == REQUEST_FAILED:
                lines += [f"    e.g. {message}" for message in self.request_errors]
                lines.append("    (failed requests are not recorded: run again to retry them)")
        lines.append(f"traces file: {self.file_kept} kept, {self.file_dropped} dropped")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {"asked": self.asked, "kept": self.kept, "already_done": self.already_done,
                "dropped": dict(self.dropped), "contradictions": dict(self.contradictions),
                "file_kept": self.file_kept, "file_dropped": self.file_dropped}


def summary_path(path: str | Path) -> Path:
    """Where the counts of the last run go: traces.jsonl -> traces.summary.json."""
    path = Path(path)
    return path.with_name(f"{path.stem}.summary.json")


def generate_traces(rows: Any, client: TeacherClient, out: str | Path, teacher: str, checklist: Checklist, *,
                    concurrency: int = 8, allow_omissions: bool = False, retry_dropped: bool = False,
                    limit: int | None = None, progress: bool = True,
                    on_request_error: Callable[[str], None] | None = None) -> TracesSummary:
    """Ask for, check and write the traces of `rows` (a dataset with the columns of unirg.data.build_dataset).

    `teacher` is the name recorded with each trace; `limit` caps how many studies are asked this run.
    """
    from unirg.prompts.formats import trace_key

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for path in (out, dropped_path(out)):
        drop_partial_row(path)
    done = set(read_traces(out))
    if not retry_dropped:
        done |= set(read_dropped(out))
    summary = TracesSummary()
    keys = [trace_key(row) for row in _columns(rows)]
    first: dict[tuple[str, str], int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)  # a mixture can repeat a study; it needs one trace
    pending = [i for key, i in first.items() if key not in done]
    summary.already_done = len(first) - len(pending)
    if limit is not None:
        pending = pending[:limit]

    def submit(pool: ThreadPoolExecutor, index: int) -> tuple[Future, Any]:
        row = rows[index]  # decodes the images, here in the calling thread
        messages = teacher_messages(row["images"] or [], student_request(row["prompt"]), row["reference"], checklist)
        return pool.submit(client.complete, messages), reference_labels(row)

    bar = _progress(len(pending), progress)
    pool = ThreadPoolExecutor(max_workers=concurrency)
    in_flight: dict[Future, tuple[int, Any]] = {}
    queue: Iterator[int] = iter(pending)
    try:
        with out.open("a", encoding="utf-8") as kept_file, \
                dropped_path(out).open("a", encoding="utf-8") as dropped_file:
            while True:
                # Up to twice the concurrency prepared, so the server never waits for the next image to encode.
                while len(in_flight) < 2 * concurrency:
                    index = next(queue, None)
                    if index is None:
                        break
                    future, labels = submit(pool, index)
                    in_flight[future] = (index, labels)
                if not in_flight:
                    break
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    index, labels = in_flight.pop(future)
                    _record(future, labels, keys[index], summary, kept_file, dropped_file, teacher, checklist,
                            allow_omissions, on_request_error)
                    bar.update(1)
                    bar.set_postfix(kept=summary.kept, dropped=sum(summary.dropped.values()), refresh=False)
    finally:
        # On an interrupt, return at once: the caller stops the server, which ends the requests in flight.
        pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
    summary.file_kept, summary.file_dropped = len(read_traces(out)), len(read_dropped(out))
    summary_path(out).write_text(json.dumps(summary.to_json(), indent=2) + "\n", encoding="utf-8")
    return summary


def reference_labels(row: dict[str, Any]) -> list[int | None]:
    """The reference's 14 CheXpert labels: the dataset's, else the labeler's on the reference report."""
    if row.get("reference_labels") is not None:
        return list(row["reference_labels"])
    from rewards.labeler import label_report

    return list(label_report(row["reference"]))


def _record(future: Future, labels: Any, key: tuple[str, str], summary: TracesSummary, kept_file,
            dropped_file, teacher: str, checklist: Checklist, allow_omissions: bool,
            on_request_error: Callable[[str], None] | None) -> None:
    """Check one finished request and write its row (kept or dropped); a failed request is only counted."""
    dataset, study_id = key
    summary.asked += 1
    try:
        answer = future.result()
    except TeacherRequestError as error:
        summary.dropped[REQUEST_FAILED] += 1
        if str(error) not in summary.request_errors and len(summary.request_errors) < 3:
            summary.request_errors.append(str(error))
        if on_request_error is not None:
            on_request_error(str(error))
        return
    verdict = check_answer(answer.text, labels, answer.finish_reason, allow_omissions)
    if verdict.kept:
        summary.kept += 1
        append_row(kept_file, TraceRecord(study_id=study_id, dataset=dataset, trace=verdict.trace,
                                          teacher=teacher, checklist=checklist.tag))
        return
    summary.dropped[verdict.reason] += 1
    if verdict.reason == CONTRADICTS:
        summary.contradictions.update(verdict.details)
    append_row(dropped_file, DroppedRecord(study_id=study_id, dataset=dataset, reason=verdict.reason,
                                           details=verdict.details, teacher=teacher, checklist=checklist.tag))


def _columns(rows: Any) -> list[dict[str, str]]:
    """The (dataset, study_id) of every row, read by column so no image is decoded."""
    datasets = rows["dataset"] if "dataset" in rows.column_names else [""] * len(rows)
    return [{"dataset": d, "study_id": s} for d, s in zip(datasets, rows["study_id"], strict=True)]


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="teacher traces", unit="study", disable=not enabled, dynamic_ncols=True)
