"""Data-parallel meta-training (issue 18): two gloo processes on localhost, smoke-sized quadratics.

Each test starts W = 2 processes (spawn), which join a process group through l2l.distributed.init exactly as under
torchrun (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), run a module-level function of this file and save what the
parent checks under tmp_path. Everything has a timeout; the LSTM runs unfused (no compile in the children).
"""
from __future__ import annotations

import multiprocessing
import os
import socket
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import l2l
from l2l import distributed
from l2l.experiments import quadratic
from l2l.meta import train_on_problem
from l2l.problems import MetaBatch, QuadraticFamily
from l2l.training_state import load_state

CFG = l2l.MetaTrainConfig(horizon=4, unroll=2, epochs=2, problems_per_epoch=4, n_val=3, meta_lr=1e-2, seed=5)
FAMILY = QuadraticFamily(batch=4)
STEPS = 3  # meta-steps of the equivalence check


def fresh_optimizer():
    torch.manual_seed(0)
    return quadratic.make_optimizer()


def phi(opt) -> dict:
    return {k: v.detach().clone() for k, v in opt.state_dict().items()}


def comparable(history) -> dict:
    return {k: v for k, v in asdict(history).items() if k not in ("wall_time_s", "stages")}


# ---- the processes -----------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(target: str, rank: int, world: int, port: int, tmp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), L2L_FUSED="0", L2L_DIST_TIMEOUT="30")
    torch.set_num_threads(1)
    group = distributed.init("cpu")
    try:
        globals()[target](group, Path(tmp))
    finally:
        distributed.shutdown()


def launch(target: str, tmp_path: Path, world: int = 2, timeout: float = 120) -> list[int]:
    """Run `target(group, tmp_path)` on `world` ranks; their exit codes (a rank still running at the timeout is
    killed and the test fails)."""
    ctx = multiprocessing.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=_entry, args=(target, r, world, port, str(tmp_path))) for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(deadline - time.monotonic(), 0.1))
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    for r in hung:
        procs[r].kill()
        procs[r].join()
    assert not hung, f"rank(s) {hung} still running after {timeout} s: a hang"
    return [p.exitcode for p in procs]


# ---- what the ranks run ------------------------------------------------------------------------------------------

class DyingFamily:
    """QuadraticFamily whose problems on rank `rank` end the process (os._exit(3)) at the `at`-th loss call."""

    def __init__(self, rank: int, at: int):
        self.base, self.rank, self.at, self.calls = FAMILY, rank, at, 0
        self.device = self.base.device

    def sample(self, generator):
        return DyingProblem(self, self.base.sample(generator))


class DyingProblem:
    def __init__(self, family, base):
        self.family, self.base, self.n_instances = family, base, base.n_instances

    def init(self):
        return self.base.init()

    def loss(self, theta):
        f = self.family
        f.calls += 1
        if f.calls >= f.at and int(os.environ["RANK"]) == f.rank:
            os._exit(3)
        return self.base.loss(theta)


class NaNOnRank:
    """QuadraticFamily whose `n`-th sampled problem on rank `rank` has a NaN loss after `at` loss calls."""

    def __init__(self, rank: int, n: int, at: int):
        self.base, self.rank, self.n, self.at, self.count = FAMILY, rank, n, at, 0
        self.device = self.base.device

    def sample(self, generator):
        problem, n = self.base.sample(generator), self.count
        self.count += 1
        if n == self.n and int(os.environ["RANK"]) == self.rank:
            return NaNProblem(problem, self.at)
        return problem


class NaNProblem:
    def __init__(self, base, at):
        self.base, self.at, self.calls, self.n_instances = base, at, 0, base.n_instances

    def init(self):
        return self.base.init()

    def loss(self, theta):
        self.calls += 1
        loss = self.base.loss(theta)
        return loss * float("nan") if self.calls > self.at else loss


def rank_train(group, tmp: Path) -> None:
    out = {"rank": group.rank, "world": group.world}
    # 1. a few meta-steps of train_on_problem, each rank on its own stream
    opt = fresh_optimizer()
    adam = torch.optim.Adam(opt.parameters(), lr=CFG.meta_lr)
    gen = distributed.train_generator(CFG.seed, group.rank)
    for _ in range(STEPS):
        losses, fault = train_on_problem(opt, FAMILY.sample(gen), adam, CFG, group)
        assert fault is None
    out["steps_phi"] = phi(opt)
    # 2. a whole run, and the same run paused after its first epoch and resumed
    own = lambda name: tmp / f"{name}-rank{group.rank}.pt"  # noqa: E731 - rank 1 must write none of them
    opt = fresh_optimizer()
    history = l2l.meta_train(opt, FAMILY, CFG, progress=False, state_path=own("whole"),
                             checkpoint=tmp / f"whole-rank{group.rank}.safetensors")
    out["whole"] = (phi(opt), comparable(history), history.stages)
    calls = []
    stop = lambda: calls.append(1) or len(calls) >= 2  # noqa: E731 - pause before epoch 2
    first = l2l.meta_train(fresh_optimizer(), FAMILY, CFG, progress=False, state_path=own("paused"), stop_when=stop)
    assert first.epochs_done == 1
    opt = fresh_optimizer()
    history = l2l.meta_train(opt, FAMILY, CFG, progress=False, state_path=own("paused"))
    out["resumed"] = (phi(opt), comparable(history))
    # 3. a NaN on rank 1's second problem: both ranks skip that meta-step together
    opt = fresh_optimizer()
    history = l2l.meta_train(opt, NaNOnRank(rank=1, n=1, at=2), CFG, val_family=FAMILY, progress=False)
    out["fault"] = (phi(opt), comparable(history))
    # 4. a single-process state cannot be resumed by two processes
    try:
        l2l.meta_train(fresh_optimizer(), FAMILY, CFG, progress=False, state_path=tmp / "single.pt")
        out["mismatch"] = None
    except ValueError as e:
        out["mismatch"] = str(e)
    torch.save(out, tmp / f"out-rank{group.rank}.pt")


def rank_die(group, tmp: Path) -> None:
    t0 = time.monotonic()
    try:
        l2l.meta_train(fresh_optimizer(), DyingFamily(rank=1, at=7), CFG, val_family=FAMILY, progress=False,
                       state_path=tmp / f"die-rank{group.rank}.pt")
        message = None
    except RuntimeError as e:
        message = str(e)
    torch.save({"message": message, "seconds": time.monotonic() - t0}, tmp / f"die-rank{group.rank}.out")


# ---- the tests ---------------------------------------------------------------------------------------------------

def test_rank_streams():
    """Rank 0 draws the single-process stream, so a one-process group trains exactly as before; ranks differ."""
    assert torch.equal(distributed.train_generator(7, 0).get_state(), torch.Generator().manual_seed(7).get_state())
    seeds = {distributed.rank_seed(7, r) for r in range(64)}
    assert len(seeds) == 64 and all(0 <= s < 2**62 for s in seeds)
    assert distributed.rank_seed(7, 1) != distributed.rank_seed(8, 1)
    assert distributed.current() is None and not distributed.may_write(None, None)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    single_cfg = CFG  # a finished single-process run whose state two processes must refuse
    l2l.meta_train(fresh_optimizer(), FAMILY, single_cfg, progress=False, state_path=tmp / "single.pt")
    codes = launch("rank_train", tmp)
    assert codes == [0, 0], codes
    return tmp, [torch.load(tmp / f"out-rank{r}.pt", weights_only=False) for r in range(2)]


def test_two_ranks_equal_one_meta_batch_of_their_problems(two_ranks, monkeypatch):
    """W ranks' meta-steps == single-process meta-steps on a MetaBatch of the same W problems (float tolerance)."""
    _, outs = two_ranks
    monkeypatch.setenv("L2L_FUSED", "0")
    opt = fresh_optimizer()
    adam = torch.optim.Adam(opt.parameters(), lr=CFG.meta_lr)
    gens = [distributed.train_generator(CFG.seed, r) for r in range(2)]
    for _ in range(STEPS):
        assert train_on_problem(opt, MetaBatch([FAMILY.sample(g) for g in gens]), adam, CFG)[1] is None
    ref, initial = phi(opt), phi(fresh_optimizer())
    for out in outs:
        got = out["steps_phi"]
        for k in ref:
            assert torch.allclose(got[k], ref[k], rtol=1e-5, atol=1e-6), k
    assert any(not torch.equal(ref[k], initial[k]) for k in ref)  # φ moved
    assert all(torch.equal(outs[0]["steps_phi"][k], outs[1]["steps_phi"][k]) for k in ref)  # identical on ranks


def test_phi_and_history_identical_on_ranks_and_rank0_alone_writes(two_ranks):
    tmp, outs = two_ranks
    (phi0, hist0, stages0), (phi1, hist1, _) = outs[0]["whole"], outs[1]["whole"]
    assert all(torch.equal(phi0[k], phi1[k]) for k in phi0) and hist0 == hist1
    assert hist0["epochs_done"] == CFG.epochs and len(hist0["train_loss"]) == CFG.epochs
    # an epoch is the same optimizee work at any world size: problems_per_epoch counts both ranks' problems
    assert hist0["optimizee_steps"] == CFG.epochs * CFG.problems_per_epoch * CFG.horizon
    assert stages0[-1]["world_size"] == 2
    state = load_state(tmp / "whole-rank0.pt")
    assert state["world_size"] == 2 and len(state["rank_generators"]) == 2
    assert not (tmp / "whole-rank1.pt").exists() and not (tmp / "whole-rank1.safetensors").exists()
    assert (tmp / "whole-rank0.safetensors").exists()


def test_resume_with_same_world_size_is_exact(two_ranks):
    _, outs = two_ranks
    for out in outs:
        (phi_w, hist_w, _), (phi_r, hist_r) = out["whole"], out["resumed"]
        assert all(torch.equal(phi_w[k], phi_r[k]) for k in phi_w)
        assert hist_w == hist_r


def test_other_world_size_is_a_one_line_error(two_ranks):
    tmp, outs = two_ranks
    for out in outs:
        message = out["mismatch"]
        assert message is not None and "\n" not in message
        assert "1 process(es)" in message and "world size 2" in message
    with pytest.raises(ValueError, match="2 process.*world size 1"):  # and the other way round
        l2l.meta_train(fresh_optimizer(), FAMILY, CFG, progress=False, state_path=tmp / "whole-rank0.pt")


def test_a_fault_on_one_rank_is_skipped_by_all(two_ranks):
    _, outs = two_ranks
    (phi0, hist0), (phi1, hist1) = outs[0]["fault"], outs[1]["fault"]
    assert hist0["skipped_unrolls"] == hist1["skipped_unrolls"] == 1
    assert all(torch.equal(phi0[k], phi1[k]) for k in phi0) and hist0 == hist1


def test_a_dead_rank_stops_the_others_with_one_line(tmp_path):
    t0 = time.monotonic()
    codes = launch("rank_die", tmp_path, timeout=90)
    assert codes == [0, 3], codes
    out = torch.load(tmp_path / "die-rank0.out", weights_only=False)
    message = out["message"]
    assert message is not None and "\n" not in message, message
    assert "rank 1 stopped responding" in message, message
    assert out["seconds"] < 60 and time.monotonic() - t0 < 90
    state = load_state(tmp_path / "die-rank0.pt")  # the last good state, still readable
    assert state["world_size"] == 2 and state["epoch"] == 1
