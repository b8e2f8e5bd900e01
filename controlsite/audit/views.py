"""The audit pages: the whole trail with filters, one record's trail, and the signed review."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from controlsite.accounts import permissions
from controlsite.accounts.http import request_user
from controlsite.accounts.roles import Capability
from controlsite.audit.forms import AuditFilterForm, AuditReviewForm
from controlsite.audit.models import AuditEvent
from controlsite.audit.review import audit_review_next_range, audit_review_sign
from controlsite.audit.selectors import audit_event_list, record_for_trail, record_trail
from controlsite.errors import ApplicationError, PermissionRefusedError
from controlsite.signatures.forms import SignatureForm
from controlsite.signatures.models import SignatureMeaning
from controlsite.signatures.services import signatures_for

PAGE_SIZE = 50


def _require_audit_reader(request: HttpRequest) -> None:
    if not permissions.user_can(request.user, Capability.VIEW_AUDIT_TRAIL):
        raise PermissionDenied


@login_required
def event_list(request: HttpRequest) -> HttpResponse:
    _require_audit_reader(request)
    form = AuditFilterForm(request.GET or None)
    filters_valid = not form.is_bound or form.is_valid()
    events: list[AuditEvent] = []
    if filters_valid:
        # A filter that cannot be read shows no rows, never the unfiltered trail.
        qs = audit_event_list(user=request.user, filters=form.filters())
        before = form.cleaned_data.get("before") if form.is_bound else None
        if before:
            qs = qs.filter(seq__lt=before)
        events = list(qs[: PAGE_SIZE + 1])
    has_more = len(events) > PAGE_SIZE
    events = events[:PAGE_SIZE]
    query = request.GET.copy()
    query.pop("before", None)
    if has_more:
        query["before"] = str(events[-1].seq)
    from_seq, to_seq = audit_review_next_range()
    context = {
        "form": form,
        "filters_valid": filters_valid,
        "events": events,
        "next_query": query.urlencode() if has_more else "",
        "review_form": AuditReviewForm(),
        "signature_form": SignatureForm(request=request, meaning=SignatureMeaning.REVIEWED),
        "can_review": permissions.user_can(request.user, Capability.REVIEW_AUDIT_TRAIL),
        "unreviewed": max(to_seq - from_seq + 1, 0),
    }
    template = (
        "audit/partials/_event_rows.html"
        if request.htmx and not request.htmx.boosted  # type: ignore[attr-defined]
        else "audit/event_list.html"
    )
    return render(request, template, context)


@login_required
def record_trail_view(request: HttpRequest, record_type: str, record_id: str) -> HttpResponse:
    try:
        record = record_for_trail(user=request.user, record_type=record_type, record_id=record_id)
    except PermissionRefusedError as exc:
        raise PermissionDenied from exc
    except (LookupError, ObjectDoesNotExist, ValueError) as exc:
        raise Http404 from exc
    return render(
        request,
        "audit/record_trail.html",
        {
            "record": record,
            "record_type": record_type,
            "trail": record_trail(record),
            # A record may describe itself for this page: `trail_facts()` → [(label, value)].
            "facts": record.trail_facts() if hasattr(record, "trail_facts") else [],
            "signatures": signatures_for(record),
        },
    )


@login_required
@require_POST
def review_sign(request: HttpRequest) -> HttpResponse:
    if not permissions.user_can(request.user, Capability.REVIEW_AUDIT_TRAIL):
        raise PermissionDenied
    reviewer = request_user(request)
    review_form = AuditReviewForm(request.POST)
    signature_form = SignatureForm(request.POST, request=request, meaning=SignatureMeaning.REVIEWED)
    if review_form.is_valid() and signature_form.is_valid():
        try:
            review = audit_review_sign(
                reviewer=reviewer,
                credentials=signature_form.credentials(),
                comment=review_form.cleaned_data["comment"],
                reason=signature_form.cleaned_data["reason"],
            )
        except ApplicationError as exc:
            messages.error(request, f"Not signed: {exc.message}")
        else:
            signature_form.mark_signed()
            messages.success(
                request,
                f"Audit trail reviewed and signed: events #{review.from_seq}–#{review.to_seq}, "
                f"chain {'intact' if review.chain_intact else 'BROKEN'}.",
            )
            return redirect(
                "audit:record", record_type="controlsite.auditreview", record_id=review.pk
            )
    else:
        errors = [*review_form.errors.values(), *signature_form.errors.values()]
        messages.error(request, "Not signed: " + " ".join(str(e[0]) for e in errors))
    return redirect("audit:events")
