"""What every chapter does the same way: its seeds, its test comparison (`compare`), and the record of its run."""
from __future__ import annotations

import ast
import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..baselines import BASELINES, LR_GRID, Tuning, tune_baselines
from ..evaluate import run_problems, summarize
from ..fileio import atomic_write, claim
from ..meta import VAL_SEED_OFFSET, History, display_path
from ..results import evaluation_seconds, save_curves, save_json, versions

TEST_SEED_OFFSET = 2_000_029


def seeds(seed: int) -> dict[str, int]:
    """Disjoint problem streams for one run: meta-training, validation (early stopping and baseline tuning), test."""
    return {"train": seed, "validation": seed + VAL_SEED_OFFSET, "test": seed + TEST_SEED_OFFSET}


def compare(learned, fam, steps: int, *, n_tune: int, n_test: int, seeds: dict, tune_family=None,
            final_metric=None, grid=LR_GRID, progress: bool = True, cache: Path | None = None,
            cache_key: dict | None = None):
    """Tune the four baselines on validation problems, then test them and the learned optimizer(s) on shared problems.

    learned: one optimizer (named "LSTM") or {name: optimizer}. Each baseline's learning rate is chosen from
    `grid` by mean final loss over `n_tune` validation problems of `tune_family` (default `fam`); then every
    optimizer runs the same `n_test` test problems of `fam` (same initialisations, same minibatches).
    final_metric(problem, θ_T), if given, is recorded for every test run (e.g. held-out accuracy).

    cache: a file that keeps the result, so a paper-scale chapter stopped during its (hours of) testing redoes
    only what it had not finished: each baseline's tuning and each optimizer's test runs are kept there as they
    finish (`Parts`), the whole result when it is done. It is reused only when everything the result depends on
    is the same: the learned φ, the families, steps, problem counts, seeds, grid and `cache_key` (what the
    caller's final_metric depends on, for instance). Otherwise it is recomputed and overwritten.
    Returns (curves {name: [n_test, steps + 1]}, tuning, final metrics {name: [n_test]}).
    """
    learned = learned if isinstance(learned, dict) else {"LSTM": learned}
    key = fingerprint(learned, fam, tune_family or fam, steps, n_tune, n_test, seeds, grid, final_metric, cache_key)

    def run() -> dict:
        def test(opt):
            return lambda: run_problems(opt, fam, steps, n_test, seeds["test"], final_metric=final_metric)

        tuning, tests = tune_and_test(Parts(cache, key), tune_family or fam, learned, test, progress, steps=steps,
                                      n_problems=n_tune, seed=seeds["validation"], grid=grid)
        return {"curves": {n: t[0] for n, t in tests.items()}, "rates": tuning.rates, "scores": tuning.scores,
                "finals": {n: t[1] for n, t in tests.items()}}

    result = kept(cache, key, run)
    return result["curves"], Tuning(result["rates"], result["scores"]), result["finals"]


def kept(cache: Path | None, key: str, compute):
    """compute()'s result (tensors, numbers, strings and containers of them), computed once and kept in the file
    `cache` under `key`, a digest of everything it depends on (`fingerprint`): a later call with the same key
    loads it, any other key recomputes and overwrites it. cache None: just compute(). compute may keep its
    parts in the same file as it goes (`Parts`), and share them with other processes computing the same result
    (`python -m l2l compare`); the whole result replaces them, and keeps their compute seconds (or its own, when
    it had no parts), since they may have been computed by several processes."""
    saved = _load(cache, key)
    if "value" in saved:
        return saved["value"]
    if cache is None:
        return compute()
    started = time.perf_counter()
    # held while computing, so that a process computing this file under another key can tell it is in use
    with claim(cache, "in use", key, shared=True):
        try:
            value = compute()
        except KeptMeanwhile as done:  # another process kept the whole result while this one was waiting
            if done.cache != cache:
                raise
            return done.value
        with _writing(cache, key) as saved:
            if "value" in saved:  # kept by another process meanwhile: the same result
                return saved["value"]
            seconds = saved.get("seconds") or {"all": time.perf_counter() - started}
            atomic_write(Path(cache), lambda tmp: torch.save({"key": key, "value": value, "seconds": seconds}, tmp))
    return value


def _load(cache: Path | None, key: str | None) -> dict:
    """What the file `cache` keeps under `key` ({"value"} or {"parts", "seconds"}); {} if nothing, or another key.
    key None: whatever it keeps, with its key."""
    if cache is None or not Path(cache).exists():
        return {}
    saved = torch.load(cache, weights_only=True)
    return saved if key is None or saved.get("key") == key else {}


@contextmanager
def _writing(cache: Path, key: str):
    """The one writer of `cache` at a time: yields what it keeps under `key`, read under the claim. Refuses to
    replace what another process is computing under another key (the same file from other settings: another
    seed, device or environment), which would destroy both processes' parts in turn."""
    with claim(cache, "file"):
        saved = _load(cache, None)
        other = saved.get("key")
        if other is not None and other != key:
            with claim(cache, "in use", other, wait=False) as unused:
                if not unused:
                    raise RuntimeError(
                        f"{display_path(cache)} is being computed by another process under other settings (its "
                        "profile, seed, device, environment or the library differ): stop one of them (python -m l2l "
                        "compare needs the --profile, --seed and --device of the run it helps)")
        yield saved if other == key else {}


class KeptMeanwhile(Exception):
    """Raised by `Parts` inside `kept`'s compute when another process has kept the whole result meanwhile."""

    def __init__(self, cache, value):
        super().__init__(f"{cache} was kept by another process")
        self.cache, self.value = cache, value


class Parts:
    """The finished parts of a kept computation (see `kept`), in its cache file under the same key: part(name,
    compute) returns the part kept under `name`, or computes it and writes it to the file at once, with the
    seconds it took. A run killed in the middle of an hour-long comparison then redoes only the part it was in.
    Each part must depend on nothing but the key and its name (every run here draws its problems from its own
    seeded generator), so that parts computed in different processes make the result of one uninterrupted run.

    Processes computing the same result at once share its parts: a process claims a part before computing it
    (`fileio.claim`), so no two compute the same one; `each` computes independent parts, those another process
    has claimed last, after waiting for them (usually kept by then); every write merges with the file's parts."""

    def __init__(self, cache: Path | None, key: str):
        self.cache, self.key = cache, key
        saved = _load(cache, key)
        self.done, self.seconds = dict(saved.get("parts", {})), dict(saved.get("seconds", {}))

    def __call__(self, name: str, compute):
        return self.each({name: compute})[name]

    def each(self, tasks: dict, desc: str | None = None) -> dict:
        """{name: compute()} for every {name: compute} of `tasks`, which must not depend on each other, each kept
        as a part. desc: label of a progress bar over the tasks (None: no bar)."""
        with tqdm(total=len(tasks), desc=desc, disable=desc is None, leave=False) as bar:
            claimed_elsewhere = []
            for name, compute in tasks.items():
                if self._take(name, compute, wait=False):
                    bar.update()
                else:
                    claimed_elsewhere.append(name)
            for name in claimed_elsewhere:
                self._take(name, tasks[name], wait=True)
                bar.update()
        return {name: self.done[name] for name in tasks}

    def _take(self, name: str, compute, wait: bool) -> bool:
        """Make sure part `name` is done: kept, or computed here under its claim. False only when not `wait` and
        another process holds the claim."""
        if name in self.done:
            return True
        if self.cache is None:
            self._compute(name, compute)
            return True
        with claim(self.cache, "part", self.key, name, wait=wait) as got:
            if not got:
                return False
            self._merge(_load(self.cache, self.key))
            if name not in self.done:
                self._compute(name, compute)
        return True

    def _merge(self, saved: dict) -> None:
        if "value" in saved:
            raise KeptMeanwhile(self.cache, saved["value"])
        self.done.update(saved.get("parts", {}))
        self.seconds.update(saved.get("seconds", {}))

    def _compute(self, name: str, compute) -> None:
        started = time.perf_counter()
        self.done[name] = compute()
        self.seconds[name] = time.perf_counter() - started
        if self.cache is None:
            return
        with _writing(self.cache, self.key) as saved:  # merged: another process may have written parts
            self._merge(saved)
            atomic_write(Path(self.cache), lambda tmp: torch.save(
                {"key": self.key, "parts": self.done, "seconds": self.seconds}, tmp))


def tune_in_parts(part: Parts, family, names=tuple(BASELINES), alongside: dict | None = None,
                  progress: bool = False, **tune) -> Tuning:
    """tune_baselines(family, names=names, **tune), one baseline at a time, each kept as a part: the same result,
    as every rate's score is computed on its own problems. alongside: other parts {name: compute}, independent of
    the tuning, computed with it (so that processes sharing the work share them too), then kept in `part`.
    progress: a bar over the baselines (and those other parts)."""
    tasks = {f"tuning/{name}": lambda name=name: asdict(tune_baselines(family, names=(name,), progress=False, **tune))
             for name in names}
    done = part.each({**tasks, **(alongside or {})}, desc="tuning" if progress else None)
    done = {name: done[f"tuning/{name}"] for name in names}
    return Tuning({n: d["rates"][n] for n, d in done.items()}, {n: d["scores"][n] for n, d in done.items()})


def tune_and_test(part: Parts, tune_family, learned: dict, test, progress: bool = False, **tune) -> tuple:
    """The four baselines tuned on `tune_family` (`tune_in_parts`) with the learned optimizers' tests alongside,
    then the tuned baselines' tests; test(optimizer) gives the compute of one optimizer's test runs, kept as the
    part "test/<name>". Returns (tuning, {name: test result}: the learned optimizers', then the baselines')."""
    tuning = tune_in_parts(part, tune_family, alongside={f"test/{n}": test(opt) for n, opt in learned.items()},
                           progress=progress, **tune)
    optimizers = {**learned, **{n: tuning.make(n) for n in tuning.rates}}
    done = part.each({f"test/{n}": test(opt) for n, opt in optimizers.items()}, desc="testing" if progress else None)
    return tuning, {n: done[f"test/{n}"] for n in optimizers}


def fingerprint(learned: dict, fam, tune_family, steps, n_tune, n_test, seeds, grid, final_metric,
                 cache_key, second_recipe: bool = False) -> str:
    """A digest of everything a comparison's result depends on: the learned optimizers' architecture and φ bytes,
    the families, steps, problem counts, seeds, grid, `cache_key`, and the code that computes it (`code_digest`,
    whether the fused CPU step ran, torch's version), so a kept result is never reused after the library changed.
    second_recipe: the comparison runs l2l.general's code too (chapter 5), so the digest covers it."""
    from .. import fused_lstm

    code = code_digest(exclude=NOT_IN_DIGEST if second_recipe else NOT_IN_DIGEST + SECOND_RECIPE)
    digest = hashlib.sha256(json.dumps(
        [repr(fam), repr(tune_family), steps, n_tune, n_test, seeds, [float(g) for g in grid],
         final_metric is not None, cache_key, sorted(learned), [learned[n].describe() for n in sorted(learned)],
         code, fused_lstm.runs_here(), torch.__version__], sort_keys=True, default=str).encode())
    for name in sorted(learned):
        for pname, t in sorted(learned[name].state_dict().items()):
            digest.update(pname.encode())
            digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"{code[:CODE_PREFIX]}.{digest.hexdigest()}"  # the code's part first, which `status` checks


CODE_PREFIX = 16  # hex digits of the code digest that begin a fingerprint


def current_code_prefixes() -> set[str]:
    """The code parts a fingerprint made by this library begins with (chapters 1-4's, chapter 5's)."""
    return {code_digest(exclude=e)[:CODE_PREFIX] for e in (NOT_IN_DIGEST, NOT_IN_DIGEST + SECOND_RECIPE)}


_CODE = {}
# modules no kept comparison's numbers depend on: presentation, the command line, the torch.optim wrapper. Editing
# them keeps the kept comparisons, which at the paper profile are hours of compute each.
NOT_IN_DIGEST = ("__main__.py", "book.py", "claims.py", "cli.py", "fileio.py", "paper.py", "plots.py",
                 "results.py", "torch_optim.py", "trained/")
SECOND_RECIPE = ("general/", "experiments/general.py")  # chapter 5's code: no comparison of chapters 1-4 runs it


def code_digest(root: Path | None = None, exclude: tuple[str, ...] = NOT_IN_DIGEST + SECOND_RECIPE) -> str:
    """A digest of the library's code that computes results: every l2l module's syntax tree without docstrings,
    except the modules (paths relative to the package, or folders ending in /) in `exclude`; so editing prose,
    comments or excluded modules keeps kept results, and editing code does not. root: the package folder
    (default: this l2l's)."""
    key = f"{root}|{exclude}"
    if key not in _CODE:
        digest = hashlib.sha256()
        root = Path(root or Path(__file__).resolve().parents[1])
        for path in sorted(root.rglob("*.py")):
            if path.relative_to(root).as_posix().startswith(exclude):
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                body = getattr(node, "body", None)
                if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                        and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                        and isinstance(body[0].value.value, str)):
                    node.body = body[1:] or [ast.Pass()]
            digest.update(str(path.relative_to(root)).encode() + ast.dump(tree).encode())
        _CODE[key] = digest.hexdigest()
    return _CODE[key]


def record_run(out_dir: Path, *, chapter: str, notebook: str, settings, seed: int, device: str, started: float,
               curves: dict, tuning: Tuning | None = None, history: History | None = None,
               claims: list | None = None, extra: dict | None = None) -> dict:
    """Write curves.safetensors and run.json (command, seeds, versions, wall time, results) under out_dir.
    The wall time is this execution's; `evaluation_compute_s` adds up the kept comparisons' compute, which earlier
    executions or other processes may have done."""
    out_dir = Path(out_dir)
    save_curves(out_dir / "curves.safetensors", curves)
    record = {
        "chapter": chapter,
        "command": f"papermill {notebook} out.ipynb -p profile {settings.profile} -p seed {seed}",
        "profile": settings.profile,
        "seed": seed,
        "seeds": seeds(seed),
        "device": device,
        "versions": versions(),
        "wall_time_s": round(time.time() - started, 1),
        "evaluation_compute_s": round(evaluation_seconds(out_dir), 1),
        "settings": asdict(settings) if is_dataclass(settings) else settings,
        "summary": summarize(curves),
        "tuned_rates": tuning.rates if tuning else None,
        "tuning_scores": {k: {str(lr): v for lr, v in d.items()} for k, d in tuning.scores.items()} if tuning else None,
        "meta_training": asdict(history) if history else None,
        "claims": claims,
        **(extra or {}),
    }
    save_json(out_dir / "run.json", record)
    return record
