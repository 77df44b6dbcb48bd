"""Chapter 1 (paper section 3.1): 10-dimensional quadratics f(θ) = ‖Wθ − y‖².

Used in: notebooks/01_quadratic.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..meta import History, MetaTrainConfig, check_seed, meta_train
from ..optimizer import LSTMConfig, LSTMOptimizer
from ..problems import QuadraticFamily
from ..profiles import pick, resolve_profile

CHAPTER = "quadratic"
# The paper: no preprocessing, no output scaling, 100 steps in unrolls of 20.
LSTM = LSTMConfig(hidden=20, layers=2, preprocess=False, output_scale=1.0)


@dataclass(frozen=True)
class Settings:
    profile: str
    meta: MetaTrainConfig
    batch: int  # functions per problem (the official code drew 128 at once)
    steps: int  # optimizee steps in the figure
    n_tune: int  # validation problems for the learning-rate sweep
    n_test: int  # test problems in the figure (n_test × batch functions)


def settings(profile: str | None = None, seed: int = 0) -> Settings:
    profile = resolve_profile(profile)
    seed = check_seed(seed, "the notebook parameter seed")
    table = {
        "paper": dict(meta=MetaTrainConfig(epochs=100, problems_per_epoch=20, n_val=4, seed=seed),
                      batch=128, n_tune=4, n_test=1),
        "quick": dict(meta=MetaTrainConfig(epochs=10, problems_per_epoch=10, n_val=2, seed=seed),
                      batch=128, n_tune=2, n_test=1),
        "smoke": dict(meta=MetaTrainConfig(horizon=20, unroll=10, epochs=2, problems_per_epoch=2, n_val=1, seed=seed),
                      batch=32, n_tune=1, n_test=4),
    }
    chosen = pick(profile, table)
    return Settings(profile=profile, steps=chosen["meta"].horizon, **chosen)


def family(s: Settings, device="cpu") -> QuadraticFamily:
    return QuadraticFamily(dim=10, batch=s.batch, device=device)


def make_optimizer(device="cpu") -> LSTMOptimizer:
    return LSTMOptimizer(config=LSTM).to(device)


def base_family(s: Settings, device="cpu") -> QuadraticFamily:
    """The family the chapter meta-trains on and tests on (the notebook's `family`)."""
    return family(s, device)


def train(s: Settings, fam, checkpoint=None, info: dict | None = None,
          progress: bool = True, state_path=None) -> tuple[LSTMOptimizer, History]:
    """Meta-train a fresh LSTM (φ initialised from seed s.meta.seed) on `fam` with the profile's settings.
    With state_path the run is saved after every epoch and resumes from that file (see l2l.meta_train).

    Returns (the LSTM holding the best validated φ, the history); the best φ is saved to `checkpoint` with
    the task, the profile and `info` in its metadata. Used by the notebook and `python -m l2l train`.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.meta.seed)
        lstm = make_optimizer(fam.device)
    history = meta_train(lstm, fam, s.meta, checkpoint=checkpoint, progress=progress, state_path=state_path,
                         info={"task": CHAPTER, "profile": s.profile, **(info or {})})
    return lstm, history
