"""Every write to batch templates and batches: templates and their approval, starting a batch,
steps and verification, results, the QP's decision, supply (issue 5; BR-01…BR-15, ES-*, TR-02).

Each service checks the role, locks what it changes, records why, writes the domain audit event,
signs where a signature is due and sends notices only after commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from batches import gates as batch_gates
from batches.certificates import certificate_queue
from batches.choices import (
    ACTION_TRANSITIONS,
    COI_MAX,
    DECISION_STATUS,
    INSTRUCTION_MAX,
    JUSTIFICATION_MAX,
    LOCATION_MAX,
    NAME_MAX,
    PARAMETERS_MAX,
    SEQUENCE_MAX,
    SPECIFICATIONS_MAX,
    STEPS_MAX,
    UNIT_MAX,
    VALUE_DECIMAL_PLACES,
    VALUE_MAX_DIGITS,
    BatchAction,
    BatchStatus,
    Decision,
    SignalKind,
    SpecificationTiming,
    StepRole,
    TemplateStatus,
)
from batches.events import BatchEvent, BatchWebhook
from batches.models import (
    Batch,
    BatchSequence,
    BatchSignal,
    BatchTemplate,
    Certification,
    Specification,
    StepParameter,
    StepRecord,
    SupplyRecord,
    TemplateStep,
    TestResult,
    coi_validator,
    key_validator,
)
from batches.selectors import (
    approved_template,
    batch_gate_report,
    batch_progress,
    holds_step_role,
)
from controlsite.accounts import permissions
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability, Role
from controlsite.accounts.selectors import users_holding
from controlsite.audit.context import audit_context
from controlsite.audit.history import create_with_history
from controlsite.audit.services import audit_event_build, audit_event_record, audit_events_append
from controlsite.errors import (
    ApplicationError,
    ConflictError,
    PermissionRefusedError,
    TransitionNotAllowedError,
    require_reason,
)
from controlsite.gates import GateReport
from controlsite.notifications.services import notify
from controlsite.signatures.models import SignatureMeaning
from controlsite.signatures.services import (
    SignatureCredentials,
    SignatureRefusedError,
    content_hash,
    sign,
    signing_transaction,
)
from controlsite.webhooks.services import webhook_emit
from masterfile.models import Product
from masterfile.selectors import effective_version, site_listed_for_product
from sites.models import Site
from sites.selectors import site_can_manufacture, site_leads, sites_visible_to
from training.selectors import user_is_qualified

_VALUE_LIMIT = Decimal(10) ** (VALUE_MAX_DIGITS - VALUE_DECIMAL_PLACES)


#
# Shared checks
#


def parse_text(value: str, *, field: str, limit: int, required: bool = True) -> str:
    value = (value or "").strip()
    if required and not value:
        raise ApplicationError(f"{field} is required.", code="invalid")
    if len(value) > limit:
        raise ApplicationError(
            f"{field} is {len(value):,} characters; the limit is {limit:,}.", code="too_long"
        )
    return value


def parse_decimal(value: Any, *, field: str) -> Decimal:
    """A finite decimal within the stored precision; strings and numbers are accepted."""
    if isinstance(value, bool) or value is None:
        raise ApplicationError(f"{field} must be a number.", code="invalid_value")
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ApplicationError(f"{field} must be a number.", code="invalid_value") from None
    if not number.is_finite() or abs(number) >= _VALUE_LIMIT:
        raise ApplicationError(
            f"{field} must be a finite number below {_VALUE_LIMIT:,}.", code="invalid_value"
        )
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -VALUE_DECIMAL_PLACES:
        raise ApplicationError(
            f"{field} has more than {VALUE_DECIMAL_PLACES} decimal places.", code="invalid_value"
        )
    return number


def parse_optional_decimal(value: Any, *, field: str) -> Decimal | None:
    return None if value is None or value == "" else parse_decimal(value, field=field)


def parse_key(value: str, *, field: str) -> str:
    value = (value or "").strip()
    try:
        key_validator(value)
    except ValidationError:
        raise ApplicationError(
            f"{field} must be 1–40 lower-case letters, digits, '-' or '_'.", code="invalid_key"
        ) from None
    return value


def _limits(low: Any, high: Any, *, field: str) -> tuple[Decimal | None, Decimal | None]:
    low_value = parse_optional_decimal(low, field=f"{field} lower limit")
    high_value = parse_optional_decimal(high, field=f"{field} upper limit")
    if low_value is not None and high_value is not None and low_value > high_value:
        raise ApplicationError(
            f"{field}: the lower limit is above the upper limit.", code="invalid_limits"
        )
    return low_value, high_value


def _batch_url(batch: Batch) -> str:
    return reverse("batches:detail", args=[batch.number])


def _qps() -> Iterable[User]:
    return users_holding(Role.QP)


def _emit(event_type: BatchWebhook, batch: Batch, **data: Any) -> None:
    """Report to webhook subscribers, in the transaction of the change (the outbox)."""
    webhook_emit(
        event_type=event_type,
        site_code=batch.site.code,
        payload={
            "batch": batch.number,
            "site": batch.site.code,
            "product": batch.product.code,
            "status": batch.status,
            "completed_at": batch.completed_at,
            "expires_at": batch.expires_at,
            "url": _batch_url(batch),
            **data,
        },
    )


#
# Templates (master batch records)
#


def _require_quality(actor: User) -> None:
    permissions.require(
        actor,
        Capability.MANAGE_QUALITY_RECORDS,
        "Only Control Site QA writes and approves batch templates.",
    )


def _require_draft(template: BatchTemplate) -> None:
    if template.status != TemplateStatus.DRAFT:
        raise ConflictError(
            f"Template v{template.number} is {template.get_status_display().lower()}: its "
            "content is frozen. Draft a new version to change it.",
            code="template_not_editable",
        )


def template_create(*, actor: User, product: Product, title: str, reason: str) -> BatchTemplate:
    """Draft the next template version of a product, tied to its effective master file; the
    draft starts as a copy of the approved version, if there is one."""
    _require_quality(actor)
    reason = require_reason(reason)
    title = parse_text(title, field="Title", limit=200)
    version = effective_version(product)
    if version is None:
        raise ConflictError(
            f"{product.code} has no effective master file: a batch template follows one.",
            code="master_file_not_effective",
        )
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        Product.objects.select_for_update().get(pk=product.pk)
        if BatchTemplate.objects.filter(product=product, status=TemplateStatus.DRAFT).exists():
            raise ConflictError(
                f"{product.code} already has a draft template; finish or change that one.",
                code="template_draft_exists",
            )
        last = BatchTemplate.objects.filter(product=product).order_by("-number").first()
        template = BatchTemplate.objects.create(
            product=product,
            number=(last.number + 1) if last else 1,
            title=title,
            master_file_version=version,
            created_by=actor,
        )
        source = approved_template(product)
        if source is not None:
            _copy_template(source, template, actor)
        audit_event_record(
            event_type=BatchEvent.TEMPLATE_CREATED,
            actor=actor,
            target=template,
            reason=reason,
            extra={"copied_from": source.number if source else None},
        )
    return template


def _copy_template(source: BatchTemplate, target: BatchTemplate, actor: User) -> None:
    for step in source.steps.order_by("position"):
        copy = TemplateStep.objects.create(
            template=target,
            position=step.position,
            title=step.title,
            instruction=step.instruction,
            role=step.role,
            requires_verification=step.requires_verification,
            created_by=actor,
        )
        for parameter in step.parameters.order_by("position"):
            StepParameter.objects.create(
                step=copy,
                position=parameter.position,
                key=parameter.key,
                name=parameter.name,
                unit=parameter.unit,
                low=parameter.low,
                high=parameter.high,
                created_by=actor,
            )
    for spec in source.specifications.order_by("key"):
        Specification.objects.create(
            template=target,
            key=spec.key,
            name=spec.name,
            unit=spec.unit,
            low=spec.low,
            high=spec.high,
            registered=spec.registered,
            timing=spec.timing,
            created_by=actor,
        )


def _lock_draft(template: BatchTemplate) -> BatchTemplate:
    locked = BatchTemplate.objects.select_for_update().get(pk=template.pk)
    _require_draft(locked)
    return locked


def template_step_add(
    *,
    actor: User,
    template: BatchTemplate,
    title: str,
    instruction: str,
    role: str = StepRole.SITE_OPERATOR,
    requires_verification: bool = False,
    parameters: Iterable[Mapping[str, Any]] = (),
    reason: str,
) -> TemplateStep:
    """Add a step at the end of a draft template, with its parameters:
    `{"key", "name", "unit", "low", "high"}` (limits optional)."""
    _require_quality(actor)
    reason = require_reason(reason)
    title = parse_text(title, field="Step title", limit=NAME_MAX)
    instruction = parse_text(instruction, field="Instruction", limit=INSTRUCTION_MAX)
    if role not in StepRole.values:
        raise ApplicationError(
            f"role must be one of: {', '.join(StepRole.values)}.", code="invalid_role"
        )
    rows = list(parameters)
    if len(rows) > PARAMETERS_MAX:
        raise ApplicationError(
            f"A step takes at most {PARAMETERS_MAX} parameters.", code="too_many_parameters"
        )
    cleaned = []
    for index, row in enumerate(rows, start=1):
        key = parse_key(str(row.get("key", "")), field=f"Parameter {index} key")
        low, high = _limits(row.get("low"), row.get("high"), field=f"Parameter {key}")
        cleaned.append(
            {
                "key": key,
                "name": parse_text(
                    str(row.get("name") or key), field="Parameter name", limit=NAME_MAX
                ),
                "unit": parse_text(
                    str(row.get("unit") or ""), field="Unit", limit=UNIT_MAX, required=False
                ),
                "low": low,
                "high": high,
            }
        )
    if len({row["key"] for row in cleaned}) != len(cleaned):
        raise ApplicationError("Parameter keys must differ.", code="duplicate_key")
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock_draft(template)
        count = locked.steps.count()
        if count >= STEPS_MAX:
            raise ConflictError(
                f"A template holds at most {STEPS_MAX} steps.", code="too_many_steps"
            )
        step = TemplateStep.objects.create(
            template=locked,
            position=count + 1,
            title=title,
            instruction=instruction,
            role=role,
            requires_verification=bool(requires_verification),
            created_by=actor,
        )
        for position, row in enumerate(cleaned, start=1):
            StepParameter.objects.create(step=step, position=position, created_by=actor, **row)
        audit_event_record(
            event_type=BatchEvent.TEMPLATE_CHANGED,
            actor=actor,
            target=locked,
            reason=reason,
            extra={"step_added": step.position, "title": title},
        )
    return step


def template_specification_add(
    *,
    actor: User,
    template: BatchTemplate,
    key: str,
    name: str,
    unit: str = "",
    low: Any = None,
    high: Any = None,
    registered: bool = True,
    timing: str = SpecificationTiming.BEFORE_RELEASE,
    reason: str,
) -> Specification:
    """Add a critical quality attribute with its limits to a draft template."""
    _require_quality(actor)
    reason = require_reason(reason)
    key = parse_key(key, field="Specification key")
    name = parse_text(name, field="Name", limit=NAME_MAX)
    unit = parse_text(unit, field="Unit", limit=UNIT_MAX, required=False)
    low_value, high_value = _limits(low, high, field=name)
    if low_value is None and high_value is None:
        raise ApplicationError(
            "A specification needs a lower limit, an upper limit or both.", code="invalid_limits"
        )
    if timing not in SpecificationTiming.values:
        raise ApplicationError(
            f"timing must be one of: {', '.join(SpecificationTiming.values)}.",
            code="invalid_timing",
        )
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock_draft(template)
        if locked.specifications.count() >= SPECIFICATIONS_MAX:
            raise ConflictError(
                f"A template holds at most {SPECIFICATIONS_MAX} specifications.",
                code="too_many_specifications",
            )
        if locked.specifications.filter(key=key).exists():
            raise ConflictError(f"This template already has {key!r}.", code="duplicate_key")
        spec = Specification.objects.create(
            template=locked,
            key=key,
            name=name,
            unit=unit,
            low=low_value,
            high=high_value,
            registered=bool(registered),
            timing=timing,
            created_by=actor,
        )
        audit_event_record(
            event_type=BatchEvent.TEMPLATE_CHANGED,
            actor=actor,
            target=locked,
            reason=reason,
            extra={"specification_added": key},
        )
    return spec


def template_approve(
    *, actor: User, template: BatchTemplate, credentials: SignatureCredentials, reason: str
) -> BatchTemplate:
    """Approve a draft template with Control Site QA's e-signature ("approved"); the previously
    approved version retires. Only an approved template starts batches."""
    _require_quality(actor)
    reason = require_reason(reason)
    with signing_transaction(), audit_context(reason=reason, user=actor):
        locked = _lock_draft(template)
        if not locked.steps.exists():
            raise ConflictError("A template needs at least one step.", code="template_empty")
        version = effective_version(locked.product)
        if version is None:
            raise ConflictError(
                f"{locked.product.code} has no effective master file.",
                code="master_file_not_effective",
            )
        signature = sign(
            signer=actor,
            credentials=credentials,
            record=locked,
            meaning=SignatureMeaning.APPROVED,
            reason=reason,
        )
        previous = approved_template(locked.product)
        now = timezone.now()
        if previous is not None:
            previous.status = TemplateStatus.RETIRED
            previous.retired_at = now
            previous.save(update_fields=["status", "retired_at", "updated_at"])
            audit_event_record(
                event_type=BatchEvent.TEMPLATE_RETIRED,
                actor=actor,
                target=previous,
                reason=reason,
                extra={"old": TemplateStatus.APPROVED, "new": TemplateStatus.RETIRED},
            )
        locked.status = TemplateStatus.APPROVED
        locked.approved_at = now
        locked.approved_by = actor
        locked.approval_signature = signature
        locked.master_file_version = version
        locked.save(
            update_fields=[
                "status",
                "approved_at",
                "approved_by",
                "approval_signature",
                "master_file_version",
                "updated_at",
            ]
        )
        audit_event_record(
            event_type=BatchEvent.TEMPLATE_APPROVED,
            actor=actor,
            target=locked,
            reason=reason,
            signature=signature,
            extra={"old": TemplateStatus.DRAFT, "new": TemplateStatus.APPROVED},
        )
    return locked


#
# Starting a batch
#


def _require_recording_at(actor: User, site_id: int, label: str = "this batch's site") -> None:
    """Recording manufacture needs the capability and the site among the actor's sites (a
    site-limited token narrows them). Takes the site's id: no row need be loaded for it."""
    permissions.require(
        actor, Capability.RECORD_MANUFACTURE, "Only site staff and integrators record batches."
    )
    if not sites_visible_to(actor).filter(pk=site_id).exists():
        raise PermissionRefusedError(
            f"You do not record manufacture at {label}.", code="not_a_site_member"
        )


def start_refusal(site: Site, product: Product) -> tuple[str, str] | None:
    """Why a batch of `product` may not start at `site` now, as (code, message), or None."""
    if not site_can_manufacture(site):
        site.refresh_from_db(fields=["status"])
        return (
            "site_not_active",
            f"Site {site.code} is {site.get_status_display().lower()}: it cannot manufacture.",
        )
    if effective_version(product) is None:
        return ("master_file_not_effective", f"{product.code} has no effective master file.")
    if not site_listed_for_product(site, product):
        return (
            "site_not_listed",
            f"Site {site.code} is not a manufacturing site in {product.code}'s effective "
            "master file.",
        )
    if approved_template(product) is None:
        return ("template_not_approved", f"{product.code} has no approved batch template.")
    return None


def _next_number(site: Site, today: dt.date) -> str:
    sequence, _created = BatchSequence.objects.select_for_update().get_or_create(
        site=site, day=today
    )
    if sequence.last >= SEQUENCE_MAX:
        raise ConflictError(
            f"Site {site.code} has started {SEQUENCE_MAX} batches today; no number is left.",
            code="batch_numbers_exhausted",
        )
    sequence.last += 1
    sequence.save(update_fields=["last"])
    return f"{site.code}-{today:%y%m%d}-{sequence.last:03d}"


def batch_start(
    *, actor: User, site: Site, product: Product, coi_reference: str, reason: str = ""
) -> Batch:
    """Start a batch: only where the site can manufacture, is listed in the product's effective
    master file and an approved template exists; the refusal says which (BR-01, BR-12, BR-14).
    """
    _require_recording_at(actor, site.pk, site.code)
    coi_reference = (coi_reference or "").strip()
    try:
        coi_validator(coi_reference)
    except ValidationError:
        raise ApplicationError(
            f"The chain-of-identity reference must be 3–{COI_MAX} letters, digits and . / _ - "
            "(a pseudonymised patient identifier, never a name).",
            code="invalid_coi_reference",
        ) from None
    reason = (reason or "").strip() or "batch started"
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        Site.objects.select_for_update().get(pk=site.pk)
        refusal = start_refusal(site, product)
        if refusal is not None:
            code, message = refusal
            raise ConflictError(message, code=code)
        template = approved_template(product)
        version = effective_version(product)
        assert template is not None and version is not None  # noqa: S101  (checked just above)
        batch = Batch.objects.create(
            number=_next_number(site, timezone.localdate()),
            site=site,
            product=product,
            template=template,
            master_file_version=version,
            coi_reference=coi_reference,
            created_by=actor,
        )
        audit_event_record(
            event_type=BatchEvent.STARTED,
            actor=actor,
            target=batch,
            reason=reason,
            site_code=site.code,
            extra={"template": template.number, "master_file_version": version.number},
        )
    return batch


#
# Steps
#


def _lock_batch(batch: Batch) -> Batch:
    return (
        Batch.objects.select_for_update(of=("self",))
        .select_related("site", "product", "template")
        .get(pk=batch.pk)
    )


def _require_in_progress(batch: Batch) -> None:
    if batch.status != BatchStatus.IN_PROGRESS:
        raise TransitionNotAllowedError(
            f"Batch {batch.number} is {batch.get_status_display().lower()}: no more steps.",
            code="batch_not_in_progress",
        )


def _require_may_sign_step(actor: User, batch: Batch, step: TemplateStep) -> None:
    """The signer holds the step's role at the batch's site and is qualified (TR-02)."""
    if not holds_step_role(actor, batch.site, step):
        raise PermissionRefusedError(
            f"Step {step.position} needs a {StepRole(step.role).label.lower()} at "
            f"{batch.site.code}.",
            code="role_not_held_at_site",
        )
    verdict = user_is_qualified(actor, batch.site, step.role)
    if not verdict:
        raise PermissionRefusedError(
            verdict.message(), code="not_qualified", extra={"missing": verdict.items}
        )


def _step_values(step: TemplateStep, values: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Every parameter's value as a decimal string, and the keys outside their limits."""
    if not isinstance(values, Mapping):
        raise ApplicationError("values must be an object of parameter keys.", code="invalid")
    parameters = {p.key: p for p in step.parameters.order_by("position")}
    unknown = sorted(set(values) - set(parameters))
    if unknown:
        raise ApplicationError(
            f"Step {step.position} has no parameter {', '.join(map(repr, unknown))}.",
            code="unknown_parameter",
        )
    missing = [key for key in parameters if key not in values]
    if missing:
        raise ApplicationError(
            f"Step {step.position} needs a value for {', '.join(missing)}.",
            code="value_missing",
        )
    cleaned: dict[str, str] = {}
    out: list[str] = []
    for key, parameter in parameters.items():
        number = parse_decimal(values[key], field=parameter.name)
        cleaned[key] = format(number, "f")
        if not parameter.within(number):
            out.append(key)
    return cleaned, out


def step_record(
    *,
    actor: User,
    batch: Batch,
    position: int,
    values: Mapping[str, Any],
    credentials: SignatureCredentials,
    reason: str = "",
    comment: str = "",
) -> StepRecord:
    """Record and sign ("performed") the next step of a batch. Out of order is refused (BR-15);
    a value outside its limits is kept, flagged, and signalled for a deviation."""
    _require_recording_at(actor, batch.site_id)
    comment = parse_text(comment, field="Comment", limit=INSTRUCTION_MAX, required=False)
    reason = (reason or "").strip() or f"step {position} performed"
    with signing_transaction(), audit_context(reason=reason, user=actor):
        locked = _lock_batch(batch)
        _require_in_progress(locked)
        if not site_can_manufacture(locked.site):
            raise ConflictError(
                f"Site {locked.site.code} cannot manufacture now: steps are stopped.",
                code="site_not_active",
            )
        progress = batch_progress(locked)
        current = progress.current
        step = next((row.step for row in progress.rows if row.step.position == position), None)
        if step is None:
            raise ApplicationError(f"The template has no step {position}.", code="unknown_step")
        if current is None or current.step.position != position or current.record is not None:
            expected = (
                "the batch has no step left"
                if current is None
                else f"step {current.step.position} awaits verification"
                if current.record is not None
                else f"the next step is {current.step.position}"
            )
            raise ConflictError(
                f"Step {position} is out of order: {expected}.", code="step_out_of_order"
            )
        _require_may_sign_step(actor, locked, step)
        cleaned, out = _step_values(step, values)
        record = StepRecord.objects.create(
            batch=locked,
            step=step,
            position=position,
            values=cleaned,
            out_of_limit=out,
            comment=comment,
            performed_by=actor,
            created_by=actor,
        )
        record.performed_signature = sign(
            signer=actor,
            credentials=credentials,
            record=record,
            meaning=SignatureMeaning.PERFORMED,
            reason=reason,
            site_code=locked.site.code,
        )
        record.save(update_fields=["performed_signature", "updated_at"])
        audit_event_record(
            event_type=BatchEvent.STEP_PERFORMED,
            actor=actor,
            target=record,
            reason=reason,
            site_code=locked.site.code,
            signature=record.performed_signature,
            extra={"batch": locked.number, "position": position, "values": cleaned},
        )
        if out:
            _out_of_limit(locked, record, actor)
        if not step.requires_verification:
            _complete_if_done(locked, actor)
    return record


def _out_of_limit(batch: Batch, record: StepRecord, actor: User) -> None:
    detail = {"position": record.position, "parameters": record.out_of_limit, **record.values}
    BatchSignal.objects.create(kind=SignalKind.OUT_OF_LIMIT, batch=batch, detail=detail)
    audit_event_record(
        event_type=BatchEvent.OUT_OF_LIMIT,
        actor=actor,
        target=batch,
        site_code=batch.site.code,
        extra=detail,
    )
    notify(
        recipients=[*site_leads(batch.site)],
        subject=f"{batch.number}: step {record.position} outside limits "
        f"({', '.join(record.out_of_limit)})",
        body="The value is kept and flagged; raise a deviation.",
        link=f"{_batch_url(batch)}#step-{record.position}",
        severity="warn",
    )


def step_verify(
    *,
    actor: User,
    record: StepRecord,
    credentials: SignatureCredentials,
    reason: str = "",
) -> StepRecord:
    """The second person's signature ("verified") on a step that needs one: a different person
    from the performer, holding the step's role at the site."""
    batch = record.batch
    _require_recording_at(actor, batch.site_id)
    reason = (reason or "").strip() or f"step {record.position} verified"
    with signing_transaction(), audit_context(reason=reason, user=actor):
        locked_batch = _lock_batch(batch)
        _require_in_progress(locked_batch)
        locked = StepRecord.objects.select_for_update().select_related("step").get(pk=record.pk)
        if not locked.step.requires_verification:
            raise ConflictError(
                f"Step {locked.position} needs no verification.", code="verification_not_required"
            )
        if locked.verified_by_id is not None:
            raise ConflictError(
                f"Step {locked.position} is already verified.", code="already_verified"
            )
        if locked.performed_by_id == actor.pk:
            raise SignatureRefusedError(
                "The verifier must be a different person from the one who performed the step.",
                code="same_signer",
                signer=actor,
                meaning=SignatureMeaning.VERIFIED,
                target=f"batches.steprecord:{locked.pk}",
            )
        _require_may_sign_step(actor, locked_batch, locked.step)
        signature = sign(
            signer=actor,
            credentials=credentials,
            record=locked,
            meaning=SignatureMeaning.VERIFIED,
            reason=reason,
            site_code=locked_batch.site.code,
        )
        locked.verified_by = actor
        locked.verified_at = timezone.now()
        locked.verified_signature = signature
        locked.save(
            update_fields=["verified_by", "verified_at", "verified_signature", "updated_at"]
        )
        audit_event_record(
            event_type=BatchEvent.STEP_VERIFIED,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=locked_batch.site.code,
            signature=signature,
            extra={"batch": locked_batch.number, "position": locked.position},
        )
        _complete_if_done(locked_batch, actor)
    return locked


def _complete_if_done(batch: Batch, actor: User) -> None:
    """The last step done completes the batch: its expiry starts now (shelf life)."""
    if not batch_progress(batch).complete:
        return
    source, target = ACTION_TRANSITIONS[BatchAction.COMPLETE]
    if batch.status not in source:
        return
    now = timezone.now()
    batch.status = target
    batch.completed_at = now
    batch.expires_at = now + dt.timedelta(minutes=batch.product.shelf_life_minutes)
    batch.save(update_fields=["status", "completed_at", "expires_at", "updated_at"])
    audit_event_record(
        event_type=BatchEvent.COMPLETED,
        actor=actor,
        target=batch,
        site_code=batch.site.code,
        extra={
            "old": BatchStatus.IN_PROGRESS,
            "new": target,
            "expires_at": batch.expires_at.isoformat(),
        },
    )
    _emit(BatchWebhook.COMPLETED, batch)


#
# Results
#


@dataclasses.dataclass(frozen=True)
class ResultEntry:
    """One value for one specification, as an instrument or a person sends it."""

    specification_key: str
    value: Any
    comment: str = ""


def result_record(
    *,
    actor: User,
    batch: Batch,
    specification_key: str,
    value: Any,
    reason: str = "",
    comment: str = "",
) -> TestResult:
    """Record one result; see `results_record`."""
    entry = ResultEntry(specification_key=specification_key, value=value, comment=comment)
    return results_record(actor=actor, batch=batch, entries=[entry], reason=reason)[0]


def results_record(
    *, actor: User, batch: Batch, entries: Sequence[ResultEntry], reason: str = ""
) -> list[TestResult]:
    """Record results against the batch's specifications, all or none; pass or fail is
    computed and a result is never overwritten. A result after certification is late (BR-09):
    a failing one escalates to the QPs and the site lead at once and is signalled for a
    deviation. Results sent together share one batch lock and one append to the audit chain,
    each with its own history row and audit event (AT-01)."""
    _require_recording_at(actor, batch.site_id)
    if not entries:
        raise ApplicationError("Send at least one result.", code="no_results")
    if len(entries) > SPECIFICATIONS_MAX:  # a template's specifications, one result each
        raise ApplicationError(
            f"{len(entries):,} results in one call; the limit is {SPECIFICATIONS_MAX}.",
            code="too_many_results",
        )
    keys = [str(entry.specification_key or "") for entry in entries]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ApplicationError(
            f"Specification {repeated[0][:40]!r} appears more than once; send one result each.",
            code="duplicate_specification",
        )
    comments = [
        parse_text(entry.comment, field="Comment", limit=INSTRUCTION_MAX, required=False)
        for entry in entries
    ]
    reason = (reason or "").strip() or (
        f"result for {keys[0]}" if len(keys) == 1 else f"{len(keys)} results"
    )
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock_batch(batch)
        if locked.status == BatchStatus.REJECTED:
            raise ConflictError(
                f"Batch {locked.number} is rejected: no more results.", code="batch_decided"
            )
        late = locked.status in (BatchStatus.CERTIFIED, BatchStatus.CERTIFIED_UNDER_CONCESSION)
        specs = {spec.key: spec for spec in locked.template.specifications.filter(key__in=keys)}
        results: list[TestResult] = []
        for index, (key, entry, comment) in enumerate(zip(keys, entries, comments, strict=True)):
            spec = specs.get(key)
            if spec is None:
                raise ApplicationError(
                    f"Batch {locked.number}'s template has no specification {key[:40]!r}.",
                    code="unknown_specification",
                    extra={"result": index},
                )
            if late and spec.timing != SpecificationTiming.LATE:
                raise ConflictError(
                    f"{spec.name} was due before release; batch {locked.number} is already "
                    "certified.",
                    code="batch_decided",
                )
            number = parse_decimal(entry.value, field=spec.name)
            results.append(
                TestResult(
                    batch=locked,
                    specification=spec,
                    value=number,
                    passed=spec.within(number),
                    late=late,
                    comment=comment,
                    created_by=actor,
                )
            )
        _refuse_recorded(locked, results)
        # The batch row is locked and none of these has a result, so only this transaction
        # adds them: the unique constraint is the last guard, and its error aborts the whole
        # (refused) transaction.
        create_with_history(results)
        events = [
            audit_event_build(
                event_type=BatchEvent.RESULT_RECORDED,
                actor=actor,
                target=result,
                reason=reason,
                site_code=locked.site.code,
                extra={
                    "batch": locked.number,
                    "specification": result.specification.key,
                    "value": format(result.value, "f"),
                    "passed": result.passed,
                    "late": late,
                },
            )
            for result in results
        ]
        audit_events_append(events)
        for result in results:
            if result.passed:
                continue
            BatchSignal.objects.create(
                kind=SignalKind.LATE_RESULT_FAILED if late else SignalKind.RESULT_FAILED,
                batch=locked,
                detail={
                    "specification": result.specification.key,
                    "value": format(result.value, "f"),
                },
            )
            if late:
                _escalate_late_failure(locked, result, actor)
        # Imported here: the comparability services build on this module's parsers.
        from batches.comparability.services import results_recorded

        results_recorded(locked)
    return results


def _refuse_recorded(batch: Batch, results: list[TestResult]) -> None:
    recorded = set(
        TestResult.objects.filter(
            batch=batch, specification__in=[result.specification for result in results]
        ).values_list("specification_id", flat=True)
    )
    for result in results:
        if result.specification_id in recorded:
            raise ConflictError(
                f"{result.specification.name} already has a result on {batch.number}; results "
                "are never overwritten (raise a deviation to retest).",
                code="result_exists",
            )


def _escalate_late_failure(batch: Batch, result: TestResult, actor: User) -> None:
    spec = result.specification
    audit_event_record(
        event_type=BatchEvent.LATE_RESULT_FAILED,
        actor=actor,
        target=batch,
        site_code=batch.site.code,
        extra={"specification": spec.key, "value": format(result.value, "f")},
    )
    notify(
        recipients=[*_qps(), *site_leads(batch.site)],
        subject=f"URGENT {batch.number}: late result failed — {spec.name} "
        f"{result.value_label} outside {spec.limits_label}",
        body=f"Batch {batch.number} was certified before this result. Contact the treating "
        "clinician and raise a deviation now.",
        link=f"{_batch_url(batch)}#result-{spec.key}",
        severity="block",
    )
    _emit(
        BatchWebhook.LATE_RESULT_FAILED,
        batch,
        specification=spec.key,
        name=spec.name,
        value=format(result.value, "f"),
        unit=spec.unit,
        limits=spec.limits_label,
    )


#
# The QP's decision
#


def _require_qp(actor: User) -> None:
    permissions.require(
        actor, Capability.CERTIFY_BATCH, "Only a Qualified Person certifies or rejects batches."
    )


def _lock_for_decision(batch: Batch, action: BatchAction) -> Batch:
    locked = _lock_batch(batch)
    sources, _target = ACTION_TRANSITIONS[action]
    if locked.status not in sources:
        decided = locked.status not in (BatchStatus.IN_PROGRESS, BatchStatus.COMPLETED)
        raise TransitionNotAllowedError(
            f"Batch {locked.number} is {locked.get_status_display().lower()}; "
            f"“{action.label}” is not possible now.",
            code="batch_already_decided" if decided else "batch_not_completed",
        )
    return locked


def batch_certify(
    *,
    actor: User,
    batch: Batch,
    credentials: SignatureCredentials,
    reason: str,
    justification: str = "",
    remote: bool = False,
    location: str = "",
    concession: bool = False,
    clinician_request: str = "",
) -> Certification:
    """The QP certifies a completed batch with the "QP certified" signature (password and
    TOTP). Every gate is evaluated now: a block refuses (409 `gates_blocking`, the findings in
    `extra`), a warning needs a written justification. With `concession`, a failed registered
    specification may be certified over — only with the clinician's recorded request and the
    QP's justification (BR-08) — and the batch is "certified under concession". The QP must
    be qualified for the QP's curriculum at the batch's site (TR-02).
    """
    _require_qp(actor)
    verdict = user_is_qualified(actor, batch.site, Role.QP)
    if not verdict:
        raise PermissionRefusedError(
            verdict.message(), code="not_qualified", extra={"missing": verdict.items}
        )
    reason = require_reason(reason)
    justification = parse_text(
        justification, field="Justification", limit=JUSTIFICATION_MAX, required=False
    )
    clinician_request = parse_text(
        clinician_request, field="Clinician's request", limit=JUSTIFICATION_MAX, required=False
    )
    location = parse_text(location, field="Location", limit=LOCATION_MAX, required=False)
    if remote and not location:
        raise ApplicationError(
            "Say where you are when certifying remotely (BR-07).", code="location_required"
        )
    action = BatchAction.CERTIFY_UNDER_CONCESSION if concession else BatchAction.CERTIFY
    with signing_transaction(), audit_context(reason=reason, user=actor):
        locked = _lock_for_decision(batch, action)
        report = batch_gate_report(locked)
        _check_report(report, concession, justification, clinician_request)
        decision = Decision.CERTIFIED_UNDER_CONCESSION if concession else Decision.CERTIFIED
        certification = _decide(
            locked,
            actor,
            decision=decision,
            report=report,
            justification=justification,
            clinician_request=clinician_request,
            remote=bool(remote),
            location=location,
        )
        certification.signature = sign(
            signer=actor,
            credentials=credentials,
            record=certification,
            meaning=SignatureMeaning.QP_CERTIFIED,
            reason=reason,
            site_code=locked.site.code,
        )
        certification.save(update_fields=["signature", "updated_at"])
        event = BatchEvent.CERTIFIED_UNDER_CONCESSION if concession else BatchEvent.CERTIFIED
        audit_event_record(
            event_type=event,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=locked.site.code,
            signature=certification.signature,
            extra={
                "old": BatchStatus.COMPLETED,
                "new": locked.status,
                "remote": certification.remote,
                "location": certification.location,
                "findings": [f["code"] for f in certification.gate_findings],
            },
        )
        _emit(
            BatchWebhook.CERTIFIED,
            locked,
            decision=certification.decision,
            qp=actor.printed_name,
            decided_at=locked.decided_at,
            remote=certification.remote,
            findings=certification.gate_findings,
        )
    return certification


def _check_report(
    report: GateReport, concession: bool, justification: str, clinician_request: str
) -> None:
    blocks = report.blocks
    if concession:
        if not any(f.code in batch_gates.CONCESSION_CODES for f in blocks):
            raise ConflictError(
                "A concession is only for a failed registered specification; this batch has "
                "none. Certify it normally.",
                code="concession_not_applicable",
            )
        if not clinician_request or not justification:
            raise ApplicationError(
                "A concession needs the clinician's recorded request and your justification.",
                code="concession_incomplete",
            )
        blocks = tuple(f for f in blocks if f.code not in batch_gates.CONCESSION_CODES)
    if blocks:
        raise ConflictError(
            f"{len(blocks)} finding(s) block certification: "
            + "; ".join(f.message for f in blocks),
            code="gates_blocking",
            extra={"findings": [f.as_dict() for f in report.findings]},
        )
    if report.warnings and not justification:
        raise ApplicationError(
            f"{len(report.warnings)} warning(s) need a written justification: "
            + "; ".join(f.message for f in report.warnings),
            code="justification_required",
            extra={"findings": [f.as_dict() for f in report.findings]},
        )


def _decide(
    batch: Batch,
    actor: User,
    *,
    decision: Decision,
    report: GateReport,
    justification: str = "",
    clinician_request: str = "",
    remote: bool = False,
    location: str = "",
) -> Certification:
    dossier = content_hash(batch)
    # No savepoint: the batch row is locked, so a second decision is refused before it gets
    # here; should the one-per-batch constraint still fire, the whole decision rolls back.
    try:
        with transaction.atomic(savepoint=False):
            certification = Certification.objects.create(
                batch=batch,
                decision=decision,
                qp=actor,
                remote=remote,
                location=location,
                justification=justification,
                clinician_request=clinician_request,
                gate_findings=report.snapshot(),
                dossier_sha256=dossier,
                created_by=actor,
            )
    except IntegrityError:  # another QP's decision won the race
        raise TransitionNotAllowedError(
            f"Batch {batch.number} has just been decided by someone else.",
            code="batch_already_decided",
        ) from None
    batch.status = DECISION_STATUS[decision]
    batch.decided_at = timezone.now()
    batch.save(update_fields=["status", "decided_at", "updated_at"])
    certificate_queue(certification=certification)
    return certification


def batch_reject(
    *, actor: User, batch: Batch, credentials: SignatureCredentials, reason: str
) -> Certification:
    """The QP rejects a batch in progress or awaiting certification, with a reason and the
    "rejected" signature. Final."""
    _require_qp(actor)
    reason = require_reason(reason)
    with signing_transaction(), audit_context(reason=reason, user=actor):
        locked = _lock_for_decision(batch, BatchAction.REJECT)
        old = locked.status
        certification = _decide(
            locked,
            actor,
            decision=Decision.REJECTED,
            report=batch_gate_report(locked),
            justification=reason,
        )
        certification.signature = sign(
            signer=actor,
            credentials=credentials,
            record=certification,
            meaning=SignatureMeaning.REJECTED,
            reason=reason,
            site_code=locked.site.code,
        )
        certification.save(update_fields=["signature", "updated_at"])
        audit_event_record(
            event_type=BatchEvent.REJECTED,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=locked.site.code,
            signature=certification.signature,
            extra={"old": old, "new": BatchStatus.REJECTED},
        )
        _emit(
            BatchWebhook.REJECTED,
            locked,
            decision=certification.decision,
            qp=actor.printed_name,
            decided_at=locked.decided_at,
            reason=reason,
        )
    return certification


#
# Supply (BR-13, BR-14)
#


def _coi_mismatch(batch: Batch, actor: User, given: str) -> ConflictError:
    """Record a chain-of-identity mismatch in its own transaction (it survives the refusal)."""
    with transaction.atomic(), audit_context(reason="chain-of-identity check", user=actor):
        BatchSignal.objects.create(
            kind=SignalKind.COI_MISMATCH, batch=batch, detail={"given": given[:COI_MAX]}
        )
        audit_event_record(
            event_type=BatchEvent.COI_MISMATCH,
            actor=actor,
            target=batch,
            site_code=batch.site.code,
            extra={"given": given[:COI_MAX]},
        )
        notify(
            recipients=[*site_leads(batch.site)],
            subject=f"{batch.number}: chain-of-identity mismatch at hand-over",
            body="The reference given does not match the batch. Nothing was supplied.",
            link=_batch_url(batch),
            severity="block",
        )
    return ConflictError(
        f"The chain-of-identity reference does not match batch {batch.number}: not supplied. "
        "The mismatch is recorded.",
        code="coi_mismatch",
    )


def supply_record(
    *,
    actor: User,
    batch: Batch,
    coi_reference: str,
    supplied_to: str,
    quantity: Any,
    unit: str,
    supplied_at: dt.datetime | None = None,
    reason: str = "",
) -> SupplyRecord:
    """Hand a certified batch over: the chain-of-identity reference is checked again; a
    mismatch is refused and recorded (BR-13, BR-14)."""
    _require_recording_at(actor, batch.site_id)
    supplied_to = parse_text(supplied_to, field="Supplied to", limit=200)
    unit = parse_text(unit, field="Unit", limit=UNIT_MAX)
    amount = parse_decimal(quantity, field="Quantity")
    if amount <= 0:
        raise ApplicationError("Quantity must be above zero.", code="invalid_value")
    when = supplied_at or timezone.now()
    if when > timezone.now() + dt.timedelta(minutes=5):
        raise ApplicationError("Supply cannot be in the future.", code="invalid_time")
    reason = (reason or "").strip() or "supplied"
    current = Batch.objects.get(pk=batch.pk)
    if (coi_reference or "").strip() != current.coi_reference:
        raise _coi_mismatch(current, actor, str(coi_reference or ""))
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock_batch(batch)
        if locked.status not in (BatchStatus.CERTIFIED, BatchStatus.CERTIFIED_UNDER_CONCESSION):
            raise ConflictError(
                f"Batch {locked.number} is {locked.get_status_display().lower()}: only a "
                "certified batch may be supplied (BR-02).",
                code="batch_not_certified",
            )
        if locked.expires_at is not None and locked.expires_at <= when:
            raise ConflictError(f"Batch {locked.number} has expired.", code="batch_expired")
        supply = SupplyRecord.objects.create(
            batch=locked,
            supplied_to=supplied_to,
            supplied_at=when,
            quantity=amount,
            unit=unit,
            created_by=actor,
        )
        audit_event_record(
            event_type=BatchEvent.SUPPLIED,
            actor=actor,
            target=supply,
            reason=reason,
            site_code=locked.site.code,
            extra={"batch": locked.number, "to": supplied_to, "quantity": format(amount, "f")},
        )
    return supply


def administration_confirm(
    *,
    actor: User,
    supply: SupplyRecord,
    coi_reference: str,
    administered_at: dt.datetime | None = None,
    adverse_reaction: str = "",
    reason: str = "",
) -> SupplyRecord:
    """Confirm the product was given to the patient the chain-of-identity reference names."""
    batch = supply.batch
    _require_recording_at(actor, batch.site_id)
    adverse_reaction = parse_text(
        adverse_reaction, field="Adverse reaction", limit=INSTRUCTION_MAX, required=False
    )
    if (coi_reference or "").strip() != batch.coi_reference:
        raise _coi_mismatch(batch, actor, str(coi_reference or ""))
    when = administered_at or timezone.now()
    reason = (reason or "").strip() or "administration confirmed"
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = SupplyRecord.objects.select_for_update().get(pk=supply.pk)
        if locked.administered_at is not None:
            raise ConflictError("Administration is already confirmed.", code="already_confirmed")
        if when < locked.supplied_at:
            raise ApplicationError("Administration cannot precede supply.", code="invalid_time")
        locked.administered_at = when
        locked.administered_confirmed_by = actor
        locked.adverse_reaction = adverse_reaction
        locked.save(
            update_fields=[
                "administered_at",
                "administered_confirmed_by",
                "adverse_reaction",
                "updated_at",
            ]
        )
        audit_event_record(
            event_type=BatchEvent.ADMINISTERED,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=batch.site.code,
            extra={"batch": batch.number, "adverse_reaction": bool(adverse_reaction)},
        )
    return locked
