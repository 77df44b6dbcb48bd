"""Trained optimizers shipped with l2l, loadable by name: `l2l.trained.load("quadratic")`.

Every `<name>.safetensors` file in this folder is a checkpoint that a chapter's paper-profile run wrote
(`results/<chapter>/lstm.safetensors`, copied here); the format is `l2l.checkpoint`'s: tensors in safetensors,
the architecture and the run that made it (task, profile, meta-training config, epoch, validation loss,
library version) as JSON metadata, and nothing that is unpickled. Shipping another optimizer means adding
a file here; `available()` finds it.

Used in: l2l.LearnedOptimizer, the command line (`python -m l2l list`), book/use.md.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..checkpoint import load_optimizer, read_metadata
from ..optimizer import LSTMOptimizer

DIR = Path(__file__).resolve().parent
SUFFIX = ".safetensors"


def names() -> list[str]:
    """The shipped optimizers' names, sorted."""
    return sorted(p.name[: -len(SUFFIX)] for p in DIR.glob(f"*{SUFFIX}"))


def available() -> dict[str, dict]:
    """{name: checkpoint metadata} for every shipped optimizer; metadata["info"] says what it was trained on."""
    return {name: read_metadata(DIR / f"{name}{SUFFIX}") for name in names()}


def path(name: str) -> Path:
    """The file of the shipped optimizer `name`; an unknown name is an error that lists the shipped ones."""
    if name not in names():
        shipped = ", ".join(names()) or "none"
        raise ValueError(f"no trained optimizer named {name!r} ships with l2l (shipped: {shipped}); "
                         "give one of those names or the path of a .safetensors checkpoint")
    return DIR / f"{name}{SUFFIX}"


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A shipped name → its file; anything else is taken as the path of a checkpoint file.

    A plain string that is neither shipped nor an existing file is reported as an unknown name.
    """
    if isinstance(name_or_path, str) and name_or_path in names():
        return path(name_or_path)
    candidate = Path(name_or_path).expanduser()
    looks_like_a_name = (isinstance(name_or_path, str) and not name_or_path.endswith(SUFFIX)
                         and "/" not in name_or_path and os.sep not in name_or_path)
    if looks_like_a_name and not candidate.exists():
        path(name_or_path)  # raises, listing the shipped names
    if candidate.is_dir():
        raise ValueError(f"{candidate} is a folder; give the .safetensors checkpoint file inside it")
    return candidate


def load(name_or_path: str | os.PathLike, expect_architecture: dict | None = None,
         device="cpu") -> tuple[LSTMOptimizer, dict]:
    """(optimizer, metadata) for a shipped name or a checkpoint path.

    expect_architecture: if given (e.g. `LSTMOptimizer(config=...).describe()`), a checkpoint of any other
    architecture is an error naming both.
    """
    return load_optimizer(resolve(name_or_path), expect_architecture=expect_architecture, device=device)
