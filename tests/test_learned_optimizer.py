"""l2l.LearnedOptimizer (a torch.optim.Optimizer), the shipped trained optimizers (l2l.trained) and the example."""
from __future__ import annotations

import copy
import importlib.util
import io
import os
from pathlib import Path

import pytest
import torch
from torch import nn

import l2l
import l2l.trained
from l2l.experiments import mnist, quadratic
from l2l.optimizer import CoordinatewiseLSTM, LSTMConfig, LSTMOptimizer

REPO = Path(__file__).resolve().parents[1]
MNIST_LSTM = LSTMConfig(preprocess=True, output_scale=0.1)


pytestmark = pytest.mark.usefixtures("one_thread")


def regression(seed=0, n=64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, x @ torch.randn(8, 1, generator=g) + 0.1


def small_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))


def train_steps(model, opt, steps, seed=0):
    x, y = regression(seed)
    losses = []
    for _ in range(steps):
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


def test_plain_training_loop_reduces_the_loss():
    model = small_model()
    opt = l2l.LearnedOptimizer(model.parameters(), optimizer="quadratic")
    assert isinstance(opt, torch.optim.Optimizer)
    losses = train_steps(model, opt, 60)
    assert losses[-1] < 0.2 * losses[0], losses[::10]


def test_update_is_the_lstm_on_the_concatenated_gradients():
    """One call over all of a group's gradients = the coordinatewise LSTM applied to each coordinate."""
    torch.manual_seed(0)
    lstm = LSTMOptimizer(config=MNIST_LSTM)
    model = small_model()
    before = [p.detach().clone() for p in model.parameters()]
    opt = l2l.LearnedOptimizer(model.parameters(), optimizer=lstm, lr=0.5)
    train_steps(model, opt, 1)
    net = lstm.nets["default"]
    x, y = regression()
    ref = small_model()
    loss = ((ref(x) - y) ** 2).mean()
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    for p, p0, g in zip(model.parameters(), before, grads):  # each tensor on its own: the same update
        with torch.no_grad():
            update, _ = net(g.reshape(-1), net.init_state(g.numel()))
        torch.testing.assert_close(p.detach(), p0 + 0.5 * update.view_as(p0))


def test_state_dict_round_trip_resumes_exactly(tmp_path):
    """N steps, save; M more steps == a fresh optimizer loaded from the saved state doing the same M steps."""
    torch.manual_seed(1)
    lstm = LSTMOptimizer(config=MNIST_LSTM)
    model = small_model()
    model[2].double()  # a float64 group: its LSTM state must come back in φ's dtype, unrounded

    def make(m, phi):
        return l2l.LearnedOptimizer([{"params": m[0].parameters()}, {"params": m[2].parameters(), "lr": 0.7}],
                                    optimizer=phi)

    def loop(m, opt, steps, seed):
        x, y = regression(seed)
        for _ in range(steps):
            loss = ((m[2](m[1](m[0](x)).double()) - y.double()) ** 2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()

    opt = make(model, lstm)
    loop(model, opt, 5, seed=0)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    loop(model, opt, 7, seed=1)  # continue: must not alter what was saved

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # plain tensors and JSON-like data only
    other = small_model(seed=5)
    other[2].double()
    other.load_state_dict(saved["model"])
    fresh = make(other, LSTMOptimizer(config=MNIST_LSTM))  # a different φ: the state dict brings the saved one
    fresh.load_state_dict(saved["opt"])
    assert fresh.param_groups[1]["lr"] == 0.7
    loop(other, fresh, 7, seed=1)
    for a, b in zip(model.parameters(), other.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(opt.state.values(), fresh.state.values()):
        assert a.keys() == b.keys() == {"h", "c"} and all(torch.equal(a[k], b[k]) for k in a)


def test_a_deep_copy_continues_like_the_original():
    model = small_model()
    opt = l2l.LearnedOptimizer(model.parameters(), optimizer="quadratic")
    train_steps(model, opt, 3)
    twin_model, twin = copy.deepcopy((model, opt))  # one deepcopy: the copy's groups hold the copied parameters
    train_steps(model, opt, 3, seed=1)
    train_steps(twin_model, twin, 3, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin_model.parameters()))


def test_state_dict_of_another_architecture_is_a_clear_error():
    model = small_model()
    opt = l2l.LearnedOptimizer(model.parameters(), optimizer=LSTMOptimizer(config=MNIST_LSTM))
    train_steps(model, opt, 2)
    other = l2l.LearnedOptimizer(model.parameters(), optimizer="quadratic")
    with pytest.raises(ValueError, match="architecture"):
        other.load_state_dict(opt.state_dict())


def conv_fc():
    torch.manual_seed(0)
    nets = {"conv": CoordinatewiseLSTM(MNIST_LSTM), "fc": CoordinatewiseLSTM(LSTMConfig(output_scale=0.01))}
    return LSTMOptimizer(nets=nets, route={"conv": "conv", "fc": "fc"})


def test_parameter_groups_name_the_lstm_that_serves_them():
    lstm = conv_fc()
    conv, fc = nn.Conv2d(1, 2, 3), nn.Linear(8, 3)
    before = {"conv": [p.detach().clone() for p in conv.parameters()],
              "fc": [p.detach().clone() for p in fc.parameters()]}
    opt = l2l.LearnedOptimizer([{"params": conv.parameters(), "lstm": "conv"},
                                {"params": fc.parameters(), "lstm": "fc"}], optimizer=lstm)
    x = torch.randn(4, 1, 4, 4)
    fc(conv(x).reshape(4, 8)).square().mean().backward()
    grads = {"conv": [p.grad.clone() for p in conv.parameters()], "fc": [p.grad.clone() for p in fc.parameters()]}
    opt.step()
    for name, module in (("conv", conv), ("fc", fc)):
        net = lstm.nets[name]
        for p, p0, g in zip(module.parameters(), before[name], grads[name]):
            with torch.no_grad():
                update, _ = net(g.reshape(-1), net.init_state(g.numel()))
            torch.testing.assert_close(p.detach(), p0 + update.view_as(p0))


def test_unknown_or_missing_lstm_names_are_clear_errors():
    lstm = conv_fc()
    params = list(nn.Linear(2, 2).parameters())
    with pytest.raises(ValueError, match=r"'transformer'.*\['conv', 'fc'\]"):
        l2l.LearnedOptimizer([{"params": params, "lstm": "transformer"}], optimizer=lstm)
    with pytest.raises(ValueError, match="'lstm' key"):  # two LSTMs and no default: a group must choose
        l2l.LearnedOptimizer(params, optimizer=lstm)
    single = LSTMOptimizer(config=MNIST_LSTM)  # one LSTM: groups need not name it
    assert l2l.LearnedOptimizer(params, optimizer=single).param_groups[0]["lstm"] == "default"
    with pytest.raises(ValueError, match="lr"):
        l2l.LearnedOptimizer(params, optimizer=single, lr=-1.0)
    with pytest.raises(TypeError, match="LSTMOptimizer"):
        l2l.LearnedOptimizer(params, optimizer=42)


def test_groups_are_routed_by_the_rule_of_meta_training():
    """LearnedOptimizer resolves a group's 'lstm' with LSTMOptimizer.lstm_name: an LSTM's name, a group of the
    route, or none for "default". Where the two used to differ, the stricter error is kept: an unknown name is an
    error even when a "default" LSTM exists, and a lone LSTM not called "default" must be named."""
    params = list(nn.Linear(2, 2).parameters())
    shared = LSTMOptimizer(nets={"default": CoordinatewiseLSTM(MNIST_LSTM)}, route={"conv": "default", "fc": "default"})
    opt = l2l.LearnedOptimizer([{"params": params[:1], "lstm": "conv"}, {"params": params[1:]}], optimizer=shared)
    assert [g["lstm"] for g in opt.param_groups] == ["conv", "default"]  # saved as given, as before
    assert {opt._net(g["lstm"], torch.device("cpu")) for g in opt.param_groups} == {opt.lstm.nets["default"]}
    assert shared.lstm_name("conv") == shared.lstm_name(None) == "default"
    assert shared.net_for("conv") is shared.net_for("unrouted") is shared.nets["default"]
    with pytest.raises(ValueError, match="'typo'"):
        l2l.LearnedOptimizer([{"params": params, "lstm": "typo"}], optimizer=shared)
    lone = LSTMOptimizer(nets={"mine": CoordinatewiseLSTM(MNIST_LSTM)})
    with pytest.raises(ValueError, match=r"no LSTM is called 'default'.*'lstm' key"):
        l2l.LearnedOptimizer(params, optimizer=lone)
    with pytest.raises(ValueError, match="no LSTM is called 'default'"):  # as meta-training says it
        lone.init_state({"w": torch.zeros(2)})
    assert l2l.LearnedOptimizer([{"params": params, "lstm": "mine"}], optimizer=lone).param_groups[0]["lstm"] == "mine"


def test_memory_stays_flat_and_no_graph_is_kept():
    model = small_model()
    extra = nn.Parameter(torch.zeros(3))  # never gets a gradient: skipped, no state
    opt = l2l.LearnedOptimizer([*model.parameters(), extra], optimizer=LSTMOptimizer(config=MNIST_LSTM))
    x, y = regression()
    sizes = []
    for step in range(200):
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        tensors = [t for s in opt.state.values() for t in s.values()]
        assert not any(t.requires_grad or t.grad_fn is not None for t in tensors), step
        assert all(p.grad_fn is None for p in model.parameters())
        sizes.append((len(tensors), sum(t.numel() for t in tensors)))
    assert set(sizes) == {sizes[0]} and sizes[0][0] == 2 * len(list(model.parameters()))
    assert extra not in opt.state or not opt.state[extra]


def test_closure_lr_and_parameters_without_gradients():
    model = small_model()
    x, y = regression()
    opt = l2l.LearnedOptimizer(model.parameters(), optimizer="quadratic", lr=0.0)
    before = [p.detach().clone() for p in model.parameters()]

    def closure():
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        return loss

    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1.0)  # schedulers find their "lr"
    assert torch.is_tensor(opt.step(closure))
    scheduler.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # lr 0: state moves, θ does not
    assert len(opt.state) == len(before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_parameters_keep_their_state_on_the_gpu():
    cpu_model = small_model()
    gpu_model = small_model().cuda()
    lstm = LSTMOptimizer(config=MNIST_LSTM)
    cpu_opt = l2l.LearnedOptimizer(cpu_model.parameters(), optimizer=lstm)
    gpu_opt = l2l.LearnedOptimizer(gpu_model.parameters(), optimizer=lstm)
    x, y = regression()
    for m, opt, dev in ((cpu_model, cpu_opt, "cpu"), (gpu_model, gpu_opt, "cuda")):
        for _ in range(5):
            ((m(x.to(dev)) - y.to(dev)) ** 2).mean().backward()
            opt.step()
            opt.zero_grad()
    assert all(t.is_cuda for s in gpu_opt.state.values() for t in s.values())
    for a, b in zip(cpu_model.parameters(), gpu_model.parameters()):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-4, atol=1e-5)


# --- shipped optimizers -------------------------------------------------------------------------------------

def test_shipped_optimizers_are_listed_and_load_by_name():
    shipped = l2l.trained.available()
    assert "quadratic" in shipped and list(shipped) == l2l.trained.names()
    assert shipped["quadratic"]["info"]["task"] == "quadratic"
    lstm, meta = l2l.trained.load("quadratic")
    assert isinstance(lstm, LSTMOptimizer) and meta == shipped["quadratic"]
    assert lstm.describe() == quadratic.make_optimizer().describe()


@pytest.mark.parametrize("name", l2l.trained.names())
def test_every_shipped_optimizer_says_what_it_was_trained_on(name):
    meta = l2l.trained.available()[name]
    assert {"task", "profile", "epoch", "val_loss", "config"} <= set(meta["info"]), meta["info"]
    assert meta["info"]["profile"] == "paper" and meta["l2l_version"]
    lstm, _ = l2l.trained.load(name)
    chapter = {"quadratic": quadratic, "mnist": mnist}.get(meta["info"]["task"])
    if chapter is not None:  # the chapter's architecture, so the chapter can use it as is
        assert lstm.describe() == chapter.make_optimizer().describe()


def test_shipped_general_is_chapter_5s_optimizer_and_trains_a_relu_network():
    from l2l.general import RNNpropOptimizer
    lstm, meta = l2l.trained.load("general")
    assert isinstance(lstm, RNNpropOptimizer) and meta["info"]["task"] == "general"
    # the file chapter 5's committed paper run kept, byte for byte
    assert l2l.trained.path("general").read_bytes() == (REPO / "results/general/general.safetensors").read_bytes()

    def losses(name, steps=100):  # a small ReLU regression network, the same start for each optimizer
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 1))
        x, y = torch.randn(64, 10), torch.randn(64, 1)
        opt = l2l.LearnedOptimizer(model.parameters(), optimizer=name)
        out = []
        for _ in range(steps):
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            out.append(loss.item())
        return out

    general, mnist_ = losses("general"), losses("mnist")
    assert general[-1] < 0.5 * general[0]  # it trains the ReLU network ...
    assert mnist_[-1] > 0.8 * mnist_[0]  # ... where the paper's MNIST optimizer does not (its Figure 5)


def test_unknown_names_and_mismatched_architectures_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"no trained optimizer named 'cifar'.*quadratic"):
        l2l.trained.load("cifar")
    with pytest.raises(ValueError, match=r"'nope'.*shipped: .*quadratic"):
        l2l.LearnedOptimizer(nn.Linear(2, 2).parameters(), optimizer="nope")
    with pytest.raises(ValueError, match="architecture"):
        l2l.trained.load("quadratic", expect_architecture=mnist.make_optimizer().describe())
    with pytest.raises(FileNotFoundError):
        l2l.trained.load(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="folder"):
        l2l.trained.load(tmp_path)


def test_checkpoint_files_load_by_path(tmp_path):
    torch.manual_seed(3)
    lstm = LSTMOptimizer(config=MNIST_LSTM)
    path = tmp_path / "mine.safetensors"
    l2l.save_optimizer(lstm, path, task="mnist", profile="smoke")
    for spec in (path, str(path)):
        opt = l2l.LearnedOptimizer(nn.Linear(2, 2).parameters(), optimizer=spec)
        for a, b in zip(opt.lstm.parameters(), lstm.parameters()):
            assert torch.equal(a, b) and not a.requires_grad
    assert all(p.requires_grad for p in lstm.parameters())  # the caller's module is untouched


# --- the example ---------------------------------------------------------------------------------------------

DATA = Path(os.environ.get("L2L_DATA") or REPO.parent / "shared" / "data").resolve()
HAVE_MNIST = (DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


@pytest.mark.skipif(not HAVE_MNIST, reason=f"MNIST not found under L2L_DATA={DATA}")
def test_example_trains_an_nn_sequential_next_to_adam(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("L2L_DATA", str(DATA))
    path = tmp_path / "mnist.safetensors"
    torch.manual_seed(0)
    l2l.save_optimizer(LSTMOptimizer(config=MNIST_LSTM), path, task="mnist", profile="smoke")
    script = REPO / "examples" / "train_mnist_with_learned_optimizer.py"
    spec = importlib.util.spec_from_file_location("example", script)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(["--steps", "6", "--every", "3", "--optimizer", str(path), "--device", "cpu"])
    out = capsys.readouterr().out
    assert "learned" in out and "Adam" in out and "test accuracy" in out
    assert {n: len(c) for n, c in result["curves"].items()} == {"learned": 6, "Adam": 6}
    assert all(0.0 <= a <= 1.0 for a in result["test_accuracy"].values())
    result = example.main(["--model", "cnn", "--steps", "2", "--every", "1", "--batch-size", "8",
                           "--optimizer", str(path), "--device", "cpu"])  # the ReLU CNN: 1.2 M parameters
    assert "ReLU CNN" in capsys.readouterr().out and {len(c) for c in result["curves"].values()} == {2}
