"""The functional baselines match torch.optim step for step; tuning picks the best rate."""
import pytest
import torch

import l2l
from l2l.problems import QuadraticFamily


def _model_and_data():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2))
    x, y = torch.randn(32, 5), torch.randn(32, 2)
    return model, x, y


@pytest.mark.parametrize("name, ours, theirs", [
    ("SGD", lambda: l2l.SGD(0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    ("NAG", lambda: l2l.NAG(0.05), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    ("RMSprop", lambda: l2l.RMSprop(0.01), lambda p: torch.optim.RMSprop(p, lr=0.01)),
    ("Adam", lambda: l2l.Adam(0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
])
def test_baseline_matches_torch_optim(name, ours, theirs):
    model, x, y = _model_and_data()
    names = [n for n, _ in model.named_parameters()]
    theta = {n: p.detach().clone() for n, p in model.named_parameters()}  # one group per tensor here
    reference = theirs(model.parameters())
    opt = ours()
    state = opt.init_state(theta)
    for _ in range(6):
        reference.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        reference.step()
        theta, state = opt.step(theta, grads, state)
        for n, p in zip(names, model.parameters()):
            torch.testing.assert_close(theta[n], p.detach(), rtol=1e-6, atol=1e-7)
            theta[n] = p.detach().clone()  # compare each step from the same point, so errors cannot compound


def test_non_positive_learning_rate_is_a_clear_error():
    with pytest.raises(ValueError, match="learning rate"):
        l2l.Adam(0.0)
    with pytest.raises(ValueError, match="learning rate"):
        l2l.SGD(float("nan"))


def test_tuning_picks_the_lowest_final_loss_and_scores_divergence_as_inf():
    family = QuadraticFamily(batch=16)
    tuning = l2l.tune_baselines(family, steps=30, n_problems=1, seed=3, grid=(1e-4, 1e-2, 10.0), names=("SGD",),
                                progress=False)
    scores = tuning.scores["SGD"]
    assert scores[10.0] == float("inf")  # SGD at rate 10 explodes on these quadratics
    assert tuning.rates["SGD"] == min(scores, key=scores.get) == 1e-2


def test_tuning_extends_a_coarse_grid_until_the_choice_is_interior():
    family = QuadraticFamily(batch=16)
    # the grid ends far below the best rate: each extension tries one grid step (x10) further up
    tuning = l2l.tune_baselines(family, steps=30, n_problems=1, seed=3, grid={"SGD": (1e-6, 1e-5)},
                                names=("SGD",), progress=False, extend=6)
    tried = sorted(tuning.scores["SGD"])
    assert tried[:2] == [1e-6, 1e-5] and len(tried) > 2
    assert all(b / a == pytest.approx(10.0) for a, b in zip(tried, tried[1:]))
    assert tuning.at_edge() == {} and tuning.rates["SGD"] not in (tried[0], tried[-1])
    # without extension the same grid leaves the choice at its edge, flagged
    plain = l2l.tune_baselines(family, steps=30, n_problems=1, seed=3, grid={"SGD": (1e-6, 1e-5)},
                               names=("SGD",), progress=False)
    assert plain.at_edge() == {"SGD": 1e-5}
