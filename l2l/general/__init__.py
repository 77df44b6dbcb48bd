"""Beyond the paper: a second meta-training recipe for a learned optimizer that trains networks it never saw.

Kept apart from the paper-faithful chapters. Built from published techniques around the paper's coordinatewise
two-layer LSTM:

- `optimizer`: RNNprop's inputs and bounded output (Lv, Jiang & Li 2017), with an `lr` multiplier;
- `tasks`: a mixture of small MLPs and CNNs on MNIST and CIFAR-10, with random scaling (Lv et al. 2017);
- `curriculum`: a horizon curriculum (Chen et al. 2020) and the log-ratio meta-loss (Wichrowska et al. 2017);
- `recipe`: the full recipe as data (`Recipe`), its `ABLATIONS`, and `build`.

`l2l.LearnedOptimizer` applies a trained RNNpropOptimizer to any model; its param-group `lr` scales the steps.
"""
from .curriculum import HorizonCurriculum, log_ratio_meta_loss
from .optimizer import RNNpropConfig, RNNpropNet, RNNpropOptimizer
from .recipe import ABLATIONS, Recipe, ablations, build
from .tasks import (TRAIN_TASKS, VALIDATION_TASKS, ScaledProblem, SmallNetFamily, TaskMixture, TaskSpec,
                    validation_mixture)

__all__ = ["ABLATIONS", "Recipe", "ablations", "build", "HorizonCurriculum", "log_ratio_meta_loss", "RNNpropConfig",
           "RNNpropNet", "RNNpropOptimizer", "TRAIN_TASKS", "VALIDATION_TASKS",
           "ScaledProblem", "SmallNetFamily", "TaskMixture", "TaskSpec", "validation_mixture"]
