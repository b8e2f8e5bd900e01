"""Benchmarks of the oversight dashboard at scale (issue 8 "Speed"; SO-07; design §8), for
`tests.bench.run` (`--only oversight`), or alone:

    DJANGO_SETTINGS_MODULE=controlsite.settings.test .venv/bin/python -m tests.bench.oversight \
        [--sites 200]

  oversight page     GET `sites:oversight` as Control Site QA over `--ov-sites` sites, each with
                     its batches (`--ov-batches` in all, `--ov-recent` of them in the last 30
                     days), open and closed deviations, CAPAs (some overdue), audits, its
                     comparability snapshots under three CQAs' limits (a few "not shown", a few
                     signals, a few overdue checks) and `--ov-people` people trained against a
                     network curriculum of `--ov-items` items; against the plain site list
                     (GET `sites:index`) in the same run.
  oversight table    the same page's htmx partial (the table alone, as the page polls it).
  home as QA         the home page with the "Site oversight" panel (its flagging columns) and
                     training's compliance panel, against the site list.

Each page's queries are counted at a tenth of the sites and at all of them: FIXED or GROWS. The
notes give each column's own time (median), so the slowest column is named, and the flagged
sites found.

The fixture is not app code: sites, people, memberships, training records, batches, deviations,
CAPAs, audits, snapshots, signals and checks are bulk-inserted (no history rows; `created_at`
set to when each happened); the product, its master file, template and reference limits (QA
signatures) go through the real services.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from tests.bench.sites import QueryCount, _analyze, _captured, _client_for, _median_ms, _slowest

if TYPE_CHECKING:
    from django.db import models

    from batches.models import BatchTemplate, ReferenceLimit
    from controlsite.accounts.models import User
    from sites.models import Site
    from training.models import TrainingItem

CQAS = ("cqa-0", "cqa-1", "cqa-2")  # the CQAs with reference limits
PREFIX = "OV"


@dataclasses.dataclass(frozen=True)
class OversightBenchReport:
    results: list[tuple[str, int, float, float]]
    queries: list[QueryCount]
    notes: list[str]


@dataclasses.dataclass
class Fixture:
    qa: User
    trainer: User
    template: BatchTemplate
    limits: list[ReferenceLimit]
    items: list[TrainingItem]
    closure_signature: Any
    sites: list[Site] = dataclasses.field(default_factory=list)


@contextlib.contextmanager
def _as_recorded(*models_: type[models.Model]) -> Iterator[None]:
    """Let bulk inserts keep the `created_at` they are given (when the record happened), not
    the time of loading: auto_now_add is switched off for the fixture's inserts only."""
    fields = [m._meta.get_field("created_at") for m in models_]
    saved = [f.auto_now_add for f in fields]  # type: ignore[union-attr]
    for f in fields:
        f.auto_now_add = False  # type: ignore[union-attr]
    try:
        yield
    finally:
        for f, was in zip(fields, saved, strict=True):
            f.auto_now_add = was  # type: ignore[union-attr]


#
# The network: product, template, limits, curriculum (through the services where it matters)
#


def _network(items: int) -> Fixture:
    from batches.choices import LimitBasis
    from batches.comparability.services import reference_limit_approve
    from controlsite.audit.context import audit_context
    from sites.choices import SiteKind, SiteStatus
    from sites.models import Site
    from tests.bench.batches import _template
    from tests.bench.deviations import _closed_through_the_services
    from tests.masterfile.helpers import make_effective_version, make_product, signing
    from tests.personas import make_persona
    from training.choices import CurriculumRole, ItemKind
    from training.models import Curriculum, Requirement

    qa = make_persona("qa", username="bench-o-qa")
    qp = make_persona("qp", username="bench-o-qp")
    trainer = make_persona("trainer", username="bench-o-trainer")
    # Eager Celery tasks (master file approval, limits) start each with an empty audit context
    # and leave it so: each step that writes directly opens its own.
    with audit_context(reason="bench"):
        every = _training_items(qa, items)
        curriculum = Curriculum.objects.create(
            role=CurriculumRole.SITE_OPERATOR, title="Operators everywhere", created_by=qa
        )
        Requirement.objects.bulk_create(
            [
                Requirement(curriculum=curriculum, item=item, created_by=qa)
                for item in every
                if item.kind != ItemKind.ACCOUNTABILITY
            ]
        )
    with audit_context(reason="bench"):
        reference = Site.objects.create(
            code=f"{PREFIX}000",
            name="Bench oversight reference site",
            kind=SiteKind.POC_HOSPITAL,
            status=SiteStatus.ACTIVE,
            created_by=qa,
        )
        product = make_product(qa, reference, "BENCH-OV", shelf_life_minutes=24 * 60)
        make_effective_version(qa, qp, product)
        template = _template(qa, product)
    with audit_context(reason="bench"):
        signature = _closed_through_the_services(qa, reference)
    with audit_context(reason="bench"):
        limits = [
            reference_limit_approve(
                actor=qa,
                product=product,
                key=key,
                basis=LimitBasis.SPECIFICATION,
                margin="5",
                lower="50",
                upper="100",
                credentials=signing(qa),
                reason="bench",
            )
            for key in CQAS
        ]
    fixture = Fixture(qa, trainer, template, limits, every, signature)
    fixture.sites.append(reference)
    return fixture


def _training_items(qa: User, count: int) -> list[TrainingItem]:
    """The training bench's items (standard items, procedures with read-and-understood items,
    assessments), made here or, when that bench ran first in the same database, reused."""
    from tests.bench.training import _items
    from training.choices import ItemKind
    from training.models import TrainingItem

    if not TrainingItem.objects.filter(code__startswith="BENCH-").exists():
        return _items(qa, count)
    standard = [
        TrainingItem.objects.get(kind=ItemKind.ACCOUNTABILITY),
        TrainingItem.objects.get(code="GXP-IND"),
        TrainingItem.objects.get(code="GXP-REF"),
    ]
    return [*standard, *TrainingItem.objects.filter(code__startswith="BENCH-").order_by("code")][
        :count
    ]


#
# Growing the network: every record of sites [start, stop)
#


def _grow(
    fixture: Fixture, start: int, stop: int, *, people: int, batches: int, recent: int
) -> None:
    """Sites start…stop - 1 (site 0, the reference site, exists already) with all their
    records: `people` people, `batches` batches of which `recent` in the last 30 days, each."""
    from django.utils import timezone

    from controlsite.audit.context import audit_context
    from sites.choices import SiteKind, SiteStatus
    from sites.models import Site

    now = timezone.now()
    statuses = [SiteStatus.ACTIVE] * 16 + [
        SiteStatus.PAUSED,
        SiteStatus.SUSPENDED,
        SiteStatus.QUALIFIED,
        SiteStatus.CEASED,
    ]
    with audit_context(reason="bench"):
        new = Site.objects.bulk_create(
            [
                Site(
                    code=f"{PREFIX}{i:03d}",
                    name=f"Bench oversight site {i}",
                    kind=SiteKind.POC_HOSPITAL,
                    host_organisation="Bench NHS Trust",
                    address=f"{i} Hospital Road",
                    status=statuses[i % len(statuses)],
                    status_changed_at=now - dt.timedelta(days=i),
                    created_by=fixture.qa,
                )
                for i in range(max(start, 1), stop)
            ],
            batch_size=500,
        )
    fixture.sites += new
    sites = [s for s in fixture.sites if start <= int(s.code[len(PREFIX) :]) < stop]
    _staff(fixture, sites, people)
    _batches(fixture, sites, batches * len(sites), recent * len(sites))
    _quality(fixture, sites)
    _comparability(fixture, sites)


def _staff(fixture: Fixture, sites: list[Site], people: int) -> None:
    """`people` at each site (a lead and operators), each with a training history."""
    from controlsite.accounts.models import User
    from sites.choices import SiteRole
    from sites.models import SiteMembership
    from tests.bench.training import _histories

    made = User.objects.bulk_create(
        [
            User(
                username=f"bench-o-{site.code}-{k:02d}",
                first_name="Staff",
                last_name=f"{site.code} {k:02d}",
                password="!",
            )
            for site in sites
            for k in range(people)
        ],
        batch_size=2000,
    )
    SiteMembership.objects.bulk_create(
        [
            SiteMembership(
                site=site,
                user=made[n * people + k],
                role=SiteRole.SITE_LEAD if k == 0 else SiteRole.SITE_OPERATOR,
            )
            for n, site in enumerate(sites)
            for k in range(people)
        ],
        batch_size=2000,
    )
    _histories(made, fixture.items, fixture.trainer)


def _batches(fixture: Fixture, sites: list[Site], total: int, recent: int) -> None:
    """`recent` batches started in the last 30 days (some awaiting the QP, most decided, a few
    rejected), the rest over the two years before."""
    from django.utils import timezone

    from batches.choices import BatchStatus
    from batches.models import Batch

    now = timezone.now()
    template = fixture.template
    decided = [BatchStatus.CERTIFIED] * 8 + [
        BatchStatus.REJECTED,
        BatchStatus.CERTIFIED_UNDER_CONCESSION,
        BatchStatus.COMPLETED,
        BatchStatus.IN_PROGRESS,
    ]
    rows = []
    first = Batch.objects.count()
    for i in range(total):
        site = sites[i % len(sites)]
        n = first + i
        if i < recent:
            created = now - dt.timedelta(minutes=(n * 7919) % (29 * 24 * 60))
        else:
            created = now - dt.timedelta(days=31 + (n * 7) % 700)
        status = decided[(n // len(sites) + site.pk) % len(decided)]
        done = status not in (BatchStatus.IN_PROGRESS,)
        rows.append(
            Batch(
                number=f"{site.code}-{n:07d}",
                site=site,
                product_id=template.product_id,
                template=template,
                master_file_version_id=template.master_file_version_id,
                coi_reference=f"PT-O-{n:07d}",
                status=status,
                completed_at=created + dt.timedelta(hours=1) if done else None,
                expires_at=created + dt.timedelta(hours=25) if done else None,
                decided_at=created + dt.timedelta(hours=2)
                if status not in (BatchStatus.IN_PROGRESS, BatchStatus.COMPLETED)
                else None,
                created_at=created,
                updated_at=created,
            )
        )
    with _as_recorded(Batch):
        Batch.objects.bulk_create(rows, batch_size=5000)


def _quality(fixture: Fixture, sites: list[Site]) -> None:
    """Per site: open deviations of each class (a critical one at every 25th site), closed
    ones, two CAPAs (one overdue at every 10th site), an audit done and one planned."""
    from django.utils import timezone

    from deviations.choices import (
        CapaKind,
        CapaSource,
        CapaStatus,
        DeviationClass,
        DeviationSource,
        DeviationStatus,
    )
    from deviations.models import Capa, Deviation
    from sites.choices import SiteAuditStatus
    from sites.models import SiteAudit

    now = timezone.now()
    today = timezone.localdate()
    first = Deviation.objects.count()
    deviations: list[Deviation] = []
    capas: list[Capa] = []
    audits: list[SiteAudit] = []
    for site in sites:
        number = int(site.code[len(PREFIX) :])
        classes = [DeviationClass.MINOR] * 3 + [DeviationClass.MAJOR] * 2
        if number % 25 == 7:
            classes.append(DeviationClass.CRITICAL)
        plan = [(c, DeviationStatus.OPEN) for c in classes] + [
            (DeviationClass.MINOR, DeviationStatus.CLOSED)
        ] * 20
        for cls, status in plan:
            n = first + len(deviations)
            created = now - dt.timedelta(hours=(n * 37) % (300 * 24))
            closed = status == DeviationStatus.CLOSED
            deviations.append(
                Deviation(
                    number=f"DEV-O-{n:07d}",
                    site=site,
                    source=DeviationSource.SITE,
                    title=f"Bench deviation {n}",
                    description="Bulk-loaded for the bench.",
                    proposed_class=cls,
                    confirmed_class=cls if closed else "",
                    status=status,
                    root_cause_category="equipment" if closed else "",
                    root_cause="Bench." if closed else "",
                    occurred_at=created,
                    triage_due_on=(created + dt.timedelta(days=1)).date(),
                    due_on=(created + dt.timedelta(days=30)).date(),
                    closure_signature=fixture.closure_signature if closed else None,
                    closed_at=created + dt.timedelta(days=20) if closed else None,
                    created_at=created,
                    updated_at=created,
                )
            )
        for k in range(2):
            late = k == 0 and number % 10 == 3
            due = today - dt.timedelta(days=5) if late else today + dt.timedelta(days=20 + k)
            capas.append(
                Capa(
                    number=f"CAPA-O-{site.code}-{k}",
                    source=CapaSource.AUDIT,
                    audit_reference=f"AUD-{site.code}-{k}",
                    site=site,
                    kind=CapaKind.CORRECTIVE,
                    title="Bench CAPA",
                    description="Bulk-loaded for the bench.",
                    owner=fixture.qa,
                    due_on=due,
                    status=CapaStatus.OPEN,
                    effectiveness_due_on=due + dt.timedelta(days=60),
                    created_by=fixture.qa,
                )
            )
        done_on = today - dt.timedelta(days=30 + number % 400)
        audits += [
            SiteAudit(
                site=site,
                title="Annual GMP self-inspection",
                planned_for=done_on,
                done_on=done_on,
                status=SiteAuditStatus.DONE,
                created_by=fixture.qa,
            ),
            SiteAudit(
                site=site,
                title="QA visit",
                planned_for=today + dt.timedelta(days=number % 90 - 10),
                status=SiteAuditStatus.PLANNED,
                created_by=fixture.qa,
            ),
        ]
    with _as_recorded(Deviation):
        Deviation.objects.bulk_create(deviations, batch_size=5000)
    Capa.objects.bulk_create(capas, batch_size=2000)
    SiteAudit.objects.bulk_create(audits, batch_size=2000)


def _comparability(fixture: Fixture, sites: list[Site]) -> None:
    """A snapshot per site under each limit (the reference site's verdict empty; every 33rd
    site "not shown" with its signal, every 20th "too little data"), a run-rule signal at every
    40th site, and an annual check per site (overdue at every 30th)."""
    from django.utils import timezone

    from batches.choices import CheckStatus, ComparabilitySignalKind
    from batches.models import ComparabilityCheck, ComparabilitySignal, ComparabilitySnapshot

    now = timezone.now()
    today = timezone.localdate()
    product = fixture.template.product
    reference_id = product.reference_site_id
    snapshots, signals, checks = [], [], []
    for site in sites:
        number = int(site.code[len(PREFIX) :])
        verdict = (
            ""
            if site.pk == reference_id
            else "not_shown"
            if number % 33 == 5
            else "too_little_data"
            if number % 20 == 11
            else "comparable"
        )
        for limit in fixture.limits:
            snapshots.append(
                ComparabilitySnapshot(
                    limit=limit,
                    site=site,
                    n=40,
                    mean=91.0,
                    sd=2.0,
                    # "Not shown" for the first CQA only; the others comparable.
                    verdict="comparable"
                    if verdict == "not_shown" and limit.key != CQAS[0]
                    else verdict,
                    equivalence={},
                    rule_breaks=0,
                    evaluated_at=now,
                )
            )
        if verdict == "not_shown":
            signals.append(
                ComparabilitySignal(
                    kind=ComparabilitySignalKind.EQUIVALENCE,
                    product=product,
                    key=CQAS[0],
                    site=site,
                    limit=fixture.limits[0],
                    episode=f"limit-{fixture.limits[0].pk}",
                    detail={},
                    created_at=now - dt.timedelta(days=number % 60),
                )
            )
        if number % 40 == 17:
            signals.append(
                ComparabilitySignal(
                    kind=ComparabilitySignalKind.RUN_RULE,
                    product=product,
                    key=CQAS[1],
                    site=site,
                    limit=fixture.limits[1],
                    rule=2,
                    episode=f"r2-bench-{site.code}",
                    detail={},
                    created_at=now - dt.timedelta(days=number % 120),
                )
            )
        if site.pk != reference_id:
            late = number % 30 == 13
            checks.append(
                ComparabilityCheck(
                    product=product,
                    site=site,
                    reference_site_id=reference_id,
                    due_on=today + dt.timedelta(days=-4 if late else 20 + number),
                    status=CheckStatus.SCHEDULED,
                    created_by=fixture.qa,
                )
            )
    # The reference site's snapshots from the evaluation run when the limits were approved
    # give way to the bench's (snapshots are derived data, not GMP records).
    ComparabilitySnapshot.objects.filter(site__in=sites).delete()
    ComparabilitySnapshot.objects.bulk_create(snapshots, batch_size=2000)
    with _as_recorded(ComparabilitySignal):
        ComparabilitySignal.objects.bulk_create(signals)
    ComparabilityCheck.objects.bulk_create(checks)


#
# Measuring
#


def _median_call(repeats: int, fn: Callable[[], Any]) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _partial_ms(client: Any, url: str, repeats: int) -> float:
    def get() -> None:
        response = client.get(url, headers={"HX-Request": "true"})
        if response.status_code != 200:
            raise SystemExit(f"GET {url} (htmx) answered {response.status_code}: fix the bench.")

    return _median_call(repeats, get)


def _partial_queries(client: Any, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        client.get(url, headers={"HX-Request": "true"})
    return len(captured.captured_queries)


def run_oversight(
    *, sites: int, people: int, items: int, batches: int, recent: int, repeats: int
) -> OversightBenchReport:
    from django.test import RequestFactory
    from django.urls import reverse
    from django.utils import timezone

    from batches.models import Batch
    from controlsite import dashboard
    from deviations.models import Deviation
    from sites.choices import SiteStatus
    from sites.oversight import OversightQuery, oversight_panel, oversight_table
    from training.models import TrainingRecord

    started = time.perf_counter()
    fixture = _network(items)
    network_s = time.perf_counter() - started
    client = _client_for(fixture.qa)
    baseline_url = reverse("sites:index")
    page_url = reverse("sites:oversight")
    home_url = reverse("home")
    counts: dict[str, list[tuple[int, int]]] = {"page": [], "partial": [], "home": []}
    seed_s = 0.0
    made = 0
    for fraction in (10, 1):
        target = sites // fraction
        t0 = time.perf_counter()
        _grow(
            fixture,
            made,
            target,
            people=people,
            batches=batches // sites,
            recent=recent // sites,
        )
        made = target
        seed_s += time.perf_counter() - t0
        _analyze()
        shown = len([s for s in fixture.sites if s.status != SiteStatus.CEASED])
        counts["page"].append((shown, len(_captured(client, page_url))))
        counts["partial"].append((shown, _partial_queries(client, page_url)))
        counts["home"].append((shown, len(_captured(client, home_url))))

    baseline = _median_ms(client, baseline_url, repeats)
    page_ms = _median_ms(client, page_url, repeats)
    partial_ms = _partial_ms(client, page_url, repeats)
    home_ms = _median_ms(client, home_url, repeats)
    body = client.get(page_url).content

    ids = _visible_not_ceased_ids()  # the sites the page shows
    now = timezone.now()
    column_ms = {
        column.name: _median_call(repeats, lambda c=column: c.cells(ids, now))  # type: ignore[misc]
        for column in dashboard.oversight_columns()
    }
    table = oversight_table(user=fixture.qa, query=OversightQuery())
    request = RequestFactory().get(home_url)
    request.user = fixture.qa
    panel_ms = _median_call(repeats, lambda: oversight_panel(request))
    selector_ms = _median_call(
        repeats, lambda: oversight_table(user=fixture.qa, query=OversightQuery())
    )
    n_batches, n_devs = Batch.objects.count(), Deviation.objects.count()
    n_records = TrainingRecord.objects.count()
    shown = len(ids)
    rows = [
        ("oversight page (GET sites:oversight) vs site list", shown, baseline, page_ms),
        ("oversight table (htmx partial, polled) vs site list", shown, baseline, partial_ms),
        ("home as QA (oversight + compliance panels) vs site list", shown, baseline, home_ms),
    ]
    queries = [
        QueryCount("oversight page (sites)", *counts["page"][0], *counts["page"][1]),
        QueryCount("oversight table, htmx (sites)", *counts["partial"][0], *counts["partial"][1]),
        QueryCount("home as QA (sites)", *counts["home"][0], *counts["home"][1]),
    ]
    slowest = max(column_ms, key=lambda name: column_ms[name])
    notes = [
        f"oversight: {len(fixture.sites)} sites ({shown} not ceased), {people} people each "
        f"against {len(fixture.items)} items ({n_records} training records), {n_batches} "
        f"batches ({recent} in the last 30 days), {n_devs} deviations, bulk-loaded in "
        f"{seed_s:.1f} s; network (personas, product, master file, template, limits) in "
        f"{network_s:.1f} s",
        f"  oversight page       {page_ms:7.1f} ms median of {repeats}, table alone "
        f"{partial_ms:.1f} ms, site list {baseline:.1f} ms, QA's home {home_ms:.1f} ms; "
        f"{len(body) / 1024:.0f} KiB; {table.flagged} sites flagged",
        "  columns (ms, median): "
        + ", ".join(f"{name} {ms:.1f}" for name, ms in column_ms.items())
        + f"; slowest: {slowest}; the rows (oversight_table(), every column) {selector_ms:.1f}"
        f" ms, so rendering the page takes about {page_ms - selector_ms:.0f} ms",
        f'  home panel           the "Site oversight" panel alone {panel_ms:.1f} ms (its '
        "flagging columns); the rest of QA's home is the other panels (training's compliance "
        "panel evaluates every site's training live)",
        f"slowest query (warm), oversight page: {_slowest(_captured(client, page_url))}",
    ]
    return OversightBenchReport(rows, queries, notes)


def _visible_not_ceased_ids() -> list[int]:
    from sites.choices import SiteStatus
    from sites.models import Site

    return list(
        Site.objects.exclude(status=SiteStatus.CEASED).order_by("code").values_list("pk", flat=True)
    )


#
# Alone: `python -m tests.bench.oversight` (run.py's conventions, one group)
#


def main(argv: list[str] | None = None) -> int:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlsite.settings.test")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=200)
    parser.add_argument("--people", type=int, default=8, help="People working at each site.")
    parser.add_argument("--items", type=int, default=20, help="Items in the curriculum.")
    parser.add_argument("--batches", type=int, default=100_000, help="Batches in the table.")
    parser.add_argument("--recent", type=int, default=8_000, help="Of which in the last 30 d.")
    parser.add_argument("--repeats", type=int, default=7, help="Median of for page GETs.")
    args = parser.parse_args(argv)
    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment, teardown_test_environment

    if connection.vendor != "sqlite":
        connection.settings_dict.setdefault("TEST", {})
        connection.settings_dict["TEST"]["NAME"] = f"test_{connection.settings_dict['NAME']}_bench"
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        report = run_oversight(
            sites=args.sites,
            people=args.people,
            items=args.items,
            batches=args.batches,
            recent=args.recent,
            repeats=args.repeats,
        )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()
    print(f"Oversight benchmark on {connection.vendor}")
    print("ratio = measured / baseline, both measured in this run; lower is better.\n")
    for case, n, base, measured in report.results:
        print(f"{case:<58} n={n:<5} {base:8.1f} ms {measured:8.1f} ms  {measured / base:5.2f}x")
    print()
    for q in report.queries:
        print(
            f"{q.case:<34} {q.small_n:>4} sites: {q.small:>3} queries  {q.large_n:>4} sites: "
            f"{q.large:>3} queries  {q.verdict}"
        )
    print()
    for note in report.notes:
        print(note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
