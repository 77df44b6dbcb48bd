"""The benchmark script runs and prints well-formed figures (small sizes; its timings are not checked)."""
import importlib.util
import json
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def figures(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_apply_and_scaling_figures(capsys, one_thread):
    bench = load_bench()
    cpu = torch.device("cpu")
    bench.bench_apply(cpu, [10_000])
    bench.bench_scaling(cpu, [1_000])
    machine, *applied, scaling = figures(capsys)
    assert machine["figure"] == "machine" and machine["bandwidth_GBps"] > 0
    assert [a["optimizer"] for a in applied] == ["paper", "general"]  # the paper's LSTM and chapter 5's
    for apply in applied:
        assert apply["n_params"] == 10_000 and apply["lstm_ms"] > 0 and apply["over_floor"] > 0
    assert bench.apply_floor_flops("general") > bench.apply_floor_flops("paper") > 9_000  # about 10⁴ each
    # what one unroll keeps for backward, per coordinate and step, is what the memory check assumes
    assert abs(scaling["saved_bytes_per_coord_step"] - bench.SAVED_BYTES_PER_COORD_STEP) < 0.1 * bench.SAVED_BYTES_PER_COORD_STEP


def test_the_apply_split_figure(capsys, one_thread):
    """The split's GEMMs are the step's own, chunk by chunk: the FLOPs the floor counts for the LSTM layers."""
    bench = load_bench()
    bench.bench_apply_split(torch.device("cpu"), 70_000)  # three chunks, the last one partial
    (split,) = figures(capsys)
    assert split["figure"] == "apply_split" and split["n_params"] == 70_000 and split["chunk"] == 32_768
    assert split["step_ms"] > 0 and split["lstm_gemms_ms"] > 0 and split["gate_kernels_ms"] > 0
    per_coord = 2 * 2 * 80 * 40  # 2 layers, 4h = 80 gates from 2h = 40 inputs, 2 FLOPs per multiply-add
    assert split["lstm_gemm_flops"] == 70_000 * per_coord
    assert per_coord < bench.apply_floor_flops("general") < 1.05 * per_coord  # the floor is mostly these GEMMs


def test_reference_implementations_train(one_thread):
    bench = load_bench()
    cpu = torch.device("cpu")
    images, labels = torch.randint(0, 256, (256, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (256,))
    ref = bench.CellLSTM()
    before = [p.clone() for p in ref.parameters()]
    opt = torch.optim.Adam(ref.parameters(), 1e-3)
    bench.r2_run(ref, opt, images, labels, cpu, steps=bench.UNROLL)
    bench.r1_run(ref, opt, images, labels, cpu, steps=bench.UNROLL)
    assert all(not torch.equal(a, b) for a, b in zip(before, ref.parameters()))


def test_references_start_from_the_same_phi_as_l2l(one_thread):
    """R1 and R2 get l2l's φ₀, so all implementations start from the same optimizer."""
    from l2l.experiments import mnist

    bench = load_bench()
    torch.manual_seed(0)
    ours = mnist.make_optimizer()
    ref = bench.reference_like(ours)
    g = torch.randn(50) * torch.logspace(-6, 0, 50)  # both preprocessing branches
    net = ours.nets["default"]
    with torch.no_grad():
        u_ours, _ = net(g, net.init_state(50))
        u_ref, _ = ref(g, [torch.zeros(50, 20) for _ in range(4)])
    torch.testing.assert_close(u_ours, u_ref, rtol=1e-5, atol=1e-6)


def test_each_timed_run_repeats_the_same_work(one_thread):
    """from_start resets φ, meta-Adam and the random numbers, so every repeat of a timing is the same run."""
    bench = load_bench()
    cpu = torch.device("cpu")
    images, labels = torch.randint(0, 256, (256, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (256,))
    ref, after = bench.CellLSTM(), []

    def run(lstm, meta_opt):
        bench.r2_run(lstm, meta_opt, images, labels, cpu, steps=bench.UNROLL)
        after.append([p.detach().clone() for p in lstm.parameters()])

    start = [p.detach().clone() for p in ref.parameters()]
    timed_run = bench.from_start(ref, run)
    timed_run()
    timed_run()
    assert all(torch.equal(a, b) for a, b in zip(*after))
    assert not all(torch.equal(a, b) for a, b in zip(start, after[0]))


def test_the_cifar_cnn_pools_before_relu_with_the_same_loss_and_gradients(one_thread):
    """The reordering that made the CIFAR optimizee faster (bench --only cifar) changes no number."""
    import torch.nn.functional as F

    from l2l.experiments import cifar
    bench = load_bench()
    family = cifar.family(batch_size=32)
    problem = family.sample(torch.Generator().manual_seed(3))
    theta = {g: t.requires_grad_() for g, t in problem.init().items()}
    images, labels = family.data("train")
    images, labels = images[:32], labels[:32]
    new = F.cross_entropy(problem.forward(theta, images), labels)
    old = F.cross_entropy(bench.relu_then_pool(problem, theta, images), labels)
    assert torch.equal(new, old)
    for a, b in zip(torch.autograd.grad(new, list(theta.values())), torch.autograd.grad(old, list(theta.values()))):
        assert torch.equal(a, b)


def test_the_cnn_cost_figure(capsys, one_thread):
    bench = load_bench()
    bench.bench_apply_cnn(torch.device("cpu"), batch=4)
    (cnn,) = figures(capsys)
    assert cnn["figure"] == "apply_cnn" and 1_150_000 < cnn["n_params"] < 1_250_000  # the 1.2 M
    assert cnn["general_ms"] > 0 and cnn["forward_backward_ms"] > 0
