"""Links a higher app offers on a lower app's record page (design §2): "Raise a deviation" on
a batch, say, without `batches` knowing that deviations exist.

Apps register in `AppConfig.ready()`; the record's page asks `{% record_actions batch %}` (the
`record_actions` template tag) and shows what comes back for the signed-in user.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from django.db import models


@dataclasses.dataclass(frozen=True)
class RecordAction:
    """A link on the pages of records of `model` ("app_label.modelname"). `url` returns the
    link for a record and a user, or None when that user may not use it."""

    name: str
    model: str
    label: str
    url: Callable[[Any, Any], str | None]
    order: int = 100


@dataclasses.dataclass(frozen=True)
class Link:
    label: str
    url: str


_actions: dict[str, RecordAction] = {}


def register(action: RecordAction) -> None:
    """Add an action; a name is registered once (a different one under the same name is a bug)."""
    if action.name in _actions and _actions[action.name] != action:
        raise ValueError(f"A different record action is already registered as {action.name!r}")
    _actions[action.name] = action


def links_for(record: models.Model, user: Any) -> list[Link]:
    """The links `user` may follow from `record`'s page, in order."""
    label = record._meta.label_lower
    links = []
    for action in sorted(_actions.values(), key=lambda a: (a.order, a.name)):
        if action.model != label:
            continue
        url = action.url(record, user)
        if url:
            links.append(Link(action.label, url))
    return links
