"""Meta-training works: a short run beats the untrained LSTM and tuned SGD on held-out quadratics."""
import math

import pytest
import torch

import l2l
from l2l.checkpoint import load_optimizer, read_metadata, save_optimizer
from l2l.experiments import quadratic
from l2l.problems import QuadraticFamily


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    family = QuadraticFamily(batch=64)
    untrained = quadratic.make_optimizer()
    lstm = quadratic.make_optimizer()
    lstm.load_state_dict(untrained.state_dict())
    cfg = l2l.MetaTrainConfig(horizon=20, unroll=20, epochs=5, problems_per_epoch=6, n_val=1, seed=0, meta_lr=1e-2)
    ckpt = tmp_path_factory.mktemp("ckpt") / "lstm.safetensors"
    history = l2l.meta_train(lstm, family, cfg, checkpoint=ckpt, info={"task": "test"}, progress=False)
    return family, untrained, lstm, history, ckpt, cfg


def test_short_meta_training_beats_untrained_lstm_and_tuned_sgd(trained):
    family, untrained, lstm, history, _, cfg = trained
    sgd = l2l.tune_baselines(family, steps=cfg.horizon, n_problems=1, seed=11, names=("SGD",), progress=False).make("SGD")
    test = {name: l2l.evaluate(opt, family, steps=cfg.horizon, n_problems=2, seed=12345, progress=False)
            for name, opt in {"trained": lstm, "untrained": untrained, "SGD": sgd}.items()}
    final = {k: v[:, -1].mean().item() for k, v in test.items()}
    assert final["trained"] < final["untrained"]
    assert final["trained"] < final["SGD"]
    assert history.best_val < history.val_loss[0]


def test_best_phi_is_kept_and_checkpoint_round_trips(trained):
    family, _, lstm, history, ckpt, cfg = trained
    assert history.best_val == min(history.val_loss)
    loaded, meta = load_optimizer(ckpt)
    for k, v in lstm.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert meta["info"]["epoch"] == history.best_epoch
    assert meta["info"]["config"]["horizon"] == cfg.horizon
    assert meta["architecture"] == lstm.describe()


def test_checkpoint_errors_are_clear(tmp_path, trained):
    lstm = trained[2]
    path = tmp_path / "x.safetensors"
    save_optimizer(lstm, path)
    data = path.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        load_optimizer(tmp_path / "truncated.safetensors")
    with pytest.raises(ValueError, match="not the requested"):
        other = l2l.LSTMOptimizer(config=l2l.LSTMConfig(hidden=8)).describe()
        load_optimizer(path, expect_architecture=other)
    with pytest.raises(FileNotFoundError, match="no optimizer checkpoint"):
        read_metadata(tmp_path / "missing.safetensors")
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave nothing half-written


def test_meta_training_is_deterministic_on_cpu():
    def run():
        torch.manual_seed(5)
        opt = quadratic.make_optimizer()
        cfg = l2l.MetaTrainConfig(horizon=10, unroll=5, epochs=1, problems_per_epoch=2, n_val=1, seed=5)
        h = l2l.meta_train(opt, QuadraticFamily(batch=8), cfg, progress=False)
        return opt.state_dict(), h.val_loss

    (a, va), (b, vb) = run(), run()
    assert va == vb
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_profile_is_a_clear_error(monkeypatch):
    with pytest.raises(ValueError, match="unknown profile 'huge'.*paper, quick, smoke"):
        quadratic.settings("huge")
    monkeypatch.setenv("L2L_PROFILE", "tiny")
    with pytest.raises(ValueError, match="L2L_PROFILE"):
        quadratic.settings(None)
    monkeypatch.setenv("L2L_PROFILE", "quick")
    assert quadratic.settings(None).profile == "quick"


def test_unavailable_device_is_a_clear_error():
    from l2l.device import pick_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="no usable CUDA GPU"):
        pick_device("cuda")
    assert pick_device("auto").type == "cpu"


def test_summaries_and_bands():
    curves = torch.tensor([[4.0, 2.0, 1.0], [6.0, 4.0, 3.0]])
    mean, lo, hi = l2l.mean_and_band(curves)
    assert mean.tolist() == [5.0, 3.0, 2.0]
    assert (lo < mean).all() and (hi > mean).all()
    s = l2l.summarize({"x": curves})["x"]
    assert s["final"] == 2.0 and s["summed"] == 5.0
    assert math.isclose(s["final_ci"], 12.706 * math.sqrt(2) / math.sqrt(2))  # Student's t, 1 degree of freedom
