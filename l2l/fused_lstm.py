"""The coordinatewise LSTM's whole step, fused for the CPU (issue 8: meta-training speed).

On the CPU, `nn.LSTMCell` runs its gate math as a dozen separate elementwise kernels, each reading and
writing an [n_coords, 4·hidden] tensor, and `torch.tanh` is several times slower than the GEMMs around it.
With hidden = 20 and 10⁴–10⁶ coordinates that gate math, and the many small autograd nodes around it
(preprocessing, a 2-column input projection, biases, the linear head), not the matrix products, are most of
a step. Here one step of the optimizer, ∇ → (update, new state), is ONE autograd.Function (`FusedStep`) whose

- forward is, per layer, the GEMM(s) of the hidden state and input into one buffer and ONE compiled
  elementwise kernel for the bias, all gates, the new cell and hidden state; the first layer's kernel also
  does the paper's preprocessing of ∇ and its 2-column input projection; the head is one GEMV;
- backward is, per layer, one compiled elementwise kernel (from the saved activations, no transcendental
  recomputed) plus the GEMMs for the input, hidden-state and weight gradients.

tanh and σ(x) = ½ + ½·tanh(x/2) use the rational approximation of Eigen and XLA's CPU backend
(|error| < 4e-7 absolute against torch.tanh), a handful of fused multiply-adds that torch.compile vectorizes.

Used where it pays and is exact enough: float32 tensors on the CPU, a detached ∇ (first-order meta-gradients;
second order needs dL/d∇, so it takes the reference path), when torch.compile works here (it needs a C++
compiler; without one this falls back, with one warning, to the reference). On CUDA, `nn.LSTMCell` already
runs PyTorch's own fused cell kernel, so the reference is used there. `L2L_FUSED=0` turns the fused path off
everywhere, which reproduces runs made before it existed.

The math both paths share (preprocessing, the reference layer, the denormal flush) is in the leaf module
`l2l.lstm_math`. This module imports nothing else from l2l, so `l2l.optimizer` imports it without a cycle.
"""
from __future__ import annotations

import os
import types
import warnings

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .lstm_math import flush, preprocess

# Eigen's generic_fast_tanh_float: tanh(x) ≈ x·P(x²)/Q(x²) on |x| ≤ 7.905, where fp32 tanh is ±1 beyond.
_P = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
      -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)
_Q = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)
_CLAMP = 7.90531110763549805


def fast_tanh(x: Tensor) -> Tensor:
    x = x.clamp(-_CLAMP, _CLAMP)
    x2 = x * x
    p = _P[-1]
    for a in reversed(_P[:-1]):
        p = p * x2 + a
    q = _Q[-1]
    for b in reversed(_Q[:-1]):
        q = q * x2 + b
    return x * p / q


def fast_sigmoid(x: Tensor) -> Tensor:
    return 0.5 + 0.5 * fast_tanh(0.5 * x)


def _gates_forward(pre: Tensor, c: Tensor, bias: Tensor, k: Tensor, a: Tensor):
    """x·W_ihᵀ + h·W_hhᵀ [n, 4H] (PyTorch's gate order i, f, g, o), c and the bias → h', c' and what backward
    needs. The bias is added here, in the same pass, rather than copied into the GEMM's output first.

    All four gates come from one tanh over the whole [n, 4H] row, act = a + (1 − a)·tanh(k·z), with k = a = ½
    for the sigmoid gates (σ(z) = ½ + ½·tanh(z/2)) and k = 1, a = 0 for g: a loop over 4H = 80 columns
    vectorizes without the ragged tail of four loops over H = 20, and was 1.6x faster here.
    """
    H = c.shape[1]
    act = a + (1 - a) * fast_tanh(k * (pre + bias))
    i, f, g, o = act[:, :H], act[:, H:2 * H], act[:, 2 * H:3 * H], act[:, 3 * H:]
    c_new = f * c + i * g
    tanh_c = fast_tanh(c_new)
    return o * tanh_c, c_new, act, tanh_c


_GATE_CONSTANTS = {}


def gate_constants(hidden: int) -> tuple[Tensor, Tensor]:
    """k and a of `_gates_forward` for `hidden` units per gate (float32, CPU)."""
    if hidden not in _GATE_CONSTANTS:
        is_g = torch.arange(4 * hidden).div(hidden, rounding_mode="floor") == 2
        _GATE_CONSTANTS[hidden] = (torch.where(is_g, 1.0, 0.5), torch.where(is_g, 0.0, 0.5))
    return _GATE_CONSTANTS[hidden]


def _gates_backward(dh: Tensor, dc_new: Tensor, act: Tensor, c: Tensor, tanh_c: Tensor):
    """dL/dh', dL/dc' → dL/d(gate pre-activations), dL/dc, from the saved activations only."""
    H = c.shape[1]
    i, f, g, o = act[:, :H], act[:, H:2 * H], act[:, 2 * H:3 * H], act[:, 3 * H:]
    dh = flush(dh)  # out of the denormal range (see lstm_math.FLUSH_BELOW)
    dc = flush(dc_new + dh * o * (1 - tanh_c * tanh_c))
    dgates = torch.cat([dc * g * i * (1 - i), dc * c * f * (1 - f), dc * i * (1 - g * g),
                        dh * tanh_c * o * (1 - o)], 1)
    return dgates, dc * f


_compiled = {}
_state = {"broken": None}


WARM_ROWS = 4096  # rows of the first call of each variant: a realistic size, or inductor writes single-threaded loops


class _Kernel:
    """`fn` compiled for any number of rows (coordinates), one compiled variant per everything else.

    rows: positions of the arguments whose dim 0 is the coordinate; every other size (hidden) and every
    non-tensor argument selects a variant, compiled from its own copy of `fn`. So dynamo's recompile limit (8
    per function, after which it silently runs eager code, with other rounding) is never reached however many
    sizes a process uses, and a run's numbers do not depend on what else the process compiled before it. Each
    variant is first called on `WARM_ROWS` rows of zeros, which fixes how inductor generates it.
    """

    def __init__(self, fn, rows: tuple[int, ...]):
        self.fn, self.rows, self.variants = fn, rows, {}

    def __call__(self, *args):
        # detached, since requires_grad would be guarded on; the key is cheap, as this runs 4 times a step
        args = [t.detach() if isinstance(t, Tensor) else t for t in args]
        key = tuple((t.shape[1:] if i in self.rows else t.shape, t.dtype) if isinstance(t, Tensor) else t
                    for i, t in enumerate(args))
        compiled = self.variants.get(key)
        if compiled is None:
            fn = self.fn
            copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__,
                                      fn.__closure__)
            compiled = self.variants[key] = torch.compile(copy)
            warm = [torch.zeros(WARM_ROWS, *t.shape[1:], dtype=t.dtype) if i in self.rows else t
                    for i, t in enumerate(args)]
            self._mark(warm)
            compiled(*warm)
            self._mark(args)  # only calls that compile read the marks: the first ones of each variant
        return compiled(*args)

    def _mark(self, args):
        for i, t in enumerate(args):
            if isinstance(t, Tensor):
                rows = i in self.rows
                if rows:
                    torch._dynamo.maybe_mark_dynamic(t, 0)
                for d in range(1 if rows else 0, t.dim()):
                    torch._dynamo.mark_static(t, d)


def _kernels():
    """The compiled kernels, built and tried once; None if compiling fails here."""
    if not _compiled:
        try:
            fwd = _Kernel(_gates_forward, rows=(0, 1))
            fwd_first = _Kernel(_first_gates_forward, rows=(0, 1, 3))
            bwd = _Kernel(_gates_backward, rows=(0, 1, 2, 3, 4))
            # tried once here, at the default hidden size (20), so a missing compiler is found up front
            gates, c = torch.zeros(8, 80), torch.zeros(8, 20)
            _, _, act, tanh_c = fwd(gates, c, torch.zeros(80), *gate_constants(20))
            bwd(c, c, act, c, tanh_c)
            _compiled.update(fwd=fwd, bwd=bwd, fwd_first=fwd_first)
        except Exception as err:  # no C++ compiler, unsupported platform: say so once, then run unfused
            _state["broken"] = err
            warnings.warn(f"l2l: the fused LSTM step could not be compiled ({type(err).__name__}: "
                          f"{(str(err).splitlines() or [''])[0]}); using nn.LSTMCell's kernels, which are slower "
                          "on the CPU. Set L2L_FUSED=0 to silence this.", RuntimeWarning)
            return None
    return _compiled


def _first_gates_forward(pre_h: Tensor, grad: Tensor, w_in_t: Tensor, c: Tensor, bias: Tensor, k: Tensor, a: Tensor,
                         p: float | None):
    """The first layer: the paper's preprocessing of ∇ (p=None: none) and the input projection, here rather than
    in a GEMM, since the input has only 1 or 2 columns; then the gates as `_gates_forward`. w_in_t is W_ihᵀ
    ([n_in, 4H], contiguous, so its rows load as vectors). Also returns the layer's input x, which backward
    needs for dL/dW_ih."""
    x = preprocess(grad, p) if p is not None else grad.reshape(-1, 1)
    pre = pre_h
    for col in range(x.shape[1]):
        pre = pre + x[:, col:col + 1] * w_in_t[col]
    return (*_gates_forward(pre, c, bias, k, a), x)


class FusedStep(torch.autograd.Function):
    """One whole step of a coordinatewise LSTM: (∇, h, c per layer, φ) → (update, h', c' per layer).

    One Function for the preprocessing, every layer and the linear head, so a step costs a few GEMMs and
    compiled kernels, not the dozens of small autograd nodes of the layer-by-layer version:

        layer 1:  gates = h₁·W_hh₁ᵀ (GEMM), + x·W_ih₁ᵀ + b in its compiled kernel, x = preprocess(∇)
        layer l:  gates = x·W_ihᵀ + h·W_hhᵀ (two GEMMs into one buffer), + b in its compiled kernel
        head:     update = scale · (h_L·w + b)

    ∇ is taken as detached (first order): no gradient flows back to it. Backward runs the layers in reverse,
    from saved activations, and returns the gradients of every state and φ tensor.
    """

    @staticmethod
    def forward(ctx, grad, p, scale, n_layers, *tensors):
        kernels = _kernels()
        fwd, fwd_first = kernels["fwd"], kernels["fwd_first"]
        hs, cs, rest = tensors[:n_layers], tensors[n_layers:2 * n_layers], tensors[2 * n_layers:]
        weights, (head_w, head_b) = [rest[4 * k:4 * k + 4] for k in range(n_layers)], rest[4 * n_layers:]
        x, new_h, new_c, saved = None, [], [], []
        k, a = gate_constants(hs[0].shape[1])
        for layer, ((w_ih, w_hh, b_ih, b_hh), h, c) in enumerate(zip(weights, hs, cs)):
            if layer == 0:
                h_new, c_new, act, tanh_c, x = fwd_first(h @ w_hh.t(), grad, w_ih.t().contiguous(), c, b_ih + b_hh,
                                                         k, a, p)
            else:
                h_new, c_new, act, tanh_c = fwd((x @ w_ih.t()).addmm_(h, w_hh.t()), c, b_ih + b_hh, k, a)
            saved += [x, h, c, act, tanh_c]
            new_h.append(h_new)
            new_c.append(c_new)
            x = h_new
        update = torch.addmv(head_b, x, head_w[0], beta=scale, alpha=scale)
        ctx.save_for_backward(*saved, x, *[w for ws in weights for w in ws[:2]], head_w)
        ctx.scale, ctx.n_layers = scale, n_layers
        return (update, *new_h, *new_c)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_update, *d_state):
        bwd = _kernels()["bwd"]
        L, scale = ctx.n_layers, ctx.scale
        saved = ctx.saved_tensors
        acts, h_last = [saved[5 * k:5 * k + 5] for k in range(L)], saved[5 * L]
        mats, head_w = [saved[5 * L + 1 + 2 * k:5 * L + 3 + 2 * k] for k in range(L)], saved[-1]
        d_h, d_c = list(d_state[:L]), list(d_state[L:])
        if d_update is None:
            d_update = torch.zeros_like(h_last[:, 0])
        d_update = d_update.contiguous()
        ones = torch.ones_like(d_update)
        # the head: update = scale·(h_L·w + b)
        d_head_w = torch.mv(h_last.t(), d_update).mul_(scale).unsqueeze(0)
        d_head_b = d_update.sum().mul_(scale).reshape(1)
        d_x = torch.outer(d_update, head_w[0] * scale)  # dL/dh_L' from the head
        grads = [None] * (4 * L)
        d_h_old, d_c_old = [None] * L, [None] * L
        for layer in reversed(range(L)):
            x, h, c, act, tanh_c = acts[layer]
            w_ih, w_hh = mats[layer]
            dh = d_x if d_h[layer] is None else d_x + d_h[layer]
            dc_new = torch.zeros_like(c) if d_c[layer] is None else d_c[layer].contiguous()
            dgates, d_c_old[layer] = bwd(dh.contiguous(), dc_new, act, c, tanh_c)
            db = torch.mv(dgates.t(), ones)  # Σ over coordinates; a GEMV is ~1.7x faster here than dgates.sum(0)
            # weight gradients as (inputᵀ·dgates)ᵀ: on the CPU, 1.3-3x faster than dgatesᵀ·input for these shapes
            grads[4 * layer:4 * layer + 4] = [(x.t() @ dgates).t(), (h.t() @ dgates).t(), db, db.clone()]
            if layer > 0:  # dL/dx and dL/dh in one GEMM, which reads dgates once
                both = dgates @ torch.cat([w_ih, w_hh], 1)
                d_x, d_h_old[layer] = both[:, :w_ih.shape[1]], both[:, w_ih.shape[1]:]
            else:
                d_h_old[layer] = dgates @ w_hh
        return (None, None, None, None, *d_h_old, *d_c_old, *grads, d_head_w, d_head_b)


class FusedLayers(torch.autograd.Function):
    """The LSTM layers alone, for an input x [n, d] that is itself differentiable (RNNprop's embedding of its
    inputs, l2l.general): (x, h, c per layer, the layers' φ) → (h', c' per layer). What comes before (the
    embedding) and after (the head) stays with autograd; here each layer is the two GEMMs into one buffer and
    the compiled gate kernel of `FusedStep`, and backward returns dL/dx as well.
    """

    @staticmethod
    def forward(ctx, n_layers, x, *tensors):
        fwd = _kernels()["fwd"]
        hs, cs, rest = tensors[:n_layers], tensors[n_layers:2 * n_layers], tensors[2 * n_layers:]
        weights = [rest[4 * k:4 * k + 4] for k in range(n_layers)]
        k, a = gate_constants(hs[0].shape[1])
        new_h, new_c, saved = [], [], []
        for (w_ih, w_hh, b_ih, b_hh), h, c in zip(weights, hs, cs):
            h_new, c_new, act, tanh_c = fwd((x @ w_ih.t()).addmm_(h, w_hh.t()), c, b_ih + b_hh, k, a)
            saved += [x, h, c, act, tanh_c]
            new_h.append(h_new)
            new_c.append(c_new)
            x = h_new
        ctx.save_for_backward(*saved, *[w for ws in weights for w in ws[:2]])
        ctx.n_layers = n_layers
        return (*new_h, *new_c)

    @staticmethod
    @once_differentiable
    def backward(ctx, *d_state):
        bwd = _kernels()["bwd"]
        L, saved = ctx.n_layers, ctx.saved_tensors
        acts, mats = [saved[5 * k:5 * k + 5] for k in range(L)], [saved[5 * L + 2 * k:5 * L + 2 * k + 2]
                                                                   for k in range(L)]
        d_h, d_c = d_state[:L], d_state[L:]
        grads, d_h_old, d_c_old, d_x = [None] * (4 * L), [None] * L, [None] * L, None
        for layer in reversed(range(L)):
            x, h, c, act, tanh_c = acts[layer]
            w_ih, w_hh = mats[layer]
            dh = _sum(d_h[layer], d_x, like=h)
            dc_new = torch.zeros_like(c) if d_c[layer] is None else d_c[layer].contiguous()
            dgates, d_c_old[layer] = bwd(dh.contiguous(), dc_new, act, c, tanh_c)
            db = torch.mv(dgates.t(), torch.ones_like(dgates[:, 0]))
            grads[4 * layer:4 * layer + 4] = [(x.t() @ dgates).t(), (h.t() @ dgates).t(), db, db.clone()]
            both = dgates @ torch.cat([w_ih, w_hh], 1)  # dL/dx and dL/dh in one GEMM
            d_x, d_h_old[layer] = both[:, :w_ih.shape[1]], both[:, w_ih.shape[1]:]
        return (None, d_x, *d_h_old, *d_c_old, *grads)


def _sum(a: Tensor | None, b: Tensor | None, like: Tensor) -> Tensor:
    """a + b where either may be None (no gradient flowed there)."""
    if a is None and b is None:
        return torch.zeros_like(like)
    return b if a is None else a if b is None else a + b


def fused_layers(cells, x: Tensor, h: tuple[Tensor, ...], c: tuple[Tensor, ...]):
    """The stack of nn.LSTMCell `cells` on the input x [n, d] through `FusedLayers`: the new h and c tuples."""
    L = len(cells)
    phi = [t for cell in cells for t in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
    out = FusedLayers.apply(L, x, *h, *c, *phi)
    return out[:L], out[L:]


def fused_step(net, grad: Tensor, h: tuple[Tensor, ...], c: tuple[Tensor, ...]):
    """`net` (a CoordinatewiseLSTM) applied to the flat gradient `grad` through `FusedStep`:
    returns the update [n] and the new h, c tuples."""
    cfg, L = net.config, len(net.cells)
    phi = [t for cell in net.cells for t in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
    out = FusedStep.apply(grad.detach().reshape(-1), cfg.p if cfg.preprocess else None, cfg.output_scale, L,
                          *h, *c, *phi, net.head.weight, net.head.bias)
    return out[0], out[1:1 + L], out[1 + L:]


def enabled() -> bool:
    """The fused path is on unless L2L_FUSED=0 or torch.compile failed here before."""
    return os.environ.get("L2L_FUSED", "1") != "0" and _state["broken"] is None


def runs_here() -> bool:
    """Whether the fused path runs on this machine: enabled, and its kernels compile (tried now if not yet). What
    a kept result's key records: unlike `enabled`, it does not depend on whether this process has run an LSTM
    step yet."""
    return enabled() and _kernels() is not None


def usable(x: Tensor) -> bool:
    return enabled() and x.device.type == "cpu" and x.dtype == torch.float32 and _kernels() is not None
