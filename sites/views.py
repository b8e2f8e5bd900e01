from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@login_required
def index(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "layout/area.html",
        {
            "area_title": "Spoke sites",
            "area_description": (
                "Spoke sites: the register, their lifecycle from proposal to cessation, "
                "memberships, equipment and site audits."
            ),
        },
    )


@login_required
def detail(request: HttpRequest, code: str) -> HttpResponse:
    from django.http import Http404

    from sites.models import Site
    from sites.selectors import site_get_for_user

    try:
        site = site_get_for_user(user=request.user, code=code)
    except Site.DoesNotExist as exc:
        raise Http404 from exc
    return render(
        request,
        "layout/area.html",
        {"area_title": str(site), "area_description": site.get_status_display()},
    )
