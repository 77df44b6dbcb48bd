"""The paper's LSTM math, shared by the reference step (`l2l.optimizer`) and the fused CPU step (`l2l.fused_lstm`).

- `preprocess`: the gradient preprocessing of Appendix A;
- `reference_layer`: one layer of the coordinatewise LSTM, PyTorch's own cell: the definition the fused step is
  tested against;
- `flush` / `FLUSH_BELOW`: the flush of backward gradients that would become denormal, done by both steps.

A leaf: it imports nothing from l2l, so both steps import it and neither imports the other's module.

Used in: every chapter (through `CoordinatewiseLSTM`).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def preprocess(grad: Tensor, p: float = 10.0) -> Tensor:
    """The paper's gradient preprocessing (Appendix A), one row (log-magnitude, sign) per coordinate.

        ∇ → ( log|∇| / p , sign ∇ )   if |∇| ≥ e^{-p}
        ∇ → ( -1 , e^{p} ∇ )          otherwise
    """
    grad = grad.reshape(-1, 1)
    big = grad.abs() >= math.exp(-p)
    # clamp keeps log finite on the small branch, which torch.where evaluates too
    log_part = torch.where(big, grad.abs().clamp_min(math.exp(-p)).log() / p, -torch.ones_like(grad))
    sign_part = torch.where(big, grad.sign(), grad * math.exp(p))
    return torch.cat([log_part, sign_part], dim=1)


# Backward flushes dL/dh and dL/dc below this to zero. Going back through an unroll they shrink at every step
# (by the forget gates, by saturated gates) and, from some φ, reach the denormal range (< 1.2e-38), where x86
# CPUs take ~100x longer per operation: a meta-training run was measured 5x slower from such a φ₀, nearly all of
# it in the GEMMs on dgates (benchmarks/RESULTS.md, "by init"). Flushed at the [n, H] inputs of a layer's
# backward (free in the fused step; at the [n, 4H] output it cost 0.25 ms a call), dgates are products of values
# ≥ 1e-20 with gate derivatives (≥ 1e-7 or exactly 0) and activations, so they and their products with the
# weights stay normal unless the activations are themselves tiny. 1e-20 is far below anything that can move a
# float32 sum of meta-gradients.
FLUSH_BELOW = 1e-20


def flush(t: Tensor) -> Tensor:
    """`t` with entries below FLUSH_BELOW in magnitude set to zero (the fused backward's and a gradient hook)."""
    return torch.where(t.abs() < FLUSH_BELOW, 0.0, t)


def reference_layer(x: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor):
    """One LSTM layer over all coordinates: x [n, n_in], h and c [n, H] → h', c'.

    PyTorch's own cell (on CUDA its fused kernel). On the CPU, with a graph, backward flushes dL/dh' and dL/dc'
    as the fused step does, so both paths stay out of the denormal range.
    """
    h, c = torch._VF.lstm_cell(x, (h, c), w_ih, w_hh, b_ih, b_hh)
    if h.requires_grad and h.device.type == "cpu":
        h.register_hook(flush)
        c.register_hook(flush)
    return h, c
