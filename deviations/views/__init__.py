"""Deviation and CAPA pages (design §3). Each POST calls one service; a refusal is shown on
the page again with what was typed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from batches.selectors import batches_visible_to
from controlsite.accounts import permissions
from controlsite.accounts.http import request_user
from controlsite.accounts.roles import Capability
from controlsite.errors import ApplicationError, PermissionRefusedError
from controlsite.signatures.forms import SignatureForm
from controlsite.signatures.models import SignatureMeaning
from controlsite.signatures.services import SignatureRefusedError
from deviations import selectors, services
from deviations.choices import (
    CAPA_BADGE,
    CAPA_OPEN,
    CLASS_BADGE,
    CLASS_CRITERIA,
    DEVIATION_BADGE,
    DEVIATION_OPEN,
    DEVIATION_TRANSITIONS,
    ActionStatus,
    CapaStatus,
    DeviationAction,
    DeviationClass,
    ExtensionStatus,
)
from deviations.forms import (
    ActionDoneForm,
    ActionForm,
    CapaForm,
    ConfirmClassForm,
    EffectivenessForm,
    ExtensionForm,
    InvestigationForm,
    RaiseForm,
    TransitionForm,
    TrendForm,
)
from deviations.models import Capa, CapaAction, Deviation, DeviationExtension
from masterfile.selectors import products_visible_to
from sites.selectors import sites_visible_to

PAGE_SIZE = 50

#
# Small helpers
#


def _is_qa(user: Any) -> bool:
    return permissions.user_can(user, Capability.MANAGE_QUALITY_RECORDS)


def _refused(request: HttpRequest, exc: ApplicationError) -> int:
    if isinstance(exc, PermissionRefusedError):
        raise PermissionDenied(exc.message) from exc
    messages.error(request, exc.message)
    return exc.status_code


def _run(
    request: HttpRequest,
    again: Callable[[int], HttpResponse],
    call: Callable[[], Any],
    sig: SignatureForm | None = None,
) -> tuple[Any, HttpResponse | None]:
    """Run one service; a refusal is shown on the page again (a refused signature in its
    dialog). After a signing, the dialog remembers it (continuous session, ES-06)."""
    try:
        result = call()
    except SignatureRefusedError as exc:
        if sig is not None:
            sig.add_error(None, exc.message)
        messages.error(request, exc.message)
        return None, again(exc.status_code)
    except ApplicationError as exc:
        return None, again(_refused(request, exc))
    if sig is not None:
        sig.mark_signed()
    return result, None


def _invalid(request: HttpRequest, what: str) -> int:
    messages.error(request, f"{what}: correct the fields marked below.")
    return 400


def _deviation_or_404(request: HttpRequest, number: str) -> Deviation:
    try:
        return selectors.deviation_get_for_user(user=request.user, number=number)
    except Deviation.DoesNotExist as exc:
        raise Http404("No such deviation") from exc


def _capa_or_404(request: HttpRequest, number: str) -> Capa:
    try:
        return (
            selectors.capas_visible_to(request.user)
            .select_related("owner", "deviation", "site", "closure_signature")
            .get(number=number)
        )
    except Capa.DoesNotExist as exc:
        raise Http404("No such CAPA") from exc


def _close_signature(request: HttpRequest, data: Any = None) -> SignatureForm:
    form = SignatureForm(data, request=request, meaning=SignatureMeaning.APPROVED, prefix="close")
    form.meaning_value = "approved-close"
    return form


#
# The list and raising a deviation
#


def _index_context(request: HttpRequest, raise_form: RaiseForm | None = None) -> dict[str, Any]:
    user = request.user
    visible = selectors.deviations_visible_to(user)
    show = request.GET.get("show", "all")
    shown = {
        "open": visible.filter(status__in=DEVIATION_OPEN),
        "overdue": visible.filter(selectors.overdue_q()),
    }.get(show, visible)
    site_code = request.GET.get("site", "").strip().upper()
    if site_code:
        shown = shown.filter(site__code=site_code)
    deviations = list(
        shown.select_related("site", "batch").order_by("-created_at", "-id")[:PAGE_SIZE]
    )
    overdue = set(
        visible.filter(selectors.overdue_q(), pk__in=[d.pk for d in deviations]).values_list(
            "pk", flat=True
        )
    )
    rows = [
        (d, DEVIATION_BADGE[d.status], CLASS_BADGE[d.deviation_class], d.pk in overdue)
        for d in deviations
    ]
    if raise_form is None and services.may_raise(user):
        initial: dict[str, Any] = {}
        batch_number = request.GET.get("batch", "")
        batch = batches_visible_to(user).filter(number=batch_number).select_related("site").first()
        if batch is not None:
            initial = {"site": batch.site.code, "batch": batch.number}
        raise_form = RaiseForm(initial=initial, sites=sites_visible_to(user).order_by("code"))
    return {
        "rows": rows,
        "show": show if show in ("open", "overdue") else "all",
        "site_code": site_code,
        "raise_form": raise_form,
        "open_count": visible.filter(status__in=DEVIATION_OPEN).count(),
        "overdue_count": visible.filter(selectors.overdue_q()).count(),
    }


@login_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """Deviations the user may see, newest first, with their class, status and due date, and
    the form to raise one."""
    return render(request, "deviations/index.html", _index_context(request))


@login_required
@require_POST
def raise_deviation(request: HttpRequest) -> HttpResponse:
    actor = request_user(request)
    if not services.may_raise(actor):
        raise PermissionDenied
    form = RaiseForm(request.POST, sites=sites_visible_to(actor).order_by("code"))

    def again(status: int) -> HttpResponse:
        return render(
            request, "deviations/index.html", _index_context(request, form), status=status
        )

    if not form.is_valid():
        return again(_invalid(request, "The deviation was not raised"))
    batch = None
    number = form.cleaned_data["batch"].strip()
    if number:
        batch = batches_visible_to(actor).filter(number=number).first()
        if batch is None:
            form.add_error("batch", "No batch with this number that you may see.")
            return again(_invalid(request, "The deviation was not raised"))
    deviation, refused = _run(
        request,
        again,
        lambda: services.deviation_raise(
            actor=actor,
            site=form.cleaned_data["site"],
            batch=batch,
            title=form.cleaned_data["title"],
            description=form.cleaned_data["description"],
            proposed_class=form.cleaned_data["proposed_class"],
            immediate_action=form.cleaned_data["immediate_action"],
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, f"{deviation.number} raised; QA is told.")
    return redirect("deviations:detail", number=deviation.number)


# What the page says once a lifecycle step is done.
_DONE = {
    DeviationAction.TRIAGE: "triaged: the investigation can start.",
    DeviationAction.INVESTIGATE: "under investigation.",
    DeviationAction.AWAIT_CAPA: "handed over to CAPA.",
    DeviationAction.CLOSE: "closed and signed.",
    DeviationAction.CANCEL: "cancelled.",
}


def raise_on_batch_url(batch: Any, user: Any) -> str | None:
    """The batch page's "Raise a deviation" link (a record action, design §2): the raise form
    with the batch filled in, for those who raise deviations."""
    if not services.may_raise(user):
        return None
    return f"{reverse('deviations:index')}?{urlencode({'batch': batch.number})}#raise"


#
# One deviation
#


def _detail_context(
    request: HttpRequest, deviation: Deviation, bound: dict[str, Any] | None = None
) -> dict[str, Any]:
    user = request.user
    bound = bound or {}
    is_qa = _is_qa(user)
    may_investigate = deviation.is_open and services.may_investigate(user, deviation.site)
    capas = list(deviation.capas.select_related("owner").order_by("number"))
    extensions = list(deviation.extensions.select_related("created_by", "decided_by"))
    actions = []
    if is_qa and deviation.is_open:
        actions = [
            action
            for action, (sources, _to) in DEVIATION_TRANSITIONS.items()
            if deviation.status in sources and action != DeviationAction.CLOSE
        ]
    may_close = is_qa and deviation.status in DEVIATION_TRANSITIONS[DeviationAction.CLOSE][0]
    investigation = bound.get("investigation") or InvestigationForm(
        initial={name: getattr(deviation, name) for name in services.INVESTIGATION_FIELDS}
    )
    return {
        "deviation": deviation,
        "status_badge": DEVIATION_BADGE[deviation.status],
        "class_badge": CLASS_BADGE[deviation.deviation_class],
        "criteria": CLASS_CRITERIA[deviation.deviation_class],
        "class_criteria": [
            ({"badge": CLASS_BADGE[value]}, label, CLASS_CRITERIA[value])
            for value, label in DeviationClass.choices
        ],
        "overdue": deviation.is_overdue(timezone.localdate()),
        "capas": [(c, CAPA_BADGE[c.status]) for c in capas],
        "extensions": extensions,
        "pending_extension": next(
            (e for e in extensions if e.status == ExtensionStatus.REQUESTED), None
        ),
        "is_qa": is_qa,
        "actions": actions,
        "may_investigate": may_investigate,
        "may_close": may_close,
        "confirm_form": bound.get("confirm")
        or ConfirmClassForm(initial={"deviation_class": deviation.deviation_class}),
        "transition_form": bound.get("transition") or TransitionForm(),
        "investigation_form": investigation,
        "extension_form": bound.get("extension") or ExtensionForm(),
        "decision_form": bound.get("decision") or TransitionForm(auto_id="id_decision_%s"),
        "capa_form": bound.get("capa")
        or CapaForm(people=selectors.capa_owner_choices(deviation.site)),
        "close_sig": bound.get("close_sig") or _close_signature(request),
    }


def _detail_again(
    request: HttpRequest, deviation: Deviation, bound: dict[str, Any], status: int
) -> HttpResponse:
    return render(
        request,
        "deviations/detail.html",
        _detail_context(request, deviation, bound),
        status=status,
    )


@login_required
@require_GET
def deviation_detail(request: HttpRequest, number: str) -> HttpResponse:
    deviation = _deviation_or_404(request, number)
    return render(request, "deviations/detail.html", _detail_context(request, deviation))


@login_required
@require_GET
def deviation_of_signal(request: HttpRequest, signal_id: int) -> HttpResponse:
    """The deviation a comparability signal opened (issue 8 §5): the comparability pages link
    here by the signal's id, as batches never imports deviations (design §2). 404 until the
    signal's deviation is open, or when the person may not see it."""
    deviation = (
        selectors.deviations_visible_to(request_user(request))
        .filter(comparability_signal_id=signal_id)
        .only("number")
        .first()
    )
    if deviation is None:
        raise Http404("No deviation you may see was opened for this signal.")
    return redirect("deviations:detail", number=deviation.number)


@login_required
@require_POST
def confirm_class(request: HttpRequest, number: str) -> HttpResponse:
    deviation = _deviation_or_404(request, number)
    actor = request_user(request)
    form = ConfirmClassForm(request.POST)
    bound = {"confirm": form}
    if not form.is_valid():
        return _detail_again(request, deviation, bound, _invalid(request, "Class not confirmed"))
    _done, refused = _run(
        request,
        lambda status: _detail_again(request, deviation, bound, status),
        lambda: services.deviation_confirm_class(
            actor=actor,
            deviation=deviation,
            deviation_class=form.cleaned_data["deviation_class"],
            reason=form.cleaned_data["reason"],
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, f"{deviation.number}'s class confirmed.")
    return redirect("deviations:detail", number=deviation.number)


@login_required
@require_POST
def transition(request: HttpRequest, number: str, action: str) -> HttpResponse:
    """Triage, investigate, hand over to CAPA, cancel, or close (signed)."""
    deviation = _deviation_or_404(request, number)
    actor = request_user(request)
    try:
        verb = DeviationAction(action)
    except ValueError as exc:
        raise Http404 from exc
    signing = verb == DeviationAction.CLOSE
    # Closing is signed: the signature's reason is the reason for the change.
    form = _close_signature(request, request.POST) if signing else TransitionForm(request.POST)
    bound: dict[str, Any] = {"close_sig" if signing else "transition": form}
    if not form.is_valid():
        status = _invalid(request, f"{deviation.number} not moved on")
        return _detail_again(request, deviation, bound, status)
    _done, refused = _run(
        request,
        lambda status: _detail_again(request, deviation, bound, status),
        lambda: services.deviation_transition(
            actor=actor,
            deviation=deviation,
            action=verb,
            reason=form.cleaned_data["reason"],
            credentials=form.credentials() if isinstance(form, SignatureForm) else None,
        ),
        form if isinstance(form, SignatureForm) else None,
    )
    if refused is not None:
        return refused
    messages.success(request, f"{deviation.number} {_DONE[verb]}")
    return redirect("deviations:detail", number=deviation.number)


@login_required
@require_POST
def investigation(request: HttpRequest, number: str) -> HttpResponse:
    deviation = _deviation_or_404(request, number)
    actor = request_user(request)
    form = InvestigationForm(request.POST)
    bound = {"investigation": form}
    if not form.is_valid():
        status = _invalid(request, "The investigation was not saved")
        return _detail_again(request, deviation, bound, status)
    _done, refused = _run(
        request,
        lambda status: _detail_again(request, deviation, bound, status),
        lambda: services.deviation_update(
            actor=actor,
            deviation=deviation,
            reason=form.cleaned_data["reason"],
            changes={name: form.cleaned_data[name] for name in services.INVESTIGATION_FIELDS},
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, "Investigation saved.")
    return redirect(reverse("deviations:detail", args=[deviation.number]) + "#investigation")


@login_required
@require_POST
def extension_request(request: HttpRequest, number: str) -> HttpResponse:
    deviation = _deviation_or_404(request, number)
    actor = request_user(request)
    form = ExtensionForm(request.POST)
    bound = {"extension": form}
    if not form.is_valid():
        return _detail_again(request, deviation, bound, _invalid(request, "No extension asked"))
    _done, refused = _run(
        request,
        lambda status: _detail_again(request, deviation, bound, status),
        lambda: services.extension_request(
            actor=actor,
            deviation=deviation,
            requested_due_on=form.cleaned_data["requested_due_on"],
            reason=form.cleaned_data["reason"],
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, "Extension asked; QA decides.")
    return redirect("deviations:detail", number=deviation.number)


@login_required
@require_POST
def extension_decide(request: HttpRequest, number: str, pk: int, decision: str) -> HttpResponse:
    deviation = _deviation_or_404(request, number)
    actor = request_user(request)
    extension = DeviationExtension.objects.filter(deviation=deviation, pk=pk).first()
    if extension is None or decision not in ("approve", "refuse"):
        raise Http404
    form = TransitionForm(request.POST, auto_id="id_decision_%s")
    bound = {"decision": form}
    if not form.is_valid():
        status = _invalid(request, "The extension was not decided")
        return _detail_again(request, deviation, bound, status)
    _done, refused = _run(
        request,
        lambda status: _detail_again(request, deviation, bound, status),
        lambda: services.extension_decide(
            actor=actor,
            extension=extension,
            approve=decision == "approve",
            reason=form.cleaned_data["reason"],
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, f"Extension {'approved' if decision == 'approve' else 'refused'}.")
    return redirect("deviations:detail", number=deviation.number)


@login_required
@require_POST
def capa_create(request: HttpRequest, number: str) -> HttpResponse:
    deviation = _deviation_or_404(request, number)
    actor = request_user(request)
    form = CapaForm(request.POST, people=selectors.capa_owner_choices(deviation.site))
    bound = {"capa": form}
    if not form.is_valid():
        return _detail_again(request, deviation, bound, _invalid(request, "No CAPA raised"))
    capa, refused = _run(
        request,
        lambda status: _detail_again(request, deviation, bound, status),
        lambda: services.capa_create(actor=actor, deviation=deviation, **form.plan()),
    )
    if refused is not None:
        return refused
    messages.success(request, f"{capa.number} raised; its owner is told.")
    return redirect("deviations:capa-detail", number=capa.number)


#
# CAPA
#


def _capa_context(
    request: HttpRequest, capa: Capa, bound: dict[str, Any] | None = None
) -> dict[str, Any]:
    user = request.user
    bound = bound or {}
    is_qa = _is_qa(user)
    actions = list(capa.actions.select_related("owner", "done_by"))
    done_total = sum(1 for a in actions if a.status == ActionStatus.DONE)
    return {
        "capa": capa,
        "status_badge": CAPA_BADGE[capa.status],
        "actions": actions,
        "done_total": done_total,
        "done_pct": round(100 * done_total / len(actions)) if actions else 0,
        "is_qa": is_qa,
        "may_complete": {
            a.pk
            for a in actions
            if a.status == ActionStatus.OPEN
            and capa.status == CapaStatus.OPEN
            and (is_qa or a.owner_id == user.pk)
        },
        "action_form": bound.get("action")
        or ActionForm(people=selectors.capa_owner_choices(capa.site)),
        "done_form": bound.get("done") or ActionDoneForm(),
        "effectiveness_form": bound.get("effectiveness") or EffectivenessForm(),
        "close_sig": bound.get("close_sig") or _close_signature(request),
        "cancel_form": bound.get("cancel") or TransitionForm(prefix="cancel"),
    }


def _capa_again(
    request: HttpRequest, capa: Capa, bound: dict[str, Any], status: int
) -> HttpResponse:
    return render(
        request, "deviations/capa_detail.html", _capa_context(request, capa, bound), status=status
    )


@login_required
@require_GET
def capa_detail(request: HttpRequest, number: str) -> HttpResponse:
    capa = _capa_or_404(request, number)
    return render(request, "deviations/capa_detail.html", _capa_context(request, capa))


CAPA_SHOW = ("open", "overdue", "all")


def _percent(part: int, whole: int) -> int:
    return round(100 * part / whole) if whole else 0


@login_required
@require_GET
def capa_index(request: HttpRequest) -> HttpResponse:
    """The CAPAs the user may see: open (soonest due first), overdue, or all (DV-02)."""
    show = request.GET.get("show", "open")
    if show not in CAPA_SHOW:
        show = "open"
    today = timezone.localdate()
    capas = selectors.capa_list(request.user, show=show, today=today)
    page = list(capas[: PAGE_SIZE + 1])
    open_rows = selectors.capas_visible_to(request.user).filter(status__in=CAPA_OPEN)
    rows = [
        (
            capa,
            CAPA_BADGE[capa.status],
            capa.is_open and capa.due_on < today,
            _percent(capa.actions_done, capa.actions_total),  # type: ignore[attr-defined]
        )
        for capa in page[:PAGE_SIZE]
    ]
    return render(
        request,
        "deviations/capa_index.html",
        {
            "rows": rows,
            "show": show,
            "more": len(page) > PAGE_SIZE,
            "total": capas.count() if len(page) > PAGE_SIZE else len(rows),
            "open_count": open_rows.count(),
            "overdue_count": open_rows.filter(due_on__lt=today).count(),
        },
    )


@login_required
@require_POST
def capa_action_add(request: HttpRequest, number: str) -> HttpResponse:
    capa = _capa_or_404(request, number)
    actor = request_user(request)
    form = ActionForm(request.POST, people=selectors.capa_owner_choices(capa.site))
    bound = {"action": form}
    if not form.is_valid():
        return _capa_again(request, capa, bound, _invalid(request, "No action added"))
    data = form.cleaned_data
    _done, refused = _run(
        request,
        lambda status: _capa_again(request, capa, bound, status),
        lambda: services.capa_action_add(
            actor=actor,
            capa=capa,
            item=services.ActionInput(data["description"], data["owner"], data["due_on"]),
            reason=data["reason"],
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, "Action added.")
    return redirect("deviations:capa-detail", number=capa.number)


@login_required
@require_POST
def capa_action_done(request: HttpRequest, number: str, pk: int) -> HttpResponse:
    capa = _capa_or_404(request, number)
    actor = request_user(request)
    action = CapaAction.objects.filter(capa=capa, pk=pk).first()
    if action is None:
        raise Http404
    form = ActionDoneForm(request.POST)
    bound = {"done": form}
    if not form.is_valid():
        return _capa_again(request, capa, bound, _invalid(request, "Action not completed"))
    _done, refused = _run(
        request,
        lambda status: _capa_again(request, capa, bound, status),
        lambda: services.capa_action_complete(
            actor=actor, action=action, outcome=form.cleaned_data["outcome"]
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, "Action done.")
    return redirect("deviations:capa-detail", number=capa.number)


@login_required
@require_POST
def capa_effectiveness(request: HttpRequest, number: str) -> HttpResponse:
    capa = _capa_or_404(request, number)
    actor = request_user(request)
    form = EffectivenessForm(request.POST)
    bound = {"effectiveness": form}
    if not form.is_valid():
        return _capa_again(request, capa, bound, _invalid(request, "Check not recorded"))
    _done, refused = _run(
        request,
        lambda status: _capa_again(request, capa, bound, status),
        lambda: services.capa_effectiveness_check(
            actor=actor,
            capa=capa,
            effectiveness=form.cleaned_data["effectiveness"],
            notes=form.cleaned_data["notes"],
            reason=form.cleaned_data["reason"],
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, "Effectiveness check recorded.")
    return redirect("deviations:capa-detail", number=capa.number)


@login_required
@require_POST
def capa_close(request: HttpRequest, number: str) -> HttpResponse:
    capa = _capa_or_404(request, number)
    actor = request_user(request)
    sig = _close_signature(request, request.POST)
    bound = {"close_sig": sig}
    if not sig.is_valid():
        return _capa_again(request, capa, bound, _invalid(request, f"{capa.number} not closed"))
    _done, refused = _run(
        request,
        lambda status: _capa_again(request, capa, bound, status),
        lambda: services.capa_close(
            actor=actor,
            capa=capa,
            credentials=sig.credentials(),
            reason=sig.cleaned_data["reason"],
        ),
        sig,
    )
    if refused is not None:
        return refused
    messages.success(request, f"{capa.number} closed and signed.")
    return redirect("deviations:capa-detail", number=capa.number)


@login_required
@require_POST
def capa_cancel(request: HttpRequest, number: str) -> HttpResponse:
    capa = _capa_or_404(request, number)
    actor = request_user(request)
    form = TransitionForm(request.POST, prefix="cancel")
    bound = {"cancel": form}
    if not form.is_valid():
        return _capa_again(request, capa, bound, _invalid(request, f"{capa.number} not cancelled"))
    _done, refused = _run(
        request,
        lambda status: _capa_again(request, capa, bound, status),
        lambda: services.capa_cancel(actor=actor, capa=capa, reason=form.cleaned_data["reason"]),
    )
    if refused is not None:
        return refused
    messages.success(request, f"{capa.number} cancelled.")
    return redirect("deviations:capa-detail", number=capa.number)


@login_required
@require_GET
def trends(request: HttpRequest) -> HttpResponse:
    """Deviations per month by class, per site against the network and the reference site,
    and by root cause (DV-06)."""
    form = TrendForm(request.GET or None, products=products_visible_to(request.user))
    months, product = 12, None
    if form.is_valid():
        months = form.cleaned_data["months"] or 12
        product = form.cleaned_data["product"]
    data = selectors.deviation_trends(user=request.user, months=months, product=product)
    peak = data.peak_month or 1
    bars = [
        {
            "label": f"{m.month:%B %Y}",
            "short": f"{m.month:%b}",
            "total": m.total,
            "segments": [
                {"cls": cls, "pct": round(100 * m.by_class.get(cls, 0) / peak, 1)}
                for cls in DeviationClass.values
                if m.by_class.get(cls)
            ],
        }
        for m in data.months
    ]
    rates = [s.per_100_batches or 0.0 for s in data.sites]
    scale = max([*rates, data.network_per_100_batches or 0.0]) or 1.0
    network = data.network_per_100_batches
    return render(
        request,
        "deviations/trends.html",
        {
            "form": form,
            "trends": data,
            "classes": DeviationClass.choices,
            "bars": bars,
            "sites": [
                {"site": s, "pct": round(100 * (s.per_100_batches or 0.0) / scale, 1)}
                for s in data.sites
            ],
            "network_pct": None if network is None else round(100 * network / scale, 1),
            "reference_plural": "s" if sum(s.is_reference for s in data.sites) > 1 else "",
            "causes": [
                {"label": label, "n": n, "pct": round(100 * n / (data.peak_cause or 1), 1)}
                for _value, label, n in data.causes
            ],
        },
    )
