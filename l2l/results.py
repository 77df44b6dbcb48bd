"""Writing a run's outputs under results/: curves, tuned rates, the claims, and how the run was made.

Every committed figure and table is read back from these files, so the book never shows a number that a
run did not produce.
"""
from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import __version__
from .fileio import atomic_write


def repo_root() -> Path:
    """The checkout l2l lives in (editable install), else the working directory."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "pyproject.toml").exists() else Path.cwd()


def results_dir(chapter: str, profile: str) -> Path:
    """results/<chapter>/ for the paper profile (committed), results/<chapter>/<profile>/ otherwise."""
    base = Path(os.environ.get("L2L_RESULTS", repo_root() / "results")) / chapter
    return base if profile == "paper" else base / profile


def versions() -> dict:
    import matplotlib
    import torchvision

    return {"python": sys.version.split()[0], "torch": torch.__version__, "torchvision": torchvision.__version__,
            "matplotlib": matplotlib.__version__, "l2l": __version__, "platform": platform.platform()}


def command_line() -> str:
    """How this run was started: papermill parameters are recorded by the caller; here argv and $L2L_PROFILE."""
    return " ".join(sys.argv)


def kept_files(out: Path):
    """(name, contents or None when unreadable) of every comparison kept in out/eval/ (`common.compare`'s cache)."""
    for path in sorted((Path(out) / "eval").glob("*.pt")):
        try:
            yield path.stem, torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - reported; the run that needs the file recomputes it
            yield path.stem, None


@dataclass
class KeptSummary:
    """What a chapter run keeps in out/eval/, read in one pass (see `kept_summary`)."""

    states: dict  # {name: "finished"}, or the names of the parts kept of one stopped midway, or "unreadable"
    seconds: float  # their compute seconds, finished or in part, whichever process (or execution) computed them
    other_code: list  # names kept under code other than this library's: the next run recomputes them


def kept_summary(out: Path, current: set[str]) -> KeptSummary:
    """The comparisons a chapter run keeps in out/eval/ (`common.compare`'s cache): their states, their compute
    seconds (a chapter's evaluation time, which its last execution's wall time does not show), and which of them
    this library's code would not reuse: a kept comparison's key begins with the code digest it was computed
    under (`common.fingerprint`), so an edit of the computing code shows here before a re-run finds out.
    current: the code parts this library's keys begin with (`common.current_code_prefixes()`)."""
    states, seconds, other = {}, 0.0, []
    for name, saved in kept_files(out):
        if saved is None:
            states[name] = "unreadable"
            continue
        states[name] = "finished" if "value" in saved else list(saved.get("parts", {}))
        seconds += sum(saved.get("seconds", {}).values())
        if str(saved.get("key", "")).split(".")[0] not in current:
            other.append(name)
    return KeptSummary(states, seconds, other)


def kept_comparisons(out: Path) -> dict[str, str | list[str]]:
    """`kept_summary`'s states. A run records what was kept when its evaluation began, since its own wall time
    covers only what it computed itself."""
    return kept_summary(out, set()).states


def evaluation_seconds(out: Path) -> float:
    """`kept_summary`'s seconds: the compute seconds of the comparisons kept in out/eval/."""
    return kept_summary(out, set()).seconds


def save_curves(path: Path, curves: dict) -> None:
    tensors = {name: c.float().contiguous() for name, c in curves.items()}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp))


def load_curves(path: Path) -> dict:
    return load_file(str(path))


def save_json(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, default=str)

    def write(tmp):
        Path(tmp).write_text(text + "\n")

    atomic_write(Path(path), write)


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def committed_runs(root: Path | None = None) -> dict[str, dict]:
    """{chapter: run.json} for every paper-profile run committed under results/."""
    root = Path(root) if root else repo_root() / "results"
    return {p.parent.name: load_json(p) for p in sorted(root.glob("*/run.json"))}


def claims_overview(runs: dict[str, dict]) -> list[dict]:
    """One row per claim of every committed run, with the evidence the run recorded."""
    rows = []
    for chapter, run in runs.items():
        for c in run.get("claims") or []:
            close = min(c["rows"], key=lambda r: r["advantage"])
            rows.append({
                "chapter": chapter, "claim of the paper": c["claim"],
                "reproduced": ("yes" if c["holds"] else "no") + ("" if c["significant"] or not c["holds"] else " (n.s.)"),
                "LSTM": f"{close['learned']:.4g}", "closest rival": f"{close['baseline']} {close['other']:.4g}",
                "profile / seed": f"{run['profile']} / {run['seed']}", "data": run.get("data_source", "synthetic"),
            })
    return rows
