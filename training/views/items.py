"""Training items (TR-01, TR-04, TR-07): the GxP induction, the yearly refresher, the
accountability item, each SOP's read-and-understood and practical assessments. Everyone reads
them; Control Site QA and trainers define and change them."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from controlsite.accounts.http import request_user
from training import selectors, services
from training.choices import ITEM_KIND_BADGE
from training.forms import ItemEditForm, ItemForm
from training.models import Requirement, TrainingItem
from training.views.base import invalid, run


def _item_or_404(request: HttpRequest, code: str) -> TrainingItem:
    item = selectors.items_visible_to(request.user).filter(code=code).first()
    if item is None:
        raise Http404("No such training item")
    return item


def _index_context(request: HttpRequest, form: ItemForm | None = None) -> dict[str, Any]:
    manages = selectors.manages_training(request.user)
    items = selectors.items_visible_to(request.user).order_by("-active", "kind", "code")
    return {
        "tab": "items",
        "rows": [(item, ITEM_KIND_BADGE.get(item.kind, "muted")) for item in items],
        "manages": manages,
        "form": form or (ItemForm() if manages else None),
    }


@login_required
@require_GET
def item_index(request: HttpRequest) -> HttpResponse:
    return render(request, "training/items.html", _index_context(request))


@login_required
@require_POST
def item_create(request: HttpRequest) -> HttpResponse:
    actor = request_user(request)
    form = ItemForm(request.POST)

    def again(status: int) -> HttpResponse:
        return render(request, "training/items.html", _index_context(request, form), status=status)

    if not form.is_valid():
        return again(invalid(request, "The item was not created"))
    data = form.cleaned_data
    item, refused = run(
        request,
        again,
        lambda: services.item_create(
            actor=actor,
            code=data["code"],
            title=data["title"],
            kind=data["kind"],
            description=data["description"],
            validity_months=data["validity_months"],
            due_days=data["due_days"],
            reason=data["reason"],
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, f"{item.code} created; add it to the curricula that need it.")
    return redirect("training:item-detail", code=item.code)


def _detail_context(
    request: HttpRequest, item: TrainingItem, form: ItemEditForm | None = None
) -> dict[str, Any]:
    manages = selectors.manages_training(request.user)
    requirements = list(
        Requirement.objects.filter(item=item, removed_at__isnull=True)
        .select_related("curriculum__site")
        .order_by("curriculum__role", "curriculum__site__code")
    )
    curricula = selectors.curricula_visible_to(request.user).filter(
        pk__in=[r.curriculum_id for r in requirements]
    )
    if form is None and manages:
        form = ItemEditForm(
            initial={
                "title": item.title,
                "description": item.description,
                "validity_months": item.validity_months,
                "due_days": item.due_days,
                "active": item.active,
            }
        )
    return {
        "tab": "items",
        "item": item,
        "kind_badge": ITEM_KIND_BADGE.get(item.kind, "muted"),
        "curricula": list(curricula.order_by("role", "site__code")),
        "manages": manages,
        "form": form if manages else None,
    }


@login_required
@require_GET
def item_detail(request: HttpRequest, code: str) -> HttpResponse:
    item = _item_or_404(request, code)
    return render(request, "training/item_detail.html", _detail_context(request, item))


@login_required
@require_POST
def item_edit(request: HttpRequest, code: str) -> HttpResponse:
    item = _item_or_404(request, code)
    actor = request_user(request)
    form = ItemEditForm(request.POST)

    def again(status: int) -> HttpResponse:
        return render(
            request,
            "training/item_detail.html",
            _detail_context(request, item, form),
            status=status,
        )

    if not form.is_valid():
        return again(invalid(request, f"{item.code} was not changed"))
    data = form.cleaned_data
    changes = {name: data[name] for name in services.ITEM_EDITABLE}
    _done, refused = run(
        request,
        again,
        lambda: services.item_update(
            actor=actor, item=item, changes=changes, reason=data["reason"]
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, f"{item.code} saved.")
    return redirect("training:item-detail", code=item.code)
