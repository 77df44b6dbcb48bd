"""Chapter 4 (paper section 3.4): a learned optimizer for neural art, and how it generalizes.

One LSTM is meta-trained to restyle 64×64 ImageNet photos (tiny-imagenet) with one painting. It is then
tested, unchanged, (a) on held-out photos with the same painting at 64×64 and (b) on held-out BSDS500 photos
with a painting it never saw, at 128×128. The loss, its weights and the VGG-19 layers are in
`l2l.problems.style`; the content splits (1800 / 20 / 100 for tiny-imagenet) in `style.DATASETS`.

Used in: notebooks/04_neural_art.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..baselines import Tuning
from ..evaluate import rollout
from ..fileio import atomic_write
from ..meta import MetaTrainConfig
from ..optimizer import LSTMConfig, LSTMOptimizer
from ..problems.style import LossWeights, StyleFamily, load_content, load_style
from ..profiles import pick, resolve_profile
from . import chapter, common

CHAPTER = "art"
# The paper: preprocessing (p = 10), no output scaling, 128 steps per image in unrolls of 32.
LSTM = LSTMConfig(hidden=20, layers=2, preprocess=True, p=10.0, output_scale=1.0)
# Half-decades 1e-5 … 1: one decade below the library's grid. With f summed over pixels, momentum (NAG) and
# plain SGD need rates near 1e-4 … 1e-3 at 64–128 px (larger ones diverge), Adam and RMSprop near 1e-2 … 1e-1.
ART_GRID = tuple(10 ** (k / 2) for k in range(-10, 1))
# the paper profile's grids per baseline (setting a): decades around the quick profile's choices (SGD and NAG
# 1e-3, RMSprop 1e-2, Adam 0.1 at 32 px)
PAPER_GRID = {"SGD": (1e-5, 1e-4, 1e-3, 1e-2), "NAG": (1e-5, 1e-4, 1e-3, 1e-2), "RMSprop": (1e-3, 1e-2, 1e-1),
              "Adam": (1e-2, 1e-1, 1.0)}
# (a) training style, training resolution; (b) a style never seen in training, at a higher resolution
# (paper: twice, 128 px; the small profiles scale both down)
SETTINGS = {"a": ("tiny-imagenet", "train_style", "size"), "b": ("bsds500", "test_style", "test_size")}


@dataclass(frozen=True)
class Settings:
    profile: str
    meta: MetaTrainConfig
    size: int  # content resolution for meta-training and test (a) (paper: 64)
    test_size: int  # test (b) (paper: 128)
    n_train: int  # training content images (the first n of the fixed 1800-image split)
    n_val: int  # validation images (of 20): early stopping and the learning-rate sweeps
    n_test: int  # test images per figure (of 100)
    batch: int  # content images restyled together in one problem (one LSTM call for all of them)
    n_tune: int  # validation problems per learning rate
    lr_grid: tuple[float, ...] = ART_GRID
    # {setting: {baseline: rates}}: per-setting grids for the baselines' tuning, in place of lr_grid (the paper
    # profile's: decades around the quick profile's optima, widened by `extend` rates where a choice is at an edge)
    lr_grids: dict | None = None
    extend: int = 0  # further rates tuning may try beyond a grid's edge (baselines.tune_baselines)
    train_style: str = "starry_night"
    test_style: str = "great_wave"
    weights: LossWeights = field(default_factory=LossWeights)
    source: str = "auto"  # VGG-19 weights: "auto", "torchvision" or "h5"

    @property
    def steps(self) -> int:
        return self.meta.horizon


def settings(profile: str | None = None, seed: int = 0) -> Settings:
    profile = resolve_profile(profile)
    table = {
        # Sized by the measured costs to about 10 CPU-hours (benchmarks/RESULTS.md, issue 17): meta-training as the
        # paper's (225 problems of 8 photos = the 1800 training photos once each in expectation), φ chosen by the
        # final loss of 2 validation problems (8 different photos each, drawn from the 20 validation
        # photos) every 2 epochs; baselines tuned on one such problem per setting, on decade grids around the quick
        # profile's optima (NAG one decade lower at 128 px, where the quick run chose its grid's bottom), extended
        # while a choice sits at an edge; the first 20 test photos per setting (8 more cost ~0.6 h).
        "paper": dict(meta=MetaTrainConfig(horizon=128, unroll=32, epochs=15, problems_per_epoch=15, n_val=2,
                                           val_metric="final", val_every=2, meta_lr=1e-3, seed=seed),
                      size=64, test_size=128, n_train=1800, n_val=20, n_test=20, batch=8, n_tune=1,
                      lr_grids={"a": PAPER_GRID, "b": {**PAPER_GRID, "NAG": (1e-6, 1e-5, 1e-4, 1e-3)}}, extend=2),
        # plain SGD and NAG sit near the edge of stability here (the Gram terms are quartic in the pixels):
        # a rate tuned on a single photo often diverges on others, so every profile tunes on >= 2 photos
        "quick": dict(meta=MetaTrainConfig(horizon=32, unroll=16, epochs=4, problems_per_epoch=5, n_val=2,
                                           meta_lr=3e-3, seed=seed),
                      size=32, test_size=48, n_train=100, n_val=4, n_test=5, batch=1, n_tune=2,
                      lr_grid=tuple(10.0 ** k for k in range(-4, 1))),
        "smoke": dict(meta=MetaTrainConfig(horizon=8, unroll=4, epochs=2, problems_per_epoch=2, n_val=1, seed=seed),
                      size=16, test_size=32, n_train=4, n_val=2, n_test=2, batch=1, n_tune=2,
                      lr_grid=(1e-4, 1e-3, 1e-2, 1e-1)),
    }
    return Settings(profile=profile, **pick(profile, table))


def make_optimizer(device="cpu") -> LSTMOptimizer:
    return LSTMOptimizer(config=LSTM).to(device)


def trainings(s: Settings) -> dict:
    """{name: MetaTrainConfig} of the chapter's meta-trainings, in the order `train` runs them."""
    return {"lstm": s.meta}


def train(s: Settings, out, device="cpu", max_minutes: float | None = None, progress: bool = True,
          fresh: bool = False, only: tuple[str, ...] | None = None) -> chapter.Trainings:
    """Meta-train (or resume, or load) the chapter's LSTM on the training photos with the training painting,
    early-stopped on the validation photos; φ₀ from seed s.meta.seed whatever VGG loading drew before. State in
    out/state/, best φ in out/lstm.safetensors. Used by the notebook and `python -m l2l train art`."""
    chapter.prepare(out, trainings(s), only, fresh)
    extra = {"val_family": family(s, "a", "validation", device),
             "info": {"task": CHAPTER, "profile": s.profile, "style": s.train_style, "size": s.size}}
    plan = [("lstm", make_optimizer, family(s, "a", "train", device), s.meta, extra)]
    return chapter.train_all(plan, out, chapter.Budget(max_minutes), only=only, device=device, progress=progress)


def family(s: Settings, setting: str = "a", split: str = "train", device="cpu") -> StyleFamily:
    """Content photos of `split` restyled for setting "a" (training style, s.size) or "b" (new style, s.test_size)."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; expected 'a' (training style) or 'b' (new style)")
    dataset, style_field, size_field = SETTINGS[setting]
    style, size = getattr(s, style_field), getattr(s, size_field)
    n = {"train": s.n_train, "validation": s.n_val, "test": s.n_test}[split]
    return StyleFamily(load_content(dataset, split, size, n), load_style(style, size), size=size, device=device,
                       weights=s.weights, batch=s.batch, source=s.source, name=f"{dataset}/{split} x {style}")


def tune_family(s: Settings, device="cpu") -> StyleFamily:
    """Where the baselines are tuned (setting a): the validation photos with the training painting."""
    return family(s, "a", "validation", device)


def test_family(s: Settings, device="cpu") -> StyleFamily:
    """The test problems (setting a): held-out photos with the training painting."""
    return family(s, "a", "test", device)


def compare(lstm, val_family: StyleFamily, test_family: StyleFamily, s: Settings, seeds: dict,
            progress: bool = True, setting: str = "a", cache: Path | None = None):
    """Tune the four baselines on `val_family`, then run them and the LSTM on every image of `test_family`.

    setting: "a" or "b", whose grids (s.lr_grids) the tuning uses. cache: a file keeping the finished comparison
    (reused only for the same φ, settings, families and seeds: a stopped run does not redo hours of 128-px work).
    Returns (curves {name: [n_test, steps + 1]}, tuning, results {name: final images [n_test, 3, S, S] in [0, 1],
    at 8 bits per channel as Figure 9's PNGs});
    a diverged run's losses are +inf from the step it overflowed.
    """
    key = common.fingerprint({"LSTM": lstm}, test_family, val_family, s.steps, s.n_tune, len(test_family), seeds,
                             [], True, {"settings": repr(s), "setting": setting})

    def test(opt) -> tuple:  # one optimizer's test runs: curves and 8-bit result images
        chunks = [list(range(i, min(i + s.batch, len(test_family)))) for i in range(0, len(test_family), s.batch)]
        runs = [rollout(opt, test_family.problem(idx), s.steps) for idx in chunks]
        # a diverged run's loss overflows to inf and then NaN: record it as +inf, so every comparison counts
        # it as the worst possible loss (art.diverged counts these runs)
        c = torch.cat([c for c, _ in runs])
        size = test_family.size
        images = torch.cat([theta["image"].detach().cpu().view(-1, 3, size, size) for _, theta in runs])
        return torch.where(torch.isnan(c), math.inf, c), (images.clamp(0, 1) * 255).round().to(torch.uint8)

    def run() -> dict:  # each baseline's tuning and each optimizer's tests kept as they finish
        grid = s.lr_grids[setting] if s.lr_grids else s.lr_grid
        tuning, tests = common.tune_and_test(common.Parts(cache, key), val_family, {"LSTM": lstm},
                                             lambda opt: lambda: test(opt), progress, steps=s.steps,
                                             n_problems=s.n_tune, seed=seeds["validation"], grid=grid,
                                             extend=s.extend)
        return {"curves": {n: t[0] for n, t in tests.items()}, "rates": tuning.rates, "scores": tuning.scores,
                "results": {n: t[1] for n, t in tests.items()}}

    result = common.kept(cache, key, run)
    images = {name: im.float() / 255 for name, im in result["results"].items()}
    return result["curves"], Tuning(result["rates"], result["scores"]), images


def comparisons(s: Settings, trained: chapter.Trainings, seeds: dict, device="cpu", out: Path | None = None,
                progress: bool = True, families: dict | None = None) -> dict:
    """The chapter's comparisons in the notebook's order, {setting: compute}: compute() is `compare` of the trained
    LSTM on that setting, kept in out/eval/setting-<setting>.pt. The notebook runs them first to last; `python -m
    l2l compare art`, started beside it, runs them last to first, and the two share the work (`common.Parts`).
    families: {setting: {"validation": family, "test": family}} already built (default: built here)."""
    lstm = trained["lstm"].optimizer

    def computation(setting):
        fams = (families or {}).get(setting) or {split: family(s, setting, split, device)
                                                   for split in ("validation", "test")}
        cache = None if out is None else chapter.eval_dir(out) / f"setting-{setting}.pt"
        return lambda: compare(lstm, fams["validation"], fams["test"], s, seeds, progress, setting, cache)

    return {setting: computation(setting) for setting in SETTINGS}


def diverged(curves: dict) -> dict[str, int]:
    """How many test runs of each optimizer ended with a non-finite loss."""
    return {name: int((~torch.isfinite(c[:, -1])).sum()) for name, c in curves.items()}


def best_baseline(curves: dict) -> str:
    """The baseline with the lowest mean final test loss (a diverged one counts as +inf)."""
    finals = {n: c[:, -1].mean().item() for n, c in curves.items() if n != "LSTM"}
    return min(finals, key=lambda n: finals[n] if math.isfinite(finals[n]) else math.inf)


def y_limits(curves: dict) -> tuple[float, float]:
    """y-limits for Figure 8: half the lowest finite mean loss to twice the mean initial loss, so a diverged
    baseline does not squash the other curves (its blow-up leaves the top of the panel)."""
    means = torch.stack([c.double().mean(0) for c in curves.values()])
    return 0.5 * means[torch.isfinite(means)].min().item(), 2 * means[:, 0].max().item()


def example_row(fam: StyleFamily, results: dict, curves: dict, index: int = 0) -> dict:
    """Figure 9's row for test image `index`: content, style, LSTM result, best baseline's result."""
    best = best_baseline(curves)
    return {"content": fam.content_image(index).cpu(), "style": fam.style_image.cpu(),
            "LSTM": results["LSTM"][index], f"best baseline ({best})": results[best][index]}


def save_png(image: torch.Tensor, path: Path) -> None:
    """A [3, H, W] image in [0, 1] as an 8-bit PNG, written atomically."""
    from PIL import Image

    pixels = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    atomic_write(Path(path), lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))


def save_examples(out_dir: Path, rows: dict[str, dict]) -> list[str]:
    """Every image of Figure 9 as examples/<row>_<column>.png under out_dir; returns the relative paths."""
    paths = []
    for row, images in rows.items():
        for column, image in images.items():
            rel = "examples/" + re.sub(r"[^A-Za-z0-9]+", "_", f"{row}_{column}").strip("_") + ".png"
            save_png(image, Path(out_dir) / rel)
            paths.append(rel)
    return paths
