"""Run profiles: `paper` (the paper's settings), `quick` (minutes on a laptop CPU), `smoke` (seconds, CI)."""
from __future__ import annotations

import os

PROFILES = ("paper", "quick", "smoke")


def resolve_profile(profile: str | None = None) -> str:
    """The profile to run: the one given, else $L2L_PROFILE, else "paper". Unknown names are an error."""
    chosen = profile if profile is not None else os.environ.get("L2L_PROFILE", "paper")
    if chosen not in PROFILES:
        source = "profile parameter" if profile is not None else "environment variable L2L_PROFILE"
        raise ValueError(f"unknown profile {chosen!r} (from the {source}); choose one of {', '.join(PROFILES)}")
    return chosen


def pick(profile: str, table: dict):
    """table[profile], with a clear error if a chapter forgot one."""
    if profile not in table:
        raise ValueError(f"no settings for profile {profile!r}; known: {', '.join(table)}")
    return table[profile]
