"""MNIST: the data loader (l2l.data) and the MLP optimizee (l2l.problems.mlp).

Tests that need the real dataset read it from L2L_DATA (CI: ../shared/data, next to the repository) and
are skipped when it is not there; the optimizee's arithmetic is checked on synthetic images, so it runs
everywhere.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from torch import nn

import l2l
import l2l.data
from l2l.problems import MLPFamily

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("L2L_DATA") or REPO.parent / "shared" / "data").resolve()
HAVE_MNIST = all((DATA / "MNIST" / "raw" / n).is_file() for names in l2l.data._MNIST_FILES.values() for n in names)
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason=f"MNIST not found under L2L_DATA={DATA}")


@pytest.fixture(autouse=True)
def data_env(monkeypatch):
    monkeypatch.setenv("L2L_DATA", str(DATA))
    monkeypatch.delenv("L2L_DOWNLOAD", raising=False)




def synthetic_family(**kw) -> MLPFamily:
    """An MLPFamily whose 'MNIST' is 512 random images, so the arithmetic tests need no dataset."""
    fam = MLPFamily(**kw)
    g = torch.Generator().manual_seed(1)
    fam._data["train"] = (torch.randint(0, 256, (512, 28, 28), generator=g, dtype=torch.uint8),
                          torch.randint(0, 10, (512,), generator=g))
    return fam


def reference_net(problem, theta) -> nn.Sequential:
    act = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}[problem.family.activation]
    layers = []
    for W, b in problem.unflatten(theta):
        lin = nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            lin.weight.copy_(W)
            lin.bias.copy_(b)
        layers += [lin, act()]
    return nn.Sequential(nn.Flatten(), *layers[:-1])


@pytest.mark.parametrize("activation,hidden", [("sigmoid", (20,)), ("relu", (20,)), ("sigmoid", (16, 8)),
                                               ("relu", (16, 8)), ("tanh", (7,))])
def test_loss_and_grad_match_nn_sequential(activation, hidden):
    fam = synthetic_family(hidden=hidden, activation=activation)
    problem = fam.sample(torch.Generator().manual_seed(0))
    theta = {"mlp": problem.init()["mlp"].requires_grad_(True)}
    state = problem.generator.get_state()
    loss = problem.loss(theta)
    (grad,) = torch.autograd.grad(loss.sum(), [theta["mlp"]])
    problem.generator.set_state(state)
    images, labels = problem.sample_batch()  # the same minibatch loss() drew

    net = reference_net(problem, theta)
    ref = nn.functional.cross_entropy(net(images.float() / 255), labels)
    ref.backward()
    ref_grad = torch.cat([g for lin in net if isinstance(lin, nn.Linear)
                          for g in (lin.weight.grad.reshape(-1), lin.bias.grad)])
    assert loss.shape == (1,) and problem.n_instances == 1
    torch.testing.assert_close(loss[0], ref.detach())
    torch.testing.assert_close(grad, ref_grad)


def test_family_layout_and_determinism():
    fam = synthetic_family()
    assert fam.n_params == 784 * 20 + 20 + 20 * 10 + 10 == 15910
    assert MLPFamily(hidden=(40,)).n_params == 784 * 40 + 40 + 40 * 10 + 10
    a, b = fam.sample(torch.Generator().manual_seed(3)), fam.sample(torch.Generator().manual_seed(3))
    assert torch.equal(a.init()["mlp"], b.init()["mlp"]) and a.init()["mlp"].shape == (15910,)
    assert torch.equal(a.loss(a.init()), b.loss(b.init()))  # same seed, same minibatches
    theta = a.init()["mlp"]
    (W1, b1), (W2, b2) = a.unflatten(theta)
    assert W1.shape == (20, 784) and b1.shape == (20,) and W2.shape == (10, 20) and b2.shape == (10,)
    assert W1.data_ptr() == theta.data_ptr() and b2.data_ptr() == theta[-10:].data_ptr()  # views, not copies
    bound = 1 / math.sqrt(784)
    assert W1.abs().max() <= bound and W1.abs().max() > 0.9 * bound  # nn.Linear's U(±1/√fan_in)
    with pytest.raises(ValueError, match="activation"):
        MLPFamily(activation="softplus")
    with pytest.raises(ValueError, match="split"):
        MLPFamily(split="validation")


def test_missing_data_names_the_root(tmp_path, monkeypatch):
    monkeypatch.setenv("L2L_DATA", str(tmp_path))
    monkeypatch.setenv("L2L_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(l2l.data, "_LOADED", {})
    with pytest.raises(FileNotFoundError) as err:
        l2l.data.load_mnist("train")
    assert str(tmp_path.resolve()) in str(err.value) and "L2L_DATA" in str(err.value)
    with pytest.raises(ValueError, match="split"):
        l2l.data.load_mnist("validation")


def test_corrupt_data_names_the_root(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for names in l2l.data._MNIST_FILES.values():
        for n in names:
            (raw / n).write_bytes(b"not an idx file")
    monkeypatch.setenv("L2L_DATA", str(tmp_path))
    monkeypatch.setenv("L2L_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(l2l.data, "_LOADED", {})
    with pytest.raises(RuntimeError, match="corrupt") as err:
        l2l.data.load_mnist("test")
    assert str(tmp_path.resolve()) in str(err.value)


@needs_mnist
def test_load_mnist_shapes_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("L2L_CACHE", str(tmp_path))
    monkeypatch.setattr(l2l.data, "_LOADED", {})
    for split, n in (("train", 60_000), ("test", 10_000)):
        images, labels = l2l.data.load_mnist(split, "cpu")
        assert images.shape == (n, 28, 28) and images.dtype == torch.uint8 and images.device.type == "cpu"
        assert labels.shape == (n,) and labels.dtype == torch.int64 and labels.device.type == "cpu"
        assert int(labels.min()) == 0 and int(labels.max()) == 9 and int(images.max()) == 255
        assert l2l.data.load_mnist(split, "cpu")[0] is images  # in-memory cache: loaded once per process
    assert len(list(tmp_path.glob("mnist-*.safetensors"))) == 2
    monkeypatch.setattr(l2l.data, "_LOADED", {})
    assert torch.equal(l2l.data.load_mnist("test")[1], labels)  # read back from the safetensors cache


@needs_mnist
def test_fresh_mlp_is_at_chance():
    problem = MLPFamily().sample(torch.Generator().manual_seed(0))
    theta = problem.init()
    assert abs(problem.loss(theta).item() - math.log(10)) < 0.3
    assert 0.02 < problem.accuracy(theta) < 0.25


@needs_mnist
def test_short_meta_training_beats_untrained_lstm(one_thread):
    """A few meta-steps on small MNIST MLPs must beat the untrained LSTM — and predicting uniformly.

    The untrained LSTM pushes the loss *above* ln 10 (its summed loss over 20 steps is ≈ 47–50); a collapsed
    optimizer would sit at 20·ln 10 ≈ 46.05, so beating both means it actually learned to descend.
    """
    family = MLPFamily(hidden=(5,))
    torch.manual_seed(0)
    opt = l2l.LSTMOptimizer(config=l2l.LSTMConfig(preprocess=True, output_scale=0.1))

    def held_out():
        return l2l.evaluate(opt, family, steps=20, n_problems=4, seed=100, progress=False)[:, 1:].sum(1).mean().item()

    before = held_out()
    cfg = l2l.MetaTrainConfig(horizon=20, unroll=10, epochs=4, problems_per_epoch=4, n_val=2, meta_lr=1e-2, seed=0)
    history = l2l.meta_train(opt, family, cfg, progress=False)
    after = held_out()
    assert history.skipped_unrolls == 0
    assert after < 0.9 * before, (before, after, history.val_loss)
    assert after < 20 * math.log(10) - 2, (before, after, history.val_loss)


def test_figure_6_cells_compare_every_baseline_and_judge_every_seed(one_thread):
    from l2l.experiments import common, mnist
    s = mnist.settings("smoke")
    s = type(s)(**{**s.__dict__, "widths": (10,), "depths": (1,), "n_test": 3})
    lstm, other = mnist.make_optimizer(), mnist.make_optimizer()
    cells = mnist.grid(lstm, s, common.seeds(0), progress=False, others={"7": other})
    (cell,) = cells
    assert set(cell["finals"]) == {"LSTM", "SGD", "RMSprop", "Adam", "NAG"}
    assert cell["baseline"] == min(v for n, v in cell["finals"].items() if n != "LSTM")
    assert set(cell["paired_seeds"]) == {"7"} and cell["paired_seeds"]["7"]["baseline"] == cell["best_baseline"]
    claim = mnist.grid_claim(cells)
    assert set(claim["other_seeds"]) == {"7"} and claim["of"] == 1
    fig = l2l.plots.plot_grid(cells, trained_width=20)
    assert {line.get_label() for line in fig.axes[0].lines} >= {"LSTM", "SGD", "RMSprop", "Adam", "NAG"}
