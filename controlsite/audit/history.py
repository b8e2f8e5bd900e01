"""Row history for every regulated model (AT-01, AT-02, AT-03).

`RegulatedHistory()` is the one way to give a model history. Each history row carries the
username (copied, so it survives a renamed account), the request id, the client IP and user agent,
and a reason for change. A write with no reason is refused: every edge — form, API, admin,
service, command — must say why (AT-03).
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from controlsite.audit import context


class ChangeReasonMissingError(RuntimeError):
    """A regulated record was written without a reason for change (AT-03)."""


class HistoryExtraFields(models.Model):
    history_username = models.CharField(_("username"), max_length=150, blank=True)
    request_id = models.CharField(_("request id"), max_length=64, blank=True)
    ip = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=255, blank=True)

    class Meta:
        abstract = True


def _context_user(instance: Any, **_: Any) -> Any:
    explicit = getattr(instance, "_history_user", None)
    if explicit is not None:
        return explicit
    return context.current().user


def RegulatedHistory(**kwargs: Any) -> HistoricalRecords:  # noqa: N802  (reads like a field)
    """History descriptor for a regulated model; use as `history = RegulatedHistory()`."""
    kwargs.setdefault("bases", [HistoryExtraFields])
    kwargs.setdefault("get_user", _context_user)
    kwargs.setdefault("cascade_delete_history", False)
    kwargs.setdefault("history_change_reason_field", models.TextField(null=True))
    return HistoricalRecords(**kwargs)


def fill_history_row(sender: Any, instance: Any, history_instance: Any, **_: Any) -> None:
    """`pre_create_historical_record` receiver: copy the audit context onto the row."""
    ctx = context.current()
    user = history_instance.history_user
    history_instance.history_username = user.get_username() if user is not None else ctx.username
    history_instance.request_id = ctx.request_id
    history_instance.ip = ctx.ip
    history_instance.user_agent = ctx.user_agent[:255]
    reason = (history_instance.history_change_reason or "").strip() or ctx.reason.strip()
    if not reason:
        raise ChangeReasonMissingError(
            f"{type(instance).__name__} was written without a reason for change; "
            "set one with audit_context(reason=...) or instance._change_reason."
        )
    history_instance.history_change_reason = reason


def require_reason_before_save(sender: Any, instance: Any, raw: bool = False, **_: Any) -> None:
    """`pre_save` receiver: refuse a regulated write with no reason *before* it reaches the
    database, so a forgotten reason never leaves a change without its history row."""
    if raw or not hasattr(sender._meta, "simple_history_manager_attribute"):
        return
    if getattr(instance, "skip_history_when_saving", False):
        return
    reason = (getattr(instance, "_change_reason", "") or "").strip() or context.current().reason
    if not reason.strip():
        raise ChangeReasonMissingError(
            f"{sender.__name__} was written without a reason for change; "
            "set one with audit_context(reason=...) or instance._change_reason."
        )
