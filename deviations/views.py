"""Deviation and CAPA pages (design §3)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from deviations import selectors
from deviations.choices import CAPA_BADGE, CLASS_BADGE, CLASS_CRITERIA, DEVIATION_BADGE
from deviations.models import Capa, Deviation, OosInvestigation

PAGE_SIZE = 50


@login_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """Deviations the user may see, newest first, with their class, status and due date."""
    deviations = list(
        selectors.deviations_visible_to(request.user)
        .select_related("site", "batch")
        .order_by("-created_at", "-id")[:PAGE_SIZE]
    )
    overdue = set(
        selectors.deviations_visible_to(request.user)
        .filter(selectors.overdue_q(), pk__in=[d.pk for d in deviations])
        .values_list("pk", flat=True)
    )
    rows = [
        (d, DEVIATION_BADGE[d.status], CLASS_BADGE[d.deviation_class], d.pk in overdue)
        for d in deviations
    ]
    return render(request, "deviations/index.html", {"rows": rows})


@login_required
@require_GET
def deviation_detail(request: HttpRequest, number: str) -> HttpResponse:
    try:
        deviation = selectors.deviation_get_for_user(user=request.user, number=number)
    except Deviation.DoesNotExist:
        raise Http404("No such deviation") from None
    capas = list(deviation.capas.select_related("owner").order_by("number"))
    return render(
        request,
        "deviations/detail.html",
        {
            "deviation": deviation,
            "status_badge": DEVIATION_BADGE[deviation.status],
            "class_badge": CLASS_BADGE[deviation.deviation_class],
            "criteria": CLASS_CRITERIA[deviation.deviation_class],
            "capas": [(c, CAPA_BADGE[c.status]) for c in capas],
        },
    )


@login_required
@require_GET
def capa_detail(request: HttpRequest, number: str) -> HttpResponse:
    try:
        capa = (
            selectors.capas_visible_to(request.user)
            .select_related("owner", "deviation", "site")
            .get(number=number)
        )
    except Capa.DoesNotExist:
        raise Http404("No such CAPA") from None
    actions = list(capa.actions.select_related("owner", "done_by"))
    return render(
        request,
        "deviations/capa_detail.html",
        {"capa": capa, "status_badge": CAPA_BADGE[capa.status], "actions": actions},
    )


@login_required
@require_GET
def oos_detail(request: HttpRequest, number: str) -> HttpResponse:
    try:
        oos = (
            selectors.oos_visible_to(request.user)
            .select_related("result__specification", "result__batch")
            .get(number=number)
        )
    except OosInvestigation.DoesNotExist:
        raise Http404("No such OOS investigation") from None
    return render(request, "deviations/oos_detail.html", {"oos": oos})
