"""A trained optimizer as an ordinary `torch.optim.Optimizer`.

    opt = l2l.LearnedOptimizer(model.parameters(), optimizer="mnist")
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()

Each `step()` applies the paper's update rule with φ frozen and no graph kept:

    θ ← θ + lr · g,   [g, h] = m(∇θ, h; φ)          (lr = 1: exactly the trained optimizer)

There is one LSTM call per parameter group (and device) over the concatenated gradients of the group's
parameters, so a model with a hundred tensors still costs one batched call per LSTM layer. Every parameter
keeps its own LSTM state, `state[p] = {"h", "c"}` of shape [layers, numel, hidden] in φ's dtype on the
parameter's device, written in place at every step (as Adam writes its moments), so `state_dict()` /
`load_state_dict()` behave as for any torch optimizer; the state dict also carries φ, so a run resumes
exactly even if the checkpoint it started from has changed since.

Used in: examples/train_mnist_with_learned_optimizer.py, book/use.md.
"""
from __future__ import annotations

import copy
import math
import os
from itertools import chain

import torch

from . import trained  # also makes `l2l.trained` available after `import l2l`
from .optimizer import DEFAULT, LSTMOptimizer, LSTMState

STATE_KEY = "learned_optimizer"  # the entry of state_dict() that holds the architecture and φ


def _load(optimizer):
    """(optimizer module, description) from a shipped name, a checkpoint path, an LSTMOptimizer (the paper's) or
    an RNNpropOptimizer (l2l.general)."""
    from .general.optimizer import RNNpropOptimizer

    if isinstance(optimizer, (LSTMOptimizer, RNNpropOptimizer)):
        return optimizer, f"the given {type(optimizer).__name__}"
    if isinstance(optimizer, (str, os.PathLike)):
        lstm, _ = trained.load(optimizer)
        return lstm, str(optimizer)
    raise TypeError(f"optimizer must be a shipped name, a checkpoint path, an LSTMOptimizer or an "
                    f"RNNpropOptimizer, not {type(optimizer).__name__}")


class LearnedOptimizer(torch.optim.Optimizer):
    """A meta-trained coordinatewise LSTM (paper, section 2) driving any model's parameters: the paper's
    LSTMOptimizer, or l2l.general's RNNpropOptimizer (whose step is −lr·α·tanh(·), with Adam-like moments m, v
    and a step count kept per parameter besides h and c).

    params: an iterable of tensors or of parameter-group dicts, as for any torch optimizer. A group may
        name the LSTM that serves it, `{"params": ..., "lstm": "conv"}`, when the trained optimizer holds
        several (CIFAR: "conv" and "fc"); a group that names none gets the LSTM called "default". The name
        is resolved by `LSTMOptimizer.lstm_name`, the routing rule of meta-training too.
    optimizer: the name of a shipped optimizer (`l2l.trained.available()`), the path of a checkpoint
        saved by `l2l.save_optimizer` / `meta_train`, or an `LSTMOptimizer` or `RNNpropOptimizer` (copied,
        then frozen).
    lr: multiplies the learned update; 1.0 (the default) is the optimizer exactly as it was trained. It is
        also what torch's learning-rate schedulers scale.
    """

    def __init__(self, params, optimizer="mnist", lr: float = 1.0):
        lstm, self.source = _load(optimizer)
        self.lstm = copy.deepcopy(lstm).requires_grad_(False).eval()  # a private, frozen φ
        self._on_device: dict[torch.device, LSTMOptimizer] = {}
        # None: every group must name its LSTM
        default = DEFAULT if self.rnnprop or DEFAULT in self.lstm.nets else None
        super().__init__(params, {"lr": lr, "lstm": default})

    @property
    def rnnprop(self) -> bool:
        """Whether φ is l2l.general's RNNprop optimizer (one network for every group) rather than the paper's."""
        return not isinstance(self.lstm, LSTMOptimizer)

    # --- parameter groups -------------------------------------------------------------------------------
    def _lstm_name(self, name) -> str:
        """The LSTM serving a group that asked for `name` (see `LSTMOptimizer.lstm_name`); its error names the
        checkpoint and, for a group that names none, how to name one."""
        if self.rnnprop:
            return DEFAULT  # one network serves every group
        try:
            return self.lstm.lstm_name(name)
        except ValueError as err:
            example = "{'params': ..., 'lstm': %r}" % sorted(self.lstm.nets)[0]
            hint = f": give every parameter group an 'lstm' key, e.g. {example}" if name is None else ""
            raise ValueError(f"{self.source}: {err}{hint}") from None

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        self._lstm_name(group["lstm"])  # an unknown name fails here, not at the first step
        if not (group["lr"] >= 0 and math.isfinite(group["lr"])):
            raise ValueError(f"lr multiplies the learned update and must be finite and >= 0, got {group['lr']}")
        for p in group["params"]:
            if not p.is_floating_point():
                raise ValueError(f"LearnedOptimizer updates floating-point tensors only, got one of dtype {p.dtype}")

    def _on(self, device: torch.device):
        """The frozen optimizer on `device` (φ is copied once to each device the parameters live on)."""
        if device not in self._on_device:
            here = next(self.lstm.parameters()).device
            self._on_device[device] = self.lstm if here == device else copy.deepcopy(self.lstm).to(device)
        return self._on_device[device]

    def _net(self, name: str, device: torch.device):
        """The LSTM `name` on `device`."""
        return self._on(device).nets[self._lstm_name(name)]

    # --- the update ------------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure=None):
        """One learned update of every parameter that has a gradient; returns closure() if one is given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            by_device: dict[torch.device, list] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("LearnedOptimizer does not support sparse gradients")
                by_device.setdefault(p.device, []).append(p)
            for device, params in by_device.items():
                if self.rnnprop:
                    self._update_rnnprop(group, self._on(device), params)
                else:
                    self._update(group, self._net(group["lstm"], device), params)
        return loss

    def _update(self, group: dict, net, params: list) -> None:
        """One LSTM call over the concatenated gradients of `params` (one group, one device)."""
        dtype = net.head.weight.dtype
        for p in params:
            if not self.state[p]:
                h, c = net.init_state(p.numel(), p.device, dtype).stacked()
                self.state[p].update(h=h, c=c)
        states = [self.state[p] for p in params]
        grad = torch.cat([p.grad.reshape(-1).to(dtype) for p in params])
        if len(params) == 1:  # the LSTM writes the state in place: a step allocates no state of its own
            h, c = states[0]["h"], states[0]["c"]
        else:
            h, c = (torch.cat([s[k] for s in states], dim=1) for k in ("h", "c"))
        lstm_state = LSTMState(h, c)
        update, _ = net(grad, lstm_state, out=lstm_state)
        sizes = [p.numel() for p in params]
        for p, s, u, h_p, c_p in zip(params, states, update.split(sizes), h.split(sizes, 1), c.split(sizes, 1)):
            p.add_(u.view(p.shape).to(p.dtype), alpha=group["lr"])
            if len(params) > 1:
                s["h"].copy_(h_p)
                s["c"].copy_(c_p)

    def _update_rnnprop(self, group: dict, rnnprop, params: list) -> None:
        """RNNprop's step (l2l.general: θ ← θ − lr·α·tanh(·), moments m and v), parameter by parameter, in place
        (`RNNpropOptimizer.apply_`: chunks of coordinates, so a step allocates no state of its own)."""
        cfg, dtype = rnnprop.config, next(rnnprop.parameters()).dtype
        for p in params:
            s = self.state[p]
            if not s:
                n = p.numel()
                h, c = rnnprop.net.init_state(n, p.device, dtype).stacked()
                s.update(step=torch.tensor(0, dtype=torch.int64), m=torch.zeros(len(cfg.beta1), n, device=p.device,
                         dtype=dtype), v=torch.zeros(n, device=p.device, dtype=dtype), h=h, c=c)
            in_place = p.dtype == dtype and p.is_contiguous()
            theta = p.detach().view(-1) if in_place else p.detach().reshape(-1).to(dtype)
            rnnprop.apply_(theta, p.grad.reshape(-1).to(dtype), s["m"].unbind(), s["v"], s["h"].unbind(),
                           s["c"].unbind(), int(s["step"]), lr=group["lr"])
            if not in_place:
                p.copy_(theta.view(p.shape))
            s["step"] += 1

    # --- saving and resuming ---------------------------------------------------------------------------
    def __getstate__(self) -> dict:  # torch's keeps only defaults, state and groups; copies need φ too
        return {**super().__getstate__(), "lstm": self.lstm, "source": self.source, "_on_device": {}}

    def state_dict(self) -> dict:
        """torch's optimizer state dict, plus φ and its architecture under "learned_optimizer"."""
        out = super().state_dict()
        out[STATE_KEY] = {"architecture": self.lstm.describe(),
                          "phi": {k: v.detach().clone() for k, v in self.lstm.state_dict().items()}}
        return out

    def load_state_dict(self, state_dict: dict) -> None:
        """Resume exactly: parameter groups, every parameter's LSTM state and (when saved) φ itself."""
        state_dict = dict(state_dict)
        saved = state_dict.pop(STATE_KEY, None)
        if saved is not None:
            mine = self.lstm.describe()
            if saved["architecture"] != mine:
                raise ValueError(f"this state dict was saved by a LearnedOptimizer with architecture "
                                 f"{saved['architecture']}, but this one has {mine}")
            self.lstm.load_state_dict(saved["phi"])
            self._on_device.clear()
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            self._lstm_name(group["lstm"])
        # torch casts loaded state to each parameter's dtype; the LSTM state lives in φ's dtype, so restore
        # it from the saved tensors themselves, copied (the caller's dict stays untouched).
        dtype = next(self.lstm.parameters()).dtype
        ids = chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        params = chain.from_iterable(g["params"] for g in self.param_groups)
        for k, p in zip(ids, params):
            if k in state_dict["state"]:
                self.state[p] = {name: v.to(device=p.device, copy=True) if name == "step"  # a count, not a float
                                 else v.to(device=p.device, dtype=dtype, copy=True)
                                 for name, v in state_dict["state"][k].items()}
