"""MetaTrainConfig's two options beyond the paper: a horizon curriculum and the log-ratio meta-loss.

Both are off by default, and then meta-training is what it was, bit for bit. Quadratics and an unfused LSTM: seconds.
"""
import json
from dataclasses import asdict, replace

import pytest
import torch

import l2l
from l2l.general import RNNpropOptimizer
from l2l.meta import _fault_check, _unroll_meta_loss, log_ratio_meta_loss, log_ratio_weights
from l2l.optimizer import LSTMConfig, LSTMOptimizer
from l2l.problems import MetaBatch, QuadraticFamily
from l2l.training_state import load_state, save_state
from l2l.unroll import cut, start, unroll


@pytest.fixture(autouse=True)
def _fast(one_thread, monkeypatch):
    monkeypatch.setenv("L2L_FUSED", "0")  # no torch.compile warm-up in a unit test


CFG = l2l.MetaTrainConfig(horizon=4, unroll=2, epochs=3, problems_per_epoch=2, n_val=1, meta_lr=1e-2)


def train(cfg, **kw):
    torch.manual_seed(0)
    opt = LSTMOptimizer(config=LSTMConfig())
    history = l2l.meta_train(opt, QuadraticFamily(batch=4), cfg, progress=False, **kw)
    return opt, history


def same_phi(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# --- the curriculum ------------------------------------------------------------------------------------------

def test_config_checks_and_normalises_the_curriculum():
    assert (CFG.curriculum, CFG.meta_loss) == ((), "sum")  # the defaults: the paper's fixed horizon and Σ f
    cfg = replace(CFG, curriculum=[[2, 1], [4, 1]])  # lists, as JSON gives them back
    assert cfg.curriculum == ((2, 1), (4, 1))
    assert [cfg.horizon_at(e) for e in (1, 2, 3)] == [2, 4, 4]  # after the stages: cfg.horizon
    assert l2l.MetaTrainConfig(**json.loads(json.dumps(asdict(cfg)))) == cfg
    for bad, match in [(((3, 1),), "multiple of unroll"), (((2, 2), (4, 2)), "more than epochs"),
                       (((2, 0),), "positive integers"), (((2.0, 1),), "positive integers"), ((2, 1), "stages")]:
        with pytest.raises(ValueError, match=match):
            replace(CFG, curriculum=bad)
    with pytest.raises(ValueError, match="meta_loss"):
        replace(CFG, meta_loss="mean")


def test_a_curriculum_of_the_fixed_horizon_is_the_default_run_bit_for_bit():
    default, h0 = train(CFG)
    explicit, h1 = train(replace(CFG, curriculum=((4, 1), (4, 2))))
    assert same_phi(default, explicit)
    assert (h0.train_loss, h0.val_loss, h0.optimizee_steps) == (h1.train_loss, h1.val_loss, h1.optimizee_steps)


def test_a_curriculum_takes_the_steps_of_its_stages_and_validates_at_the_horizon():
    steps = []
    _, history = train(replace(CFG, curriculum=((2, 2),)), callback=lambda e, h: steps.append(h.optimizee_steps))
    assert steps == [2 * 2, 2 * 2 * 2, 2 * 2 * 2 + 2 * 4]  # 2 problems of 2, 2, then 4 steps
    assert history.val_steps == [0] + steps
    assert len(history.val_loss) == 4


def test_a_paused_curriculum_run_resumes_to_the_same_phi(tmp_path):
    cfg = replace(CFG, curriculum=((2, 1), (4, 1)), horizon=8, unroll=2)
    whole, history = train(cfg)
    for _ in range(3):  # each call trains one epoch (2 problems, each checked) and pauses
        checks = iter([False, False, True])
        opt, again = train(cfg, state_path=tmp_path / "s.pt", stop_when=lambda: next(checks))
    assert again.epochs_done == 3 and same_phi(whole, opt)
    assert (again.train_loss, again.val_loss, again.optimizee_steps) == (history.train_loss, history.val_loss,
                                                                         history.optimizee_steps)


def test_resume_reads_listed_stages_and_states_from_before_the_options(tmp_path):
    cfg = replace(CFG, curriculum=((2, 1),))
    path = tmp_path / "s.pt"
    train(cfg, state_path=path, stop_when=iter([False, False, True]).__next__)  # one epoch, then paused
    state = load_state(path)
    state["config"]["curriculum"] = [[2, 1]]  # as a config that went through JSON holds it
    save_state(path, state)
    opt, history = train(cfg, state_path=path)
    assert history.epochs_done == 3
    with pytest.raises(ValueError, match="curriculum"):
        train(replace(cfg, curriculum=((4, 1),)), state_path=path)
    # a state written before the options existed holds neither: it resumes with their defaults
    old = tmp_path / "old.pt"
    train(CFG, state_path=old, stop_when=iter([False, False, True]).__next__)
    state = load_state(old)
    del state["config"]["curriculum"], state["config"]["meta_loss"]
    save_state(old, state)
    resumed, _ = train(CFG, state_path=old)
    assert same_phi(resumed, train(CFG)[0])
    with pytest.raises(ValueError, match="meta_loss"):
        train(replace(CFG, meta_loss="log_ratio"), state_path=old)


# --- the log-ratio meta-loss -----------------------------------------------------------------------------------

def quadratics(batch, k=1):
    family, gen = QuadraticFamily(batch=batch, init_std=1.0), torch.Generator().manual_seed(0)
    return family.sample(gen) if k == 1 else MetaBatch([family.sample(gen) for _ in range(k)])


def log_ratio_grads(opt, problem, **kw):
    """φ's gradient of the log-ratio meta-loss of two unrolls of 3 steps, one backward per unroll."""
    traj = start(opt, problem)
    initial, grads = traj.loss, []
    for _ in range(2):
        losses, traj = unroll(opt, problem, traj, 3, track_graph=True, **kw)
        opt.zero_grad()
        log_ratio_meta_loss(losses, initial).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in opt.parameters()]))
        traj = cut(traj)
    return grads


@pytest.mark.parametrize("batch, k", [(1, 1), (5, 1), (2, 3)])
def test_log_ratio_meta_gradient_is_exact(batch, k):
    """With instance weights 1/f, the linearized first-order meta-gradient equals backprop through the optimizee's
    own graph (the same first-order meta-gradient, computed the slow way), for one instance, several, and a MetaBatch.
    Without them a problem of several instances gets a wrong one (its link term pools the instances)."""
    torch.manual_seed(0)
    opt = LSTMOptimizer(config=LSTMConfig(output_scale=0.1))
    problem = quadratics(batch, k)
    exact = log_ratio_grads(opt, problem, retain_optimizee_graph=True)
    fast = log_ratio_grads(opt, problem, instance_weights=log_ratio_weights)
    for a, b in zip(fast, exact):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    if batch * k > 1:
        pooled = log_ratio_grads(opt, problem)
        assert not torch.allclose(pooled[0], exact[0], rtol=1e-2, atol=1e-6)


class Scaled:
    """`problem` with its objective multiplied by `factor`."""

    def __init__(self, problem, factor):
        self.problem, self.factor, self.n_instances = problem, factor, problem.n_instances

    def init(self):
        return self.problem.init()

    def loss(self, theta):
        return self.factor * self.problem.loss(theta)


@pytest.mark.parametrize("meta_loss, ratio", [("log_ratio", 1.0), ("sum", 1000.0)])
def test_log_ratio_meta_loss_ignores_the_scale_of_the_objective(meta_loss, ratio):
    """RNNprop takes the same steps on f and 1000 f; the log-ratio meta-loss and its meta-gradient are then the same
    too, where the paper's Σ f and its meta-gradient grow 1000-fold. Through the trainer's own unroll step."""
    torch.manual_seed(1)
    opt, problem = RNNpropOptimizer(), quadratics(4)
    cfg = replace(CFG, meta_loss=meta_loss)
    results = []
    for factor in (1.0, 1000.0):
        scaled = Scaled(problem, factor)
        traj = start(opt, scaled)
        meta_loss_value, value, _, fault = _unroll_meta_loss(opt, scaled, traj, cfg, _fault_check(traj, cfg), traj.loss)
        opt.zero_grad()
        meta_loss_value.backward()
        grad = torch.cat([p.grad.reshape(-1) for p in opt.parameters()])
        results.append((meta_loss_value.detach(), grad, value))
        assert fault is None
    (l1, g1, v1), (l2, g2, v2) = results
    assert v2 == pytest.approx(1000 * v1, rel=1e-4)  # the reported training loss is Σ f either way
    assert g1.abs().sum() > 0
    torch.testing.assert_close(l2, l1 * ratio, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(g2, g1 * ratio, rtol=1e-3, atol=1e-5 * ratio)


def test_log_ratio_weights_are_the_derivative_of_the_clamped_log():
    f = torch.tensor([4.0, 0.5, 1e-20])
    torch.testing.assert_close(log_ratio_weights(f), torch.tensor([0.25, 2.0, 0.0]))


def test_planned_steps_follow_the_curriculum():
    from l2l.experiments.chapter import planned_steps
    MetaTrainConfig = l2l.MetaTrainConfig
    cfg = MetaTrainConfig(horizon=40, unroll=20, epochs=5, problems_per_epoch=2, curriculum=((20, 2),))
    assert planned_steps(cfg) == 2 * (2 * 20 + 3 * 40)  # 2 epochs at 20 steps, then 3 at the horizon
    assert planned_steps(asdict(cfg)) == planned_steps(cfg)  # as a saved state holds it
    assert planned_steps(MetaTrainConfig(horizon=40, unroll=20, epochs=5, problems_per_epoch=2)) == 5 * 2 * 40
