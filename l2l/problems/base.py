"""The functional optimizee interface.

A *family* samples *problems*. A problem gives its initial θ as a dict of flat parameter groups (plain
tensors, so θ_t can carry the graph to φ through an unroll) and `loss(theta)`: one loss per *instance*,
shape [n_instances]. A problem may hold several independent instances (the quadratics chapter draws 128
functions at once, as the official code did); every coordinate belongs to exactly one instance, so the
gradient of `loss(theta).sum()` is each instance's own gradient, and the meta-loss averages instances.
Problems with data sample their own minibatch at every call of `loss`, from a generator they own.
"""
from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor


class Problem(Protocol):
    n_instances: int

    def init(self) -> dict[str, Tensor]:
        """Initial θ_0: {group: flat tensor}; a fresh copy on every call."""

    def loss(self, theta: dict[str, Tensor]) -> Tensor:
        """f(θ) per instance, shape [n_instances]; draws a new minibatch where the problem has data."""


class ProblemFamily(Protocol):
    device: torch.device

    def sample(self, generator: torch.Generator) -> Problem:
        """A new random problem; all its randomness comes from `generator` (a CPU generator)."""


def child_seed(generator: torch.Generator) -> int:
    """A seed drawn from `generator`, for a problem's own minibatch generator."""
    return int(torch.randint(0, 2**62, (1,), generator=generator))


EVAL_IMAGES = 2048  # the fixed evaluation batch: this many training images, the same for every problem and run
EVAL_SEED = 20_160_614  # which ones (fixed, independent of the run's seed)


class MinibatchClassifier:
    """Shared by the MNIST and CIFAR problems: device-resident `images`/`labels`, a device `generator` of the
    problem's own, and `forward(theta, images) -> logits`. One instance: loss shape [1]."""

    n_instances = 1

    def eval_batch(self) -> tuple[Tensor, Tensor]:
        """A fixed evaluation batch of EVAL_IMAGES images of the problem's own split (the same for every problem)."""
        n = self.labels.shape[0]
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(EVAL_SEED))[:EVAL_IMAGES]
        idx = idx.to(self.labels.device)
        return self.images[idx], self.labels[idx]

    def eval_loss(self, theta: dict[str, Tensor]) -> Tensor:
        """The loss on the fixed evaluation batch: a final loss with far less noise than one minibatch's."""
        images, labels = self.eval_batch()
        return F.cross_entropy(self.forward(theta, images), labels).reshape(1)

    def sample_batch(self) -> tuple[Tensor, Tensor]:
        """The next minibatch (images, labels), drawn on the device from this problem's generator."""
        idx = torch.randint(0, self.labels.shape[0], (self.family.batch_size,),
                            generator=self.generator, device=self.labels.device)
        return self.images[idx], self.labels[idx]

    def loss(self, theta: dict[str, Tensor]) -> Tensor:
        images, labels = self.sample_batch()
        return F.cross_entropy(self.forward(theta, images), labels).reshape(1)
