"""What a chapter needs to show its run in the book: figures glued with captions built from the run, glued
numbers for the prose, and paths printed without the machine they were made on.

A figure is glued under a name, and its caption under the same name + "-caption"; the chapter's Markdown
then places them as a numbered figure:

    ```{glue:figure} quadratic-curves
    :name: fig-quadratic-curves

    {glue:md}`quadratic-curves-caption`
    ```

`figure` also displays both, so the notebook reads the same in Jupyter; tag the cell `remove-output` so the
book shows the figure once, where the directive puts it.

Used in: every chapter.
"""
from __future__ import annotations

import io
import os
import re
from pathlib import Path

GLUE_PREFIX = "application/papermill.record/"  # myst-nb's (and scrapbook's) mark of a glued output

# What the paper's figures show, for the captions (the paper prints no numbers).
PAPER_FIGURES = {
    "4 left": "The paper's Figure 4 (left) shows the LSTM below every tuned baseline on new quadratics.",
    "4 centre": "The paper's Figure 4 (centre) shows the LSTM below every tuned baseline over the 100 steps on "
                "MNIST.",
    "4 right": "The paper's Figure 4 (right) continues the MNIST runs to 200 steps, twice the training horizon; "
               "the LSTM stays below the baselines.",
    "5": "The paper's Figure 5 shows the LSTM trained on the base network still ahead of the baselines with 40 "
         "hidden units and with two hidden layers, and behind them with ReLU activations.",
    "6": "The paper's Figure 6 compares the final loss of the LSTM, trained on one architecture, with the "
         "baselines' across the widths and depths of the network.",
    "7": "The paper's Figure 7 shows the two-LSTM optimizer and LSTM-sub below the tuned baselines on CIFAR-10, "
         "CIFAR-5 and CIFAR-2.",
    "8": "The paper's Figure 8 shows the LSTM below the tuned baselines with the training style at 64 px (left) "
         "and with a new style at 128 px (right).",
    "9": "The paper's Figure 9 shows images styled by the LSTM optimizer, with the training style and with a new "
         "style at twice the training resolution.",
    None: "The paper shows no such figure.",
}


def glue(name: str, value, display: bool = False, bundle: dict | None = None) -> None:
    """Store `value`'s display form (or a ready mime `bundle`) in the notebook under `name`, as myst-nb's `glue`
    does, without needing myst-nb where the notebook runs. The book pastes it with `{glue:text}`, `{glue:md}`
    or `{glue:figure}`; with `display=True` Jupyter shows it too."""
    from IPython.core.formatters import format_display_data
    from IPython.display import display as show

    metadata = {}
    if bundle is None:
        bundle, metadata = format_display_data(value)
    prefix = "" if display else GLUE_PREFIX
    metadata = {**metadata, "scrapbook": {"name": name, "mime_prefix": prefix}}
    show({prefix + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)


def svg(fig) -> str:
    """The figure as SVG: sharp at any width, text that scales with the page."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    return buffer.getvalue()


def figure(name: str, fig, caption: str) -> None:
    """Glue `fig` (as SVG) as `name` and its caption (Markdown) as `name`-caption, show both, close the figure."""
    import matplotlib.pyplot as plt

    glue(name, None, display=True, bundle={"image/svg+xml": svg(fig), "text/plain": f"<figure {name}>"})
    glue(f"{name}-caption", None, display=True, bundle={"text/markdown": caption, "text/plain": caption})
    plt.close(fig)


def number(name: str, value: float) -> None:
    """Glue a number for the prose: {glue:text}`name:.3g` prints it with a format."""
    glue(name, float(value))


def caption(text: str, profile: str, paper: str | None = None) -> str:
    """A caption: what is plotted (`text`), the profile of the run and what the paper's figure shows."""
    return f"{text.rstrip('.')}. Run at the `{profile}` profile. {PAPER_FIGURES[paper]}"


def n_curves(curves: dict) -> int:
    """Test problems behind a dict of curves (its values may themselves be dicts of curves)."""
    first = next(iter(curves.values()))
    return n_curves(first) if isinstance(first, dict) else int(first.shape[0])


def curves_caption(subject: str, curves: dict, profile: str, paper: str | None = None,
                   problems: str = "test problems") -> str:
    """Caption for `plots.plot_curves`: the mean over how many problems, the band, the style, the profile."""
    n = n_curves(curves)
    return caption(f"{subject}: mean loss per step over the same {n} {problems} for every optimizer (log scale). "
                   "The band is the 95% confidence interval of the mean. The LSTM is solid; the baselines, each "
                   "with its learning rate tuned on validation problems, are dashed", profile, paper)


def meta_training_caption(subject: str, history, profile: str, metric: str = "summed") -> str:
    """Caption for `plots.plot_meta_training`; metric: the validation score plotted (MetaTrainConfig.val_metric)."""
    h = history if isinstance(history, dict) else vars(history)
    score = ("the loss summed over the horizon" if metric == "summed"
             else "the final loss, each problem's loss at the last step, on a fixed evaluation batch where the "
                  "problem has minibatches")
    steps = h.get("optimizee_steps")
    budget = f" ({steps:,} optimizee steps)" if steps else ""
    return caption(f"{subject}: the validation score φ is chosen by ({score}, mean over the validation problems) "
                   f"over {len(h['train_loss'])} epochs of meta-training{budget}; epoch 0 is the untrained "
                   f"optimizer and the dotted line marks the epoch kept ({h['best_epoch']})", profile)


_ABSOLUTE = re.compile(r"(?<![\w.~:/\\])/(?:[\w.+-]+/)*[\w.+-]+/?")


def display_path(text: str | os.PathLike, repo: Path | None = None) -> str:
    """`text` with every absolute path made machine-independent: relative to the repository when inside it,
    `$L2L_DATA/...` when inside the data root (or any folder named `data`), else the last component."""
    repo = Path(repo or Path(__file__).resolve().parents[1])
    data = os.environ.get("L2L_DATA")
    data = Path(data).resolve() if data else None

    def replace(match: re.Match) -> str:
        path = Path(match.group(0))
        for root, label in ((data, "$L2L_DATA"), (repo, None)):
            if root is not None and (path == root or root in path.parents):
                rel = path.relative_to(root).as_posix()
                if label is None:
                    return rel
                return label if rel == "." else f"{label}/{rel}"
        parts = path.parts
        if "data" in parts:
            rest = parts[len(parts) - 1 - parts[::-1].index("data") + 1:]
            return "/".join(("$L2L_DATA", *rest))
        return path.name

    return _ABSOLUTE.sub(replace, str(text))

