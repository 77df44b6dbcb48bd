"""Verdicts on the paper's claims from a run's numbers: paired intervals, diverged runs, negative claims."""
import math

import torch

from l2l.claims import beats_all, beats_best_everywhere, does_not_beat, median_interval, paired, verdict_text


def curves_with_finals(finals: dict) -> dict:
    """Curves [n, 3] whose final column is the given losses (earlier steps 10, so summed = 10 + final)."""
    out = {}
    for name, values in finals.items():
        v = torch.tensor(values, dtype=torch.float64)
        out[name] = torch.stack([torch.full_like(v, 10.0), torch.full_like(v, 10.0), v], 1)
    return out


def test_paired_interval_is_the_t_interval_of_the_differences():
    curves = curves_with_finals({"LSTM": [1.0, 2.0, 3.0, 4.0], "Adam": [2.0, 2.5, 4.0, 6.0]})
    row = paired(curves, "LSTM", "Adam", "final")
    diff = torch.tensor([1.0, 0.5, 1.0, 2.0], dtype=torch.float64)
    half = 3.182 * diff.std().item() / 2  # Student's t, 3 degrees of freedom
    assert math.isclose(row["advantage"], 1.125) and math.isclose(row["ci_low"], 1.125 - half)
    assert row["better"] and row["significant"] and row["statistic"] == "mean"
    summed = paired(curves, "LSTM", "Adam", "summed")
    assert math.isclose(summed["advantage"], 1.125)  # the constant earlier steps cancel


def test_a_win_over_diverged_runs_can_be_significant():
    lstm = [1.0] * 10
    sgd = [2.0] * 7 + [math.inf, math.inf, math.nan]  # three runs diverged
    row = paired(curves_with_finals({"LSTM": lstm, "SGD": sgd}), "LSTM", "SGD", "final")
    assert row["statistic"].startswith("median") and row["advantage"] == 1.0
    assert row["ci_low"] == 1.0 and row["significant"] and row["better"]
    # the LSTM diverging is a loss for it, and both diverging is a tie
    row = paired(curves_with_finals({"LSTM": [math.inf] * 6 + [1.0] * 4, "SGD": [2.0] * 6 + [math.inf] * 4}),
                 "LSTM", "SGD", "final")
    assert row["advantage"] < 0 and not row["better"]


def test_median_interval_uses_the_sign_test_order_statistics():
    d = torch.arange(1.0, 11.0)  # n = 10: P(X <= 1) = 11/1024 <= 0.025 < P(X <= 2), so k = 2
    assert median_interval(d) == (2.0, 9.0)
    assert median_interval(torch.arange(5.0)) == (-math.inf, math.inf)  # 5 values cannot give 95%


def test_verdicts_positive_negative_and_sweep():
    curves = curves_with_finals({"LSTM": [1.0, 1.1, 0.9], "Adam": [2.0, 2.1, 1.9], "SGD": [0.5, 0.6, 0.4]})
    result = beats_all(curves)
    assert not result["holds"] and result["closest"] == "SGD"
    assert verdict_text("claim", result) == "claim: not reproduced: SGD did significantly better"
    assert verdict_text("claim", result, profile="smoke") == \
        "claim: not tested at the paper's scale: SGD did significantly better"
    ahead = beats_all(curves, baselines=["Adam"])
    assert verdict_text("claim", ahead) == "claim: reproduced: the LSTM was significantly ahead of every baseline"
    close = beats_all(curves_with_finals({"LSTM": [1.0, 2.0, 1.0], "NAG": [2.0, 1.0, 1.5]}))
    assert verdict_text("claim", close) == ("claim: not significant: the LSTM was ahead of every baseline, "
                                            "not significantly against NAG")
    negative = does_not_beat(curves)
    assert negative["holds"] and negative["significant"]
    assert beats_all(curves, baselines=["Adam"])["significant"]
    cells = [{"paired": paired(curves, "LSTM", b, "final"), "width": 20, "depth": 1} for b in ("Adam", "SGD")]
    sweep = beats_best_everywhere(cells)
    assert (sweep["won"], sweep["of"], sweep["holds"]) == (1, 2, False)


def test_a_claim_is_reproduced_only_if_the_other_meta_training_seeds_agree():
    from l2l.claims import NOT_SIGNIFICANT, REPRODUCED, across_seeds, verdict
    base = {"LSTM": [1.0, 1.1, 0.9, 1.0], "Adam": [2.0, 2.1, 1.9, 2.0], "NAG": [3.0, 3.0, 3.1, 2.9]}
    curves = curves_with_finals(base)
    agree = curves_with_finals({"LSTM": [1.5, 1.4, 1.6, 1.5]})["LSTM"]
    disagree = curves_with_finals({"LSTM": [2.5, 2.4, 2.6, 2.5]})["LSTM"]  # worse than Adam
    both = across_seeds(beats_all, curves, {"1": agree, "2": agree}, metric="final")
    assert both["other_seeds"]["1"]["holds"] and verdict(both) == REPRODUCED
    mixed = across_seeds(beats_all, curves, {"1": agree, "2": disagree}, metric="final")
    assert not mixed["other_seeds"]["2"]["holds"] and mixed["other_seeds"]["2"]["advantage"] < 0
    assert mixed["holds"] and verdict(mixed) == NOT_SIGNIFICANT
    assert "seed(s) 2 disagree" in verdict_text("claim", mixed)
    # the main optimizer's own result is unchanged by the seeds
    assert mixed["rows"] == beats_all(curves, metric="final")["rows"]
    # a negative claim: the other seeds agree when they fail too
    relu = across_seeds(does_not_beat, curves_with_finals({**base, "LSTM": [4.0, 4.1, 3.9, 4.0]}),
                        {"1": disagree}, metric="final")
    assert relu["holds"] and relu["other_seeds"]["1"]["holds"] and verdict(relu) == REPRODUCED
    # seeds that fail where the main optimizer fails too agree with it
    lost = across_seeds(beats_all, curves_with_finals({**base, "LSTM": [2.5, 2.4, 2.6, 2.5]}), {"1": disagree},
                        metric="final")
    assert "disagree" not in verdict_text("claim", lost)


def test_t_quantiles_approach_the_normal_one():
    from l2l.claims import t975
    assert t975(1) == 12.706 and t975(9) == 2.262 and t975(30) == 2.042
    assert abs(t975(31) - 2.040) < 1e-3 and abs(t975(99) - 1.984) < 1e-3 and abs(t975(10**6) - 1.96) < 1e-3
    assert all(t975(d) > t975(d + 1) for d in range(1, 200))
