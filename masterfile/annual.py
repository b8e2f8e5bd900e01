"""The annual report of a product for a calendar year (issue 8 §7; MF-07, RP-01): request, run,
fail, retry, download and the record of its submission to the MHRA, and the document itself.

The report follows the master-file export's conventions (masterfile/exports.py):

- `annual_report_request` makes the job row (`AnnualReport`) and sends the task on commit; a
  second request for the same product and year while one is queued or running returns that one;
- `annual_report_run` (the task body, `masterfile.tasks.annual_report_make`) claims the row under
  `select_for_update()` — a finished report is left alone, so a redelivered message does
  nothing —, reads everything in one read-only snapshot, draws the charts and lays the PDF out
  **outside any transaction**, stores the file and records its SHA-256, size and page count
  with a completion event in one short transaction;
- a transient failure (database or storage briefly away) puts the row back in the queue and
  propagates for the task's retry policy; any other failure is final: the row keeps the error,
  an audit event records it, and `annual_report_retry` queues it again;
- `annual_report_download_record` checks the stored file against its SHA-256 and records the
  download as an audit event; `annual_report_submission_record` records the MHRA submission.

The figures come from the report sections the apps register with `controlsite.reports`
(site-list changes here, site status in `sites`, batches and comparability in `batches`,
deviations and CAPA in `deviations`), so `masterfile` never imports the apps above it.

Who: Control Site QA requests, retries and records the submission; whoever sees every site
(QA, QPs, inspectors) sees and downloads reports — a report shows every site's figures, so a
person limited to some sites does not see it (404).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from controlsite import reports
from controlsite.accounts import permissions
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability
from controlsite.accounts.scope import token_site_limit
from controlsite.audit.context import audit_context
from controlsite.audit.services import audit_event_record
from controlsite.background.tasks import enqueue_on_commit
from controlsite.errors import (
    ApplicationError,
    ConflictError,
    PermissionRefusedError,
    require_reason,
)
from controlsite.files import stored_sha256
from masterfile import pdf, pdfjobs
from masterfile.choices import ExportStatus, ProductSiteRole
from masterfile.events import MasterFileEvent
from masterfile.models import (
    ANNUAL_REPORT_FIRST_YEAR,
    SUBMISSION_REFERENCE_MAX,
    AnnualReport,
    Product,
    annual_report_due_on,
    annual_report_upload_to,
)
from masterfile.report import scope_site_ids
from masterfile.selectors import effective_version, products_visible_to
from sites.selectors import control_site

logger = logging.getLogger(__name__)

FIGURES_FORMAT = "controlsite.masterfile.annual-report/1"
FIGURES_NAME = "annual-report-figures.json"

STAGE_COLLECT = (5, "Reading the records")
STAGE_DRAW = (15, "Drawing the control charts")
STAGE_HTML = (30, "Building the document")
STAGE_LAYOUT = (35, "Laying out the pages")
STAGE_WRITE = (80, "Writing the PDF/A file")


#
# Reads
#


def _sees_every_site(user: Any) -> bool:
    return permissions.user_can(user, Capability.VIEW_ALL_SITES) and token_site_limit(user) is None


def annual_reports_visible_to(user: Any) -> QuerySet[AnnualReport]:
    """The reports of the products `user` may see, for those who see every site (a report
    shows every site's figures); nobody else sees any."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return AnnualReport.objects.none()
    if not _sees_every_site(user):
        return AnnualReport.objects.none()
    return AnnualReport.objects.filter(product__in=products_visible_to(user)).select_related(
        "product", "requested_by", "submitted_by"
    )


def may_request(user: Any) -> bool:
    """Control Site QA requests reports and records submissions (the services check again)."""
    return permissions.user_can(user, Capability.MANAGE_QUALITY_RECORDS)


def may_see_reports(user: Any) -> bool:
    return _sees_every_site(user)


def report_years(product: Product, *, today: dt.date | None = None) -> list[int]:
    """The years a report may be asked for: from the designation's year to this one, newest
    first."""
    today = today or timezone.localdate()
    first = max(product.designation_date.year, ANNUAL_REPORT_FIRST_YEAR)
    return list(range(today.year, first - 1, -1))


@dataclasses.dataclass(frozen=True)
class YearDue:
    """MF-07 due-date tracking: one year of a product, when its report is due, the report
    submitted for it (if any) and the newest one made."""

    year: int
    due_on: dt.date
    complete: bool  # the year is over
    submitted: AnnualReport | None
    latest: AnnualReport | None
    overdue: bool


def years_due(
    product: Product, reports_of_product: list[AnnualReport], *, today: dt.date | None = None
) -> list[YearDue]:
    """Each reportable year, newest first, with its due date and submission (from the reports
    already read: no query)."""
    today = today or timezone.localdate()
    out = []
    for year in report_years(product, today=today):
        of_year = [r for r in reports_of_product if r.year == year]
        submitted = next((r for r in of_year if r.submitted_on is not None), None)
        due_on = annual_report_due_on(year)
        out.append(
            YearDue(
                year=year,
                due_on=due_on,
                complete=year < today.year,
                submitted=submitted,
                latest=of_year[0] if of_year else None,
                overdue=submitted is None and due_on < today,
            )
        )
    return out


def report_in_flight(product: Product, year: int) -> AnnualReport | None:
    return AnnualReport.objects.filter(
        product=product, year=year, status__in=[ExportStatus.QUEUED, ExportStatus.RUNNING]
    ).first()


#
# Rules shared by the services
#


def _require_quality(actor: User, what: str) -> None:
    if not may_request(actor):
        raise PermissionRefusedError(f"Only Control Site QA {what}.", code="permission_denied")


def _visible(actor: User, report: AnnualReport) -> AnnualReport:
    """The report if `actor` may see it; `AnnualReport.DoesNotExist` (404) otherwise."""
    return annual_reports_visible_to(actor).get(pk=report.pk)


def _year(product: Product, value: Any, today: dt.date) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        year = value if isinstance(value, int) else int(str(value).strip())
    except ValueError:
        raise ApplicationError("The year is a number, e.g. 2026.", code="invalid_year") from None
    if year > today.year:
        raise ApplicationError(
            f"{year} has not begun: a report covers a year that has started (up to {today.year}).",
            code="year_in_future",
        )
    first = max(product.designation_date.year, ANNUAL_REPORT_FIRST_YEAR)
    if year < first:
        raise ApplicationError(
            f"{product.code} was designated on {product.designation_date:%d %b %Y}: there is "
            f"nothing to report before {first}.",
            code="year_before_designation",
        )
    return year


def _task() -> Any:
    # Imported late: the task module imports this one.
    from masterfile.tasks import annual_report_make

    return annual_report_make


def _extra(report: AnnualReport) -> dict[str, Any]:
    return {"product": report.product.code, "year": report.year}


#
# Services the pages and the API call
#


def annual_report_request(*, actor: User, product: Product, year: Any) -> tuple[AnnualReport, bool]:
    """Ask for the annual report of `product` for `year` (MF-07, RP-01). Returns the report and
    whether it is new.

    Who: Control Site QA (403 otherwise) for a product they may see (`Product.DoesNotExist`,
    404, otherwise). The year has begun (400 `year_in_future`) and is not before the year of
    the product's designation (400 `year_before_designation`); the current year is reported up
    to the moment the records are read. While a report of the same product and year is queued
    or running, that one is returned and nothing is written (one queued or running at a time;
    a running one silent for longer than a task may live is failed as abandoned first).
    Writes the report row and an `annual_report_requested` audit event; the task is sent on
    commit.
    """
    visible = products_visible_to(actor).get(pk=product.pk)
    _require_quality(actor, "asks for annual reports")
    year = _year(visible, year, timezone.localdate())
    with transaction.atomic(), audit_context(reason="annual report requested", user=actor):
        # The product's row lock serialises requests for it, so two clicks make one report.
        locked = Product.objects.select_for_update().get(pk=visible.pk)
        running = report_in_flight(locked, year)
        if running is not None and pdfjobs.abandoned(running):
            annual_report_fail(
                running.pk,
                "The report was abandoned: its worker stopped while making the PDF. Retry it "
                "or ask for a new one.",
            )
            running = report_in_flight(locked, year)
        if running is not None:
            return running, False
        report = AnnualReport.objects.create(
            product=locked,
            year=year,
            requested_by=actor,
            status=ExportStatus.QUEUED,
            stage=pdfjobs.STAGE_QUEUED,
            created_by=actor,
        )
        audit_event_record(
            event_type=MasterFileEvent.ANNUAL_REPORT_REQUESTED,
            actor=actor,
            target=report,
            extra={**_extra(report), "due_on": report.due_on},
        )
        enqueue_on_commit(_task(), report.pk)
    return report, True


def annual_report_retry(*, actor: User, report: AnnualReport) -> AnnualReport:
    """Queue a failed report again (its attempts count is kept). Control Site QA; 409
    `report_not_failed` unless it failed, 409 `report_in_flight` while another report of the
    same product and year is queued or running. Writes an `annual_report_retried` event."""
    visible = _visible(actor, report)
    _require_quality(actor, "retries annual reports")
    with transaction.atomic(), audit_context(reason="annual report retried", user=actor):
        Product.objects.select_for_update().get(pk=visible.product_id)
        locked = (
            AnnualReport.objects.select_for_update(of=("self",))
            .select_related("product")
            .get(pk=visible.pk)
        )
        if locked.status != ExportStatus.FAILED:
            raise ConflictError(
                f"Report {locked.pk} is {locked.get_status_display().lower()}; only a failed "
                "report can be retried.",
                code="report_not_failed",
            )
        running = report_in_flight(locked.product, locked.year)
        if running is not None:
            raise ConflictError(
                f"Report {running.pk} of {locked.year} is already "
                f"{running.get_status_display().lower()}.",
                code="report_in_flight",
                extra={"report": running.pk},
            )
        previous_error = locked.error
        pdfjobs.requeued(locked)
        audit_event_record(
            event_type=MasterFileEvent.ANNUAL_REPORT_RETRIED,
            actor=actor,
            target=locked,
            extra={
                **_extra(locked),
                "attempts": locked.attempts,
                "previous_error": previous_error[:500],
            },
        )
        enqueue_on_commit(_task(), locked.pk)
    return locked


def annual_report_download_record(*, actor: User, report: AnnualReport) -> None:
    """Record that `actor` is downloading the PDF (an audit event each time). Whoever may see
    the report; 409 `report_not_ready` until it is done, 409 `report_file_mismatch` if the
    stored file no longer matches its SHA-256 (it is then not handed out)."""
    visible = _visible(actor, report)
    stored_name = visible.file.name or ""
    if visible.status != ExportStatus.DONE or not stored_name:
        raise ConflictError(
            f"Report {visible.pk} is {visible.get_status_display().lower()}; the file can be "
            "downloaded once it is done.",
            code="report_not_ready",
        )
    # Hashing a file is I/O: outside the transaction.
    if stored_sha256(stored_name) != visible.sha256:
        raise ConflictError(
            f"The stored file of report {visible.pk} no longer matches its recorded SHA-256; "
            "it is not handed out. Ask for the report again and tell QA.",
            code="report_file_mismatch",
        )
    with transaction.atomic(), audit_context(reason="annual report downloaded", user=actor):
        audit_event_record(
            event_type=MasterFileEvent.ANNUAL_REPORT_DOWNLOADED,
            actor=actor,
            target=visible,
            extra={
                **_extra(visible),
                "sha256": visible.sha256,
                "file": visible.filename,
                "size_bytes": visible.size_bytes,
            },
        )


def annual_report_submission_record(
    *,
    actor: User,
    report: AnnualReport,
    submitted_on: Any,
    reference: str,
    reason: str,
) -> AnnualReport:
    """Record that a finished report was submitted to the MHRA: the day (not in the future,
    not before the report was made) and the MHRA's reference (MF-07 "submission record";
    RP-01). Control Site QA, once per report (409 `already_submitted`); only a done report
    (409 `report_not_ready`); one submission per product and year (409
    `year_already_submitted`, naming the report submitted). Writes the submission on the row
    (its history keeps the reason) and an `annual_report_submitted` audit event with whether
    it was on time."""
    visible = _visible(actor, report)
    _require_quality(actor, "records submissions to the MHRA")
    if not isinstance(submitted_on, dt.date) or isinstance(submitted_on, dt.datetime):
        raise ApplicationError("Give the day the report was submitted.", code="invalid_date")
    if submitted_on > timezone.localdate():
        raise ApplicationError("The submission day cannot be in the future.", code="date_in_future")
    reference = " ".join(str(reference or "").split())
    if not reference:
        raise ApplicationError(
            "Give the MHRA's reference for the submission.", code="reference_required"
        )
    if len(reference) > SUBMISSION_REFERENCE_MAX:
        raise ApplicationError(
            f"The reference is {len(reference)} characters; the limit is "
            f"{SUBMISSION_REFERENCE_MAX}.",
            code="too_long",
        )
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        Product.objects.select_for_update().get(pk=visible.product_id)
        locked = (
            AnnualReport.objects.select_for_update(of=("self",))
            .select_related("product")
            .get(pk=visible.pk)
        )
        if locked.status != ExportStatus.DONE:
            raise ConflictError(
                f"Report {locked.pk} is {locked.get_status_display().lower()}: only a finished "
                "report can have been submitted.",
                code="report_not_ready",
            )
        if locked.submitted_on is not None:
            raise ConflictError(
                f"Report {locked.pk} was already recorded as submitted on "
                f"{locked.submitted_on:%d %b %Y} ({locked.submission_reference}).",
                code="already_submitted",
            )
        other = (
            AnnualReport.objects.filter(
                product_id=locked.product_id, year=locked.year, submitted_on__isnull=False
            )
            .exclude(pk=locked.pk)
            .first()
        )
        if other is not None:
            raise ConflictError(
                f"The {locked.year} report of {locked.product.code} was already submitted: "
                f"report {other.pk}, on {other.submitted_on:%d %b %Y} "
                f"({other.submission_reference}).",
                code="year_already_submitted",
                extra={"report": other.pk},
            )
        made_on = timezone.localdate(locked.finished_at) if locked.finished_at else None
        if made_on is not None and submitted_on < made_on:
            raise ApplicationError(
                f"The report was made on {made_on:%d %b %Y}: it cannot have been submitted before.",
                code="submitted_before_report",
            )
        locked.submitted_on = submitted_on
        locked.submission_reference = reference
        locked.submitted_by = actor
        locked.submission_recorded_at = timezone.now()
        locked.save(
            update_fields=[
                "submitted_on",
                "submission_reference",
                "submitted_by",
                "submission_recorded_at",
                "updated_at",
            ]
        )
        audit_event_record(
            event_type=MasterFileEvent.ANNUAL_REPORT_SUBMITTED,
            actor=actor,
            target=locked,
            reason=reason,
            extra={
                **_extra(locked),
                "submitted_on": submitted_on,
                "reference": reference,
                "due_on": locked.due_on,
                "on_time": submitted_on <= locked.due_on,
                "sha256": locked.sha256,
            },
        )
    return locked


#
# The document: plain data, read once
#


@dataclasses.dataclass(frozen=True)
class AnnualReportDocument:
    """Everything the annual report shows, read in one step (the sections' data still without
    their drawings)."""

    report_id: int
    year: int
    generated_at: dt.datetime
    requested_by: str
    requested_by_username: str
    product_code: str
    product_name: str
    control_site_name: str
    control_site_licence: str
    control_site_address: str
    cover_facts: tuple[pdf.Fact, ...]
    scope: reports.ReportScope
    sections: tuple[reports.CollectedSection, ...]

    @property
    def title(self) -> str:
        return f"{self.product_code} annual report {self.year}"


def _period_text(scope: reports.ReportScope) -> str:
    last = scope.end - dt.timedelta(days=1)
    if scope.complete:
        return f"{pdf.date_text(scope.start)} to {pdf.date_text(last)}"
    return (
        f"{pdf.date_text(scope.start)} to {pdf.utc_text(scope.as_at)} "
        "(year to date: the year is not over)"
    )


def report_scope(product: Product, year: int, *, now: dt.datetime) -> reports.ReportScope:
    """The calendar year `year` of `product`, as at `now`."""
    start, end = dt.date(year, 1, 1), dt.date(year + 1, 1, 1)
    end_at = dt.datetime.combine(end, dt.time.min, tzinfo=dt.UTC)
    start_at = dt.datetime.combine(start, dt.time.min, tzinfo=dt.UTC)
    return reports.ReportScope(
        product_id=product.pk,
        start=start,
        end=end,
        site_ids=scope_site_ids(product, start_at, min(end_at, now)),
        reference_site_id=product.reference_site_id,
        as_at=now,
    )


def annual_report_collect(report: AnnualReport, *, now: dt.datetime) -> AnnualReportDocument:
    """Read everything the report shows, into plain data. Reads only."""
    product = Product.objects.select_related("reference_site").get(pk=report.product_id)
    requester = report.requested_by
    control = control_site()
    scope = report_scope(product, report.year, now=now)
    sections = tuple(reports.collect(scope))
    version = effective_version(product)
    links = product.site_links.filter(ended_at__isnull=True).values_list("role", flat=True)
    roles = list(links)
    facts = (
        pdf.Fact("Product", f"{product.code} — {product.name}"),
        pdf.Fact(
            "Designation",
            f"{product.get_designation_display()} — MHRA reference "
            f"{product.designation_reference}, designated "
            f"{pdf.date_text(product.designation_date)}",
        ),
        pdf.Fact(
            "Reference site", f"{product.reference_site.code} — {product.reference_site.name}"
        ),
        pdf.Fact("Year", str(report.year)),
        pdf.Fact("Period", _period_text(scope)),
        pdf.Fact("Due with the MHRA", pdf.date_text(report.due_on)),
        pdf.Fact(
            "Master file in force now",
            f"Version {version.number}, effective {pdf.date_text(version.effective_date)}"
            if version is not None
            else "None",
        ),
        pdf.Fact(
            "Sites now",
            f"{roles.count(ProductSiteRole.MANUFACTURING)} manufacturing, "
            f"{roles.count(ProductSiteRole.TESTING)} testing",
        ),
    )
    return AnnualReportDocument(
        report_id=report.pk,
        year=report.year,
        generated_at=now,
        requested_by=requester.printed_name,
        requested_by_username=requester.get_username(),
        product_code=product.code,
        product_name=product.name,
        control_site_name=control.name if control else "Control Site not recorded",
        control_site_licence=control.licence_number if control else "—",
        control_site_address=control.address if control else "",
        cover_facts=facts,
        scope=scope,
        sections=sections,
    )


def figures(doc: AnnualReportDocument, sections: list[reports.CollectedSection]) -> dict[str, Any]:
    """The embedded JSON: every figure of every section, without the drawings."""
    scope = doc.scope
    return {
        "format": FIGURES_FORMAT,
        "report_id": doc.report_id,
        "product": {"code": doc.product_code, "name": doc.product_name},
        "year": doc.year,
        "period": {
            "start": scope.start.isoformat(),
            "end_exclusive": scope.end.isoformat(),
            "data_as_at": pdf.utc_iso(scope.as_at),
            "whole_year": scope.complete,
        },
        "generated_at": pdf.utc_iso(doc.generated_at),
        "notes": (
            "The figures of each section of the annual report, as printed. Times are UTC (ISO "
            "8601). Open and overdue are judged at the end of the year, or at data_as_at for a "
            "year not yet over."
        ),
        "sections": {
            s.name: {"title": s.title, "data": reports.without_drawings(s.data)} for s in sections
        },
    }


def annual_report_html(doc: AnnualReportDocument, sections: list[reports.CollectedSection]) -> str:
    """The report's HTML from the collected (and drawn) data only: no database access."""
    parts = [
        {
            "number": str(index),
            "anchor": f"section-{index}",
            "title": s.title,
            "description": s.description,
            "template": s.template,
            "data": s.data,
            "name": s.name,
        }
        for index, s in enumerate(sections, start=1)
    ]
    signatures = reports.signatures_in(sections)
    toc = [pdf.TocEntry(p["anchor"], p["number"], p["title"]) for p in parts]
    toc.append(
        pdf.TocEntry(
            "annex-signatures",
            "Annex A",
            "Signature manifest",
            css_class="toc-annex toc-first-annex",
        )
    )
    toc.append(
        pdf.TocEntry("annex-notes", "Annex B", "How the figures are made", css_class="toc-annex")
    )
    scope = doc.scope
    generated = f"{doc.generated_at.astimezone(dt.UTC):%Y-%m-%d %H:%M}"
    return pdf.render_html(
        "pdf/annual_report.html",
        {
            "doc": doc,
            "title": doc.title,
            "cover_subtitle": f"{doc.product_code} · Annual report {doc.year}",
            "status_label": "Whole year" if scope.complete else "Year to date",
            "status_class": "ok" if scope.complete else "warn",
            "status_note": _period_text(scope),
            "header_left": f"{doc.product_code} — {doc.product_name}",
            "header_right": f"Annual report {doc.year}"
            + ("" if scope.complete else " · year to date"),
            "exported_line": f"Made for {doc.requested_by} at {generated} (UTC) · report "
            f"{doc.report_id}",
            "watermark": "",
            "meta_author": f"{doc.control_site_name} (made for {doc.requested_by})",
            "meta_keywords": ", ".join(
                ["POC/MM annual report", "DMMF", doc.product_code, str(doc.year)]
            ),
            "meta_description": f"Annual report {doc.year} of {doc.product_code} "
            f"({doc.product_name}) for the MHRA",
            "meta_created": doc.generated_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "toc": toc,
            "parts": parts,
            "signatures": signatures,
            "as_at": pdf.utc_text(scope.cutoff),
            "whole_year": scope.complete,
            "figures_name": FIGURES_NAME,
            "generated_utc": generated,
        },
    )


#
# The task body (masterfile/pdfjobs.py)
#


def annual_report_fail(report_id: int, error: str) -> None:
    """Mark a report failed with a readable error and an `annual_report_failed` audit event
    (unless it already finished). Used by the task body and by the task once its retries are
    spent."""
    pdfjobs.fail(ANNUAL_REPORT_JOB, report_id, error)


def _render(report: AnnualReport) -> pdfjobs.Made:
    """Collect, draw, build, lay out and write; outside any transaction."""
    if connection.in_atomic_block:
        raise pdf.RenderInTransactionError(
            "An annual report must be rendered outside any database transaction."
        )
    with pdfjobs.read_only_snapshot():
        doc = annual_report_collect(report, now=timezone.now())
    pdfjobs.tick(report, STAGE_DRAW)
    sections = reports.draw(doc.sections)
    pdfjobs.tick(report, STAGE_HTML)
    html = annual_report_html(doc, sections)
    attachment = pdf.json_attachment(
        name=FIGURES_NAME,
        text=pdf.to_json(figures(doc, sections)),
        description=f"The figures of the {doc.product_code} annual report {doc.year}, section "
        "by section",
    )
    scope = doc.scope
    del doc, sections
    pdfjobs.tick(report, STAGE_LAYOUT)
    document = pdf.layout(html)
    del html
    pdfjobs.tick(report, STAGE_WRITE)
    content = pdf.write_pdfa(document, attachments=[attachment])
    return made(content, len(document.pages), as_at=scope.as_at, whole_year=scope.complete)


def made(content: bytes, pages: int, *, as_at: dt.datetime, whole_year: bool) -> pdfjobs.Made:
    """What a report's rendering made: the moment its records were read and whether they
    cover the whole year are recorded on the row and in the completion event."""
    return pdfjobs.Made(
        content,
        pages,
        fields={"data_as_at": as_at, "year_complete": whole_year},
        event={"data_as_at": as_at, "whole_year": whole_year},
    )


ANNUAL_REPORT_JOB = pdfjobs.PdfJob(
    model=AnnualReport,
    noun="annual report",
    related=("product",),
    completed_event=MasterFileEvent.ANNUAL_REPORT_COMPLETED,
    failed_event=MasterFileEvent.ANNUAL_REPORT_FAILED,
    facts=_extra,
    render=lambda report: _render(report),  # looked up when called: tests replace `_render`
    upload_to=annual_report_upload_to,
    collect_stage=STAGE_COLLECT,
)


def annual_report_run(report_id: int) -> None:
    """Make the PDF of one annual report (the task body): `pdfjobs.run`."""
    pdfjobs.run(ANNUAL_REPORT_JOB, report_id)
