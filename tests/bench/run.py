"""Benchmarks of the audit trail's hot paths and the site pages, each against a baseline
measured in the same run.

    DJANGO_SETTINGS_MODULE=controlsite.settings.test .venv/bin/python -m tests.bench.run \
        [--n 2000] [--sites 1000] [--events 10000]

(`make bench` runs exactly that.) The script builds its own throwaway database — SQLite in memory,
or `test_<name>_bench` on the PostgreSQL server that `DATABASE_URL` names — and drops it at the
end. It prints ratios, not absolute claims: a machine's speed cancels out of
`measured / baseline`.

Cases:
  audit append    `audit_event_record()` (chain lock, read predecessor, SHA-256, insert), one
                  transaction per event, vs. inserting the same number of plain rows.
  chain verify    `audit_chain_verify()` over those events vs. streaming the same rows.
  lockout count   the failed-login count behind account lockout vs. a plain count of the same
                  user's events.
  site list       GET of the site list with `--sites` sites vs. GET of the home page.
  site page       GET of a site page whose timeline holds `--events` audit events vs. the home
                  page. Both pages' queries are also counted at a tenth of the size and at full
                  size: equal counts print FIXED, else GROWS (design §8). See tests/bench/sites.py.
  master-file PDF `export_run()` of a master file with `--mf-sites` sites in its annex (about 60
                  pages) vs. WeasyPrint alone on the same HTML, with the page count and the peak
                  memory of the (forked) worker process. See tests/bench/masterfile.py.

  QP queue, certification, result ingestion: with `--batch-sites` sites and `--batches`
                  batches (`--awaiting` awaiting certification). See tests/bench/batches.py.

  deviation list and trend page: with `--deviations` deviations over `--dev-sites` sites, vs.
                  the home page, with their query counts. See tests/bench/deviations.py.

  training matrix, compliance panel and the qualification check in a step sign-off: a site
                  where `--trainees` people work against `--training-items` items, vs. the home
                  page, a plain read of the records and a sign-off with no curriculum, with their
                  query counts. See tests/bench/training.py.

  comparability page, site chart, chart rendering and evaluation: a product made at
                  `--cmp-sites` sites with `--cmp-results` results each, vs. the home page, an
                  empty chart and one grouped summary query, with the page's query counts. See
                  tests/bench/comparability.py.

  oversight dashboard: `--ov-sites` sites, each with batches, deviations, CAPAs, audits,
                  comparability snapshots and `--ov-people` trained people; the page and its
                  polled table vs the site list, with their query counts and each column's
                  time. See tests/bench/oversight.py.

`--only audit|sites|masterfile|batches|deviations|training|comparability|oversight` runs one
group.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlsite.settings.test")


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def _best_of(repeats: int, fn: Callable[[], Any]) -> float:
    return min(_timed(fn) for _ in range(repeats))


def _run(n: int, repeats: int) -> list[tuple[str, int, float, float]]:
    from django.db import transaction

    from controlsite.accounts import services as account_services
    from controlsite.accounts.services import user_create
    from controlsite.audit.context import audit_context
    from controlsite.audit.events import KernelEvent
    from controlsite.audit.models import AuditEvent
    from controlsite.audit.services import audit_chain_verify, audit_event_record, record_label
    from controlsite.background.models import WorkerHeartbeat

    results: list[tuple[str, int, float, float]] = []
    with audit_context(reason="bench"):
        # (a) Appending to the hash chain vs. plain inserts, one transaction each in both.
        def plain_inserts() -> None:
            for i in range(n):
                with transaction.atomic():
                    WorkerHeartbeat.objects.create(token=f"bench-{i}")

        def chain_appends() -> None:
            for _ in range(n):
                with transaction.atomic():
                    audit_event_record(event_type="bench.event", actor_username="bench")

        baseline = _timed(plain_inserts)
        measured = _timed(chain_appends)
        results.append(("audit append (per event, own transaction)", n, baseline, measured))

        # (b) Proving the chain vs. just reading the same rows.
        def stream_rows() -> None:
            for _ in AuditEvent.objects.order_by("seq").iterator(chunk_size=2000):
                pass

        def verify_chain() -> None:
            report = audit_chain_verify()
            if not report.intact:
                raise SystemExit(f"The bench chain is broken: {report.first_break}")

        total = AuditEvent.objects.count()
        baseline = _best_of(repeats, stream_rows)
        measured = _best_of(repeats, verify_chain)
        results.append(("audit_chain_verify() vs .iterator()", total, baseline, measured))

        # (c) The lockout count among many events: failures since the last reset, in the window.
        user = user_create(
            username="bench-user",
            first_name="Bench",
            last_name="User",
            created_by=None,
            reason="bench",
            validate=False,
        )
        for i in range(n // 10):
            event = KernelEvent.LOGIN_FAILED if i % 4 else KernelEvent.LOGIN
            audit_event_record(event_type=event, actor_username="bench-user", target=user)
        label, pk = record_label(user), str(user.pk)
        queries = 200

        def plain_counts() -> None:
            for _ in range(queries):
                AuditEvent.objects.filter(target_type=label, target_id=pk).count()

        def lockout_counts() -> None:
            for _ in range(queries):
                account_services.failed_authentications_since_reset(user)

        baseline = _best_of(repeats, plain_counts)
        measured = _best_of(repeats, lockout_counts)
        results.append(("lockout failure count (per query)", queries, baseline, measured))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=int(os.environ.get("BENCH_N", "2000")))
    parser.add_argument("--repeats", type=int, default=3, help="Best-of for read cases.")
    parser.add_argument("--sites", type=int, default=1000, help="Sites on the site list.")
    parser.add_argument("--events", type=int, default=10000, help="Events on a site's timeline.")
    parser.add_argument("--page-repeats", type=int, default=7, help="Median of for page GETs.")
    parser.add_argument("--mf-sites", type=int, default=200, help="Sites in the exported annex.")
    parser.add_argument(
        "--mf-sections", type=int, default=20, help="Sections exported (at least the 19 default)."
    )
    parser.add_argument("--mf-repeats", type=int, default=3, help="Median of for the export.")
    parser.add_argument("--batch-sites", type=int, default=200, help="Sites making batches.")
    parser.add_argument("--batches", type=int, default=1_000_000, help="Batches in the table.")
    parser.add_argument("--awaiting", type=int, default=10_000, help="Awaiting certification.")
    parser.add_argument("--certify", type=int, default=20, help="Certifications timed.")
    parser.add_argument("--results", type=int, default=1000, help="Results ingested.")
    parser.add_argument("--dev-sites", type=int, default=200, help="Sites with deviations.")
    parser.add_argument("--deviations", type=int, default=100_000, help="Deviations in the table.")
    parser.add_argument("--trainees", type=int, default=500, help="People on the matrix.")
    parser.add_argument(
        "--training-items", type=int, default=50, help="Items in the site's curriculum."
    )
    parser.add_argument("--signoffs", type=int, default=30, help="Step sign-offs timed.")
    parser.add_argument("--cmp-sites", type=int, default=200, help="Sites making the product.")
    parser.add_argument("--cmp-results", type=int, default=1000, help="Results per site.")
    parser.add_argument("--ov-sites", type=int, default=200, help="Sites on the dashboard.")
    parser.add_argument("--ov-people", type=int, default=8, help="People at each site.")
    parser.add_argument("--ov-items", type=int, default=20, help="Items in the curriculum.")
    parser.add_argument("--ov-batches", type=int, default=100_000, help="Batches in the table.")
    parser.add_argument("--ov-recent", type=int, default=8_000, help="Of which last 30 days.")
    parser.add_argument(
        "--only",
        choices=[
            "all",
            "audit",
            "sites",
            "masterfile",
            "batches",
            "deviations",
            "training",
            "comparability",
            "oversight",
        ],
        default="all",
    )
    args = parser.parse_args(argv)

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment, teardown_test_environment

    if connection.vendor != "sqlite":
        # A name of its own, so a concurrent or reused pytest database is never touched.
        connection.settings_dict.setdefault("TEST", {})
        connection.settings_dict["TEST"]["NAME"] = f"test_{connection.settings_dict['NAME']}_bench"
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    from tests.bench.batches import BatchBenchReport, run_batches
    from tests.bench.comparability import ComparabilityBenchReport, run_comparability
    from tests.bench.deviations import DeviationBenchReport, run_deviations
    from tests.bench.masterfile import ExportBenchReport, run_master_file_export
    from tests.bench.oversight import OversightBenchReport, run_oversight
    from tests.bench.sites import SitePagesReport, run_site_pages
    from tests.bench.training import TrainingBenchReport, run_training

    pages = SitePagesReport([], [], [])
    export = ExportBenchReport([], [], True)
    batch = BatchBenchReport([], [], [])
    dev = DeviationBenchReport([], [], [])
    train = TrainingBenchReport([], [], [])
    cmp = ComparabilityBenchReport([], [], [])
    board = OversightBenchReport([], [], [])
    try:
        started = time.perf_counter()
        results = _run(args.n, args.repeats) if args.only in ("all", "audit") else []
        if args.only in ("all", "sites"):
            pages = run_site_pages(sites=args.sites, events=args.events, repeats=args.page_repeats)
        if args.only in ("all", "masterfile"):
            export = run_master_file_export(
                sites=args.mf_sites, sections=args.mf_sections, repeats=args.mf_repeats
            )
        if args.only in ("all", "batches"):
            batch = run_batches(
                sites=args.batch_sites,
                batches=args.batches,
                awaiting=args.awaiting,
                repeats=args.page_repeats,
                certify=args.certify,
                results=args.results,
            )
        if args.only in ("all", "deviations"):
            dev = run_deviations(
                sites=args.dev_sites, deviations=args.deviations, repeats=args.page_repeats
            )
        if args.only in ("all", "training"):
            train = run_training(
                people=args.trainees,
                items=args.training_items,
                repeats=args.page_repeats,
                signoffs=args.signoffs,
            )
        if args.only in ("all", "comparability"):
            cmp = run_comparability(
                sites=args.cmp_sites, results=args.cmp_results, repeats=args.page_repeats
            )
        if args.only in ("all", "oversight"):
            board = run_oversight(
                sites=args.ov_sites,
                people=args.ov_people,
                items=args.ov_items,
                batches=args.ov_batches,
                recent=args.ov_recent,
                repeats=args.page_repeats,
            )
        results += pages.results + export.results + batch.results + dev.results + train.results
        results += cmp.results + board.results
        pages = SitePagesReport(
            pages.results,
            pages.queries
            + batch.queries
            + dev.queries
            + train.queries
            + cmp.queries
            + board.queries,
            pages.notes,
        )
        export = ExportBenchReport(
            export.results,
            export.notes + batch.notes + dev.notes + train.notes + cmp.notes + board.notes,
            export.within_aims,
        )
        elapsed = time.perf_counter() - started
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()

    print(f"Control Site QMS benchmarks on {connection.vendor} ({elapsed:.1f} s)")
    print("ratio = measured / baseline, both measured in this run; lower is better.\n")
    header = ("case", "n", "baseline ms", "measured ms", "ratio")
    rows = [
        (case, str(n), f"{base:.1f}", f"{meas:.1f}", f"{meas / base:.2f}x" if base else "-")
        for case, n, base, meas in results
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        # The case name is left-aligned, the numbers right-aligned.
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    print(line(header))
    print(line(tuple("-" * w for w in widths)))
    for row in rows:
        print(line(row))

    if not pages.queries:
        print()
        for note in export.notes:
            print(note)
        return 0
    print(
        "\nQueries per page at a tenth of the size and at full size; FIXED = equal (design §8).\n"
    )
    q_header = ("page", "n", "queries", "n", "queries", "verdict")
    q_rows = [
        (q.case, str(q.small_n), str(q.small), str(q.large_n), str(q.large), q.verdict)
        for q in pages.queries
    ]
    widths = [max(len(r[i]) for r in [q_header, *q_rows]) for i in range(len(q_header))]
    print(line(q_header).rstrip())
    print(line(tuple("-" * w for w in widths)))
    for q_row in q_rows:
        print(line(q_row))
    print()
    for note in [*pages.notes, *([""] if export.notes else []), *export.notes]:
        print(note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
