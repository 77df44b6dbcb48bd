"""The learned optimizer m_φ (paper, section 2.1 and Appendix A).

    θ_{t+1} = θ_t + g_t,   [g_t, h_{t+1}] = m(∇_t, h_t, φ)

m is a *coordinatewise* two-layer LSTM: every coordinate of θ is one row of the batch of a single
LSTM call, so φ is shared by all coordinates while each coordinate has its own hidden and cell state.
A problem with several parameter groups (CIFAR's conv and fully connected layers) can route each group
to its own LSTM with its own φ: `LSTMOptimizer(nets={"conv": ..., "fc": ...})`.

Used in: every chapter.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from . import fused_lstm
from .lstm_math import preprocess, reference_layer  # preprocess stays importable from here (l2l.preprocess)

APPLY_CHUNK = 1 << 15  # coordinates per LSTM call when no graph is kept (applying a trained optimizer)


@dataclass(frozen=True)
class LSTMConfig:
    """Architecture of one coordinatewise LSTM; saved with every checkpoint."""

    hidden: int = 20
    layers: int = 2
    preprocess: bool = True  # the paper's log/sign preprocessing; off for the quadratics
    p: float = 10.0
    output_scale: float = 0.1  # MNIST: 0.1; quadratics: 1.0; neural art: 1.0

    def __post_init__(self):
        if self.hidden < 1 or self.layers < 1:
            raise ValueError(f"LSTMConfig needs hidden >= 1 and layers >= 1, got {self.hidden}, {self.layers}")
        if self.p <= 0:
            raise ValueError(f"preprocessing p must be positive, got {self.p}")


@dataclass
class LSTMState:
    """Hidden and cell state of one coordinatewise LSTM: one [n_coords, hidden] tensor per layer in each.

    Kept per layer, not stacked, so a step neither copies the state into one tensor nor scatters the
    meta-gradient back out of it. `stacked()` gives [layers, n_coords, hidden] tensors for inspection.
    """

    h: tuple[Tensor, ...]
    c: tuple[Tensor, ...]

    def __post_init__(self):
        self.h, self.c = tuple(self.h), tuple(self.c)  # a stacked [layers, n, hidden] tensor splits per layer

    def detach(self) -> "LSTMState":
        """Cut the graph at a truncation boundary (truncated BPTT)."""
        return LSTMState(tuple(h.detach() for h in self.h), tuple(c.detach() for c in self.c))

    def stacked(self) -> tuple[Tensor, Tensor]:
        return torch.stack(self.h), torch.stack(self.c)


class CoordinatewiseLSTM(nn.Module):
    """m_φ for one parameter group: gradient in, update out, one LSTM row per coordinate."""

    def __init__(self, config: LSTMConfig = LSTMConfig()):
        super().__init__()
        self.config = config
        n_in = 2 if config.preprocess else 1
        sizes = [n_in] + [config.hidden] * config.layers
        self.cells = nn.ModuleList(nn.LSTMCell(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(config.hidden, 1)

    def init_state(self, n_coords: int, device=None, dtype=None) -> LSTMState:
        p = self.head.weight
        shape = (self.config.layers, n_coords, self.config.hidden)
        zeros = torch.zeros(shape, device=device or p.device, dtype=dtype or p.dtype)
        return LSTMState(zeros, zeros.clone())  # split per layer by LSTMState

    def forward(self, grad: Tensor, state: LSTMState, out: LSTMState | None = None) -> tuple[Tensor, LSTMState]:
        """grad: flat [n_coords]; returns the update g_t (flat, same shape) and the next state.

        out: without a graph (torch.no_grad), an LSTMState to write the next state into, which may be `state`
        itself: a caller that owns the state (LearnedOptimizer) then allocates nothing per step.
        """
        if out is not None and torch.is_grad_enabled():
            raise ValueError("out= writes the state in place, which only a step without a graph (torch.no_grad) may do")
        if not torch.is_grad_enabled() and grad.numel() > APPLY_CHUNK:
            return self._forward_in_chunks(grad, state, out)
        if fused_lstm.usable(grad) and not grad.requires_grad:  # the CPU's fused step (first-order ∇ only)
            update, hs, cs = fused_lstm.fused_step(self, grad, state.h, state.c)
            return update.reshape(grad.shape), _into(out, LSTMState(hs, cs))
        cfg = self.config
        x = preprocess(grad, cfg.p) if cfg.preprocess else grad.reshape(-1, 1)
        hs, cs = [], []
        for layer, cell in enumerate(self.cells):  # one batched call per layer over all coordinates
            h, c = reference_layer(x, state.h[layer], state.c[layer], cell.weight_ih, cell.weight_hh,
                                   cell.bias_ih, cell.bias_hh)
            hs.append(h)
            cs.append(c)
            x = h
        update = self.head(x).reshape(grad.shape) * cfg.output_scale
        return update, _into(out, LSTMState(hs, cs))

    def _forward_in_chunks(self, grad: Tensor, state: LSTMState, out: LSTMState | None) -> tuple[Tensor, LSTMState]:
        """The same step, APPLY_CHUNK coordinates at a time (rows are independent). Without a graph to keep,
        this holds the gate buffers in the CPU's cache and lets the allocator reuse them, instead of faulting in
        fresh gigabyte-sized tensors at every step: for 10⁶+ coordinates it is several times faster. Each chunk
        reads its rows of `state` before writing them, so `out` may be `state`."""
        flat = grad.reshape(-1)
        update = torch.empty_like(flat)
        if out is None:
            out = LSTMState([torch.empty_like(h) for h in state.h], [torch.empty_like(c) for c in state.c])
        for start in range(0, flat.numel(), APPLY_CHUNK):
            rows = slice(start, start + APPLY_CHUNK)
            u, new = self(flat[rows], LSTMState([h[rows] for h in state.h], [c[rows] for c in state.c]))
            update[rows] = u
            for dst, part in zip(out.h + out.c, new.h + new.c):
                dst[rows] = part
        return update.reshape(grad.shape), out


def _into(out: LSTMState | None, new: LSTMState) -> LSTMState:
    """`new`, or `new` copied into `out` when one is given."""
    if out is None:
        return new
    for dst, src in zip(out.h + out.c, new.h + new.c):
        dst.copy_(src)
    return out


DEFAULT = "default"  # the LSTM that serves a parameter group that neither `route` nor the group itself assigns


class LSTMOptimizer(nn.Module):
    """The paper's optimizer over a problem's parameter groups.

    θ is a dict {group: flat tensor}. `route` maps each group to the name of the LSTM that serves it;
    a group not named in `route` goes to the LSTM called "default" (the single LSTM of most chapters).
    Same functional interface as the baselines: `init_state(theta)`, `step(theta, grads, state)`.
    `lstm_name` is the routing rule, also that of `l2l.LearnedOptimizer`'s parameter groups.
    """

    def __init__(self, nets: dict[str, CoordinatewiseLSTM] | None = None, route: dict[str, str] | None = None,
                 config: LSTMConfig | None = None):
        super().__init__()
        if nets is None:
            nets = {DEFAULT: CoordinatewiseLSTM(config or LSTMConfig())}
        elif config is not None:
            raise ValueError("pass either nets or config, not both")
        self.nets = nn.ModuleDict(nets)  # registered, so meta-Adam sees every φ
        self.route = dict(route or {})
        unknown = set(self.route.values()) - set(self.nets)
        if unknown:
            raise ValueError(f"route names LSTMs {sorted(unknown)} that are not among {sorted(self.nets)}")

    def lstm_name(self, name: str | None = None) -> str:
        """The name of the LSTM that serves `name`: the one routing rule, used by `step` (through `net_for`) and
        by `l2l.LearnedOptimizer`'s parameter groups.

        name: an LSTM's own name (that LSTM), a group of `route` (the LSTM it is routed to), or None for a group
        that names neither (the LSTM called "default"). Anything else, or None when no LSTM is called "default",
        is a ValueError that lists the LSTMs there are.
        """
        if name in self.nets:
            return name
        if name in self.route:
            return self.route[name]
        names = sorted(self.nets)
        if name is None:
            if DEFAULT in self.nets:
                return DEFAULT
            raise ValueError(f"no LSTM is called {DEFAULT!r} (there are {names}), so every parameter group must be "
                             "routed to one of them")
        routed = f" nor a group of the route {self.route}" if self.route else ""
        raise ValueError(f"no LSTM serves {name!r}: it is not one of the LSTMs {names}{routed}")

    def net_for(self, group: str) -> CoordinatewiseLSTM:
        """The LSTM serving the problem's parameter group `group`: the one `route` names for it, else "default"."""
        try:
            return self.nets[self.lstm_name(self.route.get(group))]
        except ValueError as err:
            raise ValueError(f"parameter group {group!r} has no LSTM: {err}") from None

    def init_state(self, theta: dict[str, Tensor]) -> dict[str, LSTMState]:
        return {g: self.net_for(g).init_state(t.numel(), t.device, t.dtype) for g, t in theta.items()}

    def step(self, theta, grads, state):
        new_theta, new_state = {}, {}
        for g, t in theta.items():  # one entry per parameter group (1 or 2), never per tensor
            update, new_state[g] = self.net_for(g)(grads[g], state[g])
            new_theta[g] = t + update
        return new_theta, new_state

    def describe(self) -> dict:
        """Architecture as plain data, saved in checkpoints."""
        return {"nets": {k: asdict(n.config) for k, n in self.nets.items()}, "route": self.route}

    @classmethod
    def from_description(cls, desc: dict) -> "LSTMOptimizer":
        nets = {k: CoordinatewiseLSTM(LSTMConfig(**c)) for k, c in desc["nets"].items()}
        return cls(nets=nets, route=desc.get("route"))


def detach_state(state):
    """Detach any optimizer state (dicts of tensors or LSTMStates) at a truncation boundary."""
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    if isinstance(state, (LSTMState, Tensor)):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    return state
