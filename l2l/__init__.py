"""l2l: Learning to learn by gradient descent by gradient descent (Andrychowicz et al., 2016), in PyTorch."""
__version__ = "0.1.0"

from .baselines import BASELINES, LR_GRID, NAG, SGD, Adam, RMSprop, Tuning, tune_baselines  # noqa: E402
from .checkpoint import load_optimizer, save_optimizer  # noqa: E402
from .evaluate import evaluate, evaluate_all, mean_and_band, rollout, summarize  # noqa: E402
from .meta import History, MetaTrainConfig, meta_train  # noqa: E402
from .optimizer import CoordinatewiseLSTM, LSTMConfig, LSTMOptimizer, LSTMState, preprocess  # noqa: E402
from .profiles import PROFILES, resolve_profile  # noqa: E402
from .torch_optim import LearnedOptimizer  # noqa: E402
from . import plots  # noqa: E402

__all__ = [
    "BASELINES", "LR_GRID", "NAG", "SGD", "Adam", "RMSprop", "Tuning", "tune_baselines",
    "load_optimizer", "save_optimizer", "evaluate", "evaluate_all", "mean_and_band", "rollout", "summarize",
    "History", "MetaTrainConfig", "meta_train",
    "CoordinatewiseLSTM", "LSTMConfig", "LSTMOptimizer", "LSTMState", "preprocess",
    "PROFILES", "resolve_profile", "plots", "LearnedOptimizer",
]
