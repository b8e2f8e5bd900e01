"""Benchmarks of the site pages at scale (design §8), for `tests.bench.run`.

  site list    GET `sites:index` with 1,000 sites (each with its onboarding checklist), as QA.
  site page    GET `sites:detail` of a site whose timeline holds 10,000 audit events.

Each is timed (median of several GETs through `django.test.Client`, after a warm-up) against the
home page, a page of the same layout that does little, measured in the same run. Each page's
queries are also counted at two sizes (a tenth, then all of it): a page whose count grows with
the table fails design §8, so the table says FIXED or GROWS.

The fixture is not app code: the 1,000 sites and their checklists are bulk-inserted (no history
rows; the architecture test scans only the app packages), while the timeline's site is registered
through `sites.services` and its events are appended with `audit_event_record()`, so the hash
chain stays whole (checked at the end).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.test import Client

    from controlsite.accounts.models import User
    from sites.models import Site

TIMELINE_SITE = "TL01"
HOSTS = (
    "Leeds Teaching Hospitals NHS Trust",
    "Manchester University NHS Foundation Trust",
    "University Hospitals Birmingham NHS Foundation Trust",
    "Guy's and St Thomas' NHS Foundation Trust",
    "Oxford University Hospitals NHS Foundation Trust",
    "NHS Greater Glasgow and Clyde",
    "Cardiff and Vale University Health Board",
    "Belfast Health and Social Care Trust",
)


@dataclasses.dataclass(frozen=True)
class QueryCount:
    """A page's queries at a small and a large size of the table it reads."""

    case: str
    small_n: int
    small: int
    large_n: int
    large: int

    @property
    def verdict(self) -> str:
        return "FIXED" if self.small == self.large else "GROWS"


def _qa_user() -> User:
    from controlsite.accounts.roles import Role
    from controlsite.accounts.services import role_grant, user_create

    qa = user_create(
        username="bench-qa",
        first_name="Bench",
        last_name="QA",
        created_by=None,
        reason="bench",
        validate=False,
    )
    role_grant(user=qa, role=Role.CONTROL_SITE_QA, granted_by=None, reason="bench")
    return qa


def _client_for(user: User) -> Client:
    from django.test import Client

    from controlsite.accounts.middleware import LAST_ACTIVITY_KEY

    client = Client()
    client.force_login(user, backend="controlsite.accounts.backends.LockoutAwareBackend")
    session = client.session
    session[LAST_ACTIVITY_KEY] = time.time()
    session.save()
    return client


def _grow_sites(qa: User, total: int) -> None:
    """Bulk-insert sites (and their five-item checklists) until there are `total`."""
    from django.utils import timezone

    from sites.choices import ChecklistItemStatus, SiteKind, SiteStatus
    from sites.models import OnboardingItem, Site

    start = Site.objects.count()
    statuses, kinds, now = list(SiteStatus), list(SiteKind), timezone.now()
    sites = Site.objects.bulk_create(
        [
            Site(
                code=f"S{i:05d}",
                name=f"Bench site {i}",
                kind=kinds[i % len(kinds)],
                host_organisation=HOSTS[i % len(HOSTS)],
                address=f"{i} Hospital Road",
                status=statuses[i % len(statuses)],
                status_changed_at=now,
                created_by=qa,
            )
            for i in range(start, total)
        ],
        batch_size=500,
    )
    OnboardingItem.objects.bulk_create(
        [
            OnboardingItem(
                site=site,
                key=f"item-{k}",
                title=f"Checklist item {k}",
                position=k,
                status=ChecklistItemStatus.OPEN if k >= 3 else ChecklistItemStatus.DONE,
                evidence_reference="" if k >= 3 else f"DOC-{site.code}-{k}",
                signed_off_by=None if k >= 3 else qa,
                signed_off_at=None if k >= 3 else now,
                created_by=qa,
            )
            for site in sites
            for k in range(5)
        ],
        batch_size=1000,
    )


def _grow_timeline(qa: User, site: Site, total: int) -> None:
    """Append audit events for the site, through the real chain, until it has `total`."""
    from django.db import transaction

    from controlsite.audit.models import AuditEvent
    from controlsite.audit.services import audit_event_record
    from sites.events import SiteEvent

    kinds = (
        (SiteEvent.UPDATED, {"old": {"address": "old"}, "new": {"address": "new"}}),
        (SiteEvent.EQUIPMENT_CHANGED, {"old": {"next_due": "2026-01-01"}, "new": {}}),
        (SiteEvent.MEMBER_ADDED, {"user": "bench-qa", "role": "site_operator"}),
        (SiteEvent.STATUS_CHANGED, {"action": "pause", "old": "active", "new": "paused"}),
    )
    have = AuditEvent.objects.filter(site_code=site.code).count()
    with transaction.atomic():
        for i in range(have, total):
            event_type, extra = kinds[i % len(kinds)]
            audit_event_record(
                event_type=event_type,
                actor=qa,
                target=site,
                site_code=site.code,
                extra=extra,
                reason=f"bench event {i}",
            )


def _analyze() -> None:
    """Give PostgreSQL's planner statistics for the new rows, as autovacuum would in production
    (without them it may plan a 10,000-event timeline as if the table were empty)."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def _captured(client: Client, url: str) -> list[dict[str, str]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        _get(client, url)
    return captured.captured_queries


def _slowest(queries: list[dict[str, str]]) -> str:
    worst = max(queries, key=lambda q: float(q["time"]))
    return f"{float(worst['time']) * 1000:.1f} ms: {worst['sql'][:160]}"


def _get(client: Client, url: str) -> Any:
    try:
        response = client.get(url)
    except Exception as exc:  # say which page failed, then stop
        raise SystemExit(f"GET {url} failed: {exc!r}") from exc
    if response.status_code != 200:
        raise SystemExit(f"GET {url} answered {response.status_code}, not 200: fix the bench.")
    return response


def _median_ms(client: Client, url: str, repeats: int) -> float:
    _get(client, url)  # warm-up: templates, caches, connection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _get(client, url)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


@dataclasses.dataclass(frozen=True)
class SitePagesReport:
    results: list[tuple[str, int, float, float]]  # case, n, baseline ms, measured ms
    queries: list[QueryCount]
    notes: list[str]


def run_site_pages(*, sites: int, events: int, repeats: int) -> SitePagesReport:
    from django.urls import reverse

    from controlsite.audit.context import audit_context
    from controlsite.audit.models import AuditEvent
    from controlsite.audit.services import audit_chain_verify
    from sites import services
    from sites.choices import SiteKind
    from sites.models import Site

    with audit_context(reason="bench"):
        qa = _qa_user()
        site = services.site_register(
            actor=qa,
            code=TIMELINE_SITE,
            name="Bench timeline site",
            kind=SiteKind.POC_HOSPITAL,
            host_organisation=HOSTS[0],
            reason="bench",
        )
    client = _client_for(qa)
    baseline_url = reverse("home")
    index_url = reverse("sites:index")
    detail_url = reverse("sites:detail", args=[site.code])

    def timeline_size() -> int:
        return AuditEvent.objects.filter(site_code=site.code).count()

    counts: dict[str, list[tuple[int, int]]] = {"index": [], "detail": []}
    spent = {"sites": 0.0, "events": 0.0}
    for fraction in (10, 1):
        with audit_context(reason="bench"):
            started = time.perf_counter()
            _grow_sites(qa, sites // fraction)
            spent["sites"] += time.perf_counter() - started
            started = time.perf_counter()
            _grow_timeline(qa, site, events // fraction)
            spent["events"] += time.perf_counter() - started
        _analyze()
        for name, url, size in (
            ("index", index_url, Site.objects.count()),
            ("detail", detail_url, timeline_size()),
        ):
            counts[name].append((size, len(_captured(client, url))))

    report = audit_chain_verify()
    if not report.intact:
        raise SystemExit(f"The bench chain is broken: {report.first_break}")

    baseline = _median_ms(client, baseline_url, repeats)
    index = _median_ms(client, index_url, repeats)
    detail = _median_ms(client, detail_url, repeats)
    pages = {"index": index_url, "detail": detail_url}
    n_sites, n_events = Site.objects.count(), timeline_size()
    slowest = {name: _slowest(_captured(client, url)) for name, url in pages.items()}
    results = [
        ("site list page (GET sites:index) vs home", n_sites, baseline, index),
        ("site page, its timeline (GET sites:detail) vs home", n_events, baseline, detail),
    ]
    queries = [
        QueryCount("site list page", *counts["index"][0], *counts["index"][1]),
        QueryCount("site page (timeline events)", *counts["detail"][0], *counts["detail"][1]),
    ]
    notes = [
        f"fixture: {n_sites} sites bulk-inserted in {spent['sites']:.1f} s; {n_events} timeline "
        f"events appended with audit_event_record() in {spent['events']:.1f} s; chain intact "
        f"({report.checked} events)",
        f"page medians of {repeats} GETs after a warm-up, as Control Site QA",
        f"slowest query (warm), site list page: {slowest['index']}",
        f"slowest query (warm), site page: {slowest['detail']}",
    ]
    return SitePagesReport(results, queries, notes)
