"""RNNprop (l2l.general.optimizer) as an ordinary `torch.optim.Optimizer`, with `lr` in the parameter groups.

    opt = RNNpropTorchOptimizer(model.parameters(), rnnprop, lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=1000)
    ... loss.backward(); opt.step(); sched.step(); opt.zero_grad()

Each step is exactly `RNNpropOptimizer.step(θ, ∇, state, lr=group["lr"])` with φ frozen and no graph: the
step is −lr · α · tanh(·), so a scheduler that lowers lr shrinks every step in proportion, and lr = 1 is the
optimizer as it was meta-trained. The parameters of a group (on one device, at the same step count) share one
LSTM call. Each parameter's state holds m [K, numel], v [numel], step, and the LSTM's h, c [layers, numel, hidden],
so `state_dict()` / `load_state_dict()` work as for any torch optimizer (φ itself is not in the state dict: keep
the RNNpropOptimizer's checkpoint next to it). Stage 2 of issue 19 will merge this into `l2l.LearnedOptimizer`.
"""
from __future__ import annotations

import copy
import math

import torch

from ..optimizer import LSTMState
from .optimizer import RNNpropOptimizer


class RNNpropTorchOptimizer(torch.optim.Optimizer):
    """A frozen copy of `rnnprop` driving any model's parameters; lr (per group) multiplies its step."""

    def __init__(self, params, rnnprop: RNNpropOptimizer, lr: float = 1.0):
        if not (lr >= 0 and math.isfinite(lr)):
            raise ValueError(f"lr multiplies the learned step and must be finite and >= 0, got {lr}")
        self.rnnprop = copy.deepcopy(rnnprop).requires_grad_(False).eval()
        self._on_device: dict[torch.device, RNNpropOptimizer] = {}
        super().__init__(params, {"lr": lr})

    def _net(self, device: torch.device) -> RNNpropOptimizer:
        if device not in self._on_device:
            self._on_device[device] = copy.deepcopy(self.rnnprop).to(device)
        return self._on_device[device]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            buckets: dict[tuple, list] = {}  # one LSTM call per (device, step count)
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("RNNpropTorchOptimizer does not support sparse gradients")
                if not self.state[p]:
                    self._init(p)
                buckets.setdefault((p.device, int(self.state[p]["step"])), []).append(p)
            for (device, t), params in buckets.items():
                self._update(self._net(device), params, t, group["lr"])
        return loss

    def _init(self, p) -> None:
        rnnprop = self.rnnprop
        cfg, n = rnnprop.config, p.numel()
        dtype = next(rnnprop.parameters()).dtype
        zeros = torch.zeros(cfg.layers, n, cfg.hidden, device=p.device, dtype=dtype)
        self.state[p].update(step=torch.tensor(0.0), m=torch.zeros(len(cfg.beta1), n, device=p.device, dtype=dtype),
                             v=torch.zeros(n, device=p.device, dtype=dtype), h=zeros, c=zeros.clone())

    def _update(self, rnnprop: RNNpropOptimizer, params: list, t: int, lr: float) -> None:
        dtype = next(rnnprop.parameters()).dtype
        states = [self.state[p] for p in params]
        sizes = [p.numel() for p in params]
        cat = lambda key, dim=0: torch.cat([s[key] for s in states], dim=dim)  # noqa: E731
        theta = {"all": torch.cat([p.reshape(-1).to(dtype) for p in params])}
        grads = {"all": torch.cat([p.grad.reshape(-1).to(dtype) for p in params])}
        state = {"all": {"m": tuple(cat("m", 1)), "v": cat("v"), "t": t, "lstm": LSTMState(cat("h", 1), cat("c", 1))}}
        new_theta, new_state = rnnprop.step(theta, grads, state, lr=lr)
        new = new_state["all"]
        m = torch.stack(new["m"])
        h, c = torch.stack(new["lstm"].h), torch.stack(new["lstm"].c)
        for i, (p, s) in enumerate(zip(params, states)):
            part = slice(sum(sizes[:i]), sum(sizes[:i + 1]))
            p.copy_(new_theta["all"][part].view(p.shape).to(p.dtype))
            s["m"].copy_(m[:, part])
            s["v"].copy_(new["v"][part])
            s["h"].copy_(h[:, part])
            s["c"].copy_(c[:, part])
            s["step"] += 1
