"""Meta-training m_φ by truncated backpropagation through time (paper, section 2).

The meta-loss of one optimizee run of `horizon` steps is

    L(φ) = E_f [ Σ_{t=1..T} w_t f(θ_t) ],   w_t = 1,

estimated on problems drawn from a family. The run is cut into unrolls of `unroll` steps: after each
unroll the sum of its losses (mean over instances) is backpropagated into φ once, Adam takes one
meta-step on the clipped meta-gradient, and θ, ∇ and the LSTM state are detached before the next unroll
resumes from where this one stopped. After every epoch φ is frozen and scored on fixed validation problems
(the same meta-loss, summed over the whole horizon); the best φ is kept and checkpointed (early stopping).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from .checkpoint import save_optimizer
from .evaluate import evaluate
from .unroll import cut, start, unroll

VAL_SEED_OFFSET = 1_000_003  # validation problems never coincide with training problems of the same seed


@dataclass(frozen=True)
class MetaTrainConfig:
    horizon: int = 100  # optimizee steps per run (paper: 100)
    unroll: int = 20  # truncation length (paper: 20)
    epochs: int = 100
    problems_per_epoch: int = 20
    meta_lr: float = 1e-3  # Adam on φ (official code: 1e-3)
    clip: float = 1.0  # max global norm of the meta-gradient
    second_order: bool = False  # keep ∂∇_t/∂φ (the paper drops it)
    n_val: int = 10  # validation problems per epoch
    max_bad_in_row: int = 20  # non-finite unrolls tolerated in a row before stopping
    seed: int = 0

    def __post_init__(self):
        if self.unroll < 1 or self.horizon < 1 or self.horizon % self.unroll:
            raise ValueError(f"horizon ({self.horizon}) must be a positive multiple of unroll ({self.unroll})")
        for name in ("epochs", "problems_per_epoch", "n_val", "max_bad_in_row"):
            if getattr(self, name) < 1:
                raise ValueError(f"MetaTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not (self.meta_lr > 0 and self.clip > 0):
            raise ValueError(f"meta_lr and clip must be positive, got {self.meta_lr}, {self.clip}")


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)  # mean meta-loss per unroll, per epoch
    val_loss: list[float] = field(default_factory=list)  # summed validation loss; index 0 = before training
    best_epoch: int = 0
    skipped_unrolls: int = 0
    wall_time_s: float = 0.0

    @property
    def best_val(self) -> float:
        return self.val_loss[self.best_epoch]


def validation_score(optimizer, family, cfg: MetaTrainConfig) -> float:
    """Mean over validation problems of Σ_{t=1..T} f(θ_t): the meta-loss the training minimises."""
    curves = evaluate(optimizer, family, steps=cfg.horizon, n_problems=cfg.n_val,
                      seed=cfg.seed + VAL_SEED_OFFSET, progress=False)
    score = curves[:, 1:].sum(1).mean().item()
    return score if math.isfinite(score) else math.inf


def train_on_problem(optimizer, problem, meta_opt, cfg: MetaTrainConfig) -> tuple[list[float], int]:
    """One optimizee run of cfg.horizon steps, one meta-step per unroll. Returns (meta-losses, skipped)."""
    params = list(optimizer.parameters())
    traj = start(optimizer, problem)
    losses, skipped = [], 0
    for _ in range(cfg.horizon // cfg.unroll):
        step_losses, traj = unroll(optimizer, problem, traj, cfg.unroll, track_graph=True,
                                   second_order=cfg.second_order)
        meta_loss = torch.stack([l.mean() for l in step_losses]).sum()
        meta_opt.zero_grad(set_to_none=True)
        meta_loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        if not (torch.isfinite(meta_loss) and torch.isfinite(norm)):
            # a diverged optimizee or an exploding meta-gradient: leave φ and Adam untouched, drop this run
            return losses, skipped + 1
        meta_opt.step()
        losses.append(meta_loss.item())
        traj = cut(traj)
    return losses, skipped


def meta_train(optimizer, family, cfg: MetaTrainConfig, val_family=None, checkpoint=None, info: dict | None = None,
               progress: bool = True, callback=None) -> History:
    """Meta-train `optimizer` (an LSTMOptimizer) in place on problems from `family`; returns the History.

    On return the optimizer holds the best φ found on the validation problems (from `val_family`,
    default `family`). checkpoint: path where the best φ is saved with cfg and `info` whenever it improves.
    callback(epoch, history) runs after every epoch.
    """
    val_family = val_family or family
    generator = torch.Generator().manual_seed(cfg.seed)
    meta_opt = torch.optim.Adam(optimizer.parameters(), lr=cfg.meta_lr)
    history, t0 = History(), time.perf_counter()
    meta = {"config": asdict(cfg), **(info or {})}
    best = [None]  # the best φ so far (a state_dict), set by validate

    def validate(epoch):
        history.val_loss.append(validation_score(optimizer, val_family, cfg))
        if history.val_loss[-1] < history.val_loss[history.best_epoch] or epoch == 0:
            history.best_epoch = epoch
            best[0] = copy.deepcopy(optimizer.state_dict())
            if checkpoint is not None:
                save_optimizer(optimizer, checkpoint, epoch=epoch, val_loss=history.val_loss[-1], **meta)

    validate(0)
    bar = tqdm(total=cfg.epochs * cfg.problems_per_epoch, desc="meta-training", disable=not progress)
    bad_in_row = 0
    for epoch in range(1, cfg.epochs + 1):
        epoch_losses = []
        for _ in range(cfg.problems_per_epoch):
            losses, skipped = train_on_problem(optimizer, family.sample(generator), meta_opt, cfg)
            epoch_losses += losses
            history.skipped_unrolls += skipped
            bad_in_row = bad_in_row + 1 if skipped else 0
            if bad_in_row >= cfg.max_bad_in_row:
                raise RuntimeError(
                    f"meta-training stopped at epoch {epoch}: {bad_in_row} optimizee runs in a row gave a non-finite "
                    "meta-loss or meta-gradient; the optimizee is diverging — lower meta_lr or the output scale")
            bar.update(1)
        history.train_loss.append(sum(epoch_losses) / max(len(epoch_losses), 1))
        validate(epoch)
        bar.set_postfix(train=f"{history.train_loss[-1]:.4g}", val=f"{history.val_loss[-1]:.4g}",
                        best=f"{history.best_val:.4g}@{history.best_epoch}")
        if callback is not None:
            callback(epoch, history)
    bar.close()
    optimizer.load_state_dict(best[0])
    history.wall_time_s = time.perf_counter() - t0
    return history
