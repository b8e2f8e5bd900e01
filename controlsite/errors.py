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
