"""Benchmarks of comparability at scale (issue 8 "Speed"; design §8; SO-08, SO-09), for
`tests.bench.run`.

  comparability page  GET `batches:comparability-product` as Control Site QA for a product made at
                      `--cmp-sites` sites with `--cmp-results` results each (200 x 1,000 =
                      200,000 results of the compared CQA), against the home page in the same
                      run; its queries counted for a product at a tenth of the sites and results
                      and at full size: FIXED or GROWS.
  site chart          GET of one site's chart page (its 1,000 results flagged by the run rules and
                      drawn as SVG) and of the bare chart.svg, against the home page.
  chart rendering     `control_chart_svg()` for 1,000 points alone, per chart, against drawing an
                      empty chart (the fixed cost of a figure).
  evaluation          `comparability_evaluate()` for one site (what runs after its results are
                      recorded) and for every site (the periodic sweep), against one grouped
                      summary query over the whole CQA.

The fixture is not app code: the sites, product links, batches and results are bulk-loaded (COPY
on PostgreSQL, `bulk_create` on SQLite; no history rows), spread over the last 300 days; one site
drifts. The product, master file, template and the QA-signed reference limits go through the
real services.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import statistics
import time
from typing import TYPE_CHECKING, Any

from tests.bench.sites import QueryCount, _analyze, _captured, _client_for, _median_ms

if TYPE_CHECKING:
    from batches.models import BatchTemplate
    from sites.models import Site


@dataclasses.dataclass(frozen=True)
class ComparabilityBenchReport:
    results: list[tuple[str, int, float, float]]
    queries: list[QueryCount]
    notes: list[str]


def _network(prefix: str, sites: int) -> tuple[Any, list[Site], BatchTemplate]:
    from controlsite.audit.context import audit_context
    from masterfile.choices import ProductSiteRole
    from masterfile.models import ProductSite
    from sites.choices import SiteKind, SiteStatus
    from sites.models import Site
    from tests.bench.batches import _template
    from tests.masterfile.helpers import make_effective_version, make_product
    from tests.personas import make_persona

    qa = make_persona("qa", username=f"bench-c-qa-{prefix.lower()}")
    qp = make_persona("qp", username=f"bench-c-qp-{prefix.lower()}")
    with audit_context(reason="bench"):
        every = Site.objects.bulk_create(
            [
                Site(
                    code=f"{prefix}{i:03d}",
                    name=f"Bench comparability site {i}",
                    kind=SiteKind.POC_HOSPITAL,
                    status=SiteStatus.ACTIVE,
                    created_by=qa,
                )
                for i in range(sites)
            ]
        )
        product = make_product(qa, every[0], f"BENCH-{prefix}", shelf_life_minutes=24 * 60)
        ProductSite.objects.bulk_create(
            [
                ProductSite(
                    product=product, site=s, role=ProductSiteRole.MANUFACTURING, created_by=qa
                )
                for s in every[1:]
            ]
        )
        make_effective_version(qa, qp, product)
        template = _template(qa, product)
    return qa, every, template


def _value(site_index: int, i: int) -> float:
    """Viability-like values: every site near 90 with its own small offset; site 1 drifts."""
    wobble = ((i * 7919 + site_index * 104729) % 1000) / 1000 - 0.5  # -0.5 … 0.5
    if site_index == 1:  # slides 2.5 below the others over its first 50 batches, then stays
        return 90 + 2 * wobble - min(i, 50) * 0.05
    return 90 + 2 * wobble + (site_index % 5) * 0.1


def _seed(template: BatchTemplate, sites: list[Site], per_site: int) -> None:
    """`per_site` certified batches at each site, each with its result of `cqa-0`."""
    from django.db import connection
    from django.utils import timezone

    from batches.choices import BatchStatus
    from batches.models import Batch, Specification, TestResult

    spec = Specification.objects.get(template=template, key="cqa-0")
    now = timezone.now()
    start = now - dt.timedelta(days=300)
    step = dt.timedelta(days=300) / per_site
    first_id = (Batch.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1

    def batch_rows() -> Any:
        for s, site in enumerate(sites):
            for i in range(per_site):
                made = start + step * i + dt.timedelta(seconds=s)
                yield (
                    f"{site.code}-{i:05d}",
                    site.pk,
                    template.product_id,
                    template.pk,
                    template.master_file_version_id,
                    f"PT-{s:03d}-{i:05d}",
                    BatchStatus.CERTIFIED,
                    made,
                    made + dt.timedelta(hours=24),
                    made,
                    made,
                    made,
                )

    batch_columns = (
        "number, site_id, product_id, template_id, master_file_version_id, coi_reference, "
        "status, completed_at, expires_at, decided_at, created_at, updated_at"
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            raw = cursor.cursor
            with raw.copy(f"COPY {Batch._meta.db_table} ({batch_columns}) FROM STDIN") as copy:
                for row in batch_rows():
                    copy.write_row(row)
    else:
        fields = [c.strip() for c in batch_columns.split(",")]
        rows = [Batch(**dict(zip(fields, r, strict=True))) for r in batch_rows()]
        Batch.objects.bulk_create(rows, batch_size=5000)
    ids = dict(Batch.objects.filter(site__in=sites, id__gte=first_id).values_list("number", "id"))

    def result_rows() -> Any:
        for s, site in enumerate(sites):
            for i in range(per_site):
                made = start + step * i + dt.timedelta(seconds=s, minutes=30)
                value = round(_value(s, i), 3)
                yield (ids[f"{site.code}-{i:05d}"], spec.pk, value, True, False, "", made, made)

    result_columns = (
        "batch_id, specification_id, value, passed, late, comment, created_at, updated_at"
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            raw = cursor.cursor
            table = TestResult._meta.db_table
            with raw.copy(f"COPY {table} ({result_columns}) FROM STDIN") as copy:
                for row in result_rows():
                    copy.write_row(row)
    else:
        fields = [c.strip() for c in result_columns.split(",")]
        TestResult.objects.bulk_create(
            [TestResult(**dict(zip(fields, r, strict=True))) for r in result_rows()],
            batch_size=5000,
        )


def _limits(qa: Any, template: BatchTemplate, reference: Site) -> Any:
    from batches.choices import LimitBasis
    from batches.comparability.services import reference_limit_approve
    from batches.models import Batch
    from controlsite.audit.context import audit_context
    from tests.masterfile.helpers import signing

    numbers = list(
        Batch.objects.filter(site=reference, product_id=template.product_id)
        .order_by("id")
        .values_list("number", flat=True)[:20]
    )
    with audit_context(reason="bench"):
        return reference_limit_approve(
            actor=qa,
            product=template.product,
            key="cqa-0",
            basis=LimitBasis.VERIFICATION,
            margin="1",
            batches=numbers,
            credentials=signing(qa),
            reason="bench limits",
        )


def _best_ms(repeats: int, fn: Any) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


def run_comparability(*, sites: int, results: int, repeats: int) -> ComparabilityBenchReport:
    from django.urls import reverse

    from batches.charts import ChartPoint, control_chart_svg
    from batches.comparability import selectors
    from batches.comparability.services import comparability_evaluate

    small_sites, small_results = max(sites // 10, 3), max(results // 10, 10)
    qa_s, small, template_s = _network("CS", small_sites)
    qa, every, template = _network("CL", sites)
    _seed(template_s, small, small_results)
    _seed(template, every, results)
    _analyze()
    _limits(qa_s, template_s, small[0])
    limit = _limits(qa, template, every[0])

    client = _client_for(qa)
    home = reverse("home")
    page = reverse("batches:comparability-product", args=[template.product.code])
    page_small = reverse("batches:comparability-product", args=[template_s.product.code])
    chart = reverse(
        "batches:comparability-site", args=[template.product.code, "cqa-0", every[1].code]
    )
    svg = reverse(
        "batches:comparability-chart-svg", args=[template.product.code, "cqa-0", every[1].code]
    )
    base = _median_ms(client, home, repeats)
    out = [
        ("comparability page (product)", sites * results, base, _median_ms(client, page, repeats)),
        ("site chart page (1 site)", results, base, _median_ms(client, chart, repeats)),
        ("chart.svg (1 site)", results, base, _median_ms(client, svg, repeats)),
    ]
    queries = [
        QueryCount(
            "comparability page",
            small_sites * small_results,
            len(_captured(client, page_small)),
            sites * results,
            len(_captured(client, page)),
        )
    ]

    series = selectors.site_series(template.product_id, "cqa-0", every[1].pk)
    points = [ChartPoint(p.batch_number, p.when, p.value) for p in series]
    centre, low, high = float(limit.centre), float(limit.lower), float(limit.upper)
    render = statistics.median(
        _best_ms(
            1,
            lambda: control_chart_svg(
                points, centre=centre, lower=low, upper=high, title="CQA 0", unit="%"
            ),
        )
        for _ in range(repeats)
    )
    empty = _best_ms(
        repeats,
        lambda: control_chart_svg([], centre=centre, lower=low, upper=high, title="CQA 0"),
    )
    out.append(("chart rendering (1 chart)", len(points), empty, render))

    summary = _best_ms(
        repeats,
        lambda: selectors.site_summaries(
            template.product_id, "cqa-0", selectors.Window.last_days()
        ),
    )
    one = _best_ms(
        repeats,
        lambda: comparability_evaluate(product_id=template.product_id, site_ids=[every[1].pk]),
    )
    started = time.perf_counter()
    raised = comparability_evaluate(product_id=template.product_id)
    sweep = (time.perf_counter() - started) * 1000
    out += [
        ("evaluate one site", results, summary, one),
        ("evaluate every site (sweep)", sites * results, summary, sweep),
    ]
    notes = [
        f"  comparability: {sites} sites x {results} results; chart of {len(points)} points "
        f"renders in {render:.0f} ms ({render / max(len(points), 1) * 1000:.0f} µs/point); "
        f"the sweep raised {raised} signal(s) (site {every[1].code} drifts).",
    ]
    return ComparabilityBenchReport(out, queries, notes)
