"""Processes sharing a kept comparison (`python -m l2l compare` beside `run`): `fileio.claim` and `common.Parts`."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from l2l.experiments import common
from l2l.fileio import claim

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="claims need flock")

# One of two processes computing the same kept result of six independent parts. Each waits at its first part
# until both have started, so that they overlap however slowly they start; each part logs who computed it.
SHARER = textwrap.dedent("""
    import os, sys, time, torch
    from pathlib import Path
    from l2l.experiments import common
    cache, folder = Path(sys.argv[1]), Path(sys.argv[2])
    (folder / f"ready-{os.getpid()}").touch()

    def work(name):
        deadline = time.time() + 60
        while len(list(folder.glob("ready-*"))) < 2 and time.time() < deadline:
            time.sleep(0.05)
        with open(folder / "log", "a") as f:
            f.write(f"{name} {os.getpid()}\\n")
        time.sleep(0.5)
        return torch.tensor([float(ord(name))])

    def run():
        part = common.Parts(cache, "key")
        return part.each({name: (lambda name=name: work(name)) for name in "abcdef"})

    value = common.kept(cache, "key", run)
    print(" ".join(f"{k}={v.item():g}" for k, v in value.items()))
""")


def test_two_processes_share_a_kept_computation_and_compute_each_part_once(tmp_path):
    cache = tmp_path / "eval" / "shared.pt"
    procs = [subprocess.Popen([sys.executable, "-c", SHARER, str(cache), str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    expected = " ".join(f"{c}={ord(c)}" for c in "abcdef")
    assert [out.strip() for out, _ in outputs] == [expected, expected]  # both get the whole result, in order
    log = [line.split() for line in (tmp_path / "log").read_text().splitlines()]
    assert sorted(name for name, _ in log) == list("abcdef")  # every part computed once, by one of them
    assert {pid for _, pid in log} == {str(p.pid) for p in procs}  # and both did some of the work
    saved = torch.load(cache, weights_only=True)
    assert saved["key"] == "key" and set(saved["seconds"]) == set("abcdef")
    assert [v.item() for v in saved["value"].values()] == [ord(c) for c in "abcdef"]


HOLDER = textwrap.dedent("""
    import sys, time
    from l2l.fileio import claim
    from pathlib import Path
    with claim(Path(sys.argv[1]) / "f.pt", "a test"):
        print("held", flush=True)
        time.sleep(120)
""")


def test_a_claim_is_exclusive_and_dies_with_its_process(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with claim(tmp_path / "f.pt", "a test", wait=False) as got:
            assert not got
        with claim(tmp_path / "f.pt", "another claim", wait=False) as got:
            assert got
    finally:
        holder.kill()  # SIGKILL: no chance to release it
        holder.wait()
    with claim(tmp_path / "f.pt", "a test", wait=False) as got:
        assert got


def test_a_result_kept_meanwhile_by_another_process_is_returned_not_recomputed(tmp_path):
    cache = tmp_path / "c.pt"

    def compute():
        part = common.Parts(cache, "key")
        part("first", lambda: 1)
        torch.save({"key": "key", "value": {"whole": 2}, "seconds": {}}, cache)  # the other process finished
        return part("second", lambda: pytest.fail("computed a part of a result already kept"))

    assert common.kept(cache, "key", compute) == {"whole": 2}


def test_parts_of_independent_tasks_come_back_in_their_order(tmp_path):
    part = common.Parts(tmp_path / "c.pt", "key")
    part("b", lambda: "kept first")
    assert part.each({"a": lambda: 1, "b": lambda: pytest.fail("recomputed"), "c": lambda: 3}) == {
        "a": 1, "b": "kept first", "c": 3}
    assert list(common.Parts(tmp_path / "c.pt", "key").done) == ["b", "a", "c"]


def test_a_file_in_use_under_another_key_is_not_overwritten(tmp_path):
    """Two processes on one file under different keys (compare started with another seed or device than the run)
    would destroy each other's parts in turn: the second to write stops with an error instead."""
    cache = tmp_path / "c.pt"
    with claim(cache, "in use", "the run's key", shared=True):  # the run, computing
        torch.save({"key": "the run's key", "parts": {"a": 1}, "seconds": {"a": 1.0}}, cache)
        with pytest.raises(RuntimeError, match="another process under other settings"):
            common.kept(cache, "another key", lambda: common.Parts(cache, "another key")("a", lambda: 2))
        assert torch.load(cache, weights_only=True)["parts"] == {"a": 1}
    # once nobody computes it, a file under another key is stale: recomputed and replaced, as always
    assert common.kept(cache, "another key", lambda: common.Parts(cache, "another key")("a", lambda: 2)) == 2
    assert torch.load(cache, weights_only=True)["key"] == "another key"
