"""Roll any optimizer (learned or baseline) over fresh problems and summarise the loss curves.

Used in: every chapter (figures 4–9 plot `mean_and_band` of these curves).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .claims import t975
from .unroll import start, unroll


def rollout(optimizer, problem, steps: int):
    """Run one problem for `steps` steps without keeping a graph.

    Returns (curve [n_instances, steps + 1] of f(θ_0) … f(θ_steps), on the CPU; the final θ).
    """
    first = start(optimizer, problem)
    losses, last = unroll(optimizer, problem, first, steps, track_graph=False)
    return torch.stack([first.loss] + losses, dim=1).cpu(), last.theta


def final_loss(problem, theta) -> Tensor:
    """f(θ_T) per instance, on the problem's fixed evaluation batch where it has one (a smaller-variance final loss
    than one minibatch: how φ is selected and the baselines are tuned), else its ordinary loss."""
    with torch.no_grad():
        return (problem.eval_loss(theta) if hasattr(problem, "eval_loss") else problem.loss(theta)).detach().cpu()


def run_problems(optimizer, family, steps: int, n_problems: int, seed: int, final_metric=None,
                 progress: bool = False, skip: int = 0) -> tuple[Tensor, list]:
    """Curves over `n_problems` problems from `family` drawn with `seed`, and final_metric(problem, θ_T) of each.

    The same seed gives every optimizer the same problems (and the same minibatches). skip: draw the first `skip`
    problems without running them, so that these are problems skip … skip + n_problems − 1 of the seed's stream,
    as in one run over all of them (each problem's minibatches come from its own generator): a long test can be
    run, and kept, in parts.
    """
    if n_problems < 1 or steps < 0 or skip < 0:
        raise ValueError(f"evaluate needs n_problems >= 1, steps >= 0 and skip >= 0, got {n_problems}, {steps}, "
                         f"{skip}")
    generator = torch.Generator().manual_seed(seed)
    for _ in range(skip):
        family.sample(generator)
    curves, finals = [], []
    for _ in tqdm(range(n_problems), desc="evaluating", disable=not progress, leave=False):
        problem = family.sample(generator)
        curve, theta = rollout(optimizer, problem, steps)
        curves.append(curve)
        if final_metric is not None:
            finals.append(final_metric(problem, theta))
    return torch.cat(curves, dim=0), finals


def evaluate(optimizer, family, steps: int, n_problems: int, seed: int, progress: bool = True) -> Tensor:
    """Loss curves [n_curves, steps + 1] over `n_problems` problems; a problem with several instances gives one
    curve per instance."""
    return run_problems(optimizer, family, steps, n_problems, seed, progress=progress)[0]


def mean_and_band(curves: Tensor, z: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Mean curve and its 95% confidence band over the curves (Student's t quantile; z: another multiplier)."""
    curves = curves.double()
    mean = curves.mean(0)
    if curves.shape[0] < 2:
        return mean, mean, mean
    z = t975(curves.shape[0] - 1) if z is None else z
    half = z * curves.std(0) / math.sqrt(curves.shape[0])
    return mean, mean - half, mean + half


def summarize(curves: dict[str, Tensor]) -> dict[str, dict[str, float]]:
    """Final and summed loss per optimizer (mean over curves, with 95% half-widths: Student's t)."""
    out = {}
    for name, c in curves.items():
        final, total = c[:, -1].double(), c[:, 1:].sum(1).double()
        n = max(c.shape[0], 1)
        t = t975(n - 1) / math.sqrt(n) if n > 1 else 0.0
        out[name] = {"final": final.mean().item(), "final_ci": t * final.std().item() if n > 1 else 0.0,
                     "summed": total.mean().item(), "summed_ci": t * total.std().item() if n > 1 else 0.0}
    return out


def evaluate_all(optimizers: dict, family, steps: int, n_problems: int, seed: int, progress: bool = True) -> dict:
    """`evaluate` for several optimizers on the same test problems: {name: curves}."""
    return {name: evaluate(opt, family, steps, n_problems, seed, progress=False)
            for name, opt in tqdm(optimizers.items(), desc="testing", disable=not progress)}
