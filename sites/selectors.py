"""Reads for sites, and the one visibility rule every app uses (issue 3 §6).

`sites_visible_to(user)`: Control Site QA, QPs and inspectors see every site; anyone else sees
only the sites they are a member of; a token limited to some sites narrows either. Other apps
filter their records with `site__in=sites_visible_to(user)`, and answer 404 for the rest.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from controlsite.accounts import permissions
from controlsite.accounts.roles import Capability, Role
from controlsite.accounts.scope import token_site_limit
from controlsite.audit.models import AuditEvent
from sites.choices import MANUFACTURING, ChecklistItemStatus, SiteRole
from sites.models import (
    ControlSite,
    Equipment,
    NamedQP,
    OnboardingItem,
    RegulatoryNotification,
    Site,
    SiteAudit,
    SiteMembership,
)


def live_memberships() -> QuerySet[SiteMembership]:
    return SiteMembership.objects.filter(ended_at__isnull=True)


def sites_visible_to(user: Any) -> QuerySet[Site]:
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return Site.objects.none()
    if permissions.user_can(user, Capability.VIEW_ALL_SITES):
        qs = Site.objects.all()
    else:
        qs = Site.objects.filter(pk__in=live_memberships().filter(user=user).values("site_id"))
    limit = token_site_limit(user)
    if limit is not None:
        qs = qs.filter(code__in=limit)
    return qs


def site_get_for_user(*, user: Any, code: str) -> Site:
    """The site, if the user may see it; `Site.DoesNotExist` otherwise (→ 404, never 403)."""
    return sites_visible_to(user).get(code=code)


def user_site_codes(user: Any) -> list[str]:
    """For the header: the codes of the sites a person is a member of."""
    return list(
        live_memberships()
        .filter(user=user)
        .order_by("site__code")
        .values_list("site__code", flat=True)
        .distinct()
    )


def user_roles_at_site(user: Any, site: Site) -> set[SiteRole]:
    return {
        SiteRole(role)
        for role in live_memberships().filter(user=user, site=site).values_list("role", flat=True)
    }


#
# The switch (issue 3 §5)
#


def site_can_manufacture(site: Site) -> bool:
    """True only while the site is active — read from the database now, never from a stale
    object, so a suspension takes effect on the very next check."""
    return Site.objects.filter(pk=site.pk, status__in=list(MANUFACTURING)).exists()


#
# Lists and pages
#


@dataclasses.dataclass(frozen=True)
class SiteFilters:
    status: str = ""
    kind: str = ""
    host: str = ""
    q: str = ""


def site_list(*, user: Any, filters: SiteFilters) -> QuerySet[Site]:
    qs = sites_visible_to(user).select_related("nominated_person")
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.kind:
        qs = qs.filter(kind=filters.kind)
    if filters.host:
        qs = qs.filter(host_organisation__icontains=filters.host)
    if filters.q:
        qs = qs.filter(Q(code__icontains=filters.q) | Q(name__icontains=filters.q))
    # A correlated subquery, evaluated only for the rows of the page that is read (a grouped
    # count would aggregate the whole register before the page is cut).
    open_items = (
        OnboardingItem.objects.filter(site=OuterRef("pk"), status=ChecklistItemStatus.OPEN)
        .order_by()
        .values("site")
        .annotate(n=Count("id"))
        .values("n")[:1]
    )
    return qs.annotate(
        open_items=Coalesce(Subquery(open_items), Value(0), output_field=IntegerField())
    ).order_by("code")


def site_status_counts(*, user: Any) -> dict[str, int]:
    rows = sites_visible_to(user).values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


def site_timeline(
    *, site: Site, before_seq: int | None = None, limit: int = 50
) -> list[AuditEvent]:
    """The site's audit events, newest first, a page at a time (indexed on site_code, seq)."""
    qs = AuditEvent.objects.filter(site_code=site.code).select_related("signature")
    if before_seq is not None:
        qs = qs.filter(seq__lt=before_seq)
    return list(qs.order_by("-seq")[:limit])


def open_checklist_items(site: Site) -> list[OnboardingItem]:
    return list(site.checklist.filter(status=ChecklistItemStatus.OPEN).order_by("position", "key"))


def site_leads(site: Site) -> QuerySet[Any]:
    """The active people leading `site` now."""
    from controlsite.accounts.models import User

    leads = live_memberships().filter(site=site, role=SiteRole.SITE_LEAD).values("user_id")
    return User.objects.filter(is_active=True, pk__in=leads)


def site_people_to_alert(site: Site) -> list[Any]:
    """The site lead(s) and every QP: who hears at once when a site is suspended or ceased."""
    from controlsite.accounts.models import RoleGrant, User

    leads = live_memberships().filter(site=site, role=SiteRole.SITE_LEAD).values("user_id")
    qps = RoleGrant.objects.filter(permissions.live_grants_q(), role=Role.QP).values("user_id")
    ids = Q(pk__in=leads) | Q(pk__in=qps)
    if site.nominated_person_id:
        ids |= Q(pk=site.nominated_person_id)
    return list(User.objects.filter(ids, is_active=True).distinct())


def equipment_visible_to(user: Any) -> QuerySet[Equipment]:
    return Equipment.objects.filter(site__in=sites_visible_to(user)).select_related("site")


def site_audits_visible_to(user: Any) -> QuerySet[SiteAudit]:
    return SiteAudit.objects.filter(site__in=sites_visible_to(user)).select_related("site")


def memberships_visible_to(user: Any) -> QuerySet[SiteMembership]:
    return live_memberships().filter(site__in=sites_visible_to(user)).select_related("site", "user")


def regulatory_notifications_visible_to(user: Any) -> QuerySet[RegulatoryNotification]:
    """The MHRA log is the Control Site's: QA, QPs and inspectors."""
    if not permissions.user_can(user, Capability.VIEW_ALL_SITES):
        return RegulatoryNotification.objects.none()
    qs = RegulatoryNotification.objects.select_related("site", "sent_by")
    limit = token_site_limit(user)
    if limit is not None:
        # A token limited to some sites sees their notices, not the Control Site's own.
        qs = qs.filter(site__code__in=limit)
    return qs


def control_site() -> ControlSite | None:
    return ControlSite.objects.first()


def named_qps(control: ControlSite) -> QuerySet[NamedQP]:
    return control.named_qps.filter(named_until__isnull=True).select_related("user")
