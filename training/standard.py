"""The three items every Control Site needs from the first day (TR-01, TR-04, TR-07): created by
migration 0002, and again by `ensure_standard_items` wherever a database starts empty."""

from __future__ import annotations

from typing import Any

# code, title, kind, validity in months (None: never expires), days allowed, description
STANDARD_ITEMS: tuple[tuple[str, str, str, int | None, int, str], ...] = (
    (
        "DI-ESIG",
        "Data integrity and e-signature accountability",
        "accountability",
        None,
        0,
        "The ALCOA+ principles, why records are never changed or back-dated, and the "
        "accountability policy of 21 CFR 11.10(j): an electronic signature is the legally "
        "binding equivalent of your handwritten one, is yours alone, and is never shared. "
        "You acknowledge it before your first signature of any kind.",
    ),
    (
        "GXP-IND",
        "GxP induction",
        "induction",
        None,
        14,
        "Good manufacturing practice for new starters: the quality system, hygiene and "
        "gowning, documentation, deviations and who to tell.",
    ),
    (
        "GXP-REF",
        "Annual GxP refresher",
        "refresher",
        12,
        30,
        "The yearly refresher: changes to the regulations and procedures, lessons from "
        "deviations and audits.",
    ),
)


def ensure_standard_items(item_model: Any) -> None:
    """Create the standard items that are missing. `item_model` is `TrainingItem`, or its
    historical model inside a migration."""
    for code, title, kind, validity, due_days, description in STANDARD_ITEMS:
        if item_model.objects.filter(code=code).exists():
            continue
        if kind == "accountability" and item_model.objects.filter(kind=kind).exists():
            continue
        item_model.objects.create(
            code=code,
            title=title,
            kind=kind,
            validity_months=validity,
            due_days=due_days,
            description=description,
        )
