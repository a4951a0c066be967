"""Reward plugins that raise, hang, or return garbage cost their scores, are counted, and stop a run only when persistent."""

from __future__ import annotations

import time

import pytest

from rewards.adapter import TRLReward
from unirg.errors import RewardError

COMPLETIONS = ["Findings: clear.\nImpression: normal."] * 4
COLUMNS = {"reference": ["Findings: clear.\nImpression: normal."] * 4}


def raises(reports, **_):
    raise RuntimeError("model server down")


def hangs(reports, **_):
    time.sleep(5)
    return [1.0] * len(reports)


@pytest.mark.parametrize("plugin, expected, faults", [
    (lambda reports, **_: [float("nan"), float("inf"), 0.5, -0.5], [None, None, 0.5, None], 3),
    (lambda reports, **_: [0.1, 0.2], [None] * 4, 4),
    # None is a plugin saying "not scorable": missing, but not a fault.
    (lambda reports, **_: ["x", None, 2.0, 1.0], [None, None, None, 1.0], 2),
])
def test_bad_values_become_missing_and_are_counted(plugin, expected, faults):
    plugin.value_range = (0.0, 1.0)
    reward = TRLReward(plugin, "bad")
    assert reward(COMPLETIONS, **COLUMNS) == expected
    assert reward.faults == faults


def test_raising_plugin_costs_one_batch_then_stops_the_run_with_its_name():
    metrics = {}
    reward = TRLReward(raises, "flaky", max_consecutive_failures=3)
    log = lambda name, value: metrics.__setitem__(name, value)  # noqa: E731
    assert reward(COMPLETIONS, log_metric=log, **COLUMNS) == [None] * 4
    assert reward(COMPLETIONS, log_metric=log, **COLUMNS) == [None] * 4
    assert metrics["rewards/flaky/faults"] == 8
    with pytest.raises(RewardError, match=r"reward 'flaky' failed on 3 calls in a row.*model server down"):
        reward(COMPLETIONS, **COLUMNS)


def test_success_resets_the_failure_streak():
    state = {"fail": True}

    def sometimes(reports, **_):
        if state["fail"]:
            raise RuntimeError("blip")
        return [1.0] * len(reports)

    reward = TRLReward(sometimes, "sometimes", max_consecutive_failures=2)
    reward(COMPLETIONS, **COLUMNS)
    state["fail"] = False
    assert reward(COMPLETIONS, **COLUMNS) == [1.0] * 4
    state["fail"] = True
    assert reward(COMPLETIONS, **COLUMNS) == [None] * 4


def test_hanging_plugin_times_out():
    reward = TRLReward(hangs, "slow", timeout_s=0.2)
    started = time.perf_counter()
    assert reward(COMPLETIONS, **COLUMNS) == [None] * 4
    assert time.perf_counter() - started < 2
    assert reward.faults == 4
