"""Complaint and suspected-adverse-reaction pages (issue 6 §5; DV-11, RP-05, RP-06). Each POST
calls one service; a refusal is shown on the page again with what was typed."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from batches.selectors import batches_visible_to
from controlsite.accounts.http import request_user
from controlsite.signatures.services import signatures_for
from deviations import selectors, services
from deviations.choices import (
    ADR_CLOCK_WARN_DAYS,
    CAPA_BADGE,
    CAPA_OPEN,
    COMPLAINT_BADGE,
    COMPLAINT_KIND_BADGE,
    SERIOUS_ADR_REPORT_DAYS,
    ComplaintStatus,
)
from deviations.forms import CapaForm
from deviations.forms.complaints import (
    ComplaintAssessForm,
    ComplaintFilterForm,
    ComplaintRecordForm,
    ComplaintReportedForm,
)
from deviations.models import Complaint
from deviations.selectors import complaints as complaint_selectors
from deviations.services import complaints as complaint_services
from deviations.views import PAGE_SIZE, _close_signature, _invalid, _is_qa, _run
from masterfile.selectors import products_visible_to
from sites.selectors import sites_visible_to


def _complaint_or_404(request: HttpRequest, number: str) -> Complaint:
    try:
        return complaint_selectors.complaint_get_for_user(user=request.user, number=number)
    except Complaint.DoesNotExist as exc:
        raise Http404("No such complaint") from exc


def _record_form(request: HttpRequest, data: Any = None, **kwargs: Any) -> ComplaintRecordForm:
    user = request.user
    return ComplaintRecordForm(
        data,
        sites=sites_visible_to(user).order_by("code"),
        products=products_visible_to(user).order_by("code"),
        **kwargs,
    )


#
# The list and recording a complaint
#


def _yes_no(value: str) -> bool | None:
    return {"yes": True, "no": False}.get(value)


def _index_context(
    request: HttpRequest, record_form: ComplaintRecordForm | None = None
) -> dict[str, Any]:
    user = request.user
    today = timezone.localdate()
    sites = sites_visible_to(user).order_by("code")
    filters = ComplaintFilterForm(request.GET or None, sites=sites)
    chosen: dict[str, Any] = filters.cleaned_data if filters.is_valid() else {}
    site = chosen.get("site")
    listed = complaint_selectors.complaint_list(
        user=user,
        today=today,
        kind=chosen.get("kind", ""),
        serious=_yes_no(chosen.get("serious", "")),
        overdue=_yes_no(chosen.get("overdue", "")),
        status=chosen.get("status", ""),
        site_code=site.code if site is not None else "",
        batch_number=chosen.get("batch", ""),
    )
    complaints = list(listed[:PAGE_SIZE])
    rows = [
        {
            "complaint": c,
            "status_badge": COMPLAINT_BADGE[c.status],
            "kind_badge": COMPLAINT_KIND_BADGE[c.kind],
            "clock": complaint_selectors.report_clock(c, today),
        }
        for c in complaints
    ]
    if record_form is None and services.may_raise(user):
        initial: dict[str, Any] = {"aware_on": today, "serious": "no"}
        batch_number = request.GET.get("batch", "")
        batch = batches_visible_to(user).filter(number=batch_number).select_related("site").first()
        if batch is not None:
            initial.update(site=batch.site.code, batch=batch.number)
        record_form = _record_form(request, initial=initial)
    return {
        "rows": rows,
        "filters": filters,
        "filtered": bool(chosen and any(chosen.values())),
        "counts": complaint_selectors.complaint_counts(
            complaint_selectors.complaints_visible_to(user), today
        ),
        "record_form": record_form,
        "prefilled": record_form is not None and bool(record_form.initial.get("batch")),
        "report_days": SERIOUS_ADR_REPORT_DAYS,
        "page_size": PAGE_SIZE,
    }


@login_required
@require_GET
def complaint_index(request: HttpRequest) -> HttpResponse:
    """Complaints and suspected adverse reactions the user may see, newest first, each serious
    one with its 15-day reporting clock; the filters; and the form to record one."""
    return render(request, "deviations/complaint_index.html", _index_context(request))


@login_required
@require_POST
def complaint_record(request: HttpRequest) -> HttpResponse:
    actor = request_user(request)
    if not services.may_raise(actor):
        raise PermissionDenied
    form = _record_form(request, request.POST)

    def again(status: int) -> HttpResponse:
        return render(
            request,
            "deviations/complaint_index.html",
            _index_context(request, form),
            status=status,
        )

    if not form.is_valid():
        return again(_invalid(request, "The complaint was not recorded"))
    data = form.cleaned_data
    batch = None
    if data["batch"].strip():
        batch = batches_visible_to(actor).filter(number=data["batch"].strip()).first()
        if batch is None:
            form.add_error("batch", "No batch with this number that you may see.")
            return again(_invalid(request, "The complaint was not recorded"))
    complaint, refused = _run(
        request,
        again,
        lambda: complaint_services.complaint_record(
            actor=actor,
            site=data["site"],
            kind=data["kind"],
            batch=batch,
            product=data["product"],
            description=data["description"],
            reporter=data["reporter"],
            aware_on=data["aware_on"],
            serious=data["serious"],
            reason=data["reason"],
        ),
    )
    if refused is not None:
        return refused
    told = "QA and the QPs are told" if complaint.report_due_on else "QA is told"
    messages.success(request, f"{complaint.number} recorded; {told}.")
    return redirect("deviations:complaint-detail", number=complaint.number)


#
# One complaint
#


def _closure_checks(complaint: Complaint, clock: Any, open_capas: int) -> list[dict[str, Any]]:
    """What closure needs, each ticked or not: the page's progress picture."""
    checks = [
        {"label": "Risk assessment written", "done": bool(complaint.assessment.strip())},
    ]
    if clock is not None:
        checks.append({"label": "Reported to the MHRA", "done": clock.reported})
    checks.append({"label": "Every CAPA from it closed", "done": open_capas == 0})
    return checks


def _detail_context(
    request: HttpRequest, complaint: Complaint, bound: dict[str, Any] | None = None
) -> dict[str, Any]:
    user = request.user
    bound = bound or {}
    today = timezone.localdate()
    is_open = complaint.status == ComplaintStatus.OPEN
    is_qa = _is_qa(user)
    clock = complaint_selectors.report_clock(complaint, today)
    capas = list(complaint.capas.select_related("owner").order_by("number"))
    open_capas = sum(1 for c in capas if c.status in CAPA_OPEN)
    signatures = signatures_for(complaint)
    return {
        "complaint": complaint,
        "status_badge": COMPLAINT_BADGE[complaint.status],
        "kind_badge": COMPLAINT_KIND_BADGE[complaint.kind],
        "clock": clock,
        "warn_days": ADR_CLOCK_WARN_DAYS,
        "report_days": SERIOUS_ADR_REPORT_DAYS,
        "capas": [(c, CAPA_BADGE[c.status]) for c in capas],
        "signatures": signatures,
        "checks": _closure_checks(complaint, clock, open_capas) if is_open else [],
        "is_open": is_open,
        "is_qa": is_qa,
        "may_assess": is_open and is_qa,
        "may_report": is_open
        and complaint.reported_on is None
        and complaint_services.may_report(user),
        "may_close": is_open and is_qa,
        "assess_form": bound.get("assess")
        or ComplaintAssessForm(
            initial={
                "assessment": complaint.assessment,
                "serious": "yes" if complaint.serious else "no",
            }
        ),
        "reported_form": bound.get("reported")
        or ComplaintReportedForm(initial={"reported_on": today}),
        "capa_form": bound.get("capa")
        or CapaForm(people=selectors.capa_owner_choices(complaint.site)),
        "close_sig": bound.get("close_sig") or _close_signature(request),
    }


def _detail_again(
    request: HttpRequest, complaint: Complaint, bound: dict[str, Any], status: int
) -> HttpResponse:
    return render(
        request,
        "deviations/complaint_detail.html",
        _detail_context(request, complaint, bound),
        status=status,
    )


@login_required
@require_GET
def complaint_detail(request: HttpRequest, number: str) -> HttpResponse:
    """The complaint: what, where, on which batch; the 15-day clock of a serious suspected
    adverse reaction; who reported it to the MHRA when; QA's assessment; its CAPAs; closure."""
    complaint = _complaint_or_404(request, number)
    return render(request, "deviations/complaint_detail.html", _detail_context(request, complaint))


@login_required
@require_POST
def complaint_assess(request: HttpRequest, number: str) -> HttpResponse:
    complaint = _complaint_or_404(request, number)
    actor = request_user(request)
    form = ComplaintAssessForm(request.POST)
    bound = {"assess": form}
    if not form.is_valid():
        status = _invalid(request, "The assessment was not saved")
        return _detail_again(request, complaint, bound, status)
    _done, refused = _run(
        request,
        lambda status: _detail_again(request, complaint, bound, status),
        lambda: complaint_services.complaint_assess(
            actor=actor,
            complaint=complaint,
            assessment=form.cleaned_data["assessment"],
            serious=form.cleaned_data["serious"],
            reason=form.cleaned_data["reason"],
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, "Assessment saved.")
    return redirect("deviations:complaint-detail", number=complaint.number)


@login_required
@require_POST
def complaint_reported(request: HttpRequest, number: str) -> HttpResponse:
    complaint = _complaint_or_404(request, number)
    actor = request_user(request)
    form = ComplaintReportedForm(request.POST)
    bound = {"reported": form}
    if not form.is_valid():
        status = _invalid(request, "The report was not recorded")
        return _detail_again(request, complaint, bound, status)
    _done, refused = _run(
        request,
        lambda status: _detail_again(request, complaint, bound, status),
        lambda: complaint_services.complaint_mark_reported(
            actor=actor,
            complaint=complaint,
            reported_on=form.cleaned_data["reported_on"],
            reference=form.cleaned_data["reference"],
            reason=form.cleaned_data["reason"],
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, "Report to the MHRA recorded.")
    return redirect("deviations:complaint-detail", number=complaint.number)


@login_required
@require_POST
def complaint_close(request: HttpRequest, number: str) -> HttpResponse:
    complaint = _complaint_or_404(request, number)
    actor = request_user(request)
    sig = _close_signature(request, request.POST)
    bound = {"close_sig": sig}
    if not sig.is_valid():
        status = _invalid(request, f"{complaint.number} not closed")
        return _detail_again(request, complaint, bound, status)
    _done, refused = _run(
        request,
        lambda status: _detail_again(request, complaint, bound, status),
        lambda: complaint_services.complaint_close(
            actor=actor,
            complaint=complaint,
            credentials=sig.credentials(),
            reason=sig.cleaned_data["reason"],
        ),
        sig,
    )
    if refused is not None:
        return refused
    messages.success(request, f"{complaint.number} closed and signed.")
    return redirect("deviations:complaint-detail", number=complaint.number)


@login_required
@require_POST
def complaint_capa_create(request: HttpRequest, number: str) -> HttpResponse:
    complaint = _complaint_or_404(request, number)
    actor = request_user(request)
    form = CapaForm(request.POST, people=selectors.capa_owner_choices(complaint.site))
    bound = {"capa": form}
    if not form.is_valid():
        return _detail_again(request, complaint, bound, _invalid(request, "No CAPA raised"))
    capa, refused = _run(
        request,
        lambda status: _detail_again(request, complaint, bound, status),
        lambda: services.capa_create(actor=actor, complaint=complaint, **form.plan()),
    )
    if refused is not None:
        return refused
    messages.success(request, f"{capa.number} raised; its owner is told.")
    return redirect("deviations:capa-detail", number=capa.number)
