"""The annual report of a product for a year (issue 8 §7 and Tests; MF-07, RP-01, SO-08, SO-09)
and the master file export's comparability annex.

A network is built through the real services (tests/batches/helpers.py `make_plant`: reference
site LDS1 and spoke MAN2; here also a testing laboratory LAB9, a site BRI3 added and removed in
the year, and an unrelated site ZZZ9): reference limits approved with a signature, results at
both sites with MAN2 running six points low, batches certified and rejected, deviations raised
by hand and from the comparability signals, CAPAs opened and closed, an annual check recorded
and reviewed. The report is made by the real task (eager Celery in-process; a real worker on
Redis in `test_a_real_worker_on_redis_makes_the_annual_report` when CELERY_BROKER_URL is set)
and read back with pypdf: every site, the figures, the verdicts, the confidence intervals
(checked against SciPy as an independent oracle), the charts, PDF/A metadata, the embedded
figures and the footer. Rendering refuses to run inside a transaction, so the tests that make a
PDF use transactional databases (`@renders`).

Pages of the report are saved under tests/artifacts/ as annual-report-*.png (`pdftoppm -r 50`)
for a person to look at; the master-file annex as annual-report-annex.png.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from pypdf import PdfReader
from scipy import stats as scipy_stats

from batches import report as batch_report
from batches import services as batch_services
from batches.choices import LimitBasis
from batches.comparability import services as comparability_services
from batches.comparability.services import PairEntry
from batches.models import Batch, ComparabilityCheck, ComparabilitySignal, ReferenceLimit
from batches.report import collect_comparability
from controlsite import reports
from controlsite.audit.models import AuditEvent
from controlsite.errors import ApplicationError, ConflictError, PermissionRefusedError
from deviations import services as deviation_services
from deviations.choices import CapaKind, DeviationClass
from deviations.models import Capa, Deviation
from deviations.report import collect_deviations
from masterfile import annual, exports, pdf
from masterfile import services as masterfile_services
from masterfile.choices import ExportStatus, ProductSiteRole
from masterfile.events import MasterFileEvent
from masterfile.models import AnnualReport, annual_report_due_on
from masterfile.tasks import annual_report_make
from sites import services as site_services
from sites.choices import SiteAction, SiteKind, SiteStatus
from sites.models import Site
from tests.batches.helpers import COI, Plant, make_plant, ready_batch, start
from tests.masterfile.helpers import signing
from tests.sites.helpers import make_site

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
HAS_PDFTOPPM = shutil.which("pdftoppm") is not None

# Viability (%) at the reference site and at MAN2: MAN2 runs six points low, so its 90 % CI
# lies far outside ± 2 (not shown) and all its points sit below the centre line (90): a run of
# nine or more on one side (Nelson rule 2).
REFERENCE_VALUES = [91.0, 93.0, 92.0, 94.0, 91.5, 92.5, 93.5, 92.0]
SPOKE_VALUES = [v - 6 for v in [91.0, 93.0, 92.0, 94.0, 91.5, 92.5, 93.5, 92.0, 91.0, 93.0]]
READY_VALUE = 92.5  # tests/batches/helpers.py `passing_results`
MARGIN = 2.0
CERTIFIED = 2


def renders(test: Callable[..., None]) -> Callable[..., None]:
    """For a test that makes a PDF: outside any transaction, as in production."""
    marked: Callable[..., None] = pytest.mark.django_db(transaction=True)(
        pytest.mark.usefixtures("migration_seeds")(test)
    )
    return marked


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


#
# A network with a year's worth of records, through the real services
#


@dataclasses.dataclass
class Network:
    plant: Plant
    lab: Site
    bristol: Site
    stranger: Site
    limit: ReferenceLimit
    certified: list[Batch]
    rejected: Batch
    major: Deviation
    site_level: Deviation
    open_capa: Capa
    closed_capa: Capa
    check: ComparabilityCheck

    @property
    def reference_values(self) -> list[float]:
        return [*REFERENCE_VALUES, *[READY_VALUE] * len(self.certified)]


def made(plant: Plant, site: Site, values: Sequence[float]) -> list[Batch]:
    """One batch per value at `site`, each with its viability result, in this order."""
    batches = []
    for value in values:
        batch = batch_services.batch_start(
            actor=plant.operator, site=site, product=plant.product, coi_reference=COI
        )
        batch_services.result_record(
            actor=plant.operator, batch=batch, specification_key="viability", value=value
        )
        batches.append(batch)
    return batches


def build_network() -> Network:
    plant = make_plant()
    qa, qp, product = plant.qa, plant.qp, plant.product
    site_services.control_site_save(
        actor=qa,
        name="Northern Cell Therapy Control Site",
        address="1 Infirmary Street\nLeeds LS1 3EX",
        licence_number="MIA(POC) 12345/0001",
        scope_poc=True,
        scope_mm=False,
        regulator_contacts="",
        reason="licence granted",
    )
    # The site list changes in the year: a laboratory joins, a third site joins and leaves.
    lab = make_site(qa, "LAB9", SiteStatus.ACTIVE, kind=SiteKind.TESTING_LAB)
    masterfile_services.product_site_add(
        actor=qa, product=product, site=lab, role=ProductSiteRole.TESTING, reason="QC lab"
    )
    bristol = make_site(qa, "BRI3", SiteStatus.ACTIVE)
    link = masterfile_services.product_site_add(
        actor=qa,
        product=product,
        site=bristol,
        role=ProductSiteRole.MANUFACTURING,
        reason="candidate third site",
    )
    masterfile_services.product_site_end(
        actor=qa, link=link, reason="Trust withdrew from the programme"
    )
    stranger = make_site(qa, "ZZZ9", SiteStatus.ACTIVE)

    limit = comparability_services.reference_limit_approve(
        actor=qa,
        product=product,
        key="viability",
        basis=LimitBasis.SPECIFICATION,
        lower="80",
        upper="100",
        margin=str(MARGIN),
        credentials=signing(qa),
        reason="limits for comparability",
    )
    made(plant, plant.reference, REFERENCE_VALUES)
    made(plant, plant.spoke, SPOKE_VALUES)
    certified = []
    for _ in range(CERTIFIED):
        batch = ready_batch(plant)
        batch_services.batch_certify(
            actor=qp, batch=batch, credentials=signing(qp), reason="record reviewed; certified"
        )
        certified.append(batch)
    rejected = start(plant, plant.spoke)
    batch_services.batch_reject(
        actor=qp, batch=rejected, credentials=signing(qp), reason="bag damaged in transit"
    )
    comparability_services.comparability_evaluate(product_id=product.pk)
    deviation_services.signals_process()  # the comparability signals become deviations

    major = deviation_services.deviation_raise(
        actor=plant.operator,
        site=plant.spoke,
        batch=rejected,
        title="Apheresis bag damaged in transit",
        description="Outer bag split on arrival; product not used.",
        proposed_class=DeviationClass.MAJOR,
    )
    site_level = deviation_services.deviation_raise(
        actor=plant.operator,
        site=plant.reference,
        title="Clean-room door left open",
        description="Door alarm ignored for four minutes.",
        proposed_class=DeviationClass.MINOR,
    )
    deviation_services.deviation_raise(
        actor=qa,
        site=stranger,
        title="Not this product's site",
        description="A site-level deviation at a site that never made CART-01.",
        proposed_class=DeviationClass.CRITICAL,
    )
    today = timezone.localdate()
    open_capa = deviation_services.capa_create(
        actor=qa,
        title="Validate the shipper",
        description="Qualify a stronger transport bag.",
        kind=CapaKind.CORRECTIVE,
        owner=qa,
        due_on=today + dt.timedelta(days=30),
        effectiveness_due_on=today + dt.timedelta(days=60),
        reason="from the major deviation",
        deviation=major,
    )
    closed_capa = deviation_services.capa_create(
        actor=qa,
        title="Brief couriers",
        description="Handling briefing for every courier.",
        kind=CapaKind.PREVENTIVE,
        owner=qa,
        due_on=today + dt.timedelta(days=10),
        effectiveness_due_on=today + dt.timedelta(days=20),
        reason="from the major deviation",
        deviation=major,
        actions=[
            deviation_services.ActionInput(
                description="Brief them", owner=qa, due_on=today + dt.timedelta(days=5)
            )
        ],
    )
    deviation_services.capa_action_complete(
        actor=qa, action=closed_capa.actions.get(), outcome="All couriers briefed."
    )
    deviation_services.capa_effectiveness_check(
        actor=qa,
        capa=closed_capa,
        effectiveness="effective",
        notes="No damage since.",
        reason="checked",
    )
    closed_capa = deviation_services.capa_close(
        actor=qa, capa=closed_capa, credentials=signing(qa), reason="effective; closed"
    )

    check = comparability_services.check_schedule(
        actor=qa,
        product=product,
        site=plant.spoke,
        due_on=today + dt.timedelta(days=30),
        reason="yearly check",
    )
    comparability_services.check_record(
        actor=qa,
        check=check,
        material="Split apheresis lot AL-2026-7",
        pairs=[
            PairEntry("viability", f"L{i}", ref, ref + diff)
            for i, (ref, diff) in enumerate(
                [(92.0, 0.2), (93.0, -0.1), (91.5, 0.3), (92.5, 0.0)], start=1
            )
        ],
        reason="results in",
    )
    check = comparability_services.check_review(
        actor=qa,
        check=check,
        conclusion="Comparable on split material.",
        credentials=signing(qa),
        reason="reviewed",
    )
    # A status change of the spoke in the year, with its reason.
    site_services.site_transition(
        actor=qa, site=plant.spoke, action=SiteAction.PAUSE, reason="Annual shutdown of the unit"
    )
    site_services.site_transition(
        actor=qa, site=plant.spoke, action=SiteAction.RESUME, reason="Shutdown over"
    )
    return Network(
        plant,
        lab,
        bristol,
        stranger,
        limit,
        certified,
        rejected,
        major,
        site_level,
        open_capa,
        closed_capa,
        check,
    )


#
# Reading the PDF back
#


def _pdf(report: AnnualReport) -> bytes:
    with default_storage.open(report.file.name or "", "rb") as stored:
        content: bytes = stored.read()
    return content


def _done(report: AnnualReport) -> AnnualReport:
    report.refresh_from_db()
    assert report.status == ExportStatus.DONE, report.error
    return report


def _flat(text: str) -> str:
    return " ".join(text.split())


def _outline(reader: PdfReader) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []

    def walk(items: list[Any]) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item)
            else:
                page = reader.get_destination_page_number(item)
                assert page is not None
                found.append((str(item.title), page))

    walk(reader.outline)
    return found


def _page_of(reader: PdfReader, title_part: str) -> int:
    return next(page for title, page in _outline(reader) if title_part in title)


def _drawing_operators(reader: PdfReader, index: int) -> int:
    """How many path-construction operators (line-to, curve-to) page `index` draws."""
    data = reader.pages[index].get_contents().get_data()  # type: ignore[union-attr]
    return len(re.findall(rb"(?m) (?:l|c)$", data))


def _save(content: bytes, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.pdf"
    path.write_bytes(content)
    return path


def _to_png(source: Path, page: int, name: str) -> None:
    """Page `page` (1-based) of `source` as tests/artifacts/<name>.png, at 50 dpi."""
    if not HAS_PDFTOPPM:
        return
    subprocess.run(  # noqa: S603  (a fixed tool on a file this test wrote)
        [  # noqa: S607  (poppler-utils, installed by .ci/run)
            "pdftoppm",
            "-png",
            "-r",
            "50",
            "-f",
            str(page),
            "-l",
            str(page),
            "-singlefile",
            str(source),
            str(ARTIFACTS / name),
        ],
        check=True,
    )


def _welch_ci(site: Sequence[float], reference: Sequence[float]) -> tuple[float, float, float]:
    """The oracle: mean difference and its 90 % Welch confidence interval, by SciPy."""
    result = scipy_stats.ttest_ind(site, reference, equal_var=False)
    low, high = result.confidence_interval(confidence_level=0.90)
    return statistics.fmean(site) - statistics.fmean(reference), float(low), float(high)


def _numbers(text: str) -> list[float]:
    return [float(n.replace("−", "-")) for n in re.findall(r"[-−]?\d+(?:\.\d+)?", text)]


#
# End to end
#


@renders
def test_the_annual_report_is_a_pdfa_with_every_site_figure_and_chart(media, caplog):
    network = build_network()
    plant = network.plant
    year = timezone.localdate().year
    started = time.perf_counter()
    report, created = annual.annual_report_request(actor=plant.qa, product=plant.product, year=year)
    elapsed = time.perf_counter() - started
    assert created
    report = _done(report)
    content = _pdf(report)
    reader = PdfReader(io.BytesIO(content))
    source = _save(content, "annual-report")  # kept for a person to look at

    # The stored facts match the file.
    assert report.sha256 == hashlib.sha256(content).hexdigest()
    assert report.size_bytes == len(content)
    assert report.page_count == len(reader.pages)
    assert report.progress == 100 and report.attempts == 1
    assert report.year_complete is False and report.data_as_at is not None
    assert (report.file.name or "").startswith("reports/annual/")

    # PDF/A-3b with the document's metadata.
    xmp = reader.xmp_metadata
    assert xmp is not None
    xml = xmp.stream.get_data().decode()
    assert re.search(r'pdfaid:part(="|>)3', xml), xml
    assert re.search(r'pdfaid:conformance(="|>)B', xml), xml
    info = reader.metadata
    assert info is not None
    assert info.title == f"CART-01 annual report {year}"
    assert "Northern Cell Therapy Control Site" in (info.author or "")

    texts = [page.extract_text() or "" for page in reader.pages]
    whole = _flat(" ".join(texts))
    cover = _flat(texts[0])
    for expected in (
        f"CART-01 · Annual report {year}",
        "Year to date",
        "MIA(POC) 12345/0001",
        f"{annual_report_due_on(year):%d %b %Y}".lstrip("0"),
        "LDS1 — Site LDS1",
    ):
        assert expected in cover, expected

    # Every site of the product is named; the one that never made it is not.
    for code in ("LDS1", "MAN2", "LAB9", "BRI3"):
        assert code in whole, code
    assert "ZZZ9" not in whole

    # Bookmarks: each section, and the annexes.
    outline = [title for title, _ in _outline(reader)]
    for title in (
        "1 Sites and the master file",
        "2 Site status changes and audits",
        "3 Batches per site",
        "4 Deviations and CAPA",
        "5 Comparability across sites",
        "Annex A Signature manifest",
        "Annex B How the figures are made",
        "Viability (%)",
    ):
        assert title in outline, (title, outline)

    # Site-list changes: BRI3 added and removed, with the reason of the status changes.
    sites_text = _flat(" ".join(texts[_page_of(reader, "1 Sites") : _page_of(reader, "3 Batches")]))
    assert re.search(r"Added BRI3 Site BRI3 Manufacturing", sites_text)
    assert re.search(r"Removed BRI3 Site BRI3 Manufacturing", sites_text)
    assert "Annual shutdown of the unit" in sites_text

    # Batches per site: made, certified, rejected, rate.
    batches_text = _flat(texts[_page_of(reader, "3 Batches")])
    made_ref = len(REFERENCE_VALUES) + CERTIFIED
    made_spoke = len(SPOKE_VALUES) + 1
    # Code, name (reference), made, certified, concession, rejected, rate, not decided.
    assert re.search(
        rf"LDS1 Site LDS1 \(reference\) {made_ref} {CERTIFIED} 0 0 100\.0 % {made_ref - CERTIFIED}",
        batches_text,
    ), batches_text
    assert re.search(rf"MAN2 Site MAN2 {made_spoke} 0 0 1 0\.0 % {made_spoke - 1}", batches_text)
    assert re.search(
        rf"All sites {made_ref + made_spoke} {CERTIFIED} 0 1 "
        rf"{100 * CERTIFIED / (CERTIFIED + 1):.1f} %",
        batches_text,
    )

    # Deviations by site: MAN2 has the major one and one per comparability signal there; LDS1
    # the site-level minor one and its own signals; ZZZ9's is not this product's.
    spoke_signals = ComparabilitySignal.objects.filter(site=plant.spoke).count()
    assert spoke_signals >= 2  # the run of low points and the failed equivalence
    deviations_text = _flat(
        " ".join(texts[_page_of(reader, "4 Deviations") : _page_of(reader, "5 Comparability")])
    )
    for site, own in ((plant.spoke, 1), (plant.reference, 1)):
        raised = Deviation.objects.filter(site=site)
        signals = ComparabilitySignal.objects.filter(site=site).count()
        assert raised.count() == signals + own
        by_class = dict.fromkeys(("minor", "major", "critical"), 0)
        for deviation in raised:
            by_class[deviation.deviation_class] += 1
        # Raised, minor, major, critical, closed, open at the end, overdue.
        expected = (
            f"{site.code} Site {site.code} {raised.count()} {by_class['minor']} "
            f"{by_class['major']} {by_class['critical']} 0 {raised.count()} 0"
        )
        assert expected in deviations_text, (expected, deviations_text)
    assert network.major.number in deviations_text
    assert "Apheresis bag damaged in transit" in deviations_text
    # CAPA: two opened at MAN2, one closed, one open, none overdue.
    assert re.search(r"MAN2 2 1 1 0", deviations_text), deviations_text

    # Comparability: the verdicts and the confidence interval, checked against SciPy.
    comparability_text = _flat(
        " ".join(texts[_page_of(reader, "5 Comparability") : _page_of(reader, "Annex A")])
    )
    assert "Not shown" in comparability_text
    difference, low, high = _welch_ci(SPOKE_VALUES, network.reference_values)
    row = re.search(r"MAN2 (\d+) (\S+) (\S+) (\S+) \[(\S+), (\S+)\] (\S+) Not shown", whole)
    assert row is not None, comparability_text
    n, mean, _sd, diff_text, low_text, high_text, _p = row.groups()
    assert int(n) == len(SPOKE_VALUES)
    assert float(mean) == pytest.approx(statistics.fmean(SPOKE_VALUES), abs=5e-4)
    assert float(diff_text) == pytest.approx(difference, abs=5e-4)
    assert float(low_text) == pytest.approx(low, abs=5e-4)
    assert float(high_text) == pytest.approx(high, abs=5e-4)
    assert high < -MARGIN  # the oracle agrees: not shown
    assert "LCL 80" in comparability_text and "UCL 100" in comparability_text
    # The annual check, reviewed and comparable, with its signer.
    assert "Split apheresis lot AL-2026-7" in comparability_text
    assert re.search(r"MAN2 \S+ Reviewed \S+ Comparable Yes", comparability_text)

    # The charts are there: one per site, drawn as vector paths on the comparability pages.
    for code in ("LDS1", "MAN2"):
        assert f"Control chart: Viability at {code} (%)" in comparability_text
    assert "Control chart: Viability at BRI3" not in comparability_text  # no result there
    assert "No viability result in the period at BRI3: no chart." in comparability_text
    chart_page = next(i for i, t in enumerate(texts) if "Control chart: Viability at MAN2" in t)
    # A chart is hundreds of vector paths (glyph outlines, points, lines): far more than the
    # tables and badges of the text pages draw.
    text_pages = [_page_of(reader, "Annex B"), _page_of(reader, "3 Batches")]
    assert _drawing_operators(reader, chart_page) > 5 * max(
        _drawing_operators(reader, page) for page in text_pages
    )
    # Drawn as SVG presentation attributes: WeasyPrint logs no unknown CSS property.
    assert not [r for r in caplog.records if "unknown property" in r.getMessage()]

    # The signature manifest names the limits' approval and the check's review.
    manifest = _flat(texts[_page_of(reader, "Annex A")])
    assert "Reference limits: Viability" in manifest
    assert "Annual comparability check at MAN2" in manifest
    assert "Quinn Adams" in manifest and "Valid" in manifest

    # Every page has the header and the footer with the real page count.
    pages = len(texts)
    for number, text in enumerate(texts, start=1):
        flat = _flat(text)
        assert f"Page {number} of {pages}" in flat
        assert "CART-01 — Product CART-01" in flat
        assert f"Annual report {year} · year to date" in flat
        assert "Made for Quinn Adams at" in flat

    # The figures, embedded.
    attachments = reader.attachments
    assert list(attachments) == [annual.FIGURES_NAME]
    figures = json.loads(attachments[annual.FIGURES_NAME][0])
    assert figures["format"] == annual.FIGURES_FORMAT
    assert figures["year"] == year and figures["period"]["whole_year"] is False
    sections = figures["sections"]
    assert list(sections) == [
        "masterfile.sites",
        "sites.status",
        "batches",
        "deviations",
        "batches.comparability",
    ]
    batch_rows = {r["code"]: r for r in sections["batches"]["data"]["rows"]}
    assert batch_rows["LDS1"]["made"] == made_ref and batch_rows["MAN2"]["rejected"] == 1
    cqa = sections["batches.comparability"]["data"]["cqas"][0]
    assert "charts_svg" not in cqa and "series" not in cqa
    spoke_row = next(r for r in cqa["rows"] if r["code"] == "MAN2")
    assert spoke_row["verdict"] == "not_shown"
    assert spoke_row["ci_low"] == pytest.approx(low, rel=1e-9)
    assert spoke_row["ci_high"] == pytest.approx(high, rel=1e-9)

    # The completion is audited with the file's hash.
    completed = AuditEvent.objects.get(
        event_type=MasterFileEvent.ANNUAL_REPORT_COMPLETED, target_id=str(report.pk)
    )
    assert completed.extra_data["sha256"] == report.sha256
    assert completed.extra_data["pages"] == pages

    _to_png(source, 1, "annual-report-cover")
    _to_png(source, _page_of(reader, "3 Batches") + 1, "annual-report-batches")
    _to_png(source, _page_of(reader, "4 Deviations") + 1, "annual-report-deviations")
    _to_png(source, _page_of(reader, "5 Comparability") + 1, "annual-report-comparability")
    _to_png(source, chart_page + 1, "annual-report-chart")
    assert elapsed < 120


@renders
def test_the_master_file_export_gains_the_comparability_annex(media):
    network = build_network()
    plant = network.plant
    version = plant.product.master_file.versions.get(status="effective")
    export = exports.export_request(actor=plant.qa, version=version)
    export.refresh_from_db()
    assert export.status == ExportStatus.DONE, export.error
    with default_storage.open(export.file.name or "", "rb") as stored:
        content = stored.read()
    reader = PdfReader(io.BytesIO(content))
    outline = _outline(reader)
    titles = [title for title, _ in outline]
    annex_title = "Annex A2 Comparability across sites (last 12 months)"
    assert annex_title in titles
    # After the site annex and before the signature manifest, in the contents too.
    assert titles.index("Annex A Site annex") < titles.index(annex_title)
    assert titles.index(annex_title) < titles.index("Annex B Signature manifest")
    texts = [_flat(page.extract_text() or "") for page in reader.pages]
    start = _page_of(reader, annex_title)
    end = _page_of(reader, "Annex B Signature manifest")
    annex = " ".join(texts[start:end])
    assert "Not part of the approved master file" in annex
    assert "as at" in annex
    assert re.search(r"MAN2 \d+ .* Not shown", annex)
    assert "Control chart: Viability at MAN2" in annex
    assert re.search(
        rf"Annex A2 Comparability across sites \(last 12 months\) {start + 1}\b", texts[1]
    )
    _to_png(_save(content, "annual-report-annex-export"), start + 1, "annual-report-annex")


#
# The sections on their own: scope, open and overdue
#


@pytest.mark.django_db
def test_the_deviation_section_judges_overdue_at_the_cutoff_and_ignores_other_sites():
    network = build_network()
    plant = network.plant
    product = plant.product
    now = timezone.now()
    year = now.year

    def scope(as_at: dt.datetime) -> reports.ReportScope:
        return annual.report_scope(product, year, now=as_at)

    today = collect_deviations(scope(now))
    assert today["capa_totals"] == {"opened": 2, "closed": 1, "open": 1, "overdue": 0}
    assert {row["code"] for row in today["sites"]} >= {"LDS1", "MAN2", "LAB9", "BRI3"}
    assert "ZZZ9" not in {row["code"] for row in today["sites"]}
    assert today["totals"]["raised"] == Deviation.objects.exclude(site=network.stranger).count()
    # Forty-five days on (still within the year's data), the open CAPA due in thirty is overdue.
    later = collect_deviations(dataclasses.replace(scope(now), as_at=now + dt.timedelta(days=45)))
    if later["as_at"] < f"{year + 1}":
        assert later["capa_totals"]["overdue"] == 1
        assert [c["number"] for c in later["capa_overdue"]] == [network.open_capa.number]


@pytest.mark.django_db
def test_a_year_before_any_record_reports_nothing_and_draws_no_chart():
    network = build_network()
    product = network.plant.product
    scope = annual.report_scope(product, 2020, now=timezone.now())
    data = collect_comparability(scope)
    assert data["cqas"] == [] and data["checks_reviewed"] == []
    drawn = reports.draw(
        [reports.CollectedSection("batches.comparability", "t", 50, "x", "", data)]
    )
    assert drawn[0].data["cqas"] == []


def test_a_document_draws_at_most_its_chart_budget_flagged_sites_first(monkeypatch):
    """With 200 sites a report cannot hold every chart (each costs the layout about a second
    and 10-25 MB): the flagged sites are drawn first, then the reference site, then the others;
    the rest are named. The grey reference series is thinned, evenly."""
    monkeypatch.setattr(batch_report, "CHARTS_MAX", 3)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def series(code: str, n: int, *, reference: bool = False) -> dict[str, Any]:
        points = [
            [f"{code}-{i}", (start + dt.timedelta(hours=i)).isoformat(), 90.0 + i % 3, []]
            for i in range(n)
        ]
        return {"code": code, "reference": reference, "points": points}

    codes = ["S1", "S2", "S3", "S4", "S5"]
    cqa = {
        "key": "viability",
        "name": "Viability",
        "unit": "%",
        "limit": {"centre": 90.0, "lower": 80.0, "upper": 100.0},
        "rows": [{"code": "REF", "verdict": "", "rule_breaks": 0, "signals": 0}]
        + [
            {
                "code": code,
                "verdict": "not_shown" if code == "S4" else "comparable",
                "rule_breaks": 0,
                "signals": 0,
            }
            for code in codes
        ],
        "series": [series("REF", 250, reference=True), *(series(c, 5) for c in codes)],
    }
    drawn = batch_report.draw_comparability({"cqas": [cqa]})["cqas"][0]
    assert [c["code"] for c in drawn["charts_svg"]] == ["REF", "S1", "S4"]
    assert drawn["not_charted"] == ["S2", "S3", "S5"]
    spoke = drawn["charts_svg"][1]
    assert (spoke["reference_shown"], spoke["reference_total"]) == (200, 250)
    assert all(
        c["svg"].startswith("<svg") and "style=" not in c["svg"] for c in drawn["charts_svg"]
    )
    assert "series" not in drawn


#
# Task behaviour
#


@renders
def test_rerunning_a_finished_report_changes_nothing(media):
    plant = make_plant()
    report, _ = annual.annual_report_request(
        actor=plant.qa, product=plant.product, year=timezone.localdate().year
    )
    report = _done(report)
    before = (report.sha256, report.updated_at, report.file.name, report.attempts)
    events = AuditEvent.objects.count()
    history = report.history.count()
    annual.annual_report_run(report.pk)
    annual_report_make.apply(args=(report.pk,))
    report.refresh_from_db()
    assert (report.sha256, report.updated_at, report.file.name, report.attempts) == before
    assert AuditEvent.objects.count() == events
    assert report.history.count() == history
    assert len(list(media.rglob("*.pdf"))) == 1


@renders
def test_a_failed_render_shows_its_error_and_a_retry_makes_the_pdf(media, monkeypatch):
    plant = make_plant()

    def broken_layout(html: str) -> Any:
        raise ValueError("the layout engine ran out of paper")

    monkeypatch.setattr(pdf, "layout", broken_layout)
    report, _ = annual.annual_report_request(
        actor=plant.qa, product=plant.product, year=timezone.localdate().year
    )
    report.refresh_from_db()
    assert report.status == ExportStatus.FAILED
    assert "ValueError" in report.error and "ran out of paper" in report.error
    assert not report.file and not report.sha256
    assert AuditEvent.objects.filter(
        event_type=MasterFileEvent.ANNUAL_REPORT_FAILED, target_id=str(report.pk)
    ).exists()

    monkeypatch.undo()
    annual.annual_report_retry(actor=plant.qa, report=report)
    report = _done(report)
    assert report.attempts == 2 and report.error == ""
    assert AuditEvent.objects.filter(
        event_type=MasterFileEvent.ANNUAL_REPORT_RETRIED, target_id=str(report.pk), actor=plant.qa
    ).exists()


@pytest.mark.django_db
def test_the_renderer_refuses_to_run_inside_a_transaction(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    plant = make_plant()
    report, _ = annual.annual_report_request(
        actor=plant.qa, product=plant.product, year=timezone.localdate().year
    )
    annual.annual_report_run(report.pk)
    report.refresh_from_db()
    assert report.status == ExportStatus.FAILED
    assert "outside any database transaction" in report.error
    assert not list(tmp_path.rglob("*.pdf"))


def test_the_report_task_acknowledges_late_and_retries_transient_failures():
    from django.db import OperationalError

    assert annual_report_make.name == "masterfile.annual_report_make"
    assert annual_report_make.acks_late is True
    assert annual_report_make.reject_on_worker_lost is True
    assert OperationalError in annual_report_make.autoretry_for
    assert OSError in annual_report_make.autoretry_for


#
# Requests, downloads and the submission: who, when, and what is recorded
#


@pytest.fixture
def plant(db: None) -> Plant:
    return make_plant()


@pytest.mark.django_db
def test_a_request_is_queued_on_commit_with_an_audit_event(
    plant, django_capture_on_commit_callbacks
):
    year = timezone.localdate().year
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        report, created = annual.annual_report_request(
            actor=plant.qa, product=plant.product, year=year
        )
    assert created and len(callbacks) == 1
    assert report.status == ExportStatus.QUEUED and report.stage == "Queued"
    assert report.due_on == dt.date(year + 1, 3, 31)
    event = AuditEvent.objects.get(event_type=MasterFileEvent.ANNUAL_REPORT_REQUESTED)
    assert event.actor == plant.qa and event.target_id == str(report.pk)
    assert event.extra_data["year"] == year
    assert report.history.count() == 1


@pytest.mark.django_db
def test_a_second_request_while_one_is_in_flight_returns_it(
    plant, django_capture_on_commit_callbacks
):
    year = timezone.localdate().year
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first, created = annual.annual_report_request(
            actor=plant.qa, product=plant.product, year=year
        )
        second, again = annual.annual_report_request(
            actor=plant.qa, product=plant.product, year=year
        )
    assert created and not again and second.pk == first.pk
    assert len(callbacks) == 1
    assert AnnualReport.objects.count() == 1
    assert (
        AuditEvent.objects.filter(event_type=MasterFileEvent.ANNUAL_REPORT_REQUESTED).count() == 1
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("year", "code"),
    [
        (timezone.localdate().year + 1, "year_in_future"),
        (2025, "year_before_designation"),  # designated 1 Mar 2026
        (1999, "year_before_designation"),
        ("twenty", "invalid_year"),
        (True, "invalid_year"),
    ],
)
def test_a_bad_year_is_refused_and_nothing_is_written(plant, year, code):
    events = AuditEvent.objects.count()
    with pytest.raises(ApplicationError) as refused:
        annual.annual_report_request(actor=plant.qa, product=plant.product, year=year)
    assert refused.value.code == code and refused.value.status_code == 400
    assert not AnnualReport.objects.exists()
    assert AuditEvent.objects.count() == events


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["qp", "inspector", "operator"])
def test_only_qa_requests_a_report(plant, persona, who):
    user = {"qp": plant.qp, "operator": plant.operator}.get(who) or persona(who)
    expected: type[Exception] = PermissionRefusedError
    with pytest.raises(expected):
        annual.annual_report_request(
            actor=user, product=plant.product, year=timezone.localdate().year
        )
    assert not AnnualReport.objects.exists()


@pytest.mark.django_db
def test_site_staff_do_not_see_reports(plant, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        report, _ = annual.annual_report_request(
            actor=plant.qa, product=plant.product, year=timezone.localdate().year
        )
    assert list(annual.annual_reports_visible_to(plant.qp)) == [report]
    for user in (plant.operator, plant.lead):
        assert not annual.annual_reports_visible_to(user).exists()
        with pytest.raises(AnnualReport.DoesNotExist):
            annual.annual_report_download_record(actor=user, report=report)


@pytest.mark.django_db
def test_a_download_or_submission_before_the_file_is_ready_is_refused(
    plant, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        report, _ = annual.annual_report_request(
            actor=plant.qa, product=plant.product, year=timezone.localdate().year
        )
    with pytest.raises(ConflictError) as refused:
        annual.annual_report_download_record(actor=plant.qa, report=report)
    assert refused.value.code == "report_not_ready"
    with pytest.raises(ConflictError) as refused:
        annual.annual_report_submission_record(
            actor=plant.qa,
            report=report,
            submitted_on=timezone.localdate(),
            reference="MHRA-1",
            reason="sent",
        )
    assert refused.value.code == "report_not_ready"
    report.refresh_from_db()
    assert report.submitted_on is None


@renders
def test_downloads_and_the_submission_are_recorded(media, persona):
    plant = make_plant()
    year = timezone.localdate().year
    report = _done(
        annual.annual_report_request(actor=plant.qa, product=plant.product, year=year)[0]
    )
    inspector = persona("inspector")
    annual.annual_report_download_record(actor=inspector, report=report)
    annual.annual_report_download_record(actor=plant.qp, report=report)
    downloads = AuditEvent.objects.filter(
        event_type=MasterFileEvent.ANNUAL_REPORT_DOWNLOADED, target_id=str(report.pk)
    ).order_by("seq")
    assert [e.actor for e in downloads] == [inspector, plant.qp]
    assert all(e.extra_data["sha256"] == report.sha256 for e in downloads)

    # Bad submissions write nothing.
    today = timezone.localdate()
    for kwargs, code in (
        ({"submitted_on": today + dt.timedelta(days=1)}, "date_in_future"),
        ({"submitted_on": today - dt.timedelta(days=1)}, "submitted_before_report"),
        ({"reference": "  "}, "reference_required"),
        ({"reference": "X" * 101}, "too_long"),
        ({"reason": ""}, "reason_required"),
        ({"submitted_on": "yesterday"}, "invalid_date"),
    ):
        fields: dict[str, Any] = {
            "submitted_on": today,
            "reference": "MHRA-DMMF-2026-0042",
            "reason": "sent",
        }
        fields.update(kwargs)
        with pytest.raises(ApplicationError) as refused:
            annual.annual_report_submission_record(actor=plant.qa, report=report, **fields)
        assert refused.value.code == code, code
    with pytest.raises(PermissionRefusedError):
        annual.annual_report_submission_record(
            actor=plant.qp, report=report, submitted_on=today, reference="R", reason="sent"
        )
    assert not AuditEvent.objects.filter(
        event_type=MasterFileEvent.ANNUAL_REPORT_SUBMITTED
    ).exists()

    submitted = annual.annual_report_submission_record(
        actor=plant.qa,
        report=report,
        submitted_on=today,
        reference="MHRA-DMMF-2026-0042",
        reason="Sent through the MHRA portal",
    )
    assert submitted.submitted_on == today and submitted.submitted_by == plant.qa
    event = AuditEvent.objects.get(
        event_type=MasterFileEvent.ANNUAL_REPORT_SUBMITTED, target_id=str(report.pk)
    )
    assert event.reason == "Sent through the MHRA portal"
    assert event.extra_data["reference"] == "MHRA-DMMF-2026-0042"
    assert event.extra_data["on_time"] is True
    latest = submitted.history.first()
    assert latest.history_change_reason == "Sent through the MHRA portal"
    assert latest.submission_reference == "MHRA-DMMF-2026-0042"
    with pytest.raises(ConflictError) as refused:
        annual.annual_report_submission_record(
            actor=plant.qa, report=report, submitted_on=today, reference="again", reason="again"
        )
    assert refused.value.code == "already_submitted"

    # The due-date tracking reads it back.
    rows = annual.years_due(plant.product, list(AnnualReport.objects.all()))
    this_year = next(r for r in rows if r.year == year)
    assert this_year.submitted == report and this_year.overdue is False
    assert this_year.due_on == dt.date(year + 1, 3, 31)

    # A stored file that no longer matches its hash is not handed out.
    with default_storage.open(report.file.name or "", "wb") as stored:
        stored.write(b"%PDF-1.7 not the file that was made")
    with pytest.raises(ConflictError) as refused:
        annual.annual_report_download_record(actor=plant.qa, report=report)
    assert refused.value.code == "report_file_mismatch"
    assert downloads.count() == 2


def test_due_dates_are_the_end_of_march_after_the_year():
    assert annual_report_due_on(2026) == dt.date(2027, 3, 31)


#
# A real worker (CI)
#


@pytest.mark.celery_worker
@renders
def test_a_real_worker_on_redis_makes_the_annual_report(media, real_worker):
    plant = make_plant()
    report, _ = annual.annual_report_request(
        actor=plant.qa, product=plant.product, year=timezone.localdate().year
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        report.refresh_from_db()
        if report.status in (ExportStatus.DONE, ExportStatus.FAILED):
            break
        time.sleep(0.2)
    assert report.status == ExportStatus.DONE, report.error or report.stage
    assert report.sha256 == hashlib.sha256(_pdf(report)).hexdigest()
    assert AuditEvent.objects.filter(
        event_type=MasterFileEvent.ANNUAL_REPORT_COMPLETED, target_id=str(report.pk)
    ).exists()
