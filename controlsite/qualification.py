"""The signing hook: may this person sign anything at all? (TR-07; 21 CFR 11.10(j))

Before a signature is applied, `signatures.services.sign()` asks every registered check. The
training app registers one in `AppConfig.ready()`:

    qualification.register("training.accountability", check)

A check takes the signer and the record about to be signed and returns a refusal message, or ""
when the person may sign. With no check registered everyone holding the SIGN capability may
sign. The kernel never imports an app: it only calls what was registered. (Whether a person is
qualified for a particular GMP task is the training app's `user_is_qualified`, which the apps
above it call directly.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Check = Callable[[Any, Any], str]

_registry: dict[str, Check] = {}


def register(name: str, check: Check) -> None:
    if name in _registry and _registry[name] is not check:
        raise ValueError(f"A different signing check is already registered as {name!r}")
    _registry[name] = check


def unregister(name: str) -> None:
    _registry.pop(name, None)


def signing_refusal(user: Any, record: Any) -> str:
    """The first registered check's refusal, in name order, or "" when every check passes."""
    for name in sorted(_registry):
        message = _registry[name](user, record)
        if message:
            return message
    return ""
