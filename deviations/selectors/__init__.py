"""Reads for deviations and CAPA: who sees what, lists, overdue (design §3)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncMonth
from django.utils import timezone

from batches.selectors import batches_visible_to
from controlsite.accounts import permissions
from controlsite.accounts.models import RoleGrant, User
from controlsite.accounts.roles import Capability, Role
from controlsite.accounts.scope import token_site_limit
from deviations.choices import (
    CAPA_OPEN,
    DEVIATION_OPEN,
    ActionStatus,
    DeviationStatus,
    RootCauseCategory,
)
from deviations.models import Capa, Deviation, OosInvestigation
from masterfile.models import Product
from sites.selectors import live_memberships, sites_visible_to


def _sees_every_site(user: Any) -> bool:
    return permissions.user_can(user, Capability.VIEW_ALL_SITES) and token_site_limit(user) is None


def _signed_in(user: Any) -> bool:
    return user is not None and getattr(user, "is_authenticated", False) and user.is_active


def deviations_visible_to(user: Any) -> QuerySet[Deviation]:
    """Every deviation for the Control Site's people; those of their sites for site staff."""
    if not _signed_in(user):
        return Deviation.objects.none()
    if _sees_every_site(user):
        return Deviation.objects.all()
    return Deviation.objects.filter(site__in=sites_visible_to(user))


def deviation_get_for_user(*, user: Any, number: str) -> Deviation:
    """The deviation, if the user may see it; `Deviation.DoesNotExist` otherwise (→ 404)."""
    return deviations_visible_to(user).select_related("site", "batch").get(number=number)


def capas_visible_to(user: Any) -> QuerySet[Capa]:
    """CAPAs of the sites the user may see; one tied to no site (an audit finding of the
    Control Site) only for those who see every site."""
    if not _signed_in(user):
        return Capa.objects.none()
    if _sees_every_site(user):
        return Capa.objects.all()
    return Capa.objects.filter(site__in=sites_visible_to(user))


def capa_list(user: Any, *, show: str, today: dt.date) -> QuerySet[Capa]:
    """The CAPA page's rows: open (the default), overdue (open past their due date) or all,
    soonest due first, each with its count of actions and of actions done — one query."""
    rows = capas_visible_to(user)
    if show == "all":
        rows = rows.order_by("-created_at", "-id")
    else:
        rows = rows.filter(status__in=CAPA_OPEN).order_by("due_on", "id")
        if show == "overdue":
            rows = rows.filter(due_on__lt=today)
    return rows.select_related("site", "owner", "deviation").annotate(
        actions_total=Count("actions"),
        actions_done=Count("actions", filter=Q(actions__status=ActionStatus.DONE)),
    )


def oos_visible_to(user: Any) -> QuerySet[OosInvestigation]:
    if not _signed_in(user):
        return OosInvestigation.objects.none()
    if _sees_every_site(user):
        return OosInvestigation.objects.all()
    return OosInvestigation.objects.filter(result__batch__site__in=sites_visible_to(user))


def class_in_force_q(deviation_class: str) -> Q:
    """Deviations whose class in force is `deviation_class`: QA's once confirmed, the raiser's
    proposal until then (`Deviation.deviation_class`)."""
    return Q(confirmed_class=deviation_class) | Q(
        confirmed_class="", proposed_class=deviation_class
    )


def capa_owner_choices(site: Any) -> QuerySet[User]:
    """The people a page offers as a CAPA or action owner: Control Site QA and QPs, and the
    people working at the CAPA's site now (the service checks each again)."""
    grants = RoleGrant.objects.filter(
        permissions.live_grants_q(), role__in=[Role.CONTROL_SITE_QA, Role.QP]
    ).values("user_id")
    at_site = Q()
    if site is not None:
        at_site = Q(pk__in=live_memberships().filter(site=site).values("user_id"))
    return (
        User.objects.filter(Q(pk__in=grants) | at_site, is_active=True)
        .distinct()
        .order_by("last_name", "first_name")
    )


def overdue_q(today: dt.date | None = None) -> Q:
    """Deviations past their triage date (still open) or their closure date (not closed)."""
    today = today or timezone.localdate()
    return Q(status__in=DEVIATION_OPEN) & (
        Q(status=DeviationStatus.OPEN, triage_due_on__lt=today) | Q(due_on__lt=today)
    )


#
# Trending (DV-06): per site per month, by class and root cause, against the network
#


@dataclasses.dataclass(frozen=True)
class MonthBar:
    month: dt.date
    by_class: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_class.values())


@dataclasses.dataclass(frozen=True)
class SiteRow:
    code: str
    name: str
    deviations: int
    batches: int
    is_reference: bool

    @property
    def per_100_batches(self) -> float | None:
        return round(100 * self.deviations / self.batches, 1) if self.batches else None


@dataclasses.dataclass(frozen=True)
class Trends:
    months: list[MonthBar]
    sites: list[SiteRow]
    causes: list[tuple[str, str, int]]
    network_per_site_month: float
    network_per_100_batches: float | None
    reference_per_100_batches: float | None
    start: dt.date

    @property
    def peak_month(self) -> int:
        return max((m.total for m in self.months), default=0)

    @property
    def peak_site(self) -> int:
        return max((s.deviations for s in self.sites), default=0)

    @property
    def peak_cause(self) -> int:
        return max((n for _v, _l, n in self.causes), default=0)


def _month_starts(start: dt.date, count: int) -> list[dt.date]:
    months, year, month = [], start.year, start.month
    for _ in range(count):
        months.append(dt.date(year, month, 1))
        month += 1
        if month == 13:
            year, month = year + 1, 1
    return months


def deviation_trends(*, user: Any, months: int = 12, product: Any = None) -> Trends:
    """Deviations per month by class, per site against the network (as counts and per 100
    batches made), and by root-cause category, over the last `months` months, in a fixed
    number of queries whatever the number of deviations (design §8)."""
    today = timezone.localdate()
    first = _month_starts(dt.date(today.year, today.month, 1), 1)[0]
    year, month = first.year, first.month - (months - 1)
    while month < 1:
        year, month = year - 1, month + 12
    start = dt.date(year, month, 1)
    window = deviations_visible_to(user).filter(created_at__date__gte=start)
    batches = batches_visible_to(user).filter(created_at__date__gte=start)
    if product is not None:
        window = window.filter(batch__product=product)
        batches = batches.filter(product=product)
    per_month: dict[dt.date, dict[str, int]] = {m: {} for m in _month_starts(start, months)}
    rows = (
        window.annotate(month=TruncMonth("created_at"))
        .values("month", "proposed_class", "confirmed_class")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in rows:
        key = row["month"].date() if isinstance(row["month"], dt.datetime) else row["month"]
        cls = row["confirmed_class"] or row["proposed_class"]
        bucket = per_month.setdefault(key, {})
        bucket[cls] = bucket.get(cls, 0) + row["n"]
    by_site = dict(window.values_list("site_id").annotate(n=Count("pk")).order_by())
    made = dict(batches.values_list("site_id").annotate(n=Count("pk")).order_by())
    references = set(
        Product.objects.filter(**({"pk": product.pk} if product is not None else {})).values_list(
            "reference_site_id", flat=True
        )
    )
    site_rows = [
        SiteRow(
            code=site.code,
            name=site.name,
            deviations=by_site.get(site.pk, 0),
            batches=made.get(site.pk, 0),
            is_reference=site.pk in references,
        )
        for site in sites_visible_to(user).filter(pk__in=set(by_site) | set(made)).order_by("code")
    ]
    causes_found = dict(
        window.exclude(root_cause_category="")
        .values_list("root_cause_category")
        .annotate(n=Count("pk"))
        .order_by()
    )
    causes = sorted(
        (
            (value, str(label), int(causes_found[value]))
            for value, label in RootCauseCategory.choices
            if causes_found.get(value)
        ),
        key=lambda c: -c[2],
    )
    total = sum(by_site.values())
    total_batches = sum(made.values())
    reference = [s for s in site_rows if s.is_reference]
    ref_devs = sum(s.deviations for s in reference)
    ref_batches = sum(s.batches for s in reference)
    return Trends(
        months=[MonthBar(m, per_month.get(m, {})) for m in _month_starts(start, months)],
        sites=site_rows,
        causes=causes,
        network_per_site_month=round(total / max(len(site_rows), 1) / months, 2),
        network_per_100_batches=round(100 * total / total_batches, 1) if total_batches else None,
        reference_per_100_batches=round(100 * ref_devs / ref_batches, 1) if ref_batches else None,
        start=start,
    )
