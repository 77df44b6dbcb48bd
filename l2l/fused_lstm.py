"""One layer of the coordinatewise LSTM, fused for the CPU (issue 8: meta-training speed).

On the CPU, `nn.LSTMCell` runs its gate math as a dozen separate elementwise kernels, each reading and
writing an [n_coords, 4·hidden] tensor, and `torch.tanh` is several times slower than the GEMMs around it.
With hidden = 20 and 10⁴–10⁶ coordinates that gate math, not the matrix products, is most of a step.
Here one layer is an autograd.Function whose

- forward is two GEMMs (input, hidden state) into one buffer and ONE compiled elementwise kernel for the
  bias, all gates, the new cell and hidden state;
- backward is one compiled elementwise kernel (from the saved activations, no transcendental recomputed)
  plus the GEMMs for the input, hidden-state and weight gradients.

tanh and σ(x) = ½ + ½·tanh(x/2) use the rational approximation of Eigen and XLA's CPU backend
(|error| < 4e-7 absolute against torch.tanh), a handful of fused multiply-adds that torch.compile vectorizes.

Used where it pays and is exact enough: float32 tensors on the CPU, when torch.compile works here (it needs a
C++ compiler; without one this falls back, with one warning, to the reference). On CUDA, `nn.LSTMCell`
already runs PyTorch's own fused cell kernel, so the reference is used there. `L2L_FUSED=0` turns the
fused path off everywhere, which reproduces runs made before it existed.
"""
from __future__ import annotations

import os
import warnings

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

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


def _gates_forward(pre: Tensor, c: Tensor, bias: Tensor):
    """x·W_ihᵀ + h·W_hhᵀ [n, 4H] (PyTorch's gate order i, f, g, o), c and the bias → h', c' and what backward
    needs. The bias is added here, in the same pass, rather than copied into the GEMM's output first."""
    H = c.shape[1]
    gates = pre + bias
    i, f = fast_sigmoid(gates[:, :H]), fast_sigmoid(gates[:, H:2 * H])
    g, o = fast_tanh(gates[:, 2 * H:3 * H]), fast_sigmoid(gates[:, 3 * H:])
    c_new = f * c + i * g
    tanh_c = fast_tanh(c_new)
    return o * tanh_c, c_new, torch.cat([i, f, g, o], 1), tanh_c


def _gates_backward(dh: Tensor, dc_new: Tensor, act: Tensor, c: Tensor, tanh_c: Tensor):
    """dL/dh', dL/dc' → dL/d(gate pre-activations), dL/dc, from the saved activations only."""
    H = c.shape[1]
    i, f, g, o = act[:, :H], act[:, H:2 * H], act[:, 2 * H:3 * H], act[:, 3 * H:]
    dc = dc_new + dh * o * (1 - tanh_c * tanh_c)
    dgates = torch.cat([dc * g * i * (1 - i), dc * c * f * (1 - f), dc * i * (1 - g * g),
                        dh * tanh_c * o * (1 - o)], 1)
    return dgates, dc * f


_compiled = {}
_state = {"broken": None}


def _dynamic_rows(fn):
    """Compile `fn` once for any number of rows (coordinates); other sizes (hidden) stay constants."""
    compiled = torch.compile(fn)

    def call(*args):
        for t in args:
            if isinstance(t, Tensor) and t.dim() > 0:
                torch._dynamo.maybe_mark_dynamic(t, 0)
                for d in range(1, t.dim()):
                    torch._dynamo.mark_static(t, d)
        return compiled(*args)
    return call


def _kernels():
    """The two compiled kernels, built and tried once on a tiny input; None if compiling fails here."""
    if not _compiled:
        try:
            fwd, bwd = _dynamic_rows(_gates_forward), _dynamic_rows(_gates_backward)
            # The first call fixes how the kernels are generated: a realistic number of rows, or inductor
            # writes them single-threaded; the default hidden size, 20 (another size compiles its own).
            gates, c = torch.zeros(4096, 80), torch.zeros(4096, 20)
            _, _, act, tanh_c = fwd(gates, c, torch.zeros(80))
            bwd(c, c, act, c, tanh_c)
            _compiled.update(fwd=fwd, bwd=bwd)
        except Exception as err:  # no C++ compiler, unsupported platform: say so once, then run unfused
            _state["broken"] = err
            warnings.warn(f"l2l: the fused LSTM cell could not be compiled ({type(err).__name__}: "
                          f"{(str(err).splitlines() or [''])[0]}); using nn.LSTMCell's kernels, which are slower "
                          "on the CPU. Set L2L_FUSED=0 to silence this.", RuntimeWarning)
            return None
    return _compiled["fwd"], _compiled["bwd"]


class FusedLSTMLayer(torch.autograd.Function):
    """(x, h, c, W_ih, W_hh, b) → (h', c'), with gates = x·W_ihᵀ + h·W_hhᵀ + b."""

    @staticmethod
    def forward(ctx, x, h, c, w_ih, w_hh, bias):
        fwd, _ = _kernels()
        h_new, c_new, act, tanh_c = fwd((x @ w_ih.t()).addmm_(h, w_hh.t()), c, bias)
        ctx.save_for_backward(x, h, c, w_ih, w_hh, act, tanh_c)
        return h_new, c_new

    @staticmethod
    @once_differentiable
    def backward(ctx, dh, dc_new):
        _, bwd = _kernels()
        x, h, c, w_ih, w_hh, act, tanh_c = ctx.saved_tensors
        dh = torch.zeros_like(c) if dh is None else dh.contiguous()
        dc_new = torch.zeros_like(c) if dc_new is None else dc_new.contiguous()
        dgates, dc = bwd(dh, dc_new, act, c, tanh_c)
        need = ctx.needs_input_grad
        # the first layer's input is the detached, preprocessed gradient: its GEMM is skipped.
        # Weight gradients as (inputᵀ·dgates)ᵀ: on the CPU, 1.3-3x faster than dgatesᵀ·input for these shapes.
        return (dgates @ w_ih if need[0] else None, dgates @ w_hh if need[1] else None, dc,
                (x.t() @ dgates).t() if need[3] else None, (h.t() @ dgates).t() if need[4] else None,
                dgates.sum(0) if need[5] else None)


def enabled() -> bool:
    """The fused path is on unless L2L_FUSED=0 or torch.compile failed here before."""
    return os.environ.get("L2L_FUSED", "1") != "0" and _state["broken"] is None


def usable(x: Tensor) -> bool:
    return enabled() and x.device.type == "cpu" and x.dtype == torch.float32 and _kernels() is not None


def rowwise(fn, x: Tensor):
    """`fn` compiled for any number of rows where the fused path is usable for `x`, else `fn` itself; for the
    small elementwise functions around the cell (the gradient preprocessing), which compile to one loop."""
    if not usable(x):
        return fn
    if fn not in _compiled:
        _compiled[fn] = _dynamic_rows(fn)
    return _compiled[fn]


def reference_layer(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """PyTorch's own cell (on CUDA its fused kernel): the definition the fused layer is tested against."""
    return torch._VF.lstm_cell(x, (h, c), w_ih, w_hh, b_ih, b_hh)


def lstm_layer(x: Tensor, h: Tensor, c: Tensor, cell: torch.nn.LSTMCell) -> tuple[Tensor, Tensor]:
    """One LSTM layer over all coordinates (rows): fused where `usable`, else PyTorch's cell."""
    if usable(x):
        return FusedLSTMLayer.apply(x, h, c, cell.weight_ih, cell.weight_hh, cell.bias_ih + cell.bias_hh)
    return reference_layer(x, h, c, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
