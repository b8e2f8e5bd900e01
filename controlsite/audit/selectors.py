"""Reading the audit trail: events with filters, and one record's whole story (AT-02, AT-06)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from django.apps import apps
from django.db import models
from django.db.models import QuerySet

from controlsite.accounts import permissions
from controlsite.accounts.roles import Capability
from controlsite.audit.models import AuditEvent
from controlsite.audit.services import record_label
from controlsite.errors import PermissionRefusedError


def audit_events_visible_to(user: Any) -> QuerySet[AuditEvent]:
    """Every event for QA, QPs and inspectors; nothing for anyone else (for now)."""
    if not permissions.user_can(user, Capability.VIEW_AUDIT_TRAIL):
        return AuditEvent.objects.none()
    return AuditEvent.objects.select_related("signature")


@dataclasses.dataclass(frozen=True)
class AuditFilters:
    actor: str = ""
    record_type: str = ""
    record_id: str = ""
    event_type: str = ""
    site_code: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None


def audit_event_list(*, user: Any, filters: AuditFilters) -> QuerySet[AuditEvent]:
    qs = audit_events_visible_to(user)
    if filters.actor:
        qs = qs.filter(actor_username__iexact=filters.actor)
    if filters.record_type:
        qs = qs.filter(target_type=filters.record_type.lower())
    if filters.record_id:
        qs = qs.filter(target_id=filters.record_id)
    if filters.event_type:
        qs = qs.filter(event_type=filters.event_type)
    if filters.site_code:
        qs = qs.filter(site_code=filters.site_code.upper())
    if filters.date_from:
        qs = qs.filter(occurred_at__date__gte=filters.date_from)
    if filters.date_to:
        qs = qs.filter(occurred_at__date__lte=filters.date_to)
    return qs.order_by("-seq")


@dataclasses.dataclass(frozen=True)
class FieldChange:
    field: str
    old: str
    new: str


@dataclasses.dataclass(frozen=True)
class TrailEntry:
    """One line of a record's trail: who, what (old → new), when, why."""

    when: dt.datetime
    who: str
    what: str
    why: str
    changes: tuple[FieldChange, ...] = ()
    source: str = "event"
    request_id: str = ""


def _display(value: Any) -> str:
    if value is None or value == "":
        return "—"
    return str(value)


def record_trail(record: models.Model, *, limit: int = 500) -> list[TrailEntry]:
    """History rows (field-level old → new) and audit events for one record, newest first."""
    entries: list[TrailEntry] = []
    history = getattr(record, "history", None)
    if history is not None:
        rows = list(history.order_by("-history_date", "-history_id")[: limit + 1])
        for newer, older in zip(rows, [*rows[1:], None], strict=False):
            changes: tuple[FieldChange, ...] = ()
            if older is not None and newer.history_type == "~":
                delta = newer.diff_against(older)
                changes = tuple(
                    FieldChange(c.field, _display(c.old), _display(c.new)) for c in delta.changes
                )
            verb = {"+": "created", "~": "changed", "-": "deleted"}[newer.history_type]
            entries.append(
                TrailEntry(
                    when=newer.history_date,
                    who=newer.history_username or "system",
                    what=verb,
                    why=newer.history_change_reason or "",
                    changes=changes,
                    source="history",
                    request_id=newer.request_id,
                )
            )
    events = AuditEvent.objects.filter(
        target_type=record_label(record), target_id=str(record.pk)
    ).order_by("-seq")[:limit]
    for event in events:
        extra = event.extra_data or {}
        changes = ()
        if "old" in extra or "new" in extra:
            changes = (
                FieldChange("value", _display(extra.get("old")), _display(extra.get("new"))),
            )
        entries.append(
            TrailEntry(
                when=event.occurred_at,
                who=event.actor_username or "system",
                what=event.event_type,
                why=event.reason,
                changes=changes,
                source="event",
                request_id=event.request_id,
            )
        )
    entries.sort(key=lambda e: e.when, reverse=True)
    return entries[:limit]


def record_for_trail(*, user: Any, record_type: str, record_id: str) -> models.Model:
    """Load any record for the generic trail page; only roles that read the whole trail."""
    if not permissions.user_can(user, Capability.VIEW_AUDIT_TRAIL):
        raise PermissionRefusedError("Your roles do not include reading the audit trail.")
    try:
        model = apps.get_model(record_type)
    except (LookupError, ValueError) as exc:
        raise LookupError(record_type) from exc
    record: models.Model = model._default_manager.get(pk=record_id)
    return record
