"""The audit pages: the whole trail with filters, one record's trail, and the signed review."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
from collections.abc import Iterator

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from controlsite.accounts import permissions
from controlsite.accounts.http import request_user
from controlsite.accounts.roles import Capability
from controlsite.audit.events import KernelEvent, event_label
from controlsite.audit.forms import AuditFilterForm, AuditReviewForm
from controlsite.audit.models import AuditEvent
from controlsite.audit.review import audit_review_next_range, audit_review_sign
from controlsite.audit.selectors import audit_event_list, record_for_trail, record_trail
from controlsite.audit.services import audit_event_record
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
    export_query = query.urlencode()
    if has_more:
        query["before"] = str(events[-1].seq)
    from_seq, to_seq = audit_review_next_range()
    context = {
        "form": form,
        "filters_valid": filters_valid,
        "events": events,
        "next_query": query.urlencode() if has_more else "",
        "export_query": export_query,
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


class _Echo:
    """A file-like object whose write() hands the line back, for streaming CSV."""

    def write(self, value: str) -> str:
        return value


EXPORT_COLUMNS = [
    "seq",
    "occurred_at_utc",
    "event_type",
    "event",
    "actor_username",
    "record_type",
    "record_id",
    "record",
    "site_code",
    "reason",
    "details",
    "request_id",
    "ip",
    "signature_id",
    "prev_hash",
    "hash",
]


@login_required
def event_export(request: HttpRequest) -> HttpResponseBase:
    """The filtered trail as CSV, with every row's hashes so the chain can be checked offline
    (AT-05, DI-07). The export itself is an audit event."""
    _require_audit_reader(request)
    form = AuditFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        return HttpResponse("The filters cannot be read.", status=400, content_type="text/plain")
    filters = form.filters()
    audit_event_record(
        event_type=KernelEvent.AUDIT_EXPORTED,
        extra={k: str(v) for k, v in dataclasses.asdict(filters).items() if v},
        reason="audit trail exported as CSV",
    )
    rows = audit_event_list(user=request.user, filters=filters).order_by("seq")
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow(EXPORT_COLUMNS)
        for e in rows.iterator(chunk_size=2000):
            yield writer.writerow(
                [
                    e.seq,
                    e.occurred_at.astimezone(dt.UTC).isoformat(),
                    e.event_type,
                    event_label(e.event_type),
                    e.actor_username,
                    e.target_type,
                    e.target_id,
                    e.target_repr,
                    e.site_code,
                    e.reason,
                    json.dumps(e.extra_data, sort_keys=True),
                    e.request_id,
                    e.ip or "",
                    e.signature_id or "",
                    e.prev_hash,
                    e.hash,
                ]
            )

    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-trail-{stamp}.csv"'
    return response


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
