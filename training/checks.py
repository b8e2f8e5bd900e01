"""The training app's answer to the kernel's signing hook (TR-07; 21 CFR 11.10(j))."""

from __future__ import annotations

from typing import Any

from training.choices import ItemKind
from training.models import TrainingRecord
from training.selectors import accountability_gap


def may_sign(user: Any, record: Any) -> str:
    """Nobody signs anything before holding the data-integrity and e-signature accountability
    item — except the signature that acknowledges it."""
    if (
        isinstance(record, TrainingRecord)
        and record.user_id == user.pk
        and record.item.kind == ItemKind.ACCOUNTABILITY
    ):
        return ""
    gap = accountability_gap(user)
    if gap is None:
        return ""
    return (
        f"Before your first signature, complete {gap.item.code} {gap.item.title} "
        f"({gap.detail}): you sign to say you are accountable for what you sign."
    )
