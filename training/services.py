"""Every write to training: check the role and the state, sign where a signature is due, write
the audit trail (design §3; TR-01…TR-07, 21 CFR 11.10(i)-(j)).

Who may do what:
- register procedures and issue their versions (signed "approved"): Control Site QA;
- define training items and curricula, assign training, assess a trainee (signed "reviewed")
  and enter a completed paper record (signed "verified"): Control Site QA and trainers — never
  for themselves;
- acknowledge an item as read and understood (signed "acknowledged"): the trainee, for
  themselves only.

Assignments follow the people: `assignments_reconcile` gives a person an open assignment for
every item their roles need at their sites that they do not hold, and withdraws those no longer
needed. It runs when someone joins a site or is given a role (the receivers in `apps.py`), when
a curriculum changes and when a procedure version is issued.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

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
from controlsite.signatures.services import (
    SignatureCredentials,
    SignatureRefusedError,
    sign,
    signing_transaction,
)
from sites.choices import SiteRole
from sites.models import Site
from sites.selectors import live_memberships, site_leads
from sites.services import evidence_check
from training import selectors
from training.choices import (
    ACKNOWLEDGEABLE_VERSIONS,
    SELF_ACKNOWLEDGED_KINDS,
    TRAINER_ASSESSED_KINDS,
    AssessmentResult,
    AssignmentCause,
    AssignmentStatus,
    CurriculumRole,
    ItemKind,
    RecordMethod,
    VersionStatus,
)
from training.events import TrainingEvent
from training.models import (
    NUMBER_MAX,
    TEXT_MAX,
    TITLE_MAX,
    Assignment,
    Curriculum,
    Procedure,
    ProcedureVersion,
    Requirement,
    TrainingItem,
    TrainingRecord,
)

REMINDER_DAYS = 7
RENEWAL_DAYS = 30

#
# Shared checks
#


def _require_qa(actor: User, what: str) -> None:
    if not permissions.user_can(actor, Capability.MANAGE_QUALITY_RECORDS):
        raise PermissionRefusedError(f"Only Control Site QA may {what}.", code="not_permitted")


def _require_trainer(actor: User, what: str) -> None:
    if not permissions.user_can(actor, Capability.MANAGE_TRAINING):
        raise PermissionRefusedError(
            f"Only Control Site QA or a trainer may {what}.", code="not_permitted"
        )


def _text(value: Any, *, field: str, limit: int, required: bool = True) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ApplicationError(f"{field} must be text.", code="invalid")
    value = value.strip()
    if required and not value:
        raise ApplicationError(f"{field} is required.", code="required")
    if len(value) > limit:
        raise ApplicationError(f"{field} is longer than {limit} characters.", code="too_long")
    return str(value)


def _today() -> dt.date:
    return timezone.localdate()


def _start_of(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def _url(name: str, *args: Any) -> str:
    return reverse(f"training:{name}", args=args)


def _versions(item: TrainingItem) -> Any:
    """The versions of an SOP item's procedure."""
    return ProcedureVersion.objects.filter(procedure_id=item.procedure_id or 0)


def _due_on(item: TrainingItem, version: ProcedureVersion | None) -> dt.date:
    """When an assignment falls due: on a version's effective date when it comes into force
    later, else the item's days allowed from today."""
    today = _today()
    if version is not None and version.effective_on > today:
        return version.effective_on
    return today + dt.timedelta(days=item.due_days)


def _expiry(item: TrainingItem, completed_at: dt.datetime) -> dt.datetime | None:
    if not item.validity_months:
        return None
    return selectors.add_months(completed_at, item.validity_months)


#
# Procedures (TR-03)
#


def procedure_create(
    *, actor: User, number: str, title: str, reason: str, due_days: int = 30
) -> Procedure:
    """Register a controlled procedure, with its read-and-understood training item."""
    _require_qa(actor, "register procedures")
    reason = require_reason(reason)
    number = _text(number, field="Number", limit=NUMBER_MAX).upper()
    title = _text(title, field="Title", limit=TITLE_MAX)
    due_days = _days(due_days)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        if (
            Procedure.objects.filter(number__iexact=number).exists()
            or TrainingItem.objects.filter(code__iexact=number).exists()
        ):
            raise ConflictError(f"{number} is already registered.", code="duplicate_number")
        procedure = Procedure.objects.create(number=number, title=title, created_by=actor)
        TrainingItem.objects.create(
            code=number,
            title=f"{title}: read and understood",
            kind=ItemKind.SOP,
            procedure=procedure,
            due_days=due_days,
            created_by=actor,
        )
        audit_event_record(
            event_type=TrainingEvent.PROCEDURE_CREATED,
            actor=actor,
            target=procedure,
            reason=reason,
            extra={"number": number, "title": title},
        )
    return procedure


def _days(value: Any) -> int:
    try:
        days = int(value)
    except (TypeError, ValueError) as exc:
        raise ApplicationError("Days allowed must be a whole number.", code="invalid") from exc
    if not 0 <= days <= 365:
        raise ApplicationError("Days allowed must be between 0 and 365.", code="invalid")
    return days


def procedure_version_issue(
    *,
    actor: User,
    procedure: Procedure,
    effective_on: dt.date,
    change_summary: str,
    upload: UploadedFile[bytes],
    credentials: SignatureCredentials,
    reason: str = "",
) -> ProcedureVersion:
    """QA issues the next version of a procedure, signed "approved". On its effective date it
    comes into force and the version before is superseded; everyone whose curriculum needs the
    procedure is assigned to read it, due by that date (TR-03)."""
    _require_qa(actor, "issue procedure versions")
    change_summary = _text(change_summary, field="What changed", limit=TEXT_MAX)
    if not isinstance(effective_on, dt.date):
        raise ApplicationError("Give the effective date.", code="invalid")
    if effective_on < _today():
        raise ApplicationError(
            "The effective date cannot be in the past.", code="effective_in_past"
        )
    if upload is None:
        raise ApplicationError("Attach the procedure's file.", code="file_required")
    sha = evidence_check(upload)
    stored: list[str] = []  # the file written, removed again if nothing is committed
    try:
        with signing_transaction(), audit_context(reason=reason or "version issued", user=actor):
            locked = Procedure.objects.select_for_update().get(pk=procedure.pk)
            pending = locked.versions.filter(status=VersionStatus.ISSUED).first()
            if pending is not None:
                raise ConflictError(
                    f"{pending} is issued and not yet in force: withdraw or wait for it first.",
                    code="version_pending",
                )
            last = locked.versions.order_by("-number").first()
            version = ProcedureVersion(
                procedure=locked,
                number=(last.number + 1) if last else 1,
                effective_on=effective_on,
                change_summary=change_summary,
                file_sha256=sha,
                created_by=actor,
            )
            version.file.save(upload.name or "procedure", upload, save=False)
            stored.append(version.file.name or "")
            version.save()
            version.approval_signature = sign(
                signer=actor,
                credentials=credentials,
                record=version,
                meaning=SignatureMeaning.APPROVED,
                reason=(reason or f"{version} issued").strip(),
            )
            version.save(update_fields=["approval_signature", "updated_at"])
            audit_event_record(
                event_type=TrainingEvent.VERSION_ISSUED,
                actor=actor,
                target=version,
                reason=reason or f"{version} issued",
                signature=version.approval_signature,
                extra={"effective_on": effective_on, "sha256": sha},
            )
            if effective_on <= _today():
                _bring_into_force(version, actor=actor)
            _assign_version(version, actor=actor)
    except BaseException:
        storage = ProcedureVersion._meta.get_field("file").storage
        for name in filter(None, stored):
            storage.delete(name)
        raise
    return version


def _bring_into_force(version: ProcedureVersion, *, actor: User | None) -> None:
    now = timezone.now()
    for previous in ProcedureVersion.objects.select_for_update().filter(
        procedure_id=version.procedure_id, status=VersionStatus.EFFECTIVE
    ):
        previous.status = VersionStatus.SUPERSEDED
        previous.superseded_at = now
        previous.save(update_fields=["status", "superseded_at", "updated_at"])
        audit_event_record(
            event_type=TrainingEvent.VERSION_SUPERSEDED,
            actor=actor,
            target=previous,
            reason=f"superseded by v{version.number}",
        )
    version.status = VersionStatus.EFFECTIVE
    version.effective_at = now
    version.save(update_fields=["status", "effective_at", "updated_at"])
    audit_event_record(
        event_type=TrainingEvent.VERSION_EFFECTIVE,
        actor=actor,
        target=version,
        reason=f"in force from {version.effective_on:%d %b %Y}",
    )


def procedure_versions_bring_into_force(*, today: dt.date | None = None) -> int:
    """Bring every issued version whose effective date has come into force (daily task)."""
    today = today or _today()
    count = 0
    for pk in ProcedureVersion.objects.filter(
        status=VersionStatus.ISSUED, effective_on__lte=today
    ).values_list("pk", flat=True):
        with transaction.atomic(), audit_context(reason="effective date reached"):
            version = ProcedureVersion.objects.select_for_update().get(pk=pk)
            if version.status != VersionStatus.ISSUED:
                continue
            _bring_into_force(version, actor=None)
            count += 1
    return count


def _assign_version(version: ProcedureVersion, *, actor: User | None) -> None:
    """Assign the new version to everyone whose curriculum needs the procedure now — only
    the roles and sites it affects (TR-03)."""
    item = TrainingItem.objects.get(procedure_id=version.procedure_id)
    if not item.active:
        return
    due_on = _due_on(item, version)
    people: dict[int, tuple[User, Site | None]] = {}
    for requirement in Requirement.objects.filter(
        item=item, removed_at__isnull=True
    ).select_related("curriculum__site"):
        curriculum = requirement.curriculum
        for user in selectors.people_holding_role(curriculum.role, curriculum.site):
            if user.pk not in people or people[user.pk][1] is None:
                people[user.pk] = (user, curriculum.site)
    read = set(
        TrainingRecord.objects.filter(
            item=item,
            user_id__in=list(people),
            procedure_version__number__gte=version.number,
        )
        .exclude(result=AssessmentResult.NOT_YET_COMPETENT)
        .values_list("user_id", flat=True)
    )
    for user, site in people.values():
        if user.pk in read:
            continue
        _assignment_open(
            user=user,
            item=item,
            version=version,
            site=site,
            cause=AssignmentCause.NEW_VERSION,
            due_on=due_on,
            actor=actor,
        )


#
# Items and curricula (TR-01, TR-05)
#


def item_create(
    *,
    actor: User,
    code: str,
    title: str,
    kind: str,
    reason: str,
    description: str = "",
    validity_months: int | None = None,
    due_days: int = 30,
) -> TrainingItem:
    """Define a training item. An SOP's item comes with its procedure; the accountability item
    exists once (21 CFR 11.10(j))."""
    _require_trainer(actor, "define training items")
    reason = require_reason(reason)
    if kind not in ItemKind.values:
        raise ApplicationError(f"Unknown kind {kind!r}.", code="invalid_kind")
    if kind == ItemKind.SOP:
        raise ApplicationError(
            "An SOP's training item is created with the procedure: register the procedure.",
            code="sop_item_from_procedure",
        )
    code = _text(code, field="Code", limit=NUMBER_MAX).upper()
    title = _text(title, field="Title", limit=TITLE_MAX)
    description = _text(description, field="Description", limit=TEXT_MAX, required=False)
    if kind == ItemKind.REFRESHER and validity_months is None:
        validity_months = int(settings.TRAINING_REFRESHER_MONTHS)
    validity_months = _months(validity_months)
    due_days = _days(due_days)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        if TrainingItem.objects.filter(code__iexact=code).exists():
            raise ConflictError(f"{code} already exists.", code="duplicate_code")
        if (
            kind == ItemKind.ACCOUNTABILITY
            and TrainingItem.objects.filter(kind=ItemKind.ACCOUNTABILITY).exists()
        ):
            raise ConflictError(
                "There is already an accountability item.", code="accountability_exists"
            )
        item = TrainingItem.objects.create(
            code=code,
            title=title,
            kind=kind,
            description=description,
            validity_months=validity_months,
            due_days=due_days,
            created_by=actor,
        )
        audit_event_record(
            event_type=TrainingEvent.ITEM_CREATED,
            actor=actor,
            target=item,
            reason=reason,
            extra={"code": code, "kind": kind, "validity_months": validity_months},
        )
    return item


def _months(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        months = int(value)
    except (TypeError, ValueError) as exc:
        raise ApplicationError(
            "Validity must be a whole number of months.", code="invalid"
        ) from exc
    if not 1 <= months <= 120:
        raise ApplicationError("Validity must be between 1 and 120 months.", code="invalid")
    return months


ITEM_EDITABLE = ("title", "description", "validity_months", "due_days", "active")


def item_update(
    *, actor: User, item: TrainingItem, reason: str, changes: dict[str, Any]
) -> TrainingItem:
    """Change an item's title, description, validity, days allowed, or retire it. A new
    validity applies to records completed from now on; records keep the expiry they had."""
    _require_trainer(actor, "change training items")
    reason = require_reason(reason)
    unknown = sorted(set(changes) - set(ITEM_EDITABLE))
    if unknown:
        raise ApplicationError(f"{', '.join(unknown)} cannot be changed.", code="not_editable")
    cleaned: dict[str, Any] = {}
    if "title" in changes:
        cleaned["title"] = _text(changes["title"], field="Title", limit=TITLE_MAX)
    if "description" in changes:
        cleaned["description"] = _text(
            changes["description"], field="Description", limit=TEXT_MAX, required=False
        )
    if "validity_months" in changes:
        cleaned["validity_months"] = _months(changes["validity_months"])
    if "due_days" in changes:
        cleaned["due_days"] = _days(changes["due_days"])
    if "active" in changes:
        if not isinstance(changes["active"], bool):
            raise ApplicationError("active must be true or false.", code="invalid")
        cleaned["active"] = changes["active"]
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = TrainingItem.objects.select_for_update().get(pk=item.pk)
        if locked.kind == ItemKind.ACCOUNTABILITY and cleaned.get("active") is False:
            raise ConflictError(
                "The accountability item cannot be retired: nobody could sign without it.",
                code="accountability_required",
            )
        old = {field: getattr(locked, field) for field in cleaned}
        changed = {k: v for k, v in cleaned.items() if old[k] != v}
        if not changed:
            return locked
        for field, value in changed.items():
            setattr(locked, field, value)
        locked.save(update_fields=[*changed, "updated_at"])
        audit_event_record(
            event_type=TrainingEvent.ITEM_CHANGED,
            actor=actor,
            target=locked,
            reason=reason,
            extra={"old": {k: old[k] for k in changed}, "new": changed},
        )
        if changed.get("active") is False:
            for requirement in Requirement.objects.filter(item=locked, removed_at__isnull=True):
                _requirement_remove(requirement, actor=actor, reason=reason)
            for assignment in Assignment.objects.filter(item=locked, status=AssignmentStatus.OPEN):
                _assignment_withdraw(assignment, actor=actor, reason="item retired")
    return locked


def curriculum_create(
    *, actor: User, role: str, site: Site | None, title: str, reason: str
) -> Curriculum:
    """A curriculum for a role at one site, or at every site (`site` None)."""
    _require_trainer(actor, "define curricula")
    reason = require_reason(reason)
    if role not in CurriculumRole.values:
        raise ApplicationError(f"No curriculum is kept for role {role!r}.", code="invalid_role")
    title = _text(title, field="Title", limit=TITLE_MAX)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        if Curriculum.objects.filter(role=role, site=site).exists():
            where = site.code if site else "every site"
            raise ConflictError(
                f"There is already a curriculum for {CurriculumRole(role).label.lower()} at "
                f"{where}.",
                code="duplicate_curriculum",
            )
        curriculum = Curriculum.objects.create(role=role, site=site, title=title, created_by=actor)
        audit_event_record(
            event_type=TrainingEvent.CURRICULUM_CREATED,
            actor=actor,
            target=curriculum,
            reason=reason,
            site_code=site.code if site else "",
            extra={"role": role, "site": site.code if site else None},
        )
    return curriculum


def requirement_add(
    *, actor: User, curriculum: Curriculum, item: TrainingItem, reason: str
) -> Requirement:
    """Add an item to a curriculum; everyone holding the role there is assigned it."""
    _require_trainer(actor, "change curricula")
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = Curriculum.objects.select_for_update().get(pk=curriculum.pk)
        if not item.active:
            raise ConflictError(f"{item.code} is retired.", code="item_retired")
        if locked.requirements.filter(item=item, removed_at__isnull=True).exists():
            raise ConflictError(f"{item.code} is already in {locked}.", code="already_required")
        requirement = Requirement.objects.create(curriculum=locked, item=item, created_by=actor)
        audit_event_record(
            event_type=TrainingEvent.REQUIREMENT_ADDED,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=locked.site.code if locked.site is not None else "",
            extra={"item": item.code},
        )
        for user in selectors.people_holding_role(locked.role, locked.site):
            assignments_reconcile(user, cause=AssignmentCause.CURRICULUM, actor=actor)
    return requirement


def requirement_remove(*, actor: User, requirement: Requirement, reason: str) -> None:
    _require_trainer(actor, "change curricula")
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = Requirement.objects.select_for_update().get(pk=requirement.pk)
        if locked.removed_at is not None:
            raise ConflictError("This item was already removed.", code="already_removed")
        _requirement_remove(locked, actor=actor, reason=reason)


def _requirement_remove(requirement: Requirement, *, actor: User, reason: str) -> None:
    requirement.removed_at = timezone.now()
    requirement.removed_by = actor
    requirement.save(update_fields=["removed_at", "removed_by", "updated_at"])
    curriculum = requirement.curriculum
    audit_event_record(
        event_type=TrainingEvent.REQUIREMENT_REMOVED,
        actor=actor,
        target=curriculum,
        reason=reason,
        site_code=curriculum.site.code if curriculum.site is not None else "",
        extra={"item": requirement.item.code},
    )
    for user in selectors.people_holding_role(curriculum.role, curriculum.site):
        assignments_reconcile(user, cause=AssignmentCause.CURRICULUM, actor=actor)


#
# Assignments (TR-03)
#


def _assignment_open(
    *,
    user: User,
    item: TrainingItem,
    version: ProcedureVersion | None,
    site: Site | None,
    cause: str,
    due_on: dt.date,
    actor: User | None,
) -> Assignment | None:
    """Open an assignment unless an equal one is open; an open one for an older version of
    the procedure is withdrawn first. Never two open for one item (a DB constraint)."""
    current = (
        Assignment.objects.select_for_update(of=("self",))
        .filter(user=user, item=item, status=AssignmentStatus.OPEN)
        .select_related("procedure_version")
        .first()
    )
    if current is not None:
        older = (
            version is not None
            and current.procedure_version is not None
            and current.procedure_version.number < version.number
        )
        if not older:
            return None
        _assignment_withdraw(current, actor=actor, reason=f"replaced by {version}")
    assignment = Assignment.objects.create(
        user=user,
        item=item,
        procedure_version=version,
        site=site,
        cause=cause,
        due_on=due_on,
        created_by=actor,
    )
    audit_event_record(
        event_type=TrainingEvent.ASSIGNED,
        actor=actor,
        target=assignment,
        reason=str(AssignmentCause(cause).label),
        site_code=site.code if site else "",
        extra={
            "user": user.get_username(),
            "item": item.code,
            "version": version.number if version else None,
            "due_on": due_on,
        },
    )
    return assignment


def _assignment_withdraw(assignment: Assignment, *, actor: User | None, reason: str) -> None:
    assignment.status = AssignmentStatus.WITHDRAWN
    assignment.closed_at = timezone.now()
    assignment.save(update_fields=["status", "closed_at", "updated_at"])
    audit_event_record(
        event_type=TrainingEvent.ASSIGNMENT_WITHDRAWN,
        actor=actor,
        target=assignment,
        reason=reason,
        extra={"user": assignment.user.get_username(), "item": assignment.item.code},
    )


def assignments_reconcile(user: User, *, cause: str, actor: User | None = None) -> list[Assignment]:
    """Give `user` an open assignment for each item their roles need now that they do not
    hold, and withdraw open ones no longer needed (a trainer's own assignments stay).
    Idempotent: a second call changes nothing."""
    permissions.forget_roles(user)
    needed, held = selectors.needs_now(user) if user.is_active else ({}, {})
    created: list[Assignment] = []
    with transaction.atomic():
        for assignment in (
            Assignment.objects.select_for_update()
            .filter(user=user, status=AssignmentStatus.OPEN)
            .exclude(cause=AssignmentCause.MANUAL)
        ):
            if assignment.item_id not in needed:
                _assignment_withdraw(assignment, actor=actor, reason="no longer required")
        if not needed:
            return created
        sites = Site.objects.in_bulk({site_id for _, site_id in needed.values() if site_id})
        for pk, (item, site_id) in needed.items():
            if held.get(pk):
                continue
            version = None
            if item.procedure_id:
                version = (
                    _versions(item)
                    .filter(status__in=ACKNOWLEDGEABLE_VERSIONS)
                    .order_by("-number")
                    .first()
                )
                if version is None:
                    continue
            due_on = _due_on(item, version)
            opened = _assignment_open(
                user=user,
                item=item,
                version=version,
                site=sites.get(site_id) if site_id else None,
                cause=cause,
                due_on=due_on,
                actor=actor,
            )
            if opened is not None:
                created.append(opened)
    return created


def assignment_create(
    *,
    actor: User,
    user: User,
    item: TrainingItem,
    due_on: dt.date,
    reason: str,
    site: Site | None = None,
) -> Assignment:
    """A trainer assigns an item by hand (retraining after a deviation, say)."""
    _require_trainer(actor, "assign training")
    reason = require_reason(reason)
    day: object = due_on
    if not isinstance(day, dt.date) or day < _today():
        raise ApplicationError("The due date cannot be in the past.", code="due_in_past")
    if not item.active:
        raise ConflictError(f"{item.code} is retired.", code="item_retired")
    if not user.is_active:
        raise ConflictError(f"{user} is not an active user.", code="user_inactive")
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        version = None
        if item.procedure_id:
            version = (
                _versions(item)
                .filter(status__in=ACKNOWLEDGEABLE_VERSIONS)
                .order_by("-number")
                .first()
            )
            if version is None:
                raise ConflictError(f"{item.procedure} has no version to read.", code="no_version")
        try:
            with transaction.atomic():
                assignment = _assignment_open(
                    user=user,
                    item=item,
                    version=version,
                    site=site,
                    cause=AssignmentCause.MANUAL,
                    due_on=due_on,
                    actor=actor,
                )
        except IntegrityError:  # pragma: no cover - a concurrent assignment won the race
            assignment = None
        if assignment is None:
            raise ConflictError(f"{user} already has {item.code} open.", code="already_assigned")
    return assignment


#
# Records (TR-01, TR-05, TR-07)
#


def _version_for(item: TrainingItem, version: ProcedureVersion | None) -> ProcedureVersion | None:
    if item.kind != ItemKind.SOP:
        if version is not None:
            raise ApplicationError(
                f"{item.code} is not a procedure: give no version.", code="version_not_expected"
            )
        return None
    if version is None:
        raise ApplicationError(
            f"Say which version of {item.procedure} was read.", code="version_required"
        )
    if version.procedure_id != item.procedure_id:
        raise ApplicationError(
            f"{version} is not a version of {item.procedure}.", code="version_mismatch"
        )
    locked = ProcedureVersion.objects.select_for_update().get(pk=version.pk)
    if locked.status not in ACKNOWLEDGEABLE_VERSIONS:
        raise TransitionNotAllowedError(
            f"{locked} is superseded: read the version in force.", code="version_superseded"
        )
    return locked


def _complete(record: TrainingRecord, *, actor: User) -> None:
    """Close the trainee's open assignment the record satisfies; a failed assessment keeps it
    open, or opens one."""
    open_one = (
        Assignment.objects.select_for_update(of=("self",))
        .filter(user=record.user, item=record.item, status=AssignmentStatus.OPEN)
        .select_related("procedure_version")
        .first()
    )
    if not record.passed:
        if open_one is None:
            _assignment_open(
                user=record.user,
                item=record.item,
                version=record.procedure_version,
                site=None,
                cause=AssignmentCause.FAILED,
                due_on=_today() + dt.timedelta(days=record.item.due_days),
                actor=actor,
            )
        return
    if open_one is None:
        return
    wanted = open_one.procedure_version
    if wanted is not None and (
        record.procedure_version is None or record.procedure_version.number < wanted.number
    ):
        return
    open_one.status = AssignmentStatus.COMPLETED
    open_one.record = record
    open_one.closed_at = timezone.now()
    open_one.save(update_fields=["status", "record", "closed_at", "updated_at"])


def acknowledge(
    *,
    actor: User,
    item: TrainingItem,
    credentials: SignatureCredentials,
    version: ProcedureVersion | None = None,
    reason: str = "",
) -> TrainingRecord:
    """The trainee signs that they have read and understood an item ("acknowledged"). An SOP
    is acknowledged against the version read, which must not be superseded (409)."""
    if item.kind not in SELF_ACKNOWLEDGED_KINDS:
        raise ApplicationError(
            f"{item.code} is completed by a trainer's assessment.", code="assessment_required"
        )
    if not item.active:
        raise ConflictError(f"{item.code} is retired.", code="item_retired")
    reason = (reason or "").strip() or "read and understood"
    item = TrainingItem.objects.get(pk=item.pk)  # as it stands now (validity may change)
    with signing_transaction(), audit_context(reason=reason, user=actor):
        locked_version = _version_for(item, version)
        now = timezone.now()
        record = TrainingRecord.objects.create(
            user=actor,
            item=item,
            procedure_version=locked_version,
            method=RecordMethod.ACKNOWLEDGED,
            completed_at=now,
            expires_at=_expiry(item, now),
            created_by=actor,
        )
        record.signature = sign(
            signer=actor,
            credentials=credentials,
            record=record,
            meaning=SignatureMeaning.ACKNOWLEDGED,
            reason=reason,
        )
        record.save(update_fields=["signature", "updated_at"])
        audit_event_record(
            event_type=TrainingEvent.ACKNOWLEDGED,
            actor=actor,
            target=record,
            reason=reason,
            signature=record.signature,
            extra={"item": item.code, "version": locked_version.number if locked_version else None},
        )
        _complete(record, actor=actor)
    return record


def _require_not_self(actor: User, trainee: User, meaning: str) -> None:
    if actor.pk == trainee.pk:
        raise SignatureRefusedError(
            "A trainer cannot sign their own training record: another trainer must.",
            code="self_assessment",
            signer=actor,
            meaning=meaning,
            target="training.trainingrecord",
        )


def assessment_record(
    *,
    actor: User,
    trainee: User,
    item: TrainingItem,
    result: str,
    credentials: SignatureCredentials,
    notes: str = "",
    reason: str = "",
) -> TrainingRecord:
    """A trainer records a practical assessment with its result, signed "reviewed". Never of
    themselves (422); a result is required (400). "Not yet competent" is recorded and keeps
    the trainee's assignment open (TR-05)."""
    _require_trainer(actor, "assess trainees")
    if result in (None, ""):
        raise ApplicationError("Give the assessment's result.", code="result_required")
    if result not in AssessmentResult.values:
        raise ApplicationError(f"Unknown result {result!r}.", code="invalid_result")
    if item.kind not in TRAINER_ASSESSED_KINDS:
        raise ApplicationError(
            f"{item.code} is acknowledged by the trainee, not assessed.",
            code="acknowledgement_required",
        )
    if not item.active:
        raise ConflictError(f"{item.code} is retired.", code="item_retired")
    notes = _text(notes, field="Notes", limit=TEXT_MAX, required=False)
    reason = (reason or "").strip() or f"{item.code} assessed"
    item = TrainingItem.objects.get(pk=item.pk)  # as it stands now (validity may change)
    with signing_transaction(), audit_context(reason=reason, user=actor):
        _require_not_self(actor, trainee, SignatureMeaning.REVIEWED)
        now = timezone.now()
        passed = result == AssessmentResult.COMPETENT
        record = TrainingRecord.objects.create(
            user=trainee,
            item=item,
            method=RecordMethod.ASSESSED,
            completed_at=now,
            expires_at=_expiry(item, now) if passed else None,
            result=result,
            trainer=actor,
            notes=notes,
            created_by=actor,
        )
        record.signature = sign(
            signer=actor,
            credentials=credentials,
            record=record,
            meaning=SignatureMeaning.REVIEWED,
            reason=reason,
        )
        record.save(update_fields=["signature", "updated_at"])
        audit_event_record(
            event_type=TrainingEvent.ASSESSED,
            actor=actor,
            target=record,
            reason=reason,
            signature=record.signature,
            extra={"trainee": trainee.get_username(), "item": item.code, "result": result},
        )
        _complete(record, actor=actor)
    return record


def record_enter(
    *,
    actor: User,
    trainee: User,
    item: TrainingItem,
    completed_on: dt.date,
    credentials: SignatureCredentials,
    version: ProcedureVersion | None = None,
    notes: str = "",
    reason: str = "",
) -> TrainingRecord:
    """A trainer enters training completed on paper (a classroom session, a record from before
    the system), signed "verified", with the day it was done. Expiry counts from that day."""
    _require_trainer(actor, "enter training records")
    if not isinstance(completed_on, dt.date):
        raise ApplicationError("Give the day the training was completed.", code="invalid")
    if completed_on > _today():
        raise ApplicationError(
            "Training cannot be completed in the future.", code="completed_in_future"
        )
    notes = _text(notes, field="Notes", limit=TEXT_MAX)
    reason = (reason or "").strip() or f"{item.code} entered from paper"
    item = TrainingItem.objects.get(pk=item.pk)  # as it stands now (validity may change)
    with signing_transaction(), audit_context(reason=reason, user=actor):
        _require_not_self(actor, trainee, SignatureMeaning.VERIFIED)
        if version is not None and item.kind == ItemKind.SOP:
            # A paper record may be for a version since superseded: history is entered as it was.
            if version.procedure_id != item.procedure_id:
                raise ApplicationError(
                    f"{version} is not a version of {item.procedure}.", code="version_mismatch"
                )
            locked_version: ProcedureVersion | None = version
        else:
            locked_version = _version_for(item, version)
        completed_at = min(_start_of(completed_on) + dt.timedelta(hours=9), timezone.now())
        record = TrainingRecord.objects.create(
            user=trainee,
            item=item,
            procedure_version=locked_version,
            method=RecordMethod.ENTERED,
            completed_at=completed_at,
            expires_at=_expiry(item, completed_at),
            trainer=actor,
            notes=notes,
            created_by=actor,
        )
        record.signature = sign(
            signer=actor,
            credentials=credentials,
            record=record,
            meaning=SignatureMeaning.VERIFIED,
            reason=reason,
        )
        record.save(update_fields=["signature", "updated_at"])
        audit_event_record(
            event_type=TrainingEvent.ENTERED,
            actor=actor,
            target=record,
            reason=reason,
            signature=record.signature,
            extra={
                "trainee": trainee.get_username(),
                "item": item.code,
                "completed_on": completed_on,
            },
        )
        if record.expires_at is None or record.expires_at > timezone.now():
            _complete(record, actor=actor)
    return record


#
# The daily round: versions into force, reminders, escalation, renewals (TR-03, TR-04)
#


def _escalation_recipients(assignment: Assignment) -> list[User]:
    people: list[User] = [*users_holding(Role.CONTROL_SITE_QA)]
    if assignment.site is not None:
        people.extend(site_leads(assignment.site))
    else:
        sites = live_memberships().filter(user=assignment.user).values("site_id")
        leads = live_memberships().filter(site_id__in=sites, role=SiteRole.SITE_LEAD)
        people.extend(User.objects.filter(is_active=True, pk__in=leads.values("user_id")))
    return [p for p in people if p.pk != assignment.user_id]


def training_round(*, today: dt.date | None = None) -> dict[str, int]:
    """Bring versions into force, remind people of training due within REMINDER_DAYS, escalate
    overdue training once to the site lead and QA, and open renewals RENEWAL_DAYS before a
    record expires. Idempotent within a day."""
    today = today or _today()
    counts = {"in_force": procedure_versions_bring_into_force(today=today)}
    counts["reminded"] = 0
    for assignment in Assignment.objects.filter(
        status=AssignmentStatus.OPEN,
        reminded_at__isnull=True,
        due_on__lte=today + dt.timedelta(days=REMINDER_DAYS),
        due_on__gte=today,
    ).select_related("user", "item"):
        with transaction.atomic(), audit_context(reason="training reminder"):
            notify(
                recipients=[assignment.user],
                subject=f"Training due {assignment.due_on:%d %b %Y}: {assignment.item.title}",
                body="Complete it from your training page before the due date.",
                link=_url("my"),
                severity="info",
            )
            assignment.reminded_at = timezone.now()
            assignment.save(update_fields=["reminded_at", "updated_at"])
            counts["reminded"] += 1
    counts["escalated"] = 0
    for assignment in Assignment.objects.filter(
        status=AssignmentStatus.OPEN, escalated_at__isnull=True, due_on__lt=today
    ).select_related("user", "item", "site"):
        with transaction.atomic(), audit_context(reason="training overdue"):
            notify(
                recipients=[assignment.user, *_escalation_recipients(assignment)],
                subject=f"Overdue training: {assignment.user.printed_name} — "
                f"{assignment.item.code} (due {assignment.due_on:%d %b %Y})",
                body="Until it is done they cannot sign GMP work that needs it.",
                link=_url("matrix", assignment.site.code)
                if assignment.site is not None
                else _url("my"),
                severity="warn",
            )
            assignment.escalated_at = timezone.now()
            assignment.save(update_fields=["escalated_at", "updated_at"])
            audit_event_record(
                event_type=TrainingEvent.OVERDUE_ESCALATED,
                actor=None,
                target=assignment,
                reason="training overdue",
                site_code=assignment.site.code if assignment.site is not None else "",
                extra={"user": assignment.user.get_username(), "item": assignment.item.code},
            )
            counts["escalated"] += 1
    counts["renewals"] = _renewals_open(today)
    # The oversight dashboard reads each site's compliance from a stored figure (SO-07, TR-06).
    from training.oversight import compliance_snapshots_refresh

    counts["compliance_snapshots"] = compliance_snapshots_refresh()
    return counts


def _renewals_open(today: dt.date) -> int:
    horizon = _start_of(today + dt.timedelta(days=RENEWAL_DAYS + 1))
    expiring = (
        TrainingRecord.objects.filter(expires_at__isnull=False, expires_at__lt=horizon)
        .exclude(result=AssessmentResult.NOT_YET_COMPETENT)
        .values_list("user_id", "item_id")
        .distinct()
    )
    count = 0
    for user_id, item_id in expiring:
        user = User.objects.get(pk=user_id)
        needed = selectors.required_now(user)
        if item_id not in needed:
            continue
        item, site_id = needed[item_id]
        newest = (
            TrainingRecord.objects.filter(user_id=user_id, item_id=item_id)
            .exclude(result=AssessmentResult.NOT_YET_COMPETENT)
            .order_by("-completed_at")
            .first()
        )
        if newest is None or newest.expires_at is None or newest.expires_at >= horizon:
            continue
        with transaction.atomic(), audit_context(reason="renewal due"):
            opened = _assignment_open(
                user=user,
                item=item,
                version=None,
                site=Site.objects.filter(pk=site_id).first() if site_id else None,
                cause=AssignmentCause.RENEWAL,
                due_on=max(timezone.localtime(newest.expires_at).date(), today),
                actor=None,
            )
            count += opened is not None
    return count
