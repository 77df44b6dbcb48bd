"""The paper's CIFAR-10 optimizee (section 3.3): a small convolutional network with batch normalization.

    3 × [conv 5×5, 16 channels, stride 1, 'same' padding → batch norm → ReLU → max-pool 2×2]
    → FC 32 → batch norm → ReLU → linear to n_classes,   cross-entropy on a fresh minibatch of 128

(16-16-16 channels, 5×5 kernels and batch 128 are the official code's; the paper says "three convolutional
layers with max pooling followed by a fully-connected layer with 32 hidden units; all non-linearities were ReLU
activations with batch normalization".) A 32×32 image leaves the conv stack as 16×4×4 = 256 features.

Batch norm runs in training mode inside every unroll: each minibatch is normalised by its own statistics
(F.batch_norm with training=True and no running statistics), as a network trained by SGD would see it; γ and β
are ordinary parameters, learned by the optimizer. The layers before a batch norm have no bias, because the
minibatch mean removes it (its gradient is exactly zero): β is that layer's bias. The last linear layer has one.

Parameter groups, one flat tensor each, so each can have its own LSTM (paper: "one LSTM for the fully connected
layers and one for the convolutional layers"):

- "conv": the three conv kernels and, with assign="paper" (the default), their batch-norm γ and β;
- "fc":   the FC weight, its batch-norm γ and β, and the output layer's weight and bias.

assign="official" follows the official code instead, whose "conv" LSTM updates only the conv kernels and whose
"fc" LSTM updates everything else (the conv layers' batch-norm parameters included).

Inputs are uint8 pixels ÷ 255, normalised by the per-channel mean and std of CIFAR-10's training images. The
dataset stays on the device; each `loss` call gathers `batch_size` random indices from the problem's own device
generator, restricted to the family's label subset (labels renumbered 0..n_classes-1).

Used in: 03_cifar.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data_cifar import CLASSES, MEAN, SPLITS, STD, load_cifar10, subset_classes
from .base import MinibatchClassifier, child_seed

INITS = ("torch", "official")
ASSIGNS = ("paper", "official")
GROUPS = ("conv", "fc")


@dataclass(frozen=True)
class Spec:
    """One parameter tensor of the network: its name, shape, parameter group and how it is initialised."""

    name: str
    shape: tuple[int, ...]
    group: str
    kind: str  # "weight" (fan_in-scaled), "bias", "gamma" (ones), "beta" (zeros)
    fan_in: int = 1

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


class CNNProblem(MinibatchClassifier):
    """One freshly initialised CNN on a CIFAR-10 label subset; a single instance (loss shape [1])."""

    def __init__(self, family: "CNNFamily", theta0: dict[str, Tensor], generator: torch.Generator):
        self.family, self.theta0, self.generator = family, theta0, generator
        self.images, self.labels = family.data(family.split)

    def init(self) -> dict[str, Tensor]:
        return {g: t.clone() for g, t in self.theta0.items()}

    def unflatten(self, theta: dict[str, Tensor]) -> dict[str, Tensor]:
        """{name: tensor} as views of the flat groups (gradients reach θ, nothing is copied)."""
        out, offsets = {}, dict.fromkeys(GROUPS, 0)
        for spec in self.family.specs:
            start = offsets[spec.group]
            out[spec.name] = theta[spec.group][start:start + spec.numel].view(spec.shape)
            offsets[spec.group] = start + spec.numel
        return out

    def forward(self, theta: dict[str, Tensor], images: Tensor) -> Tensor:
        """Logits [B, n_classes] for uint8 images [B, 3, 32, 32]; batch norm uses this batch's statistics."""
        p = self.unflatten(theta)
        scale, shift = self.family.normalisation(images.device)
        x = images.float() * scale + shift
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)  # ~20% faster convolutions on CPU, same values
        for i in range(len(self.family.channels)):
            x = F.conv2d(x, p[f"conv{i}.weight"], padding=self.family.kernel // 2)
            x = F.batch_norm(x, None, None, p[f"conv{i}.bn.gamma"], p[f"conv{i}.bn.beta"], training=True)
            # max-pool before ReLU: the same numbers (ReLU is monotone, and the argmax is the same window entry),
            # and ReLU and its backward then touch a quarter of the elements: ~20% off the step on a CPU
            x = F.relu(F.max_pool2d(x, 2))
        x = F.linear(x.flatten(1), p["fc.weight"])
        x = F.relu(F.batch_norm(x, None, None, p["fc.bn.gamma"], p["fc.bn.beta"], training=True))
        return F.linear(x, p["out.weight"], p["out.bias"])

    @torch.no_grad()
    def accuracy(self, theta, split: str | None = None, chunk: int = 1000, max_images: int | None = None) -> float:
        """Fraction classified correctly among the subset's images of `split`, no grad.

        split: default the split this problem does *not* train on (held-out images). There are no running
        statistics, so batch norm normalises each chunk of `chunk` images by that chunk's own statistics; the
        images are visited in a fixed random order so that every chunk mixes the classes (chunks of `chunk` to
        2·`chunk` images). max_images: only the first that many of that order (None: all).
        """
        split = split or next(s for s in SPLITS if s != self.family.split)
        images, labels = self.family.data(split)
        order = self.family.eval_order(split)[:max_images]
        chunks = order.tensor_split(max(1, order.numel() // chunk))  # no tiny last chunk for batch norm
        correct = sum((self.forward(theta, images[idx]).argmax(1) == labels[idx]).sum() for idx in chunks)
        return float(correct) / order.numel()


@dataclass
class CNNFamily:
    """The paper's CNN on a CIFAR-10 label subset, each sample a fresh initialisation and its own minibatch stream.

    classes: a subset name from l2l.data_cifar.SUBSETS ("CIFAR-10", "CIFAR-5", "CIFAR-2", "CIFAR-5 complement")
    or a tuple of class names; the network has one output per class. split: the images the optimizee trains on.
    init "torch" (default): nn.Conv2d/nn.Linear's U(±1/√fan_in) for weights and the output bias, γ = 1, β = 0;
    "official": N(0, 0.01²) for weights and the output bias, as the official code. Initial weights come from the
    CPU generator given to `sample`, so a seed fixes them on every device.
    """

    classes: str | tuple[str, ...] = "CIFAR-10"
    split: str = "train"
    batch_size: int = 128
    channels: tuple[int, ...] = (16, 16, 16)
    kernel: int = 5
    hidden: int = 32
    init: str = "torch"
    assign: str = "paper"
    device: torch.device | str = "cpu"
    _data: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # split -> tensors
    _norm: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # device -> scale, shift

    def __post_init__(self):
        self.class_names = subset_classes(self.classes)
        self.channels = tuple(int(c) for c in self.channels)
        if self.split not in SPLITS:
            raise ValueError(f"unknown CIFAR-10 split {self.split!r}; expected one of {SPLITS}")
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; expected one of {INITS}")
        if self.assign not in ASSIGNS:
            raise ValueError(f"unknown parameter assignment {self.assign!r}; expected one of {ASSIGNS}")
        if not self.channels or min(self.channels) < 1 or self.hidden < 1 or self.batch_size < 2:
            raise ValueError(f"CNNFamily needs channels, hidden >= 1 and batch_size >= 2 (batch norm), got "
                             f"{self.channels}, {self.hidden}, {self.batch_size}")
        if self.kernel < 1 or self.kernel % 2 == 0 or 32 % 2 ** len(self.channels):
            raise ValueError(f"kernel must be odd and 32 divisible by 2^(conv layers), got {self.kernel}, "
                             f"{len(self.channels)} layers")
        self.device = torch.device(self.device)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def specs(self) -> list[Spec]:
        """Every parameter tensor in order; the flat groups are these, concatenated group by group."""
        bn_group = "conv" if self.assign == "paper" else "fc"
        specs, c_in = [], 3
        for i, c in enumerate(self.channels):
            specs += [Spec(f"conv{i}.weight", (c, c_in, self.kernel, self.kernel), "conv", "weight",
                           c_in * self.kernel ** 2),
                      Spec(f"conv{i}.bn.gamma", (c,), bn_group, "gamma"),
                      Spec(f"conv{i}.bn.beta", (c,), bn_group, "beta")]
            c_in = c
        features = c_in * (32 // 2 ** len(self.channels)) ** 2
        return specs + [Spec("fc.weight", (self.hidden, features), "fc", "weight", features),
                        Spec("fc.bn.gamma", (self.hidden,), "fc", "gamma"),
                        Spec("fc.bn.beta", (self.hidden,), "fc", "beta"),
                        Spec("out.weight", (self.n_classes, self.hidden), "fc", "weight", self.hidden),
                        Spec("out.bias", (self.n_classes,), "fc", "bias", self.hidden)]

    @property
    def n_params(self) -> dict[str, int]:
        return {g: sum(s.numel for s in self.specs if s.group == g) for g in GROUPS}

    def normalisation(self, device) -> tuple[Tensor, Tensor]:
        """(scale, shift) [1, 3, 1, 1] with x = uint8 · scale + shift = (uint8/255 − mean) / std; made once per device."""
        key = str(device)
        if key not in self._norm:
            std, mean = torch.tensor(STD, device=device), torch.tensor(MEAN, device=device)
            self._norm[key] = (1 / (255 * std)).view(1, 3, 1, 1), (-mean / std).view(1, 3, 1, 1)
        return self._norm[key]

    def data(self, split: str) -> tuple[Tensor, Tensor]:
        """The subset's images of `split` and labels renumbered 0..n_classes-1, on this family's device, once."""
        if split not in self._data:
            full = load_cifar10(split, self.device)
            if self.class_names == CLASSES:
                images, labels = full.images, full.labels  # all ten in torchvision's order: no copy
            else:
                lookup = torch.full((len(CLASSES),), -1, dtype=torch.int64)
                lookup[[CLASSES.index(c) for c in self.class_names]] = torch.arange(self.n_classes)
                lookup = lookup.to(self.device)
                keep = (lookup[full.labels] >= 0).nonzero().squeeze(1)
                images, labels = full.images[keep], lookup[full.labels[keep]]
            self._data[split] = (images, labels)
        return self._data[split]

    def eval_order(self, split: str) -> Tensor:
        """A fixed random order of the subset's `split` images (the same for every problem and optimizer)."""
        n = self.data(split)[1].shape[0]
        return torch.randperm(n, generator=torch.Generator().manual_seed(0)).to(self.device)

    def data_source(self) -> str:
        """Which CIFAR-10 layout (and root) the family's images came from, read from the loader."""
        return load_cifar10(self.split, self.device).source

    def sample(self, generator: torch.Generator) -> CNNProblem:
        parts = {g: [] for g in GROUPS}
        for spec in self.specs:
            if spec.kind == "gamma":
                t = torch.ones(spec.shape)
            elif spec.kind == "beta":
                t = torch.zeros(spec.shape)
            elif self.init == "torch":
                t = (torch.rand(spec.shape, generator=generator) * 2 - 1) / math.sqrt(spec.fan_in)
            else:
                t = 0.01 * torch.randn(spec.shape, generator=generator)
            parts[spec.group].append(t.reshape(-1))
        theta0 = {g: torch.cat(p).to(self.device) for g, p in parts.items()}
        batches = torch.Generator(device=self.device).manual_seed(child_seed(generator))
        return CNNProblem(self, theta0, batches)
