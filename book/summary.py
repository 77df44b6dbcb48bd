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
# Every row below is read from a `run.json` that a chapter wrote under `results/` when it was executed at the
# `paper` profile; nothing here is typed by hand. "Reproduced" means the LSTM's mean loss on the run's shared
# test problems is lower than that of every tuned baseline; "(n.s.)" marks a win whose paired 95% confidence
# interval against the closest baseline still includes zero. The columns show the LSTM's mean and the closest
# baseline's mean (final loss, or summed loss over all steps, as the claim says).

# %%
from IPython.display import Markdown, display

from l2l.claims import to_markdown
from l2l.results import claims_overview, committed_runs

runs = committed_runs()
rows = claims_overview(runs)
display(Markdown(to_markdown(rows) if rows else "No paper-profile run has been committed yet."))

# %% [markdown]
# ## How each run was made

# %%
display(Markdown(to_markdown([
    {"chapter": chapter, "command": f"`{run['command']}`", "device": run["device"],
     "wall time": f"{run['wall_time_s'] / 60:.1f} min", "torch": run["versions"]["torch"], "l2l": run["versions"]["l2l"]}
    for chapter, run in runs.items()
]) if runs else ""))
