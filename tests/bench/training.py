"""Benchmarks of training at scale (issue 7 "Speed"; design §8; TR-02, TR-05, TR-06), for
`tests.bench.run`.

  training matrix    GET `training:matrix` of a site where `--trainees` people (operators)
                     work against a curriculum of `--training-items` items (the accountability
                     item included), with their record history, as the site's lead, against the
                     lead's home page; and the selector `site_matrix()` alone against a plain
                     read of the same records. The page's and the selector's queries are counted
                     at a tenth of the people and at all of them: FIXED or GROWS.
  compliance panel   GET of the home page as Control Site QA, whose dashboard computes every
                     site's compliance with `site_compliance()` (the big site among them), against
                     the lead's home page, which has no such panel.
  qualification      `batches.services.step_record()` (lock, role, `user_is_qualified`, values,
                     e-signature, audit) by an operator whose site curriculum holds
                     `--training-items` items, against the same sign-off at a site with no
                     curriculum (only the accountability item is checked); its queries counted
                     with a curriculum of 5 items and of all of them: FIXED or GROWS.

The fixture is not app code. People, memberships, procedures and their versions, items,
curricula and records are bulk-inserted (no history rows): each person holds each item with a
history of one to three records (yearly renewals of the refresher and assessments, both
versions of a revised procedure), with about 3 % missing, 3 % lapsed (with an overdue
assignment) and 4 % due soon, as a site's matrix looks in practice. The product, its master
file, the template, the batches and every measured sign-off go through the real services.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import statistics
import time
from typing import TYPE_CHECKING, Any

from tests.bench.sites import QueryCount, _analyze, _captured, _client_for, _median_ms, _slowest

if TYPE_CHECKING:
    from batches.models import Batch, BatchTemplate
    from controlsite.accounts.models import User
    from sites.models import Site
    from training.models import TrainingItem

MATRIX_SITE = "TRM1"  # the big site: `trainees` people, the full curriculum
NO_CURRICULUM_SITE = "TRS0"  # step sign-offs checked against the accountability item only
SMALL_CURRICULUM_SITE = "TRS5"  # a curriculum of five items, for the query count
ASSESSMENTS = 7
SMALL_CURRICULUM = 5


@dataclasses.dataclass(frozen=True)
class TrainingBenchReport:
    results: list[tuple[str, int, float, float]]
    queries: list[QueryCount]
    notes: list[str]


@dataclasses.dataclass(frozen=True)
class Fixture:
    qa: User
    lead: User
    operator: User
    trainer: User
    sites: dict[str, Site]
    items: list[TrainingItem]  # the curriculum of the big site, accountability item first
    template: BatchTemplate


def _sites(qa: User) -> dict[str, Site]:
    from django.utils import timezone

    from sites.choices import SiteKind, SiteStatus
    from sites.models import Site

    now = timezone.now()
    codes = (MATRIX_SITE, NO_CURRICULUM_SITE, SMALL_CURRICULUM_SITE)
    made = Site.objects.bulk_create(
        [
            Site(
                code=code,
                name=f"Bench training site {code}",
                kind=SiteKind.POC_HOSPITAL,
                host_organisation="Bench NHS Trust",
                address=f"{code} Hospital Road",
                status=SiteStatus.ACTIVE,
                status_changed_at=now,
                created_by=qa,
            )
            for code in codes
        ]
    )
    return {site.code: site for site in made}


def _items(qa: User, count: int) -> list[TrainingItem]:
    """The accountability item, induction and refresher (from the migration), then procedures
    with their read-and-understood items (every other one revised: v1 superseded, v2 in force)
    and practical assessments, `count` items in all."""
    from django.utils import timezone

    from training.choices import ItemKind, VersionStatus
    from training.models import Procedure, ProcedureVersion, TrainingItem
    from training.standard import ensure_standard_items

    ensure_standard_items(TrainingItem)
    now = timezone.now()
    standard = [
        TrainingItem.objects.get(kind=ItemKind.ACCOUNTABILITY),
        TrainingItem.objects.get(code="GXP-IND"),
        TrainingItem.objects.get(code="GXP-REF"),
    ]
    sops = max(count - len(standard) - ASSESSMENTS, 0)
    procedures = Procedure.objects.bulk_create(
        [
            Procedure(number=f"BENCH-SOP-{i:03d}", title=f"Bench procedure {i}", created_by=qa)
            for i in range(sops)
        ]
    )
    versions = []
    for i, procedure in enumerate(procedures):
        common = {
            "procedure": procedure,
            "change_summary": "Bench.",
            "file": f"procedures/{procedure.number}/bench.pdf",
            "file_sha256": "0" * 64,
            "created_by": qa,
        }
        if i % 2:
            versions += [
                ProcedureVersion(
                    number=1,
                    status=VersionStatus.SUPERSEDED,
                    effective_on=(now - dt.timedelta(days=800)).date(),
                    effective_at=now - dt.timedelta(days=800),
                    superseded_at=now - dt.timedelta(days=400),
                    **common,
                ),
                ProcedureVersion(
                    number=2,
                    status=VersionStatus.EFFECTIVE,
                    effective_on=(now - dt.timedelta(days=400)).date(),
                    effective_at=now - dt.timedelta(days=400),
                    **common,
                ),
            ]
        else:
            versions.append(
                ProcedureVersion(
                    number=1,
                    status=VersionStatus.EFFECTIVE,
                    effective_on=(now - dt.timedelta(days=800)).date(),
                    effective_at=now - dt.timedelta(days=800),
                    **common,
                )
            )
    ProcedureVersion.objects.bulk_create(versions)
    sop_items = TrainingItem.objects.bulk_create(
        [
            TrainingItem(
                code=p.number,
                title=f"{p.title}: read and understood",
                kind=ItemKind.SOP,
                procedure=p,
                created_by=qa,
            )
            for p in procedures
        ]
    )
    assessments = TrainingItem.objects.bulk_create(
        [
            TrainingItem(
                code=f"BENCH-ASSESS-{i}",
                title=f"Bench practical assessment {i}",
                kind=ItemKind.ASSESSMENT,
                validity_months=12,
                created_by=qa,
            )
            for i in range(ASSESSMENTS)
        ]
    )
    return [*standard, *sop_items, *assessments][:count]


def _curriculum(qa: User, site: Site, items: list[TrainingItem]) -> None:
    """A site's operator curriculum of `items` (the accountability item is always required)."""
    from training.choices import CurriculumRole, ItemKind
    from training.models import Curriculum, Requirement

    curriculum = Curriculum.objects.create(
        role=CurriculumRole.SITE_OPERATOR, site=site, title=f"Operators at {site.code}"
    )
    Requirement.objects.bulk_create(
        [
            Requirement(curriculum=curriculum, item=item, created_by=qa)
            for item in items
            if item.kind != ItemKind.ACCOUNTABILITY
        ]
    )


def _histories(
    people: list[User], items: list[TrainingItem], trainer: User, *, complete: bool = False
) -> None:
    """Each person's record history of each item, and an open assignment for what is missing
    or lapsed (the shares in the module docstring); `complete`: every item held, none due soon
    (the accountability item is the persona's own)."""
    from django.utils import timezone

    from training.choices import AssignmentCause, ItemKind, RecordMethod
    from training.models import Assignment, ProcedureVersion, TrainingRecord

    now = timezone.now()
    year = dt.timedelta(days=365)
    versions: dict[int, list[ProcedureVersion]] = {}
    for version in ProcedureVersion.objects.filter(
        procedure_id__in=[i.procedure_id for i in items if i.procedure_id]
    ).order_by("number"):
        versions.setdefault(version.procedure_id, []).append(version)
    records: list[TrainingRecord] = []
    assignments: list[Assignment] = []

    def record(user: User, item: TrainingItem, at: dt.datetime, **extra: Any) -> None:
        records.append(
            TrainingRecord(
                user=user,
                item=item,
                method=RecordMethod.ENTERED,
                completed_at=at,
                trainer=trainer,
                notes="bench",
                **extra,
            )
        )

    for person in people:
        for j, item in enumerate(items):
            if complete and item.kind == ItemKind.ACCOUNTABILITY:
                continue
            share = 50 if complete else (person.pk * 31 + j * 17) % 100
            if share < 3 and item.kind != ItemKind.ACCOUNTABILITY:
                wanted = versions[item.procedure_id][-1] if item.procedure_id else None
                assignments.append(
                    Assignment(
                        user=person,
                        item=item,
                        cause=AssignmentCause.JOINED_SITE,
                        due_on=(now + dt.timedelta(days=20)).date(),
                        procedure_version=wanted,
                    )
                )
                continue
            if item.procedure_id:
                for k, version in enumerate(versions[item.procedure_id]):
                    read = now - dt.timedelta(days=700 - 300 * k)
                    record(person, item, read, procedure_version=version)
            elif item.validity_months:
                newest = now - dt.timedelta(days=(person.pk * 7 + j) % 300)
                if share < 6:
                    newest = now - year - dt.timedelta(days=10)  # lapsed
                    assignments.append(
                        Assignment(
                            user=person,
                            item=item,
                            cause=AssignmentCause.RENEWAL,
                            due_on=(newest + year).date(),
                        )
                    )
                elif share < 10:
                    newest = now - year + dt.timedelta(days=14)  # due soon
                for k in range(1 + (person.pk + j) % 3):
                    at = newest - k * year
                    record(person, item, at, expires_at=at + year)
            else:
                record(person, item, now - dt.timedelta(days=400 + (person.pk % 900)))
    TrainingRecord.objects.bulk_create(records, batch_size=5000)
    Assignment.objects.bulk_create(assignments, batch_size=5000)


def _people(start: int, stop: int, site: Site) -> list[User]:
    from controlsite.accounts.models import User
    from sites.choices import SiteRole
    from sites.models import SiteMembership

    people = User.objects.bulk_create(
        [
            User(
                username=f"bench-t-{i:05d}",
                first_name="Trainee",
                last_name=f"{i:05d}",
                password="!",  # unusable: they never sign in
            )
            for i in range(start, stop)
        ],
        batch_size=2000,
    )
    SiteMembership.objects.bulk_create(
        [SiteMembership(site=site, user=p, role=SiteRole.SITE_OPERATOR) for p in people],
        batch_size=2000,
    )
    return people


def _network(items: int) -> Fixture:
    """The personas, the three sites, the items and curricula, a product made at all three
    sites, and the operator who signs the steps, holding every item."""
    from controlsite.audit.context import audit_context
    from masterfile.choices import ProductSiteRole
    from masterfile.models import ProductSite
    from sites import services as site_services
    from sites.choices import SiteRole
    from tests.bench.batches import _template
    from tests.masterfile.helpers import make_effective_version, make_product
    from tests.personas import make_persona

    qa = make_persona("qa", username="bench-t-qa")
    qp = make_persona("qp", username="bench-t-qp")
    lead = make_persona("site_lead", username="bench-t-lead")
    operator = make_persona("operator", username="bench-t-op")
    trainer = make_persona("trainer", username="bench-t-trainer")
    with audit_context(reason="bench"):
        sites = _sites(qa)
        every = _items(qa, items)
        _curriculum(qa, sites[MATRIX_SITE], every)
        _curriculum(qa, sites[SMALL_CURRICULUM_SITE], every[:SMALL_CURRICULUM])
        _histories([operator], every, trainer, complete=True)
        product = make_product(qa, sites[MATRIX_SITE], "BENCH-T", shelf_life_minutes=24 * 60)
        ProductSite.objects.bulk_create(
            [
                ProductSite(product=product, site=sites[code], role=ProductSiteRole.MANUFACTURING)
                for code in (NO_CURRICULUM_SITE, SMALL_CURRICULUM_SITE)
            ]
        )
        make_effective_version(qa, qp, product)
        template = _template(qa, product)
        for site in sites.values():
            site_services.membership_add(
                actor=qa, site=site, user=operator, role=SiteRole.SITE_OPERATOR, reason="bench"
            )
        site_services.membership_add(
            actor=qa, site=sites[MATRIX_SITE], user=lead, role=SiteRole.SITE_LEAD, reason="bench"
        )
    return Fixture(qa, lead, operator, trainer, sites, every, template)


def _batches(fixture: Fixture, site: Site, count: int, prefix: str) -> list[Batch]:
    from batches import services
    from controlsite.audit.context import audit_context

    with audit_context(reason="bench"):
        return [
            services.batch_start(
                actor=fixture.operator,
                site=site,
                product=fixture.template.product,
                coi_reference=f"{prefix}-{i:04d}",
            )
            for i in range(count)
        ]


def _sign_off(fixture: Fixture, batch: Batch) -> float:
    """One step sign-off through the service; its time in ms."""
    from batches import services
    from controlsite.audit.context import audit_context
    from tests.masterfile.helpers import signing

    credentials = signing(fixture.operator)
    with audit_context(reason="bench"):
        t0 = time.perf_counter()
        services.step_record(
            actor=fixture.operator,
            batch=batch,
            position=1,
            values={"temp": "37"},
            credentials=credentials,
        )
        return (time.perf_counter() - t0) * 1000


def _sign_off_queries(fixture: Fixture, batch: Batch) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        _sign_off(fixture, batch)
    return len(captured.captured_queries)


def _best_ms(repeats: int, fn: Any) -> float:
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times[1:])


def run_training(*, people: int, items: int, repeats: int, signoffs: int) -> TrainingBenchReport:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from controlsite.audit.context import audit_context
    from training.models import Assignment, TrainingRecord
    from training.selectors import (
        QualificationQuery,
        qualifications,
        site_matrix,
        user_is_qualified,
    )

    started = time.perf_counter()
    fixture = _network(items)
    network_s = time.perf_counter() - started
    site = fixture.sites[MATRIX_SITE]
    lead = _client_for(fixture.lead)
    qa = _client_for(fixture.qa)
    home, matrix_url = reverse("home"), reverse("training:matrix", args=[site.code])

    counts: dict[str, list[tuple[int, int]]] = {"page": [], "selector": []}
    seed_s = 0.0
    made = 0
    for fraction in (10, 1):
        t0 = time.perf_counter()
        target = people // fraction
        with audit_context(reason="bench"):
            crowd = _people(made, target, site)
            _histories(crowd, fixture.items, fixture.trainer)
        made = target
        seed_s += time.perf_counter() - t0
        _analyze()
        size = len(site_matrix(site).rows)
        counts["page"].append((size, len(_captured(lead, matrix_url))))
        with CaptureQueriesContext(connection) as captured:
            site_matrix(site)
        counts["selector"].append((size, len(captured.captured_queries)))

    matrix = site_matrix(site)
    member_ids = [row.user.pk for row in matrix.rows]
    item_ids = [item.pk for item in matrix.items]

    def plain_read() -> None:
        list(
            TrainingRecord.objects.filter(user_id__in=member_ids, item_id__in=item_ids).values_list(
                "user_id", "item_id", "completed_at", "expires_at"
            )
        )

    baseline_home = _median_ms(lead, home, repeats)
    page_ms = _median_ms(lead, matrix_url, repeats)
    qa_home_ms = _median_ms(qa, home, repeats)
    plain_ms = _best_ms(repeats, plain_read)
    selector_ms = _best_ms(repeats, lambda: site_matrix(site))
    page_bytes = len(lead.get(matrix_url).content)

    # The qualification check inside a step sign-off, with and without a curriculum.
    full = _batches(fixture, site, signoffs, "TQ-FULL")
    none = _batches(fixture, fixture.sites[NO_CURRICULUM_SITE], signoffs, "TQ-NONE")
    small = _batches(fixture, fixture.sites[SMALL_CURRICULUM_SITE], 1, "TQ-SMALL")
    extra_full = _batches(fixture, site, 1, "TQ-COUNT")
    extra_none = _batches(fixture, fixture.sites[NO_CURRICULUM_SITE], 1, "TQ-COUNT0")
    if not user_is_qualified(fixture.operator, site, "site_operator"):
        raise SystemExit("training bench: the operator is not qualified; fix the bench.")
    # Interleaved, so drift of the machine weighs on both alike.
    with_curriculum, without = [], []
    for a, b in zip(full, none, strict=True):
        with_curriculum.append(_sign_off(fixture, a))
        without.append(_sign_off(fixture, b))
    q_small = _sign_off_queries(fixture, small[0])
    q_full = _sign_off_queries(fixture, extra_full[0])
    q_none = _sign_off_queries(fixture, extra_none[0])
    check_ms = _best_ms(
        repeats * 5, lambda: user_is_qualified(fixture.operator, site, "site_operator")
    )
    gate_ms = _best_ms(
        repeats,
        lambda: qualifications([QualificationQuery(fixture.operator, site, "site_operator")] * 30),
    )

    n_records = TrainingRecord.objects.filter(user_id__in=member_ids).count()
    n_open = Assignment.objects.filter(user_id__in=member_ids, status="open").count()
    states = matrix.counts()
    columns = len(matrix.items)
    rows = [
        (
            f"training matrix page (GET training:matrix, {len(member_ids)}×{columns}) vs home",
            len(member_ids),
            baseline_home,
            page_ms,
        ),
        (
            "site_matrix() selector vs plain read of the same records",
            n_records,
            plain_ms,
            selector_ms,
        ),
        (
            "home as QA (compliance panel, site_compliance()) vs home as lead",
            len(member_ids),
            baseline_home,
            qa_home_ms,
        ),
        (
            f"step sign-off (step_record), {columns}-item curriculum vs none",
            signoffs,
            statistics.median(without),
            statistics.median(with_curriculum),
        ),
    ]
    queries = [
        QueryCount("training matrix page (people)", *counts["page"][0], *counts["page"][1]),
        QueryCount(
            "site_matrix() selector (people)", *counts["selector"][0], *counts["selector"][1]
        ),
        QueryCount("step sign-off (curriculum items)", SMALL_CURRICULUM, q_small, columns, q_full),
    ]
    notes = [
        f"training: {len(member_ids)} people × {columns} items at {site.code}, {n_records} "
        f"records and {n_open} open assignments bulk-loaded in {seed_s:.1f} s; network "
        f"(personas, product, master file, template) in {network_s:.1f} s",
        "  matrix cells: "
        + ", ".join(f"{state} {count}" for state, count in states.items() if count),
        f"  matrix page          {page_ms:7.1f} ms median of {repeats}, lead's home "
        f"{baseline_home:.1f} ms, QA's home {qa_home_ms:.1f} ms; {page_bytes / 1024:.0f} KiB",
        f"  site_matrix()        {selector_ms:7.1f} ms; the plain read of its records "
        f"{plain_ms:.1f} ms",
        f"  step sign-off        {statistics.median(with_curriculum):7.1f} ms median of "
        f"{signoffs} with {columns} items, {statistics.median(without):.1f} ms with none; "
        f"queries {q_full} with {columns} items, {q_small} with {SMALL_CURRICULUM}, {q_none} "
        "with none",
        f"  user_is_qualified()  {check_ms:7.2f} ms alone ({columns} items); the release gate's "
        f"30 signatures in one qualifications() call {gate_ms:.1f} ms",
        f"slowest query (warm), matrix page: {_slowest(_captured(lead, matrix_url))}",
    ]
    return TrainingBenchReport(rows, queries, notes)
