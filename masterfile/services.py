"""Every write to products and master files: register, change, site links, drafts, sections,
review, approval, effect and reminders (issue 4; MF-01…MF-12, ES-*).

Each service checks the role, locks what it changes, records why (history rows carry the
reason), writes the domain audit event, signs where a signature is due and sends notices only
after commit. Exports live in `masterfile.exports`.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from controlsite.accounts import permissions
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability, Role
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
from masterfile.choices import (
    ACTION_TRANSITIONS,
    APPROVAL_ORDER,
    CHANGE_SUMMARY_MAX,
    COMMENT_MAX,
    EDITABLE_STATUSES,
    OPEN_STATUSES,
    SECTION_BODY_MAX,
    SECTION_TITLE_MAX,
    SECTIONS_MAX,
    ApprovalCapacity,
    ProductSiteRole,
    VersionAction,
    VersionStatus,
)
from masterfile.events import MasterFileEvent
from masterfile.models import (
    AnnexEntry,
    MasterFile,
    MasterFileVersion,
    Product,
    ProductSite,
    ReviewComment,
    Section,
    VersionApproval,
    section_key_validator,
)
from masterfile.selectors import (
    annex_candidates,
    approval_state,
    empty_sections,
    live_product_sites,
    open_comment_count,
    section_templates,
    versions_due_for_review,
)
from sites.choices import SiteKind, SiteStatus
from sites.models import Site

PRODUCT_FIELDS = [
    "name",
    "designation",
    "designation_reference",
    "designation_date",
    "dosage_form",
    "shelf_life_minutes",
    "supply_status",
    "reference_site",
]
# Changing these may need a new MHRA designation (MF-08): the audit event says so.
DESIGNATION_FIELDS = frozenset({"designation", "dosage_form", "shelf_life_minutes"})

CAPACITY_ROLE: dict[ApprovalCapacity, Role] = {
    ApprovalCapacity.QA: Role.CONTROL_SITE_QA,
    ApprovalCapacity.QP: Role.QP,
}


#
# Small rules shared by the services
#


def _require_qa(actor: User, what: str) -> None:
    if not permissions.user_can(actor, Capability.MANAGE_QUALITY_RECORDS):
        raise PermissionRefusedError(f"Only Control Site QA may {what}.")


def _require_reviewer(actor: User) -> None:
    if not (
        permissions.user_can(actor, Capability.MANAGE_QUALITY_RECORDS)
        or permissions.user_can(actor, Capability.CERTIFY_BATCH)
    ):
        raise PermissionRefusedError("Only Control Site QA and QPs review master files.")


def _require_editable(version: MasterFileVersion) -> None:
    if version.status not in EDITABLE_STATUSES:
        raise ConflictError(
            f"Version {version.number} is {version.get_status_display().lower()}: its content "
            "is frozen. Start a new draft to change it.",
            code="version_not_editable",
        )


def _version_url(version: MasterFileVersion) -> str:
    return reverse("masterfile:version-detail", args=[version.pk])


def _check_title(title: str) -> str:
    title = (title or "").strip()
    if not title:
        raise ApplicationError("A section needs a title.", code="title_required")
    if len(title) > SECTION_TITLE_MAX:
        raise ApplicationError(
            f"A section title is at most {SECTION_TITLE_MAX} characters.", code="title_too_long"
        )
    return title


def _check_body(body: str) -> str:
    if not (body or "").strip():
        raise ApplicationError(
            "A section cannot be empty: write its content (Markdown).", code="section_empty"
        )
    if len(body) > SECTION_BODY_MAX:
        raise ApplicationError(
            f"A section is at most {SECTION_BODY_MAX:,} characters; this one has "
            f"{len(body):,}. Split it or attach the detail as a referenced document.",
            code="section_too_long",
        )
    return body


def add_months(day: dt.date, months: int) -> dt.date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _full_clean(obj: Any, exclude: list[str] | None = None) -> None:
    try:
        obj.full_clean(exclude=exclude)
    except ValidationError as exc:
        raise ApplicationError(
            "; ".join(
                f"{field}: {' '.join(str(m) for m in messages)}"
                for field, messages in exc.message_dict.items()
            ),
            code="invalid",
            extra={"fields": exc.message_dict},
        ) from exc


#
# Products (issue 4 §1)
#


def product_register(
    *,
    actor: User,
    reason: str,
    code: str,
    name: str,
    designation: str,
    designation_reference: str,
    designation_date: dt.date,
    dosage_form: str,
    shelf_life_minutes: int,
    supply_status: str,
    reference_site: Site,
    owner: User | None = None,
) -> Product:
    """Register a product with its reference site, its master file and a first draft built from
    the section templates. The reference site becomes its first manufacturing site."""
    _require_qa(actor, "register a product")
    reason = require_reason(reason)
    if reference_site.kind == SiteKind.TESTING_LAB:
        raise ApplicationError(
            "The reference site must be a manufacturing site, not a testing laboratory.",
            code="reference_site_kind",
        )
    if reference_site.status == SiteStatus.CEASED:
        raise ApplicationError("A ceased site cannot be a reference site.", code="site_ceased")
    product = Product(
        code=code,
        name=name,
        designation=designation,
        designation_reference=designation_reference,
        designation_date=designation_date,
        dosage_form=dosage_form,
        shelf_life_minutes=shelf_life_minutes,
        supply_status=supply_status,
        reference_site=reference_site,
        created_by=actor,
    )
    _full_clean(product, exclude=["created_by"])
    try:
        with transaction.atomic(), audit_context(reason=reason, user=actor):
            product.save()
            ProductSite.objects.create(
                product=product,
                site=reference_site,
                role=ProductSiteRole.MANUFACTURING,
                created_by=actor,
            )
            master_file = MasterFile.objects.create(
                product=product, owner=owner or actor, created_by=actor
            )
            version = MasterFileVersion.objects.create(
                master_file=master_file, number=1, created_by=actor
            )
            _sections_from_templates(version, actor)
            audit_event_record(
                event_type=MasterFileEvent.PRODUCT_REGISTERED,
                actor=actor,
                target=product,
                reason=reason,
                site_code=reference_site.code,
                extra={"code": product.code, "reference_site": reference_site.code},
            )
    except IntegrityError as exc:
        raise ConflictError(
            "A product with this code or name already exists.", code="product_exists"
        ) from exc
    return product


def product_update(
    *, actor: User, product: Product, reason: str, changes: dict[str, Any]
) -> Product:
    """Change a product's details. A new reference site is linked as a manufacturing site; a
    change to what the designation rests on is flagged in the audit trail (MF-08)."""
    _require_qa(actor, "change a product")
    reason = require_reason(reason)
    unknown = set(changes) - set(PRODUCT_FIELDS)
    if unknown:
        raise ApplicationError(
            f"These fields cannot be changed here: {', '.join(sorted(unknown))}.",
            code="field_not_editable",
        )
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = Product.objects.select_for_update().get(pk=product.pk)
        old = {f: getattr(locked, f) for f in changes}
        for field, value in changes.items():
            setattr(locked, field, value)
        _full_clean(locked, exclude=["created_by"])
        changed = {f: (old[f], changes[f]) for f in changes if old[f] != changes[f]}
        if not changed:
            return locked
        if "reference_site" in changed:
            site: Site = changes["reference_site"]
            if site.kind == SiteKind.TESTING_LAB or site.status == SiteStatus.CEASED:
                raise ApplicationError(
                    "The reference site must be a manufacturing site that has not ceased.",
                    code="reference_site_kind",
                )
            _product_site_ensure(locked, site, ProductSiteRole.MANUFACTURING, actor)
        try:
            with transaction.atomic():
                locked.save()
        except IntegrityError as exc:
            raise ConflictError(
                "Another product already has this name.", code="product_exists"
            ) from exc
        audit_event_record(
            event_type=MasterFileEvent.PRODUCT_UPDATED,
            actor=actor,
            target=locked,
            reason=reason,
            extra={
                "fields": sorted(changed),
                "old": {f: str(v[0]) for f, v in changed.items()},
                "new": {f: str(v[1]) for f, v in changed.items()},
                "designation_review_needed": bool(DESIGNATION_FIELDS & changed.keys()),
            },
        )
    return locked


def _product_site_ensure(
    product: Product, site: Site, role: ProductSiteRole, actor: User
) -> tuple[ProductSite, bool]:
    existing = live_product_sites().filter(product=product, site=site, role=role).first()
    if existing is not None:
        return existing, False
    return (
        ProductSite.objects.create(product=product, site=site, role=role, created_by=actor),
        True,
    )


def product_site_add(
    *, actor: User, product: Product, site: Site, role: str, reason: str
) -> ProductSite:
    """Name a site as making or testing the product. It enters the master file with the next
    version's annex; it may manufacture only once that version is effective."""
    _require_qa(actor, "add a site to a product")
    reason = require_reason(reason)
    if role not in ProductSiteRole.values:
        raise ApplicationError(f"Unknown role {role!r}.", code="invalid_role")
    if site.status == SiteStatus.CEASED:
        raise ApplicationError("A ceased site cannot be added.", code="site_ceased")
    if role == ProductSiteRole.MANUFACTURING and site.kind == SiteKind.TESTING_LAB:
        raise ApplicationError(
            "A testing laboratory can only be added as a testing site.", code="site_kind"
        )
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        Product.objects.select_for_update().get(pk=product.pk)
        link, created = _product_site_ensure(product, site, ProductSiteRole(role), actor)
        if not created:
            raise ConflictError(
                f"{site.code} is already a {ProductSiteRole(role).label.lower()} site of "
                f"{product.code}.",
                code="already_linked",
            )
        audit_event_record(
            event_type=MasterFileEvent.PRODUCT_SITE_ADDED,
            actor=actor,
            target=product,
            reason=reason,
            site_code=site.code,
            extra={"site": site.code, "role": role},
        )
    return link


def product_site_end(*, actor: User, link: ProductSite, reason: str) -> ProductSite:
    _require_qa(actor, "remove a site from a product")
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = (
            ProductSite.objects.select_for_update()
            .select_related("product", "site")
            .get(pk=link.pk)
        )
        if locked.ended_at is not None:
            raise ConflictError("This site was already removed.", code="already_ended")
        if (
            locked.role == ProductSiteRole.MANUFACTURING
            and locked.site_id == locked.product.reference_site_id
        ):
            raise ConflictError(
                "The reference site cannot be removed; name another reference site first.",
                code="reference_site",
            )
        locked.ended_at = timezone.now()
        locked.save(update_fields=["ended_at", "updated_at"])
        audit_event_record(
            event_type=MasterFileEvent.PRODUCT_SITE_ENDED,
            actor=actor,
            target=locked.product,
            reason=reason,
            site_code=locked.site.code,
            extra={"site": locked.site.code, "role": locked.role},
        )
    return locked


def master_file_update(
    *,
    actor: User,
    master_file: MasterFile,
    reason: str,
    owner: User | None = None,
    review_interval_months: int | None = None,
) -> MasterFile:
    _require_qa(actor, "change a master file")
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = MasterFile.objects.select_for_update().get(pk=master_file.pk)
        if owner is not None:
            if not owner.is_active:
                raise ApplicationError("The owner must be an active user.", code="owner_inactive")
            locked.owner = owner
        if review_interval_months is not None:
            locked.review_interval_months = review_interval_months
        _full_clean(locked, exclude=["created_by", "product"])
        locked.save()
    return locked


#
# Drafts and sections (issue 4 §2-3)
#


def _sections_from_templates(version: MasterFileVersion, actor: User) -> None:
    for template in section_templates():
        Section.objects.create(
            version=version,
            key=template.key,
            title=template.title,
            position=template.position,
            guidance=template.guidance,
            regulatory_reference=template.regulatory_reference,
            created_by=actor,
        )


def draft_start(*, actor: User, master_file: MasterFile, reason: str) -> MasterFileVersion:
    """Start the next version as a copy of the effective one (or of the section templates if
    none is effective). Refused while another version is on its way to effect."""
    _require_qa(actor, "start a master-file draft")
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = (
            MasterFile.objects.select_for_update().select_related("product").get(pk=master_file.pk)
        )
        current_open = locked.versions.filter(status__in=sorted(OPEN_STATUSES)).first()
        if current_open is not None:
            raise ConflictError(
                f"Version {current_open.number} is still "
                f"{current_open.get_status_display().lower()}; finish it before starting "
                "another.",
                code="version_open",
                extra={"open_version": current_open.pk},
            )
        effective = locked.versions.filter(status=VersionStatus.EFFECTIVE).first()
        last = locked.versions.order_by("-number").first()
        version = MasterFileVersion.objects.create(
            master_file=locked,
            number=(last.number + 1) if last else 1,
            based_on=effective,
            created_by=actor,
        )
        if effective is None:
            _sections_from_templates(version, actor)
        else:
            for section in effective.sections.order_by("position", "key"):
                Section.objects.create(
                    version=version,
                    key=section.key,
                    title=section.title,
                    position=section.position,
                    body=section.body,
                    guidance=section.guidance,
                    regulatory_reference=section.regulatory_reference,
                    created_by=actor,
                )
        audit_event_record(
            event_type=MasterFileEvent.DRAFT_STARTED,
            actor=actor,
            target=version,
            reason=reason,
            extra={"number": version.number, "based_on": effective.number if effective else None},
        )
    return version


def _lock_draft(version: MasterFileVersion) -> MasterFileVersion:
    locked = MasterFileVersion.objects.select_for_update().get(pk=version.pk)
    _require_editable(locked)
    return locked


def section_update(
    *,
    actor: User,
    section: Section,
    reason: str,
    title: str | None = None,
    body: str | None = None,
    expected_updated_at: dt.datetime | None = None,
) -> Section:
    """Change a draft section's title or body. `expected_updated_at` (the time the editor
    loaded it) refuses an edit made over someone else's newer change."""
    _require_qa(actor, "edit a master file")
    reason = require_reason(reason)
    new_title = _check_title(title) if title is not None else None
    new_body = _check_body(body) if body is not None else None
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        _lock_draft(section.version)
        locked = Section.objects.select_for_update().get(pk=section.pk)
        if expected_updated_at is not None and locked.updated_at != expected_updated_at:
            raise ConflictError(
                "This section was changed by someone else since you opened it; reload it and "
                "apply your change again.",
                code="stale_edit",
            )
        changed: list[str] = []
        if new_title is not None and new_title != locked.title:
            locked.title, changed = new_title, [*changed, "title"]
        if new_body is not None and new_body != locked.body:
            locked.body, changed = new_body, [*changed, "body"]
        if not changed:
            return locked
        locked.save(update_fields=[*changed, "updated_at"])
        audit_event_record(
            event_type=MasterFileEvent.SECTION_CHANGED,
            actor=actor,
            target=locked,
            reason=reason,
            extra={"version": locked.version_id, "key": locked.key, "fields": changed},
        )
    section.title, section.body, section.updated_at = locked.title, locked.body, locked.updated_at
    return locked


def section_add(
    *,
    actor: User,
    version: MasterFileVersion,
    reason: str,
    key: str,
    title: str,
    body: str,
    after_key: str | None = None,
) -> Section:
    """Add a section to a draft, at the end or after the named section."""
    _require_qa(actor, "edit a master file")
    reason = require_reason(reason)
    title, body = _check_title(title), _check_body(body)
    try:
        section_key_validator(key)
    except ValidationError as exc:
        raise ApplicationError(f"key: {' '.join(exc.messages)}", code="invalid_key") from exc
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock_draft(version)
        sections = list(locked.sections.order_by("position", "key"))
        if len(sections) >= SECTIONS_MAX:
            raise ApplicationError(
                f"A version has at most {SECTIONS_MAX} sections.", code="too_many_sections"
            )
        if any(s.key == key for s in sections):
            raise ConflictError(f"This version already has a section {key!r}.", code="key_exists")
        if after_key is None:
            position = (sections[-1].position + 10) if sections else 10
        else:
            index = next((i for i, s in enumerate(sections) if s.key == after_key), None)
            if index is None:
                raise ApplicationError(f"No section {after_key!r} here.", code="unknown_section")
            _renumber([*sections[: index + 1], None, *sections[index + 1 :]])
            position = (index + 2) * 10
        section = Section.objects.create(
            version=locked, key=key, title=title, body=body, position=position, created_by=actor
        )
        audit_event_record(
            event_type=MasterFileEvent.SECTION_ADDED,
            actor=actor,
            target=section,
            reason=reason,
            extra={"version": locked.pk, "key": key},
        )
    return section


def _renumber(sections: list[Section | None]) -> None:
    """Positions 10, 20, 30… in this order; a None leaves a gap for a newcomer."""
    for index, section in enumerate(sections, start=1):
        if section is not None and section.position != index * 10:
            section.position = index * 10
            section.save(update_fields=["position", "updated_at"])


def sections_reorder(
    *, actor: User, version: MasterFileVersion, keys: list[str], reason: str
) -> list[Section]:
    _require_qa(actor, "edit a master file")
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock_draft(version)
        sections = {s.key: s for s in locked.sections.all()}
        if sorted(keys) != sorted(sections) or len(keys) != len(set(keys)):
            raise ApplicationError(
                "Name every section of the version exactly once, in the new order.",
                code="invalid_order",
                extra={"expected": sorted(sections)},
            )
        ordered = [sections[k] for k in keys]
        _renumber(list(ordered))
        audit_event_record(
            event_type=MasterFileEvent.SECTIONS_REORDERED,
            actor=actor,
            target=locked,
            reason=reason,
            extra={"order": keys},
        )
    return ordered


def change_summary_set(
    *, actor: User, version: MasterFileVersion, summary: str, reason: str
) -> MasterFileVersion:
    _require_qa(actor, "edit a master file")
    reason = require_reason(reason)
    summary = (summary or "").strip()
    if len(summary) > CHANGE_SUMMARY_MAX:
        raise ApplicationError(
            f"A change summary is at most {CHANGE_SUMMARY_MAX:,} characters.",
            code="summary_too_long",
        )
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock_draft(version)
        if locked.change_summary != summary:
            locked.change_summary = summary
            locked.save(update_fields=["change_summary", "updated_at"])
    version.change_summary = locked.change_summary
    return locked


#
# The lifecycle (issue 4 §4-5)
#


def _lock_for(version: MasterFileVersion, action: VersionAction) -> MasterFileVersion:
    locked = (
        MasterFileVersion.objects.select_for_update()
        .select_related("master_file__product")
        .get(pk=version.pk)
    )
    source, _target = ACTION_TRANSITIONS[action]
    if locked.status != source:
        raise TransitionNotAllowedError(
            f"Version {locked.number} is {locked.get_status_display().lower()}; "
            f"“{action.label}” is possible only when it is {source.label.lower()}.",
            code="transition_not_allowed",
        )
    return locked


def _set_status(version: MasterFileVersion, status: VersionStatus, *extra_fields: str) -> None:
    version.status = status
    version.status_changed_at = timezone.now()
    version.save(update_fields=["status", "status_changed_at", "updated_at", *extra_fields])


def _annex_freeze(version: MasterFileVersion, actor: User) -> int:
    """Copy the product's sites from the register into the version (MF-04 a-c)."""
    product = version.master_file.product
    for stale in version.annex_entries.all():  # a version returned to draft is re-frozen
        stale.delete()
    count = 0
    for link in annex_candidates(product):
        site = link.site
        lead = site.nominated_person
        AnnexEntry.objects.create(
            version=version,
            site=site,
            role=link.role,
            is_reference=(
                link.role == ProductSiteRole.MANUFACTURING and site.pk == product.reference_site_id
            ),
            site_code=site.code,
            site_name=site.name,
            kind=site.get_kind_display(),
            location=site.location,
            site_status=site.get_status_display(),
            host=site.host_organisation,
            lead=lead.printed_name if lead is not None else "",
            created_by=actor,
        )
        count += 1
    return count


def version_submit(*, actor: User, version: MasterFileVersion, reason: str) -> MasterFileVersion:
    """Send a draft for review: every section must have content, a later version needs a change
    summary, and the site annex is generated from the register and frozen."""
    _require_qa(actor, "submit a master file")
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock_for(version, VersionAction.SUBMIT)
        empty = empty_sections(locked)
        if empty:
            raise ConflictError(
                "These sections are empty: " + "; ".join(s.title for s in empty) + ".",
                code="sections_empty",
                extra={"sections": [s.key for s in empty]},
            )
        if locked.number > 1 and not locked.change_summary.strip():
            raise ConflictError(
                "Write the change summary before submitting a new version.",
                code="change_summary_required",
            )
        sites = _annex_freeze(locked, actor)
        locked.submitted_at = timezone.now()
        _set_status(locked, VersionStatus.IN_REVIEW, "submitted_at")
        audit_event_record(
            event_type=MasterFileEvent.SUBMITTED,
            actor=actor,
            target=locked,
            reason=reason,
            extra={"old": VersionStatus.DRAFT, "new": VersionStatus.IN_REVIEW, "sites": sites},
        )
    _notify_reviewers(locked, actor)
    version.status = locked.status
    return locked


def _notify_reviewers(version: MasterFileVersion, actor: User) -> None:
    from controlsite.accounts.models import RoleGrant

    reviewers = User.objects.filter(
        pk__in=RoleGrant.objects.filter(
            permissions.live_grants_q(), role__in=[Role.CONTROL_SITE_QA, Role.QP]
        ).values("user_id"),
        is_active=True,
    ).exclude(pk=actor.pk)
    notify(
        recipients=list(reviewers),
        subject=f"Master file {version.master_file.product.code} v{version.number} in review",
        body=(
            f"{actor.printed_name} submitted version {version.number} of the master file of "
            f"{version.master_file.product.name} for review. It needs Control Site QA's and a "
            "QP's approval."
        ),
        link=_version_url(version),
        severity="info",
    )


def version_return(*, actor: User, version: MasterFileVersion, reason: str) -> MasterFileVersion:
    """Send a version in review back to draft for changes. An approval given so far is
    withdrawn (its signature stays on record): the content will change, so both sign again."""
    _require_reviewer(actor)
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock_for(version, VersionAction.RETURN)
        now = timezone.now()
        for approval in locked.approvals.filter(withdrawn_at__isnull=True):
            approval.withdrawn_at = now
            approval.save(update_fields=["withdrawn_at", "updated_at"])
        _set_status(locked, VersionStatus.DRAFT)
        audit_event_record(
            event_type=MasterFileEvent.RETURNED,
            actor=actor,
            target=locked,
            reason=reason,
            extra={"old": VersionStatus.IN_REVIEW, "new": VersionStatus.DRAFT},
        )
    version.status = locked.status
    return locked


def version_approve(
    *,
    actor: User,
    version: MasterFileVersion,
    capacity: str,
    credentials: SignatureCredentials,
    reason: str,
) -> MasterFileVersion:
    """Approve a version in review with an e-signature ("approved"): first Control Site QA,
    then a QP, two different people (MF-03, ES-01). The second approval makes it approved."""
    if capacity not in ApprovalCapacity.values:
        raise ApplicationError(
            f"capacity must be one of: {', '.join(ApprovalCapacity.values)}.",
            code="invalid_capacity",
        )
    role = CAPACITY_ROLE[ApprovalCapacity(capacity)]
    if role not in permissions.user_roles(actor):
        raise PermissionRefusedError(
            f"Only a {role.label} may give the {ApprovalCapacity(capacity).label} approval."
        )
    reason = require_reason(reason)
    with signing_transaction(), audit_context(reason=reason, user=actor):
        locked = _lock_for(version, VersionAction.APPROVE)
        state = approval_state(locked)
        if capacity in state.done:
            raise ConflictError(
                f"The {ApprovalCapacity(capacity).label} approval was already given by "
                f"{state.done[capacity].signer.printed_name}.",
                code="already_approved",
            )
        if state.next_capacity != capacity:
            assert state.next_capacity is not None  # noqa: S101  (capacity not done → pending)
            raise ConflictError(
                f"The {state.next_capacity.label} approval comes first.",
                code="approval_out_of_order",
            )
        if any(a.signer_id == actor.pk for a in state.done.values()):
            raise SignatureRefusedError(
                "You have already approved this version in another capacity; the second "
                "approval must be by a different person.",
                code="same_signer",
                signer=actor,
                meaning=SignatureMeaning.APPROVED,
                target=f"masterfile.masterfileversion:{locked.pk}",
            )
        if capacity == APPROVAL_ORDER[0] and open_comment_count(locked):
            raise ConflictError(
                "Resolve the open review comments before approving.", code="comments_open"
            )
        signature = sign(
            signer=actor,
            credentials=credentials,
            record=locked,
            meaning=SignatureMeaning.APPROVED,
            reason=reason,
        )
        VersionApproval.objects.create(
            version=locked, capacity=capacity, signer=actor, signature=signature, created_by=actor
        )
        complete = state.next_capacity == APPROVAL_ORDER[-1]
        if complete:
            locked.approved_at = timezone.now()
            _set_status(locked, VersionStatus.APPROVED, "approved_at")
        audit_event_record(
            event_type=MasterFileEvent.APPROVED,
            actor=actor,
            target=locked,
            reason=reason,
            signature=signature,
            extra={
                "capacity": capacity,
                **(
                    {"old": VersionStatus.IN_REVIEW, "new": VersionStatus.APPROVED}
                    if complete
                    else {}
                ),
            },
        )
    version.status = locked.status
    return locked


def version_make_effective(
    *, actor: User, version: MasterFileVersion, reason: str
) -> MasterFileVersion:
    """Bring an approved version into effect today; the version it replaces is superseded in the
    same transaction, so the master file never has two, nor a moment with none."""
    _require_qa(actor, "make a master file effective")
    reason = require_reason(reason)
    today = timezone.localdate()
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        master_file = MasterFile.objects.select_for_update().get(pk=version.master_file_id)
        locked = _lock_for(version, VersionAction.MAKE_EFFECTIVE)
        previous = master_file.versions.filter(status=VersionStatus.EFFECTIVE).first()
        if previous is not None:
            previous.superseded_at = timezone.now()
            _set_status(previous, VersionStatus.SUPERSEDED, "superseded_at")
            audit_event_record(
                event_type=MasterFileEvent.SUPERSEDED,
                actor=actor,
                target=previous,
                reason=reason,
                extra={
                    "old": VersionStatus.EFFECTIVE,
                    "new": VersionStatus.SUPERSEDED,
                    "by": locked.number,
                },
            )
        locked.effective_date = today
        locked.next_review_date = add_months(today, master_file.review_interval_months)
        _set_status(locked, VersionStatus.EFFECTIVE, "effective_date", "next_review_date")
        audit_event_record(
            event_type=MasterFileEvent.MADE_EFFECTIVE,
            actor=actor,
            target=locked,
            reason=reason,
            extra={
                "old": VersionStatus.APPROVED,
                "new": VersionStatus.EFFECTIVE,
                "effective_date": today.isoformat(),
                "supersedes": previous.number if previous else None,
            },
        )
    version.status = locked.status
    return locked


#
# Review comments (issue 4 §5)
#


def comment_add(
    *,
    actor: User,
    version: MasterFileVersion,
    body: str,
    section: Section | None = None,
) -> ReviewComment:
    _require_reviewer(actor)
    body = (body or "").strip()
    if not body:
        raise ApplicationError("Write the comment.", code="comment_empty")
    if len(body) > COMMENT_MAX:
        raise ApplicationError(
            f"A comment is at most {COMMENT_MAX:,} characters.", code="comment_too_long"
        )
    if section is not None and section.version_id != version.pk:
        raise ApplicationError("That section is not part of this version.", code="wrong_section")
    with transaction.atomic(), audit_context(reason="review comment", user=actor):
        locked = MasterFileVersion.objects.select_for_update().get(pk=version.pk)
        if locked.status not in (VersionStatus.DRAFT, VersionStatus.IN_REVIEW):
            raise ConflictError(
                "Comments are taken while a version is in draft or in review.",
                code="review_closed",
            )
        comment = ReviewComment.objects.create(
            version=locked, section=section, author=actor, body=body, created_by=actor
        )
        audit_event_record(
            event_type=MasterFileEvent.COMMENTED,
            actor=actor,
            target=locked,
            extra={"comment": comment.pk, "section": section.key if section else None},
        )
    return comment


def comment_resolve(*, actor: User, comment: ReviewComment, resolution: str) -> ReviewComment:
    _require_reviewer(actor)
    resolution = (resolution or "").strip()
    if not resolution:
        raise ApplicationError("Say how the comment was resolved.", code="resolution_required")
    if len(resolution) > COMMENT_MAX:
        raise ApplicationError(
            f"A resolution is at most {COMMENT_MAX:,} characters.", code="resolution_too_long"
        )
    with transaction.atomic(), audit_context(reason=resolution, user=actor):
        locked = ReviewComment.objects.select_for_update().get(pk=comment.pk)
        if locked.resolved_at is not None:
            raise ConflictError("This comment is already resolved.", code="already_resolved")
        locked.resolved_at = timezone.now()
        locked.resolved_by = actor
        locked.resolution = resolution
        locked.save(update_fields=["resolved_at", "resolved_by", "resolution", "updated_at"])
        audit_event_record(
            event_type=MasterFileEvent.COMMENT_RESOLVED,
            actor=actor,
            target=locked.version,
            reason=resolution,
            extra={"comment": locked.pk},
        )
    return locked


#
# Reminders (MF-12)
#


def review_reminders_send(*, today: dt.date | None = None) -> int:
    """Remind each owner once per review date, REVIEW_REMINDER_DAYS before it."""
    today = today or timezone.localdate()
    sent = 0
    for version in versions_due_for_review(today=today):
        with transaction.atomic(), audit_context(reason="master-file review reminder"):
            locked = MasterFileVersion.objects.select_for_update().get(pk=version.pk)
            if locked.review_reminder_sent_for == locked.next_review_date:
                continue
            locked.review_reminder_sent_for = locked.next_review_date
            locked.save(update_fields=["review_reminder_sent_for", "updated_at"])
            product = version.master_file.product
            audit_event_record(
                event_type=MasterFileEvent.REVIEW_DUE,
                target=locked,
                as_system=True,
                extra={"next_review_date": str(locked.next_review_date)},
            )
            notify(
                recipients=[version.master_file.owner],
                subject=f"Master file {product.code} due for review on "
                f"{locked.next_review_date:%d %b %Y}",
                body=(
                    f"Version {locked.number} of the master file of {product.name} is due for "
                    f"its periodic review on {locked.next_review_date:%d %B %Y}. Start a new "
                    "draft to record the review."
                ),
                link=_version_url(locked),
                severity="warn",
            )
            sent += 1
    return sent
