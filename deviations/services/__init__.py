"""Every write to deviations and CAPA: check the role and the transition, sign where a
signature is due, write the audit trail (design §3; DV-01…DV-05).

Who may do what:
- raise a deviation: anyone who may see its site and works on GMP records there (site staff
  and integrators at the site, Control Site QA, QPs); inspectors, trainers and the
  administrator do not;
- confirm its class, triage, investigate, hand over to CAPA, close (signed), cancel, decide an
  extension, and everything on CAPA: Control Site QA;
- fill in the investigation and ask for an extension: QA, or the site lead at its site;
- complete a CAPA action: its owner, or QA.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from batches.choices import ComparabilitySignalKind, SignalKind
from batches.models import Batch, BatchSignal, ComparabilitySignal, StepRecord, TestResult
from batches.selectors import batches_visible_to
from controlsite.accounts import permissions
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability, Role
from controlsite.accounts.selectors import users_holding
from controlsite.audit.context import audit_context
from controlsite.audit.services import audit_event_record
from controlsite.errors import (
    ApplicationError,
    ConflictError,
    PermissionRefusedError,
    TransitionNotAllowedError,
    require_reason,
)
from controlsite.notifications.services import notify
from controlsite.signatures.models import SignatureMeaning
from controlsite.signatures.services import SignatureCredentials, sign, signing_transaction
from controlsite.webhooks.services import webhook_emit
from deviations.choices import (
    CAPA_OPEN,
    CLASS_CRITERIA,
    DEFAULT_CLOSURE_DAYS,
    DEFAULT_TRIAGE_WORKING_DAYS,
    DEVIATION_OPEN,
    DEVIATION_TRANSITIONS,
    EXTENSION_DAYS_MAX,
    REASON_MAX,
    TEXT_MAX,
    TITLE_MAX,
    ActionStatus,
    CapaKind,
    CapaSource,
    CapaStatus,
    ComplaintStatus,
    DeviationAction,
    DeviationClass,
    DeviationSource,
    DeviationStatus,
    Effectiveness,
    ExtensionStatus,
    RootCauseCategory,
)
from deviations.events import DeviationEvent, DeviationWebhook
from deviations.models import (
    Capa,
    CapaAction,
    Complaint,
    Deviation,
    DeviationExtension,
    OosInvestigation,
    RecordSequence,
)
from sites.choices import SiteRole
from sites.models import Site
from sites.selectors import site_leads, sites_visible_to, user_roles_at_site

#
# Shared checks
#

# How far back a deviation may be dated when raised (a late discovery, not a typing slip).
OCCURRED_WITHIN_DAYS = 5 * 365


def _text(value: str, *, field: str, limit: int = TEXT_MAX, required: bool = True) -> str:
    value = (value or "").strip()
    if required and not value:
        raise ApplicationError(f"{field} is required.", code="invalid")
    if len(value) > limit:
        raise ApplicationError(
            f"{field} is {len(value):,} characters; the limit is {limit:,}.", code="too_long"
        )
    return value


def _choice(value: str, choices: Any, *, field: str) -> str:
    if value not in choices.values:
        known = ", ".join(choices.values)
        raise ApplicationError(f"{field} must be one of: {known}.", code="invalid_choice")
    return str(value)


def _require_qa(actor: User, what: str) -> None:
    permissions.require(actor, Capability.MANAGE_QUALITY_RECORDS, f"Only Control Site QA {what}.")


def may_raise(actor: Any) -> bool:
    """Whether `actor` raises deviations (and may own a CAPA): QA, QPs, site staff and
    integrators; never inspectors, trainers or the administrator."""
    return any(
        permissions.user_can(actor, capability)
        for capability in (
            Capability.MANAGE_QUALITY_RECORDS,
            Capability.CERTIFY_BATCH,
            Capability.RECORD_MANUFACTURE,
        )
    )


def _require_sees_site(actor: User, site: Site) -> None:
    if not sites_visible_to(actor).filter(pk=site.pk).exists():
        raise PermissionRefusedError(f"You do not work at {site.code}.", code="not_a_site_member")


def may_investigate(actor: Any, site: Site) -> bool:
    """Whether `actor` writes a deviation's investigation and asks for extensions at `site`:
    Control Site QA, or the site lead there."""
    return permissions.user_can(
        actor, Capability.MANAGE_QUALITY_RECORDS
    ) or SiteRole.SITE_LEAD in user_roles_at_site(actor, site)


def _require_qa_or_site_lead(actor: User, site: Site, what: str) -> None:
    if may_investigate(actor, site):
        return
    raise PermissionRefusedError(
        f"Only Control Site QA or the site lead at {site.code} {what}.", code="permission_denied"
    )


def _today() -> dt.date:
    return timezone.localdate()


def _future_date(value: dt.date | None, *, field: str) -> dt.date:
    if not isinstance(value, dt.date):
        raise ApplicationError(f"{field} is required, as a date.", code="due_date_required")
    if value < _today():
        raise ApplicationError(f"{field} is in the past.", code="date_in_past")
    return value


def next_number(prefix: str, year: int) -> str:
    """The next record number of this kind and year, e.g. DEV-2026-0007 (call in the
    creating transaction: the counter row is locked until it commits)."""
    sequence, _ = RecordSequence.objects.select_for_update().get_or_create(prefix=prefix, year=year)
    sequence.last += 1
    sequence.save(update_fields=["last"])
    return f"{prefix}-{year}-{sequence.last:04d}"


def _deviation_url(deviation: Deviation) -> str:
    return reverse("deviations:detail", args=[deviation.number])


def _qa_people() -> Iterable[User]:
    return users_holding(Role.CONTROL_SITE_QA)


#
# Due dates (DV-04)
#


def add_working_days(day: dt.date, count: int) -> dt.date:
    """`count` working days (Monday to Friday) after `day`."""
    while count > 0:
        day += dt.timedelta(days=1)
        if day.weekday() < 5:
            count -= 1
    return day


def triage_due(happened_on: dt.date) -> dt.date:
    days = getattr(settings, "DEVIATION_TRIAGE_WORKING_DAYS", DEFAULT_TRIAGE_WORKING_DAYS)
    return add_working_days(happened_on, int(days))


def closure_due(happened_on: dt.date, deviation_class: str) -> dt.date:
    days = {**DEFAULT_CLOSURE_DAYS, **getattr(settings, "DEVIATION_CLOSURE_DAYS", {})}
    return happened_on + dt.timedelta(days=int(days[deviation_class]))


#
# Deviations
#


def deviation_raise(
    *,
    actor: User,
    site: Site,
    title: str,
    description: str,
    proposed_class: str,
    occurred_at: dt.datetime | None = None,
    batch: Batch | None = None,
    step_record: StepRecord | None = None,
    result: TestResult | None = None,
    audit_reference: str = "",
    immediate_action: str = "",
    reason: str = "",
) -> Deviation:
    """Raise a deviation from a site, a batch, a step, a result or an audit finding (DV-01).
    The raiser proposes a class; QA confirms it (DV-03). QA is told at once."""
    if not may_raise(actor):
        raise PermissionRefusedError(
            "Only site staff, integrators, Control Site QA and QPs raise deviations.",
            code="permission_denied",
        )
    _require_sees_site(actor, site)
    title = _text(title, field="Title", limit=TITLE_MAX)
    description = _text(description, field="Description")
    immediate_action = _text(immediate_action, field="Immediate action", required=False)
    proposed_class = _choice(proposed_class, DeviationClass, field="Class")
    audit_reference = _text(
        audit_reference, field="Audit finding reference", limit=100, required=False
    )
    now = timezone.now()
    occurred_at = occurred_at or now
    if occurred_at > now + dt.timedelta(minutes=5):
        raise ApplicationError("It cannot have occurred in the future.", code="date_in_future")
    if occurred_at < now - dt.timedelta(days=OCCURRED_WITHIN_DAYS):
        raise ApplicationError(
            f"It is dated more than {OCCURRED_WITHIN_DAYS // 365} years ago: check the date.",
            code="date_out_of_range",
        )
    if step_record is not None:
        batch = batch or step_record.batch
        if step_record.batch_id != batch.pk:
            raise ApplicationError("The step is not of this batch.", code="invalid")
    if result is not None:
        batch = batch or result.batch
        if result.batch_id != batch.pk:
            raise ApplicationError("The result is not of this batch.", code="invalid")
    if batch is not None:
        if batch.site_id != site.pk:
            raise ApplicationError(
                f"Batch {batch.number} was not made at {site.code}.", code="invalid"
            )
        if not batches_visible_to(actor).filter(pk=batch.pk).exists():
            raise PermissionRefusedError("You may not see this batch.", code="not_a_site_member")
    source = (
        DeviationSource.RESULT
        if result is not None
        else DeviationSource.STEP
        if step_record is not None
        else DeviationSource.BATCH
        if batch is not None
        else DeviationSource.AUDIT
        if audit_reference
        else DeviationSource.SITE
    )
    reason = (reason or "").strip() or "deviation raised"
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        return _create_deviation(
            actor=actor,
            site=site,
            batch=batch,
            step_record=step_record,
            result=result,
            source=source,
            audit_reference=audit_reference,
            title=title,
            description=description,
            proposed_class=proposed_class,
            immediate_action=immediate_action,
            occurred_at=occurred_at,
            reason=reason,
        )


def _create_deviation(*, actor: User | None, reason: str, **fields: Any) -> Deviation:
    # DV-04: the clocks start on the day it happened, not on the day someone recorded it, so
    # a late record cannot buy itself time; one raised late is overdue for triage at once.
    happened_on = timezone.localdate(fields["occurred_at"])
    deviation = Deviation.objects.create(
        number=next_number("DEV", timezone.localdate().year),
        triage_due_on=triage_due(happened_on),
        due_on=closure_due(happened_on, fields["proposed_class"]),
        created_by=actor,
        **fields,
    )
    site = deviation.site
    audit_event_record(
        event_type=DeviationEvent.RAISED,
        actor=actor,
        as_system=actor is None,
        target=deviation,
        reason=reason,
        site_code=site.code,
        extra={
            "class": deviation.proposed_class,
            "batch": deviation.batch.number if deviation.batch else None,
            "source": deviation.source,
        },
    )
    severity = "block" if deviation.proposed_class != DeviationClass.MINOR else "warn"
    notify(
        recipients=[*_qa_people(), *site_leads(site)],
        subject=f"{deviation.number} raised at {site.code}: {deviation.title}",
        body=f"Proposed class: {deviation.get_proposed_class_display()}. Triage by "
        f"{deviation.triage_due_on:%d %b %Y}.",
        link=_deviation_url(deviation),
        severity=severity,
    )
    webhook_emit(
        event_type=DeviationWebhook.OPENED,
        site_code=site.code,
        payload={
            "deviation": deviation.number,
            "site": site.code,
            "batch": deviation.batch.number if deviation.batch else None,
            "class": deviation.proposed_class,
            "title": deviation.title,
            "url": _deviation_url(deviation),
        },
    )
    return deviation


def _lock(deviation: Deviation) -> Deviation:
    return (
        Deviation.objects.select_for_update(of=("self",))
        .select_related("site", "batch")
        .get(pk=deviation.pk)
    )


def _require_open(deviation: Deviation) -> None:
    if deviation.status not in DEVIATION_OPEN:
        raise TransitionNotAllowedError(
            f"{deviation.number} is {deviation.get_status_display().lower()}: it no longer "
            "changes.",
            code="deviation_not_open",
        )


def deviation_confirm_class(
    *, actor: User, deviation: Deviation, deviation_class: str, reason: str
) -> Deviation:
    """QA confirms (or changes) the class, with the criteria in view (DV-03)."""
    _require_qa(actor, "confirms a deviation's class")
    deviation_class = _choice(deviation_class, DeviationClass, field="Class")
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock(deviation)
        _require_open(locked)
        old = locked.deviation_class
        locked.confirmed_class = deviation_class
        locked.class_confirmed_by = actor
        locked.class_confirmed_at = timezone.now()
        # The closure date follows the class, unless QA has already granted an extension.
        if not locked.extensions.filter(status=ExtensionStatus.APPROVED).exists():
            locked.due_on = closure_due(timezone.localdate(locked.occurred_at), deviation_class)
        locked.save(
            update_fields=[
                "confirmed_class",
                "class_confirmed_by",
                "class_confirmed_at",
                "due_on",
                "updated_at",
            ]
        )
        audit_event_record(
            event_type=DeviationEvent.CLASS_CONFIRMED,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=locked.site.code,
            extra={"old": old, "new": deviation_class, "criteria": CLASS_CRITERIA[deviation_class]},
        )
    return locked


_FIELD_LABELS = {
    "immediate_action": "Immediate action",
    "impact_assessment": "Impact assessment",
    "root_cause_category": "Root-cause category",
    "root_cause": "Root cause",
    "human_error_justification": "Human-error justification",
}
INVESTIGATION_FIELDS = tuple(_FIELD_LABELS)


def deviation_update(
    *, actor: User, deviation: Deviation, reason: str, changes: dict[str, str]
) -> Deviation:
    """Fill in the investigation: immediate action, impact assessment, root cause (category
    and narrative). "Human error" needs a justification (DV-01). While the deviation is open."""
    _require_qa_or_site_lead(actor, deviation.site, "fill in the investigation")
    unknown = sorted(set(changes) - set(INVESTIGATION_FIELDS))
    if unknown:
        raise ApplicationError(f"Unknown field {unknown[0]!r}.", code="unknown_field")
    reason = require_reason(reason)
    cleaned: dict[str, str] = {}
    for name, value in changes.items():
        if name == "root_cause_category":
            cleaned[name] = (
                _choice(value, RootCauseCategory, field="Root-cause category") if value else ""
            )
        else:
            cleaned[name] = _text(value, field=_FIELD_LABELS[name], required=False)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock(deviation)
        _require_open(locked)
        old = {name: getattr(locked, name) for name in cleaned}
        for name, value in cleaned.items():
            setattr(locked, name, value)
        if (
            locked.root_cause_category == RootCauseCategory.HUMAN_ERROR
            and not locked.human_error_justification
        ):
            raise ApplicationError(
                "A root cause of human error needs a justification: why procedure, training "
                "or design did not prevent it.",
                code="human_error_unjustified",
            )
        changed = [name for name in cleaned if old[name] != cleaned[name]]
        if not changed:
            return locked
        locked.save(update_fields=[*changed, "updated_at"])
        audit_event_record(
            event_type=DeviationEvent.UPDATED,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=locked.site.code,
            extra={"changed": {name: [old[name], cleaned[name]] for name in changed}},
        )
    return locked


def deviation_transition(
    *,
    actor: User,
    deviation: Deviation,
    action: DeviationAction,
    reason: str,
    credentials: SignatureCredentials | None = None,
) -> Deviation:
    """Move a deviation along its lifecycle (QA): triage (the class confirmed first),
    investigate, hand over to CAPA (a CAPA raised first), close (signed "approved" by QA, the
    investigation complete and every CAPA action done), cancel (with a reason)."""
    _require_qa(actor, "moves a deviation along")
    action = DeviationAction(action)
    reason = require_reason(reason)
    allowed_from, to = DEVIATION_TRANSITIONS[action]
    with signing_transaction(), audit_context(reason=reason, user=actor):
        locked = _lock(deviation)
        if locked.status not in allowed_from:
            raise TransitionNotAllowedError(
                f"{locked.number} is {locked.get_status_display().lower()}: it cannot "
                f"{action.label.lower()} from there.",
                code="transition_not_allowed",
            )
        old = locked.status
        now = timezone.now()
        fields = ["status", "updated_at"]
        if action == DeviationAction.TRIAGE:
            if not locked.confirmed_class:
                raise ConflictError(
                    f"Confirm {locked.number}'s class before triage.",
                    code="class_not_confirmed",
                )
            locked.triaged_at = now
            fields.append("triaged_at")
        elif action == DeviationAction.AWAIT_CAPA:
            if not locked.capas.exclude(status=CapaStatus.CANCELLED).exists():
                raise ConflictError(f"Raise a CAPA from {locked.number} first.", code="no_capa")
        elif action == DeviationAction.CLOSE:
            _require_closable(locked)
        elif action == DeviationAction.CANCEL:
            locked.cancel_reason = reason
            fields.append("cancel_reason")
        locked.status = to
        signature = None
        if action == DeviationAction.CLOSE:
            if credentials is None:
                raise ApplicationError(
                    "Closing a deviation is signed: send your signature.",
                    code="signature_required",
                )
            signature = sign(
                signer=actor,
                credentials=credentials,
                record=locked,
                meaning=SignatureMeaning.APPROVED,
                reason=reason,
                site_code=locked.site.code,
            )
            locked.closure_signature = signature
            locked.closed_at = now
            locked.closed_by = actor
            fields += ["closure_signature", "closed_at", "closed_by"]
        locked.save(update_fields=fields)
        audit_event_record(
            event_type=DeviationEvent.TRANSITIONED,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=locked.site.code,
            signature=signature,
            extra={"action": action.value, "old": old, "new": to.value},
        )
    return locked


def _require_closable(deviation: Deviation) -> None:
    missing = [
        label
        for label, value in (
            ("impact assessment", deviation.impact_assessment),
            ("root-cause category", deviation.root_cause_category),
            ("root cause", deviation.root_cause),
        )
        if not value
    ]
    if missing:
        raise ConflictError(
            f"{deviation.number} cannot close without its {', '.join(missing)}.",
            code="investigation_incomplete",
        )
    open_actions = CapaAction.objects.filter(
        capa__deviation=deviation, status=ActionStatus.OPEN
    ).exclude(capa__status=CapaStatus.CANCELLED)
    if open_actions.exists():
        raise ConflictError(
            f"{deviation.number} has CAPA actions still open: complete them first.",
            code="capa_actions_open",
        )


#
# Extensions (DV-04)
#


def extension_request(
    *, actor: User, deviation: Deviation, requested_due_on: dt.date, reason: str
) -> DeviationExtension:
    """Ask QA to move the closure date (QA or the site lead)."""
    _require_qa_or_site_lead(actor, deviation.site, "ask for an extension")
    reason = require_reason(reason)
    requested_due_on = _future_date(requested_due_on, field="The new due date")
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock(deviation)
        _require_open(locked)
        if requested_due_on <= locked.due_on:
            raise ApplicationError(
                f"The new due date must be after {locked.due_on:%d %b %Y}.", code="invalid"
            )
        if requested_due_on > locked.due_on + dt.timedelta(days=EXTENSION_DAYS_MAX):
            raise ApplicationError(
                f"An extension is at most {EXTENSION_DAYS_MAX} days.", code="too_long"
            )
        if locked.extensions.filter(status=ExtensionStatus.REQUESTED).exists():
            raise ConflictError(
                f"{locked.number} already has an extension awaiting a decision.",
                code="extension_pending",
            )
        extension = DeviationExtension.objects.create(
            deviation=locked,
            current_due_on=locked.due_on,
            requested_due_on=requested_due_on,
            reason=reason,
            created_by=actor,
        )
        audit_event_record(
            event_type=DeviationEvent.EXTENSION_REQUESTED,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=locked.site.code,
            extra={"from": locked.due_on, "to": requested_due_on},
        )
        notify(
            recipients=_qa_people(),
            subject=f"{locked.number}: extension asked to {requested_due_on:%d %b %Y}",
            body=reason,
            link=_deviation_url(locked),
        )
    return extension


def extension_decide(
    *, actor: User, extension: DeviationExtension, approve: bool, reason: str
) -> DeviationExtension:
    """QA approves (the due date moves) or refuses an extension."""
    _require_qa(actor, "decides extensions")
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        deviation = _lock(extension.deviation)
        _require_open(deviation)
        locked = DeviationExtension.objects.select_for_update().get(pk=extension.pk)
        if locked.status != ExtensionStatus.REQUESTED:
            raise TransitionNotAllowedError(
                "This extension was already decided.", code="extension_decided"
            )
        locked.status = ExtensionStatus.APPROVED if approve else ExtensionStatus.REFUSED
        locked.decided_by = actor
        locked.decided_at = timezone.now()
        locked.decision_reason = reason
        locked.save(
            update_fields=["status", "decided_by", "decided_at", "decision_reason", "updated_at"]
        )
        if approve:
            deviation.due_on = locked.requested_due_on
            deviation.escalated_at = None
            deviation.save(update_fields=["due_on", "escalated_at", "updated_at"])
        audit_event_record(
            event_type=DeviationEvent.EXTENSION_DECIDED,
            actor=actor,
            target=deviation,
            reason=reason,
            site_code=deviation.site.code,
            extra={"approved": approve, "due_on": deviation.due_on},
        )
    return locked


#
# Overdue escalation (DV-04) and the batches outbox (design §2)
#


def deviations_escalate_overdue(*, today: dt.date | None = None) -> int:
    """Tell QA and the site lead, once, about each deviation past its triage or closure date
    (by e-mail and in the app). Returns how many were escalated. Run by Celery beat."""
    today = today or timezone.localdate()
    escalated = 0
    overdue = Deviation.objects.filter(
        status__in=DEVIATION_OPEN, escalated_at__isnull=True
    ).select_related("site")
    for deviation in overdue.iterator():
        if not deviation.is_overdue(today):
            continue
        with transaction.atomic(), audit_context(reason="overdue escalation"):
            locked = _lock(deviation)
            if locked.escalated_at is not None or not locked.is_overdue(today):
                continue
            locked.escalated_at = timezone.now()
            locked.save(update_fields=["escalated_at", "updated_at"])
            late = "triage" if locked.status == DeviationStatus.OPEN else "closure"
            audit_event_record(
                event_type=DeviationEvent.ESCALATED,
                as_system=True,
                target=locked,
                site_code=locked.site.code,
                extra={"late": late, "due_on": locked.due_on},
            )
            notify(
                recipients=[*_qa_people(), *site_leads(locked.site)],
                subject=f"OVERDUE {locked.number}: {late} was due",
                body=f"{locked.title} at {locked.site.code}. Act now or ask for an extension.",
                link=_deviation_url(locked),
                severity="block",
            )
        escalated += 1
    return escalated


_SIGNAL_CLASS = {
    SignalKind.OUT_OF_LIMIT: DeviationClass.MINOR,
    SignalKind.RESULT_FAILED: DeviationClass.MAJOR,
    SignalKind.LATE_RESULT_FAILED: DeviationClass.CRITICAL,
    SignalKind.COI_MISMATCH: DeviationClass.CRITICAL,
}


def _signal_class(signal: BatchSignal) -> str:
    """The class the system proposes (QA confirms it): a failed registered specification is
    major, a failed in-house one minor, as the release gates weigh them (BR-08)."""
    if signal.kind == SignalKind.RESULT_FAILED:
        key = str(signal.detail.get("specification", ""))
        registered = signal.batch.template.specifications.filter(key=key, registered=True)
        return DeviationClass.MAJOR if registered.exists() else DeviationClass.MINOR
    return _SIGNAL_CLASS.get(SignalKind(signal.kind), DeviationClass.MAJOR)


def signals_process(*, limit: int = 500) -> int:
    """Turn unprocessed batch signals into deviations, exactly once each (the one-to-one link
    and the row lock make a second run, or a second worker, a no-op). Returns how many. A failed
    registered specification also gets its OOS investigation, in the same transaction (DV-10)."""
    # Imported here: deviations.services.oos builds on this module.
    from deviations.services.oos import oos_open_from_signal

    made = 0
    pending = BatchSignal.objects.filter(processed_at__isnull=True).order_by("id")
    for signal_id in list(pending.values_list("id", flat=True)[:limit]):
        with transaction.atomic(), audit_context(reason="opened from a batch signal"):
            signal = (
                BatchSignal.objects.select_for_update(skip_locked=True)
                .select_related("batch__site")
                .filter(pk=signal_id, processed_at__isnull=True)
                .first()
            )
            if signal is None:
                continue
            batch = signal.batch
            detail = ", ".join(f"{k} {v}" for k, v in sorted(signal.detail.items()))
            deviation = _create_deviation(
                actor=None,
                reason="opened from a batch signal",
                site=batch.site,
                batch=batch,
                step_record=None,
                result=None,
                signal=signal,
                source=DeviationSource.SIGNAL,
                audit_reference="",
                title=f"{signal.get_kind_display()} on {batch.number}"[:TITLE_MAX],
                description=f"Raised by the system from the batch record: "
                f"{signal.get_kind_display().lower()}{f' ({detail})' if detail else ''}.",
                proposed_class=_signal_class(signal),
                immediate_action="",
                occurred_at=signal.created_at,
            )
            oos_open_from_signal(signal=signal, deviation=deviation)
            signal.processed_at = timezone.now()
            signal.save(update_fields=["processed_at"])
            made += 1
    return made + comparability_signals_process(limit=limit)


_COMPARABILITY_CLASS = {
    ComparabilitySignalKind.RUN_RULE: DeviationClass.MINOR,
    ComparabilitySignalKind.EQUIVALENCE: DeviationClass.MAJOR,
    ComparabilitySignalKind.ANNUAL_CHECK: DeviationClass.MAJOR,
}


def _comparability_text(signal: ComparabilitySignal) -> tuple[str, str]:
    detail = signal.detail
    cqa = detail.get("cqa") or signal.key
    where = f"{signal.site.code} ({signal.product.code})"
    if signal.kind == ComparabilitySignalKind.RUN_RULE:
        title = f"{cqa} trend at {where}: {detail.get('rule', f'rule {signal.rule}')}"
        body = (
            f"The control chart of {cqa} at {signal.site.code} broke "
            f"{detail.get('rule', f'Nelson rule {signal.rule}')} against the reference limits "
            f"{detail.get('limits', '')}: {detail.get('points', 1)} result(s) from batch "
            f"{detail.get('first_batch', detail.get('batch', ''))} to "
            f"{detail.get('last_batch', detail.get('batch', ''))}."
        )
    elif signal.kind == ComparabilitySignalKind.EQUIVALENCE:
        title = f"{cqa} not shown comparable at {where}"
        body = (
            f"The mean difference of {cqa} at {signal.site.code} from the reference site is "
            f"{detail.get('difference')} (90 % CI {detail.get('ci_low')} to "
            f"{detail.get('ci_high')}), not within the equivalence margin ± "
            f"{detail.get('margin')} ({detail.get('n_site')} results against "
            f"{detail.get('n_reference')})."
        )
    else:
        cqas = ", ".join(detail.get("cqas", [])) or signal.key
        title = f"Annual comparability check not comparable at {where}"
        body = (
            f"The annual comparability check on split starting material "
            f"{detail.get('material', '')} did not show {cqas} comparable with the reference site."
        )
    return title[:TITLE_MAX], f"Raised by the system from comparability monitoring: {body}"


def comparability_signals_process(*, limit: int = 500) -> int:
    """Turn unprocessed comparability signals into deviations, exactly once each (issue 8 §5,
    design §2): the one-to-one link and the row lock make a second run a no-op."""
    made = 0
    pending = ComparabilitySignal.objects.filter(processed_at__isnull=True).order_by("id")
    for signal_id in list(pending.values_list("id", flat=True)[:limit]):
        with transaction.atomic(), audit_context(reason="opened from a comparability signal"):
            signal = (
                ComparabilitySignal.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("site", "product", "batch")
                .filter(pk=signal_id, processed_at__isnull=True)
                .first()
            )
            if signal is None:
                continue
            title, description = _comparability_text(signal)
            _create_deviation(
                actor=None,
                reason="opened from a comparability signal",
                site=signal.site,
                batch=signal.batch,
                step_record=None,
                result=None,
                comparability_signal=signal,
                source=DeviationSource.COMPARABILITY,
                audit_reference="",
                title=title,
                description=description,
                proposed_class=_COMPARABILITY_CLASS.get(
                    ComparabilitySignalKind(signal.kind), DeviationClass.MAJOR
                ),
                immediate_action="",
                occurred_at=signal.created_at,
            )
            signal.processed_at = timezone.now()
            signal.save(update_fields=["processed_at"])
            made += 1
    return made


#
# CAPA (DV-02)
#


@dataclasses.dataclass(frozen=True)
class ActionInput:
    description: str
    owner: User | None
    due_on: dt.date | None


def capa_create(
    *,
    actor: User,
    title: str,
    description: str,
    kind: str,
    owner: User | None,
    due_on: dt.date | None,
    effectiveness_due_on: dt.date | None,
    reason: str,
    deviation: Deviation | None = None,
    oos: OosInvestigation | None = None,
    complaint: Complaint | None = None,
    audit_reference: str = "",
    actions: Sequence[ActionInput] = (),
) -> Capa:
    """Raise a CAPA from a deviation, an OOS, a complaint or an audit finding, with an owner,
    a due date and the date of its effectiveness check (DV-02). QA only. A closed deviation or
    complaint takes no new CAPA (409)."""
    _require_qa(actor, "raises CAPAs")
    reason = require_reason(reason)
    title = _text(title, field="Title", limit=TITLE_MAX)
    description = _text(description, field="Description")
    kind = _choice(kind, CapaKind, field="Kind")
    if owner is None or not owner.is_active:
        raise ApplicationError("A CAPA needs an active owner.", code="owner_required")
    due_on = _future_date(due_on, field="The due date")
    effectiveness_due_on = _future_date(effectiveness_due_on, field="The effectiveness check")
    if effectiveness_due_on < due_on:
        raise ApplicationError("The effectiveness check comes after the due date.", code="invalid")
    sources = [
        (CapaSource.DEVIATION, deviation),
        (CapaSource.OOS, oos),
        (CapaSource.COMPLAINT, complaint),
    ]
    named = [(source, record) for source, record in sources if record is not None]
    audit_reference = _text(
        audit_reference, field="Audit finding reference", limit=100, required=False
    )
    if len(named) + bool(audit_reference) != 1:
        raise ApplicationError(
            "A CAPA comes from exactly one source: a deviation, an OOS investigation, a "
            "complaint or an audit finding.",
            code="source_required",
        )
    source = named[0][0] if named else CapaSource.AUDIT
    site = (
        deviation.site
        if deviation is not None
        else complaint.site
        if complaint is not None
        else oos.result.batch.site
        if oos is not None
        else None
    )
    _require_owner_eligible(owner, site)
    checked = [_action_input(item, site) for item in actions]
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        # The source is locked, so its closure cannot race the new CAPA.
        if deviation is not None:
            _require_open(_lock(deviation))
        if complaint is not None:
            locked_complaint = Complaint.objects.select_for_update(of=("self",)).get(
                pk=complaint.pk
            )
            if locked_complaint.status != ComplaintStatus.OPEN:
                raise TransitionNotAllowedError(
                    f"{complaint.number} is closed: it no longer changes.",
                    code="complaint_not_open",
                )
        capa = Capa.objects.create(
            number=next_number("CAPA", timezone.localdate().year),
            source=source,
            deviation=deviation,
            oos=oos,
            complaint=complaint,
            audit_reference=audit_reference,
            site=site,
            kind=kind,
            title=title,
            description=description,
            owner=owner,
            due_on=due_on,
            effectiveness_due_on=effectiveness_due_on,
            created_by=actor,
        )
        audit_event_record(
            event_type=DeviationEvent.CAPA_RAISED,
            actor=actor,
            target=capa,
            reason=reason,
            site_code=site.code if site else "",
            extra={"source": source, "owner": owner.get_username(), "due_on": due_on},
        )
        for item in checked:
            _add_action(actor, capa, item, reason)
        notify(
            recipients=[owner],
            subject=f"{capa.number} is yours: {capa.title}",
            body=f"Due {due_on:%d %b %Y}.",
            link=reverse("deviations:capa-detail", args=[capa.number]),
        )
    return capa


@dataclasses.dataclass(frozen=True)
class _Action:
    description: str
    owner: User
    due_on: dt.date


def _require_owner_eligible(owner: User, site: Site | None) -> None:
    """An owner works on GMP records and, for a site's CAPA, may see the site: an
    administrator, an inspector or someone elsewhere could not act on it."""
    if not may_raise(owner) or (
        site is not None and not sites_visible_to(owner).filter(pk=site.pk).exists()
    ):
        raise ApplicationError(
            f"{owner.printed_name} cannot own this: an owner is QA, a QP or site staff "
            "who may see the site.",
            code="owner_not_eligible",
        )


def _action_input(item: ActionInput, site: Site | None) -> _Action:
    if item.owner is None or not item.owner.is_active:
        raise ApplicationError("Each action needs an active owner.", code="owner_required")
    _require_owner_eligible(item.owner, site)
    return _Action(
        description=_text(item.description, field="Action"),
        owner=item.owner,
        due_on=_future_date(item.due_on, field="The action's due date"),
    )


def _lock_capa(capa: Capa) -> Capa:
    return Capa.objects.select_for_update(of=("self",)).select_related("site").get(pk=capa.pk)


def _require_capa_open(capa: Capa) -> None:
    if capa.status != CapaStatus.OPEN:
        raise TransitionNotAllowedError(
            f"{capa.number} is {capa.get_status_display().lower()}: its actions are settled.",
            code="capa_not_open",
        )


def _add_action(actor: User, capa: Capa, item: _Action, reason: str) -> CapaAction:
    action = CapaAction.objects.create(
        capa=capa,
        description=item.description,
        owner=item.owner,
        due_on=item.due_on,
        created_by=actor,
    )
    audit_event_record(
        event_type=DeviationEvent.CAPA_ACTION_ADDED,
        actor=actor,
        target=action,
        reason=reason,
        site_code=capa.site.code if capa.site else "",
        extra={"capa": capa.number, "owner": item.owner.get_username(), "due_on": item.due_on},
    )
    return action


def capa_action_add(*, actor: User, capa: Capa, item: ActionInput, reason: str) -> CapaAction:
    """Add an action to an open CAPA (QA)."""
    _require_qa(actor, "adds CAPA actions")
    reason = require_reason(reason)
    checked = _action_input(item, capa.site)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock_capa(capa)
        _require_capa_open(locked)
        return _add_action(actor, locked, checked, reason)


def capa_action_complete(
    *, actor: User, action: CapaAction, outcome: str, reason: str = ""
) -> CapaAction:
    """Its owner (or QA) records an action as done, with what was done."""
    if action.owner_id != actor.pk and not permissions.user_can(
        actor, Capability.MANAGE_QUALITY_RECORDS
    ):
        raise PermissionRefusedError(
            "Only the action's owner or Control Site QA completes it.", code="permission_denied"
        )
    outcome = _text(outcome, field="What was done")
    reason = (reason or "").strip() or "CAPA action done"
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        capa = _lock_capa(action.capa)
        _require_capa_open(capa)
        locked = CapaAction.objects.select_for_update().get(pk=action.pk)
        if locked.status == ActionStatus.DONE:
            raise TransitionNotAllowedError("This action is already done.", code="action_done")
        locked.status = ActionStatus.DONE
        locked.done_at = timezone.now()
        locked.done_by = actor
        locked.outcome = outcome
        locked.save(update_fields=["status", "done_at", "done_by", "outcome", "updated_at"])
        audit_event_record(
            event_type=DeviationEvent.CAPA_ACTION_DONE,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=capa.site.code if capa.site else "",
            extra={"capa": capa.number},
        )
    return locked


def capa_effectiveness_check(
    *,
    actor: User,
    capa: Capa,
    effectiveness: str,
    notes: str,
    reason: str,
) -> Capa:
    """QA records the effectiveness check once every action is done: effective moves the CAPA
    to be closed; not effective sends it back to open, for more actions (DV-02)."""
    _require_qa(actor, "checks a CAPA's effectiveness")
    effectiveness = _choice(effectiveness, Effectiveness, field="Effectiveness")
    notes = _text(notes, field="The effectiveness check")
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock_capa(capa)
        _require_capa_open(locked)
        if locked.actions.filter(status=ActionStatus.OPEN).exists():
            raise ConflictError(
                f"{locked.number} has actions still open.", code="capa_actions_open"
            )
        if not locked.actions.exists():
            raise ConflictError(f"{locked.number} has no actions yet.", code="no_actions")
        locked.effectiveness = effectiveness
        locked.effectiveness_notes = notes
        locked.effectiveness_checked_by = actor
        locked.effectiveness_checked_at = timezone.now()
        if effectiveness == Effectiveness.EFFECTIVE:
            locked.status = CapaStatus.EFFECTIVENESS_CHECK
        locked.save(
            update_fields=[
                "effectiveness",
                "effectiveness_notes",
                "effectiveness_checked_by",
                "effectiveness_checked_at",
                "status",
                "updated_at",
            ]
        )
        audit_event_record(
            event_type=DeviationEvent.CAPA_EFFECTIVENESS,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=locked.site.code if locked.site else "",
            extra={"effectiveness": effectiveness},
        )
    return locked


def capa_close(*, actor: User, capa: Capa, credentials: SignatureCredentials, reason: str) -> Capa:
    """QA closes a CAPA found effective, signed "approved" (DV-02)."""
    _require_qa(actor, "closes CAPAs")
    reason = require_reason(reason)
    with signing_transaction(), audit_context(reason=reason, user=actor):
        locked = _lock_capa(capa)
        if locked.status != CapaStatus.EFFECTIVENESS_CHECK:
            raise TransitionNotAllowedError(
                f"{locked.number} closes only after an effectiveness check found it effective.",
                code="effectiveness_not_checked",
            )
        signature = sign(
            signer=actor,
            credentials=credentials,
            record=locked,
            meaning=SignatureMeaning.APPROVED,
            reason=reason,
            site_code=locked.site.code if locked.site else "",
        )
        locked.status = CapaStatus.CLOSED
        locked.closed_at = timezone.now()
        locked.closure_signature = signature
        locked.save(update_fields=["status", "closed_at", "closure_signature", "updated_at"])
        audit_event_record(
            event_type=DeviationEvent.CAPA_CLOSED,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=locked.site.code if locked.site else "",
            signature=signature,
        )
    return locked


def capa_cancel(*, actor: User, capa: Capa, reason: str) -> Capa:
    """QA cancels an open CAPA (raised in error, or folded into another), with the reason on
    the record. Its open actions stay as they are, for the record."""
    _require_qa(actor, "cancels CAPAs")
    reason = _text(reason, field="The reason for cancelling", limit=REASON_MAX)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock_capa(capa)
        if locked.status not in CAPA_OPEN:
            raise TransitionNotAllowedError(
                f"{locked.number} is {locked.get_status_display().lower()}: it no longer changes.",
                code="capa_not_open",
            )
        old = locked.status
        locked.status = CapaStatus.CANCELLED
        locked.cancel_reason = reason
        locked.save(update_fields=["status", "cancel_reason", "updated_at"])
        audit_event_record(
            event_type=DeviationEvent.CAPA_CANCELLED,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=locked.site.code if locked.site else "",
            extra={"from": old},
        )
    return locked
