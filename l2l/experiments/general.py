"""Chapter 5 (beyond the paper, issue 19): a learned optimizer for networks it never saw.

The chapter meta-trains the second recipe (`l2l.general`: RNNprop's inputs, random scaling, a task mixture, a
horizon curriculum) and asks two questions with its own numbers:

- what each technique buys: every variant of `l2l.general.ablations` (one technique off) meta-trained at a small,
  equal budget and scored on held-out networks of the validation tasks (`ablation_table`);
- whether the full recipe, meta-trained at the full budget (the shipped "general" optimizer), trains networks it
  never saw better than Adam: each `HeldOut` test (architectures in neither TRAIN_TASKS nor VALIDATION_TASKS),
  against Adam at its default learning rate and Adam tuned on validation networks of the same test (`compare`).

Networks train on the training images; test accuracy is on the held-out test images. Tuning and testing draw
their networks from disjoint seeds (common.seeds), and meta-training never saw these architectures.

Used in: notebooks/05_general.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import torch

from ..baselines import Adam
from ..claims import median_interval, paired, t975
from ..evaluate import final_loss, run_problems, summarize
from ..general import VALIDATION_TASKS, Recipe, TaskMixture, TaskSpec, ablations, build
from ..meta import MetaTrainConfig, check_seed
from ..problems import CNNFamily
from ..profiles import pick, resolve_profile
from . import chapter, common

CHAPTER = "general"
GENERAL = "general"  # the shipped optimizer's training (out/general.safetensors, l2l.trained "general")
LEARNED, DEFAULT, TUNED = "LSTM (general)", "Adam, lr 1e-3", "Adam (tuned)"  # the optimizers of every test
DEFAULT_LR = 1e-3  # torch.optim.Adam's default
MARGIN = 0.10  # "matches tuned Adam": final loss at most 10% above tuned Adam's (upper 95% bound of the ratio)
ADAM_GRID = tuple(10 ** (k / 2) for k in range(-8, -1))  # 1e-4 … 1e-1 in half-decades, extended at an edge
CHUNK = 5  # test networks per kept part of a test's runs
EXTEND = 2  # grid steps tried beyond an edge the tuning chose (baselines.tune_baselines)
ABLATIONS = "ablation table"  # the name of `ablation_finals` among the chapter's comparisons
CIFAR_CNN = "the CIFAR-10 CNN of chapter 3"  # HeldOut.task naming l2l.problems.CNNFamily


@dataclass(frozen=True)
class HeldOut:
    """A test of generalisation: fresh networks of `task` trained for `steps` steps on minibatches of `batch_size`
    training images, `n_test` of them per optimizer. task: a TaskSpec, or CIFAR_CNN for the paper's CIFAR-10 CNN."""

    name: str
    task: TaskSpec | str
    steps: int
    batch_size: int = 128
    n_test: int = 10

    def family(self, device="cpu"):
        if self.task == CIFAR_CNN:
            return CNNFamily(batch_size=self.batch_size, device=device)
        return self.task.family(self.batch_size, device)


@dataclass(frozen=True)
class Settings:
    profile: str
    meta: MetaTrainConfig  # problems per epoch, validation and meta lr; each recipe sets horizon, epochs, curriculum
    recipe: Recipe  # the shipped optimizer's recipe and budget
    ablation: Recipe  # the ablations' full recipe, at their smaller budget; each variant switches one technique off
    batch_size: int  # images per minibatch in meta-training
    n_table: int  # networks per validation task in the ablation table
    tests: tuple[HeldOut, ...]
    n_tune: int  # validation networks per rate when tuning Adam
    adam_grid: tuple[float, ...]


def _mlp(name, hidden, activation):
    return TaskSpec(name, "mnist", "mlp", hidden=hidden, activation=activation)


def _tests(steps: int, long_steps: int, batch: int, small_batch: int, epoch: int, n_mlp: int, n_cnn: int):
    relu_cnn = TaskSpec("cnn-mnist-16x32-relu-dropout", "mnist", "cnn", hidden=(128,), channels=(16, 32),
                        dropout=0.25)
    return (HeldOut("ReLU MLP on MNIST", _mlp("mlp-mnist-128x64-relu", (128, 64), "relu"), steps, batch, n_mlp),
            HeldOut("ReLU CNN on MNIST with dropout, one epoch", relu_cnn, epoch, small_batch, n_cnn),
            HeldOut(CIFAR_CNN, CIFAR_CNN, steps, batch, n_cnn),
            HeldOut("tanh MLP on MNIST, 5x the horizon", _mlp("mlp-mnist-64-tanh", (64,), "tanh"), long_steps,
                    batch, n_mlp))


def settings(profile: str | None = None, seed: int = 0) -> Settings:
    profile = resolve_profile(profile)
    seed = check_seed(seed, "the notebook parameter seed")
    table = {
        # shipped: 100 → 200 → 400 steps, 6 epochs of 20 networks each (84,000 optimizee steps); ablations:
        # 100 → 200, 4 epochs each (24,000 steps); φ by the final loss of 10 validation networks every 2 epochs.
        # The tests: 1,000 steps (the horizon of the issue), one epoch of MNIST at batch 64 (938 steps), 5x the
        # final horizon. About 10 CPU-hours in all (the chapter's notes).
        "paper": dict(meta=MetaTrainConfig(problems_per_epoch=20, n_val=10, val_metric="final", val_every=2,
                                           meta_lr=1e-3, seed=seed),
                      recipe=Recipe(start_horizon=100, final_horizon=400, epochs_per_stage=6),
                      ablation=Recipe(start_horizon=100, final_horizon=200, epochs_per_stage=4),
                      batch_size=128, n_table=4, n_tune=3, adam_grid=ADAM_GRID,
                      tests=_tests(1000, 2000, 128, 64, 938, n_mlp=20, n_cnn=10)),
        "quick": dict(meta=MetaTrainConfig(problems_per_epoch=4, n_val=2, val_metric="final", meta_lr=1e-3,
                                           seed=seed),
                      recipe=Recipe(start_horizon=20, final_horizon=40, epochs_per_stage=2),
                      ablation=Recipe(start_horizon=20, final_horizon=40, epochs_per_stage=1),
                      batch_size=64, n_table=1, n_tune=1, adam_grid=ADAM_GRID[::2],
                      tests=_tests(100, 200, 64, 64, 100, n_mlp=3, n_cnn=2)),
        "smoke": dict(meta=MetaTrainConfig(problems_per_epoch=1, n_val=1, val_metric="final", seed=seed),
                      recipe=Recipe(unroll=2, start_horizon=2, final_horizon=4, epochs_per_stage=1),
                      ablation=Recipe(unroll=2, start_horizon=2, final_horizon=4, epochs_per_stage=1),
                      batch_size=16, n_table=1, n_tune=1, adam_grid=(1e-3, 1e-2),
                      tests=_tests(4, 8, 16, 16, 4, n_mlp=2, n_cnn=2)),
    }
    return Settings(profile=profile, **pick(profile, table))


def slug(variant: str) -> str:
    """The training name of an ablation variant: "one timescale (RNNprop)" → "ablation-one-timescale-rnnprop"."""
    return "ablation-" + re.sub(r"[^a-z0-9]+", "-", variant.lower()).strip("-")


def recipes(s: Settings) -> dict[str, Recipe]:
    """{training name: recipe}, in the order `train` runs them: the shipped optimizer first, then the ablations."""
    return {GENERAL: s.recipe, **{slug(v): r for v, r in ablations(s.ablation).items()}}


def trainings(s: Settings) -> dict:
    """{name: MetaTrainConfig} of the chapter's meta-trainings, in the order `train` runs them."""
    return {name: r.config(s.meta) for name, r in recipes(s).items()}


def train(s: Settings, out, device="cpu", max_minutes: float | None = None, progress: bool = True,
          fresh: bool = False, only: tuple[str, ...] | None = None) -> chapter.Trainings:
    """Meta-train (or resume, or load) the shipped optimizer ("general", out/general.safetensors) and then every
    ablation variant, under one time budget. Each starts from the same φ seed (the "paper inputs" variant has
    another architecture, hence another φ₀) and validates on the same validation networks."""
    chapter.prepare(out, trainings(s), only, fresh)
    plan = []
    for name, recipe in recipes(s).items():
        _, fam, val = build(recipe, s.batch_size, device)
        make = lambda dev, r=recipe: build(r, s.batch_size, dev)[0]  # noqa: E731
        info = {"task": CHAPTER, "profile": s.profile, "recipe": asdict(recipe), "training": name}
        plan.append((name, make, fam, recipe.config(s.meta), {"val_family": val, "info": info}))
    return chapter.train_all(plan, out, chapter.Budget(max_minutes), only=only, device=device, progress=progress)


# --- what each technique buys ---------------------------------------------------------------------------------

def ablation_finals(trained: chapter.Trainings, s: Settings, seeds: dict, device="cpu", out=None,
                    progress: bool = False) -> dict:
    """{variant: final losses [tasks × n_table]}: every ablation variant's best φ (and the shipped optimizer's, as
    GENERAL) on the same fresh networks of each validation task, unscaled, for the ablations' final horizon,
    each scored on its fixed evaluation batch. Kept in out/eval/ablations.pt. progress: a bar over the variants."""
    steps = s.ablation.final_horizon
    families = {t.name: TaskMixture((t,), param_scale=0.0, batch_size=s.batch_size, device=device)
                for t in VALIDATION_TASKS}
    learned = {v: trained[slug(v)].optimizer for v in ablations(s.ablation)}
    learned[GENERAL] = trained[GENERAL].optimizer
    key = common.fingerprint(learned, list(families.values()), None, steps, 0, s.n_table, seeds, [], True,
                             {"what": "ablation table"}, second_recipe=True)

    cache = None if out is None else chapter.eval_dir(out) / "ablations.pt"

    def finals(opt):
        return torch.cat([torch.cat(run_problems(opt, fam, steps, s.n_table, seeds["test"], final_metric=final_loss)[1])
                          for fam in families.values()])

    def run():
        part = common.Parts(cache, key)  # each variant's runs kept as they finish
        return part.each({v: (lambda opt=opt: finals(opt)) for v, opt in learned.items()},
                         desc="ablation variants" if progress else None)

    return common.kept(cache, key, run)


def ratio_ci(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float, float]:
    """Geometric mean of a / b over paired problems with its 95% interval: Student's t-interval on log a − log b;
    where some loss is not finite (a diverged run), the median ratio and its sign-test interval instead."""
    d = a.double().log() - b.double().log()
    if not torch.isfinite(d).all():
        d = torch.where(d.isnan(), math.inf, d)
        low, high = median_interval(d)
        return math.exp(d.median().item()), math.exp(low), math.exp(high)
    half = t975(d.numel() - 1) * d.std().item() / math.sqrt(d.numel()) if d.numel() > 1 else math.inf
    m = d.mean().item()
    return math.exp(m), math.exp(m - half), math.exp(m + half)


def ablation_table(finals: dict, s: Settings) -> list[dict]:
    """One row per variant: mean final loss on each validation task and, over all the paired networks, its final
    loss relative to the full recipe's (> 1: switching the technique off hurts)."""
    n = s.n_table
    rows = []
    for variant, f in finals.items():
        row = {"variant": variant if variant != GENERAL else "full, shipped budget"}
        row.update({t.name: f"{f[i * n:(i + 1) * n].mean().item():.3g}" for i, t in enumerate(VALIDATION_TASKS)})
        ratio, low, high = ratio_ci(f, finals["full"])
        row["final loss / full's"] = "1" if variant == "full" else f"{ratio:.3g} [{low:.3g}, {high:.3g}]"
        rows.append(row)
    return rows


# --- networks it never saw -----------------------------------------------------------------------------------

def measures(problem, theta) -> tuple[float, float]:
    """What each test network is scored by at its last step: test accuracy on the held-out images, and the final
    loss on the problem's fixed evaluation batch (as φ is selected and Adam tuned: far less noisy than one
    minibatch)."""
    return problem.accuracy(theta), float(final_loss(problem, theta))


def network_runs(opt, fam, test: HeldOut, seeds: dict, name: str) -> dict:
    """`opt`'s runs on the test's `test.n_test` test networks as parts to keep, {"<name>/<first>-<last>": compute},
    CHUNK networks a part, so that two processes sharing a test share its longest runs too (`runs` joins them)."""
    def networks(first):
        n = min(CHUNK, test.n_test - first)
        return f"{name}/{first}-{first + n - 1}", lambda: run_problems(opt, fam, test.steps, n, seeds["test"],
                                                                      final_metric=measures, skip=first)

    return dict(networks(first) for first in range(0, test.n_test, CHUNK))


def runs(done: dict) -> dict:
    """The finished parts of `network_runs`, joined: {"curves": [n_test, steps + 1] (minibatch losses), "final":
    [n_test] (fixed-batch final losses), "accuracy": [n_test]}."""
    scores = [score for _, chunk in done.values() for score in chunk]
    return {"curves": torch.cat([curves for curves, _ in done.values()]),
            "final": torch.tensor([f for _, f in scores]), "accuracy": [a for a, _ in scores]}


def adam_runs(test: HeldOut, s: Settings, seeds: dict, device="cpu", out=None, progress: bool = False) -> dict:
    """Adam tuned (by final loss on `s.n_tune` validation networks of the test, over `s.adam_grid`, extended at an
    edge), then Adam at lr 1e-3 and tuned Adam on the test networks: {DEFAULT: runs, TUNED: runs, "rate",
    "scores"}. They do not depend on the learned optimizer, so they are kept apart (out/eval/<test>-adam.pt) and
    a retrained φ reuses them. progress: bars over the parts (the tuning with the runs at lr 1e-3, tuned Adam's)."""
    fam = test.family(device)
    key = common.fingerprint({}, fam, fam, test.steps, s.n_tune, test.n_test, seeds, s.adam_grid, True,
                             {"default": DEFAULT_LR, "extend": EXTEND, "metric": "accuracy, final loss"},
                             second_recipe=True)

    cache = _cache(out, test, "-adam")

    def run():
        part = common.Parts(cache, key)  # the tuning and the test runs kept as they finish
        default = network_runs(Adam(DEFAULT_LR), fam, test, seeds, DEFAULT)
        tuning = common.tune_in_parts(part, fam, names=("Adam",), steps=test.steps, n_problems=s.n_tune,
                                      seed=seeds["validation"], grid=s.adam_grid, extend=EXTEND,
                                      alongside=default, progress=progress)
        tuned = network_runs(tuning.make("Adam"), fam, test, seeds, TUNED)
        return {DEFAULT: runs(part.each(default)),  # kept alongside the tuning
                TUNED: runs(part.each(tuned, desc=TUNED if progress else None)),
                "rate": tuning.rates["Adam"], "scores": {str(lr): v for lr, v in tuning.scores["Adam"].items()}}

    return common.kept(cache, key, run)


def compare(general, test: HeldOut, s: Settings, seeds: dict, device="cpu", out=None, progress: bool = False):
    """`general` against Adam at lr 1e-3 and tuned Adam (`adam_runs`) on the same `test.n_test` test networks and
    minibatches. Returns {"curves": {name: [n_test, steps + 1]} (minibatch losses), "final": {name: [n_test]}
    (fixed-batch final losses), "accuracy": {name: [n_test]}, "rate", "scores"}; the general optimizer's runs are
    kept in out/eval/<test>.pt. progress: bars over the parts of the runs."""
    fam = test.family(device)
    adam = adam_runs(test, s, seeds, device, out, progress)
    key = common.fingerprint({LEARNED: general}, fam, fam, test.steps, 0, test.n_test, seeds, [], True,
                             {"metric": "accuracy, final loss"}, second_recipe=True)
    cache = _cache(out, test, "")
    learned = network_runs(general, fam, test, seeds, LEARNED)
    mine = common.kept(cache, key, lambda: runs(common.Parts(cache, key).each(learned,
                                                                              desc=LEARNED if progress else None)))
    by_name = {LEARNED: mine, DEFAULT: adam[DEFAULT], TUNED: adam[TUNED]}
    return {**{k: {name: r[k] for name, r in by_name.items()} for k in ("curves", "final", "accuracy")},
            "rate": adam["rate"], "scores": adam["scores"]}


def comparisons(s: Settings, trained: chapter.Trainings, seeds: dict, device="cpu", out=None,
                progress: bool = True) -> dict:
    """The chapter's comparisons in the notebook's order, {name: compute}: ABLATIONS (`ablation_finals`), then
    each held-out test by name (`compare` of the shipped optimizer), each kept under out/eval/. The notebook runs
    them first to last; `python -m l2l compare general`, started beside it, runs them last to first, and the two
    share the work (`common.Parts`). progress: bars over the parts of each."""
    lstm = trained[GENERAL].optimizer
    return {ABLATIONS: lambda: ablation_finals(trained, s, seeds, device, out, progress),
            **{t.name: (lambda t=t: compare(lstm, t, s, seeds, device, out, progress)) for t in s.tests}}


def _cache(out, test: HeldOut, suffix: str):
    return None if out is None else chapter.eval_dir(out) / f"{slug(test.name)[len('ablation-'):]}{suffix}.pt"


def verdicts(result: dict) -> dict:
    """The issue's targets on one test, from paired comparisons over the test networks. Beats Adam at 1e-3: a lower
    mean final loss (fixed evaluation batch) and summed loss (over the run's minibatches). Matches tuned Adam: the
    upper 95% bound of the geometric-mean ratio of final losses (general / tuned) at most 1 + MARGIN."""
    finals = {n: f.reshape(-1, 1) for n, f in result["final"].items()}  # one-step "curves": metric "final" reads them
    vs_default = {"final": paired(finals, LEARNED, DEFAULT, "final"),
                  "summed": paired(result["curves"], LEARNED, DEFAULT, "summed")}
    vs_tuned = {"final": paired(finals, LEARNED, TUNED, "final"),
                "summed": paired(result["curves"], LEARNED, TUNED, "summed")}
    ratio, low, high = ratio_ci(result["final"][LEARNED], result["final"][TUNED])
    return {"beats_default": all(r["better"] for r in vs_default.values()),
            "beats_default_significantly": all(r["better"] and r["significant"] for r in vs_default.values()),
            "final_over_tuned": {"ratio": ratio, "ci_low": low, "ci_high": high, "margin": MARGIN},
            "matches_tuned": high <= 1 + MARGIN, "vs_default": vs_default, "vs_tuned": vs_tuned}


def tests_table(results: dict) -> list[dict]:
    """One row per test and optimizer: its learning rate, mean final loss (fixed evaluation batch) and summed loss
    (± the 95% half-width), and the mean test accuracy of the networks it trained."""
    rows = []
    for name, r in results.items():
        rates = {LEARNED: "learned", DEFAULT: f"{DEFAULT_LR:g}", TUNED: f"{r['rate']:.3g}"}
        for opt, c in r["curves"].items():
            summed = summarize({opt: c})[opt]
            final = summarize({opt: r["final"][opt].reshape(-1, 1)})[opt]
            rows.append({"test": name, "optimizer": opt, "lr": rates[opt],
                         "final loss": f"{final['final']:.3g} ± {final['final_ci']:.2g}",
                         "summed loss": f"{summed['summed']:.4g} ± {summed['summed_ci']:.2g}",
                         "test accuracy": f"{torch.tensor(r['accuracy'][opt]).mean().item():.3f}"})
    return rows


def verdicts_table(results: dict) -> list[dict]:
    """One row per test: the general optimizer's advantage over Adam at 1e-3 (Adam's loss − the general
    optimizer's, paired, with its 95% interval) on the final and the summed loss, its final loss relative to tuned
    Adam's (with its interval), and the verdicts."""
    def cell(r):
        return f"{r['advantage']:+.3g} [{r['ci_low']:+.3g}, {r['ci_high']:+.3g}]"

    rows = []
    for name, r in results.items():
        v = verdicts(r)
        ratio = v["final_over_tuned"]
        rows.append({"test": name, "vs Adam 1e-3, final": cell(v["vs_default"]["final"]),
                     "vs Adam 1e-3, summed": cell(v["vs_default"]["summed"]),
                     "beats Adam 1e-3": ("yes, significant" if v["beats_default_significantly"] else
                                         "yes" if v["beats_default"] else "no"),
                     "final / tuned Adam's": f"{ratio['ratio']:.3g} [{ratio['ci_low']:.3g}, {ratio['ci_high']:.3g}]",
                     "matches tuned Adam": "yes" if v["matches_tuned"] else "no"})
    return rows


def claims(results: dict) -> list[dict]:
    """run.json's record of the targets: per test, the paired comparisons behind each verdict."""
    return [{"test": name, **{k: v for k, v in verdicts(r).items()}} for name, r in results.items()]
