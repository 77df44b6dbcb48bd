"""Judging the paper's claims from a run's own numbers.

The test problems are shared by every optimizer, so the LSTM is compared with each baseline *paired*:
per test problem, baseline loss − LSTM loss, with a 95% confidence interval on its mean. A claim that the
LSTM beats a baseline holds when the mean difference is positive; it is called significant when the whole
interval is above zero.

A run that diverged has an infinite (or NaN) loss, and then a mean and a t-interval mean nothing. Such a
comparison is made on the median difference instead, with its distribution-free 95% interval (the sign
test's order statistics), so a win over a baseline that diverged on some problems can still be significant.
"""
from __future__ import annotations

import math

import torch

METRICS = {
    "final": lambda c: c[:, -1],  # loss at the last step
    "summed": lambda c: c[:, 1:].sum(1),  # Σ_t f(θ_t): the meta-loss, area under the curve
}


# Student's t quantile t_{0.975, df} for df = 1 … 30; beyond, its Cornish-Fisher expansion around 1.96
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """The two-sided 95% quantile of Student's t with `df` degrees of freedom (1.96 as df grows): the half-width
    of a mean's 95% interval is t975(n − 1) · s / √n, which 1.96 understates for few test problems."""
    if df < 1:
        return math.inf
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def paired(curves: dict, learned: str, baseline: str, metric: str) -> dict:
    """Mean of metric(baseline) − metric(learned) over shared test problems, with its 95% CI (Student's t); the
    median and its sign-test interval when some run diverged ("statistic" says which)."""
    a, b = METRICS[metric](curves[learned].double()), METRICS[metric](curves[baseline].double())
    if a.shape != b.shape:
        raise ValueError(f"{learned} and {baseline} were not evaluated on the same problems")
    a, b = (torch.where(x.isnan(), math.inf, x) for x in (a, b))  # a NaN loss is a diverged run
    if torch.isfinite(a).all() and torch.isfinite(b).all():
        diff = b - a
        n = diff.numel()
        half = t975(n - 1) * diff.std().item() / math.sqrt(n) if n > 1 else math.inf
        mean = diff.mean().item()
        centre, low, high, statistic = mean, mean - half, mean + half, "mean"
    else:
        diff = torch.where(a == b, 0.0, b - a)  # both diverged: a tie, not inf − inf
        centre, (low, high), statistic = diff.median().item(), median_interval(diff), "median (runs diverged)"
    return {"baseline": baseline, "metric": metric, "learned": a.mean().item(), "other": b.mean().item(),
            "advantage": centre, "ci_low": low, "ci_high": high, "statistic": statistic,
            "better": centre > 0, "significant": low > 0 or high < 0}


def median_interval(diff: torch.Tensor, level: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval for the median of `diff` (order statistics of the sign test): with n values
    sorted, [d_(k), d_(n+1-k)] for the largest k with P(Binomial(n, ½) < k) ≤ (1 − level)/2. Infinite
    values are fine; with too few values for any k, the interval is (−inf, inf)."""
    d = diff.sort().values
    n = d.numel()
    k, tail = 0, 0.0
    while k < n:
        tail += math.comb(n, k) / 2**n  # P(X <= k)
        if tail > (1 - level) / 2:
            break
        k += 1
    if k == 0:
        return -math.inf, math.inf
    return d[k - 1].item(), d[n - k].item()


def beats_all(curves: dict, learned: str = "LSTM", metric: str = "final", baselines=None) -> dict:
    """Does `learned` beat every baseline on `metric`? Returns the verdict with one paired row per baseline."""
    baselines = baselines or [n for n in curves if n != learned]
    rows = [paired(curves, learned, b, metric) for b in baselines]
    worst = min(rows, key=lambda r: r["advantage"])
    return {"holds": all(r["better"] for r in rows), "significant": all(r["better"] and r["significant"] for r in rows),
            "rows": rows, "closest": worst["baseline"]}


def does_not_beat(curves: dict, learned: str = "LSTM", metric: str = "final") -> dict:
    """The paper's negative results ("the LSTM fails on ReLU"): holds when some baseline does at least as well."""
    result = beats_all(curves, learned, metric)
    return {**result, "holds": not result["holds"], "significant": not result["holds"] and any(
        r["significant"] and not r["better"] for r in result["rows"]), "negative": True}


def beats_best_everywhere(cells: list[dict]) -> dict:
    """A sweep (Figure 6): holds when the learned optimizer beats each cell's best tuned baseline.

    cells: dicts with a "paired" row (from `paired`) and a label ("width", "depth").
    """
    rows = [{**c["paired"], "baseline": f"{c['paired']['baseline']} ({c['width']} units x {c['depth']})"}
            for c in cells]
    worst = min(rows, key=lambda r: r["advantage"])
    won = sum(r["better"] for r in rows)
    return {"holds": won == len(rows), "significant": all(r["better"] and r["significant"] for r in rows),
            "rows": rows, "closest": worst["baseline"], "won": won, "of": len(rows)}


def across_seeds(test, curves: dict, seed_curves: dict, learned: str = "LSTM", **kw) -> dict:
    """test(curves, learned, **kw) for the main optimizer, repeated with `learned`'s curves replaced by those of each
    other meta-training seed (seed_curves: {seed: that seed's curves on the same test problems}). The other seeds'
    outcomes go under "other_seeds" ({seed: holds, significant, advantage against the strongest baseline}); a claim
    is reproduced only if they agree with the main optimizer in sign (`verdict`)."""
    result = test(curves, learned, **kw)
    others = {}
    for seed, c in seed_curves.items():
        r = test({**curves, learned: c}, learned, **kw)
        others[str(seed)] = {"holds": r["holds"], "significant": r["significant"],
                             "advantage": best_row(r)["advantage"]}
    return {**result, "other_seeds": others}


def seeds_disagree(result: dict) -> list[str]:
    """The other meta-training seeds (`across_seeds`) whose outcome differs from the main optimizer's."""
    return [seed for seed, o in (result.get("other_seeds") or {}).items() if o["holds"] != result["holds"]]


def verdict_text(claim: str, result: dict, profile: str = "paper") -> str:
    """One line: the claim, its verdict (`verdict`, as the claims table gives it) and the evidence in words, built
    from the run's numbers."""
    if "won" in result:  # a sweep (beats_best_everywhere)
        evidence = f"the LSTM won {result['won']} of {result['of']}"
    else:
        rows = result["rows"]
        worse = [r["baseline"] for r in rows if not r["better"] and r["significant"]]
        level = [r["baseline"] for r in rows if not r["better"] and not r["significant"]]
        unsure = [r["baseline"] for r in rows if r["better"] and not r["significant"]]
        if worse or level:
            evidence = "; ".join(([f"{', '.join(worse)} did significantly better"] if worse else [])
                                 + ([f"{', '.join(level)} did as well or better, not significantly"] if level else []))
        elif unsure:
            evidence = f"the LSTM was ahead of every baseline, not significantly against {', '.join(unsure)}"
        else:
            evidence = "the LSTM was significantly ahead of every baseline"
    if seeds_disagree(result):
        evidence += f"; meta-training seed(s) {', '.join(seeds_disagree(result))} disagree"
    return f"{claim}: {verdict(result, profile)}: {evidence}"


REPRODUCED, NOT_REPRODUCED = "reproduced", "not reproduced"
NOT_SIGNIFICANT, NOT_AT_SCALE = "not significant", "not tested at the paper's scale"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_SIGNIFICANT, NOT_AT_SCALE)


def verdict(result: dict, profile: str = "paper") -> str:
    """One of `VERDICTS` for a comparison from `beats_all`, `does_not_beat` or `beats_best_everywhere`.

    A run at another profile than "paper" has "not tested at the paper's scale", whatever its numbers. Otherwise
    a claim that the LSTM wins is reproduced when it is significantly better than every baseline, not reproduced
    when some baseline is significantly better than it, and not significant in between. A negative claim ("the
    LSTM fails") is reproduced when some baseline is significantly better, not reproduced when the LSTM is
    significantly better than all of them, and not significant in between. Where the run judged other
    meta-training seeds (`across_seeds`), a claim is reproduced only if it holds for every one of them too: a
    claim significant for the main optimizer that some other seed contradicts is "not significant". (The other
    verdicts rest on the main optimizer alone; the seeds table shows the rest.)
    """
    if profile != "paper":
        return NOT_AT_SCALE
    rows = result["rows"]
    lstm_worse = any(not r["better"] and r["significant"] for r in rows)
    lstm_better = all(r["better"] and r["significant"] for r in rows)
    if result.get("negative"):
        lstm_worse, lstm_better = lstm_better, lstm_worse
    if lstm_better and seeds_disagree(result):
        return NOT_SIGNIFICANT
    return REPRODUCED if lstm_better else NOT_REPRODUCED if lstm_worse else NOT_SIGNIFICANT


def best_row(result: dict) -> dict:
    """The paired row of the strongest baseline: the one the LSTM did worst against."""
    return min(result["rows"], key=lambda r: r["advantage"])


def claims_table(entries: list[tuple[str, dict]], profile: str = "paper"):
    """Rows (claim, verdict, LSTM, best tuned baseline, difference and CI) for display as a table.

    The difference is baseline − LSTM, paired per test problem: positive favours the LSTM."""
    rows = []
    for claim, result in entries:
        best = best_row(result)
        rows.append({"claim": claim, "verdict": verdict(result, profile), "LSTM": f"{best['learned']:.4g}",
                     "best tuned baseline": f"{best['baseline']} {best['other']:.4g}",
                     "baseline − LSTM [95% CI]": ("median " if best.get("statistic", "mean") != "mean" else "")
                     + f"{best['advantage']:.3g} [{best['ci_low']:.3g}, {best['ci_high']:.3g}]"})
    return rows


def to_markdown(rows: list[dict]) -> str:
    """A list of same-keyed dicts as a Markdown table (for IPython.display.Markdown and the book)."""
    if not rows:
        return ""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]).replace("|", "\\|") for k in keys) + " |" for r in rows]
    return "\n".join(lines)
