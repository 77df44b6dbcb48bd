"""The second recipe as data, and its ablations: each variant switches off one technique of the full recipe.

    recipe = ABLATIONS["full"]
    optimizer, train, val = build(recipe)
    history = l2l.meta_train(optimizer, train, recipe.config(cfg), val_family=val)

The ablation table (issue 19, stage 1's deliverable, to be filled by real runs) scores every variant's best φ on
the held-out VALIDATION_TASKS; what a row loses against "full" is what that technique buys.

Used in: the second meta-training recipe (l2l.general, issue 19).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..meta import META_LOSSES, MetaTrainConfig
from ..optimizer import LSTMConfig, LSTMOptimizer
from .curriculum import HorizonCurriculum
from .optimizer import RNNpropConfig, RNNpropOptimizer
from .tasks import TRAIN_TASKS, TaskMixture, validation_mixture

INPUTS = ("rnnprop", "paper")


@dataclass(frozen=True)
class Recipe:
    """Every switch of the second recipe; the defaults are the full recipe."""

    inputs: str = "rnnprop"  # "paper": the paper's log/sign preprocessing and ×0.1 output (l2l.LSTMOptimizer)
    beta1: tuple[float, ...] = (0.5, 0.9, 0.99)  # momentum timescales (RNNprop itself: (0.95,))
    beta2: float = 0.95
    param_scale: float = 3.0  # random scaling range r (0: off)
    objective_scale: float = 0.0  # r_f (0: off; RNNprop's inputs make it a meta-loss reweighting only)
    mixture: bool = True  # False: only the paper's MNIST base network (784-20-10 sigmoid)
    unroll: int = 20
    start_horizon: int = 100  # curriculum: start, doubled every stage up to final_horizon (start = final: off)
    final_horizon: int = 800
    epochs_per_stage: int = 50
    meta_loss: str = "sum"  # or "log_ratio" (Wichrowska et al. 2017): MetaTrainConfig.meta_loss

    def __post_init__(self):
        if self.inputs not in INPUTS:
            raise ValueError(f"inputs must be one of {INPUTS}, got {self.inputs!r}")
        if self.meta_loss not in META_LOSSES:
            raise ValueError(f"meta_loss must be one of {', '.join(META_LOSSES)}, got {self.meta_loss!r}")

    def curriculum(self) -> HorizonCurriculum:
        return HorizonCurriculum.doubling(self.start_horizon, self.final_horizon, self.epochs_per_stage)

    def config(self, cfg: MetaTrainConfig) -> MetaTrainConfig:
        """cfg with this recipe's unroll, meta-loss and curriculum (which set its horizon and epochs)."""
        return self.curriculum().config(cfg, unroll=self.unroll, meta_loss=self.meta_loss)


def ablations(full: Recipe) -> dict[str, Recipe]:
    """`full` and one variant per technique, each with that technique switched off and the same budget: "no
    curriculum" runs only the final horizon for as many optimizee steps as the curriculum takes in all."""
    stages = full.curriculum().stages
    flat_epochs = max(1, round(sum(h * e for h, e in stages) / full.final_horizon))
    return {
        "full": full,
        "paper inputs": replace(full, inputs="paper"),
        "one timescale (RNNprop)": replace(full, beta1=(0.95,)),
        "no random scaling": replace(full, param_scale=0.0),
        "MNIST base task only": replace(full, mixture=False),
        "no curriculum": replace(full, start_horizon=full.final_horizon, epochs_per_stage=flat_epochs),
    }


FULL = Recipe()
ABLATIONS: dict[str, Recipe] = ablations(FULL)


def build(recipe: Recipe, batch_size: int = 128, device="cpu"):
    """(optimizer, meta-training family, validation family) of `recipe`, on `device`."""
    if recipe.inputs == "rnnprop":
        optimizer = RNNpropOptimizer(RNNpropConfig(beta1=recipe.beta1, beta2=recipe.beta2))
    else:
        optimizer = LSTMOptimizer(config=LSTMConfig(preprocess=True, output_scale=0.1))
    tasks = TRAIN_TASKS if recipe.mixture else TRAIN_TASKS[:1]  # TRAIN_TASKS[0] is the paper's base network
    train = TaskMixture(tasks, param_scale=recipe.param_scale, objective_scale=recipe.objective_scale,
                        batch_size=batch_size, device=device)
    return optimizer.to(device), train, validation_mixture(batch_size, device)
