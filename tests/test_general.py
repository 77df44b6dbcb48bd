"""The second recipe (l2l.general): RNNprop's update, the task mixture with random scaling, the curriculum.

Everything runs on synthetic images injected into the families, so it needs no dataset and takes seconds.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import l2l
from l2l.general import (TRAIN_TASKS, VALIDATION_TASKS, HorizonCurriculum, RNNpropConfig, RNNpropOptimizer,
                         ScaledProblem, SmallNetFamily, TaskMixture, TaskSpec, log_ratio_meta_loss)
from l2l.general.optimizer import rnnprop_inputs
from l2l.general.tasks import GROUP
from l2l.unroll import start, unroll

pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic(family, n: int = 64):
    """Give `family` (MLPFamily or SmallNetFamily) `n` random images per split instead of a dataset."""
    g = torch.Generator().manual_seed(1)
    shape = (n, 3, 32, 32) if getattr(family, "dataset", "mnist") == "cifar10" else (n, 28, 28)
    for split in ("train", "test"):
        family._data[split] = (torch.randint(0, 256, shape, generator=g, dtype=torch.uint8),
                               torch.randint(0, 10, (n,), generator=g))
    return family


def synthetic_mixture(tasks=TRAIN_TASKS, **kw) -> TaskMixture:
    mixture = TaskMixture(tasks, **kw)
    for t in mixture.tasks:
        synthetic(mixture.family(t.name))
    return mixture


def quadratic_grads(theta, a, y, factor=1.0):
    """∇ of factor · ½ Σ a (θ − y)²."""
    return {"x": factor * a * (theta["x"] - y)}


def lstm_cell(x, h, c, cell):
    gates = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
    i, f, g, o = gates.chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


# --- the optimizer ------------------------------------------------------------------------------------------

def test_first_step_is_the_formula():
    """At t = 1 the bias-corrected moments are m̂ = ∇, v̂ = ∇², so every input is sign ∇; the step is
    −lr · α · tanh(head(LSTM(ELU(embed(x)))))) from a zero LSTM state."""
    torch.manual_seed(0)
    opt = RNNpropOptimizer(RNNpropConfig(beta1=(0.9, 0.5)))
    a, y = torch.rand(7) + 0.5, torch.randn(7)
    theta = {"x": torch.randn(7)}
    grads = quadratic_grads(theta, a, y)
    new, state = opt.step(theta, grads, opt.init_state(theta), lr=0.7)

    x = grads["x"].sign().unsqueeze(1).expand(7, 3)
    assert torch.allclose(rnnprop_inputs(grads["x"], state["x"]["m"], state["x"]["v"], 1, opt.config), x, atol=1e-6)
    net = opt.net
    with torch.no_grad():
        h = F.elu(x @ net.embed.weight.T + net.embed.bias)
        zeros = torch.zeros(7, 20)
        for cell in net.cells:
            h, _ = lstm_cell(h, zeros, zeros, cell)
        expected = theta["x"] - 0.7 * 0.1 * torch.tanh(h @ net.head.weight.T + net.head.bias).squeeze(1)
    assert torch.allclose(new["x"], expected, atol=1e-6)
    assert state["x"]["t"] == 1
    assert torch.allclose(state["x"]["m"][0], 0.1 * grads["x"]) and torch.allclose(state["x"]["m"][1], 0.5 * grads["x"])
    assert torch.allclose(state["x"]["v"], 0.05 * grads["x"] ** 2)


def run(opt, theta, a, y, steps, factor=1.0, lr=1.0):
    state, path = opt.init_state(theta), []
    with torch.no_grad():
        for _ in range(steps):
            theta, state = opt.step(theta, quadratic_grads(theta, a, y, factor), state, lr=lr)
            path.append(theta["x"])
    return torch.stack(path), state


def test_steps_are_invariant_to_the_scale_of_the_objective():
    """RNNprop's inputs are relative gradients: f and 1000·f give the same trajectory (up to ε and rounding)."""
    torch.manual_seed(1)
    opt = RNNpropOptimizer(RNNpropConfig(beta1=(0.5, 0.95)))
    a, y, theta = torch.rand(50) + 0.1, torch.randn(50), {"x": torch.randn(50)}
    path, _ = run(opt, theta, a, y, 20)
    scaled, _ = run(opt, theta, a, y, 20, factor=1000.0)
    assert torch.allclose(path, scaled, atol=1e-5)
    assert (path[-1] - theta["x"]).abs().max() > 1e-2  # it did move


def test_lr_scales_the_step_linearly_and_bounds_it():
    torch.manual_seed(2)
    opt = RNNpropOptimizer()
    a, y, theta = torch.rand(30) + 0.1, torch.randn(30), {"x": torch.randn(30)}
    state = opt.init_state(theta)
    grads = quadratic_grads(theta, a, y)
    with torch.no_grad():
        one, s1 = opt.step(theta, grads, state)
        half, s2 = opt.step(theta, grads, state, lr=0.5)
        three, _ = opt.step(theta, grads, state, lr=3.0)
    step = one["x"] - theta["x"]
    assert torch.allclose(half["x"] - theta["x"], 0.5 * step, atol=1e-6)  # float32 rounding of θ ± step
    assert torch.allclose(three["x"] - theta["x"], 3.0 * step, atol=1e-6)
    assert step.abs().max() <= opt.config.alpha
    for h1, h2 in zip(s1["x"]["lstm"].h, s2["x"]["lstm"].h):  # lr touches the step, not the state
        assert torch.equal(h1, h2)


def test_describe_round_trips_and_phi_is_size_independent():
    opt = RNNpropOptimizer(RNNpropConfig(beta1=(0.5, 0.9, 0.99), embed=0))
    again = RNNpropOptimizer.from_description(opt.describe())
    assert again.config == opt.config
    assert sum(p.numel() for p in opt.parameters()) == sum(p.numel() for p in again.parameters())
    with pytest.raises(ValueError):
        RNNpropConfig(beta1=())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_step_on_cuda_matches_cpu():
    torch.manual_seed(3)
    opt = RNNpropOptimizer()
    a, y, theta = torch.rand(40) + 0.1, torch.randn(40), {"x": torch.randn(40)}
    path, _ = run(opt, theta, a, y, 5)
    gpu = opt.to("cuda")
    path_gpu, state = run(gpu, {"x": theta["x"].cuda()}, a.cuda(), y.cuda(), 5)
    assert state["x"]["v"].device.type == "cuda"
    assert torch.allclose(path, path_gpu.cpu(), atol=1e-5)


# --- tasks ---------------------------------------------------------------------------------------------------

def test_task_lists_are_disjoint_and_buildable():
    train = {t.name for t in TRAIN_TASKS}
    assert not train & {t.name for t in VALIDATION_TASKS}
    configs = lambda tasks: {(t.dataset, t.arch, t.hidden, t.channels, t.activation, t.batch_norm, t.dropout)  # noqa
                             for t in tasks}
    assert not configs(TRAIN_TASKS) & configs(VALIDATION_TASKS)
    assert {t.activation for t in TRAIN_TASKS} == {"sigmoid", "tanh", "relu"}
    assert {t.dataset for t in TRAIN_TASKS} == {"mnist", "cifar10"}
    assert any(t.batch_norm for t in TRAIN_TASKS) and any(t.dropout for t in TRAIN_TASKS)
    for t in TRAIN_TASKS + VALIDATION_TASKS:
        t.family()  # validates the configuration, loads nothing


def test_mixture_samples_every_task_reproducibly():
    mixture = synthetic_mixture()
    names = [mixture.sample(torch.Generator().manual_seed(s)).task for s in range(120)]
    assert set(names) == {t.name for t in TRAIN_TASKS}
    p1, p2 = (mixture.sample(torch.Generator().manual_seed(7)) for _ in range(2))
    assert p1.task == p2.task and torch.equal(p1.init()[GROUP], p2.init()[GROUP])
    assert list(p1.init()) == [GROUP]


@pytest.mark.parametrize("objective_scale", [0.0, 2.0])
def test_scaled_problem_at_its_init_has_the_unscaled_loss(objective_scale):
    """f_c(θ_0 / c) = s · f(θ_0) on the same minibatch (and dropout mask), for one network of every task."""
    mixture = synthetic_mixture(TRAIN_TASKS + VALIDATION_TASKS, objective_scale=objective_scale, batch_size=16)
    for i, spec in enumerate(mixture.tasks):
        generator = torch.Generator().manual_seed(i)
        while (p := mixture.sample(generator)).task != spec.name:
            pass
        assert p.scale is not None and p.scale.min() < 0.2 and p.scale.max() > 5  # c = exp(U(-3, 3))
        assert (p.objective_scale == 1.0) == (objective_scale == 0)
        inner, theta0 = p.inner, p.inner.init()
        before = inner.generator.get_state()
        scaled = p.loss(p.init())
        inner.generator.set_state(before)
        plain = inner.loss(theta0)
        assert torch.allclose(scaled, p.objective_scale * plain, rtol=1e-5), spec.name
        assert torch.allclose(p.eval_loss(p.init()), p.objective_scale * inner.eval_loss(theta0), rtol=1e-5)


def test_scaled_gradient_is_c_times_the_gradient():
    mixture = synthetic_mixture((TaskSpec("m", hidden=(5,), activation="tanh"),), objective_scale=1.0, batch_size=8)
    p = mixture.sample(torch.Generator().manual_seed(0))
    theta = {GROUP: p.init()[GROUP].requires_grad_(True)}
    state = p.inner.generator.get_state()
    (g_scaled,) = torch.autograd.grad(p.loss(theta).sum(), theta[GROUP])
    p.inner.generator.set_state(state)
    inner = {k: v.requires_grad_(True) for k, v in p.inner.init().items()}
    (g,) = torch.autograd.grad(p.inner.loss(inner).sum(), list(inner.values()))
    assert torch.allclose(g_scaled, p.objective_scale * p.scale * g, rtol=1e-4, atol=1e-7)


def test_small_cnn_matches_torch_modules():
    fam = synthetic(SmallNetFamily(dataset="cifar10", channels=(4, 6), hidden=(7,), activation="tanh"))
    problem = fam.sample(torch.Generator().manual_seed(0))
    p = problem.unflatten(problem.init())
    scale, shift = fam.normalisation("cpu")
    images = fam._data["train"][0][:5]
    x = images.float() * scale + shift
    for i in range(2):
        x = F.max_pool2d(torch.tanh(nn.functional.conv2d(x, p[f"conv{i}.weight"], p[f"conv{i}.bias"], padding=1)), 2)
    x = torch.tanh(F.linear(x.flatten(1), p["fc0.weight"], p["fc0.bias"]))
    expected = F.linear(x, p["out.weight"], p["out.bias"])
    assert torch.allclose(problem.forward(problem.init(), images), expected, atol=1e-5)
    assert problem.init()["net"].numel() == fam.n_params


def test_small_net_accuracy_is_on_the_test_images_without_dropout():
    fam = synthetic(SmallNetFamily(channels=(4,), hidden=(7,), dropout=0.5), n=50)
    problem = fam.sample(torch.Generator().manual_seed(0))
    theta = problem.init()
    images, labels = fam._data["test"]
    expected = (problem.forward(theta, images).argmax(1) == labels).float().mean().item()
    assert problem.accuracy(theta, chunk=16) == pytest.approx(expected)  # chunks of 16, 16, 16, 2
    assert problem.accuracy(theta) == problem.accuracy(theta)  # no dropout: deterministic


# --- meta-training --------------------------------------------------------------------------------------------

TINY = (TaskSpec("mlp", hidden=(6,), activation="sigmoid"),
        TaskSpec("cnn", "cifar10", "cnn", channels=(3,), batch_norm=True, dropout=0.2))


def test_meta_gradient_reaches_every_weight():
    mixture = synthetic_mixture(TINY, batch_size=8)
    opt = RNNpropOptimizer()
    problem = mixture.sample(torch.Generator().manual_seed(0))
    losses, _ = unroll(opt, problem, start(opt, problem), 3, track_graph=True)
    torch.stack(losses).sum().backward()
    for name, p in opt.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("meta_batch", [1, 2])
def test_smoke_meta_training_gives_finite_losses(meta_batch):
    torch.manual_seed(0)
    mixture = synthetic_mixture(TINY, batch_size=8)
    val = synthetic_mixture(TINY, param_scale=0.0, batch_size=8)
    opt = RNNpropOptimizer()
    before = [p.detach().clone() for p in opt.parameters()]
    cfg = l2l.MetaTrainConfig(horizon=4, unroll=2, epochs=2, problems_per_epoch=2, n_val=2, meta_batch=meta_batch,
                              meta_lr=1e-2)
    history = l2l.meta_train(opt, mixture, cfg, val_family=val, progress=False)
    assert history.epochs_done == 2 and history.skipped_unrolls == 0
    assert all(math.isfinite(v) for v in history.train_loss + history.val_loss)
    assert history.optimizee_steps == 2 * 2 * 4
    if history.best_epoch > 0:
        assert any(not torch.equal(a, b) for a, b in zip(before, opt.parameters()))


def test_curriculum_builds_the_config_of_one_run():
    cur = HorizonCurriculum.doubling(2, 8, epochs_per_stage=1)
    assert cur.stages == ((2, 1), (4, 1), (8, 1)) and cur.epochs == 3 and cur.final_horizon == 8
    with pytest.raises(ValueError):
        HorizonCurriculum(((4, 1), (2, 1)))
    cfg = cur.config(l2l.MetaTrainConfig(unroll=2, horizon=2), meta_loss="log_ratio")
    assert (cfg.curriculum, cfg.horizon, cfg.epochs, cfg.meta_loss) == (cur.stages, 8, 3, "log_ratio")
    assert [cfg.horizon_at(e) for e in (1, 2, 3)] == [2, 4, 8]
    assert HorizonCurriculum(((8, 5),)).config(cfg).curriculum == ()  # one stage: no curriculum
    with pytest.raises(ValueError, match="multiple of unroll"):
        cur.config(l2l.MetaTrainConfig(unroll=4, horizon=8))
    recipe = l2l.general.ABLATIONS["full"]
    full = recipe.config(l2l.MetaTrainConfig())
    assert full.curriculum == recipe.curriculum().stages and full.horizon == recipe.final_horizon
    assert full.unroll == recipe.unroll and full.epochs == recipe.curriculum().epochs
    plain = l2l.general.ABLATIONS["no curriculum"].config(l2l.MetaTrainConfig())
    from l2l.experiments.chapter import planned_steps
    assert plain.curriculum == () and plain.horizon == full.horizon  # the same optimizee steps, at one horizon
    assert abs(planned_steps(plain) - planned_steps(full)) <= plain.problems_per_epoch * plain.horizon / 2


def test_curriculum_run_takes_its_steps_and_resumes_exactly(tmp_path):
    """One meta_train call runs the stages: 2, then 4 optimizee steps per problem, validated at 4; paused after
    each epoch and resumed, it ends with the φ and History of an uninterrupted run."""
    mixture = synthetic_mixture(TINY, batch_size=8)
    val = synthetic_mixture(TINY, param_scale=0.0, batch_size=8)
    cfg = HorizonCurriculum(((2, 1), (4, 1))).config(
        l2l.MetaTrainConfig(unroll=2, problems_per_epoch=2, n_val=1, meta_lr=1e-2, meta_loss="log_ratio"))
    steps = []
    torch.manual_seed(0)
    whole = RNNpropOptimizer()
    history = l2l.meta_train(whole, mixture, cfg, val_family=val, progress=False,
                             callback=lambda epoch, h: steps.append(h.optimizee_steps))
    assert steps == [2 * 2, 2 * 2 + 2 * 4] and history.val_steps == [0, 4, 12]
    assert all(math.isfinite(v) for v in history.train_loss + history.val_loss)
    calls = []
    for _ in range(3):  # the first call trains epoch 1 and pauses, the second epoch 2, the third loads the result
        torch.manual_seed(0)
        opt, checks = RNNpropOptimizer(), iter([False, False, True])  # checked before each of 2 problems
        again = l2l.meta_train(opt, mixture, cfg, val_family=val, progress=False, state_path=tmp_path / "s.pt",
                               stop_when=lambda: next(checks))
        calls.append(again.epochs_done)
    assert calls == [1, 2, 2]
    for a, b in zip(whole.state_dict().values(), opt.state_dict().values()):
        assert torch.equal(a, b)
    assert (again.train_loss, again.val_loss, again.optimizee_steps) == (history.train_loss, history.val_loss, 12)


def test_log_ratio_meta_loss():
    initial = torch.tensor([2.0, 4.0])
    steps = [torch.tensor([1.0, 4.0]), torch.tensor([0.5, 1.0])]
    expected = (math.log(0.5) + 0) / 2 + (math.log(0.25) + math.log(0.25)) / 2
    assert log_ratio_meta_loss(steps, initial).item() == pytest.approx(expected)
    # invariant to scaling the objective
    assert log_ratio_meta_loss([10 * s for s in steps], 10 * initial).item() == pytest.approx(expected)


def test_learned_optimizer_is_the_functional_step_with_the_scheduled_lr(tmp_path):
    """l2l.LearnedOptimizer driving an RNNpropOptimizer on two tensors under StepLR equals RNNpropOptimizer.step
    with lr = the schedule's, resumes from its state dict, and loads the optimizer from a checkpoint too."""
    torch.manual_seed(4)
    rnnprop = RNNpropOptimizer(RNNpropConfig(beta1=(0.5, 0.95)))
    a, y = torch.rand(12) + 0.1, torch.randn(12)
    w = nn.Parameter(torch.randn(3, 2))
    b = nn.Parameter(torch.randn(6))
    opt = l2l.LearnedOptimizer([w, b], rnnprop, lr=2.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    theta = {"x": torch.cat([w.detach().reshape(-1), b.detach()])}
    state = rnnprop.init_state(theta)
    for k in range(5):
        lr = opt.param_groups[0]["lr"]
        assert lr == 2.0 * 0.5 ** (k // 2)
        loss = (0.5 * a * (torch.cat([w.reshape(-1), b]) - y) ** 2).sum()
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        with torch.no_grad():
            theta, state = rnnprop.step(theta, quadratic_grads(theta, a, y), state, lr=lr)
        assert torch.allclose(torch.cat([w.detach().reshape(-1), b.detach()]), theta["x"], atol=1e-6)
    assert opt.state[w]["step"] == 5
    saved = opt.state_dict()
    l2l.save_optimizer(rnnprop, tmp_path / "general.safetensors", task="test")
    again = l2l.LearnedOptimizer([w, b], tmp_path / "general.safetensors")
    again.load_state_dict(saved)
    assert torch.equal(again.state[b]["h"], opt.state[b]["h"]) and again.param_groups[0]["lr"] == 0.5
    assert again.state[w]["step"] == 5 and torch.equal(again.state[w]["m"], opt.state[w]["m"])


@pytest.mark.parametrize("name", list(l2l.general.ABLATIONS))
def test_every_ablation_builds_and_steps(name, monkeypatch):
    monkeypatch.setenv("L2L_FUSED", "0")  # the paper's LSTM unfused: no torch.compile warm-up in a unit test
    recipe = l2l.general.ABLATIONS[name]
    optimizer, train, val = l2l.general.build(recipe, batch_size=8)
    assert val.param_scale == 0 and train.param_scale == recipe.param_scale
    assert recipe.curriculum().stages[-1][0] == recipe.final_horizon
    for t in train.tasks:
        synthetic(train.family(t.name))
    problem = train.sample(torch.Generator().manual_seed(0))
    losses, _ = unroll(optimizer, problem, start(optimizer, problem), 2, track_graph=False)
    assert torch.isfinite(torch.stack(losses)).all()


def test_the_command_line_lists_an_rnnprop_checkpoint():
    from l2l.cli import describe_architecture
    line = describe_architecture(RNNpropOptimizer(RNNpropConfig(beta1=(0.5, 0.9))).describe())
    assert line.startswith("RNNprop (2x20") and "0.5, 0.9" in line


def test_the_chunked_in_place_step_is_the_step(monkeypatch):
    """apply_ (what LearnedOptimizer runs: chunks of coordinates, everything in place) and the no-graph step of a
    large group (on copies) give the graph-keeping step's θ and state, over several steps."""
    import l2l.general.optimizer as general_optimizer

    torch.manual_seed(5)
    opt = RNNpropOptimizer(RNNpropConfig(beta1=(0.5, 0.9)))
    n = 53
    theta = {"x": torch.randn(n)}
    state = opt.init_state(theta)
    flat = theta["x"].clone()
    m, v = [torch.zeros(n), torch.zeros(n)], torch.zeros(n)
    h, c = [torch.zeros(n, 20), torch.zeros(n, 20)], [torch.zeros(n, 20), torch.zeros(n, 20)]
    monkeypatch.setattr(general_optimizer, "APPLY_CHUNK", 16)  # the no-graph step takes the chunked path too
    copy, copy_state = {"x": theta["x"].clone()}, opt.init_state(theta)
    for t in range(4):
        grad = torch.randn(n) * 10 ** torch.randint(-3, 3, (n,))
        theta, state = opt.step(theta, {"x": grad}, state, lr=0.7)  # with a graph: the plain path
        opt.apply_(flat, grad, m, v, h, c, t, lr=0.7, chunk=7)
        with torch.no_grad():
            copy, copy_state = opt.step(copy, {"x": grad}, copy_state, lr=0.7)
        for got in (flat, copy["x"]):
            torch.testing.assert_close(got, theta["x"].detach(), rtol=1e-5, atol=1e-6)
    for got, want in ((h, state["x"]["lstm"].h), (c, state["x"]["lstm"].c), (m, state["x"]["m"])):
        torch.testing.assert_close(torch.stack(got), torch.stack(want).detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(v, state["x"]["v"], rtol=1e-5, atol=1e-7)
    assert copy_state["x"]["t"] == 4
