"""Assignments (TR-03): who is asked to complete what by when. Everyone sees their own; a site
lead the people at their sites; QA, trainers, QPs and inspectors everyone's. Trainers and QA
assign training by hand (retraining after a deviation, say)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from controlsite.accounts.http import request_user
from controlsite.accounts.models import User
from sites.choices import SiteStatus
from sites.models import Site
from training import selectors, services
from training.choices import ASSIGNMENT_BADGE, AssignmentStatus
from training.forms import AssignForm, AssignmentFilterForm
from training.models import TrainingItem
from training.views.base import PAGE_SIZE, invalid, run


def assign_form(request: HttpRequest, data: Any = None) -> AssignForm:
    return AssignForm(
        data,
        people=User.objects.filter(is_active=True).order_by("last_name", "username"),
        items=TrainingItem.objects.filter(active=True).order_by("code"),
        # Offered to those who manage training, for every site; the service refuses others.
        sites=Site.objects.exclude(status=SiteStatus.CEASED).order_by("code"),
    )


def _index_context(request: HttpRequest, form: AssignForm | None = None) -> dict[str, Any]:
    user = request.user
    today = timezone.localdate()
    filters = AssignmentFilterForm(request.GET or None)
    show, site_code, person = "open", "", ""
    if filters.is_valid():
        show = filters.cleaned_data["show"] or "open"
        site_code = filters.cleaned_data["site"].strip().upper()
        person = filters.cleaned_data["person"].strip()
    visible = selectors.assignments_visible_to(user)
    shown = visible
    if show == "open":
        shown = shown.filter(status=AssignmentStatus.OPEN)
    elif show == "overdue":
        shown = shown.filter(status=AssignmentStatus.OPEN, due_on__lt=today)
    if site_code:
        shown = shown.filter(site__code=site_code)
    if person:
        shown = shown.filter(user__username=person)
    order = ("due_on", "id") if show != "all" else ("-created_at", "-id")
    page = list(shown.order_by(*order)[: PAGE_SIZE + 1])
    rows = [
        {
            "assignment": a,
            "badge": ASSIGNMENT_BADGE[a.status],
            "overdue": a.status == AssignmentStatus.OPEN and a.due_on < today,
        }
        for a in page[:PAGE_SIZE]
    ]
    open_rows = visible.filter(status=AssignmentStatus.OPEN)
    manages = selectors.manages_training(user)
    return {
        "tab": "assignments",
        "rows": rows,
        "more": len(page) > PAGE_SIZE,
        "show": show,
        "site_code": site_code,
        "person": person,
        "filters": filters,
        "open_count": open_rows.count(),
        "overdue_count": open_rows.filter(due_on__lt=today).count(),
        "manages": manages,
        "form": form or (assign_form(request) if manages else None),
    }


@login_required
@require_GET
def assignment_index(request: HttpRequest) -> HttpResponse:
    return render(request, "training/assignments.html", _index_context(request))


@login_required
@require_POST
def assignment_create(request: HttpRequest) -> HttpResponse:
    actor = request_user(request)
    form = assign_form(request, request.POST)

    def again(status: int) -> HttpResponse:
        return render(
            request, "training/assignments.html", _index_context(request, form), status=status
        )

    if not form.is_valid():
        return again(invalid(request, "Nothing was assigned"))
    data = form.cleaned_data
    assignment, refused = run(
        request,
        again,
        lambda: services.assignment_create(
            actor=actor,
            user=data["user"],
            item=data["item"],
            due_on=data["due_on"],
            site=data["site"],
            reason=data["reason"],
        ),
    )
    if refused is not None:
        return refused
    messages.success(
        request,
        f"{assignment.item.code} assigned to {assignment.user.printed_name}, due "
        f"{assignment.due_on:%d %b %Y}.",
    )
    return redirect("training:assignments")
