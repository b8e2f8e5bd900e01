"""Every write to an OOS investigation: open, write the findings of the phase, move on to the
next phase, conclude (signed) (issue 6 §2; DV-10, DV-05).

The investigation follows the MHRA's phased model:

- Phase Ia (obvious error) and Phase Ib (laboratory investigation) look for an assignable
  laboratory cause — a calculation slip, the wrong dilution, an instrument out of calibration.
  Only there may the result be invalidated: the findings of the phase name the cause, QA gives
  the evidence and signs.
- Phase II (full investigation, manufacturing included) starts once the laboratory found no
  assignable cause, and Phase III decides the batch's disposition and the impact on others. A
  result is confirmed out of specification from Phase II on, once that phase's findings are
  written: the phase that found no laboratory error is behind it.

The failing `TestResult` row is never changed: its value stays on the batch record whatever the
outcome, and an invalidation is recorded here, with its evidence and QA's signature. An open
investigation of one of a batch's results blocks its certification (deviations.gates).

Who may do what:
- open an investigation of a failed result: Control Site QA — and the system, in the
  transaction where `signals_process` turns a failed REGISTERED specification into a deviation;
- write the findings of the current phase: QA, or the site lead at the batch's site;
- move to the next phase and conclude (signed "approved"): Control Site QA.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from batches.choices import SignalKind
from batches.models import BatchSignal, TestResult
from batches.selectors import batches_visible_to
from controlsite.accounts.models import User
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
from deviations.choices import DEVIATION_OPEN, OOS_NEXT_PHASE, OosOutcome, OosPhase
from deviations.events import DeviationEvent
from deviations.models import Deviation, OosInvestigation
from deviations.services import (
    _choice,
    _lock,
    _qa_people,
    _require_open,
    _require_qa,
    _require_qa_or_site_lead,
    _text,
    next_number,
)
from sites.selectors import site_leads

# The phases that look for an assignable laboratory cause: only they may invalidate a result.
LAB_PHASES = frozenset({OosPhase.PHASE_IA, OosPhase.PHASE_IB})
# The batch signals of a failed result: when its specification is registered, the system opens
# the investigation itself.
RESULT_SIGNALS = frozenset({SignalKind.RESULT_FAILED, SignalKind.LATE_RESULT_FAILED})
SIGNAL_REASON = "opened from a batch signal: a registered specification failed"
# The phases' short names, as pages and messages say them.
PHASE_NAMES: dict[str, str] = {
    OosPhase.PHASE_IA: "Phase Ia",
    OosPhase.PHASE_IB: "Phase Ib",
    OosPhase.PHASE_II: "Phase II",
    OosPhase.PHASE_III: "Phase III",
}


def findings_field(phase: str) -> str:
    """The field holding a phase's findings, e.g. `phase_ib_findings`."""
    return f"phase_{OosPhase(phase).value}_findings"


def phase_findings(oos: OosInvestigation, phase: str | None = None) -> str:
    """The findings written for `phase` (the current phase by default)."""
    value: str = getattr(oos, findings_field(phase or oos.phase))
    return value


def _oos_url(oos: OosInvestigation) -> str:
    return reverse("deviations:oos-detail", args=[oos.number])


def _short_phase(phase: str) -> str:
    return PHASE_NAMES[phase]


def _lock_oos(oos: OosInvestigation) -> OosInvestigation:
    return (
        OosInvestigation.objects.select_for_update(of=("self",))
        .select_related("result__batch__site", "result__specification", "deviation")
        .get(pk=oos.pk)
    )


def _lock_result(result: TestResult) -> TestResult:
    """The result row, locked: two people opening an investigation of it at once queue here,
    so the second sees the first's and is refused (409), never the one-to-one's error."""
    return (
        TestResult.objects.select_for_update(of=("self",))
        .select_related("batch__site", "specification")
        .get(pk=result.pk)
    )


def _require_oos_open(oos: OosInvestigation) -> None:
    if not oos.is_open:
        raise TransitionNotAllowedError(
            f"{oos.number} is concluded ({oos.get_outcome_display().lower()}): it no longer "
            "changes.",
            code="oos_concluded",
        )


def _require_findings(oos: OosInvestigation, what: str) -> None:
    if not phase_findings(oos).strip():
        raise ConflictError(
            f"Write the findings of {_short_phase(oos.phase)} before you {what}.",
            code="findings_required",
        )


def _open_deviation_for(result: TestResult) -> Deviation | None:
    """The batch's open deviation about this result: raised from it, or opened by the system
    from the batch signal of the same specification (the oldest if several)."""
    about_result = Q(result=result) | Q(
        signal__kind__in=list(RESULT_SIGNALS),
        signal__detail__specification=result.specification.key,
    )
    return (
        Deviation.objects.filter(about_result, batch_id=result.batch_id, status__in=DEVIATION_OPEN)
        .order_by("created_at", "id")
        .first()
    )


def _create(
    *, actor: User | None, result: TestResult, deviation: Deviation | None, reason: str
) -> OosInvestigation:
    batch, spec = result.batch, result.specification
    site = batch.site
    oos = OosInvestigation.objects.create(
        number=next_number("OOS", timezone.localdate().year),
        result=result,
        deviation=deviation,
        created_by=actor,
    )
    audit_event_record(
        event_type=DeviationEvent.OOS_OPENED,
        actor=actor,
        as_system=actor is None,
        target=oos,
        reason=reason,
        site_code=site.code,
        extra={
            "batch": batch.number,
            "specification": spec.key,
            "value": format(result.value, "f"),
            "limits": spec.limits_label,
            "late": result.late,
            "deviation": deviation.number if deviation is not None else None,
        },
    )
    notify(
        recipients=[*_qa_people(), *site_leads(site)],
        subject=f"{oos.number} opened: {spec.name} {result.value_label} on {batch.number}",
        body=f"Out of specification ({spec.limits_label}) at {site.code}. Phase Ia looks for an "
        "obvious error first. The batch cannot be certified while the investigation is open.",
        link=_oos_url(oos),
        severity="block",
    )
    return oos


#
# Opening
#


def oos_open(
    *, actor: User, result: TestResult, reason: str, deviation: Deviation | None = None
) -> OosInvestigation:
    """Control Site QA opens the investigation of a failed result (DV-10): numbered
    OOS-<year>-<NNNN>, in Phase Ia, linked to `deviation` if given (an open one about the same
    batch) or else to the batch's open deviation about this result, if there is one. QA and
    the site lead are told. A passed result (400 `result_passed`) or one already investigated
    (409 `oos_exists`) is refused and nothing is written."""
    _require_qa(actor, "opens OOS investigations")
    reason = require_reason(reason)
    if result.passed:
        raise ApplicationError(
            f"{result.specification.name} on {result.batch.number} passed: only a result out "
            "of specification is investigated.",
            code="result_passed",
        )
    if not batches_visible_to(actor).filter(pk=result.batch_id).exists():
        raise PermissionRefusedError("You may not see this batch.", code="not_a_site_member")
    if deviation is not None and deviation.batch_id != result.batch_id:
        raise ApplicationError(
            f"{deviation.number} is not about batch {result.batch.number}.",
            code="deviation_not_of_batch",
        )
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock_result(result)
        existing = OosInvestigation.objects.filter(result=locked).only("number").first()
        if existing is not None:
            raise ConflictError(
                f"{locked.specification.name} on {locked.batch.number} is already investigated "
                f"in {existing.number}.",
                code="oos_exists",
            )
        if deviation is not None:
            deviation = _lock(deviation)
            _require_open(deviation)
        else:
            deviation = _open_deviation_for(locked)
        return _create(actor=actor, result=locked, deviation=deviation, reason=reason)


def oos_open_from_signal(*, signal: BatchSignal, deviation: Deviation) -> OosInvestigation | None:
    """The system's own opening, inside the transaction of `signals_process` that turned
    `signal` into `deviation`: a failed result against a registered specification gets its
    investigation, linked to the deviation (DV-10, BR-08). An in-house specification gets none
    (its failure warns at release). Exactly once: a result already investigated gets no second
    one — a manual investigation without a deviation is linked to this one instead."""
    if signal.kind not in RESULT_SIGNALS:
        return None
    key = str(signal.detail.get("specification", ""))
    candidate = TestResult.objects.filter(
        batch_id=signal.batch_id,
        specification__key=key,
        specification__registered=True,
        passed=False,
    ).first()
    if candidate is None:
        return None
    result = _lock_result(candidate)
    existing = OosInvestigation.objects.select_for_update().filter(result=result).first()
    if existing is None:
        return _create(actor=None, result=result, deviation=deviation, reason=SIGNAL_REASON)
    if existing.deviation_id is None and existing.is_open:
        existing.deviation = deviation
        existing.save(update_fields=["deviation", "updated_at"])
        audit_event_record(
            event_type=DeviationEvent.OOS_LINKED,
            as_system=True,
            target=existing,
            reason=SIGNAL_REASON,
            site_code=result.batch.site.code,
            extra={"deviation": deviation.number},
        )
    return None


#
# The phases
#


def oos_record_findings(
    *, actor: User, oos: OosInvestigation, findings: str, reason: str
) -> OosInvestigation:
    """Write (or rewrite) the findings of the current phase (DV-10). Control Site QA, or the
    site lead at the batch's site. The findings of earlier phases stay as written."""
    _require_qa_or_site_lead(actor, oos.result.batch.site, "write an OOS investigation's findings")
    reason = require_reason(reason)
    findings = _text(findings, field="The findings")
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock_oos(oos)
        _require_oos_open(locked)
        field = findings_field(locked.phase)
        old = phase_findings(locked)
        if old == findings:
            return locked
        setattr(locked, field, findings)
        locked.save(update_fields=[field, "updated_at"])
        audit_event_record(
            event_type=DeviationEvent.OOS_FINDINGS,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=locked.result.batch.site.code,
            extra={"phase": locked.phase, "old": old, "new": findings},
        )
    return locked


def oos_advance(*, actor: User, oos: OosInvestigation, reason: str) -> OosInvestigation:
    """Control Site QA moves the investigation on, Ia → Ib → II → III, once the current
    phase's findings are written (409 `findings_required`); never beyond Phase III (409
    `transition_not_allowed`) nor once concluded (409 `oos_concluded`)."""
    _require_qa(actor, "moves an OOS investigation to its next phase")
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock_oos(oos)
        _require_oos_open(locked)
        following = OOS_NEXT_PHASE.get(locked.phase)
        if following is None:
            raise TransitionNotAllowedError(
                f"{locked.number} is in Phase III, the last: conclude it.",
                code="transition_not_allowed",
            )
        _require_findings(locked, "move on")
        old = locked.phase
        locked.phase = following
        locked.save(update_fields=["phase", "updated_at"])
        site = locked.result.batch.site
        audit_event_record(
            event_type=DeviationEvent.OOS_ADVANCED,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=site.code,
            extra={"old": old, "new": following},
        )
        if following == OosPhase.PHASE_II:
            notify(
                recipients=[*_qa_people(), *site_leads(site)],
                subject=f"{locked.number}: no laboratory cause found — full investigation",
                body=f"{locked.result.specification.name} {locked.result.value_label} on "
                f"{locked.result.batch.number} stands so far; Phase II looks at manufacture.",
                link=_oos_url(locked),
                severity="warn",
            )
    return locked


#
# The conclusion
#


def oos_conclude(
    *,
    actor: User,
    oos: OosInvestigation,
    outcome: str,
    conclusion: str,
    invalidation_evidence: str,
    credentials: SignatureCredentials,
    reason: str,
) -> OosInvestigation:
    """Control Site QA concludes the investigation, signed "approved" (DV-10, ES-01):

    - `invalidated`: an assignable laboratory cause was found in Phase Ia or Ib — the findings
      of the phase name it (409 `findings_required`), `invalidation_evidence` shows it (400
      `evidence_required`). From Phase II on the laboratory found none, so a result is no
      longer invalidated (409 `invalidation_needs_lab_cause`).
    - `confirmed`: the result stands. From Phase II on, once that phase's findings are written
      (409 `confirmation_too_early` in Phase Ia or Ib); no invalidation evidence (400
      `evidence_not_applicable`).

    The failing result itself is never changed. Concluding clears the investigation from the
    batch's release gate; a confirmed failure of a registered specification still blocks there
    as a failed specification. A refused call writes nothing; a wrong password is 422 and
    counts toward lockout."""
    _require_qa(actor, "concludes OOS investigations")
    outcome = _choice(outcome, OosOutcome, field="Outcome")
    if outcome == OosOutcome.OPEN:
        raise ApplicationError(
            "Outcome must be one of: confirmed, invalidated.", code="invalid_choice"
        )
    conclusion = _text(conclusion, field="The conclusion", required=False)
    if not conclusion:
        raise ApplicationError(
            "Write the conclusion: what the investigation found and why.",
            code="conclusion_required",
        )
    evidence = _text(invalidation_evidence, field="The evidence", required=False)
    if outcome == OosOutcome.INVALIDATED and not evidence:
        raise ApplicationError(
            "Invalidating a result needs the evidence of its laboratory cause.",
            code="evidence_required",
        )
    if outcome == OosOutcome.CONFIRMED and evidence:
        raise ApplicationError(
            "Evidence for invalidating is given only when the result is invalidated; a "
            "confirmed result stands.",
            code="evidence_not_applicable",
        )
    reason = require_reason(reason)
    with signing_transaction(), audit_context(reason=reason, user=actor):
        locked = _lock_oos(oos)
        _require_oos_open(locked)
        phase = _short_phase(locked.phase)
        if outcome == OosOutcome.INVALIDATED and locked.phase not in LAB_PHASES:
            raise ConflictError(
                f"{locked.number} is in {phase}: the laboratory phases found no assignable "
                "cause, so the result stands. Conclude it confirmed.",
                code="invalidation_needs_lab_cause",
            )
        if outcome == OosOutcome.CONFIRMED and locked.phase in LAB_PHASES:
            raise ConflictError(
                f"{locked.number} is in {phase}: a result is confirmed once the laboratory "
                "phases found no assignable cause. Move it to Phase II and write its findings.",
                code="confirmation_too_early",
            )
        _require_findings(locked, "conclude")
        locked.outcome = outcome
        locked.conclusion = conclusion
        locked.invalidation_evidence = evidence
        locked.closed_at = timezone.now()
        result = locked.result
        site = result.batch.site
        signature = sign(
            signer=actor,
            credentials=credentials,
            record=locked,
            meaning=SignatureMeaning.APPROVED,
            reason=reason,
            site_code=site.code,
        )
        locked.closure_signature = signature
        locked.save(
            update_fields=[
                "outcome",
                "conclusion",
                "invalidation_evidence",
                "closed_at",
                "closure_signature",
                "updated_at",
            ]
        )
        audit_event_record(
            event_type=DeviationEvent.OOS_CONCLUDED,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=site.code,
            signature=signature,
            extra={
                "outcome": outcome,
                "phase": locked.phase,
                "batch": result.batch.number,
                "specification": result.specification.key,
                "value": format(result.value, "f"),
            },
        )
        notify(
            recipients=[*_qa_people(), *site_leads(site)],
            subject=f"{locked.number} concluded: {result.specification.name} "
            f"{result.value_label} {locked.get_outcome_display().lower()}",
            body=conclusion,
            link=_oos_url(locked),
        )
    return locked
