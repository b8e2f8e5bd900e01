"""The qualification hook: may this person sign this GMP task at this site? (TR-02)

The training app registers its check in `AppConfig.ready()`:

    qualification.register("training.current_for_role", check)

A check takes the person, the site and the task (e.g. `"batch-step:<template step id>"`, with the
role the task needs) and returns a refusal message, or "" when the person is qualified. Apps that
record GMP work (batches) ask `refusal(...)` before a signature; with no check registered everyone
holding the role is qualified. The kernel never imports an app: it only calls what was registered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Task:
    """What is about to be signed: a stable key, a label for people, and the role it needs."""

    key: str
    label: str
    role: str


Check = Callable[[Any, Any, Task], str]

_registry: dict[str, Check] = {}


def register(name: str, check: Check) -> None:
    if name in _registry and _registry[name] is not check:
        raise ValueError(f"A different qualification check is already registered as {name!r}")
    _registry[name] = check


def unregister(name: str) -> None:
    _registry.pop(name, None)


def refusal(user: Any, site: Any, task: Task) -> str:
    """The first registered check's refusal, in name order, or "" when every check passes."""
    for name in sorted(_registry):
        message = _registry[name](user, site, task)
        if message:
            return message
    return ""
