"""Every write to sites: register, change, move, the lifecycle, memberships, onboarding,
equipment, audits, the Control Site record and the MHRA log (issue 3; SO-01…SO-13, RP-08).

Each service checks the role, locks what it changes, records why (history rows carry the
reason), writes the domain audit event, signs where a signature is due and sends notices only
after commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from controlsite.accounts import permissions
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability, Role
from controlsite.accounts.scope import token_site_limit
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
from controlsite.signatures.models import ElectronicSignature, SignatureMeaning
from controlsite.signatures.services import SignatureCredentials, sign, signing_transaction
from sites.choices import (
    ACTION_NOTIFICATION,
    ACTION_TRANSITIONS,
    ALERTING_ACTIONS,
    DEFAULT_DUE_DAYS,
    SIGNED_ACTIONS,
    ChecklistItemStatus,
    EquipmentStatus,
    FindingGrade,
    NotificationKind,
    SiteAction,
    SiteAuditStatus,
    SiteKind,
    SiteRole,
    SiteStatus,
)
from sites.events import SiteEvent
from sites.models import (
    AuditFinding,
    ChecklistItemTemplate,
    ControlSite,
    Equipment,
    NamedQP,
    OnboardingItem,
    RegulatoryNotification,
    Site,
    SiteAudit,
    SiteMembership,
    SiteMove,
    SiteStatusChange,
    site_code_validator,
)
from sites.selectors import (
    live_memberships,
    open_checklist_items,
    site_people_to_alert,
    user_roles_at_site,
)


def _require_qa(actor: User, what: str) -> None:
    permissions.require(
        actor, Capability.MANAGE_QUALITY_RECORDS, f"Only Control Site QA may {what}."
    )


def _site_url(site: Site) -> str:
    return reverse("sites:detail", args=[site.code])


#
# The Control Site record (SO-06, MF-05, RP-08)
#


def control_site_save(
    *,
    actor: User,
    name: str,
    address: str,
    licence_number: str,
    scope_poc: bool,
    scope_mm: bool,
    regulator_contacts: str,
    reason: str,
) -> ControlSite:
    _require_qa(actor, "change the Control Site record")
    reason = require_reason(reason)
    if not (scope_poc or scope_mm):
        raise ApplicationError("The licence covers POC, MM or both.", code="scope_required")
    with transaction.atomic(), audit_context(reason=reason):
        control = ControlSite.objects.select_for_update().first()
        old = _snapshot(control, ["name", "address", "licence_number", "scope_poc", "scope_mm"])
        if control is None:
            control = ControlSite(created_by=actor)
        control.name, control.address, control.licence_number = name, address, licence_number
        control.scope_poc, control.scope_mm = scope_poc, scope_mm
        control.regulator_contacts = regulator_contacts
        control.save()
        audit_event_record(
            event_type=SiteEvent.CONTROL_SITE_CHANGED,
            actor=actor,
            target=control,
            extra={
                "old": old,
                "new": _snapshot(
                    control,
                    list(old) or ["name", "address", "licence_number", "scope_poc", "scope_mm"],
                ),
            },
            reason=reason,
        )
    return control


def _snapshot(obj: Any, fields: list[str]) -> dict[str, Any]:
    if obj is None:
        return {}
    return {f: getattr(obj, f) for f in fields}


def named_qp_add(*, actor: User, user: User, reason: str) -> NamedQP:
    """Name a QP on the licence; the MHRA must be told (RP-08)."""
    _require_qa(actor, "name a QP")
    reason = require_reason(reason)
    if not permissions.has_role(user, Role.QP):
        raise ApplicationError(f"{user} does not hold the QP role.", code="not_a_qp")
    with transaction.atomic(), audit_context(reason=reason):
        control = ControlSite.objects.select_for_update().first()
        if control is None:
            raise ConflictError("Record the Control Site first.", code="no_control_site")
        if control.named_qps.filter(user=user, named_until__isnull=True).exists():
            raise ConflictError(f"{user} is already named.", code="already_named")
        naming = NamedQP.objects.create(
            control_site=control, user=user, named_from=timezone.localdate(), created_by=actor
        )
        audit_event_record(
            event_type=SiteEvent.QP_NAMED,
            actor=actor,
            target=control,
            extra={"qp": user.get_username(), "new": user.printed_name},
            reason=reason,
        )
        _regulatory_notification_open(
            kind=NotificationKind.QP_CHANGED,
            site=None,
            subject=f"QP named on the licence: {user.printed_name}",
            actor=actor,
        )
    return naming


def named_qp_remove(*, actor: User, naming: NamedQP, reason: str) -> None:
    _require_qa(actor, "remove a named QP")
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason):
        locked = NamedQP.objects.select_for_update().get(pk=naming.pk)
        if locked.named_until is not None:
            raise ConflictError("This QP is no longer named.", code="not_named")
        locked.named_until = timezone.localdate()
        locked.save(update_fields=["named_until", "updated_at"])
        audit_event_record(
            event_type=SiteEvent.QP_UNNAMED,
            actor=actor,
            target=locked.control_site,
            extra={"qp": locked.user.get_username(), "old": locked.user.printed_name},
            reason=reason,
        )
        _regulatory_notification_open(
            kind=NotificationKind.QP_CHANGED,
            site=None,
            subject=f"QP removed from the licence: {locked.user.printed_name}",
            actor=actor,
        )


#
# The register (SO-01, SO-11, SO-12)
#

UPDATABLE_FIELDS = (
    "name",
    "kind",
    "host_organisation",
    "address",
    "nominated_person",
    "technical_agreement_ref",
)


def site_register(
    *,
    actor: User,
    code: str,
    name: str,
    kind: SiteKind,
    reason: str,
    host_organisation: str = "",
    address: str = "",
    current_location: str = "",
    nominated_person: User | None = None,
    technical_agreement_ref: str = "",
) -> Site:
    """Register a proposed site with its onboarding checklist. The code is final."""
    _require_qa(actor, "register a site")
    reason = require_reason(reason)
    site_code_validator(code)
    limit = token_site_limit(actor)
    if limit is not None and code not in limit:
        raise PermissionRefusedError(
            "This token is limited to other sites.", code="token_site_limit"
        )
    if kind not in SiteKind.values:
        raise ApplicationError(f"Unknown kind {kind!r}.", code="invalid_kind")
    try:
        with transaction.atomic(), audit_context(reason=reason):
            site = Site.objects.create(
                code=code,
                name=name,
                kind=kind,
                host_organisation=host_organisation,
                address=address,
                current_location=current_location,
                nominated_person=nominated_person,
                technical_agreement_ref=technical_agreement_ref,
                created_by=actor,
                status_changed_at=timezone.now(),
            )
            for template in ChecklistItemTemplate.objects.filter(active=True):
                OnboardingItem.objects.create(
                    site=site,
                    key=template.key,
                    title=template.title,
                    guidance=template.guidance,
                    position=template.position,
                    created_by=actor,
                )
            if kind == SiteKind.MODULAR_UNIT and current_location:
                SiteMove.objects.create(
                    site=site,
                    location=current_location,
                    moved_at=timezone.now(),
                    reason="location at registration",
                    created_by=actor,
                )
            audit_event_record(
                event_type=SiteEvent.REGISTERED,
                actor=actor,
                target=site,
                site_code=site.code,
                extra={"new": {"code": code, "name": name, "kind": kind}},
                reason=reason,
            )
            if nominated_person is not None:
                _membership_ensure(
                    actor=actor,
                    site=site,
                    user=nominated_person,
                    role=SiteRole.SITE_LEAD,
                    reason=reason,
                )
    except IntegrityError as exc:
        if Site.objects.filter(code=code).exists():
            raise ConflictError(
                f"The site code {code} is already taken; codes are never reused.",
                code="site_code_taken",
            ) from exc
        raise
    return site


def site_update(*, actor: User, site: Site, reason: str, changes: dict[str, Any]) -> Site:
    """Change a site's particulars. The code never changes (it is in every batch number)."""
    _require_qa(actor, "change a site")
    reason = require_reason(reason)
    if "code" in changes and changes["code"] != site.code:
        raise ApplicationError(
            "A site's code never changes: it is part of every batch number.",
            code="site_code_immutable",
        )
    unknown = set(changes) - set(UPDATABLE_FIELDS) - {"code"}
    if unknown:
        raise ApplicationError(f"Cannot change {sorted(unknown)} here.", code="not_updatable")
    with transaction.atomic(), audit_context(reason=reason):
        locked = Site.objects.select_for_update().get(pk=site.pk)
        if locked.status == SiteStatus.CEASED:
            raise TransitionNotAllowedError("A ceased site is not changed.", code="site_ceased")
        old, new = {}, {}
        for field in UPDATABLE_FIELDS:
            if field in changes and getattr(locked, field) != changes[field]:
                old[field] = _display(getattr(locked, field))
                new[field] = _display(changes[field])
                setattr(locked, field, changes[field])
        if not new:
            return locked
        locked.save(update_fields=[*new, "updated_at"])
        audit_event_record(
            event_type=SiteEvent.UPDATED,
            actor=actor,
            target=locked,
            site_code=locked.code,
            extra={"old": old, "new": new},
            reason=reason,
        )
        if "nominated_person" in new and locked.nominated_person is not None:
            _membership_ensure(
                actor=actor,
                site=locked,
                user=locked.nominated_person,
                role=SiteRole.SITE_LEAD,
                reason=reason,
            )
    return locked


def _display(value: Any) -> Any:
    if isinstance(value, User):
        return value.get_username()
    return value


def site_move(
    *, actor: User, site: Site, location: str, reason: str, moved_at: dt.datetime | None = None
) -> SiteMove:
    """Record a modular unit's move (a dated history of locations)."""
    _require_qa(actor, "move a site")
    reason = require_reason(reason)
    if not location.strip():
        raise ApplicationError("Give the new location.", code="location_required")
    with transaction.atomic(), audit_context(reason=reason):
        locked = Site.objects.select_for_update().get(pk=site.pk)
        if locked.kind != SiteKind.MODULAR_UNIT:
            raise ConflictError("Only a modular unit moves.", code="not_modular")
        if locked.status == SiteStatus.CEASED:
            raise TransitionNotAllowedError("A ceased site is not moved.", code="site_ceased")
        old = locked.current_location
        move = SiteMove.objects.create(
            site=locked,
            location=location.strip(),
            moved_at=moved_at or timezone.now(),
            reason=reason,
            created_by=actor,
        )
        locked.current_location = location.strip()
        locked.save(update_fields=["current_location", "updated_at"])
        audit_event_record(
            event_type=SiteEvent.MOVED,
            actor=actor,
            target=locked,
            site_code=locked.code,
            extra={"old": old, "new": locked.current_location},
            reason=reason,
        )
    return move


#
# The lifecycle (SO-03, SO-04, SO-05)
#


def site_transition(
    *,
    actor: User,
    site: Site,
    action: SiteAction,
    reason: str,
    credentials: SignatureCredentials | None = None,
) -> Site:
    """Move a site along its lifecycle.

    Every action needs Control Site QA and a reason; activation, suspension, reinstatement and
    cessation also need QA's e-signature ("approved"). Qualification is refused while any
    checklist item is open. Suspension and cessation tell the site lead and the QPs at once;
    suspension, reinstatement, cessation and a first activation open an MHRA notification.
    Leaving `active` stops manufacture at once (`site_can_manufacture`).
    """
    _require_qa(actor, f"{SiteAction(action).label.lower()} a site")
    reason = require_reason(reason)
    signed = action in SIGNED_ACTIONS
    if signed and credentials is None:
        raise ApplicationError(
            "This step needs your electronic signature.", code="signature_required"
        )
    sources, target = ACTION_TRANSITIONS[SiteAction(action)]
    signature: ElectronicSignature | None = None
    with signing_transaction(), audit_context(reason=reason):
        locked = Site.objects.select_for_update().get(pk=site.pk)
        old = SiteStatus(locked.status)
        if old not in sources:
            raise TransitionNotAllowedError(
                f"A site that is {old.label.lower()} cannot be "
                f"{'moved to ' + target.label.lower()}; allowed from: "
                f"{', '.join(sorted(s.label.lower() for s in sources))}.",
                code="transition_not_allowed",
            )
        if action == SiteAction.QUALIFY:
            still_open = open_checklist_items(locked)
            if still_open:
                raise ConflictError(
                    "Qualification is refused while checklist items are open: "
                    + "; ".join(item.title for item in still_open)
                    + ".",
                    code="checklist_open",
                    extra={"open_items": [item.key for item in still_open]},
                )
        first_activation = (
            action == SiteAction.ACTIVATE
            and not locked.regulatory_notifications.filter(
                kind=NotificationKind.SITE_ADDED
            ).exists()
        )
        locked.status = target
        locked.status_changed_at = timezone.now()
        locked.save(update_fields=["status", "status_changed_at", "updated_at"])
        change = SiteStatusChange.objects.create(
            site=locked,
            action=str(action),
            from_status=old,
            to_status=target,
            reason=reason,
            changed_at=locked.status_changed_at,
            changed_by=actor,
        )
        if signed:
            assert credentials is not None  # noqa: S101  (checked above; narrows the type)
            signature = sign(
                signer=actor,
                credentials=credentials,
                record=change,
                meaning=SignatureMeaning.APPROVED,
                reason=reason,
                site_code=locked.code,
            )
        audit_event_record(
            event_type=SiteEvent.STATUS_CHANGED,
            actor=actor,
            target=locked,
            site_code=locked.code,
            signature=signature,
            reason=reason,
            extra={"action": str(action), "old": old.value, "new": target.value},
        )
        kind = NotificationKind.SITE_ADDED if first_activation else ACTION_NOTIFICATION.get(action)
        if kind is not None:
            _regulatory_notification_open(
                kind=kind,
                site=locked,
                actor=actor,
                subject=f"{kind.label}: {locked.code} — {locked.name}",
            )
        if action in ALERTING_ACTIONS:
            notify(
                recipients=site_people_to_alert(locked),
                subject=f"Site {locked.code} {target.label.lower()}",
                body=(
                    f"{locked.code} — {locked.name} is {target.label.lower()} as of "
                    f"{timezone.localtime(locked.status_changed_at):%d %b %Y %H:%M}. No batch may "
                    f"start, no step be signed and no batch be certified there.\n"
                    f"Reason: {reason}\nBy: {actor.printed_name}"
                ),
                link=_site_url(locked),
                severity="block",
            )
    site.status, site.status_changed_at = locked.status, locked.status_changed_at
    return locked


#
# Memberships (design §1; AT-07)
#


def _membership_ensure(
    *, actor: User, site: Site, user: User, role: SiteRole, reason: str
) -> SiteMembership:
    existing = live_memberships().filter(site=site, user=user, role=role).first()
    if existing is not None:
        return existing
    membership = SiteMembership.objects.create(site=site, user=user, role=role, created_by=actor)
    audit_event_record(
        event_type=SiteEvent.MEMBER_ADDED,
        actor=actor,
        target=site,
        site_code=site.code,
        extra={"user": user.get_username(), "role": role.value},
        reason=reason,
    )
    return membership


def membership_add(
    *, actor: User, site: Site, user: User, role: SiteRole, reason: str
) -> SiteMembership:
    """Give a person a role at a site: from now on they see and work on its records."""
    _require_qa(actor, "change who works at a site")
    reason = require_reason(reason)
    if role not in SiteRole.values:
        raise ApplicationError(f"Unknown site role {role!r}.", code="invalid_role")
    if permissions.user_is_administrator(user):
        raise ConflictError("An administrator never works at a site.", code="segregation_of_duties")
    with transaction.atomic(), audit_context(reason=reason):
        locked = Site.objects.select_for_update().get(pk=site.pk)
        if locked.status == SiteStatus.CEASED:
            raise TransitionNotAllowedError("A ceased site has no new members.", code="site_ceased")
        if live_memberships().filter(site=locked, user=user, role=role).exists():
            raise ConflictError(
                f"{user} is already {SiteRole(role).label.lower()} here.", code="already_member"
            )
        return _membership_ensure(
            actor=actor, site=locked, user=user, role=SiteRole(role), reason=reason
        )


def membership_end(*, actor: User, membership: SiteMembership, reason: str) -> None:
    _require_qa(actor, "change who works at a site")
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason):
        locked = (
            SiteMembership.objects.select_for_update(of=("self",))
            .select_related("site", "user")
            .get(pk=membership.pk)
        )
        if locked.ended_at is not None:
            raise ConflictError("This membership has already ended.", code="already_ended")
        locked.ended_at = timezone.now()
        locked.save(update_fields=["ended_at", "updated_at"])
        audit_event_record(
            event_type=SiteEvent.MEMBER_ENDED,
            actor=actor,
            target=locked.site,
            site_code=locked.site.code,
            extra={"user": locked.user.get_username(), "role": locked.role},
            reason=reason,
        )


#
# Onboarding checklist (SO-03)
#

_EVIDENCE_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    ".pdf": (b"%PDF-",),
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".docx": (b"PK\x03\x04",),
    ".xlsx": (b"PK\x03\x04",),
    ".txt": (),
    ".csv": (),
}


def evidence_check(upload: UploadedFile[bytes]) -> str:
    """Size and type checks (DI-12); returns the file's SHA-256. Shared with the apps above
    that take uploads (training: procedure files)."""
    limit = settings.SITE_EVIDENCE_MAX_BYTES
    name = (upload.name or "").lower()
    suffix = name[name.rfind(".") :] if "." in name else ""
    if upload.size is None or upload.size > limit:
        raise ApplicationError(
            f"The evidence file is larger than {limit // (1024 * 1024)} MB.",
            code="evidence_too_large",
        )
    if upload.size == 0:
        raise ApplicationError("The evidence file is empty.", code="evidence_empty")
    if suffix not in _EVIDENCE_SIGNATURES:
        raise ApplicationError(
            "Evidence must be a PDF, PNG, JPEG, Word or Excel document, text or CSV file.",
            code="evidence_type",
        )
    digest = hashlib.sha256()
    head = b""
    for chunk in upload.chunks():
        if not head:
            head = chunk[:16]
        digest.update(chunk)
    upload.seek(0)
    magics = _EVIDENCE_SIGNATURES[suffix]
    if magics and not any(head.startswith(m) for m in magics):
        raise ApplicationError(
            f"The file's content is not a {suffix[1:].upper()} file.", code="evidence_type"
        )
    if not magics:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ApplicationError(
                "A text or CSV file must be UTF-8 text.", code="evidence_type"
            ) from exc
    return digest.hexdigest()


def checklist_item_attach_evidence(
    *,
    actor: User,
    item: OnboardingItem,
    reason: str,
    upload: UploadedFile[bytes] | None = None,
    reference: str = "",
) -> OnboardingItem:
    """Attach evidence (a file, a reference or both) to an open checklist item."""
    _require_qa(actor, "record onboarding evidence")
    reason = require_reason(reason)
    reference = reference.strip()
    if upload is None and not reference:
        raise ApplicationError("Upload a file or give a reference.", code="evidence_required")
    sha = evidence_check(upload) if upload is not None else ""
    # The file goes to storage before the transaction, so no row lock is held during slow I/O;
    # if the transaction then fails, the stored file is removed again.
    stored = ""
    field = OnboardingItem._meta.get_field("evidence_file")
    if upload is not None:
        stored = field.storage.save(
            field.generate_filename(item, upload.name or "evidence"),
            upload,
        )
    try:
        return _attach_evidence(
            actor=actor, item=item, reason=reason, stored=stored, sha=sha, reference=reference
        )
    except BaseException:
        if stored:
            field.storage.delete(stored)
        raise


def _attach_evidence(
    *, actor: User, item: OnboardingItem, reason: str, stored: str, sha: str, reference: str
) -> OnboardingItem:
    with transaction.atomic(), audit_context(reason=reason):
        locked = (
            OnboardingItem.objects.select_for_update(of=("self",))
            .select_related("site")
            .get(pk=item.pk)
        )
        if locked.status != ChecklistItemStatus.OPEN:
            raise TransitionNotAllowedError(
                "The item is signed off; its evidence no longer changes.", code="item_signed_off"
            )
        if locked.site.status == SiteStatus.CEASED:
            raise TransitionNotAllowedError(
                "The site has ceased; its onboarding is closed.", code="site_ceased"
            )
        fields = ["updated_at"]
        if stored:
            locked.evidence_file.name = stored
            locked.evidence_sha256 = sha
            fields += ["evidence_file", "evidence_sha256"]
        if reference:
            locked.evidence_reference = reference
            fields.append("evidence_reference")
        locked.save(update_fields=fields)
        audit_event_record(
            event_type=SiteEvent.EVIDENCE_ADDED,
            actor=actor,
            target=locked,
            site_code=locked.site.code,
            reason=reason,
            extra={
                "item": locked.key,
                "file": locked.evidence_file.name or "",
                "sha256": sha,
                "reference": reference,
            },
        )
    return locked


def checklist_item_sign_off(
    *, actor: User, item: OnboardingItem, credentials: SignatureCredentials, reason: str
) -> OnboardingItem:
    """QA signs an item off ("verified") once it has evidence."""
    _require_qa(actor, "sign off onboarding")
    reason = require_reason(reason)
    with signing_transaction(), audit_context(reason=reason):
        locked = (
            OnboardingItem.objects.select_for_update(of=("self",))
            .select_related("site")
            .get(pk=item.pk)
        )
        if locked.status != ChecklistItemStatus.OPEN:
            raise TransitionNotAllowedError(
                "The item is already signed off.", code="item_signed_off"
            )
        if locked.site.status == SiteStatus.CEASED:
            raise TransitionNotAllowedError(
                "The site has ceased; its onboarding is closed.", code="site_ceased"
            )
        if not locked.has_evidence:
            raise ConflictError("Attach evidence before signing off.", code="evidence_required")
        locked.status = ChecklistItemStatus.DONE
        locked.signed_off_by = actor
        locked.signed_off_at = timezone.now()
        locked.save(update_fields=["status", "signed_off_by", "signed_off_at", "updated_at"])
        signature = sign(
            signer=actor,
            credentials=credentials,
            record=locked,
            meaning=SignatureMeaning.VERIFIED,
            reason=reason,
            site_code=locked.site.code,
        )
        audit_event_record(
            event_type=SiteEvent.ITEM_SIGNED_OFF,
            actor=actor,
            target=locked,
            site_code=locked.site.code,
            signature=signature,
            reason=reason,
            extra={"item": locked.key, "old": "open", "new": "done"},
        )
    return locked


#
# Equipment (SO-07)
#


def _require_equipment_editor(actor: User, site: Site) -> None:
    if permissions.user_can(actor, Capability.MANAGE_QUALITY_RECORDS):
        return
    if SiteRole.SITE_LEAD in user_roles_at_site(actor, site):
        return
    raise PermissionRefusedError("Only QA or this site's lead records its equipment.")


def equipment_add(
    *,
    actor: User,
    site: Site,
    kind: str,
    serial_number: str,
    reason: str,
    name: str = "",
    qualification_status: EquipmentStatus = EquipmentStatus.NOT_QUALIFIED,
    next_due: dt.date | None = None,
) -> Equipment:
    _require_equipment_editor(actor, site)
    reason = require_reason(reason)
    if qualification_status not in EquipmentStatus.values:
        raise ApplicationError("Unknown qualification status.", code="invalid_status")
    try:
        with transaction.atomic(), audit_context(reason=reason):
            equipment = Equipment.objects.create(
                site=site,
                kind=kind,
                name=name,
                serial_number=serial_number,
                qualification_status=qualification_status,
                next_due=next_due,
                created_by=actor,
            )
            audit_event_record(
                event_type=SiteEvent.EQUIPMENT_ADDED,
                actor=actor,
                target=equipment,
                site_code=site.code,
                reason=reason,
                extra={
                    "new": {"kind": kind, "serial": serial_number, "status": qualification_status}
                },
            )
    except IntegrityError as exc:
        raise ConflictError(
            f"{kind} {serial_number} is already registered at {site.code}.",
            code="equipment_duplicate",
        ) from exc
    return equipment


def equipment_update(
    *, actor: User, equipment: Equipment, reason: str, changes: dict[str, Any]
) -> Equipment:
    _require_equipment_editor(actor, equipment.site)
    reason = require_reason(reason)
    allowed = {"name", "qualification_status", "next_due"}
    if set(changes) - allowed:
        raise ApplicationError(f"Only {sorted(allowed)} change.", code="not_updatable")
    if "qualification_status" in changes and changes["qualification_status"] not in (
        EquipmentStatus.values
    ):
        raise ApplicationError("Unknown qualification status.", code="invalid_status")
    with transaction.atomic(), audit_context(reason=reason):
        locked = (
            Equipment.objects.select_for_update(of=("self",))
            .select_related("site")
            .get(pk=equipment.pk)
        )
        old = {k: str(getattr(locked, k)) for k in changes}
        for key, value in changes.items():
            setattr(locked, key, value)
        locked.save(update_fields=[*changes, "updated_at"])
        audit_event_record(
            event_type=SiteEvent.EQUIPMENT_CHANGED,
            actor=actor,
            target=locked,
            site_code=locked.site.code,
            reason=reason,
            extra={"old": old, "new": {k: str(v) for k, v in changes.items()}},
        )
    return locked


#
# Site audits (SO-10)
#


def site_audit_plan(
    *,
    actor: User,
    site: Site,
    title: str,
    planned_for: dt.date,
    reason: str,
    lead_auditor: str = "",
) -> SiteAudit:
    _require_qa(actor, "plan a site audit")
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason):
        audit = SiteAudit.objects.create(
            site=site,
            title=title,
            planned_for=planned_for,
            lead_auditor=lead_auditor,
            created_by=actor,
        )
        audit_event_record(
            event_type=SiteEvent.AUDIT_PLANNED,
            actor=actor,
            target=audit,
            site_code=site.code,
            extra={"planned_for": planned_for, "title": title},
            reason=reason,
        )
    return audit


def site_audit_complete(
    *, actor: User, audit: SiteAudit, done_on: dt.date, summary: str, reason: str
) -> SiteAudit:
    _require_qa(actor, "record a site audit")
    reason = require_reason(reason)
    if done_on > timezone.localdate():
        raise ApplicationError("An audit cannot be done in the future.", code="date_in_future")
    with transaction.atomic(), audit_context(reason=reason):
        locked = (
            SiteAudit.objects.select_for_update(of=("self",))
            .select_related("site")
            .get(pk=audit.pk)
        )
        if locked.status != SiteAuditStatus.PLANNED:
            raise TransitionNotAllowedError(
                "Only a planned audit is completed.", code="transition_not_allowed"
            )
        locked.status = SiteAuditStatus.DONE
        locked.done_on, locked.summary = done_on, summary
        locked.save(update_fields=["status", "done_on", "summary", "updated_at"])
        audit_event_record(
            event_type=SiteEvent.AUDIT_DONE,
            actor=actor,
            target=locked,
            site_code=locked.site.code,
            reason=reason,
            extra={"old": "planned", "new": "done", "done_on": done_on},
        )
    return locked


def audit_finding_add(
    *, actor: User, audit: SiteAudit, grade: FindingGrade, description: str, reason: str
) -> AuditFinding:
    _require_qa(actor, "record an audit finding")
    reason = require_reason(reason)
    if grade not in FindingGrade.values:
        raise ApplicationError("Grade a finding critical, major or minor.", code="invalid_grade")
    if not description.strip():
        raise ApplicationError("Describe the finding.", code="description_required")
    with transaction.atomic(), audit_context(reason=reason):
        locked = (
            SiteAudit.objects.select_for_update(of=("self",))
            .select_related("site")
            .get(pk=audit.pk)
        )
        if locked.status == SiteAuditStatus.CANCELLED:
            raise TransitionNotAllowedError(
                "A cancelled audit has no findings.", code="audit_cancelled"
            )
        finding = AuditFinding.objects.create(
            audit=locked, grade=grade, description=description.strip(), created_by=actor
        )
        audit_event_record(
            event_type=SiteEvent.FINDING_ADDED,
            actor=actor,
            target=finding,
            site_code=locked.site.code,
            reason=reason,
            extra={"grade": grade},
        )
    return finding


#
# The MHRA log (RP-03, RP-08)
#


def _regulatory_notification_open(
    *, kind: NotificationKind, site: Site | None, subject: str, actor: User
) -> RegulatoryNotification:
    days = {**DEFAULT_DUE_DAYS, **settings.REGULATORY_NOTIFICATION_DUE_DAYS}[kind]
    now = timezone.now()
    record = RegulatoryNotification.objects.create(
        kind=kind,
        site=site,
        subject=subject[:300],
        event_at=now,
        due_on=timezone.localdate(now) + dt.timedelta(days=days),
        created_by=actor,
    )
    audit_event_record(
        event_type=SiteEvent.MHRA_NOTIFICATION_DUE,
        actor=actor,
        target=record,
        site_code=site.code if site else "",
        extra={"kind": kind, "due_on": record.due_on},
    )
    return record


def regulatory_notification_raise(
    *, actor: User, kind: NotificationKind, site: Site | None, subject: str, reason: str
) -> RegulatoryNotification:
    """Open an MHRA notification record for an event a higher app's service has decided on,
    e.g. an approved change control touching a site's status or the release process (DV-09,
    RP-03). Control Site QA or a QP, whose decision it is; call it inside that decision's
    transaction so both stand or fall together."""
    if not (
        permissions.user_can(actor, Capability.MANAGE_QUALITY_RECORDS)
        or permissions.user_can(actor, Capability.CERTIFY_BATCH)
    ):
        raise PermissionRefusedError(
            "Only Control Site QA or a QP opens an MHRA notification.", code="permission_denied"
        )
    if kind not in NotificationKind.values:
        raise ApplicationError(f"Unknown kind {kind!r}.", code="invalid_kind")
    subject = (subject or "").strip()
    if not subject:
        raise ApplicationError("Say what is to be notified.", code="subject_required")
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        return _regulatory_notification_open(
            kind=NotificationKind(kind), site=site, subject=subject, actor=actor
        )


def regulatory_notification_mark_sent(
    *,
    actor: User,
    notification: RegulatoryNotification,
    sent_on: dt.date,
    reference: str,
    reason: str,
) -> RegulatoryNotification:
    _require_qa(actor, "record an MHRA notification")
    reason = require_reason(reason)
    if not reference.strip():
        raise ApplicationError("Give the MHRA reference.", code="reference_required")
    if sent_on > timezone.localdate():
        raise ApplicationError("It cannot have been sent in the future.", code="date_in_future")
    with transaction.atomic(), audit_context(reason=reason):
        locked = (
            RegulatoryNotification.objects.select_for_update(of=("self",))
            .select_related("site")
            .get(pk=notification.pk)
        )
        if locked.sent_on is not None:
            raise ConflictError("Already recorded as sent.", code="already_sent")
        locked.sent_on, locked.reference, locked.sent_by = sent_on, reference.strip(), actor
        locked.save(update_fields=["sent_on", "reference", "sent_by", "updated_at"])
        audit_event_record(
            event_type=SiteEvent.MHRA_NOTIFICATION_SENT,
            actor=actor,
            target=locked,
            site_code=locked.site.code if locked.site else "",
            reason=reason,
            extra={"sent_on": sent_on, "reference": locked.reference},
        )
    return locked


def regulatory_notifications_remind(*, today: dt.date | None = None) -> int:
    """Remind Control Site QA of MHRA notifications due within a day or overdue.

    Run daily by Celery beat. Idempotent: a notification already reminded today is skipped.
    Returns how many notifications were reminded.
    """
    from controlsite.accounts.models import RoleGrant
    from controlsite.notifications.models import Notification

    today = today or timezone.localdate()
    pending = RegulatoryNotification.objects.filter(
        sent_on__isnull=True, due_on__lte=today + dt.timedelta(days=1)
    ).select_related("site")
    qa_users = list(
        User.objects.filter(
            pk__in=RoleGrant.objects.filter(
                permissions.live_grants_q(), role=Role.CONTROL_SITE_QA
            ).values("user_id"),
            is_active=True,
        )
    )
    link = reverse("sites:notifications")
    reminded = 0
    for record in pending:
        overdue = record.due_on < today
        subject = f"MHRA notification {'overdue' if overdue else 'due'}: {record.subject}"[:200]
        if Notification.objects.filter(subject=subject, created_at__date=today).exists():
            continue
        notify(
            recipients=qa_users,
            subject=subject,
            body=f"Due on {record.due_on:%d %b %Y}. Record the MHRA reference once it is sent.",
            link=link,
            severity="block" if overdue else "warn",
        )
        reminded += 1
    return reminded
