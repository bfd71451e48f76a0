"""Adapters between the book's diagnostics and other RL libraries, each imported on use:
``rldebug.integrations.sb3`` for stable-baselines3 and sb3-contrib."""

from __future__ import annotations

from typing import Any

__all__ = ["is_sb3_model"]


def is_sb3_model(obj: Any) -> bool:
    """True for a stable-baselines3 or sb3-contrib model, or a subclass of one (without
    importing either library)."""
    roots = {cls.__module__.split(".")[0] for cls in type(obj).__mro__}
    return bool(roots & {"stable_baselines3", "sb3_contrib"})
