"""Reads for comparability: limits in force, result series, per-site statistics, checks.

Statistics are computed in the database (count, mean and sample SD per site in one grouped
query), so a product with 200 sites x 1,000 results is one query for the whole table, not
one per site (design §8).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from django.db.models import Avg, Count, Max, Q, QuerySet, StdDev
from django.utils import timezone

from batches.choices import (
    CHECK_OPEN,
    VERDICT_BADGE,
    CheckStatus,
    LimitStatus,
)
from batches.models import (
    ComparabilityCheck,
    ComparabilitySignal,
    ComparabilitySnapshot,
    ReferenceLimit,
    Specification,
    TestResult,
)
from batches.stats import Equivalence, Summary, Verdict, welch_equivalence
from controlsite.accounts import permissions
from controlsite.accounts.roles import Capability
from controlsite.accounts.scope import token_site_limit
from masterfile.choices import ProductSiteRole
from masterfile.models import Product
from masterfile.selectors import live_product_sites, products_visible_to
from sites.models import Site
from sites.selectors import sites_visible_to

# Statistics and charts look back this far by default: a year, as the annual report does.
WINDOW_DAYS = 365
# A control chart shows at most this many of a site's latest results.
CHART_POINTS_MAX = 1000
# A run-rule evaluation looks at this many of a site's latest results: long enough for the
# longest rule (14 points) and for a run that began before the latest few results.
RULE_WINDOW = 60


@dataclasses.dataclass(frozen=True)
class Window:
    """The period results are drawn from: batches started at or after `start`, before `end`."""

    start: dt.datetime
    end: dt.datetime

    @classmethod
    def last_days(cls, days: int = WINDOW_DAYS, *, now: dt.datetime | None = None) -> Window:
        end = now or timezone.now()
        return cls(start=end - dt.timedelta(days=days), end=end)

    @classmethod
    def year(cls, year: int) -> Window:
        tz = dt.UTC
        return cls(
            start=dt.datetime(year, 1, 1, tzinfo=tz), end=dt.datetime(year + 1, 1, 1, tzinfo=tz)
        )


def _sees_all(user: Any) -> bool:
    return permissions.user_can(user, Capability.VIEW_ALL_SITES) and token_site_limit(user) is None


def limits_visible_to(user: Any) -> QuerySet[ReferenceLimit]:
    """Limits of the products this user may see (all of them for QA, QPs and inspectors)."""
    return ReferenceLimit.objects.filter(product__in=products_visible_to(user)).select_related(
        "product", "reference_site", "approved_by", "approval_signature"
    )


def active_limits(product: Product) -> list[ReferenceLimit]:
    return list(
        ReferenceLimit.objects.filter(product=product, status=LimitStatus.ACTIVE)
        .select_related("reference_site", "approved_by")
        .order_by("key")
    )


def active_limit(product: Product, key: str) -> ReferenceLimit | None:
    return (
        ReferenceLimit.objects.filter(product=product, key=key, status=LimitStatus.ACTIVE)
        .select_related("reference_site", "product")
        .first()
    )


@dataclasses.dataclass(frozen=True)
class Cqa:
    """A critical quality attribute of a product, as its latest template states it."""

    key: str
    name: str
    unit: str
    low: Any
    high: Any


def product_cqas(product: Product) -> list[Cqa]:
    """The product's CQAs by key, from the most recent template that has each (a key keeps its
    meaning across template versions)."""
    seen: dict[str, Cqa] = {}
    specs = Specification.objects.filter(template__product=product).order_by(
        "key", "-template__number"
    )
    for spec in specs.only("key", "name", "unit", "low", "high"):
        if spec.key not in seen:
            seen[spec.key] = Cqa(spec.key, spec.name, spec.unit, spec.low, spec.high)
    return list(seen.values())


def cqa_results(product_id: int, key: str) -> QuerySet[TestResult]:
    """Every result of one CQA of one product, at any site, under any template version."""
    return TestResult.objects.filter(
        specification__template__product_id=product_id, specification__key=key
    )


def comparability_sites(product: Product, *, user: Any = None) -> list[Site]:
    """The sites that make the product (live manufacturing links), the reference site first,
    limited to what `user` may see."""
    links = live_product_sites().filter(product=product, role=ProductSiteRole.MANUFACTURING)
    sites = Site.objects.filter(Q(pk__in=links.values("site_id")) | Q(pk=product.reference_site_id))
    if user is not None and not _sees_all(user):
        sites = sites.filter(pk__in=sites_visible_to(user).values("pk"))
    return sorted(sites, key=lambda s: (s.pk != product.reference_site_id, s.code))


def site_summaries(
    product_id: int, key: str, window: Window, *, site_ids: Iterable[int] | None = None
) -> dict[int, Summary]:
    """Count, mean and sample SD of each site's results in the window: one grouped query."""
    qs = cqa_results(product_id, key).filter(
        batch__created_at__gte=window.start, batch__created_at__lt=window.end
    )
    if site_ids is not None:
        qs = qs.filter(batch__site_id__in=list(site_ids))
    rows = qs.values("batch__site_id").annotate(
        n=Count("id"), mean=Avg("value"), sd=StdDev("value", sample=True), last=Max("created_at")
    )
    return {
        row["batch__site_id"]: Summary.from_aggregates(row["n"], row["mean"], row["sd"])
        for row in rows
    }


@dataclasses.dataclass(frozen=True)
class SeriesPoint:
    result_id: int
    batch_id: int
    batch_number: str
    when: dt.datetime
    value: float
    passed: bool = True


def site_series(
    product_id: int,
    key: str,
    site_id: int,
    window: Window | None = None,
    *,
    latest: int = CHART_POINTS_MAX,
) -> list[SeriesPoint]:
    """A site's results of one CQA in manufacture order (batch start), oldest first: at most
    the `latest` ones."""
    qs = cqa_results(product_id, key).filter(batch__site_id=site_id)
    if window is not None:
        qs = qs.filter(batch__created_at__gte=window.start, batch__created_at__lt=window.end)
    rows = list(
        qs.order_by("-batch__created_at", "-id").values_list(
            "id", "batch_id", "batch__number", "batch__created_at", "value", "passed"
        )[:latest]
    )
    rows.reverse()
    return [SeriesPoint(r[0], r[1], r[2], r[3], float(r[4]), r[5]) for r in rows]


@dataclasses.dataclass(frozen=True)
class SiteComparability:
    """One row of the comparability table: a site, its summary, its equivalence with the
    reference site and its open signals."""

    site: Site
    is_reference: bool
    summary: Summary
    equivalence: Equivalence | None
    signals: int

    @property
    def verdict(self) -> str:
        if self.is_reference:
            return ""
        return self.equivalence.verdict.value if self.equivalence else Verdict.TOO_LITTLE_DATA

    @property
    def badge(self) -> dict[str, str]:
        verdict = Verdict(self.verdict) if self.verdict else None
        if verdict is None:
            return {"label": "Reference site", "colour": "info"}
        return {"label": verdict.label, "colour": VERDICT_BADGE[verdict.value]}


def comparability_table(
    limit: ReferenceLimit,
    window: Window,
    *,
    sites: Sequence[Site],
    signal_days: int = WINDOW_DAYS,
) -> list[SiteComparability]:
    """Each site's statistics against the reference site, in three queries whatever the number
    of sites: the grouped summaries, and the signal counts."""
    summaries = site_summaries(limit.product_id, limit.key, window)
    reference = summaries.get(limit.reference_site_id, Summary.of([]))
    since = timezone.now() - dt.timedelta(days=signal_days)
    counts = dict(
        ComparabilitySignal.objects.filter(
            product_id=limit.product_id, key=limit.key, created_at__gte=since
        )
        .values("site_id")
        .annotate(n=Count("id"))
        .values_list("site_id", "n")
    )
    rows = []
    margin = float(limit.margin)
    for site in sites:
        summary = summaries.get(site.pk, Summary.of([]))
        is_reference = site.pk == limit.reference_site_id
        equivalence = None if is_reference else welch_equivalence(summary, reference, margin)
        rows.append(
            SiteComparability(site, is_reference, summary, equivalence, counts.get(site.pk, 0))
        )
    return rows


def limit_history(product: Product, key: str) -> QuerySet[ReferenceLimit]:
    return (
        ReferenceLimit.objects.filter(product=product, key=key)
        .select_related("approved_by", "approval_signature", "reference_site")
        .order_by("-approved_at")
    )


def signals_visible_to(user: Any) -> QuerySet[ComparabilitySignal]:
    qs = ComparabilitySignal.objects.select_related("product", "site", "batch")
    if _sees_all(user):
        return qs
    return qs.filter(site__in=sites_visible_to(user))


def site_snapshots(site_ids: Iterable[int]) -> dict[int, list[ComparabilitySnapshot]]:
    """The latest evaluation of each site under every limit in force: one query."""
    out: dict[int, list[ComparabilitySnapshot]] = {}
    snaps = ComparabilitySnapshot.objects.filter(
        site_id__in=list(site_ids), limit__status=LimitStatus.ACTIVE
    ).select_related("limit__product")
    for snap in snaps:
        out.setdefault(snap.site_id, []).append(snap)
    return out


#
# Annual checks (SO-09)
#


def checks_visible_to(user: Any) -> QuerySet[ComparabilityCheck]:
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return ComparabilityCheck.objects.none()
    qs = ComparabilityCheck.objects.select_related(
        "product", "site", "reference_site", "reviewed_by", "recorded_by", "review_signature"
    )
    if _sees_all(user):
        return qs
    return qs.filter(site__in=sites_visible_to(user))


def checks_overdue(today: dt.date | None = None) -> QuerySet[ComparabilityCheck]:
    today = today or timezone.localdate()
    return ComparabilityCheck.objects.filter(status__in=CHECK_OPEN, due_on__lt=today)


def last_reviewed_checks(site_ids: Iterable[int]) -> dict[int, ComparabilityCheck]:
    """Each site's most recent reviewed check (any product): one query."""
    out: dict[int, ComparabilityCheck] = {}
    qs = ComparabilityCheck.objects.filter(
        site_id__in=list(site_ids), status=CheckStatus.REVIEWED
    ).order_by("site_id", "-reviewed_at")
    for check in qs.select_related("product"):
        out.setdefault(check.site_id, check)
    return out
