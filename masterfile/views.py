"""The master-file pages: products, their sites and master file, a version with its sections,
site annex, review comments, approvals and PDF exports, the section editor and the diff page
(issue 4; MF-01…MF-12, ES-01, DI-07).

Views stay thin: they fetch through a selector (a record someone may not see is a 404, never a
403), bind a form, call one service and redirect. A refused request re-renders the page with the
form as it was typed and the service's message, under the service's status code (400 bad input,
403 not allowed, 409 refused by the lifecycle, 422 signature refused).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Prefetch
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from controlsite.accounts import permissions
from controlsite.accounts.http import request_user
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability
from controlsite.errors import ApplicationError, PermissionRefusedError
from controlsite.signatures.forms import SignatureForm
from controlsite.signatures.models import SignatureMeaning
from controlsite.signatures.services import SignatureRefusedError, signatures_for
from masterfile import annual, exports, services
from masterfile.choices import (
    APPROVAL_ORDER,
    EXPORT_BADGE,
    OPEN_STATUSES,
    REVIEW_REMINDER_DAYS,
    VERSION_BADGE,
    ApprovalCapacity,
    Designation,
    ExportStatus,
    ProductSiteRole,
    SupplyStatus,
    VersionAction,
    VersionStatus,
)
from masterfile.forms import (
    AnnualReportRequestForm,
    AnnualReportSubmissionForm,
    ChangeSummaryForm,
    CommentForm,
    DiffForm,
    MasterFileForm,
    ProductEditForm,
    ProductRegisterForm,
    ProductSiteAddForm,
    ReasonForm,
    ReorderForm,
    ResolveForm,
    SectionAddForm,
    SectionEditForm,
    SectionPreviewForm,
)
from masterfile.markdown import render_markdown
from masterfile.models import (
    AnnexEntry,
    AnnualReport,
    MasterFile,
    MasterFileExport,
    MasterFileVersion,
    Product,
    ProductSite,
    ReviewComment,
    Section,
    VersionApproval,
)
from masterfile.selectors import (
    DiffLine,
    annex_candidates,
    annex_diff,
    comments_visible_to,
    exports_visible_to,
    previous_version,
    product_get_for_user,
    product_sites,
    products_visible_to,
    version_annex,
    version_diff,
    version_get_for_user,
    version_sections,
)
from masterfile.services import CAPACITY_ROLE
from sites.choices import STATUS_BADGE as SITE_STATUS_BADGE
from sites.choices import SiteStatus

LIST_PAGE_SIZE = 100
EXPORTS_SHOWN = 20
# Unchanged lines kept around a change on the diff page; longer runs fold into "N unchanged".
DIFF_CONTEXT = 2

# The road a version travels, drawn as a stepper; superseded is shown after it.
LIFECYCLE_ROAD = (
    VersionStatus.DRAFT,
    VersionStatus.IN_REVIEW,
    VersionStatus.APPROVED,
    VersionStatus.EFFECTIVE,
)
# Designation is a kind, not a status: a neutral colour each, so POC and MM read apart.
DESIGNATION_BADGE: dict[str, str] = {Designation.POC: "info", Designation.MM: "role"}
SUPPLY_BADGE: dict[str, str] = {
    SupplyStatus.LICENSED: "ok",
    SupplyStatus.INVESTIGATIONAL: "info",
    SupplyStatus.UNLICENSED: "warn",
}
DIFF_BADGE: dict[str, str] = {
    "added": "ok",
    "changed": "info",
    "moved": "warn",
    "removed": "block",
    "unchanged": "muted",
}
DIFF_LABEL: dict[str, str] = {
    "added": "Added",
    "changed": "Changed",
    "moved": "Moved",
    "removed": "Removed",
    "unchanged": "Unchanged",
}

# What each lifecycle step does, in words, beside its button (the services do it).
ACTION_CONSEQUENCES: dict[VersionAction, str] = {
    VersionAction.SUBMIT: (
        "The content freezes and the site annex is generated from the site register. Control "
        "Site QA and the QPs are told it is waiting for review."
    ),
    VersionAction.RETURN: (
        "Back to draft for changes. An approval given so far is withdrawn: both sign again "
        "after the next submission."
    ),
    VersionAction.MAKE_EFFECTIVE: (
        "In force from today; the version in force now is superseded at the same moment. Its "
        "annex decides which sites may manufacture."
    ),
}
ACTION_BUTTON: dict[VersionAction, str] = {
    VersionAction.SUBMIT: "Submit for review",
    VersionAction.RETURN: "Return to draft",
    VersionAction.MAKE_EFFECTIVE: "Make effective",
}
# The URL segment of each reason-only step.
ACTION_SLUGS: dict[str, VersionAction] = {
    VersionAction.SUBMIT.value: VersionAction.SUBMIT,
    VersionAction.RETURN.value: VersionAction.RETURN,
    VersionAction.MAKE_EFFECTIVE.value: VersionAction.MAKE_EFFECTIVE,
}


#
# Small helpers
#


@dataclasses.dataclass(frozen=True)
class Badge:
    """A coloured label; the colour comes from a choices module's badge dict."""

    label: str
    colour: str


def badge(choices: type[models.TextChoices], colours: dict[str, str], value: str) -> Badge:
    try:
        label = str(choices(value).label)
    except ValueError:
        label = value
    return Badge(label=label, colour=colours.get(value, "muted"))


def version_badge(version: MasterFileVersion) -> Badge:
    return badge(VersionStatus, VERSION_BADGE, version.status)


def _is_qa(user: Any) -> bool:
    """Control Site QA sees the forms that change products and master files (the services
    check again)."""
    return permissions.user_can(user, Capability.MANAGE_QUALITY_RECORDS)


def _is_reviewer(user: Any) -> bool:
    """QA and QPs comment, return, approve and export (the services check again)."""
    return _is_qa(user) or permissions.user_can(user, Capability.CERTIFY_BATCH)


def _require_qa(request: HttpRequest) -> User:
    user = request_user(request)
    if not _is_qa(user):
        raise PermissionDenied
    return user


def _require_reviewer(request: HttpRequest) -> User:
    user = request_user(request)
    if not _is_reviewer(user):
        raise PermissionDenied
    return user


def _refused(request: HttpRequest, exc: ApplicationError) -> int:
    """Show a service's refusal as a message; its status code answers the request."""
    if isinstance(exc, PermissionRefusedError):
        raise PermissionDenied(exc.message) from exc
    messages.error(request, exc.message)
    return exc.status_code


def _invalid(request: HttpRequest, what: str) -> int:
    messages.error(request, f"{what}: correct the fields marked below.")
    return 400


def _is_htmx_partial(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return htmx is not None and bool(htmx) and not htmx.boosted


def _product_or_404(request: HttpRequest, pk: int) -> Product:
    try:
        return product_get_for_user(user=request.user, pk=pk)
    except Product.DoesNotExist as exc:
        raise Http404 from exc


def _version_or_404(request: HttpRequest, pk: int) -> MasterFileVersion:
    try:
        return version_get_for_user(user=request.user, pk=pk)
    except MasterFileVersion.DoesNotExist as exc:
        raise Http404 from exc


def _export_or_404(request: HttpRequest, pk: int) -> MasterFileExport:
    try:
        return exports_visible_to(request.user).get(pk=pk)
    except MasterFileExport.DoesNotExist as exc:
        raise Http404 from exc


def _version_url(version: MasterFileVersion, anchor: str = "") -> str:
    url = reverse("masterfile:version-detail", args=[version.pk])
    return f"{url}#{anchor}" if anchor else url


def _product_url(product: Product, anchor: str = "") -> str:
    url = reverse("masterfile:product-detail", args=[product.pk])
    return f"{url}#{anchor}" if anchor else url


def _due_soon(day: dt.date | None) -> bool:
    """Within the reminder window of its review date, or past it (MF-12)."""
    if day is None:
        return False
    return day <= timezone.localdate() + dt.timedelta(days=REVIEW_REMINDER_DAYS)


#
# The product list
#


@dataclasses.dataclass(frozen=True)
class ProductRow:
    product: Product
    designation: Badge
    supply: Badge
    effective: MasterFileVersion | None
    open: MasterFileVersion | None
    open_status: Badge | None
    review_due: bool


def _current_versions(product: Product) -> list[MasterFileVersion]:
    master_file = getattr(product, "master_file", None)
    return list(getattr(master_file, "current_versions", [])) if master_file else []


@login_required
def index(request: HttpRequest) -> HttpResponse:
    """Every product the user may see, with its master file in force and the version on its way
    (a fixed number of queries: one for the page of products, one for their versions)."""
    current = MasterFileVersion.objects.filter(
        status__in=[VersionStatus.EFFECTIVE, *sorted(OPEN_STATUSES)]
    ).order_by("-number")
    qs = (
        products_visible_to(request.user)
        .select_related("reference_site", "master_file")
        .prefetch_related(
            Prefetch("master_file__versions", queryset=current, to_attr="current_versions")
        )
        .order_by("code")
    )
    after = (request.GET.get("after") or "").strip().upper()[:16]
    page = list((qs.filter(code__gt=after) if after else qs)[: LIST_PAGE_SIZE + 1])
    has_more = len(page) > LIST_PAGE_SIZE
    rows = []
    for product in page[:LIST_PAGE_SIZE]:
        versions = _current_versions(product)
        effective = next((v for v in versions if v.status == VersionStatus.EFFECTIVE), None)
        open_version = next((v for v in versions if v.status in OPEN_STATUSES), None)
        rows.append(
            ProductRow(
                product=product,
                designation=badge(Designation, DESIGNATION_BADGE, product.designation),
                supply=badge(SupplyStatus, SUPPLY_BADGE, product.supply_status),
                effective=effective,
                open=open_version,
                open_status=version_badge(open_version) if open_version else None,
                review_due=effective is not None and _due_soon(effective.next_review_date),
            )
        )
    context = {
        "rows": rows,
        "next_after": rows[-1].product.code if has_more else "",
        "paged": bool(after),
        "can_manage": _is_qa(request.user),
    }
    return render(request, "masterfile/list.html", context)


#
# Registering and editing a product
#


@login_required
def product_create(request: HttpRequest) -> HttpResponse:
    actor = _require_qa(request)
    form = ProductRegisterForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                product = services.product_register(
                    actor=actor,
                    reason=data["reason"],
                    code=data["code"],
                    name=data["name"],
                    designation=data["designation"],
                    designation_reference=data["designation_reference"],
                    designation_date=data["designation_date"],
                    dosage_form=data["dosage_form"],
                    shelf_life_minutes=data["shelf_life_minutes"],
                    supply_status=data["supply_status"],
                    reference_site=data["reference_site"],
                    owner=data["owner"],
                )
            except ApplicationError as exc:
                status = _refused(request, exc)
            else:
                messages.success(
                    request,
                    f"{product.code} registered, with its master file and a first draft built "
                    "from the default sections.",
                )
                return redirect("masterfile:product-detail", product.pk)
        else:
            status = _invalid(request, "The product was not registered")
    return render(
        request, "masterfile/product_form.html", {"form": form, "product": None}, status=status
    )


@login_required
def product_edit(request: HttpRequest, pk: int) -> HttpResponse:
    product = _product_or_404(request, pk)
    actor = _require_qa(request)
    form = ProductEditForm(request.POST or None, initial=ProductEditForm.initial_for(product))
    status = 200
    if request.method == "POST":
        if form.is_valid():
            changes = form.changes(product)
            if not changes:
                messages.info(request, f"{product.code}: nothing was changed.")
                return redirect("masterfile:product-detail", product.pk)
            try:
                services.product_update(
                    actor=actor,
                    product=product,
                    reason=form.cleaned_data["reason"],
                    changes=changes,
                )
            except ApplicationError as exc:
                status = _refused(request, exc)
            else:
                messages.success(request, f"{product.code}: details saved.")
                return redirect("masterfile:product-detail", product.pk)
        else:
            status = _invalid(request, "Not saved")
    return render(
        request,
        "masterfile/product_form.html",
        {"form": form, "product": product},
        status=status,
    )


#
# A product's page
#


@dataclasses.dataclass(frozen=True)
class SiteLinkRow:
    link: ProductSite
    role: Badge
    status: Badge
    is_reference: bool
    end_form: ReasonForm | None


@dataclasses.dataclass(frozen=True)
class VersionRow:
    version: MasterFileVersion
    status: Badge
    approvals: list[VersionApproval]


def _product_context(
    request: HttpRequest, product: Product, bound: dict[str, Any] | None = None
) -> dict[str, Any]:
    bound = bound or {}
    user = request.user
    can_manage = _is_qa(user)
    master_file = (
        MasterFile.objects.select_related("owner").filter(product=product).first()
    )  # one per product; None only for data loaded around the services
    links = list(product_sites(product))
    site_rows = []
    for link in links:
        is_reference = (
            link.role == ProductSiteRole.MANUFACTURING and link.site_id == product.reference_site_id
        )
        key = f"end-{link.pk}"
        site_rows.append(
            SiteLinkRow(
                link=link,
                role=badge(ProductSiteRole, {}, link.role),
                status=badge(SiteStatus, SITE_STATUS_BADGE, link.site.status),
                is_reference=is_reference,
                end_form=(bound.get(key) or ReasonForm(prefix=key))
                if can_manage and not is_reference
                else None,
            )
        )
    versions: list[VersionRow] = []
    open_version = None
    if master_file is not None:
        live = VersionApproval.objects.filter(withdrawn_at__isnull=True).select_related("signer")
        for v in (
            master_file.versions.select_related("based_on")
            .prefetch_related(
                Prefetch(
                    "approvals", queryset=live.order_by("created_at"), to_attr="live_approvals"
                )
            )
            .order_by("-number")
        ):
            versions.append(VersionRow(v, version_badge(v), list(v.live_approvals)))
            if v.status in OPEN_STATUSES:
                open_version = v
    effective = next(
        (r.version for r in versions if r.version.status == VersionStatus.EFFECTIVE), None
    )
    mf_initial = (
        {
            "owner": master_file.owner_id,
            "review_interval_months": master_file.review_interval_months,
        }
        if master_file is not None
        else {}
    )
    return {
        "product": product,
        "master_file": master_file,
        "designation": badge(Designation, DESIGNATION_BADGE, product.designation),
        "supply": badge(SupplyStatus, SUPPLY_BADGE, product.supply_status),
        "site_rows": site_rows,
        "versions": versions,
        "open_version": open_version,
        "effective": effective,
        "review_due": effective is not None and _due_soon(effective.next_review_date),
        "can_manage": can_manage,
        "site_form": bound.get("site") or ProductSiteAddForm(prefix="site"),
        "master_file_form": bound.get("masterfile")
        or MasterFileForm(prefix="masterfile", initial=mf_initial),
        "draft_form": bound.get("draft") or ReasonForm(prefix="draft"),
        "open_form": next(iter(bound), ""),
        **_annual_context(request, product, bound),
    }


@login_required
def product_detail(request: HttpRequest, pk: int) -> HttpResponse:
    product = _product_or_404(request, pk)
    return render(request, "masterfile/product_detail.html", _product_context(request, product))


def _product_again(
    request: HttpRequest, product: Product, bound: dict[str, Any], status: int
) -> HttpResponse:
    """The product page once more, with the form that failed as it was typed, open."""
    product.refresh_from_db()
    return render(
        request,
        "masterfile/product_detail.html",
        _product_context(request, product, bound),
        status=status,
    )


@login_required
@require_POST
def product_site_add(request: HttpRequest, pk: int) -> HttpResponse:
    product = _product_or_404(request, pk)
    actor = _require_qa(request)
    form = ProductSiteAddForm(request.POST, prefix="site")
    if not form.is_valid():
        return _product_again(request, product, {"site": form}, _invalid(request, "Not added"))
    data = form.cleaned_data
    try:
        link = services.product_site_add(
            actor=actor,
            product=product,
            site=data["site"],
            role=data["role"],
            reason=data["reason"],
        )
    except ApplicationError as exc:
        return _product_again(request, product, {"site": form}, _refused(request, exc))
    messages.success(
        request,
        f"{link.site.code} added as a {link.get_role_display().lower()} site. It enters the "
        "master file with the next version's annex.",
    )
    return redirect(_product_url(product, "sites"))


@login_required
@require_POST
def product_site_end(request: HttpRequest, pk: int, link_pk: int) -> HttpResponse:
    product = _product_or_404(request, pk)
    actor = _require_qa(request)
    try:
        link = product_sites(product).get(pk=link_pk)
    except ProductSite.DoesNotExist as exc:
        raise Http404 from exc
    key = f"end-{link.pk}"
    form = ReasonForm(request.POST, prefix=key)
    if not form.is_valid():
        return _product_again(request, product, {key: form}, _invalid(request, "Not removed"))
    try:
        services.product_site_end(actor=actor, link=link, reason=form.cleaned_data["reason"])
    except ApplicationError as exc:
        return _product_again(request, product, {key: form}, _refused(request, exc))
    messages.success(
        request,
        f"{link.site.code} removed as a {link.get_role_display().lower()} site. It leaves the "
        "master file with the next version's annex.",
    )
    return redirect(_product_url(product, "sites"))


@login_required
@require_POST
def master_file_edit(request: HttpRequest, pk: int) -> HttpResponse:
    product = _product_or_404(request, pk)
    actor = _require_qa(request)
    try:
        master_file = MasterFile.objects.get(product=product)
    except MasterFile.DoesNotExist as exc:
        raise Http404 from exc
    form = MasterFileForm(request.POST, prefix="masterfile")
    if not form.is_valid():
        status = _invalid(request, "Not saved")
        return _product_again(request, product, {"masterfile": form}, status)
    try:
        services.master_file_update(
            actor=actor,
            master_file=master_file,
            reason=form.cleaned_data["reason"],
            owner=form.cleaned_data["owner"],
            review_interval_months=form.cleaned_data["review_interval_months"],
        )
    except ApplicationError as exc:
        return _product_again(request, product, {"masterfile": form}, _refused(request, exc))
    messages.success(request, f"{product.code}: the master file's owner and review are saved.")
    return redirect(_product_url(product, "master-file"))


@login_required
@require_POST
def draft_start(request: HttpRequest, pk: int) -> HttpResponse:
    product = _product_or_404(request, pk)
    actor = _require_qa(request)
    try:
        master_file = MasterFile.objects.get(product=product)
    except MasterFile.DoesNotExist as exc:
        raise Http404 from exc
    form = ReasonForm(request.POST, prefix="draft")
    if not form.is_valid():
        return _product_again(request, product, {"draft": form}, _invalid(request, "Not started"))
    try:
        version = services.draft_start(
            actor=actor, master_file=master_file, reason=form.cleaned_data["reason"]
        )
    except ApplicationError as exc:
        return _product_again(request, product, {"draft": form}, _refused(request, exc))
    messages.success(
        request,
        f"Version {version.number} started as a draft"
        + (f", a copy of version {version.based_on.number}." if version.based_on else "."),
    )
    return redirect(_version_url(version))


#
# A version's page
#


@dataclasses.dataclass(frozen=True)
class Step:
    label: str
    state: str  # done | current | todo
    colour: str = ""


@dataclasses.dataclass(frozen=True)
class CommentRow:
    comment: ReviewComment
    resolve_form: ResolveForm | None


@dataclasses.dataclass(frozen=True)
class SectionRow:
    section: Section
    html: str
    empty: bool
    comments: list[CommentRow]


@dataclasses.dataclass(frozen=True)
class AnnexRow:
    code: str
    name: str
    role: str
    kind: str
    location: str
    status: str
    host: str
    lead: str
    is_reference: bool


@dataclasses.dataclass(frozen=True)
class ApprovalSlot:
    capacity: ApprovalCapacity
    approval: VersionApproval | None
    valid: bool
    is_next: bool
    can_sign: bool


@dataclasses.dataclass(frozen=True)
class ActionForm:
    action: VersionAction
    slug: str
    button: str
    consequence: str
    form: ReasonForm
    tone: str


@dataclasses.dataclass(frozen=True)
class ExportRow:
    export: MasterFileExport
    status: Badge
    polling: bool


def _lifecycle(version: MasterFileVersion) -> list[Step]:
    status = VersionStatus(version.status)
    if status in LIFECYCLE_ROAD:
        here = LIFECYCLE_ROAD.index(status)
        return [
            Step(
                label=str(s.label),
                state="done" if i < here else "current" if i == here else "todo",
                colour=VERSION_BADGE[s] if i == here else "",
            )
            for i, s in enumerate(LIFECYCLE_ROAD)
        ]
    steps = [Step(label=str(s.label), state="done") for s in LIFECYCLE_ROAD]
    steps.append(Step(label=str(status.label), state="current", colour=VERSION_BADGE[status]))
    return steps


def export_row(export: MasterFileExport) -> ExportRow:
    return ExportRow(
        export=export,
        status=badge(ExportStatus, EXPORT_BADGE, export.status),
        polling=export.status in (ExportStatus.QUEUED, ExportStatus.RUNNING),
    )


def _annex_rows(version: MasterFileVersion, product: Product) -> tuple[list[AnnexRow], bool]:
    """The frozen annex, or for a draft a preview of what submission will freeze."""
    if version.status == VersionStatus.DRAFT:
        rows = []
        for link in annex_candidates(product):
            site, lead = link.site, link.site.nominated_person
            rows.append(
                AnnexRow(
                    code=site.code,
                    name=site.name,
                    role=str(ProductSiteRole(link.role).label),
                    kind=site.get_kind_display(),
                    location=site.location,
                    status=site.get_status_display(),
                    host=site.host_organisation,
                    lead=lead.printed_name if lead is not None else "",
                    is_reference=link.role == ProductSiteRole.MANUFACTURING
                    and site.pk == product.reference_site_id,
                )
            )
        return rows, True
    entries: list[AnnexEntry] = version_annex(version)
    return [
        AnnexRow(
            code=e.site_code,
            name=e.site_name,
            role=e.get_role_display(),
            kind=e.kind,
            location=e.location,
            status=e.site_status,
            host=e.host,
            lead=e.lead,
            is_reference=e.is_reference,
        )
        for e in entries
    ], False


def _version_context(
    request: HttpRequest, version: MasterFileVersion, bound: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Everything the version page shows, in a fixed number of queries whatever the number of
    sections, comments or sites."""
    bound = bound or {}
    user = request.user
    product = version.master_file.product
    is_draft = version.status == VersionStatus.DRAFT
    is_qa = _is_qa(user)
    is_reviewer = _is_reviewer(user)
    can_edit = is_draft and is_qa
    reviewing = version.status in (VersionStatus.DRAFT, VersionStatus.IN_REVIEW)
    can_comment = reviewing and is_reviewer

    sections = version_sections(version)
    comments = list(comments_visible_to(user).filter(version=version).order_by("created_at", "id"))

    def comment_row(c: ReviewComment) -> CommentRow:
        key = f"resolve-{c.pk}"
        form = None
        if can_comment and c.resolved_at is None:
            form = bound.get(key) or ResolveForm(prefix=key)
        return CommentRow(comment=c, resolve_form=form)

    by_section: dict[int, list[CommentRow]] = defaultdict(list)
    overall: list[CommentRow] = []
    for c in comments:
        (by_section[c.section_id] if c.section_id else overall).append(comment_row(c))
    section_rows = [
        SectionRow(
            section=s,
            html=render_markdown(s.body),
            empty=not s.body.strip(),
            comments=by_section.get(s.pk, []),
        )
        for s in sections
    ]
    open_comments = sum(1 for c in comments if c.resolved_at is None)

    annex, annex_preview = _annex_rows(version, product)

    # Approvals: the two slots in order, each with its signature and whether it still holds.
    approvals = list(
        version.approvals.select_related("signer", "signature").order_by("created_at", "id")
    )
    live = {a.capacity: a for a in approvals if a.withdrawn_at is None}
    withdrawn = [a for a in approvals if a.withdrawn_at is not None]
    validity = {sig.pk: valid for sig, valid in signatures_for(version)} if approvals else {}
    next_capacity = (
        next((c for c in APPROVAL_ORDER if c not in live), None)
        if version.status == VersionStatus.IN_REVIEW
        else None
    )
    roles = permissions.user_roles(user)
    signed_already = any(a.signer_id == user.pk for a in live.values())
    slots = []
    for capacity in APPROVAL_ORDER:
        approval = live.get(capacity)
        is_next = capacity == next_capacity
        slots.append(
            ApprovalSlot(
                capacity=capacity,
                approval=approval,
                valid=bool(approval and validity.get(approval.signature_id, False)),
                is_next=is_next,
                can_sign=is_next and CAPACITY_ROLE[capacity] in roles and not signed_already,
            )
        )
    signing = any(slot.can_sign for slot in slots)
    signature_form = (
        bound.get("signature") or SignatureForm(request=request, meaning=SignatureMeaning.APPROVED)
        if signing
        else None
    )

    actions: list[ActionForm] = []
    wanted: list[tuple[VersionAction, str]] = []
    if is_draft and is_qa:
        wanted.append((VersionAction.SUBMIT, "button-primary"))
    if version.status == VersionStatus.IN_REVIEW and is_reviewer:
        wanted.append((VersionAction.RETURN, ""))
    if version.status == VersionStatus.APPROVED and is_qa:
        wanted.append((VersionAction.MAKE_EFFECTIVE, "button-primary"))
    for action, tone in wanted:
        actions.append(
            ActionForm(
                action=action,
                slug=action.value,
                button=ACTION_BUTTON[action],
                consequence=ACTION_CONSEQUENCES[action],
                form=bound.get(action.value) or ReasonForm(prefix=action.value),
                tone=tone,
            )
        )

    export_rows = [
        export_row(e)
        for e in version.exports.select_related("requested_by").order_by("-created_at", "-id")[
            :EXPORTS_SHOWN
        ]
    ]
    in_flight = any(row.polling for row in export_rows)
    previous = previous_version(version)
    empty = [row.section for row in section_rows if row.empty]
    return {
        "version": version,
        "product": product,
        "master_file": version.master_file,
        "status": version_badge(version),
        "lifecycle": _lifecycle(version),
        "is_draft": is_draft,
        "can_edit": can_edit,
        "can_comment": can_comment,
        "section_rows": section_rows,
        "overall_comments": overall,
        "open_comments": open_comments,
        "comment_count": len(comments),
        "annex": annex,
        "annex_preview": annex_preview,
        "slots": slots,
        "withdrawn": withdrawn,
        "signature_form": signature_form,
        "sign_capacity": next_capacity.value if signing and next_capacity else "",
        "sign_label": (
            f"Approve as {next_capacity.label}" if signing and next_capacity else "Approve"
        ),
        "approval_blocked_by_comments": next_capacity == APPROVAL_ORDER[0] and open_comments > 0,
        "actions": actions,
        "empty_sections": empty,
        "summary_needed": is_draft and version.number > 1 and not version.change_summary.strip(),
        "exports": export_rows,
        "can_export": is_reviewer,
        "export_in_flight": in_flight,
        "previous": previous,
        "summary_html": render_markdown(version.change_summary) if version.change_summary else "",
        "summary_form": bound.get("summary")
        or ChangeSummaryForm(prefix="summary", initial={"summary": version.change_summary}),
        "section_form": bound.get("section") or SectionAddForm(prefix="section", sections=sections),
        "reorder_form": bound.get("reorder") or ReorderForm(prefix="reorder", sections=sections),
        "comment_form": bound.get("comment") or CommentForm(prefix="comment", sections=sections),
        "open_form": next(iter(bound), ""),
    }


@login_required
def version_detail(request: HttpRequest, pk: int) -> HttpResponse:
    version = _version_or_404(request, pk)
    return render(request, "masterfile/version_detail.html", _version_context(request, version))


def _version_again(
    request: HttpRequest, version: MasterFileVersion, bound: dict[str, Any], status: int
) -> HttpResponse:
    """The version page once more, with the form that failed as it was typed, open."""
    version.refresh_from_db()
    return render(
        request,
        "masterfile/version_detail.html",
        _version_context(request, version, bound),
        status=status,
    )


@login_required
@require_POST
def version_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Submit, return to draft or make effective: a reason, then one service."""
    version = _version_or_404(request, pk)
    verb = ACTION_SLUGS.get(action)
    if verb is None:
        raise Http404
    actor = _require_reviewer(request)
    form = ReasonForm(request.POST, prefix=verb.value)
    if not form.is_valid():
        status = _invalid(request, f"Not done: {ACTION_BUTTON[verb].lower()}")
        return _version_again(request, version, {verb.value: form}, status)
    reason = form.cleaned_data["reason"]
    try:
        if verb == VersionAction.SUBMIT:
            services.version_submit(actor=actor, version=version, reason=reason)
            done = "submitted for review; the site annex is frozen"
        elif verb == VersionAction.RETURN:
            services.version_return(actor=actor, version=version, reason=reason)
            done = "returned to draft"
        else:
            services.version_make_effective(actor=actor, version=version, reason=reason)
            done = "effective from today"
    except ApplicationError as exc:
        return _version_again(request, version, {verb.value: form}, _refused(request, exc))
    messages.success(request, f"Version {version.number} is {done}.")
    return redirect(_version_url(version))


@login_required
@require_POST
def version_approve(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve in one capacity with an e-signature ("approved"), QA first, then a QP."""
    version = _version_or_404(request, pk)
    actor = _require_reviewer(request)
    capacity = request.POST.get("capacity", "")
    form = SignatureForm(request.POST, request=request, meaning=SignatureMeaning.APPROVED)
    if not form.is_valid():
        status = _invalid(request, "Not approved")
        return _version_again(request, version, {"signature": form}, status)
    try:
        services.version_approve(
            actor=actor,
            version=version,
            capacity=capacity,
            credentials=form.credentials(),
            reason=form.cleaned_data["reason"],
        )
    except SignatureRefusedError as exc:
        # Shown inside the signature dialog, which opens again by itself.
        form.add_error(None, exc.message)
        return _version_again(request, version, {"signature": form}, exc.status_code)
    except ApplicationError as exc:
        return _version_again(request, version, {"signature": form}, _refused(request, exc))
    form.mark_signed()
    label = ApprovalCapacity(capacity).label
    if version.status == VersionStatus.APPROVED:
        messages.success(
            request,
            f"Approved as {label} and signed. Both approvals are in: it may be made effective.",
        )
    else:
        messages.success(request, f"Approved as {label} and signed. A QP approves next.")
    return redirect(_version_url(version, "approvals"))


#
# Sections, the change summary and review comments
#


def _section_or_404(version: MasterFileVersion, section_pk: int) -> Section:
    try:
        return version.sections.get(pk=section_pk)
    except Section.DoesNotExist as exc:
        raise Http404 from exc


@login_required
def section_edit(request: HttpRequest, pk: int, section_pk: int) -> HttpResponse:
    """A draft section's editor: title, Markdown body, a reason, and a preview that writes
    nothing. The time the editor was loaded goes with the save, so a change made meanwhile by
    someone else is refused rather than overwritten."""
    version = _version_or_404(request, pk)
    section = _section_or_404(version, section_pk)
    actor = _require_qa(request)
    initial = {
        "title": section.title,
        "body": section.body,
        "loaded_at": section.updated_at.isoformat(),
    }
    form = SectionEditForm(request.POST or None, initial=initial)
    status = 200
    preview = None
    if request.method == "POST":
        if "preview" in request.POST:
            preview = render_markdown(request.POST.get("body", ""))
        elif form.is_valid():
            data = form.cleaned_data
            try:
                services.section_update(
                    actor=actor,
                    section=section,
                    reason=data["reason"],
                    title=data["title"],
                    body=data["body"],
                    expected_updated_at=data["loaded_at"],
                )
            except ApplicationError as exc:
                status = _refused(request, exc)
            else:
                messages.success(request, f"Saved: {section.title}.")
                return redirect(_version_url(version, f"section-{section.key}"))
        else:
            status = _invalid(request, "Not saved")
    elif not version.is_editable:
        messages.warning(
            request,
            f"Version {version.number} is {version.get_status_display().lower()}: its content is "
            "frozen. Start a new draft to change it.",
        )
        status = 409
    context = {
        "version": version,
        "product": version.master_file.product,
        "section": section,
        "status": version_badge(version),
        "form": form,
        "editable": version.is_editable,
        "preview": preview,
        "guidance_html": render_markdown(section.guidance) if section.guidance else "",
    }
    return render(request, "masterfile/section_edit.html", context, status=status)


@login_required
@require_POST
def section_preview(request: HttpRequest, pk: int) -> HttpResponse:
    """The Markdown as it will read (htmx): rendered, never written."""
    _version_or_404(request, pk)
    form = SectionPreviewForm(request.POST)
    body = form.cleaned_data["body"] if form.is_valid() else ""
    return render(
        request, "masterfile/partials/_preview.html", {"preview": render_markdown(body or "")}
    )


@login_required
@require_POST
def section_add(request: HttpRequest, pk: int) -> HttpResponse:
    version = _version_or_404(request, pk)
    actor = _require_qa(request)
    form = SectionAddForm(request.POST, prefix="section", sections=version_sections(version))
    if not form.is_valid():
        return _version_again(request, version, {"section": form}, _invalid(request, "Not added"))
    data = form.cleaned_data
    try:
        section = services.section_add(
            actor=actor,
            version=version,
            reason=data["reason"],
            key=data["key"],
            title=data["title"],
            body=data["body"],
            after_key=data["after_key"] or None,
        )
    except ApplicationError as exc:
        return _version_again(request, version, {"section": form}, _refused(request, exc))
    messages.success(request, f"Section added: {section.title}.")
    return redirect(_version_url(version, f"section-{section.key}"))


@login_required
@require_POST
def sections_reorder(request: HttpRequest, pk: int) -> HttpResponse:
    version = _version_or_404(request, pk)
    actor = _require_qa(request)
    form = ReorderForm(request.POST, prefix="reorder", sections=version_sections(version))
    if not form.is_valid():
        status = _invalid(request, "Not reordered")
        return _version_again(request, version, {"reorder": form}, status)
    try:
        services.sections_reorder(
            actor=actor, version=version, keys=form.keys(), reason=form.cleaned_data["reason"]
        )
    except ApplicationError as exc:
        return _version_again(request, version, {"reorder": form}, _refused(request, exc))
    messages.success(request, "The sections are in their new order.")
    return redirect(_version_url(version, "sections"))


@login_required
@require_POST
def change_summary(request: HttpRequest, pk: int) -> HttpResponse:
    version = _version_or_404(request, pk)
    actor = _require_qa(request)
    form = ChangeSummaryForm(request.POST, prefix="summary")
    if not form.is_valid():
        return _version_again(request, version, {"summary": form}, _invalid(request, "Not saved"))
    try:
        services.change_summary_set(
            actor=actor,
            version=version,
            summary=form.cleaned_data["summary"],
            reason=form.cleaned_data["reason"],
        )
    except ApplicationError as exc:
        return _version_again(request, version, {"summary": form}, _refused(request, exc))
    messages.success(request, "The change summary is saved.")
    return redirect(_version_url(version, "summary"))


@login_required
@require_POST
def comment_add(request: HttpRequest, pk: int) -> HttpResponse:
    version = _version_or_404(request, pk)
    actor = _require_reviewer(request)
    sections = version_sections(version)
    form = CommentForm(request.POST, prefix="comment", sections=sections)
    if not form.is_valid():
        return _version_again(request, version, {"comment": form}, _invalid(request, "Not added"))
    section_pk = form.cleaned_data["section"]
    section = next((s for s in sections if str(s.pk) == section_pk), None)
    try:
        services.comment_add(
            actor=actor, version=version, body=form.cleaned_data["body"], section=section
        )
    except ApplicationError as exc:
        return _version_again(request, version, {"comment": form}, _refused(request, exc))
    messages.success(request, "Comment added.")
    anchor = f"section-{section.key}" if section is not None else "comments"
    return redirect(_version_url(version, anchor))


@login_required
@require_POST
def comment_resolve(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        comment = comments_visible_to(request.user).select_related("version").get(pk=pk)
    except ReviewComment.DoesNotExist as exc:
        raise Http404 from exc
    version = _version_or_404(request, comment.version_id)
    actor = _require_reviewer(request)
    key = f"resolve-{comment.pk}"
    form = ResolveForm(request.POST, prefix=key)
    if not form.is_valid():
        return _version_again(request, version, {key: form}, _invalid(request, "Not resolved"))
    try:
        services.comment_resolve(
            actor=actor, comment=comment, resolution=form.cleaned_data["resolution"]
        )
    except ApplicationError as exc:
        return _version_again(request, version, {key: form}, _refused(request, exc))
    messages.success(request, "Comment resolved.")
    anchor = f"section-{comment.section.key}" if comment.section else "comments"
    return redirect(_version_url(version, anchor))


#
# Exports
#


@login_required
@require_POST
def export_create(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask for a PDF/A export: a job row now, the rendering in the background."""
    version = _version_or_404(request, pk)
    actor = request_user(request)
    try:
        export = exports.export_request(actor=actor, version=version)
    except ApplicationError as exc:
        return _version_again(request, version, {}, _refused(request, exc))
    messages.success(
        request,
        "Export queued"
        + (" (watermarked: DRAFT — not for submission)" if export.watermarked else "")
        + ". Its progress shows below; the download appears when it is done.",
    )
    return redirect(_version_url(version, "exports"))


@login_required
@require_GET
def export_status(request: HttpRequest, pk: int) -> HttpResponse:
    """One export's row, polled by htmx while it is queued or running."""
    export = _export_or_404(request, pk)
    if not _is_htmx_partial(request):
        return redirect(_version_url(export.version, f"export-{export.pk}"))
    row = export_row(export)
    version = export.version
    context = {
        "row": row,
        "can_export": _is_reviewer(request.user),
        # Once it has finished, the "Export PDF" button comes back (out of band).
        "oob": True,
        "version": version,
        "is_draft": version.status == VersionStatus.DRAFT,
        "export_in_flight": row.polling,
    }
    return render(request, "masterfile/partials/_export_row.html", context)


@login_required
@require_POST
def export_retry(request: HttpRequest, pk: int) -> HttpResponse:
    export = _export_or_404(request, pk)
    actor = request_user(request)
    try:
        exports.export_retry(actor=actor, export=export)
    except ApplicationError as exc:
        return _version_again(request, export.version, {}, _refused(request, exc))
    messages.success(request, "Export queued again.")
    return redirect(_version_url(export.version, "exports"))


@login_required
@require_GET
def export_download(request: HttpRequest, pk: int) -> HttpResponseBase:
    """The PDF, to whoever may see the version; each download is an audit event (checked
    against its recorded SHA-256 first)."""
    export = _export_or_404(request, pk)
    actor = request_user(request)
    try:
        exports.export_download_record(actor=actor, export=export)
    except ApplicationError as exc:
        return _version_again(request, export.version, {}, _refused(request, exc))
    return FileResponse(
        export.file.open("rb"),
        as_attachment=True,
        filename=export.filename,
        content_type="application/pdf",
    )


#
# The diff page
#


@dataclasses.dataclass(frozen=True)
class DiffRow:
    """A line of a section's diff, or a fold of unchanged lines (`folded` > 0)."""

    kind: str
    text: str
    folded: int = 0


@dataclasses.dataclass(frozen=True)
class SectionDiffRow:
    key: str
    title: str
    old_title: str
    change: Badge
    rows: list[DiffRow]
    added: int
    removed: int


def _fold(lines: tuple[DiffLine, ...]) -> list[DiffRow]:
    """Keep DIFF_CONTEXT unchanged lines around each change; fold longer unchanged runs."""
    changed = [i for i, line in enumerate(lines) if line.kind != "same"]
    keep: set[int] = set()
    for i in changed:
        keep.update(range(max(0, i - DIFF_CONTEXT), min(len(lines), i + DIFF_CONTEXT + 1)))
    rows: list[DiffRow] = []
    folded = 0
    for i, line in enumerate(lines):
        if line.kind == "same" and i not in keep:
            folded += 1
            continue
        if folded:
            rows.append(DiffRow("fold", "", folded))
            folded = 0
        rows.append(DiffRow(line.kind, line.text))
    if folded:
        rows.append(DiffRow("fold", "", folded))
    return rows


@login_required
@require_GET
def version_diff_page(request: HttpRequest, pk: int) -> HttpResponse:
    """What changed from an earlier version of the same master file, section by section."""
    version = _version_or_404(request, pk)
    earlier = list(
        version.master_file.versions.filter(number__lt=version.number).order_by("-number")
    )
    default = previous_version(version)
    choices = [
        (
            str(v.pk),
            f"v{v.number} — {v.get_status_display()}"
            + (f", effective {v.effective_date:%d %b %Y}" if v.effective_date else ""),
        )
        for v in earlier
    ]
    against: MasterFileVersion | None = None
    form = DiffForm(
        request.GET if "against" in request.GET else None,
        choices=choices,
        initial={"against": str(default.pk) if default else ""},
    )
    if "against" in request.GET:
        if not form.is_valid():
            raise Http404
        against = next(v for v in earlier if str(v.pk) == form.cleaned_data["against"])
    elif default is not None and default.number < version.number:
        against = default
    elif earlier:
        against = earlier[0]
    context: dict[str, Any] = {
        "version": version,
        "product": version.master_file.product,
        "status": version_badge(version),
        "against": against,
        "against_status": version_badge(against) if against else None,
        "form": form,
        "has_earlier": bool(earlier),
        "summary_html": render_markdown(version.change_summary) if version.change_summary else "",
    }
    if against is not None:
        is_draft = version.status == VersionStatus.DRAFT
        diffs = version_diff(against, version)
        rows = []
        for d in diffs:
            rows.append(
                SectionDiffRow(
                    key=d.key,
                    title=d.title,
                    old_title=d.old_title if d.old_title != d.title else "",
                    change=Badge(DIFF_LABEL[d.change], DIFF_BADGE[d.change]),
                    rows=_fold(d.lines)
                    if d.change == "changed"
                    else [DiffRow(line.kind, line.text) for line in d.lines],
                    added=sum(1 for line in d.lines if line.kind == "added"),
                    removed=sum(1 for line in d.lines if line.kind == "removed"),
                )
            )
        counts: dict[str, int] = defaultdict(int)
        for d in diffs:
            counts[d.change] += 1
        context.update(
            {
                "changed_rows": [r for r, d in zip(rows, diffs, strict=True) if d.changed],
                "unchanged_rows": [r for r, d in zip(rows, diffs, strict=True) if not d.changed],
                "counts": [
                    (Badge(DIFF_LABEL[k], DIFF_BADGE[k]), counts[k])
                    for k in ("added", "changed", "moved", "removed", "unchanged")
                    if counts[k]
                ],
                # A draft's annex is generated on submission: nothing to compare yet.
                "annex": annex_diff(against, version) if not is_draft else None,
                "annex_pending": is_draft,
            }
        )
    return render(request, "masterfile/diff.html", context)


#
# Annual reports (issue 8 §7; MF-07, RP-01)
#

ANNUAL_REPORTS_SHOWN = 20


@dataclasses.dataclass(frozen=True)
class AnnualReportRow:
    report: AnnualReport
    status: Badge
    polling: bool
    submission_form: AnnualReportSubmissionForm | None


def annual_report_row(
    report: AnnualReport, *, can_request: bool, bound: dict[str, Any] | None = None
) -> AnnualReportRow:
    key = f"submit-{report.pk}"
    may_submit = can_request and report.status == ExportStatus.DONE and report.submitted_on is None
    return AnnualReportRow(
        report=report,
        status=badge(ExportStatus, EXPORT_BADGE, report.status),
        polling=report.status in (ExportStatus.QUEUED, ExportStatus.RUNNING),
        submission_form=(
            (bound or {}).get(key)
            or AnnualReportSubmissionForm(
                prefix=key, initial={"submitted_on": timezone.localdate()}
            )
        )
        if may_submit
        else None,
    )


def _annual_context(
    request: HttpRequest, product: Product, bound: dict[str, Any]
) -> dict[str, Any]:
    """The product page's "Annual reports" card: due dates per year (MF-07), the reports with
    their progress, downloads and submissions. Hidden from anyone who does not see every
    site (a report shows every site's figures). Two queries."""
    user = request.user
    if not annual.may_see_reports(user):
        return {"show_annual": False}
    can_request = annual.may_request(user)
    reports = list(
        annual.annual_reports_visible_to(user)
        .filter(product=product)
        .order_by("-year", "-created_at", "-id")[:ANNUAL_REPORTS_SHOWN]
    )
    years = annual.report_years(product)
    return {
        "show_annual": True,
        "can_request_annual": can_request,
        "annual_rows": [
            annual_report_row(r, can_request=can_request, bound=bound) for r in reports
        ],
        "annual_years": annual.years_due(product, reports),
        "annual_in_flight": any(
            r.status in (ExportStatus.QUEUED, ExportStatus.RUNNING) for r in reports
        ),
        "annual_form": bound.get("annual") or AnnualReportRequestForm(prefix="annual", years=years),
    }


def _annual_or_404(request: HttpRequest, pk: int) -> AnnualReport:
    try:
        return annual.annual_reports_visible_to(request.user).get(pk=pk)
    except AnnualReport.DoesNotExist as exc:
        raise Http404 from exc


@login_required
@require_POST
def annual_report_create(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask for a product's annual report for a year: a job row now, the PDF in the background.
    A report of the same year already queued or running is the one shown."""
    product = _product_or_404(request, pk)
    actor = _require_qa(request)
    form = AnnualReportRequestForm(
        request.POST, prefix="annual", years=annual.report_years(product)
    )
    if not form.is_valid():
        return _product_again(request, product, {"annual": form}, _invalid(request, "Not asked"))
    try:
        report, created = annual.annual_report_request(
            actor=actor, product=product, year=form.cleaned_data["year"]
        )
    except ApplicationError as exc:
        return _product_again(request, product, {"annual": form}, _refused(request, exc))
    if created:
        messages.success(
            request,
            f"The {report.year} annual report is queued. Its progress shows below; the "
            "download appears when it is done.",
        )
    else:
        messages.info(
            request,
            f"The {report.year} annual report is already being made (report {report.pk}).",
        )
    return redirect(_product_url(product, f"annual-report-{report.pk}"))


@login_required
@require_GET
def annual_report_status(request: HttpRequest, pk: int) -> HttpResponse:
    """One annual report's row, polled by htmx while it is queued or running."""
    report = _annual_or_404(request, pk)
    if not _is_htmx_partial(request):
        return redirect(_product_url(report.product, f"annual-report-{report.pk}"))
    can_request = annual.may_request(request.user)
    return render(
        request,
        "masterfile/partials/_annual_report_row.html",
        {
            "row": annual_report_row(report, can_request=can_request),
            "can_request_annual": can_request,
        },
    )


@login_required
@require_POST
def annual_report_retry(request: HttpRequest, pk: int) -> HttpResponse:
    report = _annual_or_404(request, pk)
    actor = request_user(request)
    try:
        annual.annual_report_retry(actor=actor, report=report)
    except ApplicationError as exc:
        return _product_again(request, report.product, {}, _refused(request, exc))
    messages.success(request, "Annual report queued again.")
    return redirect(_product_url(report.product, f"annual-report-{report.pk}"))


@login_required
@require_GET
def annual_report_download(request: HttpRequest, pk: int) -> HttpResponseBase:
    """The PDF, to whoever may see the report; each download is an audit event (checked
    against its recorded SHA-256 first)."""
    report = _annual_or_404(request, pk)
    actor = request_user(request)
    try:
        annual.annual_report_download_record(actor=actor, report=report)
    except ApplicationError as exc:
        return _product_again(request, report.product, {}, _refused(request, exc))
    return FileResponse(
        report.file.open("rb"),
        as_attachment=True,
        filename=report.filename,
        content_type="application/pdf",
    )


@login_required
@require_POST
def annual_report_submission(request: HttpRequest, pk: int) -> HttpResponse:
    """Record that a finished report was submitted to the MHRA (day and reference)."""
    report = _annual_or_404(request, pk)
    actor = _require_qa(request)
    key = f"submit-{report.pk}"
    form = AnnualReportSubmissionForm(request.POST, prefix=key)
    if not form.is_valid():
        return _product_again(
            request, report.product, {key: form}, _invalid(request, "Not recorded")
        )
    try:
        annual.annual_report_submission_record(
            actor=actor,
            report=report,
            submitted_on=form.cleaned_data["submitted_on"],
            reference=form.cleaned_data["reference"],
            reason=form.cleaned_data["reason"],
        )
    except ApplicationError as exc:
        return _product_again(request, report.product, {key: form}, _refused(request, exc))
    messages.success(request, f"The submission of the {report.year} report is recorded.")
    return redirect(_product_url(report.product, f"annual-report-{report.pk}"))
