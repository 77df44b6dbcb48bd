# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The paper's claims beside our results
#
# One row for each comparison the paper makes, in the order of its figures (4 to 9), read from the `run.json`
# that each chapter wrote under `results/` when it was executed; nothing here is typed by hand. How to read
# the columns is explained [below the table](#how-to-read).

# %% tags=["remove-input"]
from IPython.display import Markdown, display

from l2l.claims import to_markdown
from l2l.paper import load_runs, run_rows, summary_rows, tally_text

runs = load_runs()
display(Markdown(tally_text(runs) + "\n\n" + to_markdown(summary_rows(runs, page="book/summary"))))

# %% [markdown]
# (how-to-read)=
# ## How to read the table
#
# - **Verdict.** *Reproduced*: the LSTM did significantly better than every tuned baseline (for the ReLU
#   network, where the paper reports a failure: some baseline did significantly better than the LSTM).
#   *Not reproduced*: the opposite difference is significant. *Not significant*: the paired 95% confidence
#   interval leaves the question open. *Not tested at the paper's scale*: the run was made at a smaller profile
#   than `paper`, so its numbers say how the code behaves at that scale, not whether the claim holds.
# - **LSTM** and **best tuned baseline**: mean loss over the run's test problems (final loss, or summed loss
#   over all steps, as the claim says); the best baseline is the one the LSTM did worst against. In the
#   width × depth sweep (Figure 6) it is the architecture where the LSTM did worst.
# - **Difference [95% CI]**: baseline − LSTM, paired per test problem, with its 95% confidence interval;
#   positive favours the LSTM. Where some run diverged it is the median difference and its sign-test interval.
# - **Run**: the profile and the budget of meta-training in optimizee steps (the official code meta-trains for
#   10⁶ steps: 10,000 epochs of 100).
#
# The library's `l2l.paper` module holds the list of claims and computes every cell; `l2l.claims` judges each
# comparison.
#
# ## Beyond the paper: a general optimizer
#
# [Chapter 5](../notebooks/05_general.ipynb) meta-trains the same coordinatewise LSTM with techniques published
# after the paper, on a mixture of small networks, and tests it on networks held out from its meta-training
# against Adam at its default learning rate (1e-3) and Adam with its rate tuned per test. The paper makes no such
# claim, so these rows are not counted above. *vs Adam 1e-3*: Adam's loss − the general optimizer's, paired over
# the test networks, with its 95% interval (positive favours the general optimizer); *beats*: ahead on both
# metrics. *Final / tuned Adam's*: the geometric mean ratio of final losses; *matches* when its interval's upper end
# is at most 1.1.

# %% tags=["remove-input"]
from l2l.paper import beyond_rows, beyond_text

beyond = beyond_rows(runs)
display(Markdown(beyond_text(runs) + "\n\n" + to_markdown(beyond) if beyond else "Chapter 5 has no committed run yet."))

# %% [markdown]
# ## How each run was made
#
# *Meta-training time* adds up every stage of every meta-training of the chapter, however many sessions they took;
# *notebook run* is the wall time of the notebook's last execution, which loads the trained optimizers and any
# comparison a stopped earlier execution had finished (its `run.json` lists those under `evaluation_kept_before`).

# %% tags=["remove-input"]
display(Markdown(to_markdown(run_rows(runs, page="book/summary"))))

# %% [markdown]
# ## Paper-scale runs under way
#
# A paper-scale chapter takes several CPU-hours, so it runs in stages and its training state is committed
# between them. Until a chapter's run is complete its rows above show the last complete run, at a smaller
# profile. This table, read from the committed states, shows how far each unfinished run has got: its
# meta-trainings (with the hours each still needs at its rate so far, an estimate) and, once its evaluation has
# begun, the comparisons it has kept and their compute hours.

# %% tags=["remove-input"]
from l2l.paper import progress_rows

progress = progress_rows(runs, page="book/summary")
display(Markdown(to_markdown(progress) if progress else "No paper-scale run is under way."))
