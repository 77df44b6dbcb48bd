"""Chapter 1 (paper section 3.1): 10-dimensional quadratics f(θ) = ‖Wθ − y‖².

Used in: notebooks/01_quadratic.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..meta import MetaTrainConfig
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
