"""Reads for products and master files: visibility, the manufacturing gate, diffs, reminders.

Visibility: Control Site QA, QPs and inspectors see every product; anyone else sees the products
made or tested at a site they may see (`sites_visible_to`), and answers 404 for the rest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
from typing import Any

from django.db.models import Count, Exists, F, Q, QuerySet

from controlsite.accounts import permissions
from controlsite.accounts.roles import Capability
from controlsite.accounts.scope import token_site_limit
from masterfile.choices import (
    APPROVAL_ORDER,
    REVIEW_REMINDER_DAYS,
    ApprovalCapacity,
    ExportStatus,
    ProductSiteRole,
    VersionStatus,
)
from masterfile.models import (
    AnnexEntry,
    MasterFile,
    MasterFileExport,
    MasterFileVersion,
    Product,
    ProductSite,
    ReviewComment,
    Section,
    SectionTemplate,
)
from sites.choices import SiteStatus
from sites.models import Site
from sites.selectors import sites_visible_to


def live_product_sites() -> QuerySet[ProductSite]:
    return ProductSite.objects.filter(ended_at__isnull=True)


def products_visible_to(user: Any) -> QuerySet[Product]:
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return Product.objects.none()
    if permissions.user_can(user, Capability.VIEW_ALL_SITES) and token_site_limit(user) is None:
        return Product.objects.all()
    visible = sites_visible_to(user)
    linked = live_product_sites().filter(site__in=visible).values("product_id")
    return Product.objects.filter(Q(pk__in=linked) | Q(reference_site__in=visible))


def product_get_for_user(*, user: Any, pk: Any) -> Product:
    """The product, if the user may see it; `Product.DoesNotExist` otherwise (→ 404)."""
    return products_visible_to(user).select_related("reference_site").get(pk=pk)


def master_files_visible_to(user: Any) -> QuerySet[MasterFile]:
    return MasterFile.objects.filter(product__in=products_visible_to(user)).select_related(
        "product", "owner"
    )


def versions_visible_to(user: Any) -> QuerySet[MasterFileVersion]:
    return MasterFileVersion.objects.filter(
        master_file__product__in=products_visible_to(user)
    ).select_related("master_file__product")


def version_get_for_user(*, user: Any, pk: Any) -> MasterFileVersion:
    return versions_visible_to(user).get(pk=pk)


def sections_visible_to(user: Any) -> QuerySet[Section]:
    return Section.objects.filter(version__in=versions_visible_to(user)).select_related(
        "version__master_file__product"
    )


def comments_visible_to(user: Any) -> QuerySet[ReviewComment]:
    return ReviewComment.objects.filter(version__in=versions_visible_to(user)).select_related(
        "author", "section", "resolved_by"
    )


def exports_visible_to(user: Any) -> QuerySet[MasterFileExport]:
    return MasterFileExport.objects.filter(version__in=versions_visible_to(user)).select_related(
        "version__master_file__product", "requested_by"
    )


def product_sites(product: Product) -> QuerySet[ProductSite]:
    return (
        live_product_sites()
        .filter(product=product)
        .select_related("site", "site__nominated_person")
        .order_by("role", "site__code")
    )


def section_templates() -> QuerySet[SectionTemplate]:
    return SectionTemplate.objects.filter(active=True).order_by("position", "key")


#
# Versions
#


def effective_version(product: Product) -> MasterFileVersion | None:
    return (
        MasterFileVersion.objects.filter(
            master_file__product=product, status=VersionStatus.EFFECTIVE
        )
        .select_related("master_file__product")
        .first()
    )


def open_version(master_file: MasterFile) -> MasterFileVersion | None:
    """The one version on its way to effect (draft, in review or approved), if any."""
    return master_file.versions.filter(
        status__in=[VersionStatus.DRAFT, VersionStatus.IN_REVIEW, VersionStatus.APPROVED]
    ).first()


def previous_version(version: MasterFileVersion) -> MasterFileVersion | None:
    """The version this one changes: the one it was started from, else the one numbered
    before it."""
    if version.based_on_id:
        return MasterFileVersion.objects.filter(pk=version.based_on_id).first()
    return (
        version.master_file.versions.filter(number__lt=version.number).order_by("-number").first()
    )


def version_sections(version: MasterFileVersion) -> list[Section]:
    return list(version.sections.order_by("position", "key"))


def version_annex(version: MasterFileVersion) -> list[AnnexEntry]:
    return list(version.annex_entries.order_by("role", "-is_reference", "site_code"))


def empty_sections(version: MasterFileVersion) -> list[Section]:
    return [s for s in version_sections(version) if not s.body.strip()]


@dataclasses.dataclass(frozen=True)
class ApprovalState:
    done: dict[str, Any]  # capacity → VersionApproval
    next_capacity: ApprovalCapacity | None

    @property
    def complete(self) -> bool:
        return self.next_capacity is None


def approval_state(version: MasterFileVersion) -> ApprovalState:
    done = {
        a.capacity: a
        for a in version.approvals.filter(withdrawn_at__isnull=True).select_related(
            "signer", "signature"
        )
    }
    pending = [c for c in APPROVAL_ORDER if c not in done]
    return ApprovalState(done=done, next_capacity=pending[0] if pending else None)


def open_comment_count(version: MasterFileVersion) -> int:
    return version.comments.filter(resolved_at__isnull=True).count()


#
# The manufacturing gate (issue 4 §6)
#


def site_listed_for_product(site: Site, product: Product) -> bool:
    """True only if the site is a manufacturing site in the annex of the product's effective
    master-file version — read from the database now (MF-01, MF-02)."""
    return AnnexEntry.objects.filter(
        version__master_file__product_id=product.pk,
        version__status=VersionStatus.EFFECTIVE,
        site_id=site.pk,
        role=ProductSiteRole.MANUFACTURING,
    ).exists()


def site_listed_exists(*, product_ref: Any, site_ref: Any) -> Exists:
    """`site_listed_for_product` as an SQL expression, for lists that annotate many rows at once
    (e.g. `site_listed_exists(product_ref=OuterRef("product_id"), site_ref=OuterRef("site_id"))`).
    """
    return Exists(
        AnnexEntry.objects.filter(
            version__master_file__product_id=product_ref,
            version__status=VersionStatus.EFFECTIVE,
            site_id=site_ref,
            role=ProductSiteRole.MANUFACTURING,
        )
    )


def annex_candidates(product: Product) -> list[ProductSite]:
    """The sites that go into a version's annex now: every live link to a site that has not
    ceased, manufacturing sites first, the reference site at the top."""
    links = list(product_sites(product).exclude(site__status=SiteStatus.CEASED))
    links.sort(
        key=lambda link: (
            link.role != ProductSiteRole.MANUFACTURING,
            link.site_id != product.reference_site_id,
            link.site.code,
        )
    )
    return links


#
# Diffs (issue 4 §5)
#


@dataclasses.dataclass(frozen=True)
class DiffLine:
    kind: str  # "same", "added", "removed"
    text: str


@dataclasses.dataclass(frozen=True)
class SectionDiff:
    key: str
    title: str
    old_title: str
    change: str  # "added", "removed", "changed", "moved", "unchanged"
    lines: tuple[DiffLine, ...] = ()

    @property
    def changed(self) -> bool:
        return self.change != "unchanged"


@dataclasses.dataclass(frozen=True)
class AnnexDiff:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    @property
    def any(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def _line_diff(old: str, new: str) -> tuple[DiffLine, ...]:
    a, b = old.splitlines(), new.splitlines()
    out: list[DiffLine] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            out.extend(DiffLine("same", line) for line in a[i1:i2])
            continue
        out.extend(DiffLine("removed", line) for line in a[i1:i2])
        out.extend(DiffLine("added", line) for line in b[j1:j2])
    return tuple(out)


def version_diff(old: MasterFileVersion, new: MasterFileVersion) -> list[SectionDiff]:
    """What changed from `old` to `new`, section by section, in `new`'s order (removed
    sections last)."""
    before = {s.key: s for s in version_sections(old)}
    after = version_sections(new)
    old_order = [s.key for s in before.values()]
    new_keys = {s.key for s in after}
    kept_old_order = [k for k in old_order if k in new_keys]
    kept_new_order = [s.key for s in after if s.key in before]
    diffs: list[SectionDiff] = []
    for section in after:
        prior = before.get(section.key)
        if prior is None:
            lines = tuple(DiffLine("added", line) for line in section.body.splitlines())
            diffs.append(SectionDiff(section.key, section.title, "", "added", lines))
            continue
        if prior.body != section.body or prior.title != section.title:
            change = "changed"
        elif kept_old_order.index(section.key) != kept_new_order.index(section.key):
            change = "moved"
        else:
            change = "unchanged"
        lines = _line_diff(prior.body, section.body) if change == "changed" else ()
        diffs.append(SectionDiff(section.key, section.title, prior.title, change, lines))
    for key, prior in before.items():
        if key not in new_keys:
            lines = tuple(DiffLine("removed", line) for line in prior.body.splitlines())
            diffs.append(SectionDiff(key, prior.title, prior.title, "removed", lines))
    return diffs


def annex_diff(old: MasterFileVersion, new: MasterFileVersion) -> AnnexDiff:
    def rows(version: MasterFileVersion) -> dict[tuple[str, str], tuple[str, ...]]:
        return {
            (a.site_code, a.role): (a.site_name, a.kind, a.location, a.site_status, a.host, a.lead)
            for a in version.annex_entries.all()
        }

    a, b = rows(old), rows(new)

    def label(key: tuple[str, str]) -> str:
        return f"{key[0]} ({ProductSiteRole(key[1]).label.lower()})"

    return AnnexDiff(
        added=tuple(label(k) for k in sorted(b.keys() - a.keys())),
        removed=tuple(label(k) for k in sorted(a.keys() - b.keys())),
        changed=tuple(label(k) for k in sorted(a.keys() & b.keys()) if a[k] != b[k]),
    )


#
# Lists and reminders
#


def version_status_counts(*, user: Any) -> dict[str, int]:
    rows = versions_visible_to(user).order_by().values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


def versions_due_for_review(*, today: dt.date) -> QuerySet[MasterFileVersion]:
    """Effective versions whose next review falls within the reminder window and whose owner
    has not been reminded of that date yet (MF-12)."""
    horizon = today + dt.timedelta(days=REVIEW_REMINDER_DAYS)
    return (
        MasterFileVersion.objects.filter(
            status=VersionStatus.EFFECTIVE,
            next_review_date__isnull=False,
            next_review_date__lte=horizon,
        )
        .exclude(review_reminder_sent_for=F("next_review_date"))
        .select_related("master_file__product", "master_file__owner")
    )


def export_in_flight(version: MasterFileVersion) -> MasterFileExport | None:
    return version.exports.filter(status__in=[ExportStatus.QUEUED, ExportStatus.RUNNING]).first()
