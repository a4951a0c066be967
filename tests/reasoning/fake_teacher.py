"""A stdlib stand-in for an OpenAI-compatible teacher server with canned answers, and studies to ask it about.

Each study's indication carries a case word (`case-consistent`, `case-garbage`, …); the server finds it in
the request and answers that case's canned text. It checks that every request carries a PNG data URL,
the checklist and the reference, and counts requests per case.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

CONSISTENT = ("<think>\nPerception: Airway: the trachea is midline.\nLungs: both lungs are clear in every zone.\n"
              "Pleura: no pleural effusion. No pneumothorax.\nHeart and mediastinum: the cardiac silhouette is "
              "enlarged, wider than half the chest.\nBones: intact.\nDevices: none.\n"
              "**Diagnosis:** Cardiomegaly.\nReflection: the heart border reaches towards the left chest wall on "
              "re-check, so the enlarged heart stands.\n</think>\nFindings: the model may add a report; it is ignored.")
CONTRADICTING = ("<think>\nPerception: There is a large right pneumothorax with a visible pleural line. "
                 "No pleural effusion.\nDiagnosis: Right pneumothorax.\nReflection: confirmed.\n</think>")
OMITTING = ("<think>\nPerception: The heart is enlarged. Lungs are clear.\nDiagnosis: Cardiomegaly.\n"
            "Reflection: heart size re-checked.\n</think>")
CITING = ("<think>\nPerception: As the reference report states, the lungs are clear.\nDiagnosis: No acute process.\n"
          "Reflection: agrees with the report.\n</think>")
NORMAL = ("Perception: The lungs are clear. No pleural effusion or pneumothorax. Heart size is normal.\n"
          "Diagnosis: No acute cardiopulmonary process.\nReflection: each region re-checked, nothing missed.")
ANSWERS = {
    "consistent": CONSISTENT,
    "contradicting": CONTRADICTING,
    "garbage": "lorem ipsum dolor sit amet, the the the",
    "missing": "<think>\nPerception: lungs clear.\nDiagnosis: normal chest.\n</think>",
    "empty": "",
    "omitting": OMITTING,
    "citing": CITING,
    "flaky": NORMAL,  # after a first request that fails with HTTP 500
}
# (case, findings, impression) of each study.
STUDIES = [
    ("consistent", "The heart is enlarged. No pleural effusion or pneumothorax.", "Cardiomegaly."),
    ("contradicting", "Small right pleural effusion.", "Right pleural effusion."),
    ("garbage", "Lungs are clear.", "Normal chest."),
    ("missing", "Lungs are clear.", "Normal chest."),
    ("empty", "Lungs are clear.", "Normal chest."),
    ("omitting", "The heart is enlarged. Small left pleural effusion.", "Cardiomegaly and effusion."),
    ("citing", "Lungs are clear.", "Normal chest."),
    ("flaky", "Lungs are clear. Heart size is normal.", "No acute cardiopulmonary process."),
]


def write_studies(folder: Path) -> Path:
    """A manifest of the studies above, one small PNG each; returns the manifest path."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (case, findings, impression) in enumerate(STUDIES):
        Image.new("L", (64, 64), color=40 + 20 * i).save(folder / "img" / f"{case}.png")
        rows.append({"study_id": f"s{i}", "images": [f"img/{case}.png"], "findings": findings,
                     "impression": impression, "indication": f"Cough, case-{case}."})
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return manifest


class FakeTeacher:
    """The server, on 127.0.0.1 and a free port, in a background thread."""

    def __init__(self, model: str = "teacher-x") -> None:
        self.model = model
        self.requests: Counter = Counter()
        self.problems: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, code: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802 (http.server's name)
                if self.path == "/v1/models":
                    self._reply(200, {"data": [{"id": owner.model}]})
                else:
                    self._reply(404, {})

            def do_POST(self):  # noqa: N802
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner._check(request)
                content = request["messages"][-1]["content"]
                text = next(block["text"] for block in content if block["type"] == "text")
                case = re.search(r"case-(\w+)", text).group(1)
                owner.requests[case] += 1
                if case == "flaky" and owner.requests[case] == 1:
                    self._reply(500, {"error": "engine busy"})
                    return
                self._reply(200, {"choices": [{"message": {"role": "assistant", "content": ANSWERS[case]},
                                               "finish_reason": "stop"}]})

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _check(self, request: dict) -> None:
        content = request["messages"][-1]["content"]
        images = [block for block in content if block["type"] == "image_url"]
        text = next(block["text"] for block in content if block["type"] == "text")
        if request.get("model") != self.model:
            self.problems.append(f"model {request.get('model')}")
        if len(images) != 1 or not images[0]["image_url"]["url"].startswith("data:image/png;base64,"):
            self.problems.append("no PNG data URL")
        if "Checklist cxr-chexpert14 v1" not in text or "Findings:" not in text:
            self.problems.append("no checklist or reference")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeTeacher:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
