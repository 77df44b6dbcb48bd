"""The full state of a meta-training run on disk, so that a killed or interrupted run resumes exactly.

A state holds everything the rest of the run depends on: φ, Adam's moments and step counts, the state of
the generator that samples training problems, torch's global RNG state(s), the early-stopping record (the
History and the best φ so far), the position reached (epoch and problem) and the loss and fault counters of
the epoch in progress, plus the config, the architecture and the problem families that must match on resume.
On the CPU, resuming from it gives the same φ, History and curves as a run that was never stopped, bit for bit.

Format: `torch.save`, read back with `torch.load(weights_only=True)`. The trained-optimizer checkpoints users
exchange (l2l.checkpoint) are safetensors + JSON; this file is a private scratch file of one run, and Adam's
state is a nested structure of tensors and numbers (and History may hold inf) that torch's safe loader
round-trips exactly without flattening. `weights_only=True` only rebuilds tensors and plain containers, so
loading it never runs code either. Writes are atomic (temporary file + rename).
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch

from .fileio import atomic_write

FORMAT = "l2l-training-state/1"


def describe_family(family) -> str:
    """What must not change between a run and its resume: the family's type and its (dataclass) settings.

    The device is left out (a CPU run may be resumed elsewhere; only CPU resumes are promised bit for bit).
    """
    name = type(family).__name__
    if not dataclasses.is_dataclass(family):
        return name
    fields = [f"{f.name}={getattr(family, f.name)!r}" for f in dataclasses.fields(family)
              if f.repr and f.name != "device"]
    return f"{name}({', '.join(fields)})"


def capture(optimizer, meta_opt, generator, **loop) -> dict:
    """A self-contained copy of the run as it stands now; `loop` carries the trainer's own counters."""
    state = {
        "format": FORMAT,
        "phi": {k: v.detach().clone() for k, v in optimizer.state_dict().items()},
        "adam": copy.deepcopy(meta_opt.state_dict()),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        **loop,
    }
    return state


def save_state(path, state: dict) -> None:
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def sweep_orphans(path) -> None:
    """Delete temporary files left beside `path` by a run killed while saving (SIGKILL). Only the run that
    is about to write `path` may call this: a reader must not delete a live writer's temporary file."""
    path = Path(path)
    for orphan in path.parent.glob(f".{path.name}.*.tmp"):
        orphan.unlink(missing_ok=True)


def load_state(path) -> dict:
    """Read a state file; a truncated, corrupted or foreign file is a one-line ValueError."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip reader, unpickler and weights-only refusals all raise different types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{path} is not a readable training state (truncated or corrupted?): {first}; "
                         "delete it to start meta-training afresh") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is not an l2l training state (format {found!r}, expected {FORMAT!r}); "
                         "pass another state_path or delete the file")
    return state


def check_resumable(state: dict, path, *, config: dict, architecture: dict, families: dict, epochs: int,
                    defaults: dict | None = None) -> None:
    """Refuse to resume a run with different settings: the result would match neither run.

    defaults: the config's default values; a setting added to the config after the state was written matches
    when it holds its default (the behaviour the older run had). Lists and tuples of the same items are equal (a
    config that went through JSON holds lists where the dataclass holds tuples)."""
    fix = (f"pass the same settings to resume it, or start afresh (--fresh on the command line, fresh=True in a "
           f"notebook, or delete {path})")
    defaults = defaults or {}
    saved = {k: v for k, v in state["config"].items() if k != "epochs"}  # more epochs may extend a run
    diff = [f"{k}: {saved.get(k, defaults.get(k))!r} there, {v!r} now" for k, v in config.items()
            if k != "epochs" and _as_tuples(saved.get(k, defaults.get(k))) != _as_tuples(v)]
    diff += [f"{k}: saved but unknown now" for k in saved if k not in config]
    if diff:
        raise ValueError(f"{path} belongs to a meta-training run with a different config ({'; '.join(diff)}); {fix}")
    if state["architecture"] != architecture:
        raise ValueError(f"{path} holds an optimizer of architecture {state['architecture']}, "
                         f"not this one ({architecture}); {fix}")
    if state["families"] != families:
        raise ValueError(f"{path} was trained on problems {state['families']}, not {families}; {fix}")
    if (state["epoch"], state["problem"]) > (epochs + 1, 0):
        raise ValueError(f"{path} has already reached epoch {state['epoch']} of a longer run, beyond epochs={epochs}; "
                         f"pass epochs >= {state['epoch'] - (state['problem'] == 0)} or delete the file")


def _as_tuples(value):
    """`value` with every list (at any depth) a tuple."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def restore(state: dict, optimizer, meta_opt, generator) -> None:
    """Put φ, Adam and the random number generators back as they were when `state` was captured."""
    optimizer.load_state_dict(state["phi"])
    meta_opt.load_state_dict(state["adam"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    cuda = state.get("cuda_rng")
    if cuda is not None and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)
