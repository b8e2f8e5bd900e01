"""The shell's own pages: home dashboard, health, error pages."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from controlsite import dashboard
from controlsite.api.errors import api_not_found, api_server_error
from controlsite.background.models import WorkerHeartbeat


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "controlsite/home.html", {"panels": dashboard.panels_for(request)})


@never_cache
def health(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and compose: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    beat = WorkerHeartbeat.objects.order_by("-received_at").first()
    return JsonResponse(
        {
            "status": "ok",
            "database": connection.vendor,
            "last_worker_heartbeat": beat.received_at.isoformat() if beat else None,
        }
    )


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return api_not_found(request, exception)
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return api_server_error(request)
    return render(request, "500.html", status=500)
