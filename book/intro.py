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
# # Learning to learn by gradient descent by gradient descent — a reproduction
#
# This book reproduces, in PyTorch, the experiments of Andrychowicz et al. (NeurIPS 2016): an LSTM that
# learns to optimize, tested against SGD, RMSprop, Adam and Nesterov momentum (NAG), each with its
# learning rate tuned. Which of the paper's claims did our runs reproduce? The table is built from the
# committed runs (`results/*/run.json`); the [summary](summary.ipynb) gives the numbers behind each verdict.

# %% tags=["remove-input"]
from IPython.display import Markdown, display

from l2l.claims import to_markdown
from l2l.paper import beyond_text, chapter_link, intro_rows, load_runs, tally_text

runs = load_runs()
display(Markdown(tally_text(runs) + "\n\n" + to_markdown(intro_rows(runs, page="book/intro"))))
if beyond := beyond_text(runs):
    display(Markdown(f"Beyond the paper ({chapter_link('general', 'book/intro', 'chapter 5')}). {beyond}"))

# %% [markdown]
# A claim is *reproduced* when the LSTM's advantage over every tuned baseline (or, for the ReLU network, a
# baseline's advantage over the LSTM) is significant, with a paired 95% confidence interval over the run's
# test problems; *not reproduced* when the opposite difference is significant; *not significant* otherwise.
# A run made at a smaller profile than the paper's is *not tested at the paper's scale*, whatever its numbers.
# "Final loss" is the loss after the last step, "summed loss" the loss summed over all steps; the scale is the
# profile of the run and the optimizee steps of its meta-training (the official code trains for 10⁶).
#
# ## What the paper proposes
#
# Optimizers such as SGD, RMSprop, Adam or Nesterov momentum are update rules that people wrote by hand,
# each built on assumptions about the problems it will meet. The paper treats the design of the update rule
# as a learning problem instead. The hand-written rule is replaced by a small recurrent network $m_\phi$
# that reads the gradient of the function being optimized (the *optimizee*) and proposes the next step.
# Its parameters $\phi$ are trained by ordinary gradient descent on how well the optimizee does: the loss
# of the optimizee, summed along its trajectory, is a differentiable function of $\phi$.
#
# The network is a two-layer LSTM applied *coordinatewise*: every coordinate of the optimizee's parameters
# is handled by the same small network, with its own memory. The learned optimizer therefore has about five
# thousand parameters whatever the size of the problem, and it can be run on problems of a size it never
# saw during training.
#
# ## Why it matters
#
# If an update rule can be learned, it can be specialized to a class of problems (a family of functions,
# a kind of network, a kind of data) and exploit structure that a general-purpose rule ignores. The paper
# tests this idea on quadratic functions, small neural networks on MNIST and CIFAR-10, and neural style
# transfer, and it also asks how far a learned optimizer generalizes: to longer runs, wider or deeper
# networks, other activations, other data. Those generalization questions are as interesting as the
# headline comparisons, and some of the paper's own answers are negative.
#
# ## What this book covers
#
# - **Chapter 1, quadratics**: random 10-dimensional quadratic functions; the learned optimizer against
#   tuned hand-designed optimizers on functions it has not seen.
# - **Chapter 2, MNIST**: a small multilayer perceptron, with the generalization experiments (more steps,
#   more hidden units, more layers, a different activation).
# - **Chapter 3, CIFAR-10**: a small convolutional network optimized by two LSTMs, one for the
#   convolutional parameters and one for the fully connected ones; the label subsets CIFAR-5 and CIFAR-2,
#   and LSTM-sub, an optimizer meta-trained only on held-out labels.
# - **Chapter 4, neural art**: style transfer where the optimizee's parameters are the pixels of an image.
# - **Chapter 5, beyond the paper**: the same coordinatewise LSTM meta-trained, with techniques published
#   since, on a mixture of small networks, and tested on networks it never saw against Adam: an optimizer meant
#   for your own models rather than a reproduction.
#
# Every chapter prints the profile it was executed at, and the table above gives it for each claim. The paper
# profile takes hours of CPU per chapter, so it runs in stages, its training state committed between them; until a
# chapter's paper run is complete, its committed run is a smaller one, and the [summary](summary.ipynb) shows how
# far the paper run under way has got. Each chapter also says what a smaller profile cannot show.
# The [method](method.md) page describes what all chapters share: the update rule, the coordinatewise LSTM,
# the meta-training, the baselines and how results are judged.
#
# ## How to read it
#
# Each chapter is a Jupyter notebook, executed at a named *profile*:
#
# - `paper`: the paper's settings (a GPU is recommended);
# - `quick`: a scaled-down run that takes minutes on a laptop CPU;
# - `smoke`: a run of seconds that only proves the code works end to end; this is what continuous
#   integration runs.
#
# Every chapter prints the profile, seed and device (and, where it uses one, the dataset) that produced it. The outputs shown are those
# committed under `results/`, together with the exact command, seeds, library versions and wall time of the
# run. Every number in a figure, table or verdict is computed by that run and read back from its files;
# none is typed by hand. Where the paper makes a claim, the chapter judges it from the run's own test
# problems, and a summary page sets each claim of the paper beside our measured result.
#
# ## How to re-run a chapter
#
# Install the package (`pip install -e .` from the repository root), then execute a notebook with
# [papermill](https://papermill.readthedocs.io/):
#
# ```bash
# papermill notebooks/01_quadratic.ipynb out.ipynb -p profile quick
# ```
#
# The parameters of a chapter are `profile` (`paper`, `quick` or `smoke`), `seed` and `device`
# (`cpu`, `cuda` or `auto`). An unknown profile is an error, never a silent fallback. Two environment
# variables change the defaults:
#
# - `L2L_PROFILE` sets the profile used when none is passed (otherwise `paper`), so that, for example,
#   `L2L_PROFILE=smoke` runs every notebook at smoke scale;
# - `L2L_DATA` is the root where datasets are looked for (default `./data`).
#
# A run writes its checkpoint, curves and `run.json` to `results/<chapter>/` for the `paper` profile and
# to `results/<chapter>/<profile>/` otherwise, so a quick run never overwrites the committed results.
# Chapter 1 is [Quadratic functions](../notebooks/01_quadratic.ipynb).

# %% [markdown]
# ## Citation
#
# > Marcin Andrychowicz, Misha Denil, Sergio Gómez Colmenarejo, Matthew W. Hoffman, David Pfau, Tom Schaul,
# > Brendan Shillingford and Nando de Freitas. *Learning to learn by gradient descent by gradient descent.*
# > Advances in Neural Information Processing Systems 29 (NeurIPS 2016). arXiv:1606.04474.
#
# ```bibtex
# @inproceedings{andrychowicz2016learning,
#   title     = {Learning to learn by gradient descent
#                by gradient descent},
#   author    = {Andrychowicz, Marcin and Denil, Misha and
#                G{\'o}mez Colmenarejo, Sergio and
#                Hoffman, Matthew W. and Pfau, David and
#                Schaul, Tom and Shillingford, Brendan and
#                de Freitas, Nando},
#   booktitle = {Advances in Neural Information Processing
#                Systems 29},
#   year      = {2016},
#   note      = {arXiv:1606.04474}
# }
# ```
