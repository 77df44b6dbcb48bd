"""What every chapter's training does the same way: resumable meta-trainings under one time budget.

A chapter run may hold several meta-trainings (CIFAR's two-LSTM optimizer, its one-LSTM ablation and LSTM-sub;
MNIST's learning-rate search, its main optimizer and two more seeds). Each keeps its full training state in
`<results>/state/<name>.pt`, written atomically after every epoch, so running the same notebook or CLI command
again resumes where the last one stopped and a finished training is loaded, not repeated. One budget
(`max_minutes`) covers them all: when it is spent the current training stops before its next problem with its
state saved (within an epoch if need be: an epoch of neural art takes about 25 minutes; under torchrun at the next
epoch), and the chapter says it paused.
"""
from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..checkpoint import save_optimizer
from ..meta import History, MetaTrainConfig, meta_train


class Budget:
    """Minutes left of a chapter run's time budget (None: no limit)."""

    def __init__(self, max_minutes: float | None = None):
        if max_minutes is not None and not max_minutes > 0:
            raise ValueError(f"max_minutes must be a positive number of minutes (or None), got {max_minutes!r}")
        self.deadline = None if max_minutes is None else time.perf_counter() + 60 * max_minutes

    def spent(self) -> bool:
        return self.deadline is not None and time.perf_counter() >= self.deadline


@dataclass
class Trained:
    """One meta-training of a chapter: the optimizer (holding its best validated φ) and its history."""

    name: str
    optimizer: object
    history: History
    cfg: MetaTrainConfig

    @property
    def complete(self) -> bool:
        return self.history.complete(self.cfg)

    def progress_line(self) -> str:
        return (f"{self.name}: epoch {self.history.epochs_done} of {self.cfg.epochs} "
                f"({self.history.optimizee_steps:,} of {planned_steps(self.cfg):,} optimizee steps)")


@dataclass
class Trainings:
    """A chapter's meta-trainings by name, in the order they run; complete when all the planned ones are."""

    planned: tuple[str, ...]
    done: dict[str, Trained]

    def __getitem__(self, name: str) -> Trained:
        return self.done[name]

    @property
    def all(self) -> list[Trained]:
        return list(self.done.values())

    @property
    def complete(self) -> bool:
        return all(n in self.done and self.done[n].complete for n in self.planned)

    def record(self) -> dict:
        """run.json's "meta_training": each training's history (stages, curve, budget) by name."""
        return {name: {**asdict(t.history), "config": asdict(t.cfg)} for name, t in self.done.items()}


def train_all(plan: list[tuple], out: Path, budget: Budget, only: tuple[str, ...] | None = None,
              **common) -> Trainings:
    """Run the trainings of `plan` — (name, make_optimizer, family, cfg, {extra chapter.train arguments}) — in
    order, stopping at the first that the budget pauses. only: run just these of them (each chapter's `train`
    has checked it first, with `prepare`)."""
    plan = [p for p in plan if only is None or p[0] in only]
    result = Trainings(tuple(p[0] for p in plan), {})
    for name, make_optimizer, family, cfg, extra in plan:
        result.done[name] = train(name, make_optimizer, family, cfg, out, budget, **common, **extra)
        if not result.done[name].complete:
            break
    return result


def check_only(names, only: tuple[str, ...] | None, fresh: bool = False) -> None:
    """`only` (the CLI's --only) must name trainings of the chapter, and cannot go with `fresh`, which forgets
    every training's state. Each training has its own state file, so two processes may run disjoint sets of a
    chapter's trainings at once (one per core) and end exactly where one process running them all in order would;
    nothing stops two processes from running the same one, which would overwrite each other's state."""
    if only is None:
        return
    if fresh:
        raise ValueError("--fresh forgets all of the chapter's training states; it cannot go with --only")
    unknown = [n for n in only if n not in names]
    if unknown or not only:
        raise ValueError(f"--only {' '.join(unknown) or '(nothing)'}: not a training of this chapter; its trainings "
                         f"are {', '.join(names)}")


def prepare(out: Path, names, only: tuple[str, ...] | None, fresh: bool) -> None:
    """What every chapter's `train` does first: check `only` (and `fresh` with it), then, for `fresh`, forget the
    saved states and kept comparisons; so a mistake is refused before anything is cleared or trained."""
    check_only(list(names), only, fresh)
    if fresh:
        clear_states(out)


def require_finished(out: Path, needed: dict, needed_by: str, how: str | None = None) -> None:
    """Trainings that others depend on (MNIST's search: its best candidate is continued as `lstm`, and its meta
    learning rate is the seeds') must be finished before those run without them (--only). needed: {name:
    MetaTrainConfig}; a one-line error names each unfinished one and how far it is, and says `how` to finish
    them (default: with --only or without)."""
    from ..training_state import load_state

    behind = {}
    for name, cfg in needed.items():
        path = state_path(out, name)
        done = load_state(path)["history"]["epochs_done"] if path.exists() else 0
        if done < cfg.epochs:
            behind[name] = f"{name} (epoch {done} of {cfg.epochs})"
    if behind:
        how = how or f"train it first (--only {' '.join(behind)}, or without --only)"
        raise ValueError(f"{needed_by} needs {', '.join(behind.values())} finished: {how}")


def stop_if_paused(trainings) -> None:
    """For notebooks: if the chapter's trainings paused on their time budget, print the one line that says so and
    make the rest of the notebook a no-op (no figures from a half-trained optimizer)."""
    if not trainings.complete:
        print(paused_message(trainings.all))
        skip_remaining_cells()


def state_path(out: Path, name: str) -> Path:
    return Path(out) / "state" / f"{name}.pt"


def new_lstm(make_optimizer, seed: int, device="cpu"):
    """A fresh optimizer whose φ₀ depends on `seed` alone, never on what the process drew before (VGG loads,
    earlier trainings): it is built under a forked RNG seeded with `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make_optimizer(device)


def train(name: str, make_optimizer, family, cfg: MetaTrainConfig, out: Path, budget: Budget, *, device="cpu",
          val_family=None, checkpoint: bool = True, info: dict | None = None, progress: bool = True,
          start_from: Path | None = None) -> Trained:
    """Meta-train (or resume, or load when finished) the chapter's training `name` with state in out/state/.

    φ₀ comes from cfg.seed (see new_lstm). checkpoint: also save the best φ to out/<name>.safetensors.
    start_from: a state file to copy as this training's starting point when it has none yet (a search candidate
    continued to the full budget: only `epochs` may differ).
    """
    path = state_path(out, name)
    if start_from is not None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(start_from, path)
    lstm = new_lstm(make_optimizer, cfg.seed, device)
    history = meta_train(lstm, family, cfg, val_family=val_family, progress=progress, state_path=path,
                         stop_when=budget.spent)
    trained = Trained(name, lstm, history, cfg)
    if checkpoint and trained.complete:  # the best validated φ, with how it was chosen
        save_optimizer(lstm, Path(out) / f"{name}.safetensors", epoch=history.best_epoch,
                       val_loss=history.best_val, val_metric=cfg.val_metric,
                       optimizee_steps=history.optimizee_steps, config=asdict(cfg), **(info or {}))
    return trained


def planned_steps(cfg) -> int:
    """Optimizee steps a meta-training of config `cfg` (a MetaTrainConfig or its asdict) takes in all: its epochs ×
    problems × horizon, each epoch at its curriculum stage's horizon."""
    c = cfg if isinstance(cfg, dict) else asdict(cfg)
    stages = c.get("curriculum") or ()
    staged = sum(e for _, e in stages)
    return c["problems_per_epoch"] * (sum(h * e for h, e in stages) + (c["epochs"] - staged) * c["horizon"])


def progress(planned: dict, out: Path) -> list[dict]:
    """How far a chapter run has got: one row per meta-training, those of `planned` ({name: MetaTrainConfig}, the
    module's `trainings(s)`) in their order, then any other state saved in out/state/; read from the states only.
    "hours left" extrapolates a training's hours so far by optimizee steps (`hours_left`)."""
    from ..training_state import load_state

    saved = {p.stem: p for p in sorted((Path(out) / "state").glob("*.pt"))}
    rows = []
    for name in [*planned, *(n for n in saved if n not in planned)]:
        if name not in saved:
            rows.append({"training": name, "epochs": f"0 of {planned[name].epochs}",
                         "optimizee steps": f"0 of {planned_steps(planned[name]):,}", "best validation loss": "–",
                         "stages": 0, "hours": "0.0", "hours left": "–"})
            continue
        state = load_state(saved[name])
        h, cfg = state["history"], state["config"]
        best = (f"{h['val_loss'][h['val_epochs'].index(h['best_epoch'])]:.4g} ({cfg.get('val_metric', 'summed')}, "
                f"epoch {h['best_epoch']})" if h.get("val_epochs") and h["best_epoch"] in h["val_epochs"] else "–")
        rows.append({"training": name, "epochs": f"{h['epochs_done']} of {cfg['epochs']}",
                     "optimizee steps": f"{h['optimizee_steps']:,} of {planned_steps(cfg):,}",
                     "best validation loss": best, "stages": len(h.get("stages", [])),
                     "hours": f"{h['wall_time_s'] / 3600:.1f}", "hours left": hours_left(h, cfg)})
    return rows


def hours_left(history: dict, cfg: dict) -> str:
    """A training's remaining hours at its rate so far, "–" before its first step. An epoch's cost, training and
    validation alike, grows with its horizon as its optimizee steps do, so the rate holds across a curriculum's
    stages; not across machines or loads: an estimate for planning stages."""
    done, planned = history["optimizee_steps"], planned_steps(cfg)
    if history["epochs_done"] >= cfg["epochs"] or done >= planned:
        return "0.0"
    return f"{history['wall_time_s'] / done * (planned - done) / 3600:.1f}" if done else "–"


def clear_states(out: Path) -> None:
    """Forget every training state and kept comparison of a chapter run (--fresh / fresh=True): the next run
    starts over."""
    shutil.rmtree(Path(out) / "state", ignore_errors=True)
    shutil.rmtree(eval_dir(out), ignore_errors=True)


def eval_dir(out: Path) -> Path:
    """Where a chapter run keeps its finished comparisons (common.compare's cache), one file each."""
    return Path(out) / "eval"


def log_uniform(low: float, high: float, n: int, seed: int) -> tuple[float, ...]:
    """n values drawn log-uniformly from [low, high] (random search), rounded to 3 significant digits."""
    u = torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    values = torch.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    return tuple(float(f"{v:.3g}") for v in values.tolist())


def paused_message(trainings: list[Trained]) -> str:
    """One line for a chapter run that stopped on its time budget."""
    todo = [t for t in trainings if not t.complete]
    where = "; ".join(t.progress_line() for t in todo)
    return f"paused at {where}; run the same command again to continue"


def skip_remaining_cells() -> None:
    """In a notebook, turn every later cell into a no-op, so a paused run ends without error and without figures
    from a half-trained optimizer. Outside IPython (the CLI, scripts) it does nothing."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.input_transformers_post.append(lambda lines: ["pass\n"])


__all__ = ["Budget", "Trained", "Trainings", "train", "train_all", "check_only", "prepare", "require_finished", "stop_if_paused",
           "clear_states", "log_uniform", "paused_message", "skip_remaining_cells", "new_lstm", "state_path"]
