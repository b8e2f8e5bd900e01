"""Writing and proving the audit event chain (AT-01, AT-02, AT-04, AT-08)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from typing import Any, ParamSpec

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.utils import timezone

from controlsite.accounts.models import User
from controlsite.audit import context
from controlsite.audit.models import AuditEvent
from controlsite.signatures.models import ElectronicSignature

GENESIS_HASH = "0" * 64
# Any constant will do; it names the one lock every chain append takes on PostgreSQL.
_CHAIN_LOCK_ID = 7_211_045_117
P = ParamSpec("P")


def record_label(instance: models.Model) -> str:
    """`app_label.model`, the record type stored on audit rows and signatures."""
    return instance._meta.label_lower


def _json_safe(value: Any) -> Any:
    """What the value looks like after a round trip through a JSON column."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def canonical_event(fields: dict[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash_fields(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "occurred_at": event.occurred_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "event_type": event.event_type,
        "actor_id": event.actor_id,
        "actor_username": event.actor_username,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "target_repr": event.target_repr,
        "site_code": event.site_code,
        "extra_data": event.extra_data,
        "reason": event.reason,
        "request_id": event.request_id,
        "ip": event.ip,
        "signature_id": event.signature_id,
        "prev_hash": event.prev_hash,
    }


def compute_event_hash(event: AuditEvent) -> str:
    return hashlib.sha256(canonical_event(event_hash_fields(event)).encode()).hexdigest()


def _lock_chain() -> None:
    # Appends must be serial: each row hashes its predecessor. PostgreSQL: a transaction-scoped
    # advisory lock. SQLite: transactions open with BEGIN IMMEDIATE (settings), so the write
    # lock is already held.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_ID])


def audit_event_build(
    *,
    event_type: str,
    actor: User | None = None,
    actor_username: str = "",
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str = "",
    target_repr: str = "",
    extra: dict[str, Any] | None = None,
    reason: str = "",
    site_code: str = "",
    signature: ElectronicSignature | None = None,
    as_system: bool = False,
) -> AuditEvent:
    """An event not yet on the chain: `audit_events_append` gives it its place and hash.
    Who, request id and IP come from the audit context. With no actor, the context's user
    acts; `as_system=True` records the system itself (a lock that the rules impose, a lock
    that runs out), whoever is signed in."""
    ctx = context.current()
    if actor is None and not as_system and ctx.user is not None and ctx.user.is_authenticated:
        actor = ctx.user
    if target is not None:
        target_type = target_type or record_label(target)
        target_id = target_id or str(target.pk)
        target_repr = target_repr or str(target)[:255]
    return AuditEvent(
        event_type=event_type,
        actor=actor,
        actor_username=(
            actor.get_username() if actor is not None else (actor_username or "system")[:150]
        ),
        target_type=target_type,
        target_id=target_id,
        target_repr=target_repr[:255],
        site_code=site_code,
        extra_data=_json_safe(extra or {}),
        reason=reason or ctx.reason,
        request_id=ctx.request_id,
        ip=ctx.ip,
        signature=signature,
    )


def audit_events_append(events: list[AuditEvent]) -> list[AuditEvent]:
    """Append built events to the chain, in order, under one chain lock and one insert.

    Call it inside the service's transaction so the events commit (or roll back) with the
    change they describe. Many events of one change cost one lock and one head read, not one
    each (results ingested together, AT-01).
    """
    if not events:
        return events
    # No savepoint of its own: inside the caller's transaction an audit write that fails must
    # fail the whole change, and two round trips are saved on every audited write.
    with transaction.atomic(savepoint=False):
        _lock_chain()
        last = AuditEvent.objects.order_by("-seq").only("seq", "hash").first()
        seq, prev_hash = (last.seq, last.hash) if last else (0, GENESIS_HASH)
        occurred_at = timezone.now()
        for event in events:
            seq += 1
            event.seq = seq
            event.occurred_at = occurred_at
            event.prev_hash = prev_hash
            event.hash = prev_hash = compute_event_hash(event)
        if len(events) == 1:
            events[0].save(force_insert=True)
        else:
            AuditEvent.objects.bulk_create(events)
    return events


def _appended(build: Callable[P, AuditEvent]) -> Callable[P, AuditEvent]:
    def record(*args: P.args, **kwargs: P.kwargs) -> AuditEvent:
        return audit_events_append([build(*args, **kwargs)])[0]

    record.__doc__ = "Append one event to the chain; takes the fields of `audit_event_build`."
    return record


audit_event_record = _appended(audit_event_build)


@dataclasses.dataclass(frozen=True)
class ChainBreak:
    seq: int
    event_id: int
    problem: str


@dataclasses.dataclass(frozen=True)
class ChainReport:
    checked: int
    first_break: ChainBreak | None
    last_seq: int

    @property
    def intact(self) -> bool:
        return self.first_break is None


def audit_chain_verify(*, from_seq: int = 1, to_seq: int | None = None) -> ChainReport:
    """Recompute the chain and report the first row that was altered, removed or reordered.

    Work grows with the range asked for; rows stream in chunks, so memory stays flat.
    """
    queryset = AuditEvent.objects.filter(seq__gte=from_seq).order_by("seq")
    if to_seq is not None:
        queryset = queryset.filter(seq__lte=to_seq)
    expected_prev: str | None = None
    if from_seq > 1:
        before = AuditEvent.objects.filter(seq=from_seq - 1).only("hash").first()
        expected_prev = before.hash if before else None
    expected_seq = from_seq
    checked = 0
    last_seq = from_seq - 1
    for event in queryset.iterator(chunk_size=2000):
        problem = ""
        if event.seq != expected_seq:
            problem = f"sequence jumps from {expected_seq - 1} to {event.seq}: rows are missing"
        elif expected_prev is not None and event.prev_hash != expected_prev:
            problem = "previous-hash link broken: a row before it was removed, changed or reordered"
        elif expected_prev is None and from_seq == 1 and event.prev_hash != GENESIS_HASH:
            problem = "first row does not start from the genesis hash"
        elif compute_event_hash(event) != event.hash:
            problem = "content does not match its hash: the row was altered"
        if problem:
            return ChainReport(
                checked=checked,
                first_break=ChainBreak(seq=event.seq, event_id=event.pk, problem=problem),
                last_seq=last_seq,
            )
        checked += 1
        last_seq = event.seq
        expected_prev = event.hash
        expected_seq += 1
    return ChainReport(checked=checked, first_break=None, last_seq=last_seq)
