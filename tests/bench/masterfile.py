"""Benchmark of the master-file PDF export (issue 4 "Speed"; design §7-8), for `tests.bench.run`.

  export      `masterfile.exports.export_run()` of a master file whose annex lists 200 sites and
              whose ~20 sections are of realistic length (about 60 pages), from the claim of the
              job row to the stored file, its SHA-256 and the completion event.
  baseline    WeasyPrint alone on the same HTML: `HTML(string=…).render()` and
              `document.write_pdf(pdf_variant="pdf/a-3b", attachments=[the same audit trail])`.

The ratio export / baseline is the cost of everything that is ours (reading the master file and
its whole audit trail, building the HTML, progress ticks, storage, bookkeeping). Aims: ratio at
most 1.2, the export under 15 s on a 2-core machine, peak memory under 600 MB.

Each run happens in a child process forked from this one, as a prefork Celery worker runs a
task in a child forked from its parent: the peak resident memory reported is that child's high
water mark (VmHWM), which counts everything the worker holds, the parent's inherited pages
included — what CELERY_WORKER_MAX_MEMORY_PER_CHILD compares against. WeasyPrint is imported and
warmed up (one tiny render) before the forks, so neither side pays that once-per-worker cost.

The fixture goes through the real services (product, sections, submission that freezes the
annex, QA and QP signatures, effect, a second version), except the 200 sites and their links
to the product, which are bulk-inserted (not app code; see tests/bench/sites.py).
"""

from __future__ import annotations

import dataclasses
import os
import random
import statistics
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controlsite.accounts.models import User
    from masterfile.models import MasterFileVersion, Product
    from sites.models import Site

AIM_RATIO = 1.2
AIM_SECONDS = 15.0
AIM_PEAK_MB = 600.0

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
TOWNS = (
    "Leeds LS9 7TF",
    "Manchester M13 9WL",
    "Birmingham B15 2GW",
    "London SE1 7EH",
    "Oxford OX3 9DU",
    "Glasgow G51 4TF",
    "Cardiff CF14 4XW",
    "Belfast BT9 7AB",
)
SENTENCES = (
    "Each spoke site operates under the Control Site's pharmaceutical quality system and its "
    "procedures are controlled centrally in the QMS.",
    "The site lead confirms before every batch that the operators on shift are trained and "
    "qualified for each step they will sign.",
    "Critical quality attributes are compared with the reference site every quarter, and a "
    "trend outside the agreed limits opens a deviation.",
    "Equipment is qualified at installation (IQ/OQ) and again after any relocation of a "
    "modular unit, before manufacture resumes.",
    "Starting materials are released by the Control Site and shipped with a certificate of "
    "analysis that the site checks on receipt.",
    "The QP reviews the batch record remotely and certifies the batch with an electronic "
    "signature before it is administered.",
    "Results that arrive after administration are escalated to the QP and the treating "
    "clinician at once if they fall outside specification.",
    "Environmental monitoring at each site follows the plan in the control strategy, with "
    "alert and action limits for viable and non-viable particles.",
    "Any change that touches the master file, the site list or the release process is assessed "
    "under change control for a variation to the licence.",
    "Self-inspections cover every site at least once a year; findings are tracked to closure "
    "as CAPA with an effectiveness check.",
)


def _paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(rng.choice(SENTENCES) for _ in range(sentences))


def section_text(title: str, index: int, *, words: int = 900) -> str:
    """A section body of about `words` words: paragraphs, a sub-heading, a list and a table,
    like a real master-file chapter."""
    rng = random.Random(index)
    parts = [f"This section describes {title.lower()} for every site of the network.", ""]
    written = 12
    part = 1
    while written < words:
        parts += [f"### {index}.{part} Arrangements", "", _paragraph(rng, 5), ""]
        parts += [f"- {rng.choice(SENTENCES)}" for _ in range(3)] + [""]
        parts += [_paragraph(rng, 4), ""]
        if part % 2:
            parts += [
                "| Activity | Responsible | Record |",
                "|---|---|---|",
                "| Batch record review | Site lead | Batch record |",
                "| Certification | QP | Electronic signature |",
                "| Trend review | Control Site QA | Quarterly report |",
                "",
            ]
        written += 5 * 22 + 3 * 22 + 4 * 22
        part += 1
    return "\n".join(parts)


def _people() -> tuple[User, User]:
    from tests.personas import make_persona

    return (
        make_persona("qa", username="bench-mf-qa"),
        make_persona("qp", username="bench-mf-qp"),
    )


def _sites(qa: User, count: int) -> list[Site]:
    """Bulk-insert `count` active sites: the first a hospital (the reference site), a tenth of
    the rest testing laboratories and a tenth modular units."""
    from django.utils import timezone

    from sites.choices import SiteKind, SiteStatus
    from sites.models import Site

    now = timezone.now()

    def kind(i: int) -> str:
        if i and i % 10 == 0:
            return SiteKind.TESTING_LAB
        return SiteKind.MODULAR_UNIT if i % 10 == 5 else SiteKind.POC_HOSPITAL

    return Site.objects.bulk_create(
        [
            Site(
                code=f"MF{i:04d}",
                name=f"{HOSTS[i % len(HOSTS)].split(' ')[0]} spoke {i}",
                kind=kind(i),
                host_organisation=HOSTS[i % len(HOSTS)],
                address=f"Ward {i % 30 + 1}, {i} Hospital Road, {TOWNS[i % len(TOWNS)]}",
                current_location=f"Car park B, bay {i % 12 + 1}, {TOWNS[i % len(TOWNS)]}"
                if kind(i) == SiteKind.MODULAR_UNIT
                else "",
                status=SiteStatus.ACTIVE,
                status_changed_at=now,
                created_by=qa,
            )
            for i in range(count)
        ],
        batch_size=500,
    )


def _link(qa: User, product: Product, sites: list[Site]) -> None:
    from masterfile.choices import ProductSiteRole
    from masterfile.models import ProductSite
    from sites.choices import SiteKind

    ProductSite.objects.bulk_create(
        [
            ProductSite(
                product=product,
                site=site,
                role=ProductSiteRole.TESTING
                if site.kind == SiteKind.TESTING_LAB
                else ProductSiteRole.MANUFACTURING,
                created_by=qa,
            )
            for site in sites
        ],
        batch_size=500,
    )


def _write(qa: User, version: MasterFileVersion, *, edition: int, words: int) -> None:
    from masterfile import services

    for index, section in enumerate(version.sections.order_by("position"), start=1):
        body = section_text(section.title, index, words=words)
        if edition > 1 and index % 3 == 0:
            body += f"\n\nEdition {edition}: the arrangements were reviewed and updated."
        services.section_update(actor=qa, section=section, body=body, reason="bench content")


def _master_file(*, sites: int, sections: int, words: int) -> tuple[User, MasterFileVersion]:
    """A product with `sites` sites and two effective editions of its master file; the second
    (the one exported) has `sections` sections of about `words` words each."""
    from controlsite.audit.context import audit_context
    from masterfile import services
    from masterfile.choices import VersionStatus
    from sites import services as site_services
    from tests.masterfile.helpers import approve, make_product

    qa, qp = _people()
    with audit_context(reason="bench"):
        site_services.control_site_save(
            actor=qa,
            name="Northern Cell Therapy Control Site",
            address="1 Infirmary Street, Leeds LS1 3EX",
            licence_number="MIA(POC) 12345/0001",
            scope_poc=True,
            scope_mm=True,
            regulator_contacts="",
            reason="bench",
        )
        every_site = _sites(qa, sites)
        product = make_product(qa, every_site[0], "BENCH-01", name="Autologous CAR-T cells (bench)")
        _link(qa, product, every_site[1:])
        master_file = product.master_file
        for edition in (1, 2):
            version = master_file.versions.filter(status=VersionStatus.DRAFT).first()
            if version is None:
                version = services.draft_start(
                    actor=qa, master_file=master_file, reason="annual review"
                )
            existing = version.sections.count()
            for extra in range(existing, sections):
                services.section_add(
                    actor=qa,
                    version=version,
                    key=f"annex-procedure-{extra}",
                    title=f"Site procedure {extra - existing + 1}",
                    body="To be written.",
                    reason="bench",
                )
            _write(qa, version, edition=edition, words=words)
            if edition > 1:
                services.change_summary_set(
                    actor=qa,
                    version=version,
                    summary="Annual review: procedures updated; sites added to the annex.",
                    reason="bench",
                )
            services.version_submit(actor=qa, version=version, reason="bench")
            approve(qa, qp, version)
            services.version_make_effective(actor=qa, version=version, reason="bench")
    assert version is not None  # the loop ran
    version.refresh_from_db()
    return qa, version


#
# Child processes
#


def _vm_hwm_mb() -> float:
    """This process's peak resident memory so far (Linux VmHWM), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _in_child(work: Any) -> dict[str, Any]:
    """Run `work()` in a forked child; return what it returned plus its peak RSS."""
    import json

    from django.db import connections

    connections.close_all()  # the child opens its own (SQLite in memory ignores the close)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        code = 0
        try:
            outcome = work()
            outcome["peak_mb"] = _vm_hwm_mb()
        except BaseException as exc:  # noqa: BLE001  (reported to the parent, which stops)
            outcome, code = {"error": repr(exc)}, 1
        with os.fdopen(write_end, "w") as out:
            out.write(json.dumps(outcome))
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as source:
        payload = source.read()
    os.waitpid(pid, 0)
    result: dict[str, Any] = json.loads(payload or '{"error": "no result"}')
    if "error" in result:
        raise SystemExit(f"The bench child failed: {result['error']}")
    return result


def _export_child(export_id: int) -> dict[str, Any]:
    from masterfile.exports import export_run
    from masterfile.models import MasterFileExport

    start_mb = _vm_hwm_mb()
    started, cpu = time.perf_counter(), time.process_time()
    export_run(export_id)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    export = MasterFileExport.objects.get(pk=export_id)
    if export.status != "done":
        raise RuntimeError(f"export {export_id} ended {export.status}: {export.error}")
    return {
        "seconds": seconds,
        "cpu": cpu,
        "pages": export.page_count,
        "size": export.size_bytes,
        "start_mb": start_mb,
    }


def _weasyprint_child(html: str, trail: str) -> dict[str, Any]:
    from weasyprint import HTML, Attachment

    start_mb = _vm_hwm_mb()
    started, cpu = time.perf_counter(), time.process_time()
    document = HTML(string=html).render()
    laid_out = time.perf_counter()
    content = document.write_pdf(
        pdf_variant="pdf/a-3b",
        attachments=[
            Attachment(string=trail, name="audit-trail.json", relationship="Data"),
        ],
    )
    done, cpu = time.perf_counter(), time.process_time() - cpu
    return {
        "seconds": done - started,
        "cpu": cpu,
        "layout": laid_out - started,
        "write": done - laid_out,
        "pages": len(document.pages),
        "size": len(content),
        "start_mb": start_mb,
    }


@dataclasses.dataclass(frozen=True)
class ExportBenchReport:
    results: list[tuple[str, int, float, float]]  # case, n, baseline ms, measured ms
    notes: list[str]
    within_aims: bool


def run_master_file_export(
    *, sites: int = 200, sections: int = 20, words: int = 900, repeats: int = 3
) -> ExportBenchReport:
    import tempfile

    from django.test.utils import override_settings
    from django.utils import timezone

    from controlsite.audit.context import audit_context
    from masterfile import pdf, pdfjobs
    from masterfile.models import MasterFileExport

    started = time.perf_counter()
    qa, version = _master_file(sites=sites, sections=sections, words=words)
    fixture_s = time.perf_counter() - started

    def queued() -> MasterFileExport:
        with audit_context(reason="bench"):
            return MasterFileExport.objects.create(
                version=version, requested_by=qa, stage=pdfjobs.STAGE_QUEUED, created_by=qa
            )

    # The HTML and audit trail WeasyPrint gets on its own: exactly what export_run builds.
    probe = queued()
    data = pdf.master_file_collect(probe, now=timezone.now())
    html, trail = pdf.master_file_html(data), pdf.to_json(data.audit_trail)
    # Warm WeasyPrint up in this (parent) process once, as a worker is after its first export:
    # imports, fonts (regular, bold, mono), Pango. A short document of the same kind.
    from weasyprint import HTML

    small = dataclasses.replace(
        data, sections=data.sections[:2], annex=data.annex[:5], trail=data.trail[:5]
    )
    HTML(string=pdf.master_file_html(small)).render().write_pdf(pdf_variant=pdf.PDF_VARIANT)
    del data, small

    exported: list[dict[str, Any]] = []
    alone: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as media, override_settings(MEDIA_ROOT=media):
        for _ in range(repeats):  # interleaved, so a busy moment hits both sides alike
            export_id = queued().pk
            exported.append(_in_child(lambda export_id=export_id: _export_child(export_id)))
            alone.append(_in_child(lambda: _weasyprint_child(html, trail)))
    export_s = statistics.median(r["seconds"] for r in exported)
    alone_s = statistics.median(r["seconds"] for r in alone)
    export_cpu = statistics.median(r["cpu"] for r in exported)
    alone_cpu = statistics.median(r["cpu"] for r in alone)
    peak = max(r["peak_mb"] for r in exported)
    peak_alone = max(r["peak_mb"] for r in alone)
    pages = exported[0]["pages"]
    ratio = export_s / alone_s if alone_s else float("inf")
    within = ratio <= AIM_RATIO and export_s <= AIM_SECONDS and peak <= AIM_PEAK_MB
    results = [
        (
            "master-file PDF export (export_run) vs WeasyPrint alone",
            pages,
            alone_s * 1000,
            export_s * 1000,
        ),
    ]
    layout = statistics.median(r["layout"] for r in alone)
    write = statistics.median(r["write"] for r in alone)
    notes = [
        f"master-file export: {sites} sites in the annex, {sections} sections of ~{words} words, "
        f"{pages} pages, {exported[0]['size'] / 1e6:.1f} MB; fixture built in {fixture_s:.1f} s",
        f"  export_run total      {export_s:6.2f} s   (aim ≤ {AIM_SECONDS:.0f} s)",
        f"  WeasyPrint alone      {alone_s:6.2f} s   (layout {layout:.2f} s + write_pdf "
        f"{write:.2f} s)",
        f"  ratio                 {ratio:6.2f}     (aim ≤ {AIM_RATIO}); in CPU time "
        f"{export_cpu:.2f} s / {alone_cpu:.2f} s = {export_cpu / alone_cpu:.2f}",
        f"  peak RSS, export      {peak:6.0f} MB  (aim < {AIM_PEAK_MB:.0f} MB; the forked child "
        f"started at {exported[0]['start_mb']:.0f} MB)",
        f"  peak RSS, WeasyPrint  {peak_alone:6.0f} MB",
        f"  {'within all three aims' if within else 'OUTSIDE AN AIM'}"
        f" (median of {repeats} run{'s' if repeats > 1 else ''} each)",
    ]
    return ExportBenchReport(results, notes, within)
