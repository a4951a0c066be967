"""LLM-judge error-count reward (CheXprompt/GREEN style): an LLM counts errors, the reward is 1/(errors+1).

The judge is any OpenAI-compatible chat-completions endpoint (a local vLLM server, or a hosted API),
given by `base_url` and `model` in the recipe's reward options. The prompt asks for a fixed,
line-oriented answer; `parse_error_counts` reads it here, so the numbers do not depend on the judge's
own parsing. An answer that cannot be parsed gives None, which TRL leaves out of the step.

UniRG step 2 uses this reward at weight 0.5, counting clinically significant errors.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from rewards.api import RewardPlugin
from unirg.errors import RewardError

# The six error categories of CheXprompt and GREEN, in their order (a)-(f).
ERROR_CATEGORIES: tuple[str, ...] = (
    "False report of a finding in the candidate",
    "Missing a finding present in the reference",
    "Misidentification of a finding's anatomic location or position",
    "Misassessment of the severity of a finding",
    "Mentioning a comparison that is not in the reference",
    "Omitting a comparison that the reference describes",
)
SIGNIFICANT, INSIGNIFICANT = "Clinically Significant Errors", "Clinically Insignificant Errors"

SYSTEM_PROMPT = "You are a board-certified radiologist who grades chest X-ray reports carefully and concisely."

PROMPT_TEMPLATE = """Compare a candidate chest X-ray report with the reference report written for the same study.
Count the candidate's errors against the reference in each category below. Judge clinical content only:
ignore wording, style and the order of sentences.

{categories}

Count an error as clinically significant when it could change the patient's management, and as clinically
insignificant otherwise. Answer in exactly this format, one count (a whole number) per line, then stop:

[{significant}]:
{answer_lines}
[{insignificant}]:
{answer_lines}

Reference report:
{reference}

Candidate report:
{candidate}
"""


def build_prompt(candidate: str, reference: str) -> str:
    """The judge prompt for one candidate report and its reference."""
    letters = "abcdef"
    categories = "\n".join(f"({letter}) {name}" for letter, name in zip(letters, ERROR_CATEGORIES, strict=True))
    answer_lines = "\n".join(f"({letter}) {name}: <count>" for letter, name in zip(letters, ERROR_CATEGORIES,
                                                                                     strict=True))
    return PROMPT_TEMPLATE.format(categories=categories, answer_lines=answer_lines, significant=SIGNIFICANT,
                                  insignificant=INSIGNIFICANT, reference=reference.strip(),
                                  candidate=candidate.strip())


@dataclass(frozen=True)
class ErrorCounts:
    """Per-category error counts read from one judge answer, in ERROR_CATEGORIES order."""

    significant: tuple[int, ...]
    insignificant: tuple[int, ...]

    def total(self, include_insignificant: bool = False) -> int:
        return sum(self.significant) + (sum(self.insignificant) if include_insignificant else 0)


_SECTION = re.compile(r"\[\s*(clinically\s+(?:in)?significant\s+errors)\s*\]", re.IGNORECASE)
_COUNT_LINE = re.compile(r"^\W*\(?\s*([a-f])\s*\)[^:\n]*:\s*\**\s*(\d+)", re.IGNORECASE | re.MULTILINE)


def parse_error_counts(answer: str) -> ErrorCounts | None:
    """Read the six counts under each section header of a judge answer; None when a section is missing.

    Tolerates markdown emphasis, extra prose after a count ("1. The candidate reports ..."), and
    missing category lines (counted as 0, as GREEN does). A header without any count line is not
    an answer and gives None.
    """
    headers = list(_SECTION.finditer(answer))
    sections: dict[str, tuple[int, ...]] = {}
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(answer)
        counts = dict.fromkeys("abcdef", 0)
        lines = list(_COUNT_LINE.finditer(answer, header.end(), end))
        if not lines:
            continue
        for line in lines:
            counts[line.group(1).lower()] = int(line.group(2))
        key = "insignificant" if "insignificant" in header.group(1).lower() else "significant"
        sections.setdefault(key, tuple(counts.values()))
    if "significant" not in sections:
        return None
    return ErrorCounts(sections["significant"], sections.get("insignificant", (0,) * 6))


def error_count_reward(counts: ErrorCounts | None, include_insignificant: bool = False) -> float | None:
    """1/(errors+1): 1.0 for an error-free report, 0.5 for one error; None when the answer was unreadable."""
    return None if counts is None else 1.0 / (counts.total(include_insignificant) + 1)


class ChatClient:
    """A minimal client for an OpenAI-compatible /chat/completions endpoint (stdlib only)."""

    def __init__(self, base_url: str, model: str, api_key_env: str | None = None, timeout: float = 120.0,
                 retries: int = 2, max_tokens: int = 512, temperature: float = 0.0) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.timeout = timeout
        self.retries = retries
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.api_key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not self.api_key:
            raise RewardError(f"llm_errors: options.api_key_env names {api_key_env}, which is not set")

    def complete(self, prompt: str, system: str = SYSTEM_PROMPT) -> str:
        """The judge's answer text for one prompt; raises RewardError after the retries are spent."""
        body = json.dumps({"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens,
                           "messages": [{"role": "system", "content": system},
                                        {"role": "user", "content": prompt}]}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last_error: Exception | None = None
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = json.loads(response.read().decode())
                return payload["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as error:
                last_error = error
                if error.code < 500 and error.code != 429:  # a client error will not fix itself
                    break
            except (urllib.error.URLError, TimeoutError, KeyError, IndexError, json.JSONDecodeError) as error:
                last_error = error
            time.sleep(min(2.0 ** attempt, 10.0))
        # The message names the endpoint, never the reports (they are patient data).
        raise RewardError(f"llm_errors: the judge at {self.url} (model {self.model}) did not answer: {last_error}")


class LLMErrorJudge:
    """Scores candidate reports against references with an LLM judge, several requests at a time."""

    def __init__(self, client: ChatClient, include_insignificant: bool = False, max_workers: int = 8) -> None:
        self.client = client
        self.include_insignificant = include_insignificant
        self.max_workers = max_workers

    def rewards(self, candidates: Sequence[str], references: Sequence[str]) -> list[float | None]:
        """1/(errors+1) per candidate; None where the judge's answer could not be parsed."""
        prompts = [build_prompt(c, r) for c, r in zip(candidates, references, strict=True)]
        with ThreadPoolExecutor(max_workers=max(1, self.max_workers)) as pool:
            answers = list(pool.map(self.client.complete, prompts))
        return [error_count_reward(parse_error_counts(a), self.include_insignificant) for a in answers]


class LLMErrors(RewardPlugin):
    """`llm_errors`: 1/(errors+1) from an LLM judge; range (0, 1], higher is better, None when unreadable.

    Options: base_url (e.g. http://127.0.0.1:8000/v1 for `vllm serve`), model, api_key_env (name of
    the variable holding the key, if the endpoint needs one), include_insignificant (default False:
    clinically significant errors only), max_workers, timeout, retries. Example: a report with one
    missed effusion and nothing else wrong scores 0.5.
    """

    name = "llm_errors"
    resources: dict[str, float] = {}  # the judge model runs behind its endpoint, not in this process

    def __init__(self, base_url: str, model: str, api_key_env: str | None = None,
                 include_insignificant: bool = False, max_workers: int = 8, timeout: float = 120.0,
                 retries: int = 2) -> None:
        self.judge = LLMErrorJudge(ChatClient(base_url, model, api_key_env, timeout=timeout, retries=retries),
                                   include_insignificant=include_insignificant, max_workers=max_workers)

    @staticmethod
    def weight_files(**_options) -> list:
        return []

    def score(self, reports: Sequence[str], references: Sequence[str]) -> list[float | None]:
        return self.judge.rewards(reports, references)
