"""The fused CPU LSTM layer against PyTorch's own cell: values, gradients, fallbacks."""
import pytest
import torch

import l2l.fused_lstm as fused
from l2l.lstm_math import FLUSH_BELOW, preprocess
from l2l.optimizer import CoordinatewiseLSTM, LSTMConfig


def test_fast_tanh_and_sigmoid_match_torch_to_float32_accuracy():
    x = torch.linspace(-30, 30, 200_001)
    assert (fused.fast_tanh(x) - torch.tanh(x)).abs().max() < 1e-6
    assert (fused.fast_sigmoid(x) - torch.sigmoid(x)).abs().max() < 1e-6
    assert fused.fast_tanh(torch.tensor([0.0])).item() == 0.0


def _unroll(net, n, steps, seed):
    """A few steps of the LSTM with a loss that uses every update and the last state; returns loss, φ-grads."""
    torch.manual_seed(seed)
    state, loss = net.init_state(n), 0
    for _ in range(steps):
        g = torch.randn(n) * torch.logspace(-6, 1, n)  # both preprocessing branches
        update, state = net(g, state)
        loss = loss + (update * torch.randn(n)).sum()
    loss = loss + state.h[-1].sum() + state.c[0].square().sum()
    net.zero_grad()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in net.parameters()]


def saturating(net):
    """Weights 3x the default init's, so the gates saturate too."""
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3)
    return net


@pytest.mark.parametrize("preprocess,layers,hidden", [(True, 2, 20), (False, 1, 7), (True, 3, 16)])
def test_fused_layer_matches_nn_lstm_cell_forward_and_backward(monkeypatch, preprocess, layers, hidden):
    torch.manual_seed(0)
    net = CoordinatewiseLSTM(LSTMConfig(hidden=hidden, layers=layers, preprocess=preprocess, output_scale=1.0))
    saturating(net)
    results = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("L2L_FUSED", mode)
        results[mode] = _unroll(net, n=301, steps=6, seed=1)
    assert fused.usable(torch.zeros(1)), f"the fused path did not compile here: {fused._state['broken']}"
    (loss_ref, grads_ref), (loss_fused, grads_fused) = results["0"], results["1"]
    torch.testing.assert_close(loss_fused, loss_ref, rtol=1e-5, atol=1e-4)
    for a, b in zip(grads_fused, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


def test_fused_step_passes_gradients_to_the_state_it_starts_from(monkeypatch):
    """Truncated BPTT needs dL/d(h, c) of every layer from each step to the one before; φ's gradients must not
    alias (the two biases of a layer get equal values, in separate tensors, or clipping would scale one twice)."""
    torch.manual_seed(0)
    net = CoordinatewiseLSTM(LSTMConfig(output_scale=0.5))
    n, grads = 37, {}
    g = torch.randn(n) * torch.logspace(-6, 1, n)
    for mode in ("0", "1"):
        monkeypatch.setenv("L2L_FUSED", mode)
        torch.manual_seed(1)
        state = net.init_state(n)
        h0 = [torch.randn_like(h).requires_grad_() for h in state.h]
        c0 = [torch.randn_like(c).requires_grad_() for c in state.c]
        update, new = net(g, type(state)(h0, c0))
        loss = (update * torch.randn(n)).sum() + sum((h * torch.randn_like(h)).sum() for h in new.h) + \
            sum((c ** 2).sum() for c in new.c)
        net.zero_grad()
        loss.backward()
        grads[mode] = [t.grad.clone() for t in h0 + c0] + [p.grad.clone() for p in net.parameters()]
        if mode == "1":
            cell = net.cells[0]
            assert cell.bias_ih.grad.data_ptr() != cell.bias_hh.grad.data_ptr()
    for a, b in zip(grads["1"], grads["0"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_the_fused_step_is_not_used_for_a_second_order_gradient():
    """With ∇ in the graph (second_order), dL/d∇ is needed, which the fused step does not compute."""
    net = CoordinatewiseLSTM()
    g = torch.randn(11, requires_grad=True)
    update, _ = net(g, net.init_state(11))
    (d_g,) = torch.autograd.grad(update.sum(), g)
    assert d_g.abs().sum() > 0


def test_fused_path_is_skipped_where_it_does_not_apply(monkeypatch):
    assert not fused.usable(torch.zeros(2, dtype=torch.float64))  # its tanh is float32-accurate only
    monkeypatch.setenv("L2L_FUSED", "0")
    assert not fused.usable(torch.zeros(2))


def test_a_failed_compile_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(fused, "_compiled", {})
    monkeypatch.setattr(fused, "_state", {"broken": None})

    def no_compiler(fn):
        raise RuntimeError("no working C++ compiler found")

    monkeypatch.setattr(torch, "compile", no_compiler)
    net = CoordinatewiseLSTM()
    with pytest.warns(RuntimeWarning, match="could not be compiled"):
        update, _ = net(torch.randn(5), net.init_state(5))
    assert update.shape == (5,) and not fused.usable(torch.zeros(1))


def test_preprocessing_inside_the_first_layer_matches_the_formula():
    g = torch.randn(5000) * torch.logspace(-8, 2, 5000)
    g[::7] = 0.0
    assert fused.usable(g)
    kernel = fused._kernels()["fwd_first"]
    zeros = torch.zeros(5000, 20)
    x = kernel(torch.zeros(5000, 80), g, torch.zeros(2, 80), zeros, torch.zeros(80), *fused.gate_constants(20), 10.0)[-1]
    torch.testing.assert_close(x, preprocess(g, 10.0), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode", ["1", "0"])  # the fused step and the reference path (nn.LSTMCell's kernels)
def test_backward_flushes_gradients_before_they_become_denormal(monkeypatch, mode):
    """Denormal floats cost x86 CPUs ~100x per operation (a meta-training run from some φ₀ was 5x slower):
    backward sets dL/dh and dL/dc below FLUSH_BELOW to zero, and leaves larger gradients as they are."""
    monkeypatch.setenv("L2L_FUSED", mode)
    torch.manual_seed(0)
    net = CoordinatewiseLSTM()
    n = 64
    state = net.init_state(n)
    h0 = [torch.randn_like(h).requires_grad_() for h in state.h]
    c0 = [torch.randn_like(c).requires_grad_() for c in state.c]
    update, new = net(torch.randn(n), type(state)(h0, c0))
    tiny = torch.full((n, 20), FLUSH_BELOW * 1e-5)  # 1e-25
    tiny[0] = 1.0  # one coordinate with an ordinary gradient
    torch.autograd.backward([new.h[1], new.c[1]], [tiny, tiny])
    for t in h0 + c0:
        g = t.grad
        assert not ((g != 0) & (g.abs() < torch.finfo(torch.float32).tiny)).any()
        assert (g[1:] == 0).all() and (g[0] != 0).any()


@pytest.mark.parametrize("layers,embed", [(2, 20), (1, 0), (3, 8)])
def test_fused_layers_match_nn_lstm_cell_with_a_differentiable_input(monkeypatch, layers, embed):
    """RNNprop's LSTM (l2l.general) through FusedLayers: same values, φ-gradients (embedding included, so dL/dx
    is right) and gradients into the starting state as nn.LSTMCell."""
    from l2l.general.optimizer import RNNpropConfig, RNNpropNet

    torch.manual_seed(0)
    net = RNNpropNet(RNNpropConfig(layers=layers, embed=embed, beta1=(0.5, 0.9)))
    saturating(net)
    results = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("L2L_FUSED", mode)
        torch.manual_seed(1)
        n = 211
        state = net.init_state(n)
        h0 = [torch.randn_like(h).requires_grad_() for h in state.h]
        state, loss = type(state)(h0, [torch.randn_like(c) for c in state.c]), 0
        for _ in range(5):
            out, state = net(torch.randn(n, 3) * 2, state)
            loss = loss + (out * torch.randn(n)).sum()
        loss = loss + state.c[-1].square().sum()
        net.zero_grad()
        loss.backward()
        results[mode] = (loss.detach(), [p.grad.clone() for p in net.parameters()], [h.grad for h in h0])
    assert fused.usable(torch.zeros(1)), f"the fused path did not compile here: {fused._state['broken']}"
    (loss_ref, phi_ref, h_ref), (loss_fused, phi_fused, h_fused) = results["0"], results["1"]
    torch.testing.assert_close(loss_fused, loss_ref, rtol=1e-5, atol=1e-4)
    for a, b in zip(phi_fused + h_fused, phi_ref + h_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())
