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
    machine, apply, scaling = figures(capsys)
    assert machine["figure"] == "machine" and machine["bandwidth_GBps"] > 0
    assert apply["n_params"] == 10_000 and apply["lstm_ms"] > 0 and apply["over_floor"] > 0
    # what one unroll keeps for backward, per coordinate and step, is what the memory check assumes
    assert abs(scaling["saved_bytes_per_coord_step"] - bench.SAVED_BYTES_PER_COORD_STEP) < 0.1 * bench.SAVED_BYTES_PER_COORD_STEP


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
