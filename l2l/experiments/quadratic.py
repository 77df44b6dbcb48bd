"""Chapter 1 (paper section 3.1): 10-dimensional quadratics f(θ) = ‖Wθ − y‖².

Used in: notebooks/01_quadratic.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..baselines import LR_GRID
from ..meta import MetaTrainConfig, check_seed
from ..optimizer import LSTMConfig, LSTMOptimizer
from ..problems import QuadraticFamily
from ..profiles import pick, resolve_profile
from . import chapter, common

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
    lr_grid: tuple[float, ...] = LR_GRID  # the baselines' learning-rate grid


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


tune_family = test_family = base_family  # fresh random functions everywhere; the seeds keep them disjoint


def compare(lstm, s: Settings, seeds: dict, device="cpu", progress: bool = True):
    """Tune the four baselines on validation functions, then test them and the LSTM on the same test functions.
    Returns (curves {name: [n_test × batch, steps + 1]}, tuning)."""
    curves, tuning, _ = common.compare(lstm, test_family(s, device), s.steps, n_tune=s.n_tune, n_test=s.n_test,
                                       seeds=seeds, tune_family=tune_family(s, device), grid=s.lr_grid,
                                       progress=progress)
    return curves, tuning


def trainings(s: Settings) -> dict:
    """{name: MetaTrainConfig} of the chapter's meta-trainings, in the order `train` runs them."""
    return {"lstm": s.meta}


def train(s: Settings, out, device="cpu", max_minutes: float | None = None, progress: bool = True,
          fresh: bool = False, only: tuple[str, ...] | None = None) -> chapter.Trainings:
    """Meta-train (or resume, or load) the chapter's LSTM, φ₀ from seed s.meta.seed; state in out/state/, the best
    validated φ in out/lstm.safetensors. Used by the notebook and `python -m l2l train quadratic`."""
    chapter.prepare(out, trainings(s), only, fresh)
    plan = [("lstm", make_optimizer, base_family(s, device), s.meta, {})]
    return chapter.train_all(plan, out, chapter.Budget(max_minutes), only=only, device=device, progress=progress,
                             info={"task": CHAPTER, "profile": s.profile})
