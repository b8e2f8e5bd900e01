"""The batches app's release gates (design §5; BR-05, BR-08, BR-09, BR-15).

Registered in `BatchesConfig.ready()`. Each reads the batch as it is now; the certification
service stores what they found with the decision.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from django.utils import timezone

from batches.choices import SpecificationTiming, TemplateStatus
from batches.selectors import batch_progress, batch_results
from controlsite.gates import Finding, Severity
from controlsite.signatures.services import signature_is_valid
from training.selectors import QualificationQuery, qualifications

# Finding codes: stable, integrators branch on them.
TEMPLATE_NOT_APPROVED = "template_not_approved"
STEP_MISSING = "step_missing"
STEP_UNVERIFIED = "step_unverified"
STEP_SIGNATURE_INVALID = "step_signature_invalid"
STEP_OUT_OF_LIMIT = "step_out_of_limit"
RESULT_MISSING = "result_missing"
SPECIFICATION_FAILED = "specification_failed"
UNREGISTERED_SPECIFICATION_FAILED = "unregistered_specification_failed"
BATCH_EXPIRED = "batch_expired"
SIGNER_NOT_QUALIFIED = "signer_not_qualified"
# The only blocks a concession may certify over (BR-08: never a missing result or an open step).
CONCESSION_CODES = frozenset({SPECIFICATION_FAILED})


def _link(batch: Any, anchor: str) -> str:
    return f"{reverse('batches:detail', args=[batch.number])}#{anchor}"


def template_approved(batch: Any) -> list[Finding]:
    """The batch was made to a template that Control Site QA had approved."""
    template = batch.template
    if template.approved_at is not None and template.status != TemplateStatus.DRAFT:
        return []
    return [
        Finding(
            code=TEMPLATE_NOT_APPROVED,
            severity=Severity.BLOCK,
            message=f"Batch template v{template.number} was never approved.",
            link=_link(batch, "template"),
        )
    ]


def record_complete(batch: Any) -> list[Finding]:
    """Every step recorded in order, signed, verified where required, signatures intact
    (BR-15, ES-03); a value outside its limits is a warning the QP must justify."""
    findings: list[Finding] = []
    for row in batch_progress(batch, parameters=False).rows:
        step, record = row.step, row.record
        anchor = f"step-{step.position}"
        if record is None:
            findings.append(
                Finding(
                    code=STEP_MISSING,
                    severity=Severity.BLOCK,
                    message=f"Step {step.position} ({step.title}) is not recorded.",
                    link=_link(batch, anchor),
                )
            )
            continue
        if record.awaiting_verification:
            findings.append(
                Finding(
                    code=STEP_UNVERIFIED,
                    severity=Severity.BLOCK,
                    message=f"Step {step.position} ({step.title}) awaits its second-person "
                    "verification.",
                    link=_link(batch, anchor),
                )
            )
        signatures = [record.performed_signature, record.verified_signature]
        if any(s is not None and not signature_is_valid(s, record) for s in signatures):
            findings.append(
                Finding(
                    code=STEP_SIGNATURE_INVALID,
                    severity=Severity.BLOCK,
                    message=f"Step {step.position} ({step.title}) changed after it was signed.",
                    link=_link(batch, anchor),
                )
            )
        if record.out_of_limit:
            keys = ", ".join(record.out_of_limit)
            findings.append(
                Finding(
                    code=STEP_OUT_OF_LIMIT,
                    severity=Severity.WARN,
                    message=f"Step {step.position} ({step.title}): {keys} outside limits.",
                    link=_link(batch, anchor),
                )
            )
    return findings


def specifications_met(batch: Any) -> list[Finding]:
    """Every result due before release is in; a failed registered specification blocks (only a
    concession may certify over it), a failed unregistered one warns (BR-08, BR-09)."""
    findings: list[Finding] = []
    for row in batch_results(batch):
        spec, result = row.specification, row.result
        anchor = f"result-{spec.key}"
        if result is None:
            if spec.timing == SpecificationTiming.BEFORE_RELEASE:
                findings.append(
                    Finding(
                        code=RESULT_MISSING,
                        severity=Severity.BLOCK,
                        message=f"No result yet for {spec.name}, due before release.",
                        link=_link(batch, anchor),
                    )
                )
            continue
        if result.passed:
            continue
        registered = spec.registered
        findings.append(
            Finding(
                code=SPECIFICATION_FAILED if registered else UNREGISTERED_SPECIFICATION_FAILED,
                severity=Severity.BLOCK if registered else Severity.WARN,
                message=f"{spec.name} {result.value_label} is outside "
                f"{spec.limits_label}{' (registered specification)' if registered else ''}.",
                link=_link(batch, anchor),
            )
        )
    return findings


def signers_qualified(batch: Any) -> list[Finding]:
    """Everyone who signed a step of the batch record was qualified for it at the moment they
    signed: trained on the procedures in force then, refresher not lapsed (TR-02, TR-04). One
    evaluation for every signature, in a fixed number of queries."""
    asked: list[tuple[Any, str, Any]] = []
    queries: list[QualificationQuery] = []
    for record in batch.step_records.select_related(
        "step", "performed_by", "performed_signature", "verified_by"
    ).order_by("position"):
        performed_at = (
            record.performed_signature.signed_at
            if record.performed_signature_id
            else record.created_at
        )
        signed = [(record.performed_by, "performed", performed_at)]
        if record.verified_by_id and record.verified_at:
            signed.append((record.verified_by, "verified", record.verified_at))
        for user, what, at in signed:
            asked.append((record, what, user))
            queries.append(QualificationQuery(user, batch.site, record.step.role, at))
    findings = []
    for (record, what, user), verdict in zip(asked, qualifications(queries), strict=True):
        if verdict:
            continue
        findings.append(
            Finding(
                code=SIGNER_NOT_QUALIFIED,
                severity=Severity.BLOCK,
                message=f"Step {record.position} was {what} by {user.printed_name}, who was not "
                f"qualified when signing: {'; '.join(verdict.items)}.",
                link=_link(batch, f"step-{record.position}"),
            )
        )
    return findings


def not_expired(batch: Any) -> list[Finding]:
    if batch.expires_at is None or batch.expires_at > timezone.now():
        return []
    return [
        Finding(
            code=BATCH_EXPIRED,
            severity=Severity.BLOCK,
            message=f"Expired at {batch.expires_at:%d %b %Y %H:%M} UTC.",
            link=_link(batch, "summary"),
        )
    ]
