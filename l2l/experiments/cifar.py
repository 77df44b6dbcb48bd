"""Chapter 3 (paper section 3.3): a CNN on CIFAR-10, two LSTMs (conv and FC), label subsets and LSTM-sub.

Meta-training and the baselines' learning-rate tuning use CIFAR-10's training images; test problems train a
fresh network on minibatches of the held-out test images (as the official code's evaluation does), so no choice
made anywhere saw them. CIFAR-5 / CIFAR-2 and LSTM-sub's complementary classes are fixed in l2l.data_cifar.SUBSETS.

Used in: notebooks/03_cifar.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..baselines import LR_GRID
from ..meta import MetaTrainConfig, check_seed
from ..optimizer import CoordinatewiseLSTM, LSTMConfig, LSTMOptimizer
from ..plots import plot_curves
from ..problems import CNNFamily
from ..profiles import pick, resolve_profile
from . import chapter, common

CHAPTER = "cifar"
# As MNIST (the paper: "as MNIST"): preprocessing with p = 10, outputs scaled by 0.1, 100 steps in unrolls of 20.
LSTM = LSTMConfig(hidden=20, layers=2, preprocess=True, p=10.0, output_scale=0.1)
WIDE_GRID = tuple(10 ** (k / 2) for k in range(-8, 3))  # 1e-4 … 10 in half-decades
BASELINE_NAMES = ("SGD", "RMSprop", "Adam", "NAG")
# the learned optimizers of Figure 7 and the ablation, as they are named in curves, tables and claims
TWO, ONE, SUB = "LSTM", "LSTM, one shared", "LSTM-sub"
EXTRA_COLORS = {ONE: "C7", SUB: "C5"}  # plots.style_for gives every "LSTM…" name the LSTM's colour


@dataclass(frozen=True)
class Settings:
    profile: str
    meta: MetaTrainConfig
    steps: int  # optimizee steps in the figures (the training horizon)
    batch_size: int  # images per minibatch (paper and official code: 128)
    n_tune: int  # validation problems for each learning-rate sweep
    n_test: int  # test problems (seeds of initialisation and minibatches) per panel
    lr_grid: tuple[float, ...]  # the baselines' learning rates to try
    n_accuracy: int  # held-out images scored for the accuracy table (0: no accuracy)


def settings(profile: str | None = None, seed: int = 0) -> Settings:
    profile = resolve_profile(profile)
    seed = check_seed(seed, "the notebook parameter seed")
    decades = tuple(10.0 ** k for k in range(-4, 1))
    table = {
        # the paper's network, batch and horizon; the protocol of the MNIST chapter: φ chosen by the final loss of
        # 10 validation networks on a fixed evaluation batch (every 2 epochs = 4,000 steps); 6×10⁴ optimizee steps
        # per LSTM (30 epochs × 20 networks × 100 steps); baselines tuned on 5 networks over 1e-4 … 10; 50 test
        # networks per panel. About 8 CPU-hours on one core in all (benchmarks/RESULTS.md, the chapter's notes).
        "paper": dict(meta=MetaTrainConfig(epochs=30, problems_per_epoch=20, n_val=10, val_metric="final",
                                           val_every=2, meta_lr=3e-3, seed=seed),
                      batch_size=128, n_tune=5, n_test=50, lr_grid=WIDE_GRID, n_accuracy=2_000),
        # the paper's network and horizon; half the batch, few meta-training runs, a coarse grid: a CPU, ~15 min
        "quick": dict(meta=MetaTrainConfig(epochs=2, problems_per_epoch=4, n_val=1, meta_lr=3e-3, seed=seed),
                      batch_size=64, n_tune=1, n_test=5, lr_grid=decades, n_accuracy=1_000),
        "smoke": dict(meta=MetaTrainConfig(horizon=4, unroll=2, epochs=1, problems_per_epoch=1, n_val=1, seed=seed),
                      batch_size=16, n_tune=1, n_test=2, lr_grid=(1e-2, 1e-1), n_accuracy=200),
    }
    chosen = pick(profile, table)
    return Settings(profile=profile, steps=chosen["meta"].horizon, **chosen)


def family(device="cpu", subset: str = "CIFAR-10", split: str = "train", batch_size: int = 128) -> CNNFamily:
    """The paper's CNN on the label subset `subset` (l2l.data_cifar.SUBSETS), training on `split`'s images."""
    return CNNFamily(classes=subset, split=split, batch_size=batch_size, device=device)


def base_family(s: Settings, device="cpu", subset: str = "CIFAR-10") -> CNNFamily:
    """The meta-training family: the CNN on CIFAR-10's training images (LSTM-sub: subset "CIFAR-5 complement")."""
    return family(device, subset, "train", s.batch_size)


def tune_family(s: Settings, device="cpu", subset: str = "CIFAR-10") -> CNNFamily:
    """Where the baselines are tuned: networks training on CIFAR-10's training images of `subset`."""
    return family(device, subset, "train", s.batch_size)


def test_family(s: Settings, device="cpu", subset: str = "CIFAR-10") -> CNNFamily:
    """The test problems: fresh networks training on the held-out test images of `subset`."""
    return family(device, subset, "test", s.batch_size)


def make_optimizer(device="cpu", two: bool = True) -> LSTMOptimizer:
    """Two LSTMs with separate φ, one per parameter group (the paper); two=False: one LSTM shared by both groups."""
    if two:
        nets = {"conv": CoordinatewiseLSTM(LSTM), "fc": CoordinatewiseLSTM(LSTM)}
        route = {"conv": "conv", "fc": "fc"}
    else:
        nets, route = {"default": CoordinatewiseLSTM(LSTM)}, {"conv": "default", "fc": "default"}
    return LSTMOptimizer(nets=nets, route=route).to(device)


def trainings(s: Settings) -> dict:
    """{name: MetaTrainConfig} of the chapter's meta-trainings, in the order `train` runs them."""
    return {"lstm": s.meta, "lstm_one_shared": s.meta, "lstm_sub": s.meta}


def train(s: Settings, out, device="cpu", max_minutes: float | None = None, progress: bool = True,
          fresh: bool = False, only: tuple[str, ...] | None = None) -> chapter.Trainings:
    """Meta-train (or resume, or load) the chapter's three optimizers, in this order, under one time budget:
    "lstm" (two LSTMs, conv and FC: the paper's), "lstm_one_shared" (the ablation: one LSTM for both groups) and
    "lstm_sub" (two LSTMs meta-trained on the complementary classes of CIFAR-5).

    Every one starts from the same φ seed and sees the same sequence of training problems of its family, so they
    differ only in what the comparison is about. States in out/state/, best φ in out/<name>.safetensors.
    """
    chapter.prepare(out, trainings(s), only, fresh)
    base, sub = base_family(s, device), base_family(s, device, subset="CIFAR-5 complement")
    two, one = (lambda dev: make_optimizer(dev, two=True)), (lambda dev: make_optimizer(dev, two=False))
    plan = [("lstm", two, base, s.meta, {"info": info(s, base, True)}),
            ("lstm_one_shared", one, base, s.meta, {"info": info(s, base, False)}),
            ("lstm_sub", two, sub, s.meta, {"info": info(s, sub, True)})]
    return chapter.train_all(plan, out, chapter.Budget(max_minutes), only=only, device=device, progress=progress)


def info(s: Settings, fam: CNNFamily, two: bool) -> dict:
    """What a checkpoint says about its training."""
    return {"task": CHAPTER, "profile": s.profile, "classes": list(fam.class_names),
            "lstms": "two (conv, fc)" if two else "one shared"}


def compare(learned: dict, subset: str, s: Settings, seeds: dict, device="cpu", progress: bool = True, out=None):
    """One panel of Figure 7 on the label subset `subset`: baselines tuned on validation problems that train on
    CIFAR-10's training images, then every optimizer on the same test problems, which train on held-out test images.

    learned: {name: optimizer}. Returns (curves {name: [n_test, steps + 1]}, tuning, held-out accuracy
    {name: [n_test]}: each final network scored on `s.n_accuracy` training-split images of the subset, which
    that network never saw; empty lists when n_accuracy is 0).
    """
    test = test_family(s, device, subset)
    metric = (lambda problem, theta: problem.accuracy(theta, max_images=s.n_accuracy)) if s.n_accuracy else None
    return common.compare(learned, test, s.steps, n_tune=s.n_tune, n_test=s.n_test, seeds=seeds,
                          tune_family=tune_family(s, device, subset), final_metric=metric,
                          grid=s.lr_grid, progress=progress, cache_key={"n_accuracy": s.n_accuracy},
                          cache=None if out is None else chapter.eval_dir(out) / f"{subset}.pt")


def plot_panel(curves: dict, title: str, ax=None):
    """plots.plot_curves, with the extra learned optimizers (one shared LSTM, LSTM-sub) in colours of their own."""
    fig = plot_curves(curves, title=title, ax=ax)
    ax = ax or fig.axes[0]
    for name, line, band in zip(curves, ax.lines, ax.collections):  # one line and one band per curve, in order
        if name in EXTRA_COLORS:
            line.set_color(EXTRA_COLORS[name])
            band.set_color(EXTRA_COLORS[name])
    ax.legend(frameon=False)
    return fig


def rates_table(tunings: dict) -> list[dict]:
    """One row per panel: the learning rate chosen for each baseline."""
    return [{"problem": panel, **{n: t.label(n) for n in t.rates}} for panel, t in tunings.items()]


def accuracy_table(accuracy: dict) -> list[dict]:
    """One row per panel: mean held-out accuracy of the networks each optimizer trained ("–" where it did not run)."""
    names = list(dict.fromkeys(n for acc in accuracy.values() for n in acc))  # every optimizer, in first-seen order
    return [{"problem": panel, **{n: f"{torch.tensor(acc[n]).mean().item():.3f}" if n in acc else "–" for n in names}}
            for panel, acc in accuracy.items() if all(len(a) for a in acc.values())]
