"""Meta-batching: k problems through one LSTM call behave as the k problems run one by one."""
import pytest
import torch

import l2l
from l2l.optimizer import LSTMConfig, LSTMOptimizer
from l2l.problems import MetaBatch, QuadraticFamily
from l2l.unroll import start, unroll


def _problems(k):
    fam = QuadraticFamily(batch=3)
    gen = torch.Generator().manual_seed(0)
    return [fam.sample(gen) for _ in range(k)]


def test_a_meta_batch_runs_its_problems_side_by_side():
    torch.manual_seed(0)
    opt = LSTMOptimizer(config=LSTMConfig(preprocess=False, output_scale=1.0))
    problems = _problems(3)
    batch = MetaBatch(problems)
    assert batch.n_instances == 9
    together, _ = unroll(opt, batch, start(opt, batch), 4, track_graph=False)
    alone = [unroll(opt, p, start(opt, p), 4, track_graph=False)[0] for p in problems]
    for t, step in enumerate(together):
        torch.testing.assert_close(step, torch.cat([a[t] for a in alone]), rtol=1e-5, atol=1e-6)


def test_meta_batched_meta_gradient_is_the_mean_of_the_problems_meta_gradients():
    torch.manual_seed(0)
    opt = LSTMOptimizer(config=LSTMConfig(preprocess=False, output_scale=1.0))

    def meta_grad(problem):
        losses, _ = unroll(opt, problem, start(opt, problem), 3, track_graph=True)
        opt.zero_grad()
        torch.stack([l.mean() for l in losses]).sum().backward()
        return opt.nets["default"].head.weight.grad.clone()

    problems = _problems(2)
    torch.testing.assert_close(meta_grad(MetaBatch(problems)), (meta_grad(problems[0]) + meta_grad(problems[1])) / 2,
                               rtol=1e-4, atol=1e-6)


def test_meta_train_with_meta_batches_and_its_config_checks():
    opt = LSTMOptimizer(config=LSTMConfig(preprocess=False, output_scale=1.0))
    cfg = l2l.MetaTrainConfig(horizon=4, unroll=2, epochs=1, problems_per_epoch=4, n_val=1, meta_batch=2)
    history = l2l.meta_train(opt, QuadraticFamily(batch=2), cfg, progress=False)
    assert len(history.train_loss) == 1 and history.skipped_unrolls == 0
    with pytest.raises(ValueError, match="multiple of meta_batch"):
        l2l.MetaTrainConfig(problems_per_epoch=5, meta_batch=2)
    with pytest.raises(ValueError, match="meta_batch must be >= 1"):
        l2l.MetaTrainConfig(meta_batch=0)
    with pytest.raises(ValueError, match="share parameter groups"):
        MetaBatch([_problems(1)[0], type("P", (), {"n_instances": 1, "init": lambda self: {"x": torch.zeros(1)}})()]).init()
