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
# # 1. Quadratic functions
#
# The paper's first experiment (section 3.1, Figure 4 left) asks the simplest question: on a family of
# random problems, can a learned optimizer beat hand-designed ones that have each been given their best
# learning rate? The problems are 10-dimensional quadratics
#
# $$ f(\theta) = \lVert W\theta - y\rVert_2^2, \qquad W \in \mathbb{R}^{10\times 10},\ y \in \mathbb{R}^{10}
# \text{ drawn IID Gaussian,} $$
#
# a fresh $W, y$ for every function. The LSTM optimizer sees raw gradients (no preprocessing) and its
# output is used unscaled; it is meta-trained on runs of 100 steps cut into unrolls of 20, then tested on
# functions it has never seen against SGD, RMSprop, Adam and Nesterov momentum (NAG), each tuned on
# validation functions. See [the method page](../book/method.md) for the update rule and the training.

# %% tags=["parameters"]
profile = None  # "paper" | "quick" | "smoke"; None means $L2L_PROFILE, else "paper"
seed = 0  # every random draw of the run derives from this seed
device = "auto"  # "cpu", "cuda" or "auto"
max_minutes = None  # time budget for meta-training in minutes: then pause before the next problem (None: no limit)
fresh = False  # True: forget the saved training state and start over

# %%
import time

import torch
from IPython.display import Markdown, display

import l2l
from l2l import book, paper
from l2l.claims import beats_all, claims_table, to_markdown, verdict_text
from l2l.device import describe_device, pick_device
from l2l.experiments import chapter, quadratic
from l2l.experiments.common import record_run, seeds
from l2l.meta import display_path
from l2l.results import results_dir

started = time.time()
s = quadratic.settings(profile, seed)
dev = pick_device(device)
out = results_dir(quadratic.CHAPTER, s.profile)
run_seeds = seeds(seed)
torch.manual_seed(run_seeds["train"])
print(f"profile {s.profile}, seed {seed}, device {describe_device(dev)}, outputs in {display_path(out)}")
print(s.meta)

# %% [markdown]
# ## Meta-training the LSTM
#
# Each meta-training problem holds a batch of independent quadratics; every coordinate of every function is
# one row of the same LSTM call. After each epoch the optimizer is frozen and scored on validation functions
# by its meta-loss, the summed loss over the 100 steps; the best φ is kept and saved. The training state is
# saved after every epoch: with `max_minutes` the run pauses with its state saved, and running the notebook
# again continues it (a finished training is loaded, not repeated).

# %%
trained = quadratic.train(s, out, dev, max_minutes=max_minutes, fresh=fresh)
chapter.stop_if_paused(trained)

# %%
lstm, history = trained["lstm"].optimizer, trained["lstm"].history
print(f"best validation meta-loss {history.best_val:.4g} at epoch {history.best_epoch} "
      f"(untrained: {history.val_loss[0]:.4g}); {history.wall_time_s:.0f} s")

# %% tags=["remove-output"]
book.figure("quadratic-meta-training", l2l.plots.plot_meta_training(history),
            book.meta_training_caption("Quadratics", history, s.profile))

# %% [markdown]
# ```{glue:figure} quadratic-meta-training
# :name: fig-quadratic-meta-training
#
# {glue:md}`quadratic-meta-training-caption`
# ```

# %% [markdown]
# ## Tuning the baselines
#
# Each hand-designed optimizer gets the learning rate, from a grid of half-decades between $10^{-4}$ and 1,
# that gives the lowest mean *final* loss on the validation functions. Other hyperparameters stay at their
# defaults; NAG uses momentum 0.9.

# %%
curves, tuning = quadratic.compare(lstm, s, run_seeds, dev)
display(Markdown(to_markdown([{"optimizer": n, "tuned learning rate": f"{lr:.3g}"} for n, lr in tuning.rates.items()])))

# %% [markdown]
# ## Figure 4 (left): learned against tuned optimizers on new functions

# %% tags=["remove-output"]
book.figure("quadratic-curves", l2l.plots.plot_curves(curves, title="10-dimensional quadratics"),
            book.curves_caption("Quadratics f(θ) = ‖Wθ − y‖², 100 steps", curves, s.profile, "4 left",
                                problems="test functions"))

# %% [markdown]
# ```{glue:figure} quadratic-curves
# :name: fig-quadratic-curves
#
# {glue:md}`quadratic-curves-caption`
# ```

# %% [markdown]
# ## Does the LSTM beat every tuned baseline?
#
# The paper's claim, judged on this run's test functions in two ways: the loss after the last step, and the
# summed loss over all steps (the quantity the LSTM was trained to minimise). Differences are paired per
# test function, with 95% confidence intervals.

# %%
final = beats_all(curves, "LSTM", "final")
summed = beats_all(curves, "LSTM", "summed")
claims = [paper.record("quadratics", final),
          paper.record("quadratics", summed)]
for claim in claims:
    print(verdict_text(claim["claim"], claim, s.profile))
rows = claims_table([(c["claim"], c) for c in claims], profile=s.profile)
display(Markdown(to_markdown(rows)))

# %%
record = record_run(out, chapter=quadratic.CHAPTER, notebook="notebooks/01_quadratic.ipynb", settings=s, seed=seed,
                    device=describe_device(dev), started=started, curves=curves, tuning=tuning, history=history,
                    claims=claims, extra={"meta_trainings": trained.record()})
print(f"wrote {display_path(out)}/run.json, curves.safetensors and lstm.safetensors; "
      f"wall time {record['wall_time_s']:.0f} s")

# %% [markdown]
# ## What this shows
#
# The verdicts printed above are computed from this run; the [reproduction summary](../book/summary.ipynb)
# sets them beside the paper's claim. The learned optimizer was trained for exactly the horizon it is
# tested on; the MNIST chapter asks what happens beyond it.
