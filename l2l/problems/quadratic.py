"""The paper's synthetic problem (section 3.1): f(θ) = ‖Wθ − y‖², W ∈ R^{d×d}, y ∈ R^d IID Gaussian.

Used in: 01_quadratic.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class QuadraticProblem:
    W: Tensor  # [n, d, d]
    y: Tensor  # [n, d]
    theta0: Tensor  # [n, d]

    @property
    def n_instances(self) -> int:
        return self.y.shape[0]

    def init(self) -> dict[str, Tensor]:
        return {"theta": self.theta0.reshape(-1).clone()}

    def loss(self, theta: dict[str, Tensor]) -> Tensor:
        x = theta["theta"].reshape(self.theta0.shape)
        residual = torch.einsum("nij,nj->ni", self.W, x) - self.y
        return (residual * residual).sum(dim=1)


@dataclass
class QuadraticFamily:
    """Draws `batch` independent d-dimensional quadratics per problem (the official code used 128).

    θ_0 ~ N(0, init_std²) as in the official code; W and y standard normal as the paper states.
    """

    dim: int = 10
    batch: int = 128
    init_std: float = 0.01
    device: torch.device | str = "cpu"

    def __post_init__(self):
        if self.dim < 1 or self.batch < 1:
            raise ValueError(f"QuadraticFamily needs dim >= 1 and batch >= 1, got {self.dim}, {self.batch}")
        self.device = torch.device(self.device)

    def sample(self, generator: torch.Generator) -> QuadraticProblem:
        n, d = self.batch, self.dim
        W = torch.randn(n, d, d, generator=generator)
        y = torch.randn(n, d, generator=generator)
        theta0 = self.init_std * torch.randn(n, d, generator=generator)
        return QuadraticProblem(W.to(self.device), y.to(self.device), theta0.to(self.device))
