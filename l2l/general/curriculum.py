"""Horizon curriculum (Chen et al. 2020) and the log-ratio meta-loss (Wichrowska et al. 2017) of the second recipe.

Curriculum. Chen, Chen, Liu & Wang ("Training Stronger Baselines for Learning to Optimize", NeurIPS 2020) train
on short optimizee runs first and lengthen them in stages: short runs give many cheap, low-variance meta-steps
while the optimizer is poor, long runs teach it to keep going. `HorizonCurriculum` is a list of stages
(horizon, epochs); `meta_train_curriculum` runs `l2l.meta.meta_train` once per stage, each stage starting from
the best φ of the one before. l2l.meta has no per-epoch horizon, so each stage is one call, which has three
consequences (a hook in meta.py would remove them, see the report of issue 19): meta-Adam's moments restart at
every stage; every stage validates (and early-stops) at its own horizon, so scores of different stages are not
comparable and only the last stage's selection counts; each stage draws its problems with seed cfg.seed + stage.

Log-ratio meta-loss. Wichrowska et al. ("Learned Optimizers that Scale and Generalize", ICML 2017) average
log f(θ_t) − log f(θ_0) over the run instead of Σ_t f(θ_t): every problem weighs the same whatever its loss
scale, and late steps (small losses) still matter. `log_ratio_meta_loss` computes it from the per-step losses
of one unroll; l2l.meta sums losses itself, so using it in training needs the hook described in the report.

Used in: the second meta-training recipe (l2l.general, issue 19).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from ..meta import MetaTrainConfig, meta_train


@dataclass(frozen=True)
class HorizonCurriculum:
    """Stages of meta-training, each ((horizon, epochs)): optimizee runs of `horizon` steps for `epochs` epochs."""

    stages: tuple[tuple[int, int], ...]

    def __post_init__(self):
        stages = tuple((int(h), int(e)) for h, e in self.stages)
        object.__setattr__(self, "stages", stages)
        if not stages or any(h < 1 or e < 1 for h, e in stages):
            raise ValueError(f"a curriculum needs stages of positive (horizon, epochs), got {self.stages}")
        if any(b < a for (a, _), (b, _) in zip(stages, stages[1:])):
            raise ValueError(f"a horizon curriculum never shortens the runs, got horizons {[h for h, _ in stages]}")

    @classmethod
    def doubling(cls, start: int, final: int, epochs_per_stage: int) -> "HorizonCurriculum":
        """start, 2·start, 4·start, … up to `final` (which is always the last stage), `epochs_per_stage` each."""
        if not 1 <= start <= final:
            raise ValueError(f"doubling needs 1 <= start <= final, got {start}, {final}")
        horizons, h = [], start
        while h < final:
            horizons.append(h)
            h *= 2
        return cls(tuple((h, epochs_per_stage) for h in horizons + [final]))

    @property
    def epochs(self) -> int:
        return sum(e for _, e in self.stages)

    def horizon_at(self, epoch: int) -> int:
        """The horizon of 1-based `epoch` (what a per-epoch hook in meta_train would ask); past the end: the last."""
        if epoch < 1:
            raise ValueError(f"epochs count from 1, got {epoch}")
        done = 0
        for horizon, epochs in self.stages:
            done += epochs
            if epoch <= done:
                return horizon
        return self.stages[-1][0]

    def configs(self, cfg: MetaTrainConfig) -> list[MetaTrainConfig]:
        """One MetaTrainConfig per stage: cfg with the stage's horizon, epochs and seed cfg.seed + stage.
        Every horizon must be a multiple of cfg.unroll (MetaTrainConfig says so otherwise)."""
        return [replace(cfg, horizon=h, epochs=e, seed=cfg.seed + k) for k, (h, e) in enumerate(self.stages)]


def meta_train_curriculum(optimizer, family, cfg: MetaTrainConfig, curriculum: HorizonCurriculum, val_family=None,
                          state_dir=None, **kwargs) -> list:
    """meta_train once per stage of `curriculum`, in place; returns the stages' Histories.

    state_dir: a folder for one resumable training state per stage (stage<k>.pt); a finished stage is loaded from
    its state, not repeated, so calling again after an interruption continues where the run stopped.
    kwargs go to every meta_train call (progress, checkpoint, max_minutes, ...).
    """
    histories = []
    for k, stage_cfg in enumerate(curriculum.configs(cfg)):
        state_path = None if state_dir is None else Path(state_dir) / f"stage{k}.pt"
        history = meta_train(optimizer, family, stage_cfg, val_family=val_family, state_path=state_path, **kwargs)
        histories.append(history)
        if not history.complete(stage_cfg):  # stopped by a time budget: the next call resumes this stage
            break
    return histories


def log_ratio_meta_loss(step_losses: list[Tensor], initial: Tensor, eps: float = 1e-12) -> Tensor:
    """Σ_t mean_instances [log f_i(θ_t) − log f_i(θ_0)] over one unroll's losses (each [n_instances]).

    initial: f(θ_0) per instance (detached). Summed over the unroll like l2l.meta's meta-loss, so a run's total over
    its unrolls, divided by the horizon, is Wichrowska et al.'s average log ratio. Losses must be positive
    (cross-entropy is); eps guards log 0.
    """
    log0 = initial.detach().clamp_min(eps).log()
    return torch.stack([(l.clamp_min(eps).log() - log0).mean() for l in step_losses]).sum()
