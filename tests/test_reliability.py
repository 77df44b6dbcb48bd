"""Reliability (issue 7): faulty runs are skipped without touching φ or Adam, a killed or interrupted run
resumes bit for bit, and bad input is a one-line error that says what to fix."""
from __future__ import annotations

import copy
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import l2l
from l2l.checkpoint import read_metadata
from l2l.experiments import mnist, quadratic
from l2l.meta import train_on_problem
from l2l.problems import QuadraticFamily
from l2l.training_state import load_state

ROOT = Path(__file__).resolve().parents[1]
CFG = l2l.MetaTrainConfig(horizon=10, unroll=5, epochs=4, problems_per_epoch=3, n_val=1, meta_lr=1e-2, seed=3)


class FaultyProblem:
    """Wraps a problem; from its `at`-th loss call on (0 = f(θ_0)) the loss is NaN, explodes, or Ctrl-C is pressed."""

    def __init__(self, base, kind: str, at: int):
        self.base, self.kind, self.at, self.calls = base, kind, at, 0
        self.n_instances = base.n_instances

    def init(self):
        return self.base.init()

    def loss(self, theta):
        call, self.calls = self.calls, self.calls + 1
        loss = self.base.loss(theta)
        if call < self.at:
            return loss
        if self.kind == "interrupt":
            raise KeyboardInterrupt
        return loss * (float("nan") if self.kind == "nan" else 1e9)


class FaultyFamily:
    """QuadraticFamily whose n-th sampled problem (counting from 0) is faulty: faults = {n: (kind, at)}."""

    def __init__(self, faults: dict):
        self.base, self.faults, self.count = QuadraticFamily(batch=8), dict(faults), 0
        self.device = self.base.device

    def sample(self, generator):
        problem, n = self.base.sample(generator), self.count
        self.count += 1
        return FaultyProblem(problem, *self.faults[n]) if n in self.faults else problem


def fresh_optimizer():
    torch.manual_seed(0)
    return quadratic.make_optimizer()


def outcome(opt, history):
    """Everything that must agree bit for bit: φ, the History (less wall time and the stages it ran in) and test curves."""
    hist = {k: v for k, v in asdict(history).items() if k not in ("wall_time_s", "stages")}
    curves = l2l.evaluate(opt, QuadraticFamily(batch=8), steps=CFG.horizon, n_problems=2, seed=99, progress=False)
    return {k: v.clone() for k, v in opt.state_dict().items()}, hist, curves


def assert_same(a, b):
    (phi_a, hist_a, curves_a), (phi_b, hist_b, curves_b) = a, b
    assert phi_a.keys() == phi_b.keys() and all(torch.equal(phi_a[k], phi_b[k]) for k in phi_a)
    assert hist_a == hist_b
    assert torch.equal(curves_a, curves_b)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every resumed run must reproduce."""
    opt = fresh_optimizer()
    ckpt = tmp_path_factory.mktemp("ref") / "lstm.safetensors"
    history = l2l.meta_train(opt, QuadraticFamily(batch=8), CFG, checkpoint=ckpt, progress=False)
    return outcome(opt, history), ckpt


def phi_and_adam(opt, adam):
    return copy.deepcopy(opt.state_dict()), copy.deepcopy(adam.state_dict())


def assert_untouched(before, after):
    (phi0, adam0), (phi1, adam1) = before, after
    assert all(torch.equal(phi0[k], phi1[k]) for k in phi0)
    assert adam0["state"].keys() == adam1["state"].keys()
    for i, s in adam0["state"].items():
        assert all(torch.equal(v, adam1["state"][i][k]) for k, v in s.items()), i


# --- faults -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,message", [("nan", "meta-loss is nan"), ("diverge", "optimizee diverged")])
def test_faulty_unroll_leaves_phi_and_adam_untouched(kind, message):
    opt = fresh_optimizer()
    adam = torch.optim.Adam(opt.parameters(), lr=1e-2)
    family = QuadraticFamily(batch=8)
    g = torch.Generator().manual_seed(0)
    assert train_on_problem(opt, family.sample(g), adam, CFG)[1] is None  # Adam now has moments and a step count
    before = phi_and_adam(opt, adam)
    losses, fault = train_on_problem(opt, FaultyProblem(family.sample(g), kind, at=3), adam, CFG)
    assert losses == [] and fault.startswith("unroll 1/2") and message in fault
    assert_untouched(before, phi_and_adam(opt, adam))
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in opt.parameters())
    # a fault in the second unroll keeps the first unroll's meta-step and stops there
    losses, fault = train_on_problem(opt, FaultyProblem(family.sample(g), kind, at=7), adam, CFG)
    assert len(losses) == 1 and fault.startswith("unroll 2/2")


def test_nonfinite_meta_gradient_is_skipped():
    opt = fresh_optimizer()
    adam = torch.optim.Adam(opt.parameters(), lr=1e-2)
    problem = QuadraticFamily(batch=8).sample(torch.Generator().manual_seed(0))
    before = phi_and_adam(opt, adam)
    hook = opt.nets["default"].head.bias.register_hook(lambda grad: grad * float("nan"))  # only the meta-backward
    losses, fault = train_on_problem(opt, problem, adam, CFG)
    hook.remove()
    assert losses == [] and "meta-gradient is not finite" in fault
    assert_untouched(before, phi_and_adam(opt, adam))
    assert all(p.grad is None for p in opt.parameters())


def test_meta_training_recovers_from_faulty_runs():
    family = FaultyFamily({1: ("nan", 3), 2: ("diverge", 8), 4: ("nan", 0)})
    history = l2l.meta_train(fresh_optimizer(), family, CFG, val_family=family.base, progress=False)
    assert history.skipped_unrolls == 3
    assert all(math.isfinite(v) for v in history.val_loss + history.train_loss)
    assert history.best_val < history.val_loss[0]


def test_too_many_faults_in_a_row_stop_with_a_clear_message():
    family = FaultyFamily({n: ("nan", 0) for n in range(100)})
    cfg = l2l.MetaTrainConfig(horizon=10, unroll=5, epochs=2, problems_per_epoch=4, n_val=1, max_bad_in_row=3)
    with pytest.raises(RuntimeError, match=r"3 optimizee runs in a row.*epoch 1, problem 3/4, unroll 1/2: "
                                           r"the meta-loss is nan.*lower meta_lr"):
        l2l.meta_train(fresh_optimizer(), family, cfg, val_family=family.base, progress=False)


# --- exact resume -------------------------------------------------------------------------------------------

KILLED_RUN = """
import sys, time, torch, l2l, l2l.meta
from l2l.experiments import quadratic
from l2l.problems import QuadraticFamily
torch.set_num_threads(int(sys.argv[3]))
slow = l2l.meta.train_on_problem
def train_on_problem(*args):  # same results, just slow enough to be killed in the middle of an epoch
    time.sleep(0.05)
    return slow(*args)
l2l.meta.train_on_problem = train_on_problem
torch.manual_seed(0)
cfg = l2l.MetaTrainConfig(**eval(sys.argv[4]))
l2l.meta_train(quadratic.make_optimizer(), QuadraticFamily(batch=8), cfg, checkpoint=sys.argv[2],
               progress=False, state_path=sys.argv[1])
"""


def test_sigkilled_run_resumes_bit_for_bit(tmp_path, reference):
    state, ckpt = tmp_path / "run.state", tmp_path / "lstm.safetensors"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(state), str(ckpt), str(torch.get_num_threads()),
                             repr(asdict(CFG))], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        while not (state.exists() and load_state(state)["epoch"] >= 2):  # epoch 1 is done and saved
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the run never saved its first epoch"
            time.sleep(0.01)
        time.sleep(0.07)  # into epoch 2
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed = load_state(state)
    assert killed["epoch"] <= CFG.epochs  # killed before the end
    # the killed call's stage is in the saved run record as far as its last save, marked open
    (open_stage,) = killed["history"]["stages"]
    assert open_stage["open"] and open_stage["from_epoch"] == 1 and open_stage["to_epoch"] == killed["epoch"] - 1

    opt = quadratic.make_optimizer()  # its φ is replaced by the saved one
    history = l2l.meta_train(opt, QuadraticFamily(batch=8), CFG, checkpoint=ckpt, progress=False, state_path=state)
    assert_same(outcome(opt, history), reference[0])
    assert history.stages[0] == open_stage  # then the resuming call's own stage, closed
    assert "open" not in history.stages[1] and (history.stages[1]["from_epoch"], history.stages[1]["to_epoch"]) == (
        killed["epoch"], CFG.epochs)
    assert load_state(state)["history"]["stages"] == history.stages
    assert not list(tmp_path.glob(".*.tmp"))  # a temporary file orphaned by the kill is swept on resume
    saved, ref_saved = l2l.load_optimizer(ckpt)[0].state_dict(), l2l.load_optimizer(reference[1])[0].state_dict()
    assert all(torch.equal(saved[k], ref_saved[k]) for k in saved)
    assert read_metadata(ckpt)["info"]["config"]["seed"] == CFG.seed  # the seed is recorded with the optimizer


def test_ctrl_c_mid_epoch_leaves_a_state_that_resumes_exactly(tmp_path, reference):
    state = tmp_path / "run.state"
    # problem 4 is epoch 2's second; Ctrl-C lands in its second unroll, after its first meta-step
    family = FaultyFamily({4: ("interrupt", 8)})
    with pytest.raises(KeyboardInterrupt, match=r"at epoch 2 \(1/3 problems done\) is saved in"):
        l2l.meta_train(fresh_optimizer(), family, CFG, val_family=family.base, progress=False, state_path=state)
    saved = load_state(state)
    assert (saved["epoch"], saved["problem"], len(saved["epoch_losses"])) == (2, 1, 2)
    (stage,) = saved["history"]["stages"]  # closed where the state stands: 1 problem into epoch 2
    assert (stage["to_epoch"], stage["to_problem"]) == (1, 1) and "open" not in stage
    family.faults.clear()
    opt = quadratic.make_optimizer()
    history = l2l.meta_train(opt, family, CFG, val_family=family.base, progress=False, state_path=state)
    assert_same(outcome(opt, history), reference[0])
    assert history.stages[1]["from_epoch"] == 2 and history.stages[1]["from_problem"] == 1


def test_a_time_budget_pauses_within_an_epoch_and_resumes_exactly(tmp_path, reference):
    state = tmp_path / "run.state"
    checks = iter([False] * 4 + [True])  # checked before every problem: epoch 1's three, epoch 2's first, then spent
    paused = l2l.meta_train(fresh_optimizer(), QuadraticFamily(batch=8), CFG, progress=False, state_path=state,
                            stop_when=lambda: next(checks))
    saved = load_state(state)
    assert (saved["epoch"], saved["problem"], paused.epochs_done) == (2, 1, 1)
    assert paused.optimizee_steps == 4 * CFG.horizon and not paused.complete(CFG)
    (stage,) = paused.stages
    assert (stage["from_epoch"], stage["to_epoch"], stage["to_problem"]) == (1, 1, 1) and "open" not in stage
    opt = quadratic.make_optimizer()
    history = l2l.meta_train(opt, QuadraticFamily(batch=8), CFG, progress=False, state_path=state)
    assert_same(outcome(opt, history), reference[0])
    assert history.stages[0] == stage and history.stages[1]["from_problem"] == 1  # resumed at problem 2 of epoch 2


def test_stages_join_up_across_a_ctrl_c_in_validation_and_a_pause(tmp_path, reference, monkeypatch):
    state, calls = tmp_path / "run.state", []
    real = l2l.meta.validation_scores

    def interrupted_at_epoch_2(*args):  # validations: epoch 0, 1, then Ctrl-C in epoch 2's
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(l2l.meta, "validation_scores", interrupted_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        l2l.meta_train(fresh_optimizer(), QuadraticFamily(batch=8), CFG, progress=False, state_path=state)
    assert (load_state(state)["epoch"], load_state(state)["problem"]) == (2, CFG.problems_per_epoch)
    monkeypatch.setattr(l2l.meta, "validation_scores", real)
    # this call trains no problem: it validates epoch 2, pauses before epoch 3, and still records its stage
    l2l.meta_train(fresh_optimizer(), QuadraticFamily(batch=8), CFG, progress=False, state_path=state,
                   stop_when=lambda: True)
    opt = quadratic.make_optimizer()
    history = l2l.meta_train(opt, QuadraticFamily(batch=8), CFG, progress=False, state_path=state)
    assert_same(outcome(opt, history), reference[0])
    starts = [(s["from_epoch"], s.get("from_problem", 0)) for s in history.stages]
    ends = [(s["to_epoch"] + 1, s.get("to_problem", 0)) for s in history.stages]
    assert starts == [(1, 0), (2, CFG.problems_per_epoch), (3, 0)] and starts[1:] == ends[:-1]
    assert ends[-1] == (CFG.epochs + 1, 0) and not any(s.get("open") for s in history.stages)


def test_finished_state_is_reused_and_more_epochs_extend_it(tmp_path, reference):
    state = tmp_path / "run.state"
    short = l2l.MetaTrainConfig(**{**asdict(CFG), "epochs": 2})
    l2l.meta_train(fresh_optimizer(), QuadraticFamily(batch=8), short, progress=False, state_path=state)
    opt = quadratic.make_optimizer()
    history = l2l.meta_train(opt, QuadraticFamily(batch=8), CFG, progress=False, state_path=state)
    assert_same(outcome(opt, history), reference[0])
    again = quadratic.make_optimizer()  # a finished run: nothing left to train, the same result
    assert_same(outcome(again, l2l.meta_train(again, QuadraticFamily(batch=8), CFG, progress=False,
                                              state_path=state)), reference[0])
    with pytest.raises(ValueError, match="beyond epochs=2"):
        l2l.meta_train(quadratic.make_optimizer(), QuadraticFamily(batch=8), short, progress=False, state_path=state)


def test_resume_with_other_settings_or_a_damaged_state_is_a_clear_error(tmp_path):
    state = tmp_path / "run.state"
    short = l2l.MetaTrainConfig(**{**asdict(CFG), "epochs": 1})
    l2l.meta_train(fresh_optimizer(), QuadraticFamily(batch=8), short, progress=False, state_path=state)

    def resume(cfg=short, opt=None, family=None, path=state):
        l2l.meta_train(opt or quadratic.make_optimizer(), family or QuadraticFamily(batch=8), cfg, progress=False,
                       state_path=path)

    with pytest.raises(ValueError, match=r"different config \(meta_lr: 0.01 there, 0.001 now\).*delete"):
        resume(cfg=l2l.MetaTrainConfig(**{**asdict(short), "meta_lr": 1e-3}))
    with pytest.raises(ValueError, match="architecture"):
        resume(opt=l2l.LSTMOptimizer(config=l2l.LSTMConfig(hidden=8)))
    with pytest.raises(ValueError, match="trained on problems"):
        resume(family=QuadraticFamily(batch=16))
    data = state.read_bytes()
    (tmp_path / "truncated.state").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.state").write_bytes(b"\x00garbage" * 100)
    for name in ("truncated.state", "garbage.state"):
        with pytest.raises(ValueError, match=f"{name} is not a readable training state .*delete it") as err:
            resume(path=tmp_path / name)
        assert "\n" not in str(err.value)
    torch.save({"something": "else"}, tmp_path / "foreign.state")
    with pytest.raises(ValueError, match="not an l2l training state"):
        resume(path=tmp_path / "foreign.state")
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave nothing half-written


# --- bad input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chapter", [quadratic, mnist], ids=["quadratic", "mnist"])
@pytest.mark.parametrize("seed", ["3", 1.5, -1, None, True])
def test_bad_seed_is_a_clear_error(chapter, seed):
    with pytest.raises(ValueError, match=r"seed must be a non-negative integer \(e.g. 0\), got"):
        chapter.settings("smoke", seed)
    assert chapter.settings("smoke", 7).meta.seed == 7


def test_unknown_device_name_is_a_clear_error():
    from l2l.device import pick_device

    with pytest.raises(ValueError, match="unknown device 'gpu'; use cpu, cuda"):
        pick_device("gpu")


def test_load_image_decodes_and_names_a_file_that_does_not(tmp_path):
    from PIL import Image

    from l2l.data import load_image

    image = torch.randint(0, 256, (3, 6, 9), dtype=torch.uint8)
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / "ok.png")
    Image.fromarray(image[0].numpy()).save(tmp_path / "gray.png")
    assert torch.equal(load_image(tmp_path / "ok.png"), image)
    assert load_image(tmp_path / "gray.png").shape == (3, 6, 9)
    (tmp_path / "garbage.jpg").write_bytes(b"this is not a JPEG" * 10)
    (tmp_path / "truncated.png").write_bytes((tmp_path / "ok.png").read_bytes()[:60])
    Image.fromarray(torch.zeros(64, 64, 3, dtype=torch.uint8).numpy()).save(tmp_path / "whole.jpg")
    (tmp_path / "truncated.jpg").write_bytes((tmp_path / "whole.jpg").read_bytes()[:300])
    for name in ("garbage.jpg", "truncated.png", "truncated.jpg"):
        with pytest.raises(ValueError, match=f"{name} does not decode as an image") as err:
            load_image(tmp_path / name)
        assert "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="no image file at .*missing.jpg"):
        load_image(tmp_path / "missing.jpg")
