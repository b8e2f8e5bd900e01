"""Who is acting, from where, and why: the context every audit row copies.

Each edge (request middleware, API view, admin, management command, Celery task) opens an
`audit_context`; history rows and audit events read it. Context variables make this safe for
threads and for async code alike.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controlsite.accounts.models import User


@dataclasses.dataclass(frozen=True)
class AuditContext:
    user: User | None = None
    request_id: str = ""
    ip: str | None = None
    user_agent: str = ""
    reason: str = ""
    origin: str = ""

    @property
    def username(self) -> str:
        return self.user.get_username() if self.user is not None else ""


# The default is a frozen dataclass, so sharing it is safe.
_current: contextvars.ContextVar[AuditContext] = contextvars.ContextVar(
    "controlsite_audit_context",
    default=AuditContext(),  # noqa: B039
)


def current() -> AuditContext:
    return _current.get()


@contextmanager
def audit_context(**changes: Any) -> Iterator[AuditContext]:
    """Layer `changes` over the current context for the duration of the block."""
    ctx = dataclasses.replace(_current.get(), **changes)
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def set_context(ctx: AuditContext) -> contextvars.Token[AuditContext]:
    return _current.set(ctx)


def reset_context(token: contextvars.Token[AuditContext]) -> None:
    _current.reset(token)


def update_context(**changes: Any) -> None:
    """Change the current context in place, e.g. once DRF has authenticated a token."""
    _current.set(dataclasses.replace(_current.get(), **changes))
