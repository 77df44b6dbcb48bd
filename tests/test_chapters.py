"""The chapter interface (l2l.experiments.chapter): every chapter's training pauses, resumes and reloads exactly."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from l2l.experiments import art, chapter, cifar, general, mnist, quadratic

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = {"quadratic": quadratic, "mnist": mnist, "cifar": cifar, "art": art, "general": general}


@pytest.fixture(autouse=True)
def _threads(one_thread):
    pass


class AfterChecks(chapter.Budget):
    """A budget that is spent after it has been checked `n` times, once before each problem (a deterministic
    max_minutes)."""

    def __init__(self, n: int):
        super().__init__(None)
        self.left = n

    def spent(self) -> bool:
        self.left -= 1
        return self.left < 0


def outcome(trainings) -> dict:
    """What must agree bit for bit: every training's φ and its History (less wall time and stages)."""
    return {t.name: ({k: v.clone() for k, v in t.optimizer.state_dict().items()},
                     {k: v for k, v in asdict(t.history).items() if k not in ("wall_time_s", "stages")})
            for t in trainings.all}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        (phi_a, hist_a), (phi_b, hist_b) = a[name], b[name]
        assert all(torch.equal(phi_a[k], phi_b[k]) for k in phi_a), name
        assert hist_a == hist_b, name


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Every chapter's smoke training, run in one go (on one thread, as the tests that compare with it: the result
    of a float reduction depends on the thread count)."""
    runs, threads = {}, torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, module in CHAPTERS.items():
            out = tmp_path_factory.mktemp(f"{name}-whole")
            runs[name] = (out, outcome(module.train(module.settings("smoke"), out, progress=False)))
    finally:
        torch.set_num_threads(threads)
    return runs


@pytest.mark.parametrize("name", list(CHAPTERS))
def test_a_paused_chapter_resumes_to_the_same_result(name, uninterrupted, tmp_path, monkeypatch):
    module = CHAPTERS[name]
    s = module.settings("smoke")
    # one problem, then the budget is spent: the pause comes within the first epoch where it has more problems
    monkeypatch.setattr(chapter, "Budget", lambda minutes: AfterChecks(1))
    first = module.train(s, tmp_path, max_minutes=1, progress=False)
    assert not first.complete
    assert chapter.paused_message(first.all).startswith("paused at ")
    assert first.all[0].history.optimizee_steps > 0
    for t in first.all:  # nothing published from a half-trained optimizer
        assert t.complete or not (tmp_path / f"{t.name}.safetensors").exists(), t.name
    monkeypatch.undo()
    resumed = module.train(s, tmp_path, progress=False)
    assert resumed.complete
    assert_same(outcome(resumed), uninterrupted[name][1])
    for t in resumed.all:  # every problem belongs to exactly one recorded stage, none of them left open
        st = t.history.stages
        starts = [(s["from_epoch"], s.get("from_problem", 0)) for s in st]  # (epoch, problems of it done before)
        ends = [(s["to_epoch"] + 1, s.get("to_problem", 0)) for s in st]
        assert starts[0] == (1, 0) and ends[-1] == (t.history.epochs_done + 1, 0)
        assert starts[1:] == ends[:-1] and not any(s.get("open") for s in st), st


@pytest.mark.parametrize("name", ["mnist", "general"])
def test_trainings_run_one_at_a_time_in_another_order_end_as_one_run_of_them_all(name, uninterrupted, tmp_path):
    """--only: each training alone (as two processes sharing a chapter would), in reverse order where nothing
    depends on the order (MNIST's search first, which the others need), ends bit for bit as the whole run."""
    module = CHAPTERS[name]
    s = module.settings("smoke")
    names = list(module.trainings(s))
    searches = [n for n in names if n.startswith("search-")]
    for n in [*reversed(searches), *reversed([n for n in names if n not in searches])]:
        alone = module.train(s, tmp_path, progress=False, only=(n,))
        assert alone.complete and n in [t.name for t in alone.all]
        assert not any(t.name not in (n, *searches) for t in alone.all)  # nothing else trained
    assert sorted(p.stem for p in (tmp_path / "state").glob("*.pt")) == sorted(names)
    assert_same(outcome(module.train(s, tmp_path, progress=False)), uninterrupted[name][1])


def test_only_names_trainings_of_the_chapter_and_mnist_needs_its_search_first(tmp_path):
    s = mnist.settings("smoke")
    with pytest.raises(ValueError, match=r"lstm-seed1 needs search-lr\S+ \(epoch 0 of 1\), search-lr\S+ \(epoch "
                                         r"0 of 1\) finished: train it first \(--only search-lr\S+ search-lr"):
        mnist.train(s, tmp_path, progress=False, only=("lstm-seed1",))
    assert not (tmp_path / "state").exists()  # refused before anything ran
    with pytest.raises(ValueError, match=r"--only lstm-seed9: not a training of this chapter; its trainings are "
                                         r"search-lr.*, lstm, lstm-seed1"):
        mnist.train(s, tmp_path, progress=False, only=("lstm", "lstm-seed9"))
    with pytest.raises(ValueError, match="not a training of this chapter; its trainings are lstm$"):
        quadratic.train(quadratic.settings("smoke"), tmp_path, progress=False, only=("general",))
    kept = tmp_path / "state" / "search-lr0.00478.pt"
    kept.parent.mkdir()
    kept.write_bytes(b"a state")
    with pytest.raises(ValueError, match="cannot go with --only"):  # refused before anything is cleared
        mnist.train(s, tmp_path, progress=False, only=("lstm",), fresh=True)
    assert kept.read_bytes() == b"a state"


def test_a_finished_training_is_loaded_not_repeated(uninterrupted):
    out, reference = uninterrupted["quadratic"]
    state = out / "state" / "lstm.pt"
    before = state.read_bytes()
    again = quadratic.train(quadratic.settings("smoke"), out, progress=False)
    assert again.complete and state.read_bytes() == before
    assert_same(outcome(again), reference)


def test_fresh_starts_over(uninterrupted, tmp_path):
    s = quadratic.settings("smoke")
    quadratic.train(s, tmp_path, progress=False)
    (tmp_path / "state" / "lstm.pt").write_bytes(b"not a state")
    again = quadratic.train(s, tmp_path, progress=False, fresh=True)
    assert_same(outcome(again), uninterrupted["quadratic"][1])


def test_a_state_from_other_settings_is_a_one_line_error_and_is_kept(uninterrupted):
    out, _ = uninterrupted["mnist"]
    state = out / "state" / "lstm.pt"
    before = state.read_bytes()
    with pytest.raises(ValueError, match="different config") as error:
        mnist.train(mnist.settings("smoke", seed=1), out, progress=False)
    assert "\n" not in str(error.value) and "--fresh" in str(error.value)
    assert state.read_bytes() == before


def test_a_corrupt_state_is_a_one_line_error_and_is_kept(tmp_path):
    state = tmp_path / "state" / "lstm.pt"
    state.parent.mkdir()
    state.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="not a readable training state") as error:
        quadratic.train(quadratic.settings("smoke"), tmp_path, progress=False)
    assert "\n" not in str(error.value) and state.read_bytes() == b"\x00" * 100


def test_phi0_does_not_depend_on_what_was_drawn_before():
    s = art.settings("smoke")
    first = chapter.new_lstm(art.make_optimizer, s.meta.seed)
    art.family(s, "a", "train")  # loads VGG-19 and the photos
    torch.rand(1000)  # and whatever else a notebook's earlier cells drew
    second = chapter.new_lstm(art.make_optimizer, s.meta.seed)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))


def test_mnist_search_continues_the_best_candidate(uninterrupted):
    out, _ = uninterrupted["mnist"]
    s = mnist.settings("smoke")
    t = mnist.train(s, out, progress=False)
    assert t.chosen_lr == min(t.search, key=lambda c: c.history.best_val).cfg.meta_lr
    assert t.main.history.epochs_done == s.meta.epochs and t.main.cfg.meta_lr == t.chosen_lr
    best = next(c for c in t.search if c.cfg.meta_lr == t.chosen_lr)
    n = len(best.history.val_final)
    assert t.main.history.val_final[:n] == best.history.val_final  # the main run is the candidate, continued
    assert [c.cfg.seed for c in t.seeds] == list(s.meta_seeds)


def test_cli_run_executes_the_notebook_and_reuses_its_training(tmp_path):
    """`python -m l2l run` executes the chapter's notebook with papermill; run twice, the second reuses the training."""
    env = {**__import__("os").environ, "L2L_RESULTS": str(tmp_path / "results"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "l2l", "run", "quadratic", "--profile", "smoke", "--device", "cpu", "--no-progress",
           "--output", str(tmp_path / "out.ipynb")]
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    state = tmp_path / "results" / "quadratic" / "smoke" / "state" / "lstm.pt"
    before = state.read_bytes()
    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert state.read_bytes() == before and "finished" in second.stdout
    assert "without encryption" not in first.stderr + second.stderr  # the kernel talks over local sockets
    cells = json.loads((tmp_path / "out.ipynb").read_text())["cells"]
    assert any("image/svg+xml" in o.get("data", {}) for c in cells for o in c.get("outputs", []))  # its figures


@pytest.mark.parametrize("name", ["cifar", "art"])
def test_cli_trains_and_evaluates_every_chapter(name, tmp_path, capsys):
    from l2l.cli import main

    out = tmp_path / name
    assert main(["train", name, "--profile", "smoke", "--device", "cpu", "--out", str(out), "--no-progress"]) == 0
    assert (out / "lstm.safetensors").exists() and (out / "state" / "lstm.pt").exists()
    capsys.readouterr()
    assert main(["evaluate", str(out / "lstm.safetensors"), "--profile", "smoke", "--device", "cpu", "--no-progress",
                 "--n", "1"]) == 0
    printed = capsys.readouterr().out
    assert "test split" in printed or "/test x" in printed  # its own test split, never the training images
    assert all(any(line.startswith(n + " ") for line in printed.splitlines()) for n in ("LSTM", "SGD", "NAG"))


KILLED_CHAPTER = """
import sys, torch
torch.set_num_threads(1)
from l2l.experiments import mnist
mnist.train(mnist.settings("smoke"), sys.argv[1], progress=False)
"""


def test_a_sigkilled_chapter_run_resumes_to_the_same_result(uninterrupted, tmp_path):
    """Killed (SIGKILL) as soon as its second training has saved a state, the MNIST chapter resumes exactly."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-c", KILLED_CHAPTER, str(tmp_path)], cwd=ROOT, stderr=subprocess.PIPE,
                            text=True)
    second = chapter.state_path(tmp_path, f"search-lr{mnist.settings('smoke').search[1]:.3g}")
    deadline = time.monotonic() + 180
    try:
        while not second.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the run never reached its second training"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    resumed = mnist.train(mnist.settings("smoke"), tmp_path, progress=False)
    assert resumed.complete
    assert_same(outcome(resumed), uninterrupted["mnist"][1])


def test_a_finished_comparison_is_kept_and_reused_only_while_its_inputs_are_the_same(tmp_path, monkeypatch):
    from l2l.experiments import common
    from l2l.results import kept_summary
    s = quadratic.settings("smoke")
    lstm = quadratic.make_optimizer()
    fam, run_seeds, cache = quadratic.test_family(s), common.seeds(0), tmp_path / "eval" / "panel.pt"
    args = dict(n_tune=1, n_test=2, seeds=run_seeds, grid=(1e-2, 1e-1), progress=False, cache=cache)
    curves, tuning, _ = common.compare(lstm, fam, 5, **args)
    assert cache.exists()
    calls, tunings = [], len(common.BASELINES)  # a comparison tunes each baseline on its own
    real = common.tune_baselines
    monkeypatch.setattr(common, "tune_baselines", lambda *a, **k: calls.append(1) or real(*a, **k))
    again, tuning_again, _ = common.compare(lstm, fam, 5, **args)
    assert calls == [] and tuning_again.rates == tuning.rates and tuning_again.scores == tuning.scores
    assert all(torch.equal(curves[n], again[n]) for n in curves)
    # anything the result depends on changes it: the steps, the seeds, φ itself
    common.compare(lstm, fam, 6, **args)
    common.compare(lstm, fam, 6, **{**args, "seeds": common.seeds(1)})
    with torch.no_grad():
        next(lstm.parameters()).add_(1e-3)
    common.compare(lstm, fam, 6, **{**args, "seeds": common.seeds(1)})
    assert len(calls) == 3 * tunings
    summary = lambda: kept_summary(tmp_path, common.current_code_prefixes())  # noqa: E731 - read anew each time
    assert summary().other_code == []
    monkeypatch.setattr(common, "code_digest", lambda **kw: "the library changed")  # other code: recomputed
    assert summary().other_code == ["panel"]  # `status` says so before a run finds out
    common.compare(lstm, fam, 6, **{**args, "seeds": common.seeds(1)})
    assert len(calls) == 4 * tunings
    assert summary().other_code == [] and summary().states == {"panel": "finished"}
    chapter.clear_states(tmp_path)  # --fresh forgets kept comparisons too
    assert not cache.exists()


def test_status_reads_unreadable_and_old_kept_files_without_failing(tmp_path):
    from l2l.experiments import common
    from l2l.results import kept_summary
    eval_dir = chapter.eval_dir(tmp_path)
    common.kept(eval_dir / "old.pt", "0" * 64, lambda: 1.0)  # a key from before keys began with the code digest
    (eval_dir / "torn.pt").write_bytes(b"half a file")
    summary = kept_summary(tmp_path, common.current_code_prefixes())
    assert summary.states == {"old": "finished", "torn": "unreadable"} and summary.other_code == ["old"]
    assert summary.seconds >= 0


def test_a_comparison_stopped_midway_redoes_only_what_it_had_not_finished(tmp_path, monkeypatch, capsys):
    from l2l.cli import main
    from l2l.experiments import common
    s = quadratic.settings("smoke")
    lstm, fam, cache = quadratic.make_optimizer(), quadratic.test_family(s), chapter.eval_dir(tmp_path) / "panel.pt"
    args = dict(n_tune=1, n_test=2, seeds=common.seeds(0), grid=(1e-2, 1e-1), progress=False)
    whole_curves, whole_tuning, _ = common.compare(lstm, fam, 5, **args)  # uninterrupted, nothing kept
    real_run, real_tune, tested, tuned = common.run_problems, common.tune_baselines, [], []

    def stopped_at_the_third_optimizer(*a, **k):  # Ctrl-C, or the session's end
        if len(tested) == 2:
            raise KeyboardInterrupt
        return tested.append(1) or real_run(*a, **k)

    monkeypatch.setattr(common, "run_problems", stopped_at_the_third_optimizer)
    with pytest.raises(KeyboardInterrupt):
        common.compare(lstm, fam, 5, cache=cache, **args)
    capsys.readouterr()
    assert main(["status", "quadratic", "--profile", "smoke", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "finished comparisons kept: none" in printed
    assert "comparisons under way, parts kept: panel (tuning/SGD, tuning/RMSprop, tuning/Adam, tuning/NAG, " \
           "test/LSTM, test/SGD)" in printed
    assert "compute time of the kept comparisons: " in printed
    from l2l.results import evaluation_seconds
    first = evaluation_seconds(tmp_path)  # the six parts this process finished, each timed
    assert first > 0
    monkeypatch.setattr(common, "run_problems", lambda *a, **k: tested.append(1) or real_run(*a, **k))
    monkeypatch.setattr(common, "tune_baselines", lambda *a, **k: tuned.append(1) or real_tune(*a, **k))
    curves, tuning, _ = common.compare(lstm, fam, 5, cache=cache, **args)
    assert tuned == [] and len(tested) == 1 + len(common.BASELINES)  # the tuning kept; 3 of 5 left to test
    assert tuning == whole_tuning and all(torch.equal(curves[n], whole_curves[n]) for n in whole_curves)
    # the whole result keeps every part's seconds, those of the stopped run among them
    assert set(torch.load(cache, weights_only=True)["seconds"]) == {
        *(f"tuning/{n}" for n in common.BASELINES), *(f"test/{n}" for n in ["LSTM", *common.BASELINES])}
    assert evaluation_seconds(tmp_path) > first
    common.compare(lstm, fam, 5, cache=cache, **args)  # now kept whole
    assert tuned == [] and len(tested) == 1 + len(common.BASELINES)


@pytest.mark.parametrize("name", list(CHAPTERS))
def test_the_planned_trainings_are_those_a_run_makes_and_status_reads_them(name, uninterrupted):
    module = CHAPTERS[name]
    out, reference = uninterrupted[name]
    planned = module.trainings(module.settings("smoke"))
    assert list(planned) == list(reference)  # the same names, in the order train runs them
    rows = chapter.progress(planned, out)
    # the planned ones first, in order; other states in the folder (another test's) after them
    assert [r["training"] for r in rows][:len(planned)] == list(planned)
    for row, cfg in zip(rows, planned.values()):
        total = chapter.planned_steps(cfg)
        assert row["epochs"] == f"{cfg.epochs} of {cfg.epochs}" and row["optimizee steps"] == f"{total:,} of {total:,}"
        assert row["hours left"] == "0.0"


def test_hours_left_extrapolates_the_hours_so_far_by_optimizee_steps():
    cfg = {"epochs": 4, "problems_per_epoch": 20, "horizon": 100}  # 8,000 optimizee steps
    assert chapter.hours_left({"optimizee_steps": 2_000, "wall_time_s": 1_800.0, "epochs_done": 1}, cfg) == "1.5"
    assert chapter.hours_left({"optimizee_steps": 0, "wall_time_s": 5.0, "epochs_done": 0}, cfg) == "–"
    assert chapter.hours_left({"optimizee_steps": 8_000, "wall_time_s": 9_000.0, "epochs_done": 4}, cfg) == "0.0"
    assert chapter.hours_left({"optimizee_steps": 7_900, "wall_time_s": 9_000.0, "epochs_done": 4}, cfg) == "0.0"


def test_the_code_digest_follows_computing_code_but_not_presentation(tmp_path, monkeypatch):
    """Kept comparisons are hours each at the paper profile: editing the CLI keeps them, and the second recipe keeps
    chapters 1-4's; editing code that computes them does not."""
    import shutil

    from l2l.experiments import common
    from l2l.experiments.common import NOT_IN_DIGEST, SECOND_RECIPE

    def code_digest(root, **kw):
        monkeypatch.setattr(common, "_CODE", {})  # computed afresh, not the digest kept for this process
        return common.code_digest(root, **kw)

    root = Path(chapter.__file__).resolve().parents[1]
    for entry in NOT_IN_DIGEST + SECOND_RECIPE:
        assert (root / entry).exists(), f"{entry} is excluded from the digest but no longer exists"
    pkg = tmp_path / "l2l"
    shutil.copytree(root, pkg, ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"))
    before, before_ch5 = code_digest(pkg), code_digest(pkg, exclude=NOT_IN_DIGEST)
    (pkg / "cli.py").write_text((pkg / "cli.py").read_text() + "\nX = 1\n")
    assert code_digest(pkg, exclude=NOT_IN_DIGEST) == before_ch5
    (pkg / "general" / "tasks.py").write_text((pkg / "general" / "tasks.py").read_text() + "\nX = 1\n")
    assert code_digest(pkg, exclude=NOT_IN_DIGEST) != before_ch5  # chapter 5's comparisons run that code
    (pkg / "baselines.py").write_text((pkg / "baselines.py").read_text() + "\n# a comment\n")
    assert code_digest(pkg) == before
    (pkg / "baselines.py").write_text((pkg / "baselines.py").read_text() + "\nX = 1\n")
    assert code_digest(pkg) != before


def test_the_grid_reuses_the_base_networks_comparison_for_its_cell(tmp_path, monkeypatch):
    from dataclasses import replace

    from l2l.experiments import common
    s = replace(mnist.settings("smoke"), widths=(20, 10), depths=(1,))
    lstm, run_seeds = mnist.make_optimizer(), common.seeds(0)
    curves, _, _ = mnist.compare(lstm, mnist.base_family(s), s.steps, s, run_seeds, progress=False,
                                 cache=chapter.eval_dir(tmp_path) / "base.pt")  # the notebook's Figure 4 panel
    tuned, real = [], common.tune_baselines
    monkeypatch.setattr(common, "tune_baselines", lambda *a, **k: tuned.append(1) or real(*a, **k))
    cells = mnist.grid(lstm, s, run_seeds, progress=False, out=tmp_path)
    assert len(tuned) == len(common.BASELINES)  # the 10-unit cell only
    assert cells[0]["finals"] == {n: c[:, -1].mean().item() for n, c in curves.items()}
    assert sorted(p.name for p in chapter.eval_dir(tmp_path).glob("*.pt")) == ["base.pt", "grid-10x1.pt"]


def test_cli_compare_keeps_the_comparisons_that_the_notebook_then_reuses(tmp_path, capsys, monkeypatch):
    from l2l.cli import main
    from l2l.device import pick_device
    from l2l.experiments import art, common

    out = tmp_path / "art"
    args = ["--profile", "smoke", "--device", "cpu", "--out", str(out), "--no-progress"]
    assert main(["compare", "quadratic", *args]) == 2  # its notebook computes alone
    assert main(["compare", "art", *args]) == 2
    assert "needs lstm (epoch 0 of 2) finished" in capsys.readouterr().err  # it never trains
    assert main(["train", "art", *args]) == 0
    assert main(["compare", "art", *args]) == 0
    printed = capsys.readouterr().out
    assert printed.index("\nb: kept") < printed.index("\na: kept")  # last to first: a run going does a first
    s = art.settings("smoke")
    trained = art.train(s, out, progress=False)
    alone = art.comparisons(s, trained, common.seeds(0), pick_device("auto"), out=None)["b"]()  # one process, kept nowhere

    def recomputed(*a, **k):
        pytest.fail("the notebook recomputed a comparison that compare kept")

    monkeypatch.setattr(common, "tune_baselines", recomputed)
    monkeypatch.setattr(art, "rollout", recomputed)
    runs = {k: f() for k, f in art.comparisons(s, trained, common.seeds(0), pick_device("auto"), out).items()}
    assert set(runs) == {"a", "b"} and set(runs["b"][0]) == {"LSTM", "SGD", "RMSprop", "Adam", "NAG"}
    curves, tuning, images = runs["b"]
    assert tuning == alone[1] and all(torch.equal(curves[n], alone[0][n]) and torch.equal(images[n], alone[2][n])
                                      for n in curves)  # what compare kept is what one process computes
