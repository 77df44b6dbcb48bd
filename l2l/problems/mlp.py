"""The paper's MNIST optimizee (section 3.2): an MLP, cross-entropy on a fresh minibatch of 128 at every step.

Base network 784-20-10 with sigmoid; the generalization tests change the width, the depth (`hidden`) and
the activation (ReLU). All weights live in ONE flat group {"mlp": θ}, so the LSTM sees every coordinate in
one call; W and b are views (slices) of θ, so gradients flow to θ without copies.

Inputs are the uint8 pixels scaled to [0, 1] (÷255) and nothing else, as in the official code (TensorFlow's
MNIST reader); no mean/std normalisation. The dataset stays on the device and each `loss` call gathers 128
random indices drawn from the problem's own device generator: no DataLoader, no host sync.

Used in: 02_mnist.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data import META_TRAIN_SPLIT, SPLITS, TEST_SPLIT, load_mnist
from .base import MinibatchClassifier, child_seed

ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh}
INITS = ("torch", "official")


class MLPProblem(MinibatchClassifier):
    """One freshly initialised MLP on MNIST; a single instance (loss shape [1])."""

    def __init__(self, family: "MLPFamily", theta0: Tensor, generator: torch.Generator):
        self.family, self.theta0, self.generator = family, theta0, generator
        self.images, self.labels = family.data(family.split)

    @property
    def sizes(self) -> list[int]:
        return self.family.sizes

    def init(self) -> dict[str, Tensor]:
        return {"mlp": self.theta0.clone()}

    def unflatten(self, theta: dict[str, Tensor] | Tensor) -> list[tuple[Tensor, Tensor]]:
        """[(W [out, in], b [out]) per layer] as views of the flat θ (gradients reach θ, nothing is copied)."""
        flat = theta["mlp"] if isinstance(theta, dict) else theta
        layers, offset = [], 0
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            W = flat[offset:offset + fan_out * fan_in].view(fan_out, fan_in)
            offset += fan_out * fan_in
            layers.append((W, flat[offset:offset + fan_out]))
            offset += fan_out
        return layers

    def forward(self, theta, images: Tensor) -> Tensor:
        """Logits [B, 10] for uint8 images [B, 28, 28]."""
        x = images.reshape(images.shape[0], -1).float() / 255.0
        layers = self.unflatten(theta)
        act = ACTIVATIONS[self.family.activation]
        for i, (W, b) in enumerate(layers):
            x = F.linear(x, W, b)
            if i < len(layers) - 1:
                x = act(x)
        return x

    @torch.no_grad()
    def accuracy(self, theta, split: str = TEST_SPLIT, chunk: int = 10_000) -> float:
        """Fraction of `split` (default: the held-out test set) classified correctly; the whole set, no grad."""
        images, labels = self.family.data(split)
        correct = sum((self.forward(theta, images[i:i + chunk]).argmax(1) == labels[i:i + chunk]).sum()
                      for i in range(0, labels.shape[0], chunk))
        return float(correct) / labels.shape[0]


@dataclass
class MLPFamily:
    """MLPs 784-hidden…-10 on MNIST, each sample a fresh initialisation and its own minibatch stream.

    init "torch" (default): nn.Linear's U(±1/√fan_in) for W and b; "official": N(0, 0.01²) as in the
    official TensorFlow code. Weights come from the CPU generator given to `sample`, so a seed fixes them on
    every device. split: the data the optimizee trains on (MNIST's training set; "test" only for ablations).
    """

    hidden: tuple[int, ...] = (20,)
    activation: str = "sigmoid"
    batch_size: int = 128
    split: str = META_TRAIN_SPLIT
    device: torch.device | str = "cpu"
    init: str = "torch"
    _data: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; expected one of {sorted(ACTIVATIONS)}")
        if any(h < 1 for h in self.hidden) or self.batch_size < 1:
            raise ValueError(f"MLPFamily needs positive widths and batch_size, got {self.hidden}, {self.batch_size}")
        if self.split not in SPLITS:
            raise ValueError(f"unknown MNIST split {self.split!r}; expected one of {SPLITS}")
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; expected one of {INITS}")
        self.device = torch.device(self.device)

    @property
    def sizes(self) -> list[int]:
        return [28 * 28, *self.hidden, 10]

    @property
    def n_params(self) -> int:
        return sum(i * o + o for i, o in zip(self.sizes[:-1], self.sizes[1:]))

    def data(self, split: str) -> tuple[Tensor, Tensor]:
        """MNIST `split` on this family's device, loaded once and shared by every problem it samples."""
        if split not in self._data:
            self._data[split] = load_mnist(split, self.device)
        return self._data[split]

    def sample(self, generator: torch.Generator) -> MLPProblem:
        parts = []
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            for shape in ((fan_out, fan_in), (fan_out,)):
                if self.init == "torch":
                    bound = 1.0 / math.sqrt(fan_in)
                    parts.append((torch.rand(shape, generator=generator) * 2 - 1).mul_(bound).reshape(-1))
                else:
                    parts.append(0.01 * torch.randn(shape, generator=generator).reshape(-1))
        theta0 = torch.cat(parts).to(self.device)
        batches = torch.Generator(device=self.device).manual_seed(child_seed(generator))
        return MLPProblem(self, theta0, batches)
