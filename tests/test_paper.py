"""The paper's claims in paper order, the four verdicts, and the overview tables built from run records."""
import copy
import re
from pathlib import Path

import nbformat
import pytest
import torch

from l2l.book import display_path
from l2l.claims import (NOT_AT_SCALE, NOT_REPRODUCED, NOT_SIGNIFICANT, REPRODUCED, beats_all, does_not_beat,
                        to_markdown, verdict)
from l2l.paper import (CLAIMS, budget, findings, identify, intro_rows, judged, load_runs, record, summary_rows,
                       tally)


def curves(lstm, **baselines) -> dict:
    """Curves [n, 2] whose final losses are the given values."""
    def c(values):
        v = torch.tensor(values, dtype=torch.float64)
        return torch.stack([torch.full_like(v, 10.0), v], 1)
    return {"LSTM": c(lstm), **{n: c(v) for n, v in baselines.items()}}


WINS = curves([1.0, 1.1, 0.9, 1.0], SGD=[2.0, 2.1, 1.9, 2.0], Adam=[1.5, 1.6, 1.4, 1.5])
LOSES = curves([2.0, 2.1, 1.9, 2.0], SGD=[3.0, 3.1, 2.9, 3.0], Adam=[1.0, 1.1, 0.9, 1.0])
TIES = curves([1.0, 2.0, 1.0, 2.0], SGD=[3.0, 3.1, 2.9, 3.0], Adam=[2.0, 1.0, 2.0, 1.0])


def figure_number(claim) -> int:
    return int(re.search(r"Fig\. (\d+)", claim.figure).group(1))


def test_claims_follow_the_papers_figures_and_have_unique_ids():
    numbers = [figure_number(c) for c in CLAIMS]
    assert numbers == sorted(numbers) and numbers[0] == 4 and numbers[-1] == 8
    assert len({c.id for c in CLAIMS}) == len(CLAIMS)
    assert [c.id for c in CLAIMS][:3] == ["quadratics", "mnist", "mnist-200-steps"]
    # issues 15 and 16: every claim is judged on the final and the summed loss, but Figure 6's grid (final loss only)
    assert [c.id for c in CLAIMS if c.metrics != ("final", "summed")] == ["mnist-architectures"]


def test_the_four_verdicts():
    assert verdict(beats_all(WINS, metric="final")) == REPRODUCED
    assert verdict(beats_all(LOSES, metric="final")) == NOT_REPRODUCED
    assert verdict(beats_all(TIES, metric="final")) == NOT_SIGNIFICANT
    for result in (beats_all(WINS, metric="final"), beats_all(LOSES, metric="final")):
        assert verdict(result, profile="quick") == NOT_AT_SCALE
        assert verdict(result, profile="smoke") == NOT_AT_SCALE


def test_a_negative_claim_is_reproduced_when_a_baseline_is_significantly_better():
    assert verdict(does_not_beat(LOSES)) == REPRODUCED
    assert verdict(does_not_beat(WINS)) == NOT_REPRODUCED
    assert verdict(does_not_beat(TIES)) == NOT_SIGNIFICANT


def run_record(profile: str, claims: list, steps: int | None = None) -> dict:
    meta = {"train_loss": [1.0] * 3, "val_loss": [1.0] * 4, "best_epoch": 2}
    if steps is not None:
        meta["optimizee_steps"] = steps
    return {"profile": profile, "seed": 0, "command": "papermill ...", "wall_time_s": 60.0, "device": "cpu",
            "versions": {"torch": "2", "l2l": "0.1"}, "claims": claims, "meta_training": meta,
            "settings": {"meta": {"epochs": 3, "problems_per_epoch": 20, "horizon": 100}}}


def test_rows_come_in_paper_order_with_ids_or_legacy_texts():
    runs = {"mnist": run_record("paper", [record("mnist-relu", does_not_beat(LOSES)),
                                          record("mnist", beats_all(WINS, metric="summed")),
                                          record("mnist", beats_all(TIES, metric="final"))]),
            "quadratic": run_record("quick", [{"claim": "LSTM beats every tuned baseline (final loss)",
                                               **beats_all(WINS, metric="final")}])}
    rows = summary_rows(runs)
    assert len(rows) == sum(len(c.metrics) for c in CLAIMS)
    expected = [(c.figure, m) for c in CLAIMS for m in c.metrics]
    assert [(re.match(r"\[(.*?)\]", r["figure"]).group(1), re.search(r"\((\w+) loss\)", r["the paper's claim"])[1])
            for r in rows] == expected
    verdicts = {(c.id, m): r["verdict"].strip("*") for (c, m, _, _), r in zip(judged(runs), rows)}
    assert verdicts[("quadratics", "final")] == NOT_AT_SCALE  # a quick run, whatever its numbers
    assert verdicts[("mnist", "final")] == NOT_SIGNIFICANT
    assert verdicts[("mnist", "summed")] == REPRODUCED
    assert verdicts[("mnist-relu", "final")] == REPRODUCED
    assert verdicts[("cifar10", "final")] == NOT_AT_SCALE  # no run at all
    by_claim = {(c.id, m): r for (c, m, _, _), r in zip(judged(runs), rows)}
    assert by_claim[("cifar10", "final")]["run"] == "no run"
    assert by_claim[("mnist-relu", "summed")]["run"].endswith("this metric not recorded")  # run made, metric not
    counts = tally(runs)
    assert counts[REPRODUCED] == 2 and counts[NOT_SIGNIFICANT] == 1 and sum(counts.values()) == len(rows)
    assert "6k steps" in rows[2]["run"]  # 3 epochs x 20 problems x 100 steps
    intro = intro_rows(runs)
    assert len(intro) == len(CLAIMS) and intro[0]["the paper's claim"].startswith("Fig. 4 (left)")
    assert "[Ch. 1](../notebooks/01_quadratic.ipynb)" in intro[0]["run"]
    assert "|---|" in to_markdown(intro)


def test_findings_say_each_claims_verdict_per_metric_in_words():
    claims = [record("cifar10", beats_all(WINS, "LSTM", "final")), record("cifar10", beats_all(LOSES, "LSTM", "summed")),
              record("cifar-two-lstms", beats_all(TIES, "LSTM", "final"))]
    lines = findings(claims, "paper").splitlines()
    assert len(lines) == 2  # one item per claim, its metrics joined
    assert lines[0].startswith("- *On CIFAR-10") and lines[1].startswith("- *Separate LSTMs")
    assert "final loss: **reproduced** (LSTM 1, Adam 1.5" in lines[0]
    assert "summed loss: **not reproduced** (LSTM" in lines[0] and "Adam" in lines[0].split("summed loss")[1]
    assert "final loss: **not significant**" in lines[1]
    assert all(v not in findings(claims, "quick") for v in ("**reproduced**", "**not reproduced**"))


def test_meta_training_time_adds_up_every_stage_of_every_training():
    from l2l.paper import meta_training_time
    staged = {"stages": [{"wall_time_s": 3600}, {"wall_time_s": 1800}]}  # MNIST's record: stages only
    assert meta_training_time({"meta_trainings": {"a": {"wall_time_s": 7200}, "b": staged}}) == "3.5 h"
    assert meta_training_time({"meta_training": {"wall_time_s": 1200}}) == "20 min"
    assert meta_training_time({"meta_training": None}) == "–"


def test_notebook_time_adds_the_evaluation_other_executions_computed():
    from l2l.paper import notebook_time
    assert notebook_time({"wall_time_s": 17, "evaluation_compute_s": 9360}) == "17 s (evaluation 2.6 h)"
    assert notebook_time({"wall_time_s": 1200, "evaluation_compute_s": 900}) == "20 min"  # all computed here
    assert notebook_time({"wall_time_s": 1200}) == "20 min"  # runs recorded before evaluations were timed


def test_budget_is_recorded_or_computed():
    assert budget(run_record("paper", [], steps=12345)) == 12345
    assert budget(run_record("paper", [])) == 3 * 20 * 100
    assert budget({"profile": "paper"}) is None


def test_record_names_the_claim_and_checks_the_metric():
    entry = record("quadratics", beats_all(WINS, metric="summed"))
    assert entry["id"] == "quadratics" and entry["claim"].endswith("(summed loss)")
    assert identify("quadratic", entry) == ("quadratics", "summed")
    with pytest.raises(ValueError):
        record("mnist-architectures", beats_all(WINS, metric="summed"))
    with pytest.raises(KeyError):
        record("no-such-claim", beats_all(WINS, metric="final"))


def test_every_committed_claim_is_one_of_the_papers():
    runs = load_runs(Path(__file__).resolve().parents[1] / "results")
    assert runs, "no committed run.json found"
    seen = []
    for chapter, run in runs.items():
        for entry in run.get("claims") or []:
            key = identify(chapter, entry)
            assert key is not None, f"{chapter}: {entry['claim']!r} is not in l2l.paper.CLAIMS"
            seen.append(key)
    assert len(seen) == len(set(seen))


def test_paths_are_shown_without_the_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("L2L_DATA", str(tmp_path / "shared" / "data"))
    assert display_path(f"MNIST from {tmp_path}/shared/data/MNIST") == "MNIST from $L2L_DATA/MNIST"
    assert display_path("/somewhere/else/data/CIFAR-10-images: 50,000") == "$L2L_DATA/CIFAR-10-images: 50,000"
    assert display_path("see https://example.org/a/b and x/y") == "see https://example.org/a/b and x/y"
    repo = display_path(str(__import__("l2l").__file__))
    assert repo == "l2l/__init__.py"


def test_publish_drops_stderr_and_widgets_and_refuses_local_paths(tmp_path):
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from publish_notebook import clean_outputs, problems

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(1)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="TqdmWarning: IProgress not found\n"),
                    nbformat.v4.new_output("display_data", data={
                        "application/vnd.jupyter.widget-view+json": {"model_id": "x"}, "text/plain": "HBox()"}),
                    nbformat.v4.new_output("stream", name="stdout", text="profile paper\n")]
    nb.cells = [cell]
    clean_outputs(nb)
    assert [o.get("text") for o in nb.cells[0].outputs] == ["profile paper\n"]
    assert problems(nb) == []
    bad = copy.deepcopy(nb)
    bad.cells[0].outputs[0].text = "outputs in /home/someone/l2l/results/quadratic\n"
    assert "machine-local path" in problems(bad)[0]


def test_progress_rows_show_how_far_an_unfinished_paper_run_has_got(tmp_path, one_thread):
    from l2l.experiments import quadratic
    from l2l.paper import progress_rows
    s = quadratic.settings("smoke")
    quadratic.train(s, tmp_path / "quadratic", max_minutes=1e-6, progress=False)  # pauses with its state saved
    planned = s.meta.epochs * s.meta.problems_per_epoch * s.meta.horizon
    (row,) = progress_rows({"quadratic": run_record("quick", [])}, root=tmp_path)
    assert row["meta-training"] == "lstm" and row["optimizee steps"] == f"0 of {planned:,}"
    assert "01_quadratic" in row["chapter"]
    assert progress_rows({"quadratic": run_record("paper", [])}, root=tmp_path) == []  # finished: nothing to show
    # once its evaluation has begun, a row says how far: comparisons kept, finished or in part
    from l2l.experiments import chapter, common
    key = min(common.current_code_prefixes()) + ".rest"  # kept under this library's code
    common.kept(chapter.eval_dir(tmp_path / "quadratic") / "base.pt", key, lambda: 1.0)
    common.Parts(chapter.eval_dir(tmp_path / "quadratic") / "long.pt", key)("tuning/SGD", lambda: 2.0)
    _, evaluation = progress_rows({"quadratic": run_record("quick", [])}, root=tmp_path)
    assert evaluation["meta-training"] == "evaluation: 1 result kept, 1 in part"
    common.kept(chapter.eval_dir(tmp_path / "quadratic") / "old.pt", "0123456789abcdef.rest", lambda: 3.0)
    _, evaluation = progress_rows({"quadratic": run_record("quick", [])}, root=tmp_path)
    assert evaluation["meta-training"] == ("evaluation: 2 results kept, 1 in part (1 under other code, "
                                           "to recompute)")


def test_beyond_rows_read_chapter_5s_targets_from_its_run():
    from l2l.paper import beyond_rows, beyond_text

    def side(advantage):
        return {"advantage": advantage, "ci_low": advantage - 0.01, "ci_high": advantage + 0.01, "statistic": "mean"}

    def target(test, ahead, ratio):
        return {"test": test, "beats_default": ahead, "beats_default_significantly": ahead,
                "matches_tuned": ratio + 0.05 <= 1.1, "vs_default": {"final": side(0.02 if ahead else -0.02),
                                                                    "summed": side(5.0 if ahead else -5.0)},
                "final_over_tuned": {"ratio": ratio, "ci_low": ratio - 0.05, "ci_high": ratio + 0.05, "margin": 0.1}}

    runs = {"general": {"profile": "quick", "targets": [target("MLP", True, 1.0), target("CNN", False, 1.5)]}}
    rows = beyond_rows(runs)
    assert [(r["held-out test"], r["beats Adam 1e-3"], r["matches tuned Adam"]) for r in rows] == [
        ("MLP", "yes, significant", "yes"), ("CNN", "no", "no")]
    assert rows[1]["vs Adam 1e-3, final"] == "−0.02 [−0.03, −0.01]"
    assert "on **1** (target: all)" in beyond_text(runs) and "`quick`" in beyond_text(runs)
    assert beyond_rows({}) == [] and beyond_text({"general": {"profile": "paper"}}) == ""


def test_run_rows_link_chapter_5_and_claim_synthetic_data_only_for_chapter_1():
    from l2l.paper import run_rows
    run = {"profile": "paper", "seed": 0, "wall_time_s": 60.0, "device": "cpu", "versions": {}, "command": "x"}
    rows = {r["chapter"]: r["data"] for r in run_rows({"quadratic": run, "general": run})}
    assert rows == {"[Ch. 1](../notebooks/01_quadratic.ipynb)": "synthetic",
                    "[Ch. 5](../notebooks/05_general.ipynb)": "not recorded"}


def test_lead_text_finds_where_the_lstm_leads_and_who_overtakes_it():
    from l2l.paper import lead_text
    steps = torch.arange(9, dtype=torch.float64)
    lstm = (10 - 8 * (steps >= 1)).expand(3, -1).clone()  # 2 from step 1 on, flat
    adam = (10 - steps).expand(3, -1).clone()  # 9, 8, …, 2 at step 8: below the LSTM only at the last step
    sgd = (10 - 0.5 * steps).expand(3, -1).clone()
    text = lead_text({"LSTM": lstm, "Adam": adam - 1.5 * (steps >= 7), "SGD": sgd})
    assert "from step 1 to step 6 of 8; from step 7 Adam's is lower" in text
    assert "(steps 4–8) the LSTM's mean loss falls by 0% and Adam's falls by" in text
    diverged = sgd.clone()
    diverged[0, 2:] = float("nan")  # one diverged run: SGD's mean is the worst from then on
    assert lead_text({"LSTM": lstm, "SGD": diverged}).endswith("at every one of the 8 steps.")
    assert "not the lowest" in lead_text({"LSTM": lstm + 20, "SGD": sgd})
    rising = lstm + 0.1 * steps * (steps >= 4)
    assert "LSTM's mean loss rises by" in lead_text({"LSTM": rising, "Adam": adam})


def test_lead_text_says_when_the_lstm_leads_again_at_the_end():
    from l2l.paper import lead_text
    lstm = torch.tensor([[10.0, 1, 1, 1, 1, 3, 3, 0.5]])  # leads at steps 1-4, loses 5-6, leads at step 7
    adam = torch.tensor([[10.0, 2, 2, 2, 2, 2, 2, 2]])
    text = lead_text({"LSTM": lstm, "Adam": adam})
    assert text == ("The LSTM's mean test loss is the lowest of all optimizers from step 1 to step 4 of 7; from step 5 "
                    "Adam's is lower, and at the last step the LSTM's is the lowest again.")


def test_lead_text_survives_a_mean_loss_of_zero_at_mid_run():
    from l2l.paper import lead_text
    lstm = torch.tensor([[4.0, 1, 1, 1, 1]])
    adam = torch.tensor([[4.0, 2, 0, 0, 0]])  # reaches 0 by the run's midpoint: its change is not finite
    text = lead_text({"LSTM": lstm, "Adam": adam})
    assert text.endswith("the LSTM's mean loss falls by 0% and Adam's is not finite.")
