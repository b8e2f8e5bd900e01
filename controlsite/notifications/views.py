"""The in-app notices page: a person's own notices, newest first, and marking them read."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from controlsite.accounts.http import request_user
from controlsite.notifications.models import Notification
from controlsite.notifications.services import notification_mark_read, notifications_mark_all_read

PAGE_SIZE = 50


def _own_notice(request: HttpRequest, pk: int) -> Notification:
    """Only the recipient's own notice; anyone else's is a 404, never a 403."""
    try:
        return Notification.objects.get(pk=pk, recipient=request_user(request))
    except Notification.DoesNotExist as exc:
        raise Http404 from exc


@login_required
def notification_list(request: HttpRequest) -> HttpResponse:
    user = request_user(request)
    unread_only = request.GET.get("show") == "unread"
    qs = Notification.objects.filter(recipient=user)
    if unread_only:
        qs = qs.filter(read_at__isnull=True)
    try:
        before = int(request.GET.get("before", ""))
    except ValueError:
        before = 0
    if before > 0:
        qs = qs.filter(pk__lt=before)
    notices = list(qs.order_by("-id")[: PAGE_SIZE + 1])
    older = notices[PAGE_SIZE - 1].pk if len(notices) > PAGE_SIZE else None
    context = {
        "notices": notices[:PAGE_SIZE],
        "unread_only": unread_only,
        "older": older,
        "paged": before > 0,
    }
    return render(request, "notifications/list.html", context)


@login_required
@require_POST
def notification_read(request: HttpRequest, pk: int) -> HttpResponse:
    notice = _own_notice(request, pk)
    notification_mark_read(notice=notice, reader=request_user(request))
    back = reverse("notifications:list")
    if request.POST.get("show") == "unread":
        back += "?show=unread"
    return redirect(f"{back}#notices")


@login_required
@require_POST
def notification_read_all(request: HttpRequest) -> HttpResponse:
    notifications_mark_all_read(reader=request_user(request))
    return redirect(reverse("notifications:list"))


@login_required
@require_POST
def notification_open(request: HttpRequest, pk: int) -> HttpResponse:
    """Mark the notice read and follow its link (only to a page of this site)."""
    notice = _own_notice(request, pk)
    notification_mark_read(notice=notice, reader=request_user(request))
    safe = url_has_allowed_host_and_scheme(
        notice.link, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return redirect(notice.link if notice.link and safe else "notifications:list")
