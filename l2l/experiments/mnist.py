"""Chapter 2 (paper section 3.2): an MLP on MNIST, and how far the trained optimizer generalizes.

Used in: notebooks/02_mnist.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import paper
from ..claims import across_seeds, beats_best_everywhere, best_row, paired
from ..evaluate import run_problems
from ..meta import MetaTrainConfig, check_seed
from ..optimizer import LSTMConfig, LSTMOptimizer
from ..problems import MLPFamily
from ..profiles import pick, resolve_profile
from ..baselines import LR_GRID
from . import chapter, common
from .chapter import log_uniform

CHAPTER = "mnist"
# The paper: preprocessing with p = 10, outputs scaled by 0.1, 100 steps in unrolls of 20.
LSTM = LSTMConfig(hidden=20, layers=2, preprocess=True, p=10.0, output_scale=0.1)
BASE = {"hidden": (20,), "activation": "sigmoid"}  # the network the LSTM is meta-trained on
# Figure 5: the trained LSTM, unchanged, on other networks
VARIANTS = {
    "40 hidden units": {"hidden": (40,), "activation": "sigmoid"},
    "2 hidden layers": {"hidden": (20, 20), "activation": "sigmoid"},
    "ReLU": {"hidden": (20,), "activation": "relu"},
}


SEARCH_SEED_OFFSET = 3_000_017  # the meta learning rates tried are drawn from seed + this


@dataclass(frozen=True)
class Settings:
    profile: str
    meta: MetaTrainConfig  # the main optimizer's meta-training (meta_lr: the default; the search replaces it)
    search: tuple[float, ...]  # meta learning rates tried (random search, log-uniform in [1e-4, 1e-2])
    search_epochs: int  # epochs each candidate is trained for before they are compared
    meta_seeds: tuple[int, ...]  # further meta-training seeds with the chosen settings (variance of meta-training)
    seed_epochs: int  # epochs for each of them
    steps: int  # optimizee steps in the figures (the training horizon)
    long_steps: int  # Figure 4 right: twice the horizon
    n_tune: int  # validation problems per architecture for the learning-rate sweep
    n_test: int  # test problems (seeds of initialisation and minibatches) per figure
    lr_grid: tuple[float, ...]  # the baselines' learning-rate grid
    widths: tuple[int, ...]  # Figure 6 grid
    depths: tuple[int, ...]

    @property
    def optimizee_steps(self) -> int:
        """Optimizee steps of meta-training planned for the main optimizer."""
        return self.meta.epochs * self.meta.problems_per_epoch * self.meta.horizon


def settings(profile: str | None = None, seed: int = 0) -> Settings:
    profile = resolve_profile(profile)
    seed = check_seed(seed, "the notebook parameter seed")
    search = lambda n: log_uniform(1e-4, 1e-2, n, seed + SEARCH_SEED_OFFSET)  # noqa: E731
    wide = tuple(10 ** (k / 2) for k in range(-8, 3))  # 1e-4 … 10 in half-decades
    # paper: the official code's budget, 10⁶ optimizee steps (500 epochs × 20 networks × 100 steps); φ chosen by
    # the final loss of 20 validation networks on a fixed evaluation batch, every 5 epochs (10⁴ steps)
    table = {
        "paper": dict(meta=MetaTrainConfig(epochs=500, problems_per_epoch=20, n_val=20, val_metric="final",
                                           val_every=5, seed=seed),
                      search=search(4), search_epochs=50, meta_seeds=(seed + 1, seed + 2), seed_epochs=100,
                      steps=100, long_steps=200, n_tune=10, n_test=100, lr_grid=wide,
                      widths=(10, 20, 40, 80), depths=(1, 2, 3)),
        "quick": dict(meta=MetaTrainConfig(epochs=6, problems_per_epoch=10, n_val=4, val_metric="final", seed=seed),
                      search=search(2), search_epochs=3, meta_seeds=(seed + 1,), seed_epochs=3,
                      steps=100, long_steps=200, n_tune=2, n_test=10, lr_grid=wide, widths=(10, 40), depths=(1, 2)),
        "smoke": dict(meta=MetaTrainConfig(horizon=10, unroll=5, epochs=2, problems_per_epoch=2, n_val=1,
                                           val_metric="final", seed=seed),
                      search=search(2), search_epochs=1, meta_seeds=(seed + 1,), seed_epochs=1,
                      steps=10, long_steps=20, n_tune=1, n_test=2, lr_grid=LR_GRID, widths=(10,), depths=(1, 2)),
    }
    return Settings(profile=profile, **pick(profile, table))


def family(device="cpu", hidden=(20,), activation="sigmoid", split="train") -> MLPFamily:
    return MLPFamily(hidden=tuple(hidden), activation=activation, split=split, device=device)


def make_optimizer(device="cpu") -> LSTMOptimizer:
    return LSTMOptimizer(config=LSTM).to(device)


def base_family(s: Settings, device="cpu") -> MLPFamily:
    """The network the LSTM is meta-trained on and first tested on (the notebook's `base`): 784-20-10 sigmoid."""
    return family(device, **BASE)


def tune_family(s: Settings, device="cpu") -> MLPFamily:
    """Where the baselines are tuned: the base network (on validation seeds, disjoint from the test seeds)."""
    return base_family(s, device)


def test_family(s: Settings, device="cpu") -> MLPFamily:
    """The test problems: fresh base networks from the test seeds (test accuracy on MNIST's held-out images)."""
    return base_family(s, device)


@dataclass
class Training:
    """The chapter's meta-trainings: the search over meta learning rates, the main optimizer, the other seeds."""

    search: list[chapter.Trained]
    chosen_lr: float | None = None
    main: chapter.Trained | None = None
    seeds: list[chapter.Trained] = field(default_factory=list)
    planned: tuple[str, ...] = ()  # the trainings asked for: all of the chapter's, or those of --only

    @property
    def all(self) -> list[chapter.Trained]:
        return [*self.search, *([self.main] if self.main else []), *self.seeds]

    @property
    def complete(self) -> bool:
        done = {t.name: t.complete for t in self.all}
        return all(done.get(name, False) for name in self.planned)

    def record(self) -> dict:
        """What run.json keeps of the meta-trainings: the search, the main run's curve and budget, the seeds."""
        return {
            "search": [{"meta_lr": t.cfg.meta_lr, "optimizee_steps": t.history.optimizee_steps,
                        "best_val": t.history.best_val, "best_epoch": t.history.best_epoch,
                        "val_steps": t.history.val_steps, "val_final": t.history.val_final,
                        "val_summed": t.history.val_summed} for t in self.search],
            "chosen_meta_lr": self.chosen_lr,
            "val_metric": self.main.cfg.val_metric if self.main else None,
            "seeds": {t.cfg.seed: {"optimizee_steps": t.history.optimizee_steps, "best_val": t.history.best_val,
                                   "val_steps": t.history.val_steps, "val_final": t.history.val_final,
                                   "val_summed": t.history.val_summed} for t in self.seeds},
        }


def trainings(s: Settings) -> dict:
    """{name: MetaTrainConfig} of the chapter's meta-trainings, in the order `train` runs them (the main one's
    meta learning rate is the search's choice; s.meta's stands in for it here)."""
    return {**{f"search-lr{lr:.3g}": replace(s.meta, meta_lr=lr, epochs=s.search_epochs) for lr in s.search},
            "lstm": s.meta, **{f"lstm-seed{seed}": replace(s.meta, seed=seed, epochs=s.seed_epochs)
                               for seed in s.meta_seeds}}


def train(s: Settings, out, device="cpu", max_minutes: float | None = None, progress: bool = True,
          fresh: bool = False, only: tuple[str, ...] | None = None) -> Training:
    """Run (or resume, or load) the chapter's meta-trainings, in order, under one time budget:

    1. each meta learning rate of `s.search` for `s.search_epochs` epochs from the same φ₀;
    2. the one with the best validation score continued to `s.meta.epochs` (the main optimizer, out/lstm.safetensors);
    3. the same settings from other seeds (`s.meta_seeds`) for `s.seed_epochs` epochs each.
    Training states live in out/state/; when the budget runs out, the result is not `complete` and running again
    continues. Used by the notebook and `python -m l2l train mnist`.

    only: just these trainings (`python -m l2l train mnist --only …`); the main one and the seeds need the search
    finished, since they take its choice of meta learning rate (the main one also its state).
    """
    plan = trainings(s)
    chapter.prepare(out, plan, only, fresh)
    wanted = lambda name: only is None or name in only  # noqa: E731
    after_search = [n for n in plan if not n.startswith("search-") and wanted(n)]
    searches = {n: cfg for n, cfg in plan.items() if n.startswith("search-")}
    if after_search:
        chapter.require_finished(out, {n: c for n, c in searches.items() if not wanted(n)},
                                 needed_by=" and ".join(after_search))
    budget = chapter.Budget(max_minutes)
    fam = base_family(s, device)
    info = {"task": CHAPTER, "profile": s.profile, "network": fam.sizes}
    run = lambda name, cfg, **kw: chapter.train(name, make_optimizer, fam, cfg, out, budget, device=device,  # noqa
                                                info=info, progress=progress, **kw)
    result = Training(search=[], planned=tuple(only or plan))
    for name in searches:
        if not (wanted(name) or after_search):
            continue
        result.search.append(run(name, plan[name], checkpoint=False))  # a finished one is loaded, not repeated
        if not result.search[-1].complete:
            return result
    if not after_search:
        return result
    best = min(result.search, key=lambda t: t.history.best_val)
    result.chosen_lr = best.cfg.meta_lr
    if wanted("lstm"):
        result.main = run("lstm", replace(plan["lstm"], meta_lr=result.chosen_lr),
                          start_from=chapter.state_path(out, best.name))
        if not result.main.complete:
            return result
    for name in (n for n in plan if n.startswith("lstm-seed") and wanted(n)):
        result.seeds.append(run(name, replace(plan[name], meta_lr=result.chosen_lr)))
        if not result.seeds[-1].complete:
            return result
    return result


def compare(lstm, fam, steps: int, s: Settings, seeds: dict, progress: bool = True, cache: Path | None = None):
    """Tune the four baselines on validation problems of `fam`, then test them and the LSTM on shared problems.

    Returns (curves {name: [n_test, steps + 1]}, tuning, final test accuracies {name: [n_test]}).
    (common.compare with this chapter's settings and the test-set accuracy as the final metric; cache: where the
    finished comparison is kept, so a stopped run does not redo it.)
    """
    return common.compare(lstm, fam, steps, n_tune=s.n_tune, n_test=s.n_test, seeds=seeds, grid=s.lr_grid,
                          final_metric=lambda problem, theta: problem.accuracy(theta), progress=progress,
                          cache=cache, cache_key={"final_metric": "test-set accuracy"})


def grid(lstm, s: Settings, seeds: dict, device="cpu", progress: bool = True, out: Path | None = None,
         others: dict | None = None) -> list[dict]:
    """Figure 6: final loss after `s.steps` for every width × depth, the LSTM against each tuned baseline.
    out: the run's directory, where each finished cell's comparison is kept (chapter.eval_dir). others: the other
    meta-training seeds' optimizers ({seed: optimizer}), each run on the same test networks of every cell and
    compared with that cell's best baseline ("paired_seeds")."""
    cells = []
    for depth in tqdm(s.depths, desc="depths", disable=not progress):
        for width in s.widths:
            fam = family(device, hidden=(width,) * depth)
            # the base network's cell is Figure 4's comparison (the notebook's): kept in its files, computed once
            stem, seeds_stem = (("base", "seeds-mnist") if fam == base_family(s, device)
                                else (f"grid-{width}x{depth}", f"grid-{width}x{depth}-seeds"))
            cache = None if out is None else chapter.eval_dir(out) / f"{stem}.pt"
            curves, tuning, _ = compare(lstm, fam, s.steps, s, seeds, progress=False, cache=cache)
            finals = {n: c[:, -1].mean().item() for n, c in curves.items()}
            best = min((n for n in finals if n != "LSTM"), key=finals.get)
            kept = None if out is None else chapter.eval_dir(out) / f"{seeds_stem}.pt"
            others_curves = seed_curves(others or {}, fam, s.steps, s, seeds, kept)
            seeds_paired = {seed: paired({**curves, "LSTM": c}, "LSTM", best, "final")
                            for seed, c in others_curves.items()}
            cells.append({"width": width, "depth": depth, "lstm": finals["LSTM"], "finals": finals,
                          "rates": tuning.rates, "best_baseline": best, "baseline": finals[best],
                          "rate": tuning.rates[best], "paired": paired(curves, "LSTM", best, "final"),
                          "paired_seeds": seeds_paired})
    return cells


def grid_claim(cells: list[dict]) -> dict:
    """Figure 6's claim (the LSTM beats the best tuned baseline of every cell), with the other meta-training seeds'
    outcomes under "other_seeds" as `claims.across_seeds` gives them."""
    result = beats_best_everywhere(cells)
    seeds = sorted({seed for c in cells for seed in c.get("paired_seeds", {})})
    others = {}
    for seed in seeds:
        r = beats_best_everywhere([{**c, "paired": c["paired_seeds"][seed]} for c in cells])
        others[str(seed)] = {"holds": r["holds"], "significant": r["significant"], "advantage": best_row(r)["advantage"]}
    return {**result, "other_seeds": others}


def other_seeds(training: Training) -> dict:
    """{seed: optimizer} of the meta-trainings from the other seeds (`s.meta_seeds`)."""
    return {str(t.cfg.seed): t.optimizer for t in training.seeds}


def seed_curves(others: dict, fam, steps: int, s: Settings, seeds: dict, cache: Path | None = None) -> dict:
    """{seed: curves} of each other meta-training seed's optimizer (others: {seed: optimizer}, `other_seeds`) on
    the test networks of `fam`: the same networks and minibatches as every comparison of `fam` over `steps`.
    cache: where they are kept (common.kept), so a stopped run does not redo them."""
    if not others:
        return {}
    key = common.fingerprint(others, fam, fam, steps, 0, s.n_test, seeds, [], False, {"what": "other seeds"})
    return common.kept(cache, key, lambda: {seed: run_problems(opt, fam, steps, s.n_test, seeds["test"])[0]
                                            for seed, opt in others.items()})


def accuracy_table(accuracy: dict, tuning) -> list[dict]:
    """Rows of optimizer, tuned rate and mean test-set accuracy of the optimizee it trained."""
    return [{"optimizer": n, "learning rate": "learned" if n == "LSTM" else tuning.label(n),
             "test accuracy": f"{torch.tensor(a).mean().item():.3f}"} for n, a in accuracy.items()]


def search_table(training: Training) -> list[dict]:
    """One row per meta-training: its meta learning rate, seed, budget, best validation final loss, and the stages
    and hours it took."""
    rows = []
    for t in training.all:
        h = t.history
        rows.append({"meta-training": t.name, "meta lr": f"{t.cfg.meta_lr:.3g}", "seed": t.cfg.seed,
                     "optimizee steps": f"{h.optimizee_steps:,}", f"best validation {t.cfg.val_metric} loss":
                     f"{h.best_val:.4g}", "at steps": f"{h.val_steps[h.val_epochs.index(h.best_epoch)]:,}",
                     "stages": len(h.stages), "hours": f"{h.wall_time_s / 3600:.1f}"})
    return rows


def plot_budget(training: Training):
    """Final and summed validation loss against optimizee steps of meta-training (log x): one line per searched
    meta learning rate and per seed; does more budget keep helping?"""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    runs = [*([training.main] if training.main else []), *training.seeds,
            *(t for t in training.search if t.cfg.meta_lr != training.chosen_lr)]
    for t in runs:
        h = t.history
        label = f"{t.name} (lr {t.cfg.meta_lr:.3g}, seed {t.cfg.seed})"
        steps = [max(x, 1) for x in h.val_steps]  # step 0 (untrained) drawn at 1 on the log axis
        for ax, values in zip(axes, (h.val_final, h.val_summed)):
            ax.plot(steps, values, marker=".", label=label, linestyle="-" if t is training.main else "--")
    for ax, what in zip(axes, ("final loss (fixed evaluation batch)", "summed loss over the horizon")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("optimizee steps of meta-training")
        ax.set_ylabel(f"validation {what}")
    axes[1].legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def judge(comparisons: dict, training: Training, s: Settings, seeds: dict, out: Path | None = None) -> list[dict]:
    """Each claim of `comparisons` ({claim id: (test, curves, the test networks' family, steps)}, test from
    l2l.claims) on the final and the summed loss, for the main optimizer and, on the same test networks, each
    other meta-training seed (`claims.across_seeds`); as `paper.record` entries for run.json. out: the run's
    directory, where the other seeds' test runs are kept (chapter.eval_dir)."""
    entries = []
    for claim, (test, curves, fam, steps) in comparisons.items():
        kept = None if out is None else chapter.eval_dir(out) / f"seeds-{claim}.pt"
        others = seed_curves(other_seeds(training), fam, steps, s, seeds, kept)
        entries += [paper.record(claim, across_seeds(test, curves, others, metric=metric))
                    for metric in ("final", "summed")]
    return entries


def seeds_table(claims: list[dict], training: Training) -> list[dict]:
    """One row per claim: does it hold for the main optimizer and for each other meta-training seed (budget in the
    column title)?"""
    budgets = {str(t.cfg.seed): t.history.optimizee_steps for t in training.seeds}
    main = f"seed {training.main.cfg.seed} ({training.main.history.optimizee_steps:,} steps)"
    rows = []
    for c in claims:
        row = {"claim": c["claim"], main: "holds" if c["holds"] else "does not hold"}
        for seed, o in (c.get("other_seeds") or {}).items():
            row[f"seed {seed} ({budgets.get(seed, 0):,} steps)"] = "holds" if o["holds"] else "does not hold"
        rows.append(row)
    return rows
