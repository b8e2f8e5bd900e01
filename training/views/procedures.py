"""The procedure register (TR-03): every controlled SOP with its versions, their status and
files; QA registers procedures and issues new versions (signed "approved"). Everyone signed in
reads the register and downloads the files: staff must find their SOPs."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Prefetch
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from controlsite.accounts import permissions
from controlsite.accounts.http import request_user
from controlsite.accounts.roles import Capability
from controlsite.errors import ConflictError
from controlsite.signatures.models import SignatureMeaning
from training import selectors, services
from training.choices import VERSION_BADGE, VersionStatus
from training.forms import ProcedureForm, VersionIssueForm, signing_form
from training.models import Procedure, ProcedureVersion
from training.views.base import invalid, run


def _is_qa(user: Any) -> bool:
    return permissions.user_can(user, Capability.MANAGE_QUALITY_RECORDS)


def _procedure_or_404(request: HttpRequest, number: str) -> Procedure:
    procedure = selectors.procedures_visible_to(request.user).filter(number=number).first()
    if procedure is None:
        raise Http404("No such procedure")
    return procedure


#
# The register
#


def _index_context(request: HttpRequest, form: ProcedureForm | None = None) -> dict[str, Any]:
    procedures = list(
        selectors.procedures_visible_to(request.user)
        .annotate(version_count=Count("versions"))
        .prefetch_related(
            Prefetch(
                "versions",
                queryset=ProcedureVersion.objects.exclude(status=VersionStatus.SUPERSEDED).order_by(
                    "-number"
                ),
                to_attr="live_versions",
            )
        )
        .order_by("number")
    )
    rows = []
    for procedure in procedures:
        live: list[ProcedureVersion] = procedure.live_versions
        effective = next((v for v in live if v.status == VersionStatus.EFFECTIVE), None)
        issued = next((v for v in live if v.status == VersionStatus.ISSUED), None)
        rows.append({"procedure": procedure, "effective": effective, "issued": issued})
    is_qa = _is_qa(request.user)
    return {
        "tab": "procedures",
        "rows": rows,
        "is_qa": is_qa,
        "form": form or (ProcedureForm() if is_qa else None),
        "badges": VERSION_BADGE,
    }


@login_required
@require_GET
def procedure_index(request: HttpRequest) -> HttpResponse:
    return render(request, "training/procedures.html", _index_context(request))


@login_required
@require_POST
def procedure_create(request: HttpRequest) -> HttpResponse:
    actor = request_user(request)
    form = ProcedureForm(request.POST)

    def again(status: int) -> HttpResponse:
        return render(
            request, "training/procedures.html", _index_context(request, form), status=status
        )

    if not form.is_valid():
        return again(invalid(request, "The procedure was not registered"))
    procedure, refused = run(
        request,
        again,
        lambda: services.procedure_create(
            actor=actor,
            number=form.cleaned_data["number"],
            title=form.cleaned_data["title"],
            due_days=form.cleaned_data["due_days"],
            reason=form.cleaned_data["reason"],
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, f"{procedure.number} registered; issue its first version.")
    return redirect("training:procedure-detail", number=procedure.number)


#
# One procedure
#


def _issue_signature(request: HttpRequest, data: Any = None) -> Any:
    return signing_form(request, SignatureMeaning.APPROVED, "issue", data)


def _detail_context(
    request: HttpRequest, procedure: Procedure, bound: dict[str, Any] | None = None
) -> dict[str, Any]:
    bound = bound or {}
    versions = list(
        procedure.versions.select_related("approval_signature", "created_by").order_by("-number")
    )
    is_qa = _is_qa(request.user)
    item = getattr(procedure, "training_item", None)
    return {
        "tab": "procedures",
        "procedure": procedure,
        "item": item,
        "versions": [
            {
                "version": v,
                "badge": VERSION_BADGE[v.status],
                "file_name": (v.file.name or "").rsplit("/", 1)[-1],
            }
            for v in versions
        ],
        "pending": next((v for v in versions if v.status == VersionStatus.ISSUED), None),
        "is_qa": is_qa,
        "issue_form": bound.get("issue") or (VersionIssueForm() if is_qa else None),
        "issue_sig": bound.get("issue_sig") or (_issue_signature(request) if is_qa else None),
    }


@login_required
@require_GET
def procedure_detail(request: HttpRequest, number: str) -> HttpResponse:
    procedure = _procedure_or_404(request, number)
    return render(request, "training/procedure_detail.html", _detail_context(request, procedure))


@login_required
@require_POST
def version_issue(request: HttpRequest, number: str) -> HttpResponse:
    """QA issues the next version with its file, signed "approved" (TR-03): on its effective
    date it supersedes the one in force and everyone it affects is assigned to read it."""
    procedure = _procedure_or_404(request, number)
    actor = request_user(request)
    form = VersionIssueForm(request.POST, request.FILES)
    sig = _issue_signature(request, request.POST)
    bound = {"issue": form, "issue_sig": sig}

    def again(status: int) -> HttpResponse:
        return render(
            request,
            "training/procedure_detail.html",
            _detail_context(request, procedure, bound),
            status=status,
        )

    form_ok, sig_ok = form.is_valid(), sig.is_valid()
    if not (form_ok and sig_ok):
        return again(invalid(request, "No version was issued"))
    version, refused = run(
        request,
        again,
        lambda: services.procedure_version_issue(
            actor=actor,
            procedure=procedure,
            effective_on=form.cleaned_data["effective_on"],
            change_summary=form.cleaned_data["change_summary"],
            upload=form.cleaned_data["file"],
            credentials=sig.credentials(),
            reason=sig.cleaned_data["reason"],
        ),
        sig,
    )
    if refused is not None:
        return refused
    state = "in force now" if version.status == VersionStatus.EFFECTIVE else "issued"
    messages.success(
        request, f"{version} {state} and signed; the people it affects are asked to read it."
    )
    return redirect("training:procedure-detail", number=procedure.number)


@login_required
@require_GET
def version_file(request: HttpRequest, number: str, version: int) -> HttpResponseBase:
    """A version's file, to whoever may read the register (never served from /media/)."""
    procedure = _procedure_or_404(request, number)
    found = procedure.versions.filter(number=version).first()
    if found is None or not found.file:
        raise Http404("No such version")
    try:
        stored = selectors.version_file_checked(found)  # a changed or missing file is refused
    except ConflictError as exc:
        messages.error(request, exc.message)
        return redirect("training:procedure-detail", number=procedure.number)
    name = stored.rsplit("/", 1)[-1] or "procedure"
    return FileResponse(found.file.storage.open(stored, "rb"), as_attachment=False, filename=name)
