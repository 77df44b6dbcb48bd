"""The paper's claims, in the paper's order, and the verdict of the committed runs on each.

`CLAIMS` lists what Andrychowicz et al. (2016) claim in Figures 4 to 9, each with a stable id, the figure, the
chapter that tests it and the metric(s) it is judged on (the loss at the last step, "final", and the loss
summed over the run, "summed"). A chapter records each comparison in its `run.json` as a dict from
`l2l.claims` plus an "id" (see `record`); runs made before ids existed are matched by their claim text.

`summary_rows` and `intro_rows` read `results/*/run.json` and build the book's two overview tables; nothing
in them is typed by hand.

Used in: book/intro, book/summary and every chapter (through `record`).
"""
from __future__ import annotations

import itertools
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .claims import NOT_AT_SCALE, VERDICTS, best_row, verdict

PAPER_BUDGET = 10**6  # optimizee steps of meta-training in the official code: 10,000 epochs x 100 steps


@dataclass(frozen=True)
class Claim:
    id: str
    figure: str  # where the paper shows it
    chapter: str  # results/<chapter>/ and the notebook that tests it
    short: str  # a few words, for the intro's table
    text: str  # the claim, in our words (the paper prints no numbers)
    metrics: tuple[str, ...] = ("final",)
    history: str = "meta_training"  # the run.json key of the meta-training whose budget applies
    negative: bool = False  # the paper says the LSTM fails here


CLAIMS: tuple[Claim, ...] = (
    Claim("quadratics", "Fig. 4 (left)", "quadratic", "Quadratics: the LSTM beats tuned SGD, RMSprop, Adam, NAG",
          "On new random 10-dimensional quadratic functions, the LSTM optimizer outperforms the hand-designed "
          "optimizers, each with its learning rate tuned.", ("final", "summed")),
    Claim("mnist", "Fig. 4 (centre)", "mnist", "MNIST, 100 steps: the LSTM beats the tuned baselines",
          "On MNIST (an MLP with 20 sigmoid hidden units), the LSTM outperforms the tuned baselines over the 100 "
          "steps it was trained for.", ("final", "summed")),
    Claim("mnist-200-steps", "Fig. 4 (right)", "mnist", "MNIST, 200 steps: still ahead beyond its horizon",
          "Run for 200 steps, twice its training horizon, the LSTM keeps outperforming the baselines.", ("final", "summed")),
    Claim("mnist-40-units", "Fig. 5 (left)", "mnist", "MNIST, 40 hidden units: generalizes",
          "The LSTM trained on the 20-unit network still outperforms the baselines on a network with 40 hidden "
          "units.", ("final", "summed")),
    Claim("mnist-2-layers", "Fig. 5 (centre)", "mnist", "MNIST, 2 hidden layers: generalizes",
          "The LSTM trained on the one-layer network still outperforms the baselines on a network with two "
          "hidden layers.", ("final", "summed")),
    Claim("mnist-relu", "Fig. 5 (right)", "mnist", "MNIST, ReLU: fails to generalize (a negative result)",
          "On a network with ReLU activations instead of sigmoids the LSTM fails: the baselines do better.",
          ("final", "summed"), negative=True),
    Claim("mnist-architectures", "Fig. 6", "mnist", "MNIST, widths x depths: beats the best baseline",
          "Across networks of other widths and depths, the LSTM trained on one architecture outperforms the "
          "best tuned baseline."),
    Claim("cifar10", "Fig. 7 (left)", "cifar", "CIFAR-10: the two-LSTM optimizer beats the tuned baselines",
          "On CIFAR-10 (a small convolutional network), the optimizer with one LSTM for the convolutional and "
          "one for the fully connected parameters outperforms the tuned baselines.", ("final", "summed")),
    Claim("cifar5", "Fig. 7 (centre)", "cifar", "CIFAR-5: the same LSTM beats the tuned baselines",
          "The same optimizer outperforms the baselines on CIFAR-5, five of the classes.", ("final", "summed")),
    Claim("cifar2", "Fig. 7 (right)", "cifar", "CIFAR-2: the same LSTM beats the tuned baselines",
          "The same optimizer outperforms the baselines on CIFAR-2, two of the classes.", ("final", "summed")),
    Claim("cifar5-sub", "Fig. 7 (centre)", "cifar", "CIFAR-5: LSTM-sub (held-out classes) beats the baselines",
          "LSTM-sub, meta-trained only on the other five classes, outperforms the baselines on CIFAR-5.",
          ("final", "summed"), history="meta_training_sub"),
    Claim("cifar2-sub", "Fig. 7 (right)", "cifar", "CIFAR-2: LSTM-sub (held-out classes) beats the baselines",
          "LSTM-sub, meta-trained only on the other classes, outperforms the baselines on CIFAR-2.",
          ("final", "summed"), history="meta_training_sub"),
    Claim("cifar-two-lstms", "Sec. 3.3, Fig. 7", "cifar", "CIFAR-10: two LSTMs beat one shared LSTM",
          "Separate LSTMs for the convolutional and the fully connected layers do better than one LSTM shared by "
          "both (the design the paper adopts for CIFAR).", ("final", "summed")),
    Claim("art-training-style", "Fig. 8 (left), Fig. 9", "art", "Neural art, training style: beats the baselines",
          "On new content images with the style it was trained on, at the training resolution (64 px), the LSTM "
          "outperforms the tuned baselines.", ("final", "summed")),
    Claim("art-new-style", "Fig. 8 (right), Fig. 9", "art", "Neural art, new style at 128 px: generalizes",
          "With a style it never saw, at twice the training resolution (128 px), the LSTM still outperforms the "
          "tuned baselines.", ("final", "summed")),
)
BY_ID = {c.id: c for c in CLAIMS}

CHAPTERS = {"quadratic": ("Ch. 1", "notebooks/01_quadratic"), "mnist": ("Ch. 2", "notebooks/02_mnist"),
            "cifar": ("Ch. 3", "notebooks/03_cifar"), "art": ("Ch. 4", "notebooks/04_neural_art")}
BEYOND = {"general": ("Ch. 5", "notebooks/05_general")}  # chapters beyond the paper: no claim of its, runs shown

# Claim texts of runs recorded before claims carried an "id": (chapter, text) -> id.
LEGACY_TEXTS = {
    ("quadratic", "LSTM beats every tuned baseline"): "quadratics",
    ("mnist", "Base network, 100 steps: LSTM beats every tuned baseline"): "mnist",
    ("mnist", "Base network, 200 steps: LSTM still beats every tuned baseline"): "mnist-200-steps",
    ("mnist", "40 hidden units: LSTM beats every tuned baseline"): "mnist-40-units",
    ("mnist", "2 hidden layers: LSTM beats every tuned baseline"): "mnist-2-layers",
    ("mnist", "ReLU: the LSTM fails to generalize (some baseline does as well or better)"): "mnist-relu",
    ("mnist", "Width x depth sweep: LSTM beats the best tuned baseline on every architecture"): "mnist-architectures",
    ("cifar", "CIFAR-10: the LSTM beats every tuned baseline"): "cifar10",
    ("cifar", "CIFAR-5: the same LSTM beats every tuned baseline"): "cifar5",
    ("cifar", "CIFAR-2: the same LSTM beats every tuned baseline"): "cifar2",
    ("cifar", "CIFAR-5: LSTM-sub, trained on the other classes, beats every tuned baseline"): "cifar5-sub",
    ("cifar", "CIFAR-2: LSTM-sub, trained on the other classes, beats every tuned baseline"): "cifar2-sub",
    ("cifar", "Ablation: two LSTMs (conv, FC) beat one shared LSTM"): "cifar-two-lstms",
    ("art", "Training style, test photos: LSTM beats every tuned baseline"): "art-training-style",
    ("art", "New style at higher resolution: LSTM beats every tuned baseline"): "art-new-style",
}
METRIC_NAMES = {"final": "final loss", "summed": "summed loss"}


def record(claim_id: str, result: dict) -> dict:
    """A comparison from `l2l.claims` as a chapter stores it in run.json: with the claim's id and its text."""
    claim = BY_ID[claim_id]  # KeyError: not a claim of the paper
    metric = metric_of(result)
    if metric not in claim.metrics:
        raise ValueError(f"claim {claim_id!r} is judged on {claim.metrics}, not on {metric!r}")
    return {"id": claim_id, "claim": f"{claim.short} ({METRIC_NAMES[metric]})", **result}


def metric_of(result: dict) -> str:
    return result["rows"][0]["metric"]


def identify(chapter: str, entry: dict) -> tuple[str, str] | None:
    """(claim id, metric) of one recorded comparison: its "id" key, else its legacy claim text."""
    metric = metric_of(entry)
    if "id" in entry:
        return entry["id"], metric
    text = re.sub(r"\s*\((final|summed) loss\)$", "", entry["claim"])
    claim_id = LEGACY_TEXTS.get((chapter, text))
    return (claim_id, metric) if claim_id else None


def load_runs(root: Path | str | None = None) -> dict[str, dict]:
    """{chapter: run.json} for every run committed under results/ (default: the checkout's results/, which the book
    shows, even where $L2L_RESULTS sends new runs elsewhere)."""
    if root is None:
        root = Path(__file__).resolve().parents[1] / "results"
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(Path(root).glob("*/run.json"))}


def budget(run: dict, history: str = "meta_training") -> int | None:
    """Optimizee steps of meta-training: recorded, else epochs done x problems per epoch x horizon."""
    h = run.get(history) or run.get("meta_training") or {}
    if h.get("optimizee_steps") is not None:
        return int(h["optimizee_steps"])
    meta = (run.get("settings") or {}).get("meta") or {}
    if "train_loss" not in h or not {"problems_per_epoch", "horizon"} <= meta.keys():
        return None
    return len(h["train_loss"]) * meta["problems_per_epoch"] * meta["horizon"]


def judged(runs: dict[str, dict]) -> list[tuple[Claim, str, dict | None, dict | None]]:
    """(claim, metric, recorded comparison or None, its run or None) for every claim and metric, in paper order."""
    found = {}
    for chapter, run in runs.items():
        for entry in run.get("claims") or []:
            key = identify(chapter, entry)
            if key is not None:
                found[key] = (entry, run)
    return [(c, m, *found.get((c.id, m), (None, None))) for c in CLAIMS for m in c.metrics]


def fmt(x: float, sig: int = 4) -> str:
    """A number for a table: `sig` significant digits, thousands separated instead of an exponent, true minus."""
    if not math.isfinite(x):
        return "n/a" if math.isnan(x) else ("∞" if x > 0 else "−∞")
    digits = math.floor(math.log10(abs(x))) + 1 if x else 1
    text = f"{round(x, sig - digits):,.0f}" if digits > sig else f"{x:,.{sig}g}"
    return text.replace("-", "−")


def scale(run: dict | None, history: str = "meta_training") -> str:
    """'paper, 2.0×10⁵ steps': the profile and the meta-training budget of a run."""
    if run is None:
        return "no run"
    steps = budget(run, history)
    return f"{run['profile']}, " + (f"{compact(steps)} steps" if steps is not None else "budget not recorded")


def compact(n: int) -> str:
    """200000 -> '200k', 1000000 -> '1M', 800 -> '800'."""
    for unit, size in (("M", 10**6), ("k", 10**3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def chapter_link(chapter: str, page: str, label: str | None = None) -> str:
    """A Markdown link to a chapter, relative to the page (a docname such as 'book/summary')."""
    name, doc = {**CHAPTERS, **BEYOND}[chapter]
    rel = os.path.relpath(doc, os.path.dirname(page) or ".")
    return f"[{label or name}]({rel}.ipynb)"


def difference(best: dict, label: str = "") -> str:
    """'0.0209 [0.00531, 0.0364]': a paired row's difference (baseline − LSTM) and its 95% CI, after `label`;
    'median …' where some run diverged and the row holds the median and its sign-test interval."""
    median = "median " if best.get("statistic", "mean") != "mean" else ""
    return f"{median}{label}{fmt(best['advantage'], 3)} [{fmt(best['ci_low'], 3)}, {fmt(best['ci_high'], 3)}]"


def summary_rows(runs: dict[str, dict], page: str = "book/summary") -> list[dict]:
    """One row per claim and metric, in the paper's order, with the verdict and the deciding comparison."""
    rows, previous = [], None
    for claim, metric, entry, run in judged(runs):
        text = claim.text if claim.id != previous else "the same claim"
        previous = claim.id
        row = {"figure": chapter_link(claim.chapter, page, claim.figure),
               "the paper's claim": f"{text} *({METRIC_NAMES[metric]})*"}
        if entry is None:  # no run of the chapter, or a run made before this metric was judged
            chapter_run = runs.get(claim.chapter)
            rows.append({**row, "verdict": NOT_AT_SCALE, "LSTM": "", "best tuned baseline": "",
                         "difference [95% CI]": "", "run": "no run" if chapter_run is None else
                         f"{scale(chapter_run, claim.history)}; this metric not recorded"})
            continue
        best = best_row(entry)
        rows.append({**row, "verdict": f"**{verdict(entry, run['profile'])}**", "LSTM": fmt(best["learned"]),
                     "best tuned baseline": f"{best['baseline']} {fmt(best['other'])}",
                     "difference [95% CI]": difference(best), "run": scale(run, claim.history)})
    return rows


def findings(claims: list[dict], profile: str) -> str:
    """A chapter's verdicts in words, as a Markdown list: one item per claim of the paper, its verdict on each
    metric it was judged on, with the LSTM's loss against the strongest competitor's and their paired difference.
    claims: the chapter's recorded comparisons (`record`), in the order to show them."""
    items: dict[str, list[str]] = {}
    for entry in claims:
        claim_id, metric = entry["id"], metric_of(entry)
        best = best_row(entry)
        items.setdefault(claim_id, []).append(
            f"{METRIC_NAMES[metric]}: **{verdict(entry, profile)}** (LSTM {fmt(best['learned'])}, "
            f"{best['baseline']} {fmt(best['other'])}; {difference(best, 'difference ')})")
    return "\n".join(f"- *{BY_ID[claim_id].text}* " + "; ".join(parts) + "."
                     for claim_id, parts in items.items())


def tally(runs: dict[str, dict]) -> dict[str, int]:
    """How many of the paper's comparisons got each verdict (every verdict listed, in a fixed order)."""
    counts = dict.fromkeys(VERDICTS, 0)
    for _, _, entry, run in judged(runs):
        counts[verdict(entry, run["profile"]) if entry else NOT_AT_SCALE] += 1
    return counts


def tally_text(runs: dict[str, dict]) -> str:
    counts = tally(runs)
    parts = [f"**{n}** {name}" for name, n in counts.items() if n]
    return f"Of the paper's {sum(counts.values())} comparisons: " + ", ".join(parts) + "."


def intro_rows(runs: dict[str, dict], page: str = "book/intro") -> list[dict]:
    """One row per claim, in the paper's order: the verdict on each metric, and the chapter with the run's scale."""
    by_claim: dict[str, dict] = {}
    for claim, metric, entry, run in judged(runs):
        v = verdict(entry, run["profile"]) if entry else NOT_AT_SCALE
        row = by_claim.setdefault(claim.id, {
            "the paper's claim": f"{claim.figure}: {claim.short}", "final loss": "—", "summed loss": "—",
            "run": f"{chapter_link(claim.chapter, page)}, {scale(run, claim.history)}"})
        row[METRIC_NAMES[metric]] = v
    return list(by_claim.values())


def meta_training_time(run: dict) -> str:
    """'6.0 h' (or '20 min'): the wall time of all the run's meta-trainings, every stage of each (they ran before
    and apart from the notebook's last execution, whose wall time is the run's own)."""
    histories = list((run.get("meta_trainings") or {}).values()) or [run.get("meta_training") or {}]
    seconds = sum(h.get("wall_time_s") if h.get("wall_time_s") is not None
                  else sum(s.get("wall_time_s", 0) for s in h.get("stages") or []) for h in histories)
    return duration(seconds) if seconds else "–"


def notebook_time(run: dict) -> str:
    """The last execution's wall time, and the kept comparisons' compute time when earlier executions or other
    processes did most of the evaluation: '17 s (evaluation 2.6 h)'."""
    wall, evaluation = run["wall_time_s"], run.get("evaluation_compute_s") or 0
    return duration(wall) + (f" (evaluation {duration(evaluation)})" if evaluation > wall else "")


def duration(seconds: float) -> str:
    """'5.7 h', '21 min' or '7 s'."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def run_rows(runs: dict[str, dict], page: str = "book/summary") -> list[dict]:
    """How each committed run was made: one row per chapter, with paths shown relative to the data root."""
    from .book import display_path

    rows = []
    order = list(CHAPTERS)
    for chapter, run in sorted(runs.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)):
        v = run.get("versions", {})
        rows.append({"chapter": chapter_link(chapter, page) if chapter in {**CHAPTERS, **BEYOND} else chapter,
                     "profile / seed": f"{run['profile']} / {run['seed']}", "meta-training": scale(run),
                     "meta-training time": meta_training_time(run),
                     "notebook run": notebook_time(run), "device": run.get("device", ""),
                     # only chapter 1's data is synthetic; another run without a record must not claim it
                     "data": display_path(run.get("data_source")
                                          or ("synthetic" if chapter == "quadratic" else "not recorded")),
                     "versions": f"torch {v.get('torch', '?')}, l2l {v.get('l2l', '?')}",
                     "command": f"`{run['command']}`"})
    return rows


def progress_rows(runs: dict[str, dict], root: Path | str | None = None, page: str = "book/summary") -> list[dict]:
    """How far each paper-scale run still under way has got: one row per planned meta-training (and any other saved
    state) of a chapter whose committed run.json is not yet at the paper profile but whose paper-profile training
    states are committed in results/<chapter>/state/ (`chapter.progress`)."""
    import importlib

    from .experiments.chapter import progress

    root = Path(root) if root is not None else Path(__file__).resolve().parents[1] / "results"
    rows = []
    for name in {**CHAPTERS, **BEYOND}:
        if (runs.get(name) or {}).get("profile") == "paper" or not (root / name / "state").is_dir():
            continue
        module = importlib.import_module(f"l2l.experiments.{name}")
        rows += [{"chapter": chapter_link(name, page), **{("meta-training" if k == "training" else k): v
                                                          for k, v in row.items()}}
                 for row in progress(module.trainings(module.settings("paper")), root / name)]
        rows += evaluation_row(root / name, chapter_link(name, page))
    return rows


def evaluation_row(out: Path, link: str) -> list[dict]:
    """The progress row of a paper run's evaluation, when it has begun: its kept comparisons, finished and under
    way (and how many were kept under other code), and the compute hours they hold (results.kept_summary)."""
    from .experiments.common import current_code_prefixes
    from .results import kept_summary

    summary = kept_summary(out, current_code_prefixes())
    kept = summary.states
    if not kept:
        return []
    finished = sum(v == "finished" for v in kept.values())
    # counted in kept results (files), not tests: a test may keep several (its baselines', the optimizer's)
    under_way = f", {len(kept) - finished} in part" if len(kept) > finished else ""
    stale = f" ({len(summary.other_code)} under other code, to recompute)" if summary.other_code else ""
    what = f"evaluation: {finished} result{'' if finished == 1 else 's'} kept{under_way}{stale}"
    return [{"chapter": link, "meta-training": what,
             "epochs": "–", "optimizee steps": "–", "best validation loss": "–", "stages": "–",
             "hours": f"{summary.seconds / 3600:.1f}", "hours left": "–"}]


def beyond_rows(runs: dict[str, dict]) -> list[dict]:
    """Chapter 5's verdicts on its held-out tests, from its run.json "targets": one row per test, the general
    optimizer's advantage over Adam at 1e-3 (Adam's loss − its, paired 95% CI) and its final loss over tuned
    Adam's. Empty when chapter 5 has no committed run."""
    run = runs.get("general")
    if not run or not run.get("targets"):
        return []
    rows = []
    for t in run["targets"]:
        ratio = t["final_over_tuned"]
        rows.append({
            "held-out test": t["test"],
            "vs Adam 1e-3, final": difference(t["vs_default"]["final"]),
            "vs Adam 1e-3, summed": difference(t["vs_default"]["summed"]),
            "beats Adam 1e-3": ("yes, significant" if t["beats_default_significantly"] else
                                "yes" if t["beats_default"] else "no"),
            "final / tuned Adam's": f"{fmt(ratio['ratio'], 3)} [{fmt(ratio['ci_low'], 3)}, {fmt(ratio['ci_high'], 3)}]",
            "matches tuned Adam": "yes" if t["matches_tuned"] else "no",
        })
    return rows


def beyond_text(runs: dict[str, dict]) -> str:
    """One sentence on chapter 5's targets, from its run.json; empty without a committed run."""
    run = runs.get("general")
    if not run or not run.get("targets"):
        return ""
    targets = run["targets"]
    beaten = sum(t["beats_default"] for t in targets)
    matched = sum(t["matches_tuned"] for t in targets)
    return (f"On the {len(targets)} networks held out from its meta-training, the general optimizer beats Adam at its "
            f"default learning rate on **{beaten}** (target: all) and matches tuned Adam on **{matched}** (target: at "
            f"least one), at the `{run['profile']}` profile.")


def ablation_findings(finals: dict, full: str = "full", shipped: str = "general") -> str:
    """What chapter 5's ablation table says, in words computed from it: each variant's final losses against the
    full recipe's on the same networks (`experiments.general.ratio_ci`), sorted into significantly worse (the
    technique switched off helped), significantly better (switching it off helped) and within the interval; then
    the shipped optimizer's (the full recipe at its larger budget)."""
    from .experiments.general import ratio_ci

    ratios = {v: ratio_ci(f, finals[full]) for v, f in finals.items() if v != full}

    def text(variant):
        return "{:.3g} [{:.3g}, {:.3g}]".format(*ratios[variant])

    groups = {"Significantly above the full recipe's, so what it switches off helped": [],
              "Significantly below the full recipe's, so what it switches off did not help at this budget": [],
              "Not significantly different from the full recipe's": []}
    worse, better, even = groups
    for variant, (_, low, high) in ratios.items():
        if variant != shipped:
            groups[worse if low > 1 else better if high < 1 else even].append(f"*{variant}* ({text(variant)})")
    out = ("Final loss relative to the full recipe on the same networks (geometric mean of the ratio, 95% interval). "
           + " ".join(f"{said}: {', '.join(v)}." for said, v in groups.items() if v))
    if shipped in finals:
        out += f" The shipped optimizer, the full recipe at its larger budget: {text(shipped)}."
    return out


def lead_text(curves: dict, learned: str = "LSTM") -> str:
    """Where in the run `learned` leads, in words computed from the mean test curves: the longest stretch of
    steps over which its mean loss is the lowest of all optimizers, who leads after it, and how much each of the
    two still gains over the run's second half. It is what tells a summed-loss verdict from a final-loss one.
    curves: name -> losses [problems, steps + 1], step 0 the shared start; a diverged run (NaN or ∞) counts as
    the worst loss, so it never leads."""
    means = {n: torch.nan_to_num(c.double(), nan=math.inf).mean(0) for n, c in curves.items()}
    names = list(means)
    leader = torch.stack([means[n] for n in names]).argmin(0)[1:]  # step 0 is the same start for all
    steps = len(leader)
    stretches, t = [], 0  # (length, first index) of each stretch of steps where `learned` leads
    for leads, group in itertools.groupby((leader == names.index(learned)).tolist()):
        length = len(list(group))
        if leads:
            stretches.append((length, t))
        t += length
    best_len, best_start = max(stretches, key=lambda s: s[0], default=(0, None))
    if best_start is None:
        return f"The {learned}'s mean test loss is not the lowest of all optimizers at any of the {steps} steps."
    first, last = best_start + 1, best_start + best_len  # steps are counted from 1
    if best_len == steps:
        return f"The {learned}'s mean test loss is the lowest of all optimizers at every one of the {steps} steps."
    out = f"The {learned}'s mean test loss is the lowest of all optimizers from step {first} to step {last} of {steps}"
    if last == steps:
        return out + "."
    after = names[leader[last].item()]
    final = names[leader[-1].item()]
    half = steps // 2

    def change(name):  # how the mean loss moves over the second half of the run
        fall = 1 - (means[name][-1] / means[name][half]).item()  # tensors: a 0 or ∞ mean gives nan, not an error
        if not math.isfinite(fall):
            return "is not finite"
        return f"{'falls' if fall >= 0 else 'rises'} by {abs(100 * fall):.0f}%"

    out += f"; from step {last + 1} {after}'s is lower"
    if final == learned:
        return out + f", and at the last step the {learned}'s is the lowest again."
    if final != after:
        out += f", and at the last step {final}'s is the lowest"
    return (out + f". Over the second half of the run (steps {half}–{steps}) the {learned}'s mean loss "
            f"{change(learned)} and {final}'s {change(final)}.")
