"""Every write to change control: check the role and the transition, sign where a signature is
due, write the audit trail (issue 6 §4; DV-07, DV-08, DV-09, MF-09).

A change says what changes and why, what it touches (its scopes), its risk assessment (DV-07)
and, when it touches the master file, a site's status or the release process, its regulatory
impact: such a change is *regulatory*, a flag derived from its scopes and never typed (DV-09).

Who may do what:
- propose a change: Control Site QA, or a site lead for a change at their own site;
- edit the draft and submit it for review: whoever proposed it, or QA;
- approve (signed "approved"): QA; and a QP as well when the change is regulatory, in either
  order, never the same person twice. It is approved once every required signature is in. Then,
  in the same transaction, a master-file change opens exactly one new master-file draft and a
  change to a site's status or the release process opens one MHRA notification record;
- reject (from review): QA or a QP;
- add implementation tasks and record the change implemented: QA; complete a task: its owner or
  QA;
- close after the post-implementation review (signed "reviewed"): QA.

A refusal writes nothing: every check runs before the first write, and every write of one call
shares one transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.db import transaction
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
from controlsite.signatures.models import ElectronicSignature, SignatureMeaning
from controlsite.signatures.services import SignatureCredentials, sign, signing_transaction
from deviations.choices import (
    CHANGE_TRANSITIONS,
    REGULATORY_SCOPES,
    TEXT_MAX,
    TITLE_MAX,
    ActionStatus,
    ChangeAction,
    ChangeScope,
    ChangeStatus,
    RiskLevel,
)
from deviations.events import DeviationEvent
from deviations.models import ChangeControl, ChangeTask
from deviations.selectors.changes import change_proposal_sites, changes_visible_to
from deviations.services import (
    _choice,
    _future_date,
    _require_owner_eligible,
    _require_qa,
    _require_sees_site,
    _text,
    next_number,
)
from masterfile import services as masterfile_services
from masterfile.choices import OPEN_STATUSES, VersionStatus
from masterfile.models import MasterFile, Product
from masterfile.selectors import products_visible_to
from sites import services as site_services
from sites.choices import NotificationKind, SiteRole
from sites.models import Site
from sites.selectors import site_leads, user_roles_at_site

NUMBER_PREFIX = "CC"
# The approvals a change can need, by who gives them.
QA, QP = "qa", "qp"
CAPACITY_LABELS = {QA: "Control Site QA", QP: "QP"}
# What a master-file change needs before it is implemented: its new version in force (or in
# force once and superseded since).
MASTER_FILE_IN_FORCE = frozenset({VersionStatus.EFFECTIVE, VersionStatus.SUPERSEDED})
# Scopes that make an approved change open an MHRA notification record (DV-09).
NOTIFIED_SCOPES = frozenset({ChangeScope.SITE_STATUS, ChangeScope.RELEASE_PROCESS})

#
# Who may
#


def is_qa(actor: Any) -> bool:
    """Whether `actor` acts as Control Site QA on quality records."""
    return permissions.user_can(actor, Capability.MANAGE_QUALITY_RECORDS)


def is_qp(actor: Any) -> bool:
    """Whether `actor` is a Qualified Person, whose approval a regulatory change needs."""
    return permissions.user_can(actor, Capability.CERTIFY_BATCH)


def may_propose(actor: Any, site: Site | None = None) -> bool:
    """Whether `actor` proposes a change at `site` (any site, when None): Control Site QA, or a
    site lead at the change's site."""
    if is_qa(actor):
        return True
    if site is None:
        # Whether there is any site they lead, for a page deciding to show the form.
        return change_proposal_sites(actor).exists()
    return SiteRole.SITE_LEAD in user_roles_at_site(actor, site)


def _require_may_propose(actor: User, site: Site | None) -> None:
    if is_qa(actor):
        if site is not None:
            _require_sees_site(actor, site)
        return
    if site is None or SiteRole.SITE_LEAD not in user_roles_at_site(actor, site):
        raise PermissionRefusedError(
            "Only Control Site QA, or a site lead for a change at their own site, proposes "
            "a change.",
            code="permission_denied",
        )


def may_edit(actor: Any, change: ChangeControl) -> bool:
    """Whether `actor` edits and submits the draft: whoever proposed it, or QA."""
    return is_qa(actor) or (actor is not None and change.created_by_id == actor.pk)


def _require_may_edit(actor: User, change: ChangeControl, what: str) -> None:
    if not may_edit(actor, change):
        raise PermissionRefusedError(
            f"Only whoever proposed {change.number}, or Control Site QA, may {what}.",
            code="permission_denied",
        )


def may_approve(actor: Any, change: ChangeControl) -> bool:
    """Whether `actor` holds a capacity whose approval `change` still needs (the service checks
    again, and refuses a second signature by the same person)."""
    return bool(_capacities_due(actor, change))


def _capacities_due(actor: Any, change: ChangeControl) -> list[str]:
    due = []
    if change.qa_signature_id is None and is_qa(actor):
        due.append(QA)
    if change.regulatory and change.qp_signature_id is None and is_qp(actor):
        due.append(QP)
    return due


def approvals_due(change: ChangeControl) -> list[str]:
    """The capacities whose signature `change` still needs: QA always, a QP when regulatory."""
    due = [QA] if change.qa_signature_id is None else []
    if change.regulatory and change.qp_signature_id is None:
        due.append(QP)
    return due


#
# What a change is: checked the same way when proposed and when edited
#

EDITABLE_FIELDS = (
    "title",
    "description",
    "scopes",
    "product",
    "site",
    "risk_level",
    "risk_assessment",
    "regulatory_impact",
)


def is_regulatory(scopes: Iterable[str]) -> bool:
    """A change is regulatory when it touches the master file, a site's status or the site
    list, or the release process (DV-09, MF-09). Derived, never typed."""
    return bool(set(scopes) & REGULATORY_SCOPES)


def _scopes(value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ApplicationError("Scopes are a list.", code="invalid")
    chosen = {_choice(str(item), ChangeScope, field="Scope") for item in value}
    if not chosen:
        raise ApplicationError(
            "Say what the change touches: at least one scope.", code="scope_required"
        )
    return [scope for scope in ChangeScope.values if scope in chosen]


def _clean(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The change's fields, checked as a whole, with `regulatory` derived from its scopes."""
    scopes = _scopes(fields["scopes"])
    product: Product | None = fields.get("product")
    site: Site | None = fields.get("site")
    cleaned: dict[str, Any] = {
        "title": _text(fields["title"], field="Title", limit=TITLE_MAX),
        "description": _text(fields["description"], field="What changes and why"),
        "scopes": scopes,
        "product": product,
        "site": site,
        "risk_level": _choice(fields["risk_level"], RiskLevel, field="Risk"),
        "risk_assessment": _text(fields["risk_assessment"], field="The risk assessment"),
        "regulatory_impact": _text(
            fields.get("regulatory_impact", ""), field="The regulatory impact", required=False
        ),
    }
    if ChangeScope.MASTER_FILE in scopes:
        if product is None:
            raise ApplicationError(
                "A change to a master file names its product.", code="product_required"
            )
        if not MasterFile.objects.filter(product=product).exists():
            raise ApplicationError(
                f"{product.code} has no master file to change.", code="no_master_file"
            )
    if ChangeScope.SITE_STATUS in scopes and site is None:
        raise ApplicationError("A change to a site's status names the site.", code="site_required")
    cleaned["regulatory"] = is_regulatory(scopes)
    if cleaned["regulatory"] and not cleaned["regulatory_impact"]:
        raise ApplicationError(
            "This change touches the master file, a site's status or the release process: "
            "assess its regulatory impact — is a variation or an MHRA notification needed? "
            "(DV-09)",
            code="regulatory_impact_required",
        )
    return cleaned


def _require_product_visible(actor: User, product: Product | None) -> None:
    if product is not None and not products_visible_to(actor).filter(pk=product.pk).exists():
        raise ApplicationError("No such product (or not one you can see).", code="unknown_product")


def _plain(value: Any) -> Any:
    """A field's value as the audit trail shows it: a product or a site by its code."""
    if isinstance(value, Product | Site):
        return value.code
    return value


def _site_code(change: ChangeControl) -> str:
    return change.site.code if change.site_id is not None and change.site else ""


def change_url(change: ChangeControl) -> str:
    return reverse("deviations:change-detail", args=[change.number])


def _qa_people() -> Iterable[User]:
    return users_holding(Role.CONTROL_SITE_QA)


def _qp_people() -> Iterable[User]:
    return users_holding(Role.QP)


#
# Proposing and editing the draft
#


def change_propose(
    *,
    actor: User,
    title: str,
    description: str,
    scopes: Sequence[str],
    risk_level: str,
    risk_assessment: str,
    reason: str,
    regulatory_impact: str = "",
    product: Product | None = None,
    site: Site | None = None,
) -> ChangeControl:
    """Propose a change as a draft, numbered CC-<year>-<NNNN>: what changes and why, what it
    touches, its risk assessment (DV-07) and, when regulatory, its regulatory impact (DV-09).
    `regulatory` follows from the scopes. Control Site QA, or a site lead at the change's
    site."""
    _require_may_propose(actor, site)
    _require_product_visible(actor, product)
    reason = require_reason(reason)
    cleaned = _clean(
        {
            "title": title,
            "description": description,
            "scopes": scopes,
            "product": product,
            "site": site,
            "risk_level": risk_level,
            "risk_assessment": risk_assessment,
            "regulatory_impact": regulatory_impact,
        }
    )
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        change = ChangeControl.objects.create(
            number=next_number(NUMBER_PREFIX, timezone.localdate().year),
            created_by=actor,
            **cleaned,
        )
        audit_event_record(
            event_type=DeviationEvent.CHANGE_PROPOSED,
            actor=actor,
            target=change,
            reason=reason,
            site_code=_site_code(change),
            extra={
                "scopes": change.scopes,
                "regulatory": change.regulatory,
                "risk_level": change.risk_level,
                "product": _plain(product),
                "site": _plain(site),
            },
        )
    return change


def _lock(change: ChangeControl) -> ChangeControl:
    return (
        ChangeControl.objects.select_for_update(of=("self",))
        .select_related("site", "product", "qa_signature", "qp_signature")
        .get(pk=change.pk)
    )


def _require_from(change: ChangeControl, action: ChangeAction) -> ChangeStatus:
    sources, to = CHANGE_TRANSITIONS[action]
    if change.status not in sources:
        raise TransitionNotAllowedError(
            f"{change.number} is {change.get_status_display().lower()}: it cannot "
            f"{action.label.lower()} from there.",
            code="transition_not_allowed",
        )
    return to


def change_update(
    *, actor: User, change: ChangeControl, reason: str, changes: Mapping[str, Any]
) -> ChangeControl:
    """Edit the draft: any of its fields; the result is checked as a whole, as when proposed,
    and `regulatory` follows the scopes again. Whoever proposed it, or QA; only while it is a
    draft (a change under review is frozen: its approvals bind to its content)."""
    _require_may_edit(actor, change, "edit it")
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        raise ApplicationError(f"Unknown field {unknown[0]!r}.", code="unknown_field")
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock(change)
        if locked.status != ChangeStatus.DRAFT:
            raise TransitionNotAllowedError(
                f"{locked.number} is {locked.get_status_display().lower()}: only a draft is "
                "edited.",
                code="change_not_draft",
            )
        current = {name: getattr(locked, name) for name in EDITABLE_FIELDS}
        merged = {**current, **changes}
        if "site" in changes:
            _require_may_propose(actor, merged["site"])
        if "product" in changes:
            _require_product_visible(actor, merged["product"])
        cleaned = _clean(merged)
        changed = [name for name in EDITABLE_FIELDS if current[name] != cleaned[name]]
        if not changed:
            return locked
        for name in [*changed, "regulatory"]:
            setattr(locked, name, cleaned[name])
        locked.save(update_fields=[*changed, "regulatory", "updated_at"])
        audit_event_record(
            event_type=DeviationEvent.CHANGE_UPDATED,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=_site_code(locked),
            extra={
                "changed": {
                    name: [_plain(current[name]), _plain(cleaned[name])] for name in changed
                },
                "regulatory": locked.regulatory,
            },
        )
    return locked


def _moved(
    actor: User,
    change: ChangeControl,
    action: ChangeAction,
    old: str,
    reason: str,
    signature: ElectronicSignature | None = None,
    **extra: Any,
) -> None:
    audit_event_record(
        event_type=DeviationEvent.CHANGE_TRANSITIONED,
        actor=actor,
        target=change,
        reason=reason,
        site_code=_site_code(change),
        signature=signature,
        extra={"action": action.value, "old": old, "new": change.status, **extra},
    )


def change_submit(*, actor: User, change: ChangeControl, reason: str) -> ChangeControl:
    """Submit the draft for review (draft → in review). Whoever proposed it, or QA. QA is told,
    and the QPs too when the change is regulatory."""
    _require_may_edit(actor, change, "submit it")
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock(change)
        old = locked.status
        locked.status = _require_from(locked, ChangeAction.SUBMIT)
        locked.save(update_fields=["status", "updated_at"])
        _moved(actor, locked, ChangeAction.SUBMIT, old, reason)
        who = [*_qa_people(), *(_qp_people() if locked.regulatory else [])]
        notify(
            recipients=who,
            subject=f"{locked.number} awaits approval: {locked.title}",
            body="A regulatory change: QA and a QP approve it."
            if locked.regulatory
            else "QA approves it.",
            link=change_url(locked),
        )
    return locked


#
# Approval (DV-07, DV-09, MF-09)
#


def _master_file_of(change: ChangeControl) -> MasterFile:
    master_file = MasterFile.objects.filter(product=change.product_id).first()
    if master_file is None:  # its product lost its master file since it was proposed
        raise ConflictError(
            f"{change.number}'s product has no master file to change.", code="no_master_file"
        )
    return master_file


def _require_master_file_free(change: ChangeControl) -> None:
    """A master-file change opens a new draft when approved, and only one version of a master
    file may be on its way to effect at a time: refuse the approval while another is."""
    if ChangeScope.MASTER_FILE not in change.scopes or change.master_file_draft_id is not None:
        return
    master_file = _master_file_of(change)
    open_version = (
        master_file.versions.filter(status__in=sorted(OPEN_STATUSES)).order_by("number").first()
    )
    if open_version is not None:
        raise ConflictError(
            f"Version {open_version.number} of the {change.product.code if change.product else ''}"
            f" master file is still {open_version.get_status_display().lower()}. Approving "
            f"{change.number} opens a new draft, and only one version may be on its way at a "
            "time: make that version effective (or fold this change into it) first. Nothing was "
            "signed.",
            code="version_open",
            extra={"open_version": open_version.pk},
        )


def _on_approval(actor: User, change: ChangeControl, reason: str) -> list[str]:
    """What an approved change sets off, at most once each: the new master-file draft it
    opens, the MHRA notification it raises. Returns the fields it set."""
    fields: list[str] = []
    if ChangeScope.MASTER_FILE in change.scopes and change.master_file_draft_id is None:
        # Starting a master-file draft is QA's act: the QA who approved it, if a QP's
        # signature completed the approval.
        opener = actor if is_qa(actor) else change.qa_signature.signer
        draft = masterfile_services.draft_start(
            actor=opener,
            master_file=_master_file_of(change),
            reason=f"Opened by change control {change.number}: {change.title}"[:2000],
        )
        change.master_file_draft = draft
        fields.append("master_file_draft")
        audit_event_record(
            event_type=DeviationEvent.CHANGE_DRAFT_OPENED,
            actor=actor,
            target=change,
            reason=reason,
            site_code=_site_code(change),
            extra={
                "product": change.product.code if change.product else None,
                "version": draft.number,
                "version_id": draft.pk,
                "opened_as": opener.get_username(),
            },
        )
    if set(change.scopes) & NOTIFIED_SCOPES and change.regulatory_notification_id is None:
        touched = ", ".join(
            str(ChangeScope(scope).label).lower()
            for scope in change.scopes
            if scope in NOTIFIED_SCOPES
        )
        record = site_services.regulatory_notification_raise(
            actor=actor,
            kind=NotificationKind.CHANGE_CONTROL,
            site=change.site,
            subject=f"Change control {change.number} ({touched}): {change.title}",
            reason=reason,
        )
        change.regulatory_notification = record
        fields.append("regulatory_notification")
        audit_event_record(
            event_type=DeviationEvent.CHANGE_NOTIFICATION_RAISED,
            actor=actor,
            target=change,
            reason=reason,
            site_code=_site_code(change),
            extra={"notification": record.pk, "due_on": record.due_on},
        )
    return fields


def change_approve(
    *, actor: User, change: ChangeControl, credentials: SignatureCredentials, reason: str
) -> ChangeControl:
    """Sign a change's approval, meaning "approved": QA's, or a QP's for a regulatory change,
    in either order (DV-07, DV-09). The change is approved when every required signature is in;
    the same person never gives both, and nobody signs twice (409). When the last signature
    makes it approved, a master-file change opens exactly one new master-file draft, linked to
    it (refused, with nothing signed, while another version of that master file is on its way:
    409 `version_open`), and a change to a site's status or the release process opens one MHRA
    notification record (MF-09)."""
    if not (is_qa(actor) or is_qp(actor)):
        raise PermissionRefusedError(
            "Only Control Site QA approves a change, with a QP as well when it is regulatory.",
            code="permission_denied",
        )
    reason = require_reason(reason)
    with signing_transaction(), audit_context(reason=reason, user=actor):
        locked = _lock(change)
        old = locked.status
        to = _require_from(locked, ChangeAction.APPROVE)
        given = {
            capacity: signature
            for capacity, signature in ((QA, locked.qa_signature), (QP, locked.qp_signature))
            if signature is not None
        }
        due = _capacities_due(actor, locked)
        if any(signature.signer_id == actor.pk for signature in given.values()):
            if due:
                raise ConflictError(
                    f"You have already approved {locked.number}: the same person may not give "
                    "both the QA and the QP approval.",
                    code="same_signer",
                )
            raise ConflictError(
                f"You have already approved {locked.number}.", code="already_signed"
            )
        if not due:
            if not locked.regulatory and not is_qa(actor):
                raise PermissionRefusedError(
                    f"{locked.number} is not regulatory: Control Site QA approves it alone.",
                    code="permission_denied",
                )
            still = ", ".join(CAPACITY_LABELS[c] for c in approvals_due(locked))
            raise ConflictError(
                f"The approval you may give on {locked.number} is already given; still due: "
                f"{still}.",
                code="already_signed",
            )
        capacity = due[0]
        remaining = [c for c in approvals_due(locked) if c != capacity]
        if not remaining:
            _require_master_file_free(locked)
        signature = sign(
            signer=actor,
            credentials=credentials,
            record=locked,
            meaning=SignatureMeaning.APPROVED,
            reason=reason,
            site_code=_site_code(locked),
        )
        setattr(locked, f"{capacity}_signature", signature)
        fields = [f"{capacity}_signature", "updated_at"]
        audit_event_record(
            event_type=DeviationEvent.CHANGE_APPROVAL_SIGNED,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=_site_code(locked),
            signature=signature,
            extra={"capacity": capacity, "still_due": remaining},
        )
        if remaining:
            locked.save(update_fields=fields)
            notify(
                recipients=list(_qp_people()) if QP in remaining else list(_qa_people()),
                subject=f"{locked.number}: {CAPACITY_LABELS[capacity]} approved; yours is due",
                body=f"{locked.title}. {signature.printed_name} signed.",
                link=change_url(locked),
            )
            return locked
        locked.status = to
        fields += ["status", *_on_approval(actor, locked, reason)]
        locked.save(update_fields=fields)
        _moved(actor, locked, ChangeAction.APPROVE, old, reason)
        proposer = [locked.created_by] if locked.created_by else []
        notify(
            recipients=[*proposer, *site_leads(locked.site)] if locked.site else proposer,
            subject=f"{locked.number} approved: {locked.title}",
            body="Its implementation tasks follow.",
            link=change_url(locked),
        )
    return locked


def change_reject(*, actor: User, change: ChangeControl, reason: str) -> ChangeControl:
    """Reject a change under review, with the reason why (in review → rejected). QA or a QP.
    An approval signature given so far stays on the record, with the rejection after it."""
    if not (is_qa(actor) or is_qp(actor)):
        raise PermissionRefusedError(
            "Only Control Site QA or a QP rejects a change.", code="permission_denied"
        )
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock(change)
        old = locked.status
        locked.status = _require_from(locked, ChangeAction.REJECT)
        locked.rejection_reason = reason
        locked.save(update_fields=["status", "rejection_reason", "updated_at"])
        _moved(actor, locked, ChangeAction.REJECT, old, reason)
        if locked.created_by:
            notify(
                recipients=[locked.created_by],
                subject=f"{locked.number} rejected: {locked.title}",
                body=reason,
                link=change_url(locked),
            )
    return locked


#
# Implementation tasks, implementation, post-implementation review
#


def _require_approved(change: ChangeControl) -> None:
    if change.status != ChangeStatus.APPROVED:
        raise TransitionNotAllowedError(
            f"{change.number} is {change.get_status_display().lower()}: implementation tasks "
            "are planned and done while it is approved.",
            code="change_not_approved",
        )


def change_task_add(
    *,
    actor: User,
    change: ChangeControl,
    description: str,
    owner: User | None,
    due_on: dt.date | None,
    reason: str,
) -> ChangeTask:
    """Add an implementation task to an approved change, with an eligible owner — QA, a QP or
    staff who may see the change's site; for a network-wide change, QA or a QP, as only they
    see it — and a due date not in the past. QA."""
    _require_qa(actor, "plans a change's implementation tasks")
    reason = require_reason(reason)
    description = _text(description, field="The task")
    if owner is None or not owner.is_active:
        raise ApplicationError("A task needs an active owner.", code="owner_required")
    _require_owner_eligible(owner, change.site)
    if not changes_visible_to(owner).filter(pk=change.pk).exists():
        raise ApplicationError(
            f"{owner.printed_name} cannot see {change.number}: a network-wide change's tasks "
            "are owned by the Control Site's people (QA or a QP).",
            code="owner_not_eligible",
        )
    due_on = _future_date(due_on, field="The task's due date")
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock(change)
        _require_approved(locked)
        task = ChangeTask.objects.create(
            change=locked, description=description, owner=owner, due_on=due_on, created_by=actor
        )
        audit_event_record(
            event_type=DeviationEvent.CHANGE_TASK_ADDED,
            actor=actor,
            target=task,
            reason=reason,
            site_code=_site_code(locked),
            extra={"change": locked.number, "owner": owner.get_username(), "due_on": due_on},
        )
        notify(
            recipients=[owner],
            subject=f"{locked.number}: a task is yours, due {due_on:%d %b %Y}",
            body=description,
            link=change_url(locked),
        )
    return task


def change_task_complete(*, actor: User, task: ChangeTask, reason: str) -> ChangeTask:
    """Its owner (or QA) records a task done, saying what was done, while the change is
    approved."""
    if task.owner_id != actor.pk and not is_qa(actor):
        raise PermissionRefusedError(
            "Only the task's owner or Control Site QA completes it.", code="permission_denied"
        )
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        change = _lock(task.change)
        _require_approved(change)
        locked = ChangeTask.objects.select_for_update().get(pk=task.pk)
        if locked.status == ActionStatus.DONE:
            raise TransitionNotAllowedError("This task is already done.", code="task_done")
        locked.status = ActionStatus.DONE
        locked.done_at = timezone.now()
        locked.done_by = actor
        locked.save(update_fields=["status", "done_at", "done_by", "updated_at"])
        audit_event_record(
            event_type=DeviationEvent.CHANGE_TASK_DONE,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=_site_code(change),
            extra={"change": change.number},
        )
    return locked


def change_implement(*, actor: User, change: ChangeControl, reason: str) -> ChangeControl:
    """Record the change implemented (approved → implemented), once every task is done (409
    `tasks_open`) and, for a master-file change, once the new version it opened is in force
    (409 `master_file_not_effective`). QA."""
    _require_qa(actor, "records a change implemented")
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock(change)
        old = locked.status
        to = _require_from(locked, ChangeAction.IMPLEMENT)
        open_tasks = locked.tasks.filter(status=ActionStatus.OPEN).count()
        if open_tasks:
            raise ConflictError(
                f"{locked.number} has {open_tasks} task{'s' if open_tasks > 1 else ''} still "
                "open: complete them first.",
                code="tasks_open",
            )
        draft = locked.master_file_draft
        if draft is not None and draft.status not in MASTER_FILE_IN_FORCE:
            raise ConflictError(
                f"The master-file version {locked.number} opened (v{draft.number}) is "
                f"{draft.get_status_display().lower()}: the change is implemented when that "
                "version is effective.",
                code="master_file_not_effective",
            )
        locked.status = to
        locked.implemented_at = timezone.now()
        locked.save(update_fields=["status", "implemented_at", "updated_at"])
        _moved(actor, locked, ChangeAction.IMPLEMENT, old, reason)
    return locked


def change_close(
    *,
    actor: User,
    change: ChangeControl,
    review: str,
    credentials: SignatureCredentials,
    reason: str,
) -> ChangeControl:
    """Close an implemented change with its post-implementation review — did it do what was
    intended, without unintended effects? (DV-07, ICH Q10 §3.2.3(d)) — signed by QA, meaning
    "reviewed" (implemented → closed). The signature is recorded with the closing audit event.
    """
    _require_qa(actor, "closes a change")
    reason = require_reason(reason)
    review = (review or "").strip()
    if not review:
        raise ApplicationError(
            "Write the post-implementation review: did the change do what was intended, "
            "without unintended effects?",
            code="review_required",
        )
    review = _text(review, field="The post-implementation review", limit=TEXT_MAX)
    with signing_transaction(), audit_context(reason=reason, user=actor):
        locked = _lock(change)
        old = locked.status
        locked.status = _require_from(locked, ChangeAction.CLOSE)
        locked.review = review
        locked.closed_at = timezone.now()
        locked.save(update_fields=["status", "review", "closed_at", "updated_at"])
        signature = sign(
            signer=actor,
            credentials=credentials,
            record=locked,
            meaning=SignatureMeaning.REVIEWED,
            reason=reason,
            site_code=_site_code(locked),
        )
        _moved(
            actor, locked, ChangeAction.CLOSE, old, reason, signature, review_signature=signature.pk
        )
    return locked
