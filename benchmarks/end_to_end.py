"""End to end: the MNIST chapter's meta-training at a profile, timed, beside the committed run's.

    python benchmarks/end_to_end.py                  # the paper profile (25 epochs of 20 problems)
    python benchmarks/end_to_end.py --profile quick

Runs exactly what the chapter's notebook runs to meta-train (`l2l.experiments.mnist.train` on the base
network, seed 0) and prints one JSON line: wall time, optimizee steps per second of meta-training, the
validation curve and the best validation loss, and the same figures read from `results/mnist/run.json`, the
committed chapter run, so a speed-up can be checked not to have changed what training finds. The two runs
agree statistically, not bit for bit (see the README, "Determinism on the CPU").
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import l2l
from l2l.device import describe_device, pick_device
from l2l.experiments import mnist

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "mnist" / "run.json"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="paper", choices=["paper", "quick", "smoke"])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    s = mnist.settings(args.profile, seed=0)
    t0 = time.perf_counter()
    _, history = mnist.train(s, mnist.base_family(s, device), progress=sys.stderr.isatty())
    wall = time.perf_counter() - t0
    steps = s.meta.epochs * s.meta.problems_per_epoch * s.meta.horizon
    row = {"figure": "end_to_end_mnist_meta_training", "profile": args.profile, "device": describe_device(device),
           "torch": torch.__version__, "l2l": l2l.__version__, "wall_time_s": round(wall, 1),
           "optimizee_steps_per_s": round(steps / wall, 1), "best_val": round(history.best_val, 3),
           "best_epoch": history.best_epoch, "val_loss": [round(v, 3) for v in history.val_loss],
           "skipped_unrolls": history.skipped_unrolls}
    if COMMITTED.exists():
        run = json.loads(COMMITTED.read_text())
        if run["profile"] == args.profile:
            m = run["meta_training"]
            row["committed"] = {"device": run["device"], "wall_time_s": round(m["wall_time_s"], 1),
                                "best_val": round(m["val_loss"][m["best_epoch"]], 3), "best_epoch": m["best_epoch"],
                                "val_loss": [round(v, 3) for v in m["val_loss"]]}
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
