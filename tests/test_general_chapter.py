"""Chapter 5's judging (l2l.experiments.general): the ablation budget, the ratio table, the verdicts on the tests."""
from __future__ import annotations

import math

import pytest
import torch

from l2l.experiments import chapter, general
from l2l.general import Recipe, ablations


def test_no_curriculum_gets_the_optimizee_steps_of_the_curriculum():
    full = Recipe(start_horizon=100, final_horizon=400, epochs_per_stage=6)
    variants = ablations(full)
    flat = variants["no curriculum"].curriculum()
    assert flat.stages == ((400, 10),)  # (100 + 200 + 400) · 6 / 400 = 10.5 epochs, rounded to even
    assert {n: r.final_horizon for n, r in variants.items()} == {n: 400 for n in variants}
    assert variants["paper inputs"].inputs == "paper" and variants["no random scaling"].param_scale == 0


def test_the_shipped_optimizer_trains_first_and_every_name_is_distinct():
    s = general.settings("paper")
    names = list(general.trainings(s))
    assert names[0] == general.GENERAL and len(set(names)) == len(names) == 7
    assert general.slug("one timescale (RNNprop)") == "ablation-one-timescale-rnnprop"
    steps = {n: chapter.planned_steps(cfg) for n, cfg in general.trainings(s).items()}
    assert steps[general.GENERAL] == 84_000 and steps["ablation-full"] == 24_000
    assert steps["ablation-no-curriculum"] == 24_000  # equal budgets make the ablation fair


def test_ratio_ci_is_the_geometric_mean_of_paired_ratios():
    a, b = torch.tensor([2.0, 8.0, 4.0]), torch.tensor([1.0, 2.0, 4.0])
    ratio, low, high = general.ratio_ci(a, b)
    assert ratio == pytest.approx((2 * 4 * 1) ** (1 / 3)) and low < ratio < high
    assert general.ratio_ci(b, b)[0] == 1.0


def curves(n, final, noise=0.01, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.linspace(2.3, final, 11).expand(n, 11) + noise * torch.randn(n, 11, generator=g)


def test_verdicts_follow_the_paired_comparisons():
    n = 20
    winning = {"curves": {general.LEARNED: curves(n, 0.5), general.DEFAULT: curves(n, 1.0, seed=1),
                          general.TUNED: curves(n, 0.5, seed=2)}}
    v = general.verdicts(winning)
    assert v["beats_default"] and v["beats_default_significantly"] and v["matches_tuned"]
    losing = {"curves": {general.LEARNED: curves(n, 1.5), general.DEFAULT: curves(n, 1.0, seed=1),
                         general.TUNED: curves(n, 0.5, seed=2)}}
    v = general.verdicts(losing)
    assert not v["beats_default"] and not v["matches_tuned"]
    assert v["vs_tuned"]["final"]["ci_high"] < 0 and math.isfinite(v["vs_default"]["summed"]["advantage"])


def test_the_command_line_sends_a_general_checkpoint_to_its_chapter(tmp_path, capsys):
    from l2l.checkpoint import save_optimizer
    from l2l.cli import main
    from l2l.general import RNNpropOptimizer

    path = tmp_path / "general.safetensors"
    save_optimizer(RNNpropOptimizer(), path, task="general", profile="smoke")
    assert main(["evaluate", str(path), "--profile", "smoke", "--device", "cpu"]) == 2
    assert "held-out tests judge it (python -m l2l run general)" in capsys.readouterr().err
