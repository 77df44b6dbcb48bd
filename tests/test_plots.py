"""The loss-curve panels every chapter draws (`l2l.plots.plot_curves`)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from l2l.plots import BAND_FLOOR, plot_curves  # noqa: E402


def noisy(level: float, spread: float, n: int = 5, steps: int = 50) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return level * torch.ones(n, steps) * torch.linspace(1, 0.1, steps) + spread * torch.rand(n, steps, generator=g)


def test_a_band_reaching_towards_zero_does_not_squash_the_curves():
    curves = {"LSTM": noisy(1.0, 0.01), "Adam": noisy(1.0, 0.01)}
    curves["Adam"][0] += 5.0  # one outlier problem: Adam's 95% band dips far below 0
    ax = plot_curves(curves).axes[0]
    lowest = min(c.mean(0).min().item() for c in curves.values())
    assert ax.get_ylim()[0] >= BAND_FLOOR * lowest * 0.999
    plt.close("all")


def test_a_panel_whose_bands_stay_near_the_curves_keeps_matplotlibs_limits():
    curves = {"LSTM": noisy(1.0, 0.001), "Adam": noisy(2.0, 0.001)}
    ax = plot_curves(curves).axes[0]
    lowest = min(c.mean(0).min().item() for c in curves.values())
    assert BAND_FLOOR * lowest < ax.get_ylim()[0] < lowest
    plt.close("all")


def test_a_diverged_curve_leaves_the_top_and_is_named():
    curves = {"LSTM": noisy(1.0, 0.01), "SGD": noisy(1.0, 0.01)}
    curves["SGD"][:, 30:] = float("nan")
    ax = plot_curves(curves).axes[0]
    assert any("diverged: SGD" in t.get_text() for t in ax.texts)
    plt.close("all")
