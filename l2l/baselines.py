"""Hand-designed baselines in the same functional form as the LSTM optimizer, and their tuning.

Each baseline has `init_state(theta)` and `step(theta, grads, state) -> (theta, state)` over a dict of
flat parameter groups, with the same arithmetic as `torch.optim` (tested step for step), so evaluation
never special-cases the LSTM. Only the learning rate is tuned (paper, section 3); other
hyperparameters keep their defaults, and NAG uses momentum 0.9.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .evaluate import final_loss, run_problems

# half-decades from 1e-4 to 1 (DESIGN.md); tune_baselines accepts any grid
LR_GRID = tuple(10 ** (k / 2) for k in range(-8, 1))


def _per_group(fn, theta, grads, state):
    new_theta, new_state = {}, {}
    for g in theta:  # parameter groups, not tensors: one or two entries
        new_theta[g], new_state[g] = fn(theta[g], grads[g], state[g])
    return new_theta, new_state


def _check_lr(lr):
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"learning rate must be a positive finite number, got {lr}")


@dataclass
class SGD:
    lr: float

    def __post_init__(self):
        _check_lr(self.lr)

    def init_state(self, theta):
        return {g: None for g in theta}

    def step(self, theta, grads, state):
        return _per_group(lambda t, d, s: (t - self.lr * d, None), theta, grads, state)


@dataclass
class NAG:
    """Nesterov momentum as torch.optim.SGD(nesterov=True) computes it."""

    lr: float
    momentum: float = 0.9

    def __post_init__(self):
        _check_lr(self.lr)

    def init_state(self, theta):
        return {g: None for g in theta}

    def step(self, theta, grads, state):
        def one(t, d, buf):
            buf = d if buf is None else self.momentum * buf + d
            return t - self.lr * (d + self.momentum * buf), buf

        return _per_group(one, theta, grads, state)


@dataclass
class RMSprop:
    lr: float
    alpha: float = 0.99
    eps: float = 1e-8

    def __post_init__(self):
        _check_lr(self.lr)

    def init_state(self, theta):
        return {g: torch.zeros_like(t) for g, t in theta.items()}

    def step(self, theta, grads, state):
        def one(t, d, sq):
            sq = self.alpha * sq + (1 - self.alpha) * d * d
            return t - self.lr * d / (sq.sqrt() + self.eps), sq

        return _per_group(one, theta, grads, state)


@dataclass
class Adam:
    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self):
        _check_lr(self.lr)

    def init_state(self, theta):
        return {g: (0, torch.zeros_like(t), torch.zeros_like(t)) for g, t in theta.items()}

    def step(self, theta, grads, state):
        def one(t, d, s):
            k, m, v = s
            k += 1
            m = self.beta1 * m + (1 - self.beta1) * d
            v = self.beta2 * v + (1 - self.beta2) * d * d
            denom = v.sqrt() / math.sqrt(1 - self.beta2 ** k) + self.eps
            return t - (self.lr / (1 - self.beta1 ** k)) * m / denom, (k, m, v)

        return _per_group(one, theta, grads, state)


BASELINES = {"SGD": SGD, "RMSprop": RMSprop, "Adam": Adam, "NAG": NAG}


@dataclass
class Tuning:
    """Result of a learning-rate sweep: the chosen rate per baseline and every score behind it."""

    rates: dict[str, float]
    scores: dict[str, dict[float, float]]  # name -> {lr: mean final validation loss}

    def make(self, name: str):
        """The baseline `name` at its tuned rate."""
        return BASELINES[name](self.rates[name])

    def at_edge(self) -> dict[str, float]:
        """The baselines whose chosen rate is the smallest or largest of the grid: the optimum may lie outside."""
        return {n: lr for n, lr in self.rates.items() if lr in (min(self.scores[n]), max(self.scores[n]))}

    def label(self, name: str) -> str:
        """The chosen rate for a table, flagged when it sits at the grid's edge."""
        return f"{self.rates[name]:.3g}" + (" (grid edge)" if name in self.at_edge() else "")


def tune_baselines(family, steps: int, n_problems: int, seed: int, grid=LR_GRID, names=tuple(BASELINES),
                   progress: bool = True, extend: int = 0) -> Tuning:
    """Pick each baseline's learning rate by the mean *final* loss on validation problems: the loss at the last
    step on the problem's fixed evaluation batch where it has one (`evaluate.final_loss`, as φ is selected).

    Every rate sees the same problems (same seed). A rate whose runs diverge (non-finite loss) scores +inf.
    grid: one grid for every baseline, or {name: grid}. extend: while a baseline's best rate is the smallest or
    largest tried, try up to `extend` more rates beyond it, one grid step (the ratio of its two outermost rates on
    that side) at a time, so that a coarse grid around a known optimum still ends with the choice interior.
    """
    grids = {name: tuple(grid[name] if isinstance(grid, dict) else grid) for name in names}
    scores = {name: {} for name in names}

    def score(name, lr):
        _, finals = run_problems(BASELINES[name](lr), family, steps, n_problems, seed, final_metric=final_loss)
        final = torch.cat(finals).double().mean().item()
        scores[name][lr] = final if math.isfinite(final) else math.inf

    for name, lr in tqdm([(n, lr) for n in names for lr in grids[n]], desc="tuning baselines", disable=not progress):
        score(name, lr)
    for name in names:
        for _ in range(extend):
            tried = sorted(scores[name])
            best = min(tried, key=scores[name].get)
            if len(tried) < 2 or best not in (tried[0], tried[-1]) or not math.isfinite(scores[name][best]):
                break
            beyond = tried[0] ** 2 / tried[1] if best == tried[0] else tried[-1] ** 2 / tried[-2]
            score(name, float(f"{beyond:.6g}"))  # 1e-4, not 9.999999999999999e-05
    rates = {name: min(scores[name], key=scores[name].get) for name in names}
    for name, lr in rates.items():
        if not math.isfinite(scores[name][lr]):
            raise RuntimeError(f"{name} diverged at every learning rate in {grids[name]}; widen the grid")
    return Tuning(rates, scores)
