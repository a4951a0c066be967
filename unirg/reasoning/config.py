"""The recipe's `traces` section: which teacher writes reasoning traces, how, and where SFT reads them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Fields of the chat request the traces settings already set.
_REQUEST_FIELDS = {"model": "traces.teacher_model", "messages": "(the teacher prompt)",
                   "max_tokens": "traces.max_tokens", "temperature": "traces.temperature"}


class TeacherServeConfig(BaseModel):
    """How `unirg traces` serves a local teacher folder with vLLM's OpenAI-compatible server."""

    model_config = ConfigDict(extra="forbid")

    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0, description="Share of GPU memory vLLM may take.")
    max_model_len: int | None = Field(None, ge=256, description="Context length (prompt + trace); the teacher "
                                      "prompt holds the image, the checklist (~2k tokens) and the reference.")
    extra_args: list[str] = Field(default_factory=list, description="More api_server arguments, e.g. "
                                  "[--tensor-parallel-size, '4'] or [--dtype, float32].")
    python: str | None = Field(None, description="Python that has vLLM installed (default: this one).")
    startup_timeout_s: float = Field(1800.0, gt=0, description="Give up when the server is not healthy by then.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment of the server process.")


class TracesConfig(BaseModel):
    """Teacher reasoning traces (`unirg traces`) and their use as SFT targets of the reasoning format."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(None, description="Traces file (JSONL) that `unirg traces` writes and reasoning SFT "
                             "reads: studies with a kept trace learn it, the others the rule-based trace. "
                             "{recipe} is replaced by the recipe name.")
    teacher: str | None = Field(None, description="Local folder of the teacher VLM, served by vLLM on loopback "
                                "for the run of `unirg traces`.")
    teacher_url: str | None = Field(None, description="Base URL (…/v1) of a teacher already served by an "
                                    "OpenAI-compatible server; instead of `teacher`.")
    teacher_model: str | None = Field(None, description="Model name asked of teacher_url (default: the first "
                                      "model the server lists).")
    api_key_env: str | None = Field(None, description="Environment variable holding teacher_url's API key.")
    checklist: str | None = Field(None, description="Checklist YAML given to the teacher (default: the shipped "
                                  "cxr_checklist_v1.yaml).")
    max_tokens: int = Field(1024, ge=16, description="Longest teacher answer, in tokens.")
    temperature: float = Field(0.2, ge=0.0, description="Teacher sampling temperature.")
    concurrency: int = Field(8, ge=1, description="Requests in flight at once.")
    request_timeout_s: float = Field(600.0, gt=0, description="Give up on one request after this long.")
    retries: int = Field(2, ge=0, description="Retries of a request that failed (connection, 5xx, 429).")
    request_options: dict[str, Any] = Field(default_factory=dict, description="More fields of each chat request, "
                                            "e.g. top_p, seed, min_tokens, or chat_template_kwargs: "
                                            "{enable_thinking: false} for a Qwen3 teacher.")
    allow_omissions: bool = Field(False, description="Keep a trace that leaves out a finding the reference "
                                  "reports (it still must not deny it or assert one the reference lacks).")
    serve: TeacherServeConfig = Field(default_factory=TeacherServeConfig)

    @field_validator("request_options")
    @classmethod
    def _no_reserved_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if key in _REQUEST_FIELDS:
                raise ValueError(f"traces.request_options.{key} is set by {_REQUEST_FIELDS[key]}; set it there")
        return value

    @model_validator(mode="after")
    def _one_teacher(self) -> TracesConfig:
        if self.teacher and self.teacher_url:
            raise ValueError("traces.teacher and traces.teacher_url are both set: give the local folder to serve, "
                             "or the URL of a served teacher, not both")
        return self

    def resolved_path(self, recipe_name: str) -> str | None:
        """`path` with {recipe} filled in."""
        return self.path.format(recipe=recipe_name) if self.path else None
