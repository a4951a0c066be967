"""A missing score never counts as 0: the adapter fills it from its prompt group, checked through TRL's own reward code."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from trl import GRPOTrainer

from rewards.adapter import TRLReward


class _Judge:
    """Scores 1.0 for every report except the unreadable one (None)."""

    value_range = (0.0, 1.0)

    def score(self, reports):
        return [None if "unreadable" in r else 1.0 for r in reports]


class _Length:
    value_range = (0.0, 1.0)

    def score(self, reports):
        return [0.5] * len(reports)


def _trl_rewards(funcs, weights, prompts, completions, inputs):
    """TRL 1.16's per-completion rewards: its _calculate_rewards (None -> NaN), then its weighted nansum."""
    trainer = SimpleNamespace(
        accelerator=SimpleNamespace(device=torch.device("cpu"), is_main_process=True), reward_funcs=funcs,
        reward_processing_classes=[None] * len(funcs), reward_func_names=[f.__name__ for f in funcs],
        state=SimpleNamespace(global_step=0), args=SimpleNamespace(report_to=[]), _log_completion_extra=lambda *a, **k: None, _log_metric=lambda *a, **k: None,
        environments=None)
    per_func = GRPOTrainer._calculate_rewards(trainer, inputs, prompts, completions, [[0]] * len(prompts))
    return (per_func * torch.tensor(weights).unsqueeze(0)).nansum(dim=1), per_func


def test_missing_judge_score_gets_the_group_mean_not_zero():
    prompts = [[{"role": "user", "content": "Study A"}]] * 4 + [[{"role": "user", "content": "Study B"}]] * 2
    completions = ["fine", "fine", "unreadable", "fine", "unreadable", "unreadable"]
    inputs = [{"reference": "ref A"}] * 4 + [{"reference": "ref B"}] * 2
    funcs = [TRLReward(_Judge(), "llm_errors"), TRLReward(_Length(), "length")]
    rewards, per_func = _trl_rewards(funcs, [0.5, 1.0], prompts, completions, inputs)
    # Group A: the unreadable completion gets the group's judge mean (1.0), so it ties with its peers
    # instead of losing 0.5. Group B has no judge score at all: NaN for both, the same 0 in TRL's nansum.
    assert per_func[:4, 0].tolist() == [1.0] * 4
    assert torch.isnan(per_func[4:, 0]).all()
    assert rewards.tolist() == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5]


def test_without_the_fill_trl_would_count_it_as_zero():
    prompts = [[{"role": "user", "content": "Study A"}]] * 2
    plain = TRLReward(_Judge(), "llm_errors")
    plain.fill_missing = lambda scores, columns: (scores, 0)  # the adapter's behaviour before the fix
    rewards, _ = _trl_rewards([plain, TRLReward(_Length(), "length")], [0.5, 1.0], prompts,
                              ["fine", "unreadable"], [{"reference": "r"}] * 2)
    assert rewards.tolist() == [1.0, 0.5]  # the unreadable completion loses the judge's whole weight


def test_a_direct_call_without_prompts_fills_nothing():
    reward = TRLReward(_Judge(), "llm_errors")
    assert reward(["fine", "unreadable"], reference=["r", "r"]) == [1.0, None]
