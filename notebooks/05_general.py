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
# # 5. Beyond the paper: an optimizer that generalizes
#
# The paper's optimizers are specialists. The MNIST optimizer of chapter 2 fails on ReLU networks (the paper's
# own Figure 5), and a reader who hands it a standard ReLU CNN finds that the loss does not move. This chapter
# asks whether the paper's method, the coordinatewise two-layer LSTM trained by gradient descent, can give an
# optimizer worth using on networks it never saw, when it is meta-trained with techniques published after the
# paper. It is kept apart from the reproduction: nothing here changes chapters 1 to 4.
#
# **The recipe** (`l2l.general`):
#
# - **RNNprop's inputs** (Lv, Jiang & Li, 2017): per coordinate, the gradient and its momentum at three
#   timescales (β₁ = 0.5, 0.9, 0.99), each divided by the root of a running second moment. These inputs do not
#   change when the loss is rescaled, and they are bounded. The step is −α·tanh(·), so no coordinate moves more
#   than α = 0.1 per step, times the parameter group's `lr` (which torch's learning-rate schedulers scale);
# - **random scaling** (Lv et al., 2017): during meta-training every parameter of every network is multiplied by
#   a random factor exp(U(−3, 3)), so the optimizer cannot learn one scale of gradient;
# - **a task mixture**: thirteen small networks (MLPs of several widths and depths with sigmoid, tanh and ReLU;
#   small CNNs with and without batch normalization and dropout; on MNIST and CIFAR-10), a fresh one drawn for
#   every meta-training run; five other configurations are kept for validation;
# - **a horizon curriculum** (Chen et al., 2020): runs of 100 optimizee steps first, then 200, then 400.
#
# **What is judged.** First, an ablation: each technique is switched off in turn and the optimizer meta-trained
# again at a small, equal budget; every variant is scored on fresh networks of the validation configurations.
# Second, the shipped optimizer (`l2l.trained` "general") is tested on architectures absent from meta-training
# and validation. Some are close relatives of the training tasks (a wider and deeper ReLU MLP, a wider tanh MLP,
# a wider ReLU CNN); the CIFAR-10 CNN (5×5 kernels, batch normalization, two parameter groups) and a run five times
# longer than any in meta-training are further away:
#
# - a ReLU MLP (784-128-64-10) on MNIST for 1,000 steps;
# - a ReLU CNN on MNIST with dropout (two 3×3 convolutions of 16 and 32 channels, each with 2×2 max pooling,
#   a fully connected layer of 128 units, dropout 0.25) for one epoch at batch 64;
# - the CIFAR-10 CNN of chapter 3 for 1,000 steps;
# - a tanh MLP (784-64-10) on MNIST for 2,000 steps, five times the longest meta-training run.
#
# Each is run against Adam at its default learning rate (1e-3) and Adam with its rate tuned on validation
# networks of the same test. The targets are those of the issue that asked for this chapter: beat default
# Adam on every test, and match tuned Adam on at least one. "Match" is given a margin here: the general
# optimizer's final loss at most 10% above tuned Adam's, at the upper end of its 95% interval.
#
# **Scale and budget.** At the paper profile the shipped optimizer is meta-trained for 84,000 optimizee steps
# (three stages of 6 epochs of 20 networks), and each ablation variant for 24,000 (100 then 200 steps). φ is
# the one with the lowest final loss over 10 validation networks, checked every 2 epochs. Adam is tuned on 3
# networks per test over 1e-4 … 1e-1 in half-decades, extended by up to two half-decades where the best rate is at
# an edge. The MLP tests run 20 test networks each and the CNN tests 10. The whole chapter is about 10 CPU-hours,
# run in stages: the shipped optimizer's meta-training took 1.9 h on one core and each ablation about half an
# hour; the meta-trainings pause with their state saved and resume, and each finished comparison is kept (five
# test networks a part), so the evaluation can also share two cores (`python -m l2l compare general`). "One epoch" is
# 938 minibatches of 64 drawn at random from the 60,000 training images, not a pass without replacement. The
# smaller profiles (quick, smoke) check the pipeline and decide nothing.

# %% tags=["parameters"]
profile = None  # "paper" | "quick" | "smoke"; None means $L2L_PROFILE, else "paper"
seed = 0  # every random draw of the run derives from this seed
device = "auto"  # "cpu", "cuda" or "auto"
max_minutes = None  # time budget for meta-training in minutes: then pause before the next problem (None: no limit)
fresh = False  # True: forget the saved training states and start over

# %%
import time

import torch
from IPython.display import Markdown, display

import l2l
from l2l import book, paper
from l2l.claims import to_markdown
from l2l.device import describe_device, pick_device
from l2l.experiments import chapter, general
from l2l.experiments.common import record_run, seeds
from l2l.general import TRAIN_TASKS, VALIDATION_TASKS
from l2l.meta import display_path
from l2l.results import results_dir

started = time.time()
s = general.settings(profile, seed)
dev = pick_device(device)
out = results_dir(general.CHAPTER, s.profile)
run_seeds = seeds(seed)
torch.manual_seed(run_seeds["train"])
print(f"profile {s.profile}, seed {seed}, device {describe_device(dev)}, outputs in {display_path(out)}")
print(f"meta-training tasks: {', '.join(t.name for t in TRAIN_TASKS)}")
print(f"validation tasks: {', '.join(t.name for t in VALIDATION_TASKS)}")
for name, cfg in general.trainings(s).items():
    print(f"  {name}: curriculum {cfg.curriculum or ((cfg.horizon, cfg.epochs),)}, "
          f"{chapter.planned_steps(cfg):,} optimizee steps")

# %% [markdown]
# ## Meta-training
#
# The shipped optimizer is trained first, then the ablation variants. All of them are built from the same seed:
# where a variant changes the optimizer's inputs ("paper inputs", "one timescale") its φ₀ differs, and where it
# changes what is drawn ("no random scaling", "MNIST base task only") its training networks differ after the
# first. At every validation φ is frozen and scored by the final loss of the same validation networks, at the
# final horizon of the curriculum; the best φ is kept. With `max_minutes` the run pauses with its state saved, and
# running the notebook again continues where it stopped.

# %%
trained = general.train(s, out, dev, max_minutes=max_minutes, fresh=fresh)
chapter.stop_if_paused(trained)

# %%
for t in trained.all:
    h = t.history
    print(f"{t.name}: best validation final loss {h.best_val:.4g} at epoch {h.best_epoch} of {t.cfg.epochs} "
          f"(untrained {h.val_loss[0]:.4g}); {h.optimizee_steps:,} optimizee steps, {h.wall_time_s / 60:.1f} min")

# %% tags=["remove-output"]
shipped = trained[general.GENERAL]
book.figure("general-meta-training", l2l.plots.plot_meta_training(shipped.history, metric=s.meta.val_metric),
            book.meta_training_caption("The general optimizer", shipped.history, s.profile, s.meta.val_metric))

# %% [markdown]
# ```{glue:figure} general-meta-training
# :name: fig-general-meta-training
#
# {glue:md}`general-meta-training-caption`
# ```
#
# ## What each technique buys
#
# Every variant's best φ runs the same fresh networks of each validation configuration (unscaled, as a user's
# network would be) for the ablations' final horizon. Each network's final loss is measured on a fixed evaluation
# batch. The last column compares each variant with the full recipe network by network: the geometric mean of the
# ratio of final losses, with its 95% interval. Above 1, switching the technique off made the optimizer worse. The
# shipped optimizer (the full recipe at its larger budget) is scored on the same networks for reference.
#
# Two cautions. Each variant is one meta-training run: the intervals cover the spread over evaluation networks,
# not how much a second meta-training run of the same variant would differ, which can be as large. And the
# networks are fresh, but their configurations are those φ was early-stopped on, so the scores flatter every
# variant alike.

# %%
# kept: a stopped run resumes; `python -m l2l compare general` beside this run shares the work
comparisons = general.comparisons(s, trained, run_seeds, dev, out)
finals = comparisons[general.ABLATIONS]()
display(Markdown(to_markdown(general.ablation_table(finals, s))))
display(Markdown(paper.ablation_findings(finals)))

# %% [markdown]
# ## Networks it never saw
#
# For each test, Adam's learning rate is tuned by final loss on validation networks; then the general optimizer,
# Adam at 1e-3 and tuned Adam train the same test networks (same initialisations, same minibatches). Curves are
# minibatch losses, mean over the test networks with 95% bands.

# %%
results = {t.name: comparisons[t.name]() for t in s.tests}

# %% tags=["remove-output"]
fig, axes = l2l.plots.panels(len(results))
for ax, (name, r) in zip(axes, results.items()):
    l2l.plots.plot_curves(r["curves"], title=f"{name}, {r['curves'][general.LEARNED].shape[1] - 1} steps", ax=ax)
    ax.title.set_fontsize(8)
l2l.plots.shared_legend(fig)
book.figure("general-tests", fig, book.caption(
    "The general optimizer against Adam at its default learning rate (1e-3) and Adam tuned on validation networks, "
    "on four networks absent from meta-training: mean minibatch loss per step over the same test networks for "
    "every optimizer (log scale), with 95% confidence bands", s.profile))

# %% [markdown]
# ```{glue:figure} general-tests
# :name: fig-general-tests
#
# {glue:md}`general-tests-caption`
# ```
#
# The losses of every run, with 95% half-widths: the final loss on each network's fixed evaluation batch (2,048
# training images), the summed loss over the run's minibatches, and the accuracy of the trained networks on the
# 10,000 held-out test images of MNIST or CIFAR-10:

# %%
display(Markdown(to_markdown(general.tests_table(results))))

# %% [markdown]
# The verdicts. Each advantage is Adam's loss minus the general optimizer's, paired over the test networks, with
# its 95% interval: positive means the general optimizer is ahead. "Beats Adam 1e-3" needs a positive advantage on
# both the final and the summed loss ("significant" when both intervals exclude zero). "Matches tuned Adam" needs
# the upper end of the interval of the final-loss ratio (general / tuned Adam) at 1.1 or below.

# %%
display(Markdown(to_markdown(general.verdicts_table(results))))
verdicts = general.claims(results)
beaten = sum(v["beats_default"] for v in verdicts)
matched = sum(v["matches_tuned"] for v in verdicts)
print(f"profile {s.profile}: beats Adam at lr 1e-3 on {beaten} of {len(verdicts)} tests "
      f"(target: all); matches tuned Adam on {matched} (target: at least one)")

# %%
record = record_run(
    out, chapter=general.CHAPTER, notebook="notebooks/05_general.ipynb", settings=s, seed=seed,
    device=describe_device(dev), started=started,
    curves={f"{test}/{name}": c for test, r in results.items() for name, c in r["curves"].items()},
    history=shipped.history, claims=None,
    extra={"data_source": "MNIST and CIFAR-10 (torchvision's files)", "targets": verdicts,
           "tests": {test: {"tuned_adam_lr": r["rate"], "tuning_scores": r["scores"],
                            "summary": l2l.summarize(r["curves"]), "test_accuracy": r["accuracy"]}
                     for test, r in results.items()},
           "ablations": {v: f.tolist() for v, f in finals.items()},
           "meta_trainings": trained.record()})
print(f"wrote {display_path(out)}/run.json, curves.safetensors and {len(trained.all)} checkpoints; "
      f"wall time {record['wall_time_s'] / 60:.1f} min")

# %% [markdown]
# ## What this shows
#
# The verdicts above are computed from this run alone, at the profile it printed. In the committed paper-profile
# run they are mixed, and they fall short of the targets:
#
# - **It trains networks the paper's optimizer cannot.** Every test network, ReLU ones included, learns with it,
#   where the MNIST optimizer of chapter 2 barely moves a ReLU network's loss.
# - **It beats Adam at its default learning rate on the two MLP tests**, on both metrics and significantly,
#   including the run five times longer than any in meta-training. **It loses to default Adam on both CNNs**:
#   the ReLU CNN with dropout and chapter 3's CIFAR-10 CNN, on both metrics. The target "beat default Adam on
#   every test" is not met.
# - **It matches tuned Adam on none of the four**: its final loss is above tuned Adam's on every test, by more
#   than the 10% margin (the verdicts table gives the ratios). The curves show where it falls behind: on the ReLU
#   MLP it is below even tuned Adam for the first few hundred steps and then slows, so its summed loss is close
#   to tuned Adam's and its final loss is not; on both CNNs its loss nearly stops falling after a few hundred
#   steps (the longest meta-training runs had 400), while Adam's keeps falling. Only on the tanh MLP does it
#   stay close to tuned Adam for the whole run, five times longer than it was trained for.
#
# The ablation says less than hoped about the recipe, and one part of it plainly: with these inputs the
# optimizer did better than with the paper's, but **the task mixture did not help at this budget**. The variant
# meta-trained on the MNIST base task alone has a lower final loss than the full recipe overall, and on four of
# the five validation configurations, one of the two CIFAR-10 ones included; and the shipped optimizer, the full
# recipe at 3.5 times the ablation budget, is only slightly better than the full recipe at the ablation budget. Random scaling, the extra momentum
# timescales and the curriculum made no difference that one meta-training run per variant can resolve. A recipe
# chosen by this ablation (the MNIST base task, or a narrower mixture) was not meta-trained and tested here; that
# is the next experiment, and it would have to be judged on fresh held-out tests, since these four have now been
# seen.
#
# Two cautions. First, tuned Adam had its learning rate chosen for each test, and the general optimizer had no
# such help: matching it is the harder target. Second, each step of the learned optimizer costs far more than
# Adam's (an LSTM of 20 units per coordinate, `benchmarks/RESULTS.md`), so even where it wins per step it loses
# per second on a CPU.
