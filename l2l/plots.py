"""One figure style for the whole book: log-scale loss against step, the LSTM solid, baselines dashed.

Used in: every chapter.
"""
from __future__ import annotations

import matplotlib.pyplot as plt

from .evaluate import mean_and_band

COLORS = {"LSTM": "C3", "SGD": "C0", "RMSprop": "C1", "Adam": "C2", "NAG": "C4"}


def style_for(name: str) -> dict:
    learned = name.startswith("LSTM")
    color = COLORS.get(name, COLORS["LSTM"] if learned else None)
    return {"color": color, "linestyle": "-" if learned else "--", "linewidth": 2.0 if learned else 1.4}


def plot_curves(curves: dict, title: str = "", ax=None, ylabel: str = "loss"):
    """Mean loss per step with its 95% band, one line per optimizer; returns the figure."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.6))
    for name, c in curves.items():
        mean, lo, hi = mean_and_band(c)
        steps = range(len(mean))
        style = style_for(name)
        ax.plot(steps, mean, label=name, **style)
        ax.fill_between(steps, lo.clamp_min(mean.min().item() * 1e-3), hi, color=style["color"], alpha=0.15,
                        linewidth=0)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(frameon=False)
    ax.grid(True, which="major", alpha=0.3)
    ax.figure.tight_layout()
    return ax.figure


def plot_meta_training(history, ax=None):
    """Validation meta-loss per epoch (epoch 0 = untrained φ), the best epoch marked."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(range(len(history.val_loss)), history.val_loss, color=COLORS["LSTM"], label="validation")
    ax.axvline(history.best_epoch, color="grey", linestyle=":", label=f"best (epoch {history.best_epoch})")
    ax.set_yscale("log")
    ax.set_xlabel("meta-training epoch")
    ax.set_ylabel("summed loss over the horizon")
    ax.legend(frameon=False)
    ax.figure.tight_layout()
    return ax.figure


def plot_grid(cells: list[dict], trained_width: int | None = None):
    """Figure 6: final loss against width, one panel per depth; LSTM solid, best tuned baseline dashed."""
    depths = sorted({c["depth"] for c in cells})
    fig, axes = plt.subplots(1, len(depths), figsize=(4 * len(depths), 3.4), sharey=True, squeeze=False)
    for ax, depth in zip(axes[0], depths):
        row = sorted((c for c in cells if c["depth"] == depth), key=lambda c: c["width"])
        widths = [c["width"] for c in row]
        ax.plot(widths, [c["lstm"] for c in row], marker="o", label="LSTM", **style_for("LSTM"))
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
    axes[0][0].set_ylabel("final loss")
    axes[0][0].legend(frameon=False)
    fig.tight_layout()
    return fig


def plot_image_grid(rows: dict[str, dict], title: str = ""):
    """Figure 9: one row per setting, one column per image ({column title: [3, H, W] in [0, 1]})."""
    n_cols = max(len(images) for images in rows.values())
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(2.2 * n_cols, 2.4 * len(rows)), squeeze=False)
    for ax_row, (label, images) in zip(axes, rows.items()):
        for ax, (column, image) in zip(ax_row, images.items()):
            ax.imshow(image.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy())
            ax.set_title(column, fontsize=9)
        for ax in ax_row:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
        ax_row[0].set_ylabel(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
