"""Meta-batching: k optimizee problems run as one, so the LSTM serves all of them in one call per layer.

Coordinates are independent under a coordinatewise LSTM, so k problems' θ can be concatenated group by group:
one LSTM call per layer then updates all k, their losses come back side by side (k·n_instances of them),
and the meta-loss's mean over instances averages the meta-gradient over the k problems. Each problem keeps
its own data stream and evaluates its own loss; only the optimizer's work is batched.

It pays where one LSTM call is launch-bound (a GPU and a small optimizee); on 2 CPU cores the stacked call
is no faster per coordinate (benchmarks/RESULTS.md), so MetaTrainConfig.meta_batch defaults to 1.
"""
from __future__ import annotations

import torch
from torch import Tensor


class MetaBatch:
    """The problems in `problems` (same parameter groups) as a single problem."""

    def __init__(self, problems):
        self.problems = list(problems)
        if not self.problems:
            raise ValueError("MetaBatch needs at least one problem")
        self.n_instances = sum(p.n_instances for p in self.problems)
        self._sizes = None  # {group: [numel per problem]}, set by init()

    def init(self) -> dict[str, Tensor]:
        thetas = [p.init() for p in self.problems]
        groups = list(thetas[0])
        if any(list(t) != groups for t in thetas):
            raise ValueError(f"problems in a MetaBatch must share parameter groups, got {[list(t) for t in thetas]}")
        self._sizes = {g: [t[g].numel() for t in thetas] for g in groups}
        return {g: torch.cat([t[g] for t in thetas]) for g in groups}

    def loss(self, theta: dict[str, Tensor]) -> Tensor:
        if self._sizes is None:
            self.init()
        parts = {g: theta[g].split(self._sizes[g]) for g in theta}
        return torch.cat([p.loss({g: parts[g][i] for g in theta}) for i, p in enumerate(self.problems)])
