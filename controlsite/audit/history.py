"""Row history for every regulated model (AT-01, AT-02, AT-03).

`RegulatedHistory()` is the one way to give a model history. Each history row carries the
username (copied, so it survives a renamed account), the request id, the client IP and user agent,
and a reason for change. A write with no reason is refused: every edge — form, API, admin,
service, command — must say why (AT-03).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from django.db import connection, models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from controlsite.audit import context

ModelT = TypeVar("ModelT", bound=models.Model)


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


def create_with_history(objs: Sequence[ModelT]) -> list[ModelT]:
    """Insert new rows of one regulated model, each with the history row `save()` would write
    (same fields, same audit context, same refusal without a reason: AT-01, AT-03), in two
    statements whatever their number. The one bulk write a model with history may take: the
    ban on bulk writes (design §4) is there because they skip history, and this one does not.
    Where the database cannot return the new keys from a bulk insert, rows are saved one by
    one."""
    objs = list(objs)
    if not objs:
        return objs
    model = type(objs[0])
    if any(type(obj) is not model or not obj._state.adding for obj in objs):
        raise TypeError("create_with_history takes new rows of one model.")
    for obj in objs:
        require_reason_before_save(model, obj)
    if not connection.features.can_return_rows_from_bulk_insert:
        for obj in objs:
            obj.save(force_insert=True)
        return objs
    manager = getattr(model, model._meta.simple_history_manager_attribute)  # type: ignore[attr-defined]
    historical = manager.model
    model._default_manager.bulk_create(objs)
    now = timezone.now()
    rows = []
    for obj in objs:
        row = historical(
            history_date=now,
            history_user=_context_user(obj),
            history_change_reason=getattr(obj, "_change_reason", None),
            history_type="+",
            **{field.attname: getattr(obj, field.attname) for field in historical.tracked_fields},
        )
        fill_history_row(model, obj, row)
        rows.append(row)
    historical._default_manager.bulk_create(rows)
    return objs
