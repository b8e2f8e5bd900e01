"""The batch certificate PDF (issue 5 §7; design §7; BR-03, BR-04, BR-06, BR-08, ES-01, ES-03,
DI-07).

Rendering is the master file's (`masterfile.pdf`: `render_html`, `layout`, `write_pdfa`,
`json_attachment` — PDF/A-3b, offline, refused inside a database transaction). This module only
reads the batch: `certificate_collect` reads every fact the certificate shows once, into plain
dataclasses, and `certificate_html` builds the HTML from those alone, so nothing touches the
database while WeasyPrint works.

Nothing a user typed is placed in CSS: the running header and footer take their text from
elements with ``string-set`` (templates/pdf/partials/_running.html).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.db import models
from django.db.models import Q

from batches.choices import Decision, SpecificationTiming, StepRole
from batches.models import (
    Batch,
    BatchCertificate,
    Certification,
    StepRecord,
    SupplyRecord,
    TestResult,
)
from batches.selectors import batch_progress, batch_results
from controlsite.audit.models import AuditEvent
from controlsite.signatures.models import ElectronicSignature
from controlsite.signatures.services import content_hash, signatures_for
from masterfile.pdf import (
    Fact,
    SignatureRow,
    TrailRow,
    components_text,
    event_dict,
    history_rows,
    render_html,
    signature_dict,
    trail_rows,
    utc_iso,
    utc_text,
)
from sites.selectors import control_site

AUDIT_TRAIL_FORMAT = "controlsite.batches.audit-trail/1"

# The decision as printed big on the first page: the words, and the colour class.
DECISION_BANNER: dict[str, tuple[str, str]] = {
    Decision.CERTIFIED: ("CERTIFIED", "certified"),
    Decision.CERTIFIED_UNDER_CONCESSION: ("CERTIFIED UNDER CONCESSION", "concession"),
    Decision.REJECTED: ("REJECTED", "rejected"),
}


#
# Plain data, read once
#


@dataclasses.dataclass(frozen=True)
class ValueRow:
    name: str
    value: str
    limits: str
    out_of_limit: bool


@dataclasses.dataclass(frozen=True)
class StepPart:
    anchor: str
    position: int
    title: str
    role: str
    requires_verification: bool
    values: tuple[ValueRow, ...]
    comment: str
    performed_by: str
    performed_at: str
    performed_valid: bool | None  # None: no signature
    verified_by: str
    verified_at: str
    verified_valid: bool | None
    done: bool

    @property
    def out_of_limit(self) -> bool:
        return any(v.out_of_limit for v in self.values)


@dataclasses.dataclass(frozen=True)
class ResultPart:
    key: str
    name: str
    limits: str
    registered: bool
    late_spec: bool
    value: str
    outcome: str  # "pass", "fail", "pending", "missing"
    late: bool
    recorded_by: str
    recorded_at: str


@dataclasses.dataclass(frozen=True)
class FindingPart:
    severity: str
    code: str
    message: str


@dataclasses.dataclass(frozen=True)
class SupplyPart:
    supplied_to: str
    supplied_at: str
    quantity: str
    administered_at: str
    adverse_reaction: bool


@dataclasses.dataclass(frozen=True)
class CertificateDocument:
    """Everything the certificate shows, read in one step."""

    certificate_id: int
    generated_at: dt.datetime
    batch_number: str
    product_code: str
    product_name: str
    site_code: str
    site_name: str
    control_site_name: str
    control_site_licence: str
    control_site_address: str
    decision: str
    decision_words: str
    decision_class: str
    decided_by: str
    decided_at: str
    remote: bool
    location: str
    justification: str
    clinician_request: str
    cover_facts: tuple[Fact, ...]
    steps: tuple[StepPart, ...]
    results: tuple[ResultPart, ...]
    findings: tuple[FindingPart, ...]
    signatures: tuple[SignatureRow, ...]
    supplies: tuple[SupplyPart, ...]
    dossier_sha256: str
    dossier_now: str
    trail: tuple[TrailRow, ...]
    audit_trail: dict[str, Any]

    @property
    def unchanged(self) -> bool:
        """BR-06: the batch record still has the content the QP decided on."""
        return self.dossier_sha256 == self.dossier_now

    @property
    def title(self) -> str:
        return f"Batch certificate {self.batch_number}"


def _number(value: Any) -> str:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def _seconds(moment: dt.datetime | None) -> str:
    return utc_text(moment, seconds=True)


def _who(user: Any) -> str:
    return "" if user is None else f"{user.printed_name} ({user.get_username()})"


def _steps(batch: Batch, valid: dict[int, bool]) -> tuple[StepPart, ...]:
    parts = []
    for row in batch_progress(batch).rows:
        step, record = row.step, row.record
        values: list[ValueRow] = []
        for parameter in step.parameters.all():
            raw = record.values.get(parameter.key) if record is not None else None
            unit = f" {parameter.unit}" if parameter.unit else ""
            values.append(
                ValueRow(
                    name=parameter.name,
                    value="—" if raw is None else f"{raw}{unit}",
                    limits=parameter.limits_label,
                    out_of_limit=record is not None and parameter.key in record.out_of_limit,
                )
            )
        perf_sig = record.performed_signature_id if record else None
        ver_sig = record.verified_signature_id if record else None
        parts.append(
            StepPart(
                anchor=f"step-{step.position}",
                position=step.position,
                title=step.title,
                role=str(StepRole(step.role).label),
                requires_verification=step.requires_verification,
                values=tuple(values),
                comment=record.comment if record else "",
                performed_by=_who(record.performed_by) if record else "",
                performed_at=_seconds(record.created_at) if record else "",
                performed_valid=valid.get(perf_sig) if perf_sig else None,
                verified_by=_who(record.verified_by) if record and record.verified_by else "",
                verified_at=_seconds(record.verified_at) if record and record.verified_at else "",
                verified_valid=valid.get(ver_sig) if ver_sig else None,
                done=row.done,
            )
        )
    return tuple(parts)


def _results(batch: Batch) -> tuple[ResultPart, ...]:
    parts = []
    for row in batch_results(batch):
        spec, result = row.specification, row.result
        late_spec = spec.timing == SpecificationTiming.LATE
        if result is None:
            outcome = "pending" if late_spec else "missing"
        else:
            outcome = "pass" if result.passed else "fail"
        parts.append(
            ResultPart(
                key=spec.key,
                name=spec.name,
                limits=spec.limits_label,
                registered=spec.registered,
                late_spec=late_spec,
                value=result.value_label if result else "—",
                outcome=outcome,
                late=bool(result and result.late),
                recorded_by=_who(result.created_by) if result and result.created_by else "",
                recorded_at=_seconds(result.created_at) if result else "",
            )
        )
    return tuple(parts)


def _signature_rows(
    labelled: Sequence[tuple[str, ElectronicSignature, bool]],
) -> tuple[SignatureRow, ...]:
    return tuple(
        SignatureRow(
            printed_name=sig.printed_name,
            username=sig.signer_username,
            capacity=label,
            meaning=str(sig.get_meaning_display()),
            signed_at=f"{sig.signed_at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}",
            reason=sig.reason,
            components=components_text(sig.components),
            record_hash=sig.record_hash,
            valid=valid,
            withdrawn="",
        )
        for label, sig, valid in labelled
    )


def _audit_trail(
    certificate: BatchCertificate,
    batch: Batch,
    records: Sequence[StepRecord],
    labelled: Sequence[tuple[str, ElectronicSignature, bool]],
    now: dt.datetime,
) -> dict[str, Any]:
    """Every history row and audit event of the batch, its steps, results, decision, supply
    records and certificate, with every signature on them (DI-07)."""
    certification = certificate.certification
    ids: dict[type[models.Model], list[Any]] = {
        Batch: [batch.pk],
        StepRecord: [r.pk for r in records],
        TestResult: list(TestResult.objects.filter(batch=batch).values_list("pk", flat=True)),
        Certification: [certification.pk],
        SupplyRecord: list(SupplyRecord.objects.filter(batch=batch).values_list("pk", flat=True)),
        BatchCertificate: [certificate.pk],
    }
    history: list[dict[str, Any]] = []
    for model, pks in ids.items():
        if pks and hasattr(model, "history"):
            history.extend(history_rows(model, Q(id__in=pks)))
    history.sort(key=lambda row: (row["at"], row["record_type"], row["history_id"]))
    targets = Q(pk__in=[])
    for model, pks in ids.items():
        if pks:
            targets |= Q(target_type=model._meta.label_lower, target_id__in=[str(pk) for pk in pks])
    events = [event_dict(e) for e in AuditEvent.objects.filter(targets).order_by("seq")]
    return {
        "format": AUDIT_TRAIL_FORMAT,
        "generated_at": utc_iso(now),
        "certificate_id": certificate.pk,
        "batch": {"id": batch.pk, "number": batch.number, "status": batch.status},
        "certification": {
            "id": certification.pk,
            "decision": certification.decision,
            "dossier_sha256": certification.dossier_sha256,
            "gate_findings": certification.gate_findings,
        },
        "notes": (
            "Every history row (field values after each change) and every audit event of the "
            "batch, its step records, test results, the QP's decision, supply records and this "
            "certificate, with every electronic signature on them. Times are UTC (ISO 8601). "
            "Each event carries the SHA-256 chain hash of the QMS audit log; `manage.py "
            "verify_audit_chain` proves the whole chain."
        ),
        "history": history,
        "events": events,
        "signatures": [
            {**signature_dict(sig, valid), "capacity": label} for label, sig, valid in labelled
        ],
    }


def certificate_collect(certificate: BatchCertificate, *, now: dt.datetime) -> CertificateDocument:
    """Read everything the certificate of `certificate` shows, into plain data. Reads only."""
    certification = Certification.objects.select_related("qp", "signature").get(
        pk=certificate.certification_id
    )
    batch = Batch.objects.select_related(
        "site", "product", "template__approval_signature", "master_file_version", "created_by"
    ).get(pk=certification.batch_id)
    control = control_site()
    records = list(
        batch.step_records.select_related("step", "performed_by", "verified_by").order_by(
            "position"
        )
    )

    # Every signature behind the decision, each with whether it is still valid (ES-03).
    labelled: list[tuple[str, ElectronicSignature, bool]] = []
    template = batch.template
    for sig, valid in signatures_for(template):
        labelled.append((f"Template v{template.number}", sig, valid))
    for record in records:
        for sig, valid in signatures_for(record):
            labelled.append((f"Step {record.position}", sig, valid))
    for sig, valid in signatures_for(certification):
        labelled.append(("QP decision", sig, valid))
    valid_by_id = {sig.pk: valid for _, sig, valid in labelled}

    decision = Decision(certification.decision)
    words, css = DECISION_BANNER[decision]
    qp_sig = certification.signature
    facts = (
        Fact("Batch number", batch.number),
        Fact("Product", f"{batch.product.code} — {batch.product.name}"),
        Fact("Manufacturing site", f"{batch.site.code} — {batch.site.name}"),
        Fact("Batch template", f"Version {template.number} — {template.title}"),
        Fact("Master file version", f"Version {batch.master_file_version.number}"),
        Fact("Chain-of-identity reference", batch.coi_reference),
        Fact("Started", _seconds(batch.created_at)),
        Fact("Completed", _seconds(batch.completed_at)),
        Fact("Expiry", _seconds(batch.expires_at)),
        Fact("Decided", _seconds(batch.decided_at)),
    )
    supplies = tuple(
        SupplyPart(
            supplied_to=s.supplied_to,
            supplied_at=_seconds(s.supplied_at),
            quantity=f"{_number(s.quantity)} {s.unit}",
            administered_at=_seconds(s.administered_at) if s.administered_at else "",
            adverse_reaction=bool(s.adverse_reaction),
        )
        for s in batch.supplies.order_by("supplied_at", "id")
    )
    trail_records: list[tuple[str, models.Model]] = [(batch.number, batch)]
    trail_records += [(f"Step {r.position}", r) for r in records]
    trail_records += [(f"Result {r.specification.key}", r) for r in batch.results.all()]
    trail_records += [("QP decision", certification)]
    return CertificateDocument(
        certificate_id=certificate.pk,
        generated_at=now,
        batch_number=batch.number,
        product_code=batch.product.code,
        product_name=batch.product.name,
        site_code=batch.site.code,
        site_name=batch.site.name,
        control_site_name=control.name if control else "Control Site not recorded",
        control_site_licence=control.licence_number if control else "—",
        control_site_address=control.address if control else "",
        decision=decision.value,
        decision_words=words,
        decision_class=css,
        decided_by=certification.qp.printed_name,
        decided_at=_seconds(qp_sig.signed_at if qp_sig else certification.created_at),
        remote=certification.remote,
        location=certification.location,
        justification=certification.justification,
        clinician_request=certification.clinician_request,
        cover_facts=facts,
        steps=_steps(batch, valid_by_id),
        results=_results(batch),
        findings=tuple(
            FindingPart(
                severity=str(f.get("severity", "")),
                code=str(f.get("code", "")),
                message=str(f.get("message", "")),
            )
            for f in certification.gate_findings
        ),
        signatures=_signature_rows(labelled),
        supplies=supplies,
        dossier_sha256=certification.dossier_sha256,
        dossier_now=content_hash(batch),
        trail=trail_rows(trail_records),
        audit_trail=_audit_trail(certificate, batch, records, labelled, now),
    )


#
# HTML
#


def certificate_html(doc: CertificateDocument) -> str:
    """The certificate's HTML, built from the collected data only (no database access)."""
    generated = doc.generated_at.astimezone(dt.UTC)
    return render_html(
        "pdf/batch_certificate.html",
        {
            "doc": doc,
            "title": doc.title,
            "header_left": f"Batch certificate — {doc.batch_number}",
            "header_right": f"{doc.product_code} · {doc.site_code} · {doc.decision_words}",
            "exported_line": f"Batch {doc.batch_number} · generated at "
            f"{generated:%Y-%m-%d %H:%M} UTC",
            "watermark": "",
            "meta_author": f"{doc.control_site_name} (Qualified Person: {doc.decided_by})",
            "meta_keywords": ", ".join(
                [
                    "batch certificate",
                    doc.batch_number,
                    doc.product_code,
                    doc.site_code,
                    doc.decision_words.lower(),
                ]
            ),
            "meta_description": f"Batch certificate of {doc.batch_number} ({doc.product_code} "
            f"made at {doc.site_code}): {doc.decision_words.lower()}",
            "meta_created": generated.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "blocks": [f for f in doc.findings if f.severity == "block"],
            "warnings": [f for f in doc.findings if f.severity != "block"],
        },
    )
