"""The permission-matrix pattern every endpoint uses (NetBox/healthchecks style).

Each endpoint or page declares who gets what:

    AUDIT_EVENTS = Matrix("api:audit-event-list", {"qa": 200, "qp": 200, ..., ANON: 401})

and a test parametrizes over `AUDIT_EVENTS.cases()`. Every persona of design §1 must be named —
`Matrix` refuses an incomplete table — so a new role can never be silently unlisted. Matrices
register themselves; `tests/test_architecture.py` checks every API route has one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.personas import ALL_PERSONAS

ANON = "anonymous"
EVERYONE = (*ALL_PERSONAS, ANON)

REGISTRY: dict[str, Matrix] = {}


@dataclasses.dataclass(frozen=True)
class Matrix:
    name: str
    expected: dict[str, int]

    def __post_init__(self) -> None:
        missing = set(EVERYONE) - set(self.expected)
        extra = set(self.expected) - set(EVERYONE)
        if missing or extra:
            raise ValueError(
                f"Matrix {self.name}: missing {sorted(missing)}, unknown {sorted(extra)}"
            )
        REGISTRY[self.name] = self

    def cases(self) -> list[Any]:
        return [
            pytest.param(who, status, id=f"{who}-{status}") for who, status in self.expected.items()
        ]


def only(allowed: dict[str, int], *, others: int, anonymous: int) -> dict[str, int]:
    """A full table from the personas that differ from `others`."""
    table = dict.fromkeys(ALL_PERSONAS, others)
    table.update(allowed)
    table[ANON] = anonymous
    return table
