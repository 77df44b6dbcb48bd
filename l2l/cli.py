"""The command line: `python -m l2l {train, compare, evaluate, run, status, list}`.

`train` calls the chapter's own `train` (`l2l.experiments.<chapter>`), the function its notebook calls, with the
same output folder, training states and seeds, so a run paused in one resumes in the other. `evaluate` tunes the
baselines and tests on the chapter's test problems with the chapters' `compare`; `run` executes the chapter's
notebook with papermill and the same parameters; `compare` computes a chapter's kept comparisons, sharing the
work with a `run` of the same chapter going at once.

Errors a user can fix (an unknown name, a missing file, a bad argument) end the program with one line on
stderr, `l2l: error: <message>`, and exit status 2; set L2L_TRACEBACK=1 to see the traceback instead.
`kill PID` (SIGTERM) stops a command the way Ctrl-C does: `train` saves the meta-training state first. (`run`'s
meta-training happens in the notebook's kernel, which papermill interrupts and shuts down: the state is saved at
the problem in progress, as with `train`.)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from .profiles import PROFILES

TASKS = ("quadratic", "mnist", "cifar", "art", "general")  # the chapters (l2l.experiments.<task>), book order
SHARED = ("art", "general")  # the chapters whose evaluation `compare` shares (their modules' `comparisons`)
NOTEBOOKS = {"quadratic": "01_quadratic", "mnist": "02_mnist", "cifar": "03_cifar", "art": "04_neural_art",
             "general": "05_general"}
# what each chapter's trained optimizer is for, as `list` says it
PURPOSE = {"quadratic": "reproduces the paper (3.1)", "mnist": "reproduces the paper (3.2)",
           "cifar": "reproduces the paper (3.3)", "art": "reproduces the paper (3.4)",
           "general": "your own models (chapter 5)"}


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


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


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
    commands = parser.add_subparsers(dest="command", metavar="{train,compare,evaluate,run,status,list}",
                                     required=True)

    def common(p, profile_help):
        p.add_argument("--profile", choices=PROFILES, default=None, help=profile_help)
        p.add_argument("--seed", type=int, default=0, help=(
            "seed of the run (default 0); training, validation and test problems are disjoint streams derived "
            "from it, exactly as in the notebooks"))
        p.add_argument("--device", default="auto", help=(
            "cpu, cuda, cuda:N, or auto (default: CUDA when available); an unavailable device is an error"))
        p.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    def resumable(p):
        p.add_argument("--max-minutes", type=positive_float, default=None, metavar="M", help=(
            "time budget: after M minutes, stop before the next problem (next epoch under torchrun) with the training "
            "state saved; running the same command again continues (default: no limit)"))
        p.add_argument("--fresh", action="store_true", help=(
            "forget the chapter's saved training states and kept comparisons (eval/) and start over (default: "
            "resume from them)"))

    train = commands.add_parser("train", help="meta-train a chapter's LSTM optimizer(s), resumably", description=(
        "Meta-train a chapter's learned optimizer(s) with a profile's settings: the same function the chapter's "
        "notebook calls. The full training state is saved after every epoch under OUT/state/, so an interrupted "
        "or paused run resumes exactly where it stopped, and a finished one is loaded, not repeated. The best "
        "validated optimizer is saved as OUT/lstm.safetensors (CIFAR: also lstm_one_shared and lstm_sub; general: "
        "OUT/general.safetensors and one file per ablation)."))
    train.add_argument("task", choices=TASKS, help=(
        "the chapter: quadratic (3.1), mnist (3.2), cifar (3.3), art (3.4), general (5, beyond the paper)"))
    common(train, "settings: paper (the paper's; hours on a CPU for mnist, cifar and art), quick (minutes) or "
                  "smoke (seconds); default $L2L_PROFILE, else paper")
    train.add_argument("--out", default=None, help=(
        "the chapter's output folder (default: the notebook's, results/<task> for paper, results/<task>/<profile> "
        "otherwise)"))
    resumable(train)
    train.add_argument("--only", nargs="+", default=None, metavar="NAME", help=(
        "run just these of the chapter's trainings (names as `status` lists them), e.g. to run two of them at once "
        "in two processes, one per core; each ends exactly as in a run of them all. MNIST's main optimizer and "
        "seeds need its search finished. Not with --fresh"))

    cmp = commands.add_parser("compare", help="compute a chapter's comparisons beside its run, on another core",
                              description=(
        "Compute the comparisons that a chapter's notebook evaluates (tuning the baselines, the test runs), kept "
        "in the eval/ folder of its outputs as the notebook keeps them, from the last to the first. Started beside "
        "`python -m l2l run CH` on the same machine (in another terminal, on another core), with the run's "
        "--profile, --seed and --device and the same environment (OMP_NUM_THREADS, L2L_FUSED), it takes the parts "
        "of the work that the run has not claimed, so the two get through the evaluation about twice as fast; the "
        "run uses everything kept, and the results are those of one process. Needs the chapter's trainings "
        "finished. Chapters art and general."))
    cmp.add_argument("task", choices=SHARED, help="the chapter: art or general")
    common(cmp, "the profile of the run it helps: paper, quick or smoke; default $L2L_PROFILE, else paper")
    cmp.add_argument("--out", default=None, help="the chapter's output folder (default: the notebook's)")

    run = commands.add_parser("run", help="execute a chapter's notebook with papermill", description=(
        "Execute the chapter's notebook (notebooks/NN_<chapter>.ipynb) with papermill and these parameters; its "
        "training resumes from and saves to the same states as `train`. A run paused by --max-minutes says so "
        "and exits 0: run the same command again to continue."))
    run.add_argument("task", choices=TASKS, help="the chapter: quadratic, mnist, cifar, art or general")
    common(run, "the notebook's profile parameter: paper, quick or smoke; default $L2L_PROFILE, else paper")
    resumable(run)
    run.add_argument("--output", default=None, help=(
        "where to write the executed notebook (default: out-<task>-<profile>.ipynb in the current folder)"))

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
                    help="optimizer steps per run (default: the profile's horizon, e.g. 100 for mnist at paper)")
    ev.add_argument("--n", type=positive_int, default=None, help=(
        "number of test problems (default: the profile's; a quadratic problem holds a batch of functions)"))
    ev.add_argument("--out", default=None, help="also write the results as JSON to this file")

    st = commands.add_parser("status", help="how far a chapter's resumable run has got", description=(
        "Show the saved training states of a chapter run (epochs done of planned, optimizee steps, best "
        "validation score, stages, wall time, and the hours left at its rate so far), the comparisons it has "
        "finished and kept, their compute time, and which of them were kept under code other than this library's "
        "(the next run recomputes those); reads files only. A running training's progress shows after its next "
        "epoch."))
    st.add_argument("task", choices=TASKS, help="the chapter: quadratic, mnist, cifar, art or general")
    st.add_argument("--profile", default=None, help="paper, quick or smoke; default $L2L_PROFILE, else paper")
    st.add_argument("--out", default=None, help="the chapter's output folder (default: the notebook's)")
    st.set_defaults(no_progress=True)

    lst = commands.add_parser("list", help="list the trained optimizers shipped with l2l", description=(
        "List the trained optimizers shipped with l2l, with the task and profile each was trained on and its "
        "validation score (summed loss over the horizon or final loss, as its chapter chooses; mean over "
        "validation problems)."))
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


def cmd_train(args) -> None:
    from . import distributed
    from .device import describe_device, pick_device
    from .meta import display_path
    from .results import results_dir
    from .experiments.chapter import check_only, paused_message

    module = chapter(args.task)
    s = module.settings(args.profile, args.seed)
    only = tuple(dict.fromkeys(args.only)) if args.only else None
    check_only(list(module.trainings(s)), only, args.fresh)
    if only and distributed.launched():  # every process of a torchrun job runs the same trainings
        raise ValueError("--only shares a chapter's trainings between processes run one by one; under torchrun "
                         "every process runs the same trainings: leave it out")
    device = pick_device(args.device)
    out = Path(args.out).expanduser() if args.out else results_dir(module.CHAPTER, s.profile)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is an existing file, not a folder")
    if distributed.launched() and device.type == "cuda" and device.index is None:  # torchrun: one GPU per process
        device = pick_device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    group = distributed.init(device)  # None unless started by torchrun
    try:
        if group is not None and group.rank > 0:  # rank 0 alone writes the outputs; the others write to scratch
            module.train(s, distributed.private_dir() / "out", device, max_minutes=args.max_minutes, progress=False,
                         fresh=args.fresh, only=only)
            return
        world = f", world size {group.world} ({distributed.backend()})" if group is not None else ""
        which = f" ({', '.join(only)} only)" if only else ""
        print(f"meta-training {args.task}{which}, profile {s.profile}, seed {args.seed}, "
              f"{describe_device(device)}{world}, outputs in {args.out or display_path(out)}")
        result = module.train(s, out, device, max_minutes=args.max_minutes, progress=not args.no_progress,
                              fresh=args.fresh, only=only)
    finally:
        distributed.shutdown()
    for t in result.all:
        h = t.history
        print(f"{t.name}: epoch {h.epochs_done} of {t.cfg.epochs}, {h.optimizee_steps:,} optimizee steps; best "
              f"validation {t.cfg.val_metric} loss {h.best_val:.4g} at epoch {h.best_epoch} "
              f"(untrained {h.val_loss[0]:.4g}); {h.wall_time_s:.0f} s in all")
    if not result.complete:
        print(paused_message(result.all))
        return
    written = [out / f"{t.name}.safetensors" for t in result.all if (out / f"{t.name}.safetensors").exists()]
    if written:  # (MNIST's search candidates write none)
        print(f"wrote {', '.join(map(str, written)) if args.out else ', '.join(map(display_path, written))}")


def cmd_compare(args) -> None:
    import time

    from .device import describe_device, pick_device
    from .experiments.chapter import require_finished
    from .experiments.common import seeds
    from .fileio import CLAIMS_WORK
    from .meta import display_path
    from .results import results_dir

    if not CLAIMS_WORK:
        raise ValueError("compare shares work through file locks (flock), which this system lacks")
    module = chapter(args.task)
    s = module.settings(args.profile, args.seed)
    device = pick_device(args.device)
    out = Path(args.out).expanduser() if args.out else results_dir(module.CHAPTER, s.profile)
    require_finished(out, module.trainings(s), f"python -m l2l compare {args.task}",
                     how=f"run `python -m l2l train {args.task}` (same --profile and --seed) first")
    trained = module.train(s, out, device, progress=False)  # finished: loads them
    computations = module.comparisons(s, trained, seeds(args.seed), device, out, progress=not args.no_progress)
    names = list(computations)[::-1]
    print(f"computing {args.task}'s comparisons, last to first ({'; '.join(names)}): profile {s.profile}, seed "
          f"{args.seed}, {describe_device(device)}, kept in {args.out or display_path(out)}/eval")
    for name in names:
        started = time.perf_counter()
        computations[name]()
        print(f"{name}: kept ({(time.perf_counter() - started) / 60:.1f} min here)", flush=True)


KERNEL_SHUTDOWN_S = 120.0  # jupyter_client's shutdown_wait_time: SIGTERM at half of it, SIGKILL at its end


def local_kernel_manager(folder: str):
    """A kernel manager class whose kernel talks over Unix sockets in `folder`, not over unencrypted TCP on
    localhost (which ipykernel warns about at every start, and which any local user could connect to)."""
    from jupyter_client.manager import AsyncKernelManager

    class LocalKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.transport, self.ip = "ipc", os.path.join(folder, "kernel")
            # On Ctrl-C or SIGTERM, papermill shuts the kernel down, which interrupts it first: a meta-training in
            # the running cell then saves its state at the problem in progress. jupyter_client terminates the
            # kernel at half this wait, so that gives it a minute (a 128-px neural-art step takes seconds); an
            # idle kernel exits at once.
            self.shutdown_wait_time = KERNEL_SHUTDOWN_S

    return LocalKernelManager


def cmd_run(args) -> None:
    import papermill

    from .meta import display_path
    from .results import repo_root

    module = chapter(args.task)
    s = module.settings(args.profile, args.seed)  # checks the profile and seed before a kernel starts
    notebook = repo_root() / "notebooks" / f"{NOTEBOOKS[args.task]}.ipynb"
    output = Path(args.output or f"out-{args.task}-{s.profile}.ipynb")
    params = {"profile": s.profile, "seed": args.seed, "device": args.device, "max_minutes": args.max_minutes,
              "fresh": args.fresh}
    print(f"executing {display_path(notebook)} with {params} into {output}")
    with tempfile.TemporaryDirectory(prefix="l2l-kernel-") as sockets:
        extra = {"kernel_manager_class": local_kernel_manager(sockets)} if os.name == "posix" else {}
        papermill.execute_notebook(str(notebook), str(output), parameters=params, cwd=str(notebook.parent),
                                   progress_bar=not args.no_progress, log_output=False, **extra)
    paused = [line for cell in json.loads(output.read_text())["cells"] for o in cell.get("outputs", [])
              for line in "".join(o.get("text", "")).splitlines() if line.startswith("paused at ")]
    print(paused[0] if paused else f"finished: {output}")


def cmd_evaluate(args) -> None:
    from . import trained
    from .device import describe_device, pick_device
    from .evaluate import summarize
    from .experiments.common import compare, seeds
    from .results import save_json

    device = pick_device(args.device)
    lstm, meta = trained.load(args.checkpoint, device=device)
    info = meta.get("info", {})
    task = args.task or info.get("task")
    if task is None:
        raise ValueError(f"{args.checkpoint} does not say which task it was trained on; pass --task")
    if task == "general":
        raise ValueError(f"{args.checkpoint} was trained for networks of your own: its chapter's held-out tests judge "
                         "it (python -m l2l run general); pass --task quadratic, mnist, cifar or art to test it on a "
                         "paper chapter's problems")
    module = chapter(task)
    s = module.settings(args.profile, args.seed)
    steps = args.steps or s.steps
    n_test = args.n or s.n_test
    run_seeds = seeds(args.seed)
    test = module.test_family(s, device)
    print(f"evaluating {args.checkpoint} (trained on {info.get('task', '?')}, profile {info.get('profile', '?')}) "
          f"on {task}'s test problems ({test_description(test)}): profile {s.profile}, {steps} steps, {n_test} test "
          f"problems, seed {args.seed}, {describe_device(device)}")
    curves, tuning, _ = compare(lstm, test, steps, n_tune=s.n_tune, n_test=n_test, seeds=run_seeds,
                               tune_family=module.tune_family(s, device), grid=s.lr_grid,
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


def test_description(family) -> str:
    """Which problems a family's tests are: its data split (MNIST/CIFAR), its photos (art), or fresh functions."""
    split = getattr(family, "split", None)
    if split:
        return f"{type(family).__name__}, {split} split"
    name = getattr(family, "name", "")
    return f"{type(family).__name__} {name}" if name else f"fresh {type(family).__name__} problems"


def cmd_status(args) -> None:
    from .experiments.chapter import progress
    from .meta import display_path
    from .profiles import resolve_profile
    from .paper import duration
    from .experiments.common import current_code_prefixes
    from .results import kept_summary, results_dir

    module = chapter(args.task)
    s = module.settings(args.profile)
    out = Path(args.out).expanduser() if args.out else results_dir(module.CHAPTER, s.profile)
    print(f"{args.task}, profile {s.profile}, in {args.out or display_path(out)}")
    if not (out / "state").is_dir():
        print(f"no training states in {display_path(out / 'state')}: nothing started (or --fresh cleared them)")
    print(table(progress(module.trainings(s), out)))
    summary = kept_summary(out, current_code_prefixes())
    kept = summary.states
    done = [name for name, state in kept.items() if state == "finished"]
    # (reused by the next run only while φ, the settings, the seeds and the code are those they were kept under)
    print(f"finished comparisons kept: {', '.join(done) if done else 'none'}")
    under_way = {name: ["unreadable"] if state == "unreadable" else state
                 for name, state in kept.items() if state != "finished"}
    if under_way:  # stopped midway: these parts are kept, the rest is computed by the next run
        print("comparisons under way, parts kept: " + "; ".join(
            f"{name} ({', '.join(parts)})" for name, parts in under_way.items()))
    if kept:
        seconds = summary.seconds
        print(f"compute time of the kept comparisons: "
              f"{duration(seconds) if seconds else 'not recorded (kept before comparisons were timed)'}")
    if summary.other_code:
        every = "all of them" if len(summary.other_code) == len(kept) else ", ".join(summary.other_code)
        print(f"kept under code other than this library's, so the next run recomputes them: {every}")


def describe_architecture(arch: dict) -> str:
    """One line for `list`: the paper's LSTMs (name, size, input, output scale), or RNNprop's."""
    if arch.get("kind") == "rnnprop":
        c = arch["config"]
        return (f"RNNprop ({c['layers']}x{c['hidden']}, inputs ∇ and momentum at β1 = "
                f"{', '.join(f'{b:g}' for b in c['beta1'])} over √v̂, step ≤ lr·{c['alpha']:g})")
    return ", ".join(f"{k} ({c['layers']}x{c['hidden']}, {'log/sign' if c['preprocess'] else 'raw'} "
                     f"input, scale {c['output_scale']:g})" for k, c in arch["nets"].items())


def cmd_list(args) -> None:
    from . import trained

    shipped = trained.available()
    if not shipped:
        print(f"no trained optimizers are shipped in {trained.DIR}")
        return
    rows = []
    for name, meta in shipped.items():
        info = meta.get("info", {})
        arch = meta["architecture"]
        val = info.get("val_loss")
        rows.append({
            "name": name, "for": PURPOSE.get(info.get("task"), "?"), "task": info.get("task", "?"),
            "profile": info.get("profile", "?"),
            "epoch": info.get("epoch", "?"),
            "val loss": (f"{val:.4g} ({info.get('val_metric', 'summed')})"
                         if isinstance(val, (int, float)) and math.isfinite(val) else "?"),
            "LSTMs": describe_architecture(arch),
            "l2l": meta.get("l2l_version", "?"),
        })
    print(table(rows))
    general = ("\"general\" is meta-trained on a mixture of small networks for use on yours; on chapter 5's unseen "
               "networks it beat Adam at its default rate on MLPs but not on CNNs, and tuned Adam on none, so compare "
               "it with a tuned Adam on your model" if "general" in shipped
               else "one for your own models (chapter 5, \"general\") is not shipped yet")
    print(f"use one with: l2l.LearnedOptimizer(model.parameters(), optimizer=NAME). The paper's optimizers "
          f"reproduce its experiments and fail on networks unlike their task's (the paper's own finding); {general}. "
          "val loss = the validation score the optimizer was chosen by: summed over the training horizon, or final "
          "(at its last step)")


COMMANDS = {"train": cmd_train, "compare": cmd_compare, "evaluate": cmd_evaluate, "run": cmd_run,
            "status": cmd_status, "list": cmd_list}


def one_line(error: BaseException) -> str:
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(str(message).split()) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, 1 for a failed run, 2 for a user error)."""
    debug = os.environ.get("L2L_TRACEBACK") == "1"
    previous = stop_on_sigterm()
    try:
        args = build_parser().parse_args(argv)
        COMMANDS[args.command](args)
        sys.stdout.flush()  # here, so that a reader gone away (a broken pipe) is caught below, not at exit
    except BrokenPipeError:  # the reader went away (`python -m l2l status art | head`): no traceback, no message
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 128 + signal.SIGPIPE  # as a program that SIGPIPE ends
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
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM; meta-training says where its state was saved
        print(f"l2l: interrupted{': ' + one_line(e) if e.args else ''}", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def stop_on_sigterm():
    """Make SIGTERM raise KeyboardInterrupt, as Ctrl-C does, so that `kill PID` stops a meta-training with its
    state saved at the problem in progress. A run started in the background by a script needs this: its shell
    ignores SIGINT for it. Returns the previous handler (None where signals cannot be set: not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)
