"""Exceptions that services raise and every edge (views, API, tasks) maps the same way."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """A request the rules refuse. `code` is stable: integrators branch on it."""

    status_code = 400
    default_code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, extra: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.extra = extra


class PermissionRefusedError(ApplicationError):
    """The actor's roles do not allow this (HTTP 403)."""

    status_code = 403
    default_code = "permission_denied"


class TransitionNotAllowedError(ApplicationError):
    """The record's lifecycle does not allow this step from where it is (HTTP 409)."""

    status_code = 409
    default_code = "transition_not_allowed"


class ConflictError(ApplicationError):
    """The request conflicts with the record's current state (HTTP 409)."""

    status_code = 409
    default_code = "conflict"


REASON_MAX = 2000


def require_reason(reason: str) -> str:
    """The reason for a change to GMP data, trimmed; refused when empty or over the limit —
    never cut short silently (ALCOA, design §4)."""
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("Give a reason for this change.", code="reason_required")
    if len(reason) > REASON_MAX:
        raise ApplicationError(
            f"The reason is {len(reason):,} characters; the limit is {REASON_MAX:,}.",
            code="too_long",
        )
    return reason
