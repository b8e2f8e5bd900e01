"""OOS investigation pages (issue 6 §2; DV-10, DV-05): the list with the failed results still
waiting for an investigation, and one investigation with its original result, its phases, the
findings, the signed conclusion and its CAPAs. Each POST calls one service; a refusal is shown
on the page again with what was typed, under the service's status code."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from batches.models import TestResult
from controlsite.accounts.http import request_user
from controlsite.signatures.forms import SignatureForm
from controlsite.signatures.models import SignatureMeaning
from controlsite.signatures.services import signatures_for
from deviations import selectors, services
from deviations.choices import CAPA_BADGE, OOS_BADGE, OOS_NEXT_PHASE, OosOutcome, OosPhase
from deviations.forms import CapaForm
from deviations.forms.oos import AdvanceForm, ConcludeForm, FindingsForm, OosFilterForm, OosOpenForm
from deviations.models import OosInvestigation
from deviations.selectors import oos as oos_selectors
from deviations.services import oos as oos_services
from deviations.views import PAGE_SIZE, _invalid, _is_qa, _run
from sites.selectors import sites_visible_to

# Each form of the page has its own element ids: several have a `reason`.
FINDINGS, ADVANCE, CONCLUDE, CAPA = (
    "oos-findings-%s",
    "oos-advance-%s",
    "oos-conclude-%s",
    "oos-capa-%s",
)

#
# Small helpers
#


def _oos_or_404(request: HttpRequest, number: str) -> OosInvestigation:
    try:
        return oos_selectors.oos_get_for_user(user=request.user, number=number)
    except OosInvestigation.DoesNotExist as exc:
        raise Http404("No such OOS investigation") from exc


def _conclude_signature(request: HttpRequest, data: Any = None) -> SignatureForm:
    form = SignatureForm(
        data, request=request, meaning=SignatureMeaning.APPROVED, prefix="conclude"
    )
    form.meaning_value = "approved-conclude"
    return form


def phase_steps(oos: OosInvestigation) -> list[dict[str, Any]]:
    """The phases Ia → Ib → II → III and the conclusion, as a stepper: the phases behind done,
    the current one ringed (in the outcome's colour once concluded), those never reached
    marked so."""
    order = list(OosPhase)
    at = order.index(OosPhase(oos.phase))
    steps: list[dict[str, Any]] = []
    for index, phase in enumerate(order):
        if index < at or (index == at and not oos.is_open):
            state = "done"
        elif index == at:
            state = "current"
        else:
            state = "todo"
        steps.append(
            {
                "label": oos_services.PHASE_NAMES[phase],
                "title": phase.label,
                "state": state,
                "colour": "",
                "skipped": not oos.is_open and index > at,
            }
        )
    steps.append(
        {
            "label": "Concluded" if oos.is_open else oos.get_outcome_display(),
            "title": "Signed by Control Site QA",
            "state": "todo" if oos.is_open else "current",
            "colour": "" if oos.is_open else OOS_BADGE[oos.outcome],
            "skipped": False,
        }
    )
    return steps


#
# The list
#


def _index_context(
    request: HttpRequest, *, open_forms: dict[int, OosOpenForm] | None = None
) -> dict[str, Any]:
    user = request.user
    sites = sites_visible_to(user).order_by("code")
    filters = OosFilterForm(request.GET or None, sites=sites)
    chosen: dict[str, Any] = filters.cleaned_data if filters.is_valid() else {}
    site = chosen.get("site")
    investigations = list(
        oos_selectors.oos_list_for_user(
            user=user,
            outcome=chosen.get("outcome", ""),
            phase=chosen.get("phase", ""),
            site=site.code if site is not None else "",
            batch=(chosen.get("batch") or "").strip(),
        )[:PAGE_SIZE]
    )
    is_qa = _is_qa(user)
    open_forms = open_forms or {}
    waiting = oos_selectors.failed_results_without_oos(user=user)
    awaiting = list(waiting[:PAGE_SIZE])
    return {
        "filter_form": filters,
        "rows": [
            {
                "oos": oos,
                "badge": OOS_BADGE[oos.outcome],
                "steps": phase_steps(oos)[:-1],
                "phase_name": oos_services.PHASE_NAMES[oos.phase],
            }
            for oos in investigations
        ],
        "open_count": selectors.oos_visible_to(user).filter(outcome=OosOutcome.OPEN).count(),
        "awaiting": [
            (result, open_forms.get(result.pk) or OosOpenForm(auto_id=f"open-{result.pk}-%s"))
            for result in awaiting
        ],
        "awaiting_count": waiting.count(),
        "is_qa": is_qa,
    }


@login_required
@require_GET
def oos_index(request: HttpRequest) -> HttpResponse:
    """OOS investigations the user may see, newest first, with their phase and outcome; and the
    failed results no investigation covers yet, which QA opens from here (DV-10)."""
    context = _index_context(request)
    status = 400 if context["filter_form"].errors else 200
    return render(request, "deviations/oos_list.html", context, status=status)


@login_required
@require_POST
def oos_open(request: HttpRequest, result_id: int) -> HttpResponse:
    """QA opens the investigation of a failed result of a batch they may see."""
    actor = request_user(request)
    try:
        result: TestResult = oos_selectors.result_get_for_user(user=actor, pk=result_id)
    except TestResult.DoesNotExist as exc:
        raise Http404("No such result") from exc
    form = OosOpenForm(request.POST, auto_id=f"open-{result.pk}-%s")

    def again(status: int) -> HttpResponse:
        context = _index_context(request, open_forms={result.pk: form})
        return render(request, "deviations/oos_list.html", context, status=status)

    if not form.is_valid():
        return again(_invalid(request, "No investigation opened"))
    oos, refused = _run(
        request,
        again,
        lambda: oos_services.oos_open(
            actor=actor, result=result, reason=form.cleaned_data["reason"]
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, f"{oos.number} opened in Phase Ia; QA and the site lead are told.")
    return redirect("deviations:oos-detail", number=oos.number)


#
# One investigation
#


def _detail_context(
    request: HttpRequest, oos: OosInvestigation, bound: dict[str, Any] | None = None
) -> dict[str, Any]:
    user = request.user
    bound = bound or {}
    result = oos.result
    site = result.batch.site
    is_qa = _is_qa(user)
    capas = list(oos.capas.select_related("owner").order_by("number"))
    findings = [
        {
            "phase": phase,
            "name": oos_services.PHASE_NAMES[phase],
            "label": phase.label,
            "text": oos_services.phase_findings(oos, phase),
            "current": phase == oos.phase and oos.is_open,
        }
        for phase in OosPhase
    ]
    return {
        "oos": oos,
        "result": result,
        "spec": result.specification,
        "batch": result.batch,
        "site": site,
        "outcome_badge": OOS_BADGE[oos.outcome],
        "steps": phase_steps(oos),
        "phase_name": oos_services.PHASE_NAMES[oos.phase],
        "findings": [f for f in findings if f["text"] or f["current"]],
        "current_findings": oos_services.phase_findings(oos),
        "signatures": signatures_for(oos) if oos.closure_signature_id else [],
        "capas": [(capa, CAPA_BADGE[capa.status]) for capa in capas],
        "is_qa": is_qa,
        "may_write_findings": oos.is_open and services.may_investigate(user, site),
        "may_advance": is_qa and oos.is_open and oos.phase in OOS_NEXT_PHASE,
        "next_phase": oos_services.PHASE_NAMES.get(OOS_NEXT_PHASE.get(oos.phase, ""), ""),
        "may_conclude": is_qa and oos.is_open,
        "in_lab_phase": oos.phase in oos_services.LAB_PHASES,
        "findings_form": bound.get("findings")
        or FindingsForm(initial={"findings": oos_services.phase_findings(oos)}, auto_id=FINDINGS),
        "advance_form": bound.get("advance") or AdvanceForm(auto_id=ADVANCE),
        "conclude_form": bound.get("conclude")
        or ConcludeForm(
            initial={
                "outcome": OosOutcome.INVALIDATED
                if oos.phase in oos_services.LAB_PHASES
                else OosOutcome.CONFIRMED
            },
            auto_id=CONCLUDE,
        ),
        "conclude_sig": bound.get("conclude_sig") or _conclude_signature(request),
        "capa_form": bound.get("capa")
        or CapaForm(people=selectors.capa_owner_choices(site), auto_id=CAPA),
    }


def _detail_again(
    request: HttpRequest, oos: OosInvestigation, bound: dict[str, Any], status: int
) -> HttpResponse:
    fresh = _oos_or_404(request, oos.number)
    return render(
        request, "deviations/oos_detail.html", _detail_context(request, fresh, bound), status=status
    )


@login_required
@require_GET
def oos_detail(request: HttpRequest, number: str) -> HttpResponse:
    """The investigation with the ORIGINAL result shown in full — never hidden, also once
    invalidated — its phases, the findings of each, the conclusion and its signature."""
    oos = _oos_or_404(request, number)
    return render(request, "deviations/oos_detail.html", _detail_context(request, oos))


@login_required
@require_POST
def oos_findings(request: HttpRequest, number: str) -> HttpResponse:
    oos = _oos_or_404(request, number)
    actor = request_user(request)
    form = FindingsForm(request.POST, auto_id=FINDINGS)
    bound = {"findings": form}
    if not form.is_valid():
        return _detail_again(request, oos, bound, _invalid(request, "The findings were not saved"))
    _done, refused = _run(
        request,
        lambda status: _detail_again(request, oos, bound, status),
        lambda: oos_services.oos_record_findings(
            actor=actor,
            oos=oos,
            findings=form.cleaned_data["findings"],
            reason=form.cleaned_data["reason"],
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, "Findings saved.")
    return redirect(reverse("deviations:oos-detail", args=[oos.number]) + "#findings")


@login_required
@require_POST
def oos_advance(request: HttpRequest, number: str) -> HttpResponse:
    oos = _oos_or_404(request, number)
    actor = request_user(request)
    form = AdvanceForm(request.POST, auto_id=ADVANCE)
    bound = {"advance": form}
    if not form.is_valid():
        return _detail_again(request, oos, bound, _invalid(request, f"{oos.number} not moved on"))
    moved, refused = _run(
        request,
        lambda status: _detail_again(request, oos, bound, status),
        lambda: oos_services.oos_advance(actor=actor, oos=oos, reason=form.cleaned_data["reason"]),
    )
    if refused is not None:
        return refused
    messages.success(request, f"{oos.number} is now in {oos_services.PHASE_NAMES[moved.phase]}.")
    return redirect("deviations:oos-detail", number=oos.number)


@login_required
@require_POST
def oos_conclude(request: HttpRequest, number: str) -> HttpResponse:
    """QA concludes, signed: the conclusion's fields and the signature dialog post together;
    the signature's reason is the reason for the change."""
    oos = _oos_or_404(request, number)
    actor = request_user(request)
    form = ConcludeForm(request.POST, auto_id=CONCLUDE)
    sig = _conclude_signature(request, request.POST)
    bound = {"conclude": form, "conclude_sig": sig}
    if not (form.is_valid() and sig.is_valid()):
        return _detail_again(request, oos, bound, _invalid(request, f"{oos.number} not concluded"))
    done, refused = _run(
        request,
        lambda status: _detail_again(request, oos, bound, status),
        lambda: oos_services.oos_conclude(
            actor=actor,
            oos=oos,
            outcome=form.cleaned_data["outcome"],
            conclusion=form.cleaned_data["conclusion"],
            invalidation_evidence=form.cleaned_data["invalidation_evidence"],
            credentials=sig.credentials(),
            reason=sig.cleaned_data["reason"],
        ),
        sig,
    )
    if refused is not None:
        return refused
    messages.success(
        request, f"{oos.number} concluded — {done.get_outcome_display().lower()} — and signed."
    )
    return redirect("deviations:oos-detail", number=oos.number)


@login_required
@require_POST
def oos_capa_create(request: HttpRequest, number: str) -> HttpResponse:
    """QA raises a CAPA from the investigation (DV-02), with its owner and first action."""
    oos = _oos_or_404(request, number)
    actor = request_user(request)
    site = oos.result.batch.site
    form = CapaForm(request.POST, people=selectors.capa_owner_choices(site), auto_id=CAPA)
    bound = {"capa": form}
    if not form.is_valid():
        return _detail_again(request, oos, bound, _invalid(request, "No CAPA raised"))
    capa, refused = _run(
        request,
        lambda status: _detail_again(request, oos, bound, status),
        lambda: services.capa_create(actor=actor, oos=oos, **form.plan()),
    )
    if refused is not None:
        return refused
    messages.success(request, f"{capa.number} raised from {oos.number}; its owner is told.")
    return redirect("deviations:capa-detail", number=capa.number)
