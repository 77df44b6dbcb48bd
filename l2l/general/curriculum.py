"""Horizon curriculum (Chen et al. 2020) and the log-ratio meta-loss (Wichrowska et al. 2017) of the second recipe.

Curriculum. Chen, Chen, Liu & Wang ("Training Stronger Baselines for Learning to Optimize", NeurIPS 2020) train
on short optimizee runs first and lengthen them in stages: short runs give many cheap, low-variance meta-steps
while the optimizer is poor, long runs teach it to keep going. `HorizonCurriculum` builds the stages
(horizon, epochs); `HorizonCurriculum.config` puts them in a MetaTrainConfig, and `l2l.meta.meta_train` runs them
in one call: one meta-Adam, one problem stream, one resumable state, and validation at the final horizon every
epoch, so scores compare across stages and early stopping picks the best φ of the whole run.

Log-ratio meta-loss. Wichrowska et al. ("Learned Optimizers that Scale and Generalize", ICML 2017) average
log f(θ_t) − log f(θ_0) over the run instead of Σ_t f(θ_t): every problem weighs the same whatever its loss
scale, and late steps (small losses) still matter. It is `MetaTrainConfig(meta_loss="log_ratio")`;
`log_ratio_meta_loss` (defined in l2l.meta) is re-exported here.

Used in: the second meta-training recipe (l2l.general, issue 19).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..meta import MetaTrainConfig, log_ratio_meta_loss  # noqa: F401  (re-exported)


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

    @property
    def final_horizon(self) -> int:
        return self.stages[-1][0]

    def config(self, cfg: MetaTrainConfig, **changes) -> MetaTrainConfig:
        """cfg (with `changes`) meta-training along these stages: its horizon (of validation) the final one, its epochs
        theirs. A single stage is no curriculum: the config's curriculum is empty. Every horizon must be a multiple
        of the unroll (MetaTrainConfig says so otherwise)."""
        stages = self.stages if len(self.stages) > 1 else ()
        return replace(cfg, curriculum=stages, horizon=self.final_horizon, epochs=self.epochs, **changes)
