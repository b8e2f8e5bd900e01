"""The training app's panels: the home dashboard (each person's to-do list, each site's training
compliance) and the site page (TR-06)."""

from __future__ import annotations


def register_panels() -> None:
    """Called from `TrainingConfig.ready()`."""
