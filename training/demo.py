"""The training demo: accountability for every demo signer, procedures, curricula and records."""

from __future__ import annotations


def register_demo() -> None:
    """Called from `TrainingConfig.ready()`."""
