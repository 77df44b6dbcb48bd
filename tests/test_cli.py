"""The command line, `python -m l2l {train, compare, evaluate, run, status, list}` (l2l/cli.py)."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import l2l
from l2l.checkpoint import read_metadata
from l2l.cli import build_parser, main
from l2l.experiments import quadratic

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def plain_errors(monkeypatch, one_thread):
    monkeypatch.delenv("L2L_TRACEBACK", raising=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`train quadratic --profile smoke` once for the tests that evaluate its output."""
    out = tmp_path_factory.mktemp("train")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    argv = ["train", "quadratic", "--profile", "smoke", "--device", "cpu", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    torch.set_num_threads(n)
    return out / "lstm.safetensors"


def test_list_shows_the_shipped_optimizers(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name, meta in l2l.trained.available().items():
        line = next(l for l in out.splitlines() if l.startswith(name + " "))
        assert meta["info"]["task"] in line and meta["info"]["profile"] in line
        purpose = "your own models" if meta["info"]["task"] == "general" else "reproduces the paper"
        assert purpose in line  # which shipped optimizer is for what
    shipped = "general" in l2l.trained.available()
    assert ('"general" is meta-trained on a mixture' in out) == shipped and ("not shipped yet" in out) != shipped


def test_train_writes_the_chapter_checkpoint(trained, tmp_path):
    meta = read_metadata(trained)
    assert meta["info"]["task"] == "quadratic" and meta["info"]["profile"] == "smoke"
    # the same chapter function the notebook calls, with the same seed: the same φ
    s = quadratic.settings("smoke", 0)
    lstm = quadratic.train(s, tmp_path, progress=False)["lstm"].optimizer
    loaded, _ = l2l.load_optimizer(trained)
    for a, b in zip(lstm.parameters(), loaded.parameters()):
        assert torch.equal(a, b)


def test_train_resumes_its_state_and_refuses_other_settings(trained, capsys):
    out = trained.parent
    state = out / "state" / "lstm.pt"
    assert state.exists()
    before = state.read_bytes()
    argv = ["train", "quadratic", "--profile", "smoke", "--device", "cpu", "--out", str(out), "--no-progress"]
    assert main(argv) == 0  # the finished training is loaded, not repeated
    assert "epoch 2 of 2" in capsys.readouterr().out and state.read_bytes() == before
    assert main(argv + ["--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "--fresh" in err and err.count("\n") == 1
    assert state.read_bytes() == before  # the good state is kept


def test_train_max_minutes_pauses_and_the_same_command_continues(tmp_path, capsys):
    argv = ["train", "quadratic", "--profile", "smoke", "--device", "cpu", "--out", str(tmp_path), "--no-progress",
            "--max-minutes", "1e-6"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "paused at lstm: epoch 0 of 2 (0 of 80 optimizee steps); run the same command again to continue" in printed
    assert not (tmp_path / "lstm.safetensors").exists()  # no checkpoint from a half-trained optimizer
    assert main(["status", "quadratic", "--profile", "smoke", "--out", str(tmp_path)]) == 0
    assert "lstm      0 of 2" in capsys.readouterr().out  # the paused run, as status sees it
    assert main(argv[:-2]) == 0
    assert (tmp_path / "lstm.safetensors").exists()
    capsys.readouterr()
    assert main(["status", "quadratic", "--profile", "smoke", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "lstm      2 of 2" in printed and "finished comparisons kept: none" in printed


def test_status_of_a_run_not_started(tmp_path, capsys):
    assert main(["status", "cifar", "--profile", "smoke", "--out", str(tmp_path)]) == 0
    assert "nothing started" in capsys.readouterr().out


def test_evaluate_the_trained_checkpoint_at_smoke(trained, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(trained), "--profile", "smoke", "--device", "cpu", "--no-progress",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("LSTM", "SGD", "RMSprop", "Adam", "NAG"):
        assert any(line.startswith(name + " ") for line in printed.splitlines()), printed
    result = json.loads(out.read_text())
    s = quadratic.settings("smoke")
    assert result["task"] == "quadratic" and result["steps"] == s.steps and result["profile"] == "smoke"
    assert set(result["summary"]) == {"LSTM", "SGD", "RMSprop", "Adam", "NAG"}
    assert all(len(c) == s.steps + 1 for c in result["mean_curves"].values())


def test_evaluate_a_shipped_name_with_fewer_steps(capsys):
    assert main(["evaluate", "quadratic", "--profile", "smoke", "--steps", "5", "--n", "1", "--device", "cpu",
                 "--no-progress"]) == 0
    assert "5 steps, 1 test problems" in capsys.readouterr().out


@pytest.mark.parametrize("argv, match", [
    (["evaluate", "no-such-optimizer", "--profile", "smoke"], "no trained optimizer named 'no-such-optimizer'"),
    (["evaluate", "missing/lstm.safetensors", "--profile", "smoke"], "no optimizer checkpoint"),
    (["train", "resnet"], "invalid choice"),
    (["train", "quadratic", "--max-minutes", "0"], "positive number"),
    (["train", "quadratic", "--profile", "huge"], "invalid choice"),
    (["evaluate", "quadratic", "--steps", "0"], "positive integer"),
    (["evaluate"], "required"),
    ([], "required"),
    (["train", "mnist", "--profile", "smoke", "--only", "lstm", "--fresh"], "cannot go with --only"),
    (["train", "mnist", "--profile", "smoke", "--only", "lstm", "--fresh", "--only", "bad"], "cannot go with --only"),
    (["train", "general", "--profile", "smoke", "--only", "general", "no-such"], "no-such: not a training of"),
])
def test_user_errors_are_one_line_and_exit_2(argv, match, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("l2l: error: ") and match in lines[0], captured.err


def test_out_that_is_an_existing_file_is_an_error(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    assert main(["train", "quadratic", "--profile", "smoke", "--out", str(f)]) == 2
    assert "not a folder" in capsys.readouterr().err and f.read_text() == "keep me"


def test_python_dash_m_exits_2_with_one_line_and_no_traceback():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("L2L_TRACEBACK", None)
    result = subprocess.run([sys.executable, "-m", "l2l", "train", "nonsense"], capture_output=True, text=True,
                            cwd=REPO, env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("l2l: error: "), result.stderr
    assert "Traceback" not in result.stderr


def test_a_reader_that_goes_away_is_not_an_error(tmp_path):
    """`python -m l2l status art | head -n 3`: the pipe closes before the output is written."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "l2l", "status", "quadratic", "--profile", "smoke", "--out",
                             str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env)
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and err == b"", err  # 128 + SIGPIPE, as `head` leaves other programs


def test_help_explains_every_option():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subparsers.choices) == {"train", "compare", "evaluate", "run", "status", "list"}
    for name, sub in subparsers.choices.items():
        assert sub.description, name
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
        sub.format_help()  # every help string formats (no stray % signs)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["train", "--help"])
    assert exit_.value.code == 0


def test_sigterm_stops_a_training_with_its_state_saved_and_the_next_call_resumes(tmp_path, monkeypatch, capsys):
    import signal

    from l2l import meta
    from l2l.training_state import load_state
    real, calls = meta.train_on_problem, []

    def killed_in_the_second_epoch(*a, **k):  # `kill PID` from another shell, mid-epoch
        calls.append(1)
        if len(calls) == 4:  # (two problems an epoch)
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)

    monkeypatch.setattr(meta, "train_on_problem", killed_in_the_second_epoch)
    before = signal.getsignal(signal.SIGTERM)
    argv = ["train", "quadratic", "--profile", "smoke", "--device", "cpu", "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 130
    assert "l2l: interrupted: meta-training interrupted; its state at epoch 2 (1/2 problems done)" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back
    state = load_state(tmp_path / "state" / "lstm.pt")
    assert (state["epoch"], state["problem"]) == (2, 1)  # the problem in progress is redone
    monkeypatch.setattr(meta, "train_on_problem", real)
    assert main(argv) == 0 and (tmp_path / "lstm.safetensors").exists()
