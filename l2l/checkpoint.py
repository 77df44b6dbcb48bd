"""Trained optimizers on disk: tensors in safetensors, everything else as JSON metadata.

Loading never unpickles code. Writes are atomic (temporary file, then rename), so a run killed while
saving leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .fileio import atomic_write
from .optimizer import LSTMOptimizer

FORMAT = "l2l-optimizer/1"


def save_optimizer(optimizer: LSTMOptimizer, path, **info) -> None:
    """Save φ with the architecture and any JSON-serialisable `info` (task, profile, config, scores)."""
    meta = {"format": FORMAT, "l2l_version": __version__, "architecture": optimizer.describe(), "info": info}
    tensors = {k: v.detach().cpu().contiguous() for k, v in optimizer.state_dict().items()}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata={"l2l": json.dumps(meta)}))


def read_metadata(path) -> dict:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no optimizer checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("l2l")
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} is not a readable optimizer checkpoint (truncated or corrupted?): {e}") from None
    if raw is None:
        raise ValueError(f"{path} is a safetensors file but not an l2l optimizer checkpoint (no 'l2l' metadata)")
    meta = json.loads(raw)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} has checkpoint format {meta.get('format')!r}; this l2l reads {FORMAT!r}")
    return meta


def build_optimizer(architecture: dict):
    """An untrained optimizer of the described architecture: the paper's LSTMOptimizer, or l2l.general's
    RNNpropOptimizer where the description's "kind" says so."""
    from .general.optimizer import KIND, RNNpropOptimizer

    if architecture.get("kind") == KIND:
        return RNNpropOptimizer.from_description(architecture)
    return LSTMOptimizer.from_description(architecture)


def load_optimizer(path, expect_architecture: dict | None = None, device="cpu") -> tuple[LSTMOptimizer, dict]:
    """Rebuild the optimizer saved at `path`; returns (optimizer, metadata).

    expect_architecture: if given, the checkpoint's architecture must equal it, else a clear error.
    """
    meta = read_metadata(path)
    arch = meta["architecture"]
    if expect_architecture is not None and arch != expect_architecture:
        raise ValueError(f"{path} holds an optimizer of architecture {arch}, not the requested {expect_architecture}")
    try:
        optimizer = build_optimizer(arch)
    except (TypeError, KeyError, ValueError) as e:  # e.g. a config field this version of l2l does not know
        raise ValueError(f"{path} describes an optimizer this l2l ({__version__}) cannot build: {e}") from None
    try:
        optimizer.load_state_dict(load_file(str(path)))
    except (SafetensorError, RuntimeError) as e:
        raise ValueError(f"{path} does not match its own architecture metadata (corrupted?): {e}") from None
    return optimizer.to(device), meta
