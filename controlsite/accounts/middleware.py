"""Session security: idle timeout (ES-06 "continuous session"), locked accounts, required MFA."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib import auth, messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode

from controlsite.accounts import permissions
from controlsite.accounts.services import account_is_locked, logout_record

LAST_ACTIVITY_KEY = "controlsite_last_activity"
SIGNED_IN_SESSION_KEY = "controlsite_signed_in_session"


def end_session(request: HttpRequest, why: str) -> None:
    user = request.user
    if user.is_authenticated:
        logout_record(user=user, why=why)
    auth.logout(request)


class SessionSecurityMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if user.is_authenticated:
            response = self._check(request)
            if response is not None:
                return response
        return self.get_response(request)

    def _check(self, request: HttpRequest) -> HttpResponse | None:
        user = request.user
        now = time.time()
        last = request.session.get(LAST_ACTIVITY_KEY)
        why = ""
        if last is not None and now - float(last) > settings.IDLE_TIMEOUT_SECONDS:
            minutes = settings.IDLE_TIMEOUT_SECONDS // 60
            why = f"Signed out after {minutes} minutes without activity."
        elif account_is_locked(user) or not user.is_active:  # type: ignore[arg-type]
            why = "Signed out: the account is locked or inactive."
        elif permissions.mfa_required(user) and not user.is_verified():  # type: ignore[attr-defined]
            why = "Signed out: your role now requires a second factor. Sign in again to enrol."
        if why:
            end_session(request, why)
            if request.path.startswith("/api/"):
                return None  # DRF answers 401/403 as problem+json for the now-anonymous user
            messages.warning(request, why)
            target = f"{reverse('accounts:login')}?{urlencode({'next': request.get_full_path()})}"
            return redirect(target)
        request.session[LAST_ACTIVITY_KEY] = now
        if getattr(user, "must_change_password", False) and not _may_skip_password_change(request):
            # ES-07: a password someone else chose is changed before anything else is done.
            return redirect("accounts:password_change")
        return None


def _may_skip_password_change(request: HttpRequest) -> bool:
    allowed = (reverse("accounts:password_change"), reverse("accounts:logout"), "/static/")
    return request.path.startswith(allowed) or request.path.startswith("/api/")
