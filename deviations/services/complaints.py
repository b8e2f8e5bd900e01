"""Every write to complaints and suspected adverse reactions: check the role and the state,
sign the closure, write the audit trail (issue 6 §5; DV-11, RP-04, RP-05, RP-06).

Who may do what:
- record a complaint or a suspected adverse reaction: anyone who raises deviations and may see
  the site (site staff and integrators at their sites, Control Site QA, QPs); inspectors,
  trainers and the administrator do not;
- write the risk assessment and investigation, and judge it serious or not: Control Site QA;
- record that it was reported to the MHRA: Control Site QA or a QP;
- close it (signed "approved") and raise a CAPA from it: Control Site QA.

A serious suspected adverse reaction carries the 15-day reporting clock of RP-05
(`report_due_on`, counted from the day it was first known); the clock appears and goes with
the seriousness QA decides, and closure waits for the report.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from batches.models import Batch
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
from deviations.choices import (
    CAPA_OPEN,
    SERIOUS_ADR_REPORT_DAYS,
    ComplaintKind,
    ComplaintStatus,
    adr_report_due,
)
from deviations.events import DeviationEvent
from deviations.models import Capa, Complaint
from deviations.services import (
    OCCURRED_WITHIN_DAYS,
    _choice,
    _require_qa,
    _require_sees_site,
    _text,
    _today,
    may_raise,
    next_number,
)
from masterfile.models import Product
from masterfile.selectors import products_visible_to
from sites.models import Site

NUMBER_PREFIX = "CMP"
REPORTER_MAX = 200
REFERENCE_MAX = 100

#
# Shared checks
#


def has_report_clock(kind: str, serious: bool) -> bool:
    """Whether a complaint of this kind and seriousness runs the 15-day clock (RP-05)."""
    return kind == ComplaintKind.ADVERSE_REACTION and serious


def _clock(kind: str, serious: bool, aware_on: dt.date) -> dt.date | None:
    return adr_report_due(aware_on) if has_report_clock(kind, serious) else None


def _date(value: Any, *, field: str) -> dt.date:
    # A datetime is a date too; a date stated with a time is refused rather than truncated.
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise ApplicationError(f"{field} is required, as a date.", code="date_required")
    return value


def _not_future(value: dt.date, *, field: str) -> dt.date:
    if value > _today():
        raise ApplicationError(f"{field} is in the future.", code="date_in_future")
    return value


def _aware_on(value: Any) -> dt.date:
    aware_on = _not_future(_date(value, field="The day it was first known"), field="It")
    if aware_on < _today() - dt.timedelta(days=OCCURRED_WITHIN_DAYS):
        raise ApplicationError(
            f"It was first known more than {OCCURRED_WITHIN_DAYS // 365} years ago: check the "
            "date.",
            code="date_out_of_range",
        )
    return aware_on


def _serious(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ApplicationError("Serious is yes or no.", code="invalid")
    return value


def may_report(actor: Any) -> bool:
    """Whether `actor` records a report to the MHRA: Control Site QA or a QP (RP-04, RP-05)."""
    return permissions.user_can(actor, Capability.MANAGE_QUALITY_RECORDS) or permissions.user_can(
        actor, Capability.CERTIFY_BATCH
    )


def _complaint_url(complaint: Complaint) -> str:
    return reverse("deviations:complaint-detail", args=[complaint.number])


def _lock(complaint: Complaint) -> Complaint:
    return (
        Complaint.objects.select_for_update(of=("self",))
        .select_related("site", "batch", "product")
        .get(pk=complaint.pk)
    )


def _require_open(complaint: Complaint) -> None:
    if complaint.status != ComplaintStatus.OPEN:
        raise TransitionNotAllowedError(
            f"{complaint.number} is closed: it no longer changes.", code="complaint_not_open"
        )


def _severity(complaint: Complaint) -> str:
    return "block" if has_report_clock(complaint.kind, complaint.serious) else "warn"


def _clock_text(complaint: Complaint) -> str:
    if complaint.report_due_on is None:
        return ""
    return (
        f" Serious suspected adverse reaction: report it to the MHRA by "
        f"{complaint.report_due_on:%d %b %Y} ({SERIOUS_ADR_REPORT_DAYS} days from "
        f"{complaint.aware_on:%d %b %Y})."
    )


#
# Recording (DV-11, RP-05, RP-06)
#


def complaint_record(
    *,
    actor: User,
    site: Site,
    kind: str,
    description: str,
    reporter: str,
    aware_on: dt.date,
    serious: bool,
    reason: str,
    batch: Batch | None = None,
    product: Product | None = None,
) -> Complaint:
    """Record a quality complaint or a suspected adverse reaction at a site, on one of its
    batches or on a product (RP-06: every complaint and ADR is tied to its site and, where
    known, its batch). The product comes from the batch when one is named. A serious suspected
    adverse reaction starts the 15-day reporting clock from the day it was first known
    (RP-05). QA is told at once, and the QPs too for a serious adverse reaction.

    Site staff and integrators at the site, Control Site QA and QPs (403 otherwise). Writes the
    complaint, a `complaint_recorded` audit event and the notices."""
    if not may_raise(actor):
        raise PermissionRefusedError(
            "Only site staff, integrators, Control Site QA and QPs record complaints.",
            code="permission_denied",
        )
    _require_sees_site(actor, site)
    kind = _choice(kind, ComplaintKind, field="Kind")
    description = _text(description, field="Description")
    reporter = _text(reporter, field="Who told us", limit=REPORTER_MAX)
    aware_on = _aware_on(aware_on)
    serious = _serious(serious)
    reason = require_reason(reason)
    if batch is not None:
        if batch.site_id != site.pk:
            raise ApplicationError(
                f"Batch {batch.number} was not made at {site.code}.", code="batch_not_at_site"
            )
        if not batches_visible_to(actor).filter(pk=batch.pk).exists():
            raise PermissionRefusedError("You may not see this batch.", code="not_a_site_member")
        if product is not None and product.pk != batch.product_id:
            raise ApplicationError(
                f"Batch {batch.number} is not of {product.code}.", code="product_mismatch"
            )
        if aware_on < timezone.localdate(batch.created_at):
            raise ApplicationError(
                f"It was first known before batch {batch.number} was started: check the date.",
                code="date_out_of_range",
            )
        product = batch.product
    elif product is None:
        raise ApplicationError("Name the batch, or at least the product.", code="product_required")
    elif not products_visible_to(actor).filter(pk=product.pk).exists():
        raise ApplicationError("No such product (or not one you can see).", code="unknown_product")
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        complaint = Complaint.objects.create(
            number=next_number(NUMBER_PREFIX, _today().year),
            kind=kind,
            site=site,
            batch=batch,
            product=product,
            description=description,
            reporter=reporter,
            aware_on=aware_on,
            serious=serious,
            report_due_on=_clock(kind, serious, aware_on),
            created_by=actor,
        )
        audit_event_record(
            event_type=DeviationEvent.COMPLAINT_RECORDED,
            actor=actor,
            target=complaint,
            reason=reason,
            site_code=site.code,
            extra={
                "kind": kind,
                "batch": batch.number if batch is not None else None,
                "product": product.code,
                "serious": serious,
                "aware_on": aware_on,
                "report_due_on": complaint.report_due_on,
            },
        )
        clock = has_report_clock(kind, serious)
        roles = (Role.CONTROL_SITE_QA, Role.QP) if clock else (Role.CONTROL_SITE_QA,)
        what = "Serious suspected adverse reaction" if clock else complaint.get_kind_display()
        notify(
            recipients=users_holding(*roles),
            subject=f"{complaint.number} at {site.code}: {what}"
            + (f" on {batch.number}" if batch is not None else ""),
            body=f"First known on {aware_on:%d %b %Y}; told by {reporter}."
            + _clock_text(complaint),
            link=_complaint_url(complaint),
            severity=_severity(complaint),
        )
    return complaint


#
# Assessment (DV-11)
#


def complaint_assess(
    *, actor: User, complaint: Complaint, assessment: str, reason: str, serious: bool | None = None
) -> Complaint:
    """Control Site QA writes the risk assessment and investigation, and may judge the
    complaint serious or not. For an adverse reaction judged serious the 15-day clock appears,
    counted from the day it was first known (RP-05); judged not serious, it goes. The change of
    seriousness is audited with its old and new values (AT-02). While the complaint is open."""
    _require_qa(actor, "assesses complaints")
    assessment = _text(assessment, field="The assessment")
    if serious is not None:
        serious = _serious(serious)
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock(complaint)
        _require_open(locked)
        old = {
            "assessment": locked.assessment,
            "serious": locked.serious,
            "report_due_on": locked.report_due_on,
        }
        locked.assessment = assessment
        if serious is not None:
            locked.serious = serious
        locked.report_due_on = _clock(locked.kind, locked.serious, locked.aware_on)
        new = {
            "assessment": locked.assessment,
            "serious": locked.serious,
            "report_due_on": locked.report_due_on,
        }
        changed = [name for name in old if old[name] != new[name]]
        if not changed:
            return locked
        locked.save(update_fields=[*changed, "updated_at"])
        audit_event_record(
            event_type=DeviationEvent.COMPLAINT_ASSESSED,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=locked.site.code,
            extra={
                "changed": changed,
                "old": {name: old[name] for name in changed},
                "new": {name: new[name] for name in changed},
            },
        )
        if old["report_due_on"] is None and locked.report_due_on is not None:
            # The clock has just appeared: the QPs learn of it as they would at recording.
            notify(
                recipients=users_holding(Role.CONTROL_SITE_QA, Role.QP),
                subject=f"{locked.number} at {locked.site.code} judged a serious suspected "
                "adverse reaction",
                body=_clock_text(locked).strip(),
                link=_complaint_url(locked),
                severity="block",
            )
    return locked


#
# The report to the MHRA (RP-04, RP-05)
#


def complaint_mark_reported(
    *, actor: User, complaint: Complaint, reported_on: dt.date, reference: str, reason: str
) -> Complaint:
    """Record that the complaint was reported to the MHRA: on which day (not in the future, not
    before it was first known), with the MHRA's reference; the actor is recorded as the
    reporter, so the record shows who reported it when (RP-05, DV-11). Control Site QA or a
    QP, once, while the complaint is open."""
    if not may_report(actor):
        raise PermissionRefusedError(
            "Only Control Site QA or a QP records a report to the MHRA.",
            code="permission_denied",
        )
    reported_on = _not_future(_date(reported_on, field="The day it was reported"), field="It")
    reference = _text(reference, field="The report reference", limit=REFERENCE_MAX)
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock(complaint)
        _require_open(locked)
        if locked.reported_on is not None:
            raise ConflictError(
                f"{locked.number} was already reported on {locked.reported_on:%d %b %Y} "
                f"({locked.report_reference}).",
                code="already_reported",
            )
        if reported_on < locked.aware_on:
            raise ApplicationError(
                f"It cannot have been reported before it was first known "
                f"({locked.aware_on:%d %b %Y}).",
                code="report_before_awareness",
            )
        locked.reported_on = reported_on
        locked.reported_by = actor
        locked.report_reference = reference
        locked.save(update_fields=["reported_on", "reported_by", "report_reference", "updated_at"])
        on_time = None if locked.report_due_on is None else reported_on <= locked.report_due_on
        audit_event_record(
            event_type=DeviationEvent.COMPLAINT_REPORTED,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=locked.site.code,
            extra={
                "reported_on": reported_on,
                "reference": reference,
                "report_due_on": locked.report_due_on,
                "on_time": on_time,
            },
        )
    return locked


#
# Closure (DV-11)
#


def complaint_close(
    *, actor: User, complaint: Complaint, reason: str, credentials: SignatureCredentials | None
) -> Complaint:
    """Control Site QA closes the complaint, signed with the meaning "approved" (ES-01). Refused
    without the risk assessment (409 `assessment_required`), for a serious suspected adverse
    reaction not yet reported to the MHRA (409 `report_required`, RP-05), and while a CAPA
    raised from it is open (409 `capa_open`, DV-02). A refused closure writes nothing; a
    refused signature is recorded as such and counts toward lockout (ES-08)."""
    _require_qa(actor, "closes complaints")
    reason = require_reason(reason)
    if credentials is None:
        raise ApplicationError(
            "Closing a complaint is signed: send your signature.", code="signature_required"
        )
    with signing_transaction(), audit_context(reason=reason, user=actor):
        locked = _lock(complaint)
        _require_open(locked)
        if not locked.assessment.strip():
            raise ConflictError(
                f"{locked.number} cannot close without its risk assessment.",
                code="assessment_required",
            )
        if has_report_clock(locked.kind, locked.serious) and locked.reported_on is None:
            raise ConflictError(
                f"{locked.number} is a serious suspected adverse reaction: record its report "
                "to the MHRA first.",
                code="report_required",
            )
        open_capas = sorted(
            Capa.objects.filter(complaint=locked, status__in=CAPA_OPEN).values_list(
                "number", flat=True
            )
        )
        if open_capas:
            raise ConflictError(
                f"{locked.number} has open CAPAs: {', '.join(open_capas)}.", code="capa_open"
            )
        locked.status = ComplaintStatus.CLOSED
        locked.closed_at = timezone.now()
        # Signed last, so the signature binds the record as it is closed.
        signature = sign(
            signer=actor,
            credentials=credentials,
            record=locked,
            meaning=SignatureMeaning.APPROVED,
            reason=reason,
            site_code=locked.site.code,
        )
        locked.save(update_fields=["status", "closed_at", "updated_at"])
        audit_event_record(
            event_type=DeviationEvent.COMPLAINT_CLOSED,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=locked.site.code,
            signature=signature,
            extra={"old": ComplaintStatus.OPEN.value, "new": ComplaintStatus.CLOSED.value},
        )
    return locked
