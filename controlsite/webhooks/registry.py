"""The webhook event-type registry: which events the system can send (design §6).

Each app registers the types it emits in `AppConfig.ready()`:

    register_event_type("batches.batch_certified", "A QP certified a batch for release.")

and then calls `controlsite.webhooks.services.webhook_emit(event_type=...)` inside the
transaction of the change. A subscription may only name registered types, and emitting an
unregistered one is a programming error. The kernel never imports an app: it only knows what was
registered.
"""

from __future__ import annotations

import re

# `<app>.<event>`, lower case: the same shape as the audit trail's event types.
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
EVENT_TYPE_MAX = 100
_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)

_registry: dict[str, str] = {}


def register_event_type(name: str, description: str) -> None:
    """Add an event type. Names are unique, `<app>.<event>` in lower case (at most 100
    characters); registering a name again with another description is a bug (ValueError)."""
    if len(name) > EVENT_TYPE_MAX or not _EVENT_TYPE.match(name):
        raise ValueError(
            f"A webhook event type is `<app>.<event>` in lower case, at most {EVENT_TYPE_MAX} "
            f"characters, not {name!r}"
        )
    if not description.strip():
        raise ValueError(f"Describe the webhook event type {name!r} for the people who subscribe")
    if name in _registry and _registry[name] != description:
        raise ValueError(f"The webhook event type {name!r} is already registered differently")
    _registry[name] = description


def unregister_event_type(name: str) -> None:
    _registry.pop(name, None)


def registered_event_types() -> dict[str, str]:
    """Every registered type with its description, by name."""
    return dict(sorted(_registry.items()))


def is_registered(name: str) -> bool:
    return name in _registry
