"""What every chapter does the same way: its seeds, its test comparison, and the record of its run."""
from __future__ import annotations

import time
from dataclasses import asdict, is_dataclass
from pathlib import Path

from ..baselines import Tuning
from ..evaluate import summarize
from ..meta import VAL_SEED_OFFSET, History
from ..results import save_curves, save_json, versions

TEST_SEED_OFFSET = 2_000_029


def seeds(seed: int) -> dict[str, int]:
    """Disjoint problem streams for one run: meta-training, validation (early stopping and baseline tuning), test."""
    return {"train": seed, "validation": seed + VAL_SEED_OFFSET, "test": seed + TEST_SEED_OFFSET}


def record_run(out_dir: Path, *, chapter: str, notebook: str, settings, seed: int, device: str, started: float,
               curves: dict, tuning: Tuning | None = None, history: History | None = None,
               claims: list | None = None, extra: dict | None = None) -> dict:
    """Write curves.safetensors and run.json (command, seeds, versions, wall time, results) under out_dir."""
    out_dir = Path(out_dir)
    save_curves(out_dir / "curves.safetensors", curves)
    record = {
        "chapter": chapter,
        "command": f"papermill {notebook} out.ipynb -p profile {settings.profile} -p seed {seed}",
        "profile": settings.profile,
        "seed": seed,
        "seeds": seeds(seed),
        "device": device,
        "versions": versions(),
        "wall_time_s": round(time.time() - started, 1),
        "settings": asdict(settings) if is_dataclass(settings) else settings,
        "summary": summarize(curves),
        "tuned_rates": tuning.rates if tuning else None,
        "tuning_scores": {k: {str(lr): v for lr, v in d.items()} for k, d in tuning.scores.items()} if tuning else None,
        "meta_training": asdict(history) if history else None,
        "claims": claims,
        **(extra or {}),
    }
    save_json(out_dir / "run.json", record)
    return record
