"""The coordinatewise LSTM: state per coordinate, preprocessing, gradient flow, registered parameters."""
import ast
import math
from pathlib import Path

import pytest
import torch

import l2l
from l2l.optimizer import CoordinatewiseLSTM, LSTMConfig, LSTMOptimizer, preprocess
from l2l.problems import QuadraticFamily
from l2l.unroll import cut, start, unroll


def test_preprocessing_matches_formula_on_both_branches():
    p = 10.0
    threshold = math.exp(-p)
    g = torch.tensor([2.0, -3e-2, threshold, -threshold, threshold * 0.5, -threshold * 0.25, 0.0], dtype=torch.float64)
    out = preprocess(g, p)
    assert out.shape == (7, 2)
    for i, v in enumerate(g.tolist()):
        if abs(v) >= threshold:  # the threshold itself belongs to the log branch
            expected = (math.log(abs(v)) / p, math.copysign(1.0, v))
        else:
            expected = (-1.0, math.exp(p) * v)
        assert out[i].tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12), (i, v)
    assert torch.isfinite(out).all()


def test_preprocessing_switch_changes_input_width():
    assert CoordinatewiseLSTM(LSTMConfig(preprocess=True)).cells[0].input_size == 2
    assert CoordinatewiseLSTM(LSTMConfig(preprocess=False)).cells[0].input_size == 1


def test_permuting_coordinates_permutes_updates_and_state():
    torch.manual_seed(0)
    net = CoordinatewiseLSTM(LSTMConfig(output_scale=1.0))
    n = 37
    state = net.init_state(n)
    grads = [torch.randn(n) for _ in range(3)]
    perm = torch.randperm(n)
    state_p = net.init_state(n)
    for g in grads:  # several steps, so the state history matters
        u, state = net(g, state)
        up, state_p = net(g[perm], state_p)
        torch.testing.assert_close(up, u[perm])
    (h_p, c_p), (h, c) = state_p.stacked(), state.stacked()
    torch.testing.assert_close(h_p, h[:, perm])
    torch.testing.assert_close(c_p, c[:, perm])


def test_coordinates_never_share_state_rows():
    """Changing one coordinate's gradient history changes only that coordinate's state row and update."""
    torch.manual_seed(1)
    net = CoordinatewiseLSTM(LSTMConfig(output_scale=1.0))
    n = 10
    g = torch.randn(n)
    g2 = g.clone()
    g2[3] += 5.0
    s1, s2 = net.init_state(n), net.init_state(n)
    _, s1 = net(g, s1)
    _, s2 = net(g2, s2)
    u1, s1 = net(g, s1)
    u2, s2 = net(g, s2)  # same gradient now; only coordinate 3 remembers a different past
    (h1, c1), (h2, _) = s1.stacked(), s2.stacked()
    changed = (h1 - h2).abs().sum(dim=(0, 2)) > 0
    assert changed.tolist() == [i == 3 for i in range(n)]
    assert ((u1 - u2).abs() > 0).tolist() == [i == 3 for i in range(n)]
    assert h1.shape == (2, n, 20) and c1.shape == (2, n, 20)


def test_parameter_count_does_not_depend_on_problem_size():
    opt = LSTMOptimizer(config=LSTMConfig())
    count = sum(p.numel() for p in opt.parameters())
    for n in (1, 10, 1000):
        theta = {"x": torch.zeros(n)}
        state = opt.init_state(theta)
        opt.step(theta, {"x": torch.randn(n)}, state)
    assert sum(p.numel() for p in opt.parameters()) == count
    # two LSTM layers of 20 units on a 2-wide input, and a linear head
    assert count == (4 * 20 * (2 + 20) + 8 * 20) + (4 * 20 * (20 + 20) + 8 * 20) + (20 + 1)


def _short_unroll(second_order):
    torch.manual_seed(0)
    opt = LSTMOptimizer(config=LSTMConfig(preprocess=False, output_scale=1.0))
    problem = QuadraticFamily(batch=4).sample(torch.Generator().manual_seed(0))
    traj = start(opt, problem)
    losses, traj = unroll(opt, problem, traj, 5, track_graph=True, second_order=second_order)
    return opt, losses, traj


def test_phi_gets_gradients_through_the_unroll_but_grads_carry_no_graph():
    opt, losses, traj = _short_unroll(second_order=False)
    assert all(not d.requires_grad for d in traj.grads.values())  # ∂∇_t/∂φ = 0
    torch.stack([l.mean() for l in losses]).sum().backward()
    for name, p in opt.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("family", ["quadratic", "mlp"])
def test_linearized_losses_give_the_meta_gradient_of_the_optimizee_graph(family):
    """The fast path (optimizee graph dropped, ∂f/∂θ_t = ∇_t) gives the same values and meta-gradient
    as backpropagating through every retained optimizee graph."""
    from l2l.problems import MLPFamily

    results = []
    for retain in (False, True):
        torch.manual_seed(0)
        opt = LSTMOptimizer(config=LSTMConfig(output_scale=0.1))
        if family == "quadratic":
            problem = QuadraticFamily(batch=3).sample(torch.Generator().manual_seed(0))
        else:  # MNIST-shaped random data: the arithmetic needs no dataset
            fam = MLPFamily(hidden=(5,), batch_size=16)
            g = torch.Generator().manual_seed(1)
            fam._data[fam.split] = (torch.randint(0, 256, (64, 28, 28), generator=g, dtype=torch.uint8),
                                    torch.randint(0, 10, (64,), generator=g))
            problem = fam.sample(torch.Generator().manual_seed(0))
        traj = start(opt, problem)
        values, grads = [], []
        for _ in range(2):  # two unrolls: the second starts from a cut, non-zero LSTM state
            losses, traj = unroll(opt, problem, traj, 4, track_graph=True, retain_optimizee_graph=retain)
            opt.zero_grad()
            torch.stack([l.mean() for l in losses]).sum().backward()
            values.append(torch.stack(losses).detach())
            grads.append([p.grad.clone() for p in opt.parameters()])
            traj = cut(traj)
        results.append((values, grads))
    (v_fast, g_fast), (v_ref, g_ref) = results
    for a, b in zip(v_fast, v_ref):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a_list, b_list in zip(g_fast, g_ref):
        assert any(b.abs().sum() > 0 for b in b_list)
        for a, b in zip(a_list, b_list):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_second_order_keeps_the_gradient_graph():
    opt, losses, traj = _short_unroll(second_order=True)
    assert all(d.requires_grad for d in traj.grads.values())


def test_first_and_second_order_meta_gradients_differ():
    grads = []
    for second in (False, True):
        opt, losses, _ = _short_unroll(second)
        torch.stack([l.mean() for l in losses]).sum().backward()
        grads.append(opt.nets["default"].head.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


def test_every_parameter_changes_after_a_meta_step():
    torch.manual_seed(0)
    opt = LSTMOptimizer(config=LSTMConfig(preprocess=False, output_scale=1.0))
    before = {k: v.clone() for k, v in opt.state_dict().items()}
    cfg = l2l.MetaTrainConfig(horizon=10, unroll=5, epochs=1, problems_per_epoch=1, n_val=1)
    l2l.meta.train_on_problem(opt, QuadraticFamily(batch=4).sample(torch.Generator().manual_seed(0)),
                              torch.optim.Adam(opt.parameters(), lr=1e-3), cfg)
    for k, v in opt.state_dict().items():
        assert not torch.equal(v, before[k]), f"{k} was not trained"


def test_routing_groups_to_separate_lstms():
    torch.manual_seed(0)
    nets = {"conv": CoordinatewiseLSTM(), "fc": CoordinatewiseLSTM()}
    opt = LSTMOptimizer(nets=nets, route={"conv": "conv", "fc": "fc"})
    assert len(list(opt.parameters())) == 2 * len(list(nets["conv"].parameters()))
    theta = {"conv": torch.zeros(5), "fc": torch.zeros(3)}
    grads = {"conv": torch.ones(5), "fc": torch.ones(3)}
    new, _ = opt.step(theta, grads, opt.init_state(theta))
    assert new["conv"][0] != new["fc"][0]  # different φ, same input → different updates
    with pytest.raises(ValueError, match="group 'other' has no LSTM"):  # a KeyError before routing was one rule
        opt.init_state({"other": torch.zeros(2)})
    with pytest.raises(ValueError, match="not among"):
        LSTMOptimizer(nets=nets, route={"conv": "missing"})


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="hidden"):
        LSTMConfig(hidden=0)
    with pytest.raises(ValueError, match="multiple of unroll"):
        l2l.MetaTrainConfig(horizon=100, unroll=30)


def test_applying_in_chunks_gives_the_same_step(monkeypatch):
    """Without a graph, large groups run in chunks of coordinates; rows are independent, so nothing changes."""
    import l2l.optimizer as optimizer_module

    torch.manual_seed(0)
    net = CoordinatewiseLSTM(LSTMConfig(output_scale=1.0))
    n = 50
    grads = [torch.randn(n) for _ in range(3)]
    results = []
    for chunk in (10**9, 7):
        monkeypatch.setattr(optimizer_module, "APPLY_CHUNK", chunk)
        state = net.init_state(n)
        with torch.no_grad():
            for g in grads:
                update, state = net(g, state)
        results.append((update, *state.stacked()))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("chunk", [10**9, 7])
def test_a_step_written_into_its_own_state_equals_the_functional_step(monkeypatch, chunk):
    """out=state (what LearnedOptimizer does to allocate nothing per step) reads every row before writing it."""
    import l2l.optimizer as optimizer_module

    monkeypatch.setattr(optimizer_module, "APPLY_CHUNK", chunk)
    torch.manual_seed(0)
    net = CoordinatewiseLSTM(LSTMConfig(output_scale=1.0))
    n = 50
    functional, inplace = net.init_state(n), net.init_state(n)
    h, c = (t.clone() for t in inplace.stacked())
    with torch.no_grad():
        for _ in range(3):
            g = torch.randn(n)
            u_ref, functional = net(g, functional)
            u, new = net(g, optimizer_module.LSTMState(h, c), out=optimizer_module.LSTMState(h, c))
            torch.testing.assert_close(u, u_ref, rtol=0, atol=0)
    assert all(torch.equal(a, b) for a, b in zip((h, c), functional.stacked()))
    assert new.h[0].data_ptr() == h[0].data_ptr()  # written in place


def test_writing_the_state_in_place_needs_no_grad():
    net = CoordinatewiseLSTM()
    state = net.init_state(4)
    with pytest.raises(ValueError, match="no_grad"):
        net(torch.randn(4), state, out=state)


def _l2l_imports() -> dict[str, set[str]]:
    """{module of l2l: the modules of l2l it imports anywhere in its source, deferred imports included}."""
    root = Path(l2l.__file__).parent
    files = {".".join(f.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): f
             for f in root.rglob("*.py")}
    graph = {}
    for name, f in files.items():
        package = name if f.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names}
        # a module's own packages (`from . import __version__`) are set up before it runs: not an edge
        graph[name] = {m for m in found if m in files and m != name and not name.startswith(m + ".")}
    return graph


def test_l2l_has_no_import_cycle():
    """The LSTM math lives in a leaf both steps import: fused_lstm never imports optimizer (it used to, deferred,
    because each needed the other), and no module of l2l reaches itself through its imports."""
    graph = _l2l_imports()
    assert graph["l2l.lstm_math"] == set()
    assert graph["l2l.fused_lstm"] == {"l2l.lstm_math"}
    assert {"l2l.fused_lstm", "l2l.lstm_math"} <= graph["l2l.optimizer"]

    def reachable(start):
        seen, todo = set(), [start]
        while todo:
            for m in graph[todo.pop()] - seen:
                seen.add(m)
                todo.append(m)
        return seen

    assert [m for m in sorted(graph) if m in reachable(m)] == []
