"""Change-control pages (issue 6 §4; DV-07…DV-09, MF-09): the list with the form to propose a
change, and one change with its lifecycle, the approvals given and still due, the master-file
draft and the MHRA notification its approval set off, its tasks and the forms of each step.

Each POST calls one service; a refusal is shown on the page again, with what was typed and
under the service's status code (400 bad input, 403 not allowed, 409 refused by the lifecycle,
422 signature refused).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from controlsite.accounts.http import request_user
from controlsite.signatures.forms import SignatureForm
from controlsite.signatures.models import ElectronicSignature, SignatureMeaning
from controlsite.signatures.services import content_hash
from deviations import selectors
from deviations.choices import (
    CHANGE_BADGE,
    CHANGE_OPEN,
    CHANGE_PATH,
    ActionStatus,
    ChangeAction,
    ChangeScope,
    ChangeStatus,
)
from deviations.forms import TransitionForm
from deviations.forms.changes import (
    ChangeForm,
    ChangeReviewForm,
    ChangeTaskDoneForm,
    ChangeTaskForm,
)
from deviations.models import ChangeControl, ChangeTask
from deviations.selectors import changes as change_selectors
from deviations.services import changes as services
from deviations.views import PAGE_SIZE, _invalid, _run
from masterfile.choices import OPEN_STATUSES, VERSION_BADGE
from masterfile.models import MasterFileVersion
from masterfile.selectors import products_visible_to

# The reason-only steps a page posts to `change-transition`, by URL segment.
REASON_STEPS: dict[str, ChangeAction] = {
    ChangeAction.SUBMIT.value: ChangeAction.SUBMIT,
    ChangeAction.REJECT.value: ChangeAction.REJECT,
    ChangeAction.IMPLEMENT.value: ChangeAction.IMPLEMENT,
}
_STEP_DONE = {
    ChangeAction.SUBMIT: "submitted for review; QA is told",
    ChangeAction.REJECT: "rejected",
    ChangeAction.IMPLEMENT: "recorded as implemented",
}


def _change_or_404(request: HttpRequest, number: str) -> ChangeControl:
    try:
        return change_selectors.change_get_for_user(user=request.user, number=number)
    except ChangeControl.DoesNotExist as exc:
        raise Http404("No such change") from exc


def _change_form(request: HttpRequest, data: Any = None, **kwargs: Any) -> ChangeForm:
    user = request.user
    return ChangeForm(
        data,
        sites=change_selectors.change_proposal_sites(user).order_by("code"),
        products=products_visible_to(user).order_by("code"),
        **kwargs,
    )


def _signature_form(
    request: HttpRequest, meaning: SignatureMeaning, prefix: str, data: Any = None
) -> SignatureForm:
    form = SignatureForm(data, request=request, meaning=meaning, prefix=prefix)
    form.meaning_value = f"{meaning.value}-{prefix}"
    return form


def _approve_signature(request: HttpRequest, data: Any = None) -> SignatureForm:
    return _signature_form(request, SignatureMeaning.APPROVED, "approve", data)


def _close_signature(request: HttpRequest, data: Any = None) -> SignatureForm:
    return _signature_form(request, SignatureMeaning.REVIEWED, "close", data)


#
# The list and proposing a change
#


def _index_context(request: HttpRequest, form: ChangeForm | None = None) -> dict[str, Any]:
    user = request.user
    visible = change_selectors.changes_visible_to(user)
    changes = list(
        visible.select_related("site", "product").order_by("-created_at", "-id")[:PAGE_SIZE]
    )
    labels = dict(ChangeScope.choices)
    rows = [(c, CHANGE_BADGE[c.status], [labels.get(s, s) for s in c.scopes]) for c in changes]
    if form is None and services.may_propose(user):
        form = _change_form(request, auto_id="propose_%s")
    return {
        "rows": rows,
        "form": form,
        "open_count": visible.filter(status__in=CHANGE_OPEN).count(),
        "review_count": visible.filter(status=ChangeStatus.IN_REVIEW).count(),
    }


@login_required
@require_GET
def change_index(request: HttpRequest) -> HttpResponse:
    """The changes the user may see, newest first, with their status and whether they are
    regulatory, and the form to propose one (QA, or a site lead for their site)."""
    return render(request, "deviations/change_index.html", _index_context(request))


@login_required
@require_POST
def change_propose(request: HttpRequest) -> HttpResponse:
    actor = request_user(request)
    if not services.may_propose(actor):
        raise PermissionDenied
    form = _change_form(request, request.POST, auto_id="propose_%s")

    def again(status: int) -> HttpResponse:
        return render(
            request,
            "deviations/change_index.html",
            _index_context(request, form),
            status=status,
        )

    if not form.is_valid():
        return again(_invalid(request, "The change was not proposed"))
    data = form.cleaned_data
    change, refused = _run(
        request,
        again,
        lambda: services.change_propose(
            actor=actor,
            title=data["title"],
            description=data["description"],
            scopes=data["scopes"],
            product=data["product"],
            site=data["site"],
            risk_level=data["risk_level"],
            risk_assessment=data["risk_assessment"],
            regulatory_impact=data["regulatory_impact"],
            reason=data["reason"],
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, f"{change.number} proposed as a draft; submit it for review.")
    return redirect("deviations:change-detail", number=change.number)


#
# One change
#


@dataclasses.dataclass(frozen=True)
class Step:
    label: str
    state: str  # done, current or todo
    colour: str = ""


def lifecycle(change: ChangeControl) -> list[Step]:
    """The progress picture: the way forward, done up to where the change stands."""
    if change.status == ChangeStatus.REJECTED:
        return [
            Step(str(ChangeStatus.DRAFT.label), "done"),
            Step(str(ChangeStatus.IN_REVIEW.label), "done"),
            Step(str(ChangeStatus.REJECTED.label), "current", "block"),
        ]
    here = CHANGE_PATH.index(ChangeStatus(change.status))
    return [
        Step(
            str(status.label),
            "done" if index < here else "current" if index == here else "todo",
            CHANGE_BADGE[status] if index == here else "",
        )
        for index, status in enumerate(CHANGE_PATH)
    ]


@dataclasses.dataclass(frozen=True)
class Approval:
    who: str
    required: bool
    signature: ElectronicSignature | None
    valid: bool


def approvals(change: ChangeControl) -> list[Approval]:
    """QA's approval and the QP's, given (with whether the change still has the content signed,
    ES-03) or still due; a QP's is not required for a non-regulatory change."""
    current = content_hash(change)
    return [
        Approval(
            who,
            required,
            signature,
            signature is not None and signature.record_hash == current,
        )
        for who, required, signature in (
            (services.CAPACITY_LABELS[services.QA], True, change.qa_signature),
            (services.CAPACITY_LABELS[services.QP], change.regulatory, change.qp_signature),
        )
    ]


def _open_version_blocking(change: ChangeControl) -> MasterFileVersion | None:
    """For a master-file change still to be approved: the version already on its way, which
    would make its approval refused."""
    if (
        ChangeScope.MASTER_FILE not in change.scopes
        or change.master_file_draft_id is not None
        or change.product_id is None
        or change.status not in (ChangeStatus.DRAFT, ChangeStatus.IN_REVIEW)
    ):
        return None
    return (
        MasterFileVersion.objects.filter(
            master_file__product=change.product_id, status__in=sorted(OPEN_STATUSES)
        )
        .order_by("number")
        .first()
    )


def _detail_context(
    request: HttpRequest, change: ChangeControl, bound: dict[str, Any] | None = None
) -> dict[str, Any]:
    user = request_user(request)
    bound = bound or {}
    is_qa = services.is_qa(user)
    status = change.status
    today = timezone.localdate()
    tasks = list(change.tasks.select_related("owner", "done_by"))
    draft = change.master_file_draft
    signed_by = {s.signer_id for s in (change.qa_signature, change.qp_signature) if s is not None}
    in_review = status == ChangeStatus.IN_REVIEW
    approved = status == ChangeStatus.APPROVED
    editable = status == ChangeStatus.DRAFT and services.may_edit(user, change)
    scope_labels = dict(ChangeScope.choices)
    return {
        "change": change,
        "status_badge": CHANGE_BADGE[status],
        "steps": lifecycle(change),
        "scopes": [scope_labels.get(s, s) for s in change.scopes],
        "approvals": approvals(change),
        "approvals_due": [services.CAPACITY_LABELS[c] for c in services.approvals_due(change)],
        "review_signature": change_selectors.change_review_signature(change),
        "draft": draft,
        "draft_badge": VERSION_BADGE[draft.status] if draft is not None else "",
        "notification": change.regulatory_notification,
        "opens_draft": ChangeScope.MASTER_FILE in change.scopes and draft is None,
        "raises_notification": bool(set(change.scopes) & services.NOTIFIED_SCOPES)
        and change.regulatory_notification_id is None,
        "open_version": _open_version_blocking(change),
        "tasks": [(t, t.status == ActionStatus.OPEN and t.due_on < today) for t in tasks],
        "done_total": sum(1 for t in tasks if t.status == ActionStatus.DONE),
        "is_qa": is_qa,
        "may_edit": editable,
        "may_approve": in_review
        and user.pk not in signed_by
        and services.may_approve(user, change),
        "may_reject": in_review and (is_qa or services.is_qp(user)),
        "may_plan": approved and is_qa,
        "may_complete": {
            t.pk
            for t in tasks
            if approved and t.status == ActionStatus.OPEN and (is_qa or t.owner_id == user.pk)
        },
        "may_close": status == ChangeStatus.IMPLEMENTED and is_qa,
        "edit_form": bound.get("edit")
        or _change_form(
            request,
            auto_id="edit_%s",
            initial={
                "title": change.title,
                "description": change.description,
                "scopes": change.scopes,
                "product": change.product.code if change.product else None,
                "site": change.site.code if change.site else None,
                "risk_level": change.risk_level,
                "risk_assessment": change.risk_assessment,
                "regulatory_impact": change.regulatory_impact,
            },
        ),
        "step_form": bound.get("step") or TransitionForm(auto_id="step_%s"),
        "approve_sig": bound.get("approve_sig") or _approve_signature(request),
        "task_form": bound.get("task")
        or ChangeTaskForm(people=selectors.capa_owner_choices(change.site), auto_id="task_%s"),
        "done_form": bound.get("done") or ChangeTaskDoneForm(auto_id="done_%s"),
        "review_form": bound.get("review") or ChangeReviewForm(auto_id="review_%s"),
        "close_sig": bound.get("close_sig") or _close_signature(request),
    }


def _detail_again(
    request: HttpRequest, change: ChangeControl, bound: dict[str, Any], status: int
) -> HttpResponse:
    return render(
        request,
        "deviations/change_detail.html",
        _detail_context(request, change, bound),
        status=status,
    )


def _to_detail(change: ChangeControl, anchor: str = "") -> HttpResponse:
    response = redirect("deviations:change-detail", number=change.number)
    if anchor:
        response["Location"] += f"#{anchor}"
    return response


@login_required
@require_GET
def change_detail(request: HttpRequest, number: str) -> HttpResponse:
    change = _change_or_404(request, number)
    return render(request, "deviations/change_detail.html", _detail_context(request, change))


@login_required
@require_POST
def change_edit(request: HttpRequest, number: str) -> HttpResponse:
    change = _change_or_404(request, number)
    actor = request_user(request)
    form = _change_form(request, request.POST, auto_id="edit_%s")
    bound = {"edit": form}
    if not form.is_valid():
        return _detail_again(request, change, bound, _invalid(request, "The draft was not saved"))
    data = form.cleaned_data
    _done, refused = _run(
        request,
        lambda status: _detail_again(request, change, bound, status),
        lambda: services.change_update(
            actor=actor,
            change=change,
            reason=data["reason"],
            changes={name: data[name] for name in services.EDITABLE_FIELDS},
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, "Draft saved.")
    return _to_detail(change)


@login_required
@require_POST
def change_transition(request: HttpRequest, number: str, action: str) -> HttpResponse:
    """Submit for review, reject, or record as implemented: each with a reason."""
    change = _change_or_404(request, number)
    actor = request_user(request)
    step = REASON_STEPS.get(action)
    if step is None:
        raise Http404
    form = TransitionForm(request.POST, auto_id="step_%s")
    bound = {"step": form}
    if not form.is_valid():
        status = _invalid(request, f"{change.number} not moved on")
        return _detail_again(request, change, bound, status)
    reason = form.cleaned_data["reason"]
    call = {
        ChangeAction.SUBMIT: services.change_submit,
        ChangeAction.REJECT: services.change_reject,
        ChangeAction.IMPLEMENT: services.change_implement,
    }[step]
    _done, refused = _run(
        request,
        lambda status: _detail_again(request, change, bound, status),
        lambda: call(actor=actor, change=change, reason=reason),
    )
    if refused is not None:
        return refused
    messages.success(request, f"{change.number} {_STEP_DONE[step]}.")
    return _to_detail(change)


@login_required
@require_POST
def change_approve(request: HttpRequest, number: str) -> HttpResponse:
    """Sign the approval: QA's, or a QP's for a regulatory change."""
    change = _change_or_404(request, number)
    actor = request_user(request)
    sig = _approve_signature(request, request.POST)
    bound = {"approve_sig": sig}
    if not sig.is_valid():
        status = _invalid(request, f"{change.number} not approved")
        return _detail_again(request, change, bound, status)
    done, refused = _run(
        request,
        lambda status: _detail_again(request, change, bound, status),
        lambda: services.change_approve(
            actor=actor,
            change=change,
            credentials=sig.credentials(),
            reason=sig.cleaned_data["reason"],
        ),
        sig,
    )
    if refused is not None:
        return refused
    if done.status == ChangeStatus.APPROVED:
        messages.success(request, f"{change.number} approved.")
    else:
        due = ", ".join(services.CAPACITY_LABELS[c] for c in services.approvals_due(done))
        messages.success(request, f"Your approval is signed; still due: {due}.")
    return _to_detail(change, "approvals")


@login_required
@require_POST
def change_close(request: HttpRequest, number: str) -> HttpResponse:
    """Close after the post-implementation review, signed "reviewed" by QA."""
    change = _change_or_404(request, number)
    actor = request_user(request)
    review = ChangeReviewForm(request.POST, auto_id="review_%s")
    sig = _close_signature(request, request.POST)
    bound = {"review": review, "close_sig": sig}
    if not (review.is_valid() and sig.is_valid()):
        status = _invalid(request, f"{change.number} not closed")
        return _detail_again(request, change, bound, status)
    _done, refused = _run(
        request,
        lambda status: _detail_again(request, change, bound, status),
        lambda: services.change_close(
            actor=actor,
            change=change,
            review=review.cleaned_data["review"],
            credentials=sig.credentials(),
            reason=sig.cleaned_data["reason"],
        ),
        sig,
    )
    if refused is not None:
        return refused
    messages.success(request, f"{change.number} closed; the review is signed.")
    return _to_detail(change)


@login_required
@require_POST
def change_task_add(request: HttpRequest, number: str) -> HttpResponse:
    change = _change_or_404(request, number)
    actor = request_user(request)
    form = ChangeTaskForm(
        request.POST, people=selectors.capa_owner_choices(change.site), auto_id="task_%s"
    )
    bound = {"task": form}
    if not form.is_valid():
        return _detail_again(request, change, bound, _invalid(request, "No task added"))
    data = form.cleaned_data
    _done, refused = _run(
        request,
        lambda status: _detail_again(request, change, bound, status),
        lambda: services.change_task_add(
            actor=actor,
            change=change,
            description=data["description"],
            owner=data["owner"],
            due_on=data["due_on"],
            reason=data["reason"],
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, "Task added; its owner is told.")
    return _to_detail(change, "tasks")


@login_required
@require_POST
def change_task_done(request: HttpRequest, number: str, pk: int) -> HttpResponse:
    change = _change_or_404(request, number)
    actor = request_user(request)
    task = ChangeTask.objects.filter(change=change, pk=pk).first()
    if task is None:
        raise Http404
    form = ChangeTaskDoneForm(request.POST, auto_id="done_%s")
    bound = {"done": form}
    if not form.is_valid():
        return _detail_again(request, change, bound, _invalid(request, "Task not completed"))
    _done, refused = _run(
        request,
        lambda status: _detail_again(request, change, bound, status),
        lambda: services.change_task_complete(
            actor=actor, task=task, reason=form.cleaned_data["reason"]
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, "Task done.")
    return _to_detail(change, "tasks")
