"""Recipes: a YAML file plus dotted command-line overrides, validated into one typed config."""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from unirg.data.config import DataConfig, PromptConfig
from unirg.errors import RecipeError
from unirg.reasoning.config import TracesConfig
from unirg.rollout.config import ClusterConfig, RolloutConfig

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraConfig(_Section):
    """LoRA adapter settings, handed to peft.LoraConfig."""

    r: int = Field(16, ge=1, description="Rank of the adapter matrices.")
    alpha: int = Field(32, ge=1, description="Scaling numerator (lora_alpha).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the adapter input.")
    target_modules: list[str] | str = Field(
        "all-linear", description="Module names to adapt, or 'all-linear'.")


class TinyModelConfig(_Section):
    """The tiny offline VLM built when `model.name_or_path` is `tiny`."""

    arch: Literal["qwen2_vl", "qwen2_5_vl", "qwen3_vl"] = Field("qwen2_vl", description="Architecture family.")
    hidden_size: int = Field(64, ge=16, description="Width of the language model.")
    num_layers: int = Field(2, ge=1, description="Decoder layers of the language model.")
    image_size: int = Field(224, ge=56, description="Largest image side the processor keeps, in pixels.")
    vision_width: int = Field(64, ge=16, description="Width of the vision encoder.")
    vision_depth: int = Field(2, ge=1, description="Blocks of the vision encoder.")
    seed: int = Field(0, description="Seed of the random initialisation.")


class ModelConfig(_Section):
    """The policy: any Hugging Face image-text-to-text model."""

    name_or_path: str = Field(..., description="HF model id, local folder, or 'tiny' to build the tiny "
                              "offline VLM into the run's cache.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "float32", description="Weights dtype; float32 on CPU.")
    trust_remote_code: bool = Field(False, description="Run code shipped with the model. Off unless you "
                                    "trust the model's source.")
    attn_implementation: str | None = Field(None, description="e.g. sdpa, eager, flash_attention_2.")
    lora: LoraConfig | None = Field(None, description="Train a LoRA adapter instead of all weights.")
    reference: str | None = Field(None, description="Checkpoint the KL term (grpo.beta > 0) is measured "
                                  "against; default: the starting policy. UniRG step 2 uses the best step-1 "
                                  "checkpoint here.")
    tiny: TinyModelConfig = Field(default_factory=TinyModelConfig)


class RewardEntry(_Section):
    """One reward plugin with its weight in the total reward."""

    name: str = Field(..., description="Built-in name, entry point, 'pkg.mod:obj' or 'path/file.py:obj'.")
    weight: float = Field(1.0, description="Weight of this reward in the sum TRL optimises.")
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword options of the plugin.")
    timeout_s: float | None = Field(None, gt=0, description="Give up on a call after this long; its scores "
                                    "are then missing for that batch (None: wait).")
    max_consecutive_failures: int = Field(3, ge=1, description="Stop the run when the plugin fails this many "
                                          "calls in a row.")


class OutputConfig(_Section):
    """Where a run writes checkpoints, metrics and logs."""

    dir: str = Field("runs/{recipe}", description="Run folder; {recipe} is replaced by the recipe name.")
    save_steps: int = Field(50, ge=1, description="Write a checkpoint every this many optimizer steps.")
    save_total_limit: int | None = Field(2, ge=1, description="Keep at most this many checkpoints.")


class LoggingConfig(_Section):
    """What a run logs and where."""

    completions: bool = Field(False, description="Log completion and report text. Off by default: reports "
                              "are patient data.")
    tensorboard: bool = Field(True, description="Write TensorBoard event files under <run>/tensorboard.")
    progress: bool = Field(True, description="Show a progress bar in the terminal.")
    logging_steps: int = Field(1, ge=1, description="Log metrics every this many steps.")


class Recipe(_Section):
    """A whole training recipe."""

    name: str = Field(..., description="Short name; used in the run folder.")
    description: str = Field("", description="One line on what the recipe trains.")
    seed: int = Field(0, description="Seed for data order, sampling and initialisation.")
    model: ModelConfig
    data: DataConfig = Field(default_factory=DataConfig)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    rewards: list[RewardEntry] = Field(default_factory=list, description="Reward plugins and weights (at "
                                       "least one unless grpo is null).")
    sft: dict[str, Any] | None = Field(None, description="Supervised warm start before GRPO: fields passed "
                                       "to trl.SFTConfig. Absent: GRPO starts from model.name_or_path.")
    grpo: dict[str, Any] | None = Field(default_factory=dict, description="Fields passed to trl.GRPOConfig. "
                                        "null: the run ends after SFT (an SFT-only recipe).")
    evaluate: bool = Field(True, description="Evaluate on the held-out split before and after GRPO and put "
                           "the table in the run report.")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    traces: TracesConfig = Field(default_factory=TracesConfig, description="Teacher reasoning traces "
                                 "(`unirg traces`) and the file reasoning SFT learns them from.")

    @field_validator("grpo")
    @classmethod
    def _check_grpo_fields(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        from trl import GRPOConfig

        return None if value is None else _validate_dataclass_fields("grpo", value, GRPOConfig)

    @model_validator(mode="after")
    def _check_some_training(self) -> Recipe:
        if self.grpo is None and self.sft is None:
            raise ValueError("grpo and sft are both null: the recipe trains nothing; give at least one of them")
        if self.grpo is not None and not self.rewards:
            raise ValueError("rewards: GRPO needs at least one reward plugin (or set grpo: null for SFT only)")
        if self.traces.path and self.prompt.format != "reasoning":
            raise ValueError("traces.path: teacher traces are SFT targets of the reasoning format; set "
                             "prompt.format: reasoning, or unset traces.path")
        return self

    @model_validator(mode="after")
    def _check_reflection(self) -> Recipe:
        if self.rollout.reflection and self.prompt.format != "reasoning":
            raise ValueError("rollout.reflection re-checks the findings of the <think> block, which only the "
                             "reasoning format writes: set prompt.format: reasoning, or rollout.reflection: false")
        if self.rollout.reflection and self.rollout.backend != "hf":
            raise ValueError(f"rollout.reflection: two-pass rollouts are implemented and tested with rollout.backend: "
                             f"hf only, not {self.rollout.backend}; use backend hf, or rollout.reflection: false")
        return self

    @field_validator("sft")
    @classmethod
    def _check_sft_fields(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        from trl import SFTConfig

        return None if value is None else _validate_dataclass_fields("sft", value, SFTConfig)

    def run_dir(self) -> Path:
        """The folder this run writes to."""
        return Path(self.output.dir.format(recipe=self.name))

    def to_yaml(self) -> str:
        """The resolved recipe as YAML, as saved beside a run's outputs."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# Fields the recipe sets itself; setting them under `grpo` or `sft` would silently fight the recipe.
RESERVED_FIELDS = {
    "output_dir": "output.dir", "seed": "seed", "save_steps": "output.save_steps",
    "logging_steps": "logging.logging_steps", "max_completion_length": "rollout.max_new_tokens",
    "temperature": "rollout.temperature", "top_p": "rollout.top_p", "report_to": "logging.tensorboard",
    "push_to_hub": "(never: unirg does not push to any hub)",
}


def _validate_dataclass_fields(section: str, values: dict[str, Any], config_class: type) -> dict[str, Any]:
    """Check keys and simple types of a passthrough section against a TRL config dataclass."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    for key, value in values.items():
        if key in RESERVED_FIELDS:
            raise ValueError(f"'{section}.{key}' is set by the recipe itself: use {RESERVED_FIELDS[key]}")
        if key not in fields:
            raise ValueError(f"unknown field '{section}.{key}'{_did_you_mean(key, fields)}")
        expected = _simple_types(hints.get(key))
        # bool is an int subclass: an int or float field must not take True silently.
        wrong_bool = isinstance(value, bool) and expected is not None and bool not in expected
        if expected and (wrong_bool or not isinstance(value, expected)):
            names = " or ".join(sorted({"null" if t is type(None) else t.__name__ for t in expected},
                                       key=lambda name: (name == "null", name)))
            raise ValueError(f"'{section}.{key}' should be {names}, got {type(value).__name__} {value!r}")
    return values


def _simple_types(hint: Any) -> tuple[type, ...] | None:
    """The plain Python types a type hint admits, or None when the hint is too rich to check here."""
    allowed = {int: (int,), float: (int, float), bool: (bool,), str: (str,), type(None): (type(None),)}
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    result: list[type] = []
    for arg in args:
        if arg not in allowed:
            return None
        result.extend(allowed[arg])
    return tuple(result)


def _did_you_mean(key: str, candidates: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def resolve_recipe_path(recipe: str | Path) -> Path:
    """Find a recipe by path or by name under `recipes/` (`demo` → recipes/demo.yaml)."""
    path = Path(recipe)
    if path.is_file():
        return path
    named = RECIPES_DIR / f"{recipe}.yaml"
    if named.is_file():
        return named
    known = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    raise RecipeError(f"recipe file not found: {recipe}{_did_you_mean(str(recipe), known)} "
                      f"(shipped recipes: {', '.join(known)})")


# YAML 1.1 (PyYAML) reads 1e-4 as a string: only 1.0e-4 is a float. Users write both.
_EXPONENT_FLOAT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _coerce_floats(node: Any) -> Any:
    """Turn strings such as '1e-4' into floats throughout a raw recipe tree."""
    if isinstance(node, dict):
        return {key: _coerce_floats(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_coerce_floats(value) for value in node]
    if isinstance(node, str) and _EXPONENT_FLOAT.fullmatch(node.strip()):
        return float(node)
    return node


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b.0.c=value` into its key path and a YAML-parsed value."""
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise RecipeError(f"bad override {text!r}: write key.path=value, e.g. grpo.num_generations=8 "
                          "or rewards.0.weight=0.5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise RecipeError(f"bad override {text!r}: the value is not valid YAML ({error})") from None
    return key.split("."), value


def apply_override(tree: dict[str, Any], path: list[str], value: Any, text: str) -> None:
    """Set `value` at `path` inside the raw recipe tree; lists are indexed by number."""
    node: Any = tree
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        where = ".".join(path[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise RecipeError(f"bad override {text!r}: '{where}' needs an index below {len(node)}")
            index = int(part)
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise RecipeError(f"bad override {text!r}: '{'.'.join(path[:depth])}' is a value, not a section")


def load_recipe(recipe: str | Path, overrides: typing.Sequence[str] = ()) -> Recipe:
    """Read a recipe YAML, apply `key=value` overrides (they win), and validate it."""
    path = resolve_recipe_path(recipe)
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(tree, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections (model, data, rewards, grpo, …)")
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(tree, keys, value, text)
    tree = _coerce_floats(tree)
    try:
        return Recipe.model_validate(tree)
    except ValidationError as error:
        raise RecipeError(f"{path}: invalid recipe\n" + _format_errors(error)) from None


def _format_errors(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            parent = _model_at(Recipe, item["loc"][:-1])
            hint = _did_you_mean(str(item["loc"][-1]), parent.model_fields) if parent else ""
            lines.append(f"  {location}: unknown key{hint}")
        elif item["type"] == "value_error":
            lines.append(f"  {item['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"  {location}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class found by walking `loc` from `model` (list indices are skipped)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if isinstance(current, type) else None
        if field is None:
            return None
        annotation = field.annotation
        candidates = typing.get_args(annotation) or (annotation,)
        candidates = [c for arg in candidates for c in (typing.get_args(arg) or (arg,))]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if current is None:
            return None
    return current
