"""Training records (TR-01, TR-05): the signed proof that a person completed an item, with the
signature's name, time and meaning. Trainers record practical assessments (signed "reviewed",
never of themselves) and enter training completed on paper (signed "verified")."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from controlsite.accounts.http import request_user
from controlsite.accounts.models import User
from controlsite.signatures.forms import SignatureForm
from controlsite.signatures.models import SignatureMeaning
from controlsite.signatures.services import signatures_for
from training import selectors, services
from training.choices import TRAINER_ASSESSED_KINDS, AssessmentResult, RecordMethod
from training.forms import AssessmentForm, PaperRecordForm, RecordFilterForm, signing_form
from training.models import ProcedureVersion, TrainingItem
from training.views.base import PAGE_SIZE, invalid, run

ASSESS, ENTER = "assess", "enter"
RESULT_BADGE = {AssessmentResult.COMPETENT: "ok", AssessmentResult.NOT_YET_COMPETENT: "block"}


def _people() -> Any:
    return User.objects.filter(is_active=True).order_by("last_name", "username")


def _assess_form(data: Any = None) -> AssessmentForm:
    return AssessmentForm(
        data,
        people=_people(),
        items=TrainingItem.objects.filter(active=True, kind__in=TRAINER_ASSESSED_KINDS).order_by(
            "code"
        ),
    )


def _enter_form(data: Any = None) -> PaperRecordForm:
    return PaperRecordForm(
        data, people=_people(), items=TrainingItem.objects.filter(active=True).order_by("code")
    )


def _sig(request: HttpRequest, prefix: str, data: Any = None) -> SignatureForm:
    meaning = SignatureMeaning.REVIEWED if prefix == ASSESS else SignatureMeaning.VERIFIED
    return signing_form(request, meaning, prefix, data)


def _index_context(request: HttpRequest, bound: dict[str, Any] | None = None) -> dict[str, Any]:
    bound = bound or {}
    user = request.user
    filters = RecordFilterForm(request.GET or None)
    person = item_code = ""
    if filters.is_valid():
        person = filters.cleaned_data["person"].strip()
        item_code = filters.cleaned_data["item"].strip().upper()
    shown = selectors.records_visible_to(user)
    if person:
        shown = shown.filter(user__username=person)
    if item_code:
        shown = shown.filter(item__code=item_code)
    page = list(shown.order_by("-completed_at", "-id")[: PAGE_SIZE + 1])
    manages = selectors.manages_training(user)
    forms: dict[str, Any] = {}
    if manages:
        forms = {
            "assess_form": bound.get(ASSESS) or _assess_form(),
            "assess_sig": bound.get("assess_sig") or _sig(request, ASSESS),
            "enter_form": bound.get(ENTER) or _enter_form(),
            "enter_sig": bound.get("enter_sig") or _sig(request, ENTER),
        }
    return {
        "tab": "records",
        "rows": [
            {"record": r, "result_badge": RESULT_BADGE.get(AssessmentResult(r.result), "")}
            if r.result
            else {"record": r, "result_badge": ""}
            for r in page[:PAGE_SIZE]
        ],
        "more": len(page) > PAGE_SIZE,
        "filters": filters,
        "person": person,
        "item_code": item_code,
        "manages": manages,
        "open_form": next(iter(bound), ""),
        **forms,
    }


@login_required
@require_GET
def record_index(request: HttpRequest) -> HttpResponse:
    return render(request, "training/records.html", _index_context(request))


def _again(request: HttpRequest, bound: dict[str, Any], status: int) -> HttpResponse:
    return render(request, "training/records.html", _index_context(request, bound), status=status)


@login_required
@require_POST
def record_assess(request: HttpRequest) -> HttpResponse:
    """A trainer records a practical assessment with its result, signed "reviewed". Without a
    result: 400; of themselves: 422 — nothing written either way (TR-05)."""
    actor = request_user(request)
    form = _assess_form(request.POST)
    sig = _sig(request, ASSESS, request.POST)
    bound = {ASSESS: form, "assess_sig": sig}
    form_ok, sig_ok = form.is_valid(), sig.is_valid()
    if not (form_ok and sig_ok):
        return _again(request, bound, invalid(request, "The assessment was not recorded"))
    data = form.cleaned_data
    record, refused = run(
        request,
        lambda status: _again(request, bound, status),
        lambda: services.assessment_record(
            actor=actor,
            trainee=data["user"],
            item=data["item"],
            result=data["result"],
            notes=data["notes"],
            credentials=sig.credentials(),
            reason=sig.cleaned_data["reason"],
        ),
        sig,
    )
    if refused is not None:
        return refused
    messages.success(
        request,
        f"{record.item.code} assessment of {record.user.printed_name} recorded and signed: "
        f"{record.get_result_display().lower()}.",
    )
    return redirect("training:record-detail", pk=record.pk)


@login_required
@require_POST
def record_enter(request: HttpRequest) -> HttpResponse:
    """A trainer enters training completed on paper, with the day it was done, signed
    "verified"."""
    actor = request_user(request)
    form = _enter_form(request.POST)
    sig = _sig(request, ENTER, request.POST)
    bound = {ENTER: form, "enter_sig": sig}
    form_ok, sig_ok = form.is_valid(), sig.is_valid()
    if not (form_ok and sig_ok):
        return _again(request, bound, invalid(request, "The record was not entered"))
    data = form.cleaned_data
    item: TrainingItem = data["item"]
    version = None
    if data["version"] is not None:
        version = ProcedureVersion.objects.filter(
            procedure_id=item.procedure_id or 0, number=data["version"]
        ).first()
        if version is None:
            form.add_error("version", f"{item.code} has no version {data['version']}.")
            return _again(request, bound, invalid(request, "The record was not entered"))
    record, refused = run(
        request,
        lambda status: _again(request, bound, status),
        lambda: services.record_enter(
            actor=actor,
            trainee=data["user"],
            item=item,
            version=version,
            completed_on=data["completed_on"],
            notes=data["notes"],
            credentials=sig.credentials(),
            reason=sig.cleaned_data["reason"],
        ),
        sig,
    )
    if refused is not None:
        return refused
    messages.success(
        request, f"{record.item.code} for {record.user.printed_name} entered and signed."
    )
    return redirect("training:record-detail", pk=record.pk)


@login_required
@require_GET
def record_detail(request: HttpRequest, pk: int) -> HttpResponse:
    record = selectors.records_visible_to(request.user).filter(pk=pk).first()
    if record is None:
        raise Http404("No such training record")
    return render(
        request,
        "training/record_detail.html",
        {
            "tab": "records",
            "record": record,
            "result_badge": RESULT_BADGE.get(AssessmentResult(record.result), "")
            if record.result
            else "",
            "self_signed": record.method == RecordMethod.ACKNOWLEDGED,
            "signatures": signatures_for(record),
            "assignments": list(record.assignments.select_related("site").order_by("id")),
        },
    )
