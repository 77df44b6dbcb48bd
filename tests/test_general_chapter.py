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



def test_ablation_findings_sort_variants_by_their_interval_against_the_full_recipe():
    from l2l.paper import ablation_findings
    g = torch.Generator().manual_seed(0)
    full = torch.rand(20, generator=g) + 0.5
    text = ablation_findings({"full": full, "no curriculum": full * 1.5, "paper inputs": full * 0.7,
                              "no random scaling": full * (1 + 0.05 * torch.randn(20, generator=g)),
                              general.GENERAL: full * 0.9})
    helped, not_helped, even = text.split(". ")[1:4]
    assert helped.startswith("Significantly above") and "*no curriculum* (1.5 [" in helped
    assert not_helped.startswith("Significantly below") and "*paper inputs* (0.7 [" in not_helped
    assert even.startswith("Not significantly") and "*no random scaling*" in even
    assert text.endswith("larger budget: 0.9 [0.9, 0.9].") and "*general*" not in text
    assert "below" not in ablation_findings({"full": full, "no curriculum": full * 2})  # only groups that occur

def curves(n, final, noise=0.01, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.linspace(2.3, final, 11).expand(n, 11) + noise * torch.randn(n, 11, generator=g)


def result(finals: dict, n=20) -> dict:
    """A comparison's record with curves ending at, and fixed-batch final losses around, each optimizer's value."""
    return {"curves": {k: curves(n, f, seed=i) for i, (k, f) in enumerate(finals.items())},
            "final": {k: curves(n, f, seed=10 + i)[:, -1] for i, (k, f) in enumerate(finals.items())}}


def test_verdicts_follow_the_paired_comparisons():
    v = general.verdicts(result({general.LEARNED: 0.5, general.DEFAULT: 1.0, general.TUNED: 0.5}))
    assert v["beats_default"] and v["beats_default_significantly"] and v["matches_tuned"]
    v = general.verdicts(result({general.LEARNED: 1.5, general.DEFAULT: 1.0, general.TUNED: 0.5}))
    assert not v["beats_default"] and not v["matches_tuned"]
    assert v["vs_tuned"]["final"]["ci_high"] < 0 and math.isfinite(v["vs_default"]["summed"]["advantage"])
    # 15% above tuned Adam is not a match, even where the difference would not be significant with few networks
    v = general.verdicts(result({general.LEARNED: 0.575, general.DEFAULT: 1.0, general.TUNED: 0.5}, n=3))
    assert not v["matches_tuned"] and v["final_over_tuned"]["ratio"] == pytest.approx(1.15, rel=0.05)


def test_a_diverged_network_gives_the_median_ratio():
    a, b = torch.tensor([1.0, 2.0, math.inf, 4.0, 8.0]), torch.tensor([1.0, 1.0, 1.0, 2.0, 4.0])
    ratio, low, high = general.ratio_ci(a, b)
    assert ratio == 2.0 and low <= ratio <= high and math.isfinite(ratio)


def test_the_command_line_sends_a_general_checkpoint_to_its_chapter(tmp_path, capsys):
    from l2l.checkpoint import save_optimizer
    from l2l.cli import main
    from l2l.general import RNNpropOptimizer

    path = tmp_path / "general.safetensors"
    save_optimizer(RNNpropOptimizer(), path, task="general", profile="smoke")
    assert main(["evaluate", str(path), "--profile", "smoke", "--device", "cpu"]) == 2
    assert "held-out tests judge it (python -m l2l run general)" in capsys.readouterr().err


def test_adam_runs_are_kept_apart_from_the_learned_optimizers(tmp_path, monkeypatch):
    """A retrained φ reruns only its own test networks: Adam's tuning and runs are reused."""
    from l2l.general import RNNpropOptimizer, TaskSpec

    s = general.settings("smoke")
    test = general.HeldOut("tiny", TaskSpec("mlp-4", hidden=(4,), activation="relu"), steps=3, batch_size=8, n_test=2)
    seeds = {"train": 0, "validation": 1, "test": 2}
    first = general.compare(RNNpropOptimizer(), test, s, seeds, out=tmp_path)
    assert set(first["curves"]) == {general.LEARNED, general.DEFAULT, general.TUNED}
    assert first["final"][general.LEARNED].shape == (2,) and len(first["accuracy"][general.TUNED]) == 2
    calls = []
    monkeypatch.setattr(general.common, "tune_baselines", lambda *a, **k: calls.append(1))
    torch.manual_seed(1)
    again = general.compare(RNNpropOptimizer(), test, s, seeds, out=tmp_path)  # another φ
    assert calls == [] and torch.equal(again["curves"][general.TUNED], first["curves"][general.TUNED])
    assert not torch.equal(again["curves"][general.LEARNED], first["curves"][general.LEARNED])


def test_a_test_kept_in_parts_of_networks_is_the_test_run_whole(monkeypatch):
    """Chunks of CHUNK networks (what two processes share) join into exactly the runs of one call over them all,
    dropout masks and minibatches included."""
    from l2l.evaluate import run_problems
    from l2l.general import RNNpropOptimizer, TaskSpec

    monkeypatch.setattr(general, "CHUNK", 2)
    spec = TaskSpec("cnn-tiny", "mnist", "cnn", hidden=(8,), channels=(2,), dropout=0.25)
    test = general.HeldOut("tiny", spec, steps=3, batch_size=8, n_test=5)
    opt, fam, seeds = RNNpropOptimizer(), test.family(), {"test": 2}
    parts = general.network_runs(opt, fam, test, seeds, "LSTM")
    assert list(parts) == ["LSTM/0-1", "LSTM/2-3", "LSTM/4-4"]
    joined = general.runs({name: compute() for name, compute in parts.items()})
    curves, scores = run_problems(opt, fam, 3, 5, seeds["test"], final_metric=general.measures)
    assert torch.equal(joined["curves"], curves)
    assert torch.equal(joined["final"], torch.tensor([f for _, f in scores]))
    assert joined["accuracy"] == [a for a, _ in scores]
