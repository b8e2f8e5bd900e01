"""The kernel's own dashboard panels."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from controlsite import dashboard
from controlsite.accounts import permissions
from controlsite.accounts.roles import Capability
from controlsite.audit.models import AuditEvent, AuditReview
from controlsite.background.models import WorkerHeartbeat
from controlsite.signatures.models import ElectronicSignature


def _recent_events(request: HttpRequest) -> dict[str, Any] | None:
    if not permissions.user_can(request.user, Capability.VIEW_AUDIT_TRAIL):
        return None
    last_review = AuditReview.objects.order_by("-to_seq").first()
    newest = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    reviewed = last_review.to_seq if last_review else 0
    return {
        "events": list(AuditEvent.objects.order_by("-seq")[:8]),
        "unreviewed": max(newest - reviewed, 0),
        "newest": newest,
        "reviewed_pct": round(100 * reviewed / newest) if newest else 100,
        "last_review": last_review,
    }


def _my_signatures(request: HttpRequest) -> dict[str, Any] | None:
    if not permissions.user_can(request.user, Capability.SIGN):
        return None
    return {
        "signatures": list(
            ElectronicSignature.objects.filter(signer_id=request.user.pk).order_by("-signed_at")[:5]
        )
    }


def _workers(request: HttpRequest) -> dict[str, Any] | None:
    if not (
        permissions.user_is_administrator(request.user)
        or permissions.user_can(request.user, Capability.VIEW_AUDIT_TRAIL)
    ):
        return None
    return {"heartbeat": WorkerHeartbeat.objects.order_by("-received_at").first()}


def register_kernel_panels() -> None:
    dashboard.register(
        dashboard.Panel(
            "audit", "Audit trail", "controlsite/panels/_audit.html", _recent_events, 10
        )
    )
    dashboard.register(
        dashboard.Panel(
            "signatures",
            "Your signatures",
            "controlsite/panels/_signatures.html",
            _my_signatures,
            20,
        )
    )
    dashboard.register(
        dashboard.Panel(
            "workers", "Background work", "controlsite/panels/_workers.html", _workers, 90
        )
    )
