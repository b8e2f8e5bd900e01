"""Curricula (TR-05): what a role needs at a site, or at every site. Trainers and QA create
them and add or remove items, with a reason; a removed item stays on the record with who
removed it and when, so "what did this role need on that day?" keeps its answer."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from controlsite.accounts.http import request_user
from sites.choices import SiteStatus
from sites.models import Site
from training import selectors, services
from training.choices import ITEM_KIND_BADGE
from training.forms import CurriculumForm, ReasonForm, RequirementAddForm
from training.models import Curriculum, Requirement, TrainingItem
from training.views.base import invalid, run


def _curriculum_or_404(request: HttpRequest, pk: int) -> Curriculum:
    curriculum = selectors.curricula_visible_to(request.user).filter(pk=pk).first()
    if curriculum is None:
        raise Http404("No such curriculum")
    return curriculum


def _sites(request: HttpRequest) -> Any:
    """The sites a curriculum may be written for. The form is offered to those who manage
    training, who work for every site; anyone else who posts it is refused by the service."""
    return Site.objects.exclude(status=SiteStatus.CEASED).order_by("code")


def _index_context(request: HttpRequest, form: CurriculumForm | None = None) -> dict[str, Any]:
    manages = selectors.manages_training(request.user)
    curricula = list(selectors.curricula_visible_to(request.user).order_by("role", "site__code"))
    counts: dict[int, int] = {}
    for curriculum_id in Requirement.objects.filter(
        curriculum_id__in=[c.pk for c in curricula], removed_at__isnull=True
    ).values_list("curriculum_id", flat=True):
        counts[curriculum_id] = counts.get(curriculum_id, 0) + 1
    return {
        "tab": "curricula",
        "rows": [(c, counts.get(c.pk, 0)) for c in curricula],
        "manages": manages,
        "form": form or (CurriculumForm(sites=_sites(request)) if manages else None),
    }


@login_required
@require_GET
def curriculum_index(request: HttpRequest) -> HttpResponse:
    return render(request, "training/curricula.html", _index_context(request))


@login_required
@require_POST
def curriculum_create(request: HttpRequest) -> HttpResponse:
    actor = request_user(request)
    form = CurriculumForm(request.POST, sites=_sites(request))

    def again(status: int) -> HttpResponse:
        return render(
            request, "training/curricula.html", _index_context(request, form), status=status
        )

    if not form.is_valid():
        return again(invalid(request, "The curriculum was not created"))
    data = form.cleaned_data
    curriculum, refused = run(
        request,
        again,
        lambda: services.curriculum_create(
            actor=actor,
            role=data["role"],
            site=data["site"],
            title=data["title"],
            reason=data["reason"],
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, f"Curriculum for {curriculum} created; add its items.")
    return redirect("training:curriculum-detail", pk=curriculum.pk)


def _addable(curriculum: Curriculum) -> Any:
    held = Requirement.objects.filter(curriculum=curriculum, removed_at__isnull=True).values(
        "item_id"
    )
    return TrainingItem.objects.filter(active=True).exclude(pk__in=held).order_by("code")


def _detail_context(
    request: HttpRequest, curriculum: Curriculum, bound: dict[str, Any] | None = None
) -> dict[str, Any]:
    bound = bound or {}
    manages = selectors.manages_training(request.user)
    requirements = list(
        curriculum.requirements.select_related("item", "created_by", "removed_by").order_by(
            "removed_at", "item__code"
        )
    )
    current = [r for r in requirements if r.removed_at is None]
    return {
        "tab": "curricula",
        "curriculum": curriculum,
        "current": [
            {
                "requirement": r,
                "badge": ITEM_KIND_BADGE.get(r.item.kind, "muted"),
                "form": bound.get(f"remove{r.pk}") or ReasonForm(prefix=f"remove{r.pk}"),
            }
            for r in current
        ],
        "removed": [r for r in requirements if r.removed_at is not None],
        "manages": manages,
        "add_form": bound.get("add")
        or (RequirementAddForm(items=_addable(curriculum)) if manages else None),
        "open_form": next(iter(bound), ""),
    }


def _detail_again(
    request: HttpRequest, curriculum: Curriculum, bound: dict[str, Any], status: int
) -> HttpResponse:
    return render(
        request,
        "training/curriculum_detail.html",
        _detail_context(request, curriculum, bound),
        status=status,
    )


@login_required
@require_GET
def curriculum_detail(request: HttpRequest, pk: int) -> HttpResponse:
    curriculum = _curriculum_or_404(request, pk)
    return render(request, "training/curriculum_detail.html", _detail_context(request, curriculum))


@login_required
@require_POST
def requirement_add(request: HttpRequest, pk: int) -> HttpResponse:
    """Add an item; everyone holding the role there is assigned it (TR-03)."""
    curriculum = _curriculum_or_404(request, pk)
    actor = request_user(request)
    form = RequirementAddForm(request.POST, items=_addable(curriculum))
    bound = {"add": form}
    if not form.is_valid():
        return _detail_again(request, curriculum, bound, invalid(request, "No item was added"))
    item = form.cleaned_data["item"]
    _done, refused = run(
        request,
        lambda status: _detail_again(request, curriculum, bound, status),
        lambda: services.requirement_add(
            actor=actor, curriculum=curriculum, item=item, reason=form.cleaned_data["reason"]
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, f"{item.code} added; the people it concerns are assigned it.")
    return redirect("training:curriculum-detail", pk=curriculum.pk)


@login_required
@require_POST
def requirement_remove(request: HttpRequest, pk: int, requirement: int) -> HttpResponse:
    curriculum = _curriculum_or_404(request, pk)
    actor = request_user(request)
    found = (
        Requirement.objects.filter(curriculum=curriculum, pk=requirement)
        .select_related("item", "curriculum__site")
        .first()
    )
    if found is None:
        raise Http404("No such curriculum item")
    prefix = f"remove{found.pk}"
    form = ReasonForm(request.POST, prefix=prefix)
    bound = {prefix: form}
    if not form.is_valid():
        return _detail_again(request, curriculum, bound, invalid(request, "Nothing was removed"))
    _done, refused = run(
        request,
        lambda status: _detail_again(request, curriculum, bound, status),
        lambda: services.requirement_remove(
            actor=actor, requirement=found, reason=form.cleaned_data["reason"]
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, f"{found.item.code} removed from the curriculum.")
    return redirect("training:curriculum-detail", pk=curriculum.pk)
