"""The batch pages (issue 5): the batches index and "start a batch", a batch with its steps,
results, certification and supply, the QP queue with its live countdown, the certification page,
and the batch templates QA writes (BR-01…BR-15, ES-01, ES-05).

Views stay thin: they fetch through a selector (a batch someone may not see is a 404), bind a
form, call ONE service and redirect. A refusal re-renders the page with the form as typed and
the service's message under the service's status code (400 bad input, 403 not allowed, 409
refused by the lifecycle or a gate, 422 signature refused) — never a 500.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from html import escape
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from batches import gates as batch_gates
from batches import selectors, services
from batches.choices import (
    BATCH_BADGE,
    CERTIFIED_STATUSES,
    TEMPLATE_BADGE,
    BatchStatus,
    TemplateStatus,
)
from batches.forms import (
    AdministrationForm,
    BatchFilterForm,
    BatchStartForm,
    CertifyForm,
    ConcessionForm,
    QueueFilterForm,
    ResultForm,
    SpecificationAddForm,
    StepAddForm,
    StepRecordForm,
    SupplyForm,
    TemplateCreateForm,
)
from batches.models import (
    Batch,
    BatchTemplate,
    Certification,
    StepRecord,
    SupplyRecord,
    TemplateStep,
)
from controlsite.accounts import permissions
from controlsite.accounts.http import request_user
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability
from controlsite.errors import ApplicationError, PermissionRefusedError
from controlsite.gates import GateReport
from controlsite.signatures.forms import SignatureForm
from controlsite.signatures.models import SignatureMeaning
from controlsite.signatures.services import SignatureRefusedError, signatures_for
from masterfile.models import Product
from masterfile.selectors import products_visible_to
from sites.models import Site
from sites.selectors import sites_visible_to, user_roles_at_site

PAGE_SIZE = 50
QUEUE_PAGE_SIZE = 50
PANEL_SHOWN = 5

#
# Small helpers
#


@dataclasses.dataclass(frozen=True)
class Badge:
    """A coloured label; the colour comes from batches.choices (BATCH_BADGE, TEMPLATE_BADGE)."""

    label: str
    colour: str


def batch_badge(batch: Batch) -> Badge:
    return Badge(str(BatchStatus(batch.status).label), BATCH_BADGE.get(batch.status, "muted"))


def template_badge(template: BatchTemplate) -> Badge:
    return Badge(
        str(TemplateStatus(template.status).label), TEMPLATE_BADGE.get(template.status, "muted")
    )


def _is_qp(user: Any) -> bool:
    return permissions.user_can(user, Capability.CERTIFY_BATCH)


def _is_qa(user: Any) -> bool:
    return permissions.user_can(user, Capability.MANAGE_QUALITY_RECORDS)


def _records_at(user: Any, site: Site) -> bool:
    """Site staff of this site (the services check again, with the step's role)."""
    return permissions.user_can(user, Capability.RECORD_MANUFACTURE) and bool(
        user_roles_at_site(user, site)
    )


def _require(request: HttpRequest, allowed: bool) -> User:
    user = request_user(request)
    if not allowed:
        raise PermissionDenied
    return user


def _refused(request: HttpRequest, exc: ApplicationError) -> int:
    """Show a service's refusal as a message; its status code answers the request."""
    if isinstance(exc, PermissionRefusedError):
        raise PermissionDenied(exc.message) from exc
    messages.error(request, exc.message)
    return exc.status_code


def _invalid(request: HttpRequest, what: str) -> int:
    messages.error(request, f"{what}: correct the fields marked below.")
    return 400


def _signed(
    request: HttpRequest,
    sig: SignatureForm,
    again: Callable[[int], HttpResponse],
    call: Callable[[], Any],
) -> tuple[Any, HttpResponse | None]:
    """Run one signing service. A refusal is shown on the page again (`again(status)`): a
    refused signature inside the dialog, any other refusal as a message. Else the dialog
    remembers the signing (continuous session, ES-06) and the service's result is returned."""
    try:
        result = call()
    except SignatureRefusedError as exc:
        sig.add_error(None, exc.message)
        messages.error(request, exc.message)
        return None, again(exc.status_code)
    except ApplicationError as exc:
        return None, again(_refused(request, exc))
    sig.mark_signed()
    return result, None


def _batch_or_404(request: HttpRequest, number: str) -> Batch:
    try:
        return selectors.batch_get_for_user(user=request.user, number=number)
    except Batch.DoesNotExist as exc:
        raise Http404 from exc


def _template_or_404(request: HttpRequest, pk: int) -> BatchTemplate:
    try:
        return selectors.templates_visible_to(request.user).get(pk=pk)
    except BatchTemplate.DoesNotExist as exc:
        raise Http404 from exc


def _batch_url(batch: Batch, anchor: str = "") -> str:
    url = reverse("batches:detail", args=[batch.number])
    return f"{url}#{anchor}" if anchor else url


def _template_url(template: BatchTemplate, anchor: str = "") -> str:
    url = reverse("batches:template-detail", args=[template.pk])
    return f"{url}#{anchor}" if anchor else url


def _signature_form(
    request: HttpRequest, meaning: SignatureMeaning, prefix: str, data: Any = None
) -> SignatureForm:
    form = SignatureForm(data, request=request, meaning=meaning, prefix=prefix)
    # The dialog's heading id is built from this; two dialogs on a page must not share one.
    form.meaning_value = f"{meaning.value}-{prefix}"
    return form


def _certification(batch: Batch) -> Certification | None:
    try:
        return Certification.objects.select_related("qp", "signature").get(batch=batch)
    except Certification.DoesNotExist:
        return None


#
# The batches index and "start a batch"
#


def _start_choices(user: Any) -> tuple[QuerySet[Site], QuerySet[Product]]:
    """The sites where the user records manufacture, and the products they see."""
    if not permissions.user_can(user, Capability.RECORD_MANUFACTURE):
        return Site.objects.none(), Product.objects.none()
    sites = sites_visible_to(user).order_by("code")
    return sites, products_visible_to(user).order_by("code")


def _index_context(
    request: HttpRequest, start_form: BatchStartForm | None = None
) -> dict[str, Any]:
    user = request.user
    filters = BatchFilterForm(request.GET or None)
    qs = selectors.batches_visible_to(user).select_related("site", "product")
    if filters.is_valid():
        data = filters.cleaned_data
        if data["site"]:
            qs = qs.filter(site__code=data["site"].strip().upper())
        if data["product"]:
            qs = qs.filter(product__code=data["product"].strip().upper())
        if data["status"]:
            qs = qs.filter(status=data["status"])
    after = request.GET.get("after", "")
    if after.isdigit():
        qs = qs.filter(pk__lt=int(after))
    rows = list(qs.order_by("-pk")[: PAGE_SIZE + 1])
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    sites, products = _start_choices(user)
    if start_form is None and sites.exists():
        start_form = BatchStartForm(sites=sites, products=products)
    query = request.GET.copy()
    query.pop("after", None)
    return {
        "rows": [(b, batch_badge(b)) for b in rows],
        "filters": filters,
        "next_after": rows[-1].pk if more and rows else None,
        "paged": bool(after),
        "query": query.urlencode(),
        "start_form": start_form,
        "is_qp": _is_qp(user),
        "is_qa": _is_qa(user),
    }


@login_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "batches/index.html", _index_context(request))


@login_required
@require_POST
def batch_start(request: HttpRequest) -> HttpResponse:
    """Start a batch (BR-01, BR-12, BR-14): one call to services.batch_start."""
    actor = request_user(request)
    sites, products = _start_choices(actor)
    if not sites.exists():
        raise PermissionDenied
    form = BatchStartForm(request.POST, sites=sites, products=products)
    if not form.is_valid():
        status = _invalid(request, "Not started")
        return render(request, "batches/index.html", _index_context(request, form), status=status)
    try:
        batch = services.batch_start(
            actor=actor,
            site=form.cleaned_data["site"],
            product=form.cleaned_data["product"],
            coi_reference=form.cleaned_data["coi_reference"],
        )
    except ApplicationError as exc:
        status = _refused(request, exc)
        return render(request, "batches/index.html", _index_context(request, form), status=status)
    messages.success(request, f"Batch {batch.number} started. Record step 1 when ready.")
    return redirect(_batch_url(batch))


#
# The QP queue (issue 5 §6)
#


def left_label(seconds: int) -> str:
    """Time left as the countdown script writes it (static/batches/countdown.js `label`), so
    the first paint and the ticking agree: "1 h 59 min 12 s", "2 h 05 min", "4 min 09 s"."""
    if seconds <= 0:
        return "expired"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min" + (f" {secs:02d} s" if hours < 2 else "")
    return f"{minutes} min {secs:02d} s"


@dataclasses.dataclass(frozen=True)
class QueueLinks:
    """The two links of a queue row, reversed once per page: batch numbers are URL-safe
    (`<SITE>-<YYMMDD>-<NNN>`), so a row only fills them in."""

    detail: str
    certify: str

    @classmethod
    def make(cls) -> QueueLinks:
        marker = "NUMBER"
        return cls(
            detail=reverse("batches:detail", args=[marker]).replace(marker, "{}"),
            certify=reverse("batches:certify", args=[marker]).replace(marker, "{}"),
        )


def _badge(css: str, text: str) -> str:
    return f'<span class="badge {css}">{text}</span>'


def _counted(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _summary_badges(summary: selectors.GateSummary) -> str:
    if not summary.blocks and not summary.warnings:
        return _badge("badge-ok", "Clear")
    parts = []
    if summary.blocks:
        parts.append(_badge("badge-block", _counted(summary.blocks, "block")))
    if summary.warnings:
        parts.append(_badge("badge-warn", _counted(summary.warnings, "warning")))
    return " ".join(parts)


def _queue_row_html(batch: Batch, now: dt.datetime, links: QueueLinks, is_qp: bool) -> str:
    """One row of the QP queue. The rows are written here, not in a template: they are
    re-rendered every 2 s for every QP watching, and the template engine's lookups cost more
    than the query. Every value from the database is escaped."""
    summary = selectors.gate_summary(batch, now)
    number = escape(batch.number)
    expires = batch.expires_at
    urgent = False
    if expires is None:
        left = '<span class="muted">starts at completion</span>'
    else:
        seconds = int((expires - now).total_seconds())
        urgent = seconds < 15 * 60
        local = timezone.localtime(expires)
        iso = expires.astimezone(dt.UTC).isoformat()
        left = (
            f'<time class="countdown" datetime="{iso}" data-expires="{iso}" '
            f'title="Expires {local.day} {local:%b %Y %H:%M}">{left_label(seconds)}</time>'
        )
    action = ""
    if is_qp:
        primary = "" if summary.blocks else " button-primary"
        action = (
            f'<a class="button button-small{primary}" href="{links.certify.format(number)}">'
            f'Review<span class="visually-hidden"> {number}</span></a>'
        )
    product = batch.product
    row_class = ' class="row-urgent"' if urgent else ""
    return (
        f'<tr id="queue-{number}"{row_class}>'
        f'<td data-label="Time left">{left}</td>'
        f'<td data-label="Batch"><a class="site-code" href="{links.detail.format(number)}">'
        f"{number}</a></td>"
        f'<td data-label="Site"><span class="site-code">{escape(batch.site.code)}</span></td>'
        f'<td data-label="Product">{escape(product.code)} '
        f'<span class="small muted">{escape(product.name)}</span></td>'
        f'<td data-label="Gate summary" class="gate-summary">{_summary_badges(summary)}</td>'
        f'<td data-label="Action">{action}</td></tr>'
    )


def _queue_context(request: HttpRequest) -> dict[str, Any]:
    user = request.user
    # The choices come from the registers (a few hundred rows), never from scanning the
    # thousands of batches awaiting certification.
    site_codes = list(sites_visible_to(user).order_by("code").values_list("code", flat=True))
    product_codes = list(products_visible_to(user).order_by("code").values_list("code", flat=True))
    form = QueueFilterForm(
        request.GET or None,
        sites=[(c, c) for c in site_codes],
        products=[(c, c) for c in product_codes],
    )
    filters = selectors.QueueFilters()
    if form.is_valid():
        filters = selectors.QueueFilters(
            site=form.cleaned_data["site"], product=form.cleaned_data["product"]
        )
    page = request.GET.get("page", "1")
    number = int(page) if page.isdigit() and 0 < int(page) < 10_000 else 1
    qs = selectors.queue_gate_summaries(selectors.qp_queue(user=user, filters=filters))
    start = (number - 1) * QUEUE_PAGE_SIZE
    batches = list(qs[start : start + QUEUE_PAGE_SIZE + 1])
    more = len(batches) > QUEUE_PAGE_SIZE
    now = timezone.now()
    links = QueueLinks.make()
    is_qp = _is_qp(user)
    rows = "\n".join(_queue_row_html(b, now, links, is_qp) for b in batches[:QUEUE_PAGE_SIZE])
    query = request.GET.copy()
    query.pop("page", None)
    return {
        "rows": mark_safe(rows),  # noqa: S308  (each value escaped in _queue_row_html)
        "form": form,
        "now": now,
        "page": number,
        "more": more,
        "query": query.urlencode(),
        "query_page": request.GET.urlencode(),
        "page_size": QUEUE_PAGE_SIZE,
        "is_qp": is_qp,
    }


@login_required
@require_GET
def queue(request: HttpRequest) -> HttpResponse:
    """Every batch awaiting certification the user may see, soonest to expire first, with a
    countdown and the gate summary; the rows refresh every 2 s (issue 5 §6; BR-03)."""
    return render(request, "batches/queue.html", _queue_context(request))


@login_required
@require_GET
def queue_rows(request: HttpRequest) -> HttpResponse:
    """The queue's table body alone, polled by htmx every 2 s."""
    return render(request, "batches/partials/_queue_rows.html", _queue_context(request))


#
# One batch
#


@dataclasses.dataclass(frozen=True)
class ParameterRow:
    key: str
    name: str
    unit: str
    limits: str
    value: str | None
    out: bool


@dataclasses.dataclass(frozen=True)
class StepView:
    step: TemplateStep
    record: StepRecord | None
    parameters: list[ParameterRow]
    state: str  # done | awaiting | current | todo


def _step_views(progress: selectors.Progress) -> list[StepView]:
    current = progress.current
    views = []
    for row in progress.rows:
        record = row.record
        values = record.values if record else {}
        out = set(record.out_of_limit) if record else set()
        parameters = [
            ParameterRow(
                key=p.key,
                name=p.name,
                unit=p.unit,
                limits=p.limits_label,
                value=values.get(p.key),
                out=p.key in out,
            )
            for p in row.step.parameters.all()
        ]
        if row.done:
            state = "done"
        elif record is not None:
            state = "awaiting"
        elif current is not None and current.step.pk == row.step.pk:
            state = "current"
        else:
            state = "todo"
        views.append(StepView(row.step, record, parameters, state))
    return views


def _findings(report: GateReport) -> list[dict[str, str]]:
    return [f.as_dict() for f in report.findings]


def _detail_context(
    request: HttpRequest, batch: Batch, bound: dict[str, Any] | None = None
) -> dict[str, Any]:
    bound = bound or {}
    user = request.user
    batch = selectors.batch_dossier(batch)
    progress = selectors.batch_progress(batch)
    results = selectors.batch_results(batch)
    certification = _certification(batch)
    # Once decided, the page shows the findings stored with the decision, not the gates now.
    report = (
        selectors.batch_gate_report(batch) if certification is None else GateReport(findings=())
    )
    current = progress.current
    in_progress = batch.status == BatchStatus.IN_PROGRESS
    step_form = verify_form = None
    if (
        in_progress
        and current is not None
        and selectors.holds_step_role(user, batch.site, current.step)
    ):
        if current.record is None:
            step_form = bound.get("step") or StepRecordForm(step=current.step)
        elif current.record.performed_by_id != getattr(user, "pk", None):
            verify_form = bound.get("verify_sig") or _signature_form(
                request, SignatureMeaning.VERIFIED, "verify"
            )
    records_here = _records_at(user, batch.site)
    specs = [r.specification for r in results if r.result is None]
    result_form = None
    if records_here and batch.status != BatchStatus.REJECTED and specs:
        result_form = bound.get("result") or ResultForm(specifications=specs)
    certified = batch.status in CERTIFIED_STATUSES
    supplies = list(batch.supplies.select_related("administered_confirmed_by").order_by("pk"))
    supply_form = None
    if records_here and certified:
        supply_form = bound.get("supply") or SupplyForm()
    supply_rows = [
        (
            s,
            bound.get(f"admin-{s.pk}") or AdministrationForm(prefix=f"admin-{s.pk}")
            if records_here and s.administered_at is None
            else None,
        )
        for s in supplies
    ]
    return {
        "batch": batch,
        "status": batch_badge(batch),
        "progress": progress,
        "steps": _step_views(progress),
        "results": results,
        "report": report,
        "certification": certification,
        "certification_signatures": signatures_for(certification) if certification else [],
        "step_form": step_form,
        "step_sig": bound.get("step_sig")
        or _signature_form(request, SignatureMeaning.PERFORMED, "stepsig"),
        "verify_form": verify_form,
        "result_form": result_form,
        "supply_form": supply_form,
        "supply_rows": supply_rows,
        "may_certify": _is_qp(user) and batch.status == BatchStatus.COMPLETED,
        "now": timezone.now(),
    }


def _detail_again(
    request: HttpRequest, batch: Batch, bound: dict[str, Any], status: int
) -> HttpResponse:
    return render(
        request, "batches/batch_detail.html", _detail_context(request, batch, bound), status=status
    )


@login_required
@require_GET
def batch_detail(request: HttpRequest, number: str) -> HttpResponse:
    batch = _batch_or_404(request, number)
    return render(request, "batches/batch_detail.html", _detail_context(request, batch))


@login_required
@require_POST
def step_record(request: HttpRequest, number: str, position: int) -> HttpResponse:
    """Record and sign ("performed") the current step (BR-15, ES-01): services.step_record."""
    batch = _batch_or_404(request, number)
    actor = _require(request, _records_at(request.user, batch.site))
    step = batch.template.steps.filter(position=position).first()
    if step is None:
        raise Http404
    form = StepRecordForm(request.POST, step=step)
    sig = _signature_form(request, SignatureMeaning.PERFORMED, "stepsig", request.POST)
    bound = {"step": form, "step_sig": sig}
    if not (form.is_valid() & sig.is_valid()):
        return _detail_again(
            request, batch, bound, _invalid(request, f"Step {position} not signed")
        )
    record, refused = _signed(
        request,
        sig,
        lambda status: _detail_again(request, batch, bound, status),
        lambda: services.step_record(
            actor=actor,
            batch=batch,
            position=position,
            values=form.values(),
            credentials=sig.credentials(),
            reason=sig.cleaned_data["reason"],
            comment=form.cleaned_data["comment"],
        ),
    )
    if refused is not None:
        return refused
    if record.out_of_limit:
        messages.warning(
            request,
            f"Step {position} signed, with {', '.join(record.out_of_limit)} outside limits: "
            "the values are kept and flagged; the site lead is told to raise a deviation.",
        )
    else:
        messages.success(request, f"Step {position} recorded and signed.")
    return redirect(_batch_url(batch, f"step-{position}"))


@login_required
@require_POST
def step_verify(request: HttpRequest, number: str, position: int) -> HttpResponse:
    """The second person's "verified" signature (BR-15): services.step_verify."""
    batch = _batch_or_404(request, number)
    actor = _require(request, _records_at(request.user, batch.site))
    record = batch.step_records.filter(position=position).first()
    if record is None:
        raise Http404
    sig = _signature_form(request, SignatureMeaning.VERIFIED, "verify", request.POST)
    bound = {"verify_sig": sig}
    if not sig.is_valid():
        status = _invalid(request, f"Step {position} not verified")
        return _detail_again(request, batch, bound, status)
    _done, refused = _signed(
        request,
        sig,
        lambda status: _detail_again(request, batch, bound, status),
        lambda: services.step_verify(
            actor=actor,
            record=record,
            credentials=sig.credentials(),
            reason=sig.cleaned_data["reason"],
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, f"Step {position} verified and signed.")
    return redirect(_batch_url(batch, f"step-{position}"))


@login_required
@require_POST
def result_record(request: HttpRequest, number: str) -> HttpResponse:
    """A result against a specification; pass or fail is computed (BR-08, BR-09)."""
    batch = _batch_or_404(request, number)
    actor = _require(request, _records_at(request.user, batch.site))
    specs = list(batch.template.specifications.order_by("key"))
    form = ResultForm(request.POST, specifications=specs)
    if not form.is_valid():
        status = _invalid(request, "Result not recorded")
        return _detail_again(request, batch, {"result": form}, status)
    try:
        result = services.result_record(
            actor=actor,
            batch=batch,
            specification_key=form.cleaned_data["specification"],
            value=form.cleaned_data["value"],
            comment=form.cleaned_data["comment"],
        )
    except ApplicationError as exc:
        return _detail_again(request, batch, {"result": form}, _refused(request, exc))
    spec = result.specification
    verdict = "passes" if result.passed else "FAILS"
    text = f"{spec.name} {result.value_label} {verdict} ({spec.limits_label})."
    (messages.success if result.passed else messages.warning)(request, text)
    return redirect(_batch_url(batch, f"result-{spec.key}"))


@login_required
@require_POST
def supply_record(request: HttpRequest, number: str) -> HttpResponse:
    """Hand-over of a certified batch, the chain of identity typed again (BR-13, BR-14)."""
    batch = _batch_or_404(request, number)
    actor = _require(request, _records_at(request.user, batch.site))
    form = SupplyForm(request.POST)
    if not form.is_valid():
        return _detail_again(request, batch, {"supply": form}, _invalid(request, "Not supplied"))
    try:
        supply = services.supply_record(
            actor=actor,
            batch=batch,
            coi_reference=form.cleaned_data["coi_reference"],
            supplied_to=form.cleaned_data["supplied_to"],
            quantity=form.cleaned_data["quantity"],
            unit=form.cleaned_data["unit"],
        )
    except ApplicationError as exc:
        return _detail_again(request, batch, {"supply": form}, _refused(request, exc))
    messages.success(request, f"Supply to {supply.supplied_to} recorded.")
    return redirect(_batch_url(batch, "supply"))


@login_required
@require_POST
def administration_confirm(request: HttpRequest, number: str, pk: int) -> HttpResponse:
    """Administration confirmed against the chain-of-identity reference (BR-13)."""
    batch = _batch_or_404(request, number)
    actor = _require(request, _records_at(request.user, batch.site))
    supply = SupplyRecord.objects.filter(batch=batch, pk=pk).select_related("batch").first()
    if supply is None:
        raise Http404
    key = f"admin-{supply.pk}"
    form = AdministrationForm(request.POST, prefix=key)
    if not form.is_valid():
        return _detail_again(request, batch, {key: form}, _invalid(request, "Not confirmed"))
    try:
        services.administration_confirm(
            actor=actor,
            supply=supply,
            coi_reference=form.cleaned_data["coi_reference"],
            adverse_reaction=form.cleaned_data["adverse_reaction"],
        )
    except ApplicationError as exc:
        return _detail_again(request, batch, {key: form}, _refused(request, exc))
    messages.success(request, "Administration confirmed.")
    return redirect(_batch_url(batch, "supply"))


#
# The certification page (QPs)
#


def _certify_context(
    request: HttpRequest, batch: Batch, bound: dict[str, Any] | None = None
) -> dict[str, Any]:
    bound = bound or {}
    context = _detail_context(request, batch)
    report: GateReport = context["report"]
    concession_open = any(f.code in batch_gates.CONCESSION_CODES for f in report.blocks)
    other_blocks = [f for f in report.blocks if f.code not in batch_gates.CONCESSION_CODES]
    context.update(
        {
            "findings": _findings(report),
            "decidable": context["batch"].status == BatchStatus.COMPLETED,
            "certify_form": bound.get("certify") or CertifyForm(),
            "certify_sig": bound.get("certify_sig")
            or _signature_form(request, SignatureMeaning.QP_CERTIFIED, "sig"),
            "concession_open": concession_open,
            "concession_blocked": bool(other_blocks),
            "concession_form": bound.get("concession") or ConcessionForm(),
            "concession_sig": bound.get("concession_sig")
            or _signature_form(request, SignatureMeaning.QP_CERTIFIED, "csig"),
            "reject_sig": bound.get("reject_sig")
            or _signature_form(request, SignatureMeaning.REJECTED, "rsig"),
            "may_reject": context["batch"].status
            in (BatchStatus.IN_PROGRESS, BatchStatus.COMPLETED),
            "open_form": next(iter(bound), ""),
        }
    )
    return context


def _certify_again(
    request: HttpRequest, batch: Batch, bound: dict[str, Any], status: int
) -> HttpResponse:
    return render(
        request, "batches/certify.html", _certify_context(request, batch, bound), status=status
    )


@login_required
@require_GET
def certify(request: HttpRequest, number: str) -> HttpResponse:
    """Every finding at once, the record, and the QP's three decisions (BR-03…BR-08)."""
    batch = _batch_or_404(request, number)
    _require(request, _is_qp(request.user))
    return render(request, "batches/certify.html", _certify_context(request, batch))


def _decide(request: HttpRequest, number: str, *, concession: bool) -> HttpResponse:
    batch = _batch_or_404(request, number)
    actor = _require(request, _is_qp(request.user))
    name, sig_prefix = ("concession", "csig") if concession else ("certify", "sig")
    form: CertifyForm | ConcessionForm = (
        ConcessionForm(request.POST) if concession else CertifyForm(request.POST)
    )
    sig = _signature_form(request, SignatureMeaning.QP_CERTIFIED, sig_prefix, request.POST)
    bound = {name: form, f"{name}_sig": sig}
    if not (form.is_valid() & sig.is_valid()):
        return _certify_again(request, batch, bound, _invalid(request, "Not certified"))
    data = form.cleaned_data
    _done, refused = _signed(
        request,
        sig,
        lambda status: _certify_again(request, batch, bound, status),
        lambda: services.batch_certify(
            actor=actor,
            batch=batch,
            credentials=sig.credentials(),
            reason=sig.cleaned_data["reason"],
            justification=data["justification"],
            remote=data["remote"],
            location=data["location"],
            concession=concession,
            clinician_request=data.get("clinician_request", ""),
        ),
    )
    if refused is not None:
        return refused
    batch.refresh_from_db(fields=["status"])
    messages.success(request, f"Batch {batch.number} {batch.get_status_display().lower()}.")
    return redirect(_batch_url(batch, "certification"))


@login_required
@require_POST
def certify_sign(request: HttpRequest, number: str) -> HttpResponse:
    """Certify with the "QP certified" signature (password and TOTP): services.batch_certify."""
    return _decide(request, number, concession=False)


@login_required
@require_POST
def concession_sign(request: HttpRequest, number: str) -> HttpResponse:
    """Certify under concession (BR-08): services.batch_certify(concession=True)."""
    return _decide(request, number, concession=True)


@login_required
@require_POST
def reject(request: HttpRequest, number: str) -> HttpResponse:
    """Reject with a reason and the "rejected" signature: services.batch_reject."""
    batch = _batch_or_404(request, number)
    actor = _require(request, _is_qp(request.user))
    sig = _signature_form(request, SignatureMeaning.REJECTED, "rsig", request.POST)
    bound = {"reject_sig": sig}
    if not sig.is_valid():
        return _certify_again(request, batch, bound, _invalid(request, "Not rejected"))
    _done, refused = _signed(
        request,
        sig,
        lambda status: _certify_again(request, batch, bound, status),
        lambda: services.batch_reject(
            actor=actor,
            batch=batch,
            credentials=sig.credentials(),
            reason=sig.cleaned_data["reason"],
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, f"Batch {batch.number} rejected.")
    return redirect(_batch_url(batch, "certification"))


#
# Batch templates (QA writes; everyone who sees the product reads)
#


@login_required
@require_GET
def template_list(request: HttpRequest) -> HttpResponse:
    return render(request, "batches/template_list.html", _template_list_context(request))


def _template_list_context(
    request: HttpRequest, form: TemplateCreateForm | None = None
) -> dict[str, Any]:
    user = request.user
    product = request.GET.get("product", "").strip().upper()
    qs = selectors.templates_visible_to(user).order_by("product__code", "-number")
    if product:
        qs = qs.filter(product__code=product)
    templates = list(qs.annotate(step_count=Count("steps", distinct=True))[:200])
    is_qa = _is_qa(user)
    if is_qa and form is None:
        form = TemplateCreateForm(products=products_visible_to(user).order_by("code"))
    return {
        "rows": [(t, template_badge(t)) for t in templates],
        "product": product,
        "create_form": form if is_qa else None,
    }


@login_required
@require_POST
def template_create(request: HttpRequest) -> HttpResponse:
    actor = _require(request, _is_qa(request.user))
    form = TemplateCreateForm(request.POST, products=products_visible_to(actor).order_by("code"))
    if not form.is_valid():
        status = _invalid(request, "No draft")
        context = _template_list_context(request, form)
        return render(request, "batches/template_list.html", context, status=status)
    try:
        template = services.template_create(
            actor=actor,
            product=form.cleaned_data["product"],
            title=form.cleaned_data["title"],
            reason=form.cleaned_data["reason"],
        )
    except ApplicationError as exc:
        status = _refused(request, exc)
        context = _template_list_context(request, form)
        return render(request, "batches/template_list.html", context, status=status)
    messages.success(request, f"Draft template v{template.number} created.")
    return redirect(_template_url(template))


def _template_context(
    request: HttpRequest, template: BatchTemplate, bound: dict[str, Any] | None = None
) -> dict[str, Any]:
    bound = bound or {}
    is_draft = template.status == TemplateStatus.DRAFT
    may_write = _is_qa(request.user) and is_draft
    return {
        "template": template,
        "status": template_badge(template),
        "steps": selectors.template_steps(template),
        "specifications": list(template.specifications.order_by("key")),
        "signatures": signatures_for(template),
        "may_write": may_write,
        "step_form": bound.get("step") or StepAddForm() if may_write else None,
        "spec_form": bound.get("spec") or SpecificationAddForm() if may_write else None,
        "approve_sig": bound.get("approve_sig")
        or _signature_form(request, SignatureMeaning.APPROVED, "asig"),
        "open_form": next(iter(bound), ""),
    }


def _template_again(
    request: HttpRequest, template: BatchTemplate, bound: dict[str, Any], status: int
) -> HttpResponse:
    template.refresh_from_db()
    return render(
        request,
        "batches/template_detail.html",
        _template_context(request, template, bound),
        status=status,
    )


@login_required
@require_GET
def template_detail(request: HttpRequest, pk: int) -> HttpResponse:
    template = _template_or_404(request, pk)
    return render(request, "batches/template_detail.html", _template_context(request, template))


@login_required
@require_POST
def template_step_add(request: HttpRequest, pk: int) -> HttpResponse:
    template = _template_or_404(request, pk)
    actor = _require(request, _is_qa(request.user))
    form = StepAddForm(request.POST)
    if not form.is_valid():
        return _template_again(request, template, {"step": form}, _invalid(request, "No step"))
    data = form.cleaned_data
    try:
        step = services.template_step_add(
            actor=actor,
            template=template,
            title=data["title"],
            instruction=data["instruction"],
            role=data["role"],
            requires_verification=data["requires_verification"],
            parameters=form.parameters(),
            reason=data["reason"],
        )
    except ApplicationError as exc:
        return _template_again(request, template, {"step": form}, _refused(request, exc))
    messages.success(request, f"Step {step.position} added.")
    return redirect(_template_url(template, f"step-{step.position}"))


@login_required
@require_POST
def template_specification_add(request: HttpRequest, pk: int) -> HttpResponse:
    template = _template_or_404(request, pk)
    actor = _require(request, _is_qa(request.user))
    form = SpecificationAddForm(request.POST)
    if not form.is_valid():
        status = _invalid(request, "No specification")
        return _template_again(request, template, {"spec": form}, status)
    data = form.cleaned_data
    try:
        spec = services.template_specification_add(
            actor=actor,
            template=template,
            key=data["key"],
            name=data["name"],
            unit=data["unit"],
            low=data["low"] or None,
            high=data["high"] or None,
            registered=data["registered"],
            timing=data["timing"],
            reason=data["reason"],
        )
    except ApplicationError as exc:
        return _template_again(request, template, {"spec": form}, _refused(request, exc))
    messages.success(request, f"Specification {spec.name} added.")
    return redirect(_template_url(template, "specifications"))


@login_required
@require_POST
def template_approve(request: HttpRequest, pk: int) -> HttpResponse:
    """QA approves a draft template with the "approved" signature (BR-05, ES-01)."""
    template = _template_or_404(request, pk)
    actor = _require(request, _is_qa(request.user))
    sig = _signature_form(request, SignatureMeaning.APPROVED, "asig", request.POST)
    bound = {"approve_sig": sig}
    if not sig.is_valid():
        return _template_again(request, template, bound, _invalid(request, "Not approved"))
    _done, refused = _signed(
        request,
        sig,
        lambda status: _template_again(request, template, bound, status),
        lambda: services.template_approve(
            actor=actor,
            template=template,
            credentials=sig.credentials(),
            reason=sig.cleaned_data["reason"],
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, f"Template v{template.number} approved and signed.")
    return redirect(_template_url(template, "approval"))
