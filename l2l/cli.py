"""The command line: `python -m l2l {train, evaluate, list}`.

Each command calls the same chapter functions as the notebooks (`l2l.experiments.<task>`: settings,
base_family, train) and the same library functions (`tune_baselines`, `evaluate_all`, `summarize`), with
the same seeds, so `evaluate` at the paper profile reproduces the chapter's test table.

Errors a user can fix (an unknown name, a missing file, a bad argument) end the program with one line on
stderr, `l2l: error: <message>`, and exit status 2; set L2L_TRACEBACK=1 to see the traceback instead.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from .profiles import PROFILES

TASKS = ("quadratic", "mnist")  # the chapters with a `train` step (l2l.experiments.<task>)


class UsageError(Exception):
    """A bad command line; reported in one line like the library's own errors."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message and exits; we want one line, from main()
        raise UsageError(f"{message} (see: python -m l2l {self._subcommand()}--help)")

    def _subcommand(self) -> str:
        name = self.prog.split()[-1]
        return "" if name == "l2l" else f"{name} "


def chapter(task: str):
    """The chapter module of `task` (l2l.experiments.quadratic, ...)."""
    import importlib

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return importlib.import_module(f"l2l.experiments.{task}")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> Parser:
    parser = Parser(prog="python -m l2l", description=(
        "Meta-train, evaluate and list learned optimizers (Andrychowicz et al., 2016, 'Learning to learn by "
        "gradient descent by gradient descent')."), epilog=(
        "Environment: L2L_DATA (data root with MNIST/raw/, default ./data), L2L_CACHE (decoded-data cache), "
        "L2L_PROFILE (default profile), L2L_TRACEBACK=1 (show tracebacks instead of one-line errors)."))
    commands = parser.add_subparsers(dest="command", metavar="{train,evaluate,list}", required=True)

    def common(p, profile_help):
        p.add_argument("--profile", choices=PROFILES, default=None, help=profile_help)
        p.add_argument("--seed", type=int, default=0, help=(
            "seed of the run (default 0); training, validation and test problems are disjoint streams derived "
            "from it, exactly as in the notebooks"))
        p.add_argument("--device", default="auto", help=(
            "cpu, cuda, cuda:N, or auto (default: CUDA when available); an unavailable device is an error"))
        p.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    train = commands.add_parser("train", help="meta-train an LSTM optimizer on a chapter's task", description=(
        "Meta-train the paper's coordinatewise LSTM on a chapter's task with a profile's settings (the same "
        "function the chapter's notebook calls) and save the best validated optimizer as a checkpoint."))
    train.add_argument("task", choices=TASKS, help="the chapter's task: quadratic (section 3.1) or mnist (3.2)")
    common(train, "settings: paper (the paper's; a GPU helps for mnist), quick (minutes on a CPU) or smoke "
                  "(seconds); default $L2L_PROFILE, else paper")
    train.add_argument("--out", default=".", help=(
        "where to write the checkpoint: a .safetensors file, or a folder that gets <task>.safetensors "
        "(default: the current folder); it is rewritten whenever validation improves"))
    train.add_argument("--state", default=None, metavar="PATH", help=(
        "save the whole training state to PATH after every epoch and on Ctrl-C; running the same command "
        "again resumes from it exactly (a different task, profile or seed is refused)"))

    ev = commands.add_parser("evaluate", help="compare a trained optimizer with tuned SGD/RMSprop/Adam/NAG",
                             description=(
        "Tune SGD, RMSprop, Adam and NAG (learning rate by final validation loss, as in the chapters), then run "
        "them and the trained optimizer on the same test problems and print the mean final and summed loss "
        "with 95% confidence half-widths."))
    ev.add_argument("checkpoint", help="a shipped optimizer's name (see: python -m l2l list) or a .safetensors path")
    ev.add_argument("--task", choices=TASKS, default=None, help=(
        "the problems to test on (default: the task the optimizer was trained on, from its metadata)"))
    common(ev, "settings of the test (number of tuning and test problems, steps): paper, quick or smoke; "
               "default $L2L_PROFILE, else paper")
    ev.add_argument("--steps", type=positive_int, default=None,
                    help="optimizer steps per run (default: the profile's horizon, 100 at paper)")
    ev.add_argument("--n", type=positive_int, default=None, help=(
        "number of test problems (default: the profile's; a quadratic problem holds a batch of functions)"))
    ev.add_argument("--out", default=None, help="also write the results as JSON to this file")

    lst = commands.add_parser("list", help="list the trained optimizers shipped with l2l", description=(
        "List the trained optimizers shipped with l2l, with the task and profile each was trained on and its "
        "validation meta-loss (summed loss over the horizon, mean over validation problems)."))
    lst.set_defaults(no_progress=True)
    return parser


def table(rows: list[dict]) -> str:
    """Plain-text table with aligned columns."""
    if not rows:
        return ""
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    line = lambda r: "  ".join(str(r[c]).ljust(width[c]) for c in cols).rstrip()  # noqa: E731
    return "\n".join([line({c: c for c in cols}), line({c: "-" * width[c] for c in cols}), *map(line, rows)])


def checkpoint_path(out: str, task: str) -> Path:
    out = Path(out).expanduser()
    if out.suffix == ".safetensors":
        return out
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is an existing file that is not a .safetensors checkpoint")
    return out / f"{task}.safetensors"


def cmd_train(args) -> None:
    from .device import describe_device, pick_device

    module = chapter(args.task)
    s = module.settings(args.profile, args.seed)
    device = pick_device(args.device)
    path = checkpoint_path(args.out, args.task)
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"meta-training on {args.task}, profile {s.profile}, seed {args.seed}, {describe_device(device)}")
    print(s.meta)
    fam = module.base_family(s, device)
    _, history = module.train(s, fam, checkpoint=path, progress=not args.no_progress, state_path=args.state,
                              info={"command": "python -m l2l " + " ".join(sys.argv[1:])})
    print(f"best validation meta-loss {history.best_val:.4g} at epoch {history.best_epoch} "
          f"(untrained: {history.val_loss[0]:.4g}); {history.wall_time_s:.0f} s")
    print(f"wrote {path}")


def cmd_evaluate(args) -> None:
    from . import trained
    from .baselines import tune_baselines
    from .device import describe_device, pick_device
    from .evaluate import evaluate_all, summarize
    from .experiments.common import seeds
    from .results import save_json

    device = pick_device(args.device)
    lstm, meta = trained.load(args.checkpoint, device=device)
    info = meta.get("info", {})
    task = args.task or info.get("task")
    if task is None:
        raise ValueError(f"{args.checkpoint} does not say which task it was trained on; pass --task")
    module = chapter(task)
    s = module.settings(args.profile, args.seed)
    steps = args.steps or s.steps
    n_test = args.n or s.n_test
    run_seeds = seeds(args.seed)
    print(f"evaluating {args.checkpoint} (trained on {info.get('task', '?')}, profile {info.get('profile', '?')}) "
          f"on {task}: profile {s.profile}, {steps} steps, {n_test} test problems, seed {args.seed}, "
          f"{describe_device(device)}")
    fam = module.base_family(s, device)
    tuning = tune_baselines(fam, steps=steps, n_problems=s.n_tune, seed=run_seeds["validation"],
                            progress=not args.no_progress)
    optimizers = {"LSTM": lstm, **{name: tuning.make(name) for name in tuning.rates}}
    curves = evaluate_all(optimizers, fam, steps=steps, n_problems=n_test, seed=run_seeds["test"],
                          progress=not args.no_progress)
    summary = summarize(curves)
    rows = [{"optimizer": name, "learning rate": "learned" if name == "LSTM" else f"{tuning.rates[name]:.3g}",
             "final loss": f"{r['final']:.4g} ± {r['final_ci']:.2g}",
             "summed loss": f"{r['summed']:.4g} ± {r['summed_ci']:.2g}"} for name, r in summary.items()]
    print(table(rows))
    print(f"(mean over {curves['LSTM'].shape[0]} test curves; ± is the 95% confidence half-width; "
          "summed = loss summed over steps 1..T)")
    if args.out:
        save_json(Path(args.out), {
            "checkpoint": str(args.checkpoint), "checkpoint_info": info, "task": task, "profile": s.profile,
            "seed": args.seed, "seeds": run_seeds, "steps": steps, "n_test": n_test,
            "device": describe_device(device), "tuned_rates": tuning.rates, "summary": summary,
            "mean_curves": {name: c.double().mean(0).tolist() for name, c in curves.items()},
        })
        print(f"wrote {args.out}")


def cmd_list(args) -> None:
    from . import trained

    shipped = trained.available()
    if not shipped:
        print(f"no trained optimizers are shipped in {trained.DIR}")
        return
    rows = []
    for name, meta in shipped.items():
        info = meta.get("info", {})
        nets = meta["architecture"]["nets"]
        val = info.get("val_loss")
        rows.append({
            "name": name, "task": info.get("task", "?"), "profile": info.get("profile", "?"),
            "epoch": info.get("epoch", "?"),
            "val loss": f"{val:.4g}" if isinstance(val, (int, float)) and math.isfinite(val) else "?",
            "LSTMs": ", ".join(f"{k} ({c['layers']}x{c['hidden']}, {'log/sign' if c['preprocess'] else 'raw'} "
                               f"input, scale {c['output_scale']:g})" for k, c in nets.items()),
            "l2l": meta.get("l2l_version", "?"),
        })
    print(table(rows))
    print("use one with: l2l.LearnedOptimizer(model.parameters(), optimizer=NAME); "
          "val loss = validation loss summed over the training horizon")


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "list": cmd_list}


def one_line(error: BaseException) -> str:
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(str(message).split()) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, 1 for a failed run, 2 for a user error)."""
    debug = os.environ.get("L2L_TRACEBACK") == "1"
    try:
        args = build_parser().parse_args(argv)
        COMMANDS[args.command](args)
    except (UsageError, ValueError, KeyError, OSError) as e:
        if debug:
            raise
        print(f"l2l: error: {one_line(e)}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # e.g. meta-training diverged, a corrupt dataset, CUDA out of memory
        if debug:
            raise
        print(f"l2l: error: {one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("l2l: interrupted", file=sys.stderr)
        return 130
    return 0
