"""My training: the signed-in person's open assignments, soonest due first, each with a page to
read the item (an SOP's file and what changed) and sign "read and understood"; and their records
(TR-01, TR-03, TR-07)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from controlsite.accounts import permissions
from controlsite.accounts.http import request_user
from controlsite.accounts.roles import Capability
from training import selectors, services
from training.choices import (
    ACKNOWLEDGEABLE_VERSIONS,
    ASSIGNMENT_BADGE,
    ITEM_KIND_BADGE,
    SELF_ACKNOWLEDGED_KINDS,
    AssignmentStatus,
)
from training.forms import AcknowledgeForm
from training.models import Assignment, ProcedureVersion, TrainingItem
from training.views.base import PAGE_SIZE, invalid, run


@login_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The Training tab opens on the person's own training."""
    return redirect("training:my")


@login_required
@require_GET
def my_training(request: HttpRequest) -> HttpResponse:
    user = request_user(request)
    today = timezone.localdate()
    todo = selectors.todo_for(user)
    records = list(
        selectors.records_visible_to(user)
        .filter(user_id=user.pk)
        .order_by("-completed_at", "-id")[:PAGE_SIZE]
    )
    return render(
        request,
        "training/my.html",
        {
            "tab": "my",
            "rows": [
                {
                    "assignment": a,
                    "overdue": a.due_on < today,
                    "days": (a.due_on - today).days,
                    "kind_badge": ITEM_KIND_BADGE.get(a.item.kind, "muted"),
                    "self_signed": a.item.kind in SELF_ACKNOWLEDGED_KINDS,
                }
                for a in todo
            ],
            "overdue_count": sum(1 for a in todo if a.due_on < today),
            "records": records,
        },
    )


def _item_or_404(request: HttpRequest, code: str) -> TrainingItem:
    item = selectors.items_visible_to(request.user).filter(code=code).first()
    if item is None:
        raise Http404("No such training item")
    return item


def _reading(request: HttpRequest, item: TrainingItem) -> tuple[Assignment | None, Any]:
    """The person's open assignment for the item, and the procedure version to read: the one
    the assignment names, else the newest that may still be read."""
    assignment = (
        Assignment.objects.filter(
            user=request_user(request), item=item, status=AssignmentStatus.OPEN
        )
        .select_related("procedure_version__procedure", "site")
        .first()
    )
    version: ProcedureVersion | None = None
    if item.procedure_id:
        if assignment is not None and assignment.procedure_version is not None:
            version = assignment.procedure_version
        else:
            version = (
                ProcedureVersion.objects.filter(
                    procedure_id=item.procedure_id, status__in=ACKNOWLEDGEABLE_VERSIONS
                )
                .select_related("procedure")
                .order_by("-number")
                .first()
            )
    return assignment, version


def _read_page(
    request: HttpRequest, item: TrainingItem, form: AcknowledgeForm | None = None, status: int = 200
) -> HttpResponse:
    assignment, version = _reading(request, item)
    signable = (
        item.kind in SELF_ACKNOWLEDGED_KINDS
        and item.active
        and permissions.user_can(request.user, Capability.SIGN)
    )
    if item.procedure_id and version is None:
        signable = False
    if form is None and signable:
        form = AcknowledgeForm(
            request=request,
            item=item,
            initial={"version": version.number if version is not None else None},
        )
    today = timezone.localdate()
    return render(
        request,
        "training/read.html",
        {
            "tab": "my",
            "item": item,
            "kind_badge": ITEM_KIND_BADGE.get(item.kind, "muted"),
            "assignment": assignment,
            "assignment_badge": ASSIGNMENT_BADGE[assignment.status] if assignment else "",
            "overdue": assignment is not None and assignment.due_on < today,
            "version": version,
            "signable": signable,
            "may_sign": permissions.user_can(request.user, Capability.SIGN),
            "form": form if signable else None,
        },
        status=status,
    )


@login_required
@require_GET
def read(request: HttpRequest, code: str) -> HttpResponse:
    """One item to read: an SOP's version, its file and what changed, or the item's text; and
    the dialog to sign "read and understood"."""
    return _read_page(request, _item_or_404(request, code))


@login_required
@require_POST
def acknowledge(request: HttpRequest, code: str) -> HttpResponse:
    """The trainee signs "read and understood" (acknowledged). A version superseded since the
    page was opened is refused (409) and nothing is written."""
    item = _item_or_404(request, code)
    actor = request_user(request)
    if not permissions.user_can(actor, Capability.SIGN):
        # Inspectors, integrators and administrators never sign (ES-01, DI-03).
        raise PermissionDenied
    form = AcknowledgeForm(request.POST, request=request, item=item)

    def again(status: int) -> HttpResponse:
        return _read_page(request, item, form, status)

    if not form.is_valid():
        return again(invalid(request, f"{item.code} was not signed"))
    version = None
    number = form.cleaned_data.get("version")
    if number is not None:
        version = ProcedureVersion.objects.filter(
            procedure_id=item.procedure_id or 0, number=number
        ).first()
        if version is None:
            form.add_error(None, f"{item.code} has no version {number}.")
            return again(invalid(request, f"{item.code} was not signed"))
    _record, refused = run(
        request,
        again,
        lambda: services.acknowledge(
            actor=actor,
            item=item,
            version=version,
            credentials=form.credentials(),
            reason=form.cleaned_data["reason"],
        ),
        form,
    )
    if refused is not None:
        return refused
    what = f"{item.code} v{version.number}" if version is not None else item.code
    messages.success(request, f"{what} signed as read and understood.")
    return redirect("training:my")
