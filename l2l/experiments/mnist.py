"""Chapter 2 (paper section 3.2): an MLP on MNIST, and how far the trained optimizer generalizes.

Used in: notebooks/02_mnist.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..claims import paired
from ..meta import History, MetaTrainConfig, check_seed, meta_train
from ..optimizer import LSTMConfig, LSTMOptimizer
from ..problems import MLPFamily
from ..profiles import pick, resolve_profile
from . import common

CHAPTER = "mnist"
# The paper: preprocessing with p = 10, outputs scaled by 0.1, 100 steps in unrolls of 20.
LSTM = LSTMConfig(hidden=20, layers=2, preprocess=True, p=10.0, output_scale=0.1)
BASE = {"hidden": (20,), "activation": "sigmoid"}  # the network the LSTM is meta-trained on
# Figure 5: the trained LSTM, unchanged, on other networks
VARIANTS = {
    "40 hidden units": {"hidden": (40,), "activation": "sigmoid"},
    "2 hidden layers": {"hidden": (20, 20), "activation": "sigmoid"},
    "ReLU": {"hidden": (20,), "activation": "relu"},
}


@dataclass(frozen=True)
class Settings:
    profile: str
    meta: MetaTrainConfig
    steps: int  # optimizee steps in the figures (the training horizon)
    long_steps: int  # Figure 4 right: twice the horizon
    n_tune: int  # validation problems per architecture for the learning-rate sweep
    n_test: int  # test problems (seeds of initialisation and minibatches) per figure
    widths: tuple[int, ...]  # Figure 6 grid
    depths: tuple[int, ...]


def settings(profile: str | None = None, seed: int = 0) -> Settings:
    profile = resolve_profile(profile)
    seed = check_seed(seed, "the notebook parameter seed")
    table = {
        "paper": dict(meta=MetaTrainConfig(epochs=25, problems_per_epoch=20, n_val=5, meta_lr=1e-3, seed=seed),
                      steps=100, long_steps=200, n_tune=3, n_test=10, widths=(10, 20, 40, 80), depths=(1, 2, 3)),
        "quick": dict(meta=MetaTrainConfig(epochs=5, problems_per_epoch=10, n_val=2, meta_lr=3e-3, seed=seed),
                      steps=100, long_steps=200, n_tune=1, n_test=5, widths=(10, 40), depths=(1, 2)),
        "smoke": dict(meta=MetaTrainConfig(horizon=10, unroll=5, epochs=1, problems_per_epoch=2, n_val=1, seed=seed),
                      steps=10, long_steps=20, n_tune=1, n_test=2, widths=(10,), depths=(1, 2)),
    }
    return Settings(profile=profile, **pick(profile, table))


def family(device="cpu", hidden=(20,), activation="sigmoid", split="train") -> MLPFamily:
    return MLPFamily(hidden=tuple(hidden), activation=activation, split=split, device=device)


def make_optimizer(device="cpu") -> LSTMOptimizer:
    return LSTMOptimizer(config=LSTM).to(device)


def base_family(s: Settings, device="cpu") -> MLPFamily:
    """The network the LSTM is meta-trained on and first tested on (the notebook's `base`): 784-20-10 sigmoid."""
    return family(device, **BASE)


def train(s: Settings, fam: MLPFamily, checkpoint=None, info: dict | None = None,
          progress: bool = True, state_path=None) -> tuple[LSTMOptimizer, History]:
    """Meta-train a fresh LSTM (φ initialised from seed s.meta.seed) on `fam` with the profile's settings.
    With state_path the run is saved after every epoch and resumes from that file (see l2l.meta_train).

    Returns (the LSTM holding the best validated φ, the history); the best φ is saved to `checkpoint` with
    the task, the profile, the network and `info` in its metadata. Used by the notebook and `python -m l2l train`.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.meta.seed)
        lstm = make_optimizer(fam.device)
    history = meta_train(lstm, fam, s.meta, checkpoint=checkpoint, progress=progress, state_path=state_path,
                         info={"task": CHAPTER, "profile": s.profile, "network": fam.sizes, **(info or {})})
    return lstm, history


def compare(lstm, fam, steps: int, s: Settings, seeds: dict, progress: bool = True):
    """Tune the four baselines on validation problems of `fam`, then test them and the LSTM on shared problems.

    Returns (curves {name: [n_test, steps + 1]}, tuning, final test accuracies {name: [n_test]}).
    (common.compare with this chapter's settings and the test-set accuracy as the final metric.)
    """
    return common.compare(lstm, fam, steps, n_tune=s.n_tune, n_test=s.n_test, seeds=seeds,
                          final_metric=lambda problem, theta: problem.accuracy(theta), progress=progress)


def grid(lstm, s: Settings, seeds: dict, device="cpu", progress: bool = True) -> list[dict]:
    """Figure 6: final loss after `s.steps` for every width × depth, the LSTM against the best tuned baseline."""
    cells = []
    for depth in tqdm(s.depths, desc="depths", disable=not progress):
        for width in s.widths:
            fam = family(device, hidden=(width,) * depth)
            curves, tuning, _ = compare(lstm, fam, s.steps, s, seeds, progress=False)
            finals = {n: c[:, -1].mean().item() for n, c in curves.items() if n != "LSTM"}
            best = min(finals, key=finals.get)
            cells.append({"width": width, "depth": depth, "lstm": curves["LSTM"][:, -1].mean().item(),
                          "best_baseline": best, "baseline": finals[best], "rate": tuning.rates[best],
                          "paired": paired(curves, "LSTM", best, "final")})
    return cells


def accuracy_table(accuracy: dict, tuning) -> list[dict]:
    """Rows of optimizer, tuned rate and mean test-set accuracy of the optimizee it trained."""
    return [{"optimizer": n, "learning rate": "learned" if n == "LSTM" else f"{tuning.rates[n]:.3g}",
             "test accuracy": f"{torch.tensor(a).mean().item():.3f}"} for n, a in accuracy.items()]
