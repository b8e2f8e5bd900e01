"""Benchmarks of the deviation pages at scale (issue 6 "Speed"; design §8), for `tests.bench.run`.

  deviation list   GET `deviations:index` with 100,000 deviations over 200 sites, as QA.
  trend page       GET `deviations:trends` (12 months by class, per site against the network
                   and the reference site, by root cause) over the same table.

Each is timed (median of several GETs after a warm-up) against the home page measured in the
same run, and its queries are counted at a tenth of the table and at all of it: FIXED or GROWS.

The fixture is not app code: one deviation is raised, investigated and closed through
`deviations.services` (its QA signature is the one the bulk rows that are closed point at); the
rest are bulk-inserted (no history rows), spread over the sites, the last 12 months, the classes,
the statuses and the root-cause categories.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from tests.bench.sites import QueryCount, _analyze, _captured, _client_for, _median_ms, _slowest

if TYPE_CHECKING:
    from controlsite.accounts.models import User
    from sites.models import Site


@dataclasses.dataclass(frozen=True)
class DeviationBenchReport:
    results: list[tuple[str, int, float, float]]
    queries: list[QueryCount]
    notes: list[str]


def _sites(qa: User, count: int) -> list[Site]:
    from django.utils import timezone

    from sites.choices import SiteKind, SiteStatus
    from sites.models import Site

    now = timezone.now()
    return Site.objects.bulk_create(
        [
            Site(
                code=f"D{i:03d}",
                name=f"Bench deviation site {i}",
                kind=SiteKind.POC_HOSPITAL,
                host_organisation="Bench NHS Trust",
                address=f"{i} Hospital Road",
                status=SiteStatus.ACTIVE,
                status_changed_at=now,
                created_by=qa,
            )
            for i in range(count)
        ],
        batch_size=500,
    )


def _closed_through_the_services(qa: User, site: Site) -> Any:
    """One deviation the whole way, signed at closure; returns its closure signature."""
    from deviations import services
    from deviations.choices import DeviationAction
    from tests.masterfile.helpers import signing

    deviation = services.deviation_raise(
        actor=qa,
        site=site,
        title="Bench deviation closed through the services",
        description="Raised, triaged, investigated and closed.",
        proposed_class="minor",
    )
    services.deviation_confirm_class(
        actor=qa, deviation=deviation, deviation_class="minor", reason="bench"
    )
    for action in (DeviationAction.TRIAGE, DeviationAction.INVESTIGATE):
        deviation = services.deviation_transition(
            actor=qa, deviation=deviation, action=action, reason="bench"
        )
    deviation = services.deviation_update(
        actor=qa,
        deviation=deviation,
        reason="bench",
        changes={
            "impact_assessment": "None.",
            "root_cause_category": "equipment",
            "root_cause": "Bench.",
        },
    )
    deviation = services.deviation_transition(
        actor=qa,
        deviation=deviation,
        action=DeviationAction.CLOSE,
        reason="bench",
        credentials=signing(qa),
    )
    return deviation.closure_signature


def _grow(sites: list[Site], signature: Any, start: int, total: int) -> None:
    """Bulk-insert deviations `start`…`total - 1` over the last 12 months."""
    from django.utils import timezone

    from deviations.choices import DeviationClass, DeviationSource, DeviationStatus
    from deviations.models import Deviation

    now = timezone.now()
    classes = [DeviationClass.MINOR] * 6 + [DeviationClass.MAJOR] * 3 + [DeviationClass.CRITICAL]
    statuses = [DeviationStatus.CLOSED] * 6 + [
        DeviationStatus.OPEN,
        DeviationStatus.TRIAGED,
        DeviationStatus.INVESTIGATING,
        DeviationStatus.PENDING_CAPA,
    ]
    causes = ["equipment", "procedure", "material", "environment", "system", ""]

    def row(i: int) -> Deviation:
        created = now - dt.timedelta(minutes=(i * 5237) % (365 * 24 * 60))
        status = statuses[i % len(statuses)]
        cls = classes[(i // 7) % len(classes)]
        cause = causes[i % len(causes)] if status != DeviationStatus.OPEN else ""
        return Deviation(
            number=f"DEV-B-{i:07d}",
            site=sites[(i * 31) % len(sites)],
            source=DeviationSource.SITE,
            title=f"Bench deviation {i}",
            description="Bulk-loaded for the bench.",
            proposed_class=cls,
            confirmed_class="" if status == DeviationStatus.OPEN else cls,
            status=status,
            root_cause_category=cause,
            root_cause="Bench." if cause else "",
            occurred_at=created,
            triage_due_on=(created + dt.timedelta(days=1)).date(),
            due_on=(created + dt.timedelta(days=30)).date(),
            closure_signature=signature if status == DeviationStatus.CLOSED else None,
            closed_at=created + dt.timedelta(days=20) if status == DeviationStatus.CLOSED else None,
            created_at=created,
            updated_at=created,
        )

    chunk = 5000
    for lo in range(start, total, chunk):
        Deviation.objects.bulk_create([row(i) for i in range(lo, min(total, lo + chunk))])


def run_deviations(*, sites: int, deviations: int, repeats: int) -> DeviationBenchReport:
    from django.urls import reverse

    from controlsite.audit.context import audit_context
    from deviations.models import Deviation
    from tests.personas import make_persona

    qa = make_persona("qa", username="bench-d-qa")
    with audit_context(reason="bench"):
        every = _sites(qa, sites)
        signature = _closed_through_the_services(qa, every[0])
    client = _client_for(qa)
    pages = {
        "list": reverse("deviations:index"),
        "trends": reverse("deviations:trends"),
    }
    counts: dict[str, list[tuple[int, int]]] = {name: [] for name in pages}
    spent = 0.0
    made = 0
    for fraction in (10, 1):
        started = time.perf_counter()
        target = deviations // fraction
        _grow(every, signature, made, target)
        made = target
        spent += time.perf_counter() - started
        _analyze()
        size = Deviation.objects.count()
        for name, url in pages.items():
            counts[name].append((size, len(_captured(client, url))))

    baseline = _median_ms(client, reverse("home"), repeats)
    measured = {name: _median_ms(client, url, repeats) for name, url in pages.items()}
    n = Deviation.objects.count()
    return DeviationBenchReport(
        results=[
            ("deviation list page (GET deviations:index) vs home", n, baseline, measured["list"]),
            (
                "deviation trend page (GET deviations:trends) vs home",
                n,
                baseline,
                measured["trends"],
            ),
        ],
        queries=[
            QueryCount("deviation list page", *counts["list"][0], *counts["list"][1]),
            QueryCount("deviation trend page", *counts["trends"][0], *counts["trends"][1]),
        ],
        notes=[
            f"deviations fixture: {n} deviations over {sites} sites, bulk-inserted in "
            f"{spent:.1f} s (one raised and closed through the services)",
            f"slowest query (warm), deviation list: {_slowest(_captured(client, pages['list']))}",
            f"slowest query (warm), trend page: {_slowest(_captured(client, pages['trends']))}",
        ],
    )
