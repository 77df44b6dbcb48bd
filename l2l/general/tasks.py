"""The task mixture of the second recipe: many small networks, randomly rescaled, one family.

A `TaskMixture` samples a problem by drawing one task configuration (`TaskSpec`) and then a fresh network of it:

- MLPs on MNIST of several widths and depths with sigmoid, tanh and ReLU (`l2l.problems.MLPFamily`);
- small CNNs on MNIST and CIFAR-10, with and without batch norm and dropout, and an MLP on CIFAR-10
  (`SmallNetFamily`, below: [conv 3×3 → (batch norm) → act → max-pool 2×2]* → (dropout) → FC* → linear).

Random scaling (Lv, Jiang & Li 2017, "random scaling"; their code: ExponentiallyPointwiseRandomScaling): the
problem the optimizer sees is

    f_c(θ') = s · f(c ⊙ θ'),   θ'_0 = θ_0 / c,   c_i = exp(U(−r, r)) per coordinate,   s = exp(U(−r_f, r_f))

so f_c(θ'_0) = s · f(θ_0) and the network computed is the same; only the geometry the optimizer has to cope with
changes (RNNprop: r = 3 on MNIST). Its inputs are invariant to s (relative gradients), so objective scaling only
reweights problems in the meta-loss (and is a no-op under a log-ratio meta-loss); it is off by default (r_f = 0).
Scaling is for meta-training only: `validation_mixture()` and anything used to judge φ have r = r_f = 0.

Every sampled problem has ONE parameter group, "params" (the task's own groups concatenated), so problems of
different tasks can share a `MetaBatch` and one LSTM call.

The task lists: `TRAIN_TASKS` (meta-training) and `VALIDATION_TASKS` (early stopping) are disjoint configurations.
Tests of generalisation (later stages) must use networks in neither list, e.g. the paper's own CIFAR CNN and a
standard MNIST ReLU CNN with wider layers.

Used in: the second meta-training recipe (l2l.general, issue 19).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data import META_TRAIN_SPLIT, load_mnist
from ..data_cifar import MEAN, STD, load_cifar10
from ..problems.base import MinibatchClassifier, child_seed
from ..problems.cnn import Spec
from ..problems.mlp import ACTIVATIONS, MLPFamily

GROUP = "params"  # the single parameter group of every mixture problem
DATASETS = {"mnist": (1, 28), "cifar10": (3, 32)}  # channels, side


# --- a small network family on MNIST or CIFAR-10 --------------------------------------------------------------

class SmallNetProblem(MinibatchClassifier):
    """One freshly initialised SmallNet; a single instance (loss shape [1]). Dropout only in `loss` (training)."""

    def __init__(self, family: "SmallNetFamily", theta0: Tensor, generator: torch.Generator):
        self.family, self.theta0, self.generator = family, theta0, generator
        self.images, self.labels = family.data(family.split)

    def init(self) -> dict[str, Tensor]:
        return {"net": self.theta0.clone()}

    def unflatten(self, theta) -> dict[str, Tensor]:
        flat, out, offset = theta["net"], {}, 0
        for spec in self.family.specs:
            out[spec.name] = flat[offset:offset + spec.numel].view(spec.shape)
            offset += spec.numel
        return out

    def forward(self, theta, images: Tensor, train: bool = False) -> Tensor:
        fam, p = self.family, self.unflatten(theta)
        act = ACTIVATIONS[fam.activation]
        x = images.float()
        if x.dim() == 3:
            x = x.unsqueeze(1)  # MNIST: [B, 28, 28] -> [B, 1, 28, 28]
        scale, shift = fam.normalisation(x.device)
        x = x * scale + shift
        for i in range(len(fam.channels)):
            x = F.conv2d(x, p[f"conv{i}.weight"], p.get(f"conv{i}.bias"), padding=1)
            if fam.batch_norm:
                x = F.batch_norm(x, None, None, p[f"conv{i}.bn.gamma"], p[f"conv{i}.bn.beta"], training=True)
            x = F.max_pool2d(act(x), 2)
        x = x.flatten(1)
        for i in range(len(fam.hidden)):
            x = act(F.linear(self._dropout(x, train), p[f"fc{i}.weight"], p[f"fc{i}.bias"]))
        return F.linear(self._dropout(x, train), p["out.weight"], p["out.bias"])

    def _dropout(self, x: Tensor, train: bool) -> Tensor:
        """Inverted dropout with this problem's own generator (so a seed fixes the masks too)."""
        rate = self.family.dropout
        if not train or rate == 0:
            return x
        keep = torch.rand(x.shape, generator=self.generator, device=x.device) >= rate
        return x * keep / (1 - rate)

    def loss(self, theta: dict[str, Tensor]) -> Tensor:
        images, labels = self.sample_batch()
        return F.cross_entropy(self.forward(theta, images, train=True), labels).reshape(1)

    def accuracy(self, theta: dict[str, Tensor], split: str = "test", chunk: int = 1000) -> float:
        """Fraction of `split`'s images (default: the held-out test set) classified correctly: no grad, no dropout;
        batch norm normalises each chunk of `chunk` images by its own statistics (there are no running ones)."""
        images, labels = self.family.data(split)
        with torch.no_grad():
            correct = sum((self.forward(theta, images[i:i + chunk]).argmax(1) == labels[i:i + chunk]).sum()
                          for i in range(0, labels.shape[0], chunk))
        return float(correct) / labels.shape[0]


@dataclass
class SmallNetFamily:
    """[conv 3×3 → batch norm? → act → max-pool 2×2]* → FC (hidden)* → linear to 10, on MNIST or CIFAR-10.

    channels=() gives an MLP on the raw pixels. Dropout (rate `dropout`) before every FC layer, in training only.
    Inputs: uint8 ÷ 255 on MNIST (as l2l.problems.mlp), per-channel standardised on CIFAR-10 (as l2l.problems.cnn).
    Init: torch's U(±1/√fan_in) for weights and biases, γ = 1, β = 0; convs before batch norm have no bias.
    """

    dataset: str = "mnist"
    channels: tuple[int, ...] = (8, 16)
    hidden: tuple[int, ...] = ()
    activation: str = "relu"
    batch_norm: bool = False
    dropout: float = 0.0
    batch_size: int = 128
    split: str = META_TRAIN_SPLIT
    device: torch.device | str = "cpu"
    _data: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.channels, self.hidden = tuple(int(c) for c in self.channels), tuple(int(h) for h in self.hidden)
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; expected one of {sorted(DATASETS)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; expected one of {sorted(ACTIVATIONS)}")
        if min(self.channels + self.hidden, default=1) < 1 or not 0 <= self.dropout < 1 or self.batch_size < 2:
            raise ValueError(f"SmallNetFamily needs positive widths, 0 <= dropout < 1 and batch_size >= 2, got "
                             f"{self.channels}, {self.hidden}, {self.dropout}, {self.batch_size}")
        self.device = torch.device(self.device)

    @property
    def specs(self) -> list[Spec]:
        c_in, side = DATASETS[self.dataset]
        specs = []
        for i, c in enumerate(self.channels):
            specs.append(Spec(f"conv{i}.weight", (c, c_in, 3, 3), "net", "weight", c_in * 9))
            if self.batch_norm:
                specs += [Spec(f"conv{i}.bn.gamma", (c,), "net", "gamma"),
                          Spec(f"conv{i}.bn.beta", (c,), "net", "beta")]
            else:
                specs.append(Spec(f"conv{i}.bias", (c,), "net", "bias", c_in * 9))
            c_in, side = c, side // 2
        width = c_in * side * side
        for i, h in enumerate(self.hidden):
            specs += [Spec(f"fc{i}.weight", (h, width), "net", "weight", width),
                      Spec(f"fc{i}.bias", (h,), "net", "bias", width)]
            width = h
        return specs + [Spec("out.weight", (10, width), "net", "weight", width),
                        Spec("out.bias", (10,), "net", "bias", width)]

    @property
    def n_params(self) -> int:
        return sum(s.numel for s in self.specs)

    def normalisation(self, device) -> tuple[Tensor, Tensor]:
        """(scale, shift) with x = uint8 · scale + shift."""
        if self.dataset == "mnist":
            return torch.tensor(1 / 255.0, device=device), torch.tensor(0.0, device=device)
        std, mean = torch.tensor(STD, device=device), torch.tensor(MEAN, device=device)
        return (1 / (255 * std)).view(1, 3, 1, 1), (-mean / std).view(1, 3, 1, 1)

    def data(self, split: str) -> tuple[Tensor, Tensor]:
        if split not in self._data:
            if self.dataset == "mnist":
                self._data[split] = load_mnist(split, self.device)
            else:
                full = load_cifar10(split, self.device)
                self._data[split] = (full.images, full.labels)
        return self._data[split]

    def sample(self, generator: torch.Generator) -> SmallNetProblem:
        parts = []
        for spec in self.specs:
            if spec.kind == "gamma":
                t = torch.ones(spec.shape)
            elif spec.kind == "beta":
                t = torch.zeros(spec.shape)
            else:
                t = (torch.rand(spec.shape, generator=generator) * 2 - 1) / math.sqrt(spec.fan_in)
            parts.append(t.reshape(-1))
        batches = torch.Generator(device=self.device).manual_seed(child_seed(generator))
        return SmallNetProblem(self, torch.cat(parts).to(self.device), batches)


# --- task configurations -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskSpec:
    """One task configuration of the mixture: "mlp" on MNIST is l2l's MLPFamily, anything else a SmallNetFamily."""

    name: str
    dataset: str = "mnist"
    arch: str = "mlp"  # "mlp" or "cnn"
    hidden: tuple[int, ...] = ()  # FC widths (after the convs for a CNN)
    channels: tuple[int, ...] = ()  # conv widths (cnn only)
    activation: str = "relu"
    batch_norm: bool = False
    dropout: float = 0.0

    def family(self, batch_size: int = 128, device="cpu"):
        if self.arch not in ("mlp", "cnn"):
            raise ValueError(f"task {self.name!r}: unknown arch {self.arch!r}; expected 'mlp' or 'cnn'")
        if self.arch == "mlp" and self.dataset == "mnist" and not (self.batch_norm or self.dropout):
            return MLPFamily(hidden=self.hidden, activation=self.activation, batch_size=batch_size, device=device)
        channels = self.channels if self.arch == "cnn" else ()
        return SmallNetFamily(dataset=self.dataset, channels=channels, hidden=self.hidden, activation=self.activation,
                              batch_norm=self.batch_norm, dropout=self.dropout, batch_size=batch_size, device=device)


def _mlp(name, hidden, act, dataset="mnist"):
    return TaskSpec(name, dataset, "mlp", hidden=hidden, activation=act)


def _cnn(name, dataset, channels, act="relu", bn=False, dropout=0.0, hidden=()):
    return TaskSpec(name, dataset, "cnn", hidden=hidden, channels=channels, activation=act, batch_norm=bn,
                    dropout=dropout)


TRAIN_TASKS: tuple[TaskSpec, ...] = (
    _mlp("mlp-mnist-20-sigmoid", (20,), "sigmoid"),
    _mlp("mlp-mnist-32-relu", (32,), "relu"),
    _mlp("mlp-mnist-40-tanh", (40,), "tanh"),
    _mlp("mlp-mnist-16x16-relu", (16, 16), "relu"),
    _mlp("mlp-mnist-32x32-sigmoid", (32, 32), "sigmoid"),
    _mlp("mlp-mnist-20x20x20-tanh", (20, 20, 20), "tanh"),
    _mlp("mlp-cifar10-16-relu", (16,), "relu", dataset="cifar10"),
    _cnn("cnn-mnist-8x16-relu", "mnist", (8, 16)),
    _cnn("cnn-mnist-8x16-relu-bn", "mnist", (8, 16), bn=True),
    _cnn("cnn-mnist-8-tanh-dropout", "mnist", (8,), act="tanh", dropout=0.3),
    _cnn("cnn-cifar10-8x16-relu-bn", "cifar10", (8, 16), bn=True),
    _cnn("cnn-cifar10-16x16-relu-bn-dropout", "cifar10", (16, 16), bn=True, dropout=0.3),
    _cnn("cnn-cifar10-8x16-tanh", "cifar10", (8, 16), act="tanh"),
)

VALIDATION_TASKS: tuple[TaskSpec, ...] = (  # configurations absent from TRAIN_TASKS
    _mlp("mlp-mnist-48-relu", (48,), "relu"),
    _mlp("mlp-mnist-24x24-sigmoid", (24, 24), "sigmoid"),
    _cnn("cnn-mnist-12x12-relu-bn-dropout", "mnist", (12, 12), bn=True, dropout=0.2),
    _cnn("cnn-cifar10-12x24-relu", "cifar10", (12, 24)),
    _cnn("cnn-cifar10-8x8x16-relu-bn", "cifar10", (8, 8, 16), bn=True, hidden=(32,)),
)


# --- random scaling and the mixture ------------------------------------------------------------------------

class ScaledProblem:
    """`inner` seen through f_c(θ') = s · f(c ⊙ θ'), θ'_0 = θ_0 / c, as one flat group "params" (see module doc).

    scale: c, a tensor [n] (None: c = 1); objective_scale: s. `task` names the TaskSpec it came from.
    """

    def __init__(self, inner, scale: Tensor | None = None, objective_scale: float = 1.0, task: str = ""):
        self.inner, self.scale, self.objective_scale, self.task = inner, scale, float(objective_scale), task
        self.n_instances = inner.n_instances
        theta0 = inner.init()
        self.groups = [(g, t.shape, t.numel()) for g, t in theta0.items()]
        self.n_params = sum(n for _, _, n in self.groups)
        if scale is not None and scale.shape != (self.n_params,):
            raise ValueError(f"scale must have shape ({self.n_params},), got {tuple(scale.shape)}")

    def init(self) -> dict[str, Tensor]:
        flat = torch.cat([t.reshape(-1) for t in self.inner.init().values()])
        return {GROUP: flat if self.scale is None else flat / self.scale}

    def unscaled(self, theta: dict[str, Tensor]) -> dict[str, Tensor]:
        """The inner problem's θ = c ⊙ θ' as its own groups (views: gradients reach θ')."""
        flat = theta[GROUP] if self.scale is None else theta[GROUP] * self.scale
        parts = flat.split([n for _, _, n in self.groups])
        return {g: p.view(shape) for (g, shape, _), p in zip(self.groups, parts)}

    def _scaled(self, loss: Tensor) -> Tensor:
        return loss if self.objective_scale == 1.0 else loss * self.objective_scale

    def loss(self, theta: dict[str, Tensor]) -> Tensor:
        return self._scaled(self.inner.loss(self.unscaled(theta)))

    def eval_loss(self, theta: dict[str, Tensor]) -> Tensor:
        """The inner problem's fixed-batch loss where it has one (l2l.evaluate.final_loss), scaled alike."""
        inner = getattr(self.inner, "eval_loss", self.inner.loss)
        return self._scaled(inner(self.unscaled(theta)))


@dataclass
class TaskMixture:
    """A family that draws a task from `tasks` (by `weights`, default uniform), then a fresh network of it, and
    wraps it in random scaling with ranges param_scale (r) and objective_scale (r_f); 0 turns either off."""

    tasks: tuple[TaskSpec, ...] = TRAIN_TASKS
    weights: tuple[float, ...] | None = None
    param_scale: float = 3.0  # RNNprop's r on MNIST
    objective_scale: float = 0.0
    batch_size: int = 128
    device: torch.device | str = "cpu"
    _families: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.tasks = tuple(self.tasks)
        if not self.tasks:
            raise ValueError("TaskMixture needs at least one task")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {names}")
        if self.weights is not None:
            self.weights = tuple(float(w) for w in self.weights)
            if len(self.weights) != len(self.tasks) or min(self.weights) < 0 or sum(self.weights) <= 0:
                raise ValueError(f"weights must be {len(self.tasks)} non-negative numbers with a positive sum, "
                                 f"got {self.weights}")
        if self.param_scale < 0 or self.objective_scale < 0:
            raise ValueError(f"scale ranges must be >= 0, got {self.param_scale}, {self.objective_scale}")
        self.device = torch.device(self.device)

    def family(self, name: str):
        """The problem family of task `name`, built once (its dataset is loaded on first use and then shared)."""
        if name not in self._families:
            spec = next((t for t in self.tasks if t.name == name), None)
            if spec is None:
                raise ValueError(f"no task {name!r} in this mixture; its tasks are {[t.name for t in self.tasks]}")
            self._families[name] = spec.family(self.batch_size, self.device)
        return self._families[name]

    def sample(self, generator: torch.Generator) -> ScaledProblem:
        weights = torch.tensor(self.weights or [1.0] * len(self.tasks), dtype=torch.float64)
        spec = self.tasks[int(torch.multinomial(weights, 1, generator=generator))]
        inner = self.family(spec.name).sample(generator)
        n = sum(t.numel() for t in inner.init().values())
        scale = None
        if self.param_scale > 0:
            scale = ((torch.rand(n, generator=generator) * 2 - 1) * self.param_scale).exp().to(self.device)
        s = 1.0
        if self.objective_scale > 0:
            s = math.exp((float(torch.rand((), generator=generator)) * 2 - 1) * self.objective_scale)
        return ScaledProblem(inner, scale, s, task=spec.name)


def validation_mixture(batch_size: int = 128, device="cpu") -> TaskMixture:
    """The held-out configurations, unscaled: the family φ is selected on (early stopping)."""
    return TaskMixture(VALIDATION_TASKS, param_scale=0.0, objective_scale=0.0, batch_size=batch_size, device=device)
