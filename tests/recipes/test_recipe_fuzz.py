"""Fuzzing the recipe loader: any override either loads or fails with a RecipeError, never anything else."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unirg.errors import RecipeError
from unirg.recipe import load_recipe

KEYS = ["seed", "grpo.num_generations", "grpo.beta", "grpo.learning_rate", "rewards.0.weight", "rewards.9.name",
        "model.tiny.hidden_size", "data.synthetic.n_train", "data.on_bad_row", "prompt.format", "rollout.backend",
        "logging.completions", "output.dir", "modle", "grpo.bogus", "sft.max_steps", "model.lora.r", "a.b.c"]
VALUES = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.booleans(), st.none(),
                   st.text(max_size=20), st.lists(st.integers(), max_size=3))
EXAMPLES = int(os.environ.get("UNIRG_FUZZ_EXAMPLES", "300"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=4))
def test_overrides_load_or_raise_recipe_error(pairs):
    overrides = [f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}" for key, value in pairs]
    try:
        load_recipe("demo", overrides)
    except RecipeError:
        pass


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_override_text(text):
    try:
        load_recipe("demo", [text])
    except RecipeError:
        pass
