"""The step-time breakdown of real GRPO steps of the tiny model: its parts add up to the measured step time.

Built through `build_trainer` (the `unirg rl` path) with a reference model (beta > 0) and two steps per
generation (so TRL computes old-policy log-probs and every other step reuses the generation buffer),
plus a reward plugin that sleeps a known time, to check each part lands where it belongs.
"""

from __future__ import annotations

import time

import pytest
from transformers import TrainerCallback

from unirg.recipe import load_recipe
from unirg.run_folder import read_rows
from unirg.training.step_timing import StepTimer

pytestmark = pytest.mark.slow

SLEEP_S = 0.2
SLOW_REWARD = f'''
import time


def slow(reports):
    """0.0 for every report, after {SLEEP_S} s."""
    time.sleep({SLEEP_S})
    return [0.0] * len(reports)
'''
STEPS = 4


class WallClock(TrainerCallback):
    """When each optimizer step ended, by a clock of its own."""

    def __init__(self) -> None:
        self.ends: dict[int, float] = {}

    def on_step_end(self, args, state, control, **kwargs):
        self.ends[state.global_step] = time.perf_counter()


@pytest.fixture(scope="module")
def timed_run(tmp_path_factory):
    from unirg.data import load_splits
    from unirg.models.loading import resolve_model_path
    from unirg.training.callbacks import MetricsFileCallback
    from unirg.training.grpo import build_trainer

    run_dir = tmp_path_factory.mktemp("timed")
    (run_dir / "slow_reward.py").write_text(SLOW_REWARD)
    recipe = load_recipe("demo", [
        "sft=null", "evaluate=false", f"grpo.max_steps={STEPS}", "data.synthetic.n_train=8",
        "data.synthetic.n_eval=4", "grpo.per_device_train_batch_size=4", "grpo.num_generations=2",
        "grpo.steps_per_generation=2", "grpo.beta=0.04", "output.save_steps=2", "rollout.max_new_tokens=16",
        "logging.progress=false", "logging.tensorboard=false", f"rewards.2.name={run_dir / 'slow_reward.py'}:slow"])
    splits = load_splits(recipe.data, recipe.prompt, run_dir)
    model_path = resolve_model_path(recipe.model, run_dir, corpus=list(splits.train["reference"]))
    clock = WallClock()
    trainer = build_trainer(recipe, run_dir / "grpo", splits.train, model_path,
                            callbacks=[MetricsFileCallback(run_dir / "metrics.jsonl"), clock])
    trainer.train()
    return read_rows(run_dir / "metrics.jsonl"), clock, trainer


def parts(row: dict) -> dict[str, float]:
    return {key.removeprefix("time/"): value for key, value in row.items() if key.startswith("time/")}


def test_parts_add_up_to_the_measured_step_time(timed_run):
    rows, clock, _ = timed_run
    assert [row["step"] for row in rows] == list(range(1, STEPS + 1))
    for row in rows:
        breakdown = parts(row)
        assert all(seconds >= 0 for name, seconds in breakdown.items() if name != "other"), row
        # `other` is what is left: a negative one would mean two parts counted the same time.
        assert breakdown["other"] >= -0.01 * row["step_time"], row
        assert sum(breakdown.values()) == pytest.approx(row["step_time"], rel=0.05), row
    for step in range(2, STEPS + 1):
        # Measured step time = the wall time between the ends of consecutive optimizer steps.
        wall = clock.ends[step] - clock.ends[step - 1]
        assert rows[step - 1]["step_time"] == pytest.approx(wall, rel=0.05), (step, wall)


def test_each_part_lands_where_it_belongs(timed_run):
    rows, _, trainer = timed_run
    generating = [row for row in rows if row["step"] % 2 == 1]  # two steps per generation: steps 1, 3
    reusing = [row for row in rows if row["step"] % 2 == 0]
    for row in generating:
        breakdown = parts(row)
        assert breakdown["generation"] > 0 and breakdown["train"] > 0, row
        assert breakdown["old_logprobs"] > 0 and breakdown["ref_logprobs"] > 0, row
        for name in ("chexpert_f1", "cider_d", "slow"):
            assert f"reward/{name}" in breakdown, (name, row)
        # The sleeping reward's time is its own, not generation's or other's.
        assert SLEEP_S <= breakdown["reward/slow"] < SLEEP_S + 0.4, row
        assert breakdown["other"] < row["step_time"] - SLEEP_S, row
        # The reward adapter's own clock (inside the call) agrees.
        if row.get("rewards/slow/seconds") is not None:
            assert breakdown["reward/slow"] >= row["rewards/slow/seconds"] * 0.99, row
    for row in reusing:
        breakdown = parts(row)
        assert breakdown["generation"] == 0 and breakdown["reward/slow"] == 0, row
        assert breakdown["train"] > 0, row
    assert parts(rows[2]).get("checkpoint", 0) > 0, "checkpoint-2 is written in step 3's period"
    # The wrapped rewards keep their names and the plugin behind them.
    assert [f.__name__ for f in trainer.reward_funcs] == ["chexpert_f1", "cider_d", "slow"]
    assert all(hasattr(f, "plugin") for f in trainer.reward_funcs)


def test_nested_part_is_subtracted_from_the_outer_one():
    # Compared with the test's own clock rather than fixed bounds, so a loaded machine cannot fail it.
    timer = StepTimer()
    timer.start_step_if_idle()
    started = time.perf_counter()
    with timer.part("generation"):
        time.sleep(0.02)
        with timer.part("weight_sync"):
            time.sleep(0.03)
    generation_block = time.perf_counter() - started
    with timer.part(None):  # unattributed, with a part inside
        with timer.part("reward/a"):
            time.sleep(0.01)
    started = time.perf_counter()
    with timer.part("checkpoint", opaque=True):
        with timer.part("generation"):  # inside an opaque part: counted as the checkpoint's
            time.sleep(0.01)
    checkpoint_block = time.perf_counter() - started
    timer.on_step_end(None, None, None)
    step = timer.steps[-1]
    assert step["generation"] >= 0.02 and step["weight_sync"] >= 0.03
    assert step["generation"] + step["weight_sync"] == pytest.approx(generation_block, abs=2e-3)
    assert step["reward/a"] >= 0.01
    assert step["checkpoint"] == pytest.approx(checkpoint_block, abs=2e-3)
    assert step["other"] >= 0
    assert sum(v for k, v in step.items() if k != "step_time") == pytest.approx(step["step_time"])


def test_concurrent_async_rewards_share_their_wall_time():
    timer = StepTimer()
    timer.start_step_if_idle()
    now = time.perf_counter()
    timer.record_async("reward/a", now - 0.3, now - 0.1)  # 0.2 s
    timer.record_async("reward/b", now - 0.2, now)  # 0.2 s, overlapping a by 0.1 s: 0.3 s of wall time
    timer.on_step_end(None, None, None)
    step = timer.steps[-1]
    assert step["reward/a"] == pytest.approx(0.15) and step["reward/b"] == pytest.approx(0.15)


def test_log_carries_the_mean_over_the_logged_steps():
    timer = StepTimer()
    trained = []
    for seconds in (0.01, 0.03):
        timer.start_step_if_idle()
        with timer.part("train"):
            time.sleep(seconds)
        timer.on_step_end(None, None, None)
        trained.append(timer.steps[-1]["train"])
        timer._step_started = None  # a fresh period each time, to know what it holds
    logs: dict = {"loss": 1.0}
    timer.on_log(None, None, None, logs=logs)
    assert logs["time/train"] == pytest.approx(sum(trained) / 2, abs=1e-3) and logs["time/train"] >= 0.02
    assert logs["step_time"] >= logs["time/train"]
    assert "time/other" in logs
    again: dict = {}
    timer.on_log(None, None, None, logs=again)
    assert again == {}, "each log holds only the steps since the previous one"


def test_async_reward_stays_async_and_is_timed():
    import asyncio

    from trl.trainer.utils import is_async_callable

    from unirg.training.step_timing import _TimedAsyncReward, _TimedReward

    async def judge(completions, **kwargs):
        await asyncio.sleep(0.02)
        return [1.0] * len(completions)

    timer = StepTimer()
    timer.start_step_if_idle()
    wrapped = _TimedAsyncReward(judge, timer)
    assert is_async_callable(wrapped) and not is_async_callable(_TimedReward(len, timer))
    assert wrapped.__name__ == "judge"
    assert asyncio.run(wrapped(completions=["a", "b"])) == [1.0, 1.0]
    timer.on_step_end(None, None, None)
    assert timer.steps[-1]["reward/judge"] >= 0.02
