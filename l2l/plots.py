"""One figure style for the whole book: log-scale loss against step, the LSTM solid, baselines dashed.

Figures are sized for the book's text column (about 7 inches): at most two panels side by side (`panels`), so
that their text stays legible at 1280 px. `l2l.book.figure` glues a figure with its caption.

Used in: every chapter.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from .evaluate import mean_and_band

COLORS = {"LSTM": "C3", "SGD": "C0", "RMSprop": "C1", "Adam": "C2", "NAG": "C4",
          "Adam (tuned)": "C2", "Adam, lr 1e-3": "C9"}  # chapter 5: Adam tuned, and at its default rate


WIDTH = 7.0  # inches: the book's text column
PANEL_HEIGHT = 3.0


def panels(n: int, height: float = PANEL_HEIGHT, sharey: bool = False):
    """A figure of `n` panels, at most two per row, sized for the book; returns (figure, list of n axes)."""
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH if cols == 2 else WIDTH * 0.62, height * rows),
                             sharey=sharey, squeeze=False, layout="constrained")
    axes = list(axes.flat)
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


def style_for(name: str) -> dict:
    learned = name.startswith("LSTM")
    color = COLORS.get(name, COLORS["LSTM"] if learned else None)
    return {"color": color, "linestyle": "-" if learned else "--", "linewidth": 2.0 if learned else 1.4}


BAND_FLOOR = 0.3  # the panel's bottom: no lower than this fraction of the lowest mean loss


def plot_curves(curves: dict, title: str = "", ax=None, ylabel: str = "loss", legend: bool = True):
    """Mean loss per step with its 95% band, one line per optimizer; returns the figure.

    A curve that diverges (its mean rises above 10x the highest starting loss, or is not finite) leaves the top
    of the panel, so it does not squash the others, and the panel names it; its band is not drawn. Likewise a band
    whose lower edge nears 0 (a few noisy minibatch losses) leaves the bottom, which stays at `BAND_FLOOR` times the
    lowest mean loss."""
    if ax is None:
        _, (ax,) = panels(1, height=3.2)
    means = {name: mean_and_band(c) for name, c in curves.items()}
    start = max((m[0].item() for m, _, _ in means.values() if math.isfinite(m[0].item())), default=1.0)
    ceiling = 10 * start
    diverged = []
    for name, (mean, lo, hi) in means.items():
        steps = range(len(mean))
        style = style_for(name)
        ax.plot(steps, mean, label=name, **style)
        if not bool(mean.isfinite().all()) or mean.max().item() > ceiling:
            diverged.append(name)
        if name in diverged:  # an empty band: its spread would only stretch the axis
            lo = hi = mean
        ax.fill_between(steps, lo.clamp_min(mean.min().item() * 1e-3), hi, color=style["color"], alpha=0.15,
                        linewidth=0)
    ax.set_yscale("log")
    lowest = min((m[m.isfinite()].min().item() for m, _, _ in means.values() if m.isfinite().any()), default=None)
    if lowest is not None and lowest > 0 and ax.get_ylim()[0] < BAND_FLOOR * lowest:
        ax.set_ylim(bottom=BAND_FLOOR * lowest)  # a band reaching towards 0 leaves the panel, not the curves squashed
    if diverged:
        ax.set_ylim(top=ceiling)
        ax.text(0.98, 0.97, "diverged: " + ", ".join(diverged), transform=ax.transAxes, ha="right", va="top",
                fontsize="x-small")
    readable_log_ticks(ax)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend:
        ax.legend(frameon=False, fontsize="small")
    ax.grid(True, which="major", alpha=0.3)
    _tidy(ax.figure)
    return ax.figure


def readable_log_ticks(ax) -> None:
    """On a log axis that spans less than ~1.5 decades, label ticks as plain numbers (0.3, 0.5, 1) rather
    than as 3 x 10^-1."""
    lo, hi = ax.get_ylim()
    if lo <= 0 or hi / lo > 30:
        return
    subs = (1.0, 2.0, 3.0, 5.0) if hi / lo > 4 else (1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
    ax.yaxis.set_major_locator(LogLocator(subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def shared_legend(fig) -> None:
    """One legend for all panels of `fig`, below them, instead of one per panel (needs `panels`' layout)."""
    entries = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
        if ax.get_legend():
            ax.get_legend().remove()
    fig.legend(entries.values(), entries.keys(), loc="outside lower center", ncols=len(entries) if len(entries) <= 6 else math.ceil(len(entries) / 2),
               frameon=False, fontsize="small")


def plot_meta_training(history, ax=None, metric: str = "summed"):
    """The validation score φ is chosen by, per epoch validated (epoch 0 = untrained φ), the best epoch marked;
    metric: which score that is ("summed" over the horizon or "final", MetaTrainConfig.val_metric)."""
    if ax is None:
        _, (ax,) = panels(1)
    epochs = history.val_epochs or range(len(history.val_loss))  # run records from before val_epochs existed
    ax.plot(epochs, history.val_loss, color=COLORS["LSTM"], label="validation")
    ax.axvline(history.best_epoch, color="grey", linestyle=":", label=f"best (epoch {history.best_epoch})")
    ax.set_yscale("log")
    ax.set_xlabel("meta-training epoch")
    ax.set_ylabel("validation loss, summed over the horizon" if metric == "summed" else "validation final loss")
    ax.legend(frameon=False)
    _tidy(ax.figure)
    return ax.figure


def _tidy(fig) -> None:
    """Lay a figure out so labels never overlap ticks: constrained layout where it was set, else tight."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()


def plot_grid(cells: list[dict], trained_width: int | None = None):
    """Figure 6: final loss against width, one panel per depth (two per row); LSTM solid, each tuned baseline
    dashed (cells from `mnist.grid`; older cells without "finals" show the best baseline, named)."""
    depths = sorted({c["depth"] for c in cells})
    fig, axes = panels(len(depths), sharey=True)
    for ax, depth in zip(axes, depths):
        row = sorted((c for c in cells if c["depth"] == depth), key=lambda c: c["width"])
        widths = [c["width"] for c in row]
        ax.plot(widths, [c["lstm"] for c in row], marker="o", label="LSTM", **style_for("LSTM"))
        if all("finals" in c for c in row):
            for name in (n for n in row[0]["finals"] if n != "LSTM"):
                ax.plot(widths, [c["finals"][name] for c in row], marker="s", markersize=3, label=name,
                        **style_for(name))
        else:
            ax.plot(widths, [c["baseline"] for c in row], marker="s", color="grey", linestyle="--",
                    label="best tuned baseline")
            for c in row:
                ax.annotate(c["best_baseline"], (c["width"], c["baseline"]), fontsize=7, textcoords="offset points",
                            xytext=(0, 5), ha="center")
        if trained_width is not None and depth == 1:
            ax.axvline(trained_width, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.set_yscale("log")
        ax.set_title(f"{depth} hidden layer{'s' if depth > 1 else ''}")
        ax.set_xlabel("hidden units")
    for ax in axes:
        readable_log_ticks(ax)
    for ax in axes[::2]:
        ax.set_ylabel("final loss")
    shared_legend(fig)
    return fig


def plot_image_grid(rows: dict[str, dict], title: str = ""):
    """Figure 9: one row per setting, one column per image ({column title: [3, H, W] in [0, 1]}), at book width;
    the setting is written left of each row."""
    n_cols = max(len(images) for images in rows.values())
    side = WIDTH / (n_cols + 0.4)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(WIDTH, (side + 0.35) * len(rows) + (0.3 if title else 0)),
                             squeeze=False, layout="constrained")
    for ax_row, (label, images) in zip(axes, rows.items()):
        for ax, (column, image) in zip(ax_row, images.items()):
            ax.imshow(image.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy())
            ax.set_title(column, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        for ax in ax_row[len(images):]:
            ax.remove()
        ax_row[0].set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
