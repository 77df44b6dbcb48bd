"""RNNprop: the paper's coordinatewise LSTM fed with Adam-normalised inputs (Lv, Jiang & Li, ICML 2017,
"Learning Gradient Descent: Better Generalization and Longer Horizons", arXiv 1703.03633).

Per coordinate, with the gradient ∇_t (detached, as in the paper) and Adam's running moments

    m_t^k = β1_k m_{t-1}^k + (1 − β1_k) ∇_t          (one for each β1_k: momentum at one or more timescales)
    v_t   = β2 v_{t-1} + (1 − β2) ∇_t²
    m̂_t^k = m_t^k / (1 − β1_k^t),   √v̂_t = √(v_t / (1 − β2^t)) + ε          (bias-corrected)

the LSTM's input is the vector of *relative* gradients

    x_t = [ ∇_t / √v̂_t ,  m̂_t^1 / √v̂_t , … ,  m̂_t^K / √v̂_t ]

(invariant to a rescaling of the objective, and bounded: each entry lies in about ±1/√(1 − β2)), embedded by a
fully connected layer with ELU, then the two-layer LSTM of the paper (20 units, one row per coordinate), a linear
head and a bounded step:

    θ_{t+1} = θ_t − lr · α · tanh(head(h_t))

α = 0.1 as in RNNprop's code, so no coordinate ever moves more than lr · α in one step. `lr` (default 1.0) is
not seen by the LSTM: it only multiplies the step, which is what a learning-rate scheduler driving it expects.
Defaults (β1 = β2 = 0.95, ε = 1e-8, α = 0.1, embedding 20 with ELU, 2 × 20 LSTM) are those of RNNprop's public
code (vfleaking/rnnprop, nn_opt/rnn.py); K > 1 timescales (e.g. β1 = (0.5, 0.9, 0.99)) is our extension.

Same functional interface as `l2l.LSTMOptimizer` and the baselines: `init_state(theta)`, `step(theta, grads,
state)`, `describe()`. The state of each parameter group is a plain dict (so `l2l.optimizer.detach_state`
detaches it at a truncation boundary):

    {"m": (m^1, …, m^K) each [n], "v": [n], "t": steps taken (int), "lstm": LSTMState of the LSTM}

One LSTM serves every parameter group (RNNprop's inputs make the groups look alike).

Used in: the second meta-training recipe (l2l.general, issue 19).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import fused_lstm
from ..optimizer import APPLY_CHUNK, LSTMState

KIND = "rnnprop"  # describe()["kind"]: what a loader must build


@dataclass(frozen=True)
class RNNpropConfig:
    """Architecture and the fixed (not meta-learned) constants of RNNprop; saved with every checkpoint."""

    hidden: int = 20
    layers: int = 2
    embed: int = 20  # width of the ELU input layer (RNNprop: 20); 0: the inputs go straight into the LSTM
    beta1: tuple[float, ...] = (0.95,)  # one momentum input per entry (RNNprop: 0.95)
    beta2: float = 0.95  # RNNprop: 0.95 (Adam's 0.999 would make √v̂ lag far behind over a 100-step unroll)
    eps: float = 1e-8
    alpha: float = 0.1  # the largest step of one coordinate at lr = 1

    def __post_init__(self):
        object.__setattr__(self, "beta1", tuple(float(b) for b in self.beta1))  # JSON gives lists back
        if self.hidden < 1 or self.layers < 1 or self.embed < 0:
            raise ValueError(f"RNNpropConfig needs hidden, layers >= 1 and embed >= 0, got {self.hidden}, "
                             f"{self.layers}, {self.embed}")
        if not self.beta1 or not all(0 <= b < 1 for b in (*self.beta1, self.beta2)):
            raise ValueError(f"RNNpropConfig needs at least one beta1 and every beta in [0, 1), got {self.beta1}, "
                             f"{self.beta2}")
        if not (self.eps > 0 and self.alpha > 0):
            raise ValueError(f"RNNpropConfig needs eps > 0 and alpha > 0, got {self.eps}, {self.alpha}")

    @property
    def n_inputs(self) -> int:
        return 1 + len(self.beta1)


class RNNpropNet(nn.Module):
    """φ: ELU embedding → coordinatewise LSTM (one row per coordinate) → linear head, one output per coordinate."""

    def __init__(self, config: RNNpropConfig):
        super().__init__()
        self.config = config
        width = config.embed or config.n_inputs
        self.embed = nn.Linear(config.n_inputs, config.embed) if config.embed else None
        sizes = [width] + [config.hidden] * config.layers
        self.cells = nn.ModuleList(nn.LSTMCell(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(config.hidden, 1)

    def init_state(self, n_coords: int, device=None, dtype=None) -> LSTMState:
        p = self.head.weight
        zeros = torch.zeros(self.config.layers, n_coords, self.config.hidden, device=device or p.device,
                            dtype=dtype or p.dtype)
        return LSTMState(zeros, zeros.clone())

    def forward(self, x: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        """x: [n_coords, n_inputs]; returns the raw output [n_coords] (before tanh) and the next state."""
        if self.embed is not None:
            x = F.elu(self.embed(x))
        if fused_lstm.usable(x):  # the CPU's fused gate kernels (l2l.fused_lstm), 2x faster than nn.LSTMCell there
            hs, cs = fused_lstm.fused_layers(self.cells, x, tuple(state.h), tuple(state.c))
        else:
            hs, cs = [], []
            for layer, cell in enumerate(self.cells):  # one batched call per layer over all coordinates
                h, c = cell(x, (state.h[layer], state.c[layer]))
                hs.append(h)
                cs.append(c)
                x = h
        return self.head(hs[-1]).squeeze(1), LSTMState(hs, cs)


def rnnprop_inputs(grad: Tensor, m: tuple[Tensor, ...], v: Tensor, t: int, config: RNNpropConfig) -> Tensor:
    """The LSTM's input [n, 1 + K] from ∇_t and the moments *after* step t's update (t = 1 at the first step)."""
    root_v = (v / (1 - config.beta2 ** t)).sqrt() + config.eps
    columns = [grad / root_v] + [mk / (1 - b ** t) / root_v for mk, b in zip(m, config.beta1)]
    return torch.stack(columns, dim=1)


class RNNpropOptimizer(nn.Module):
    """RNNprop (Lv et al. 2017) over a problem's parameter groups; one φ for all of them. See the module docstring."""

    def __init__(self, config: RNNpropConfig | None = None):
        super().__init__()
        self.config = config or RNNpropConfig()
        self.net = RNNpropNet(self.config)

    def init_state(self, theta: dict[str, Tensor]) -> dict[str, dict]:
        state = {}
        for g, t in theta.items():
            n = t.numel()
            zeros = torch.zeros(n, device=t.device, dtype=t.dtype)
            state[g] = {"m": tuple(zeros.clone() for _ in self.config.beta1), "v": zeros, "t": 0,
                        "lstm": self.net.init_state(n, t.device, t.dtype)}
        return state

    def step(self, theta: dict[str, Tensor], grads: dict[str, Tensor], state: dict, lr: float = 1.0):
        """θ_{t+1} = θ_t − lr · α · tanh(out); returns (new θ, new state). lr scales the step, nothing else.
        Without a graph, a group of more than APPLY_CHUNK coordinates takes `apply_`'s chunked path on copies."""
        cfg = self.config
        new_theta, new_state = {}, {}
        for g, t in theta.items():  # one entry per parameter group, never per tensor
            s, grad = state[g], grads[g].reshape(-1)
            if not torch.is_grad_enabled() and t.numel() > APPLY_CHUNK:
                new = {"m": tuple(mk.clone() for mk in s["m"]), "v": s["v"].clone(), "t": s["t"] + 1,
                       "lstm": LSTMState([h.clone() for h in s["lstm"].h], [c.clone() for c in s["lstm"].c])}
                flat = t.reshape(-1).clone()
                self.apply_(flat, grad, new["m"], new["v"], new["lstm"].h, new["lstm"].c, s["t"], lr)
                new_theta[g], new_state[g] = flat.view(t.shape), new
                continue
            m = tuple(b * mk + (1 - b) * grad for mk, b in zip(s["m"], cfg.beta1))
            v = cfg.beta2 * s["v"] + (1 - cfg.beta2) * grad * grad
            k = s["t"] + 1
            out, lstm = self.net(rnnprop_inputs(grad, m, v, k, cfg), s["lstm"])
            new_theta[g] = t - (lr * cfg.alpha) * torch.tanh(out).reshape(t.shape)
            new_state[g] = {"m": m, "v": v, "t": k, "lstm": lstm}
        return new_theta, new_state

    @torch.no_grad()
    def apply_(self, theta: Tensor, grad: Tensor, m, v: Tensor, h, c, t: int, lr: float = 1.0,
               chunk: int = APPLY_CHUNK) -> None:
        """`step` on flat tensors, in place and without a graph, `chunk` coordinates at a time (the coordinates are
        independent): θ [n], the moments m (K tensors [n]) and v [n], and the LSTM state h and c (per layer,
        [n, hidden]) are overwritten with their values after the step; ∇ [n] is read; t is the number of steps
        taken before this one. What `l2l.LearnedOptimizer` runs: the chunks keep the gate buffers in the CPU's
        cache and the allocator reuses them, instead of faulting in gigabytes of fresh memory at every step."""
        cfg = self.config
        for start in range(0, theta.numel(), chunk):
            rows = slice(start, start + chunk)
            g = grad[rows]
            m_rows = [mk[rows] for mk in m]
            for mk, b in zip(m_rows, cfg.beta1):
                mk.mul_(b).add_(g, alpha=1 - b)
            v_rows = v[rows].mul_(cfg.beta2).addcmul_(g, g, value=1 - cfg.beta2)
            out, new = self.net(rnnprop_inputs(g, m_rows, v_rows, t + 1, cfg),
                                LSTMState([hl[rows] for hl in h], [cl[rows] for cl in c]))
            for dst, src in zip([*h, *c], [*new.h, *new.c]):
                dst[rows] = src
            theta[rows] -= (lr * cfg.alpha) * torch.tanh(out)

    def describe(self) -> dict:
        """Architecture as plain data, saved in checkpoints; "kind" tells a loader which class to build."""
        return {"kind": KIND, "config": {k: list(v) if isinstance(v, tuple) else v
                                         for k, v in asdict(self.config).items()}}

    @classmethod
    def from_description(cls, desc: dict) -> "RNNpropOptimizer":
        if desc.get("kind") != KIND:
            raise ValueError(f"not an RNNprop description (kind {desc.get('kind')!r}, expected {KIND!r})")
        return cls(RNNpropConfig(**desc["config"]))
