"""Login with lockout and TOTP, logout, enrolment, password change."""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib import auth, messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django_otp import login as otp_login

from controlsite.accounts import mfa, permissions
from controlsite.accounts.forms import LoginForm, OtpForm, PasswordChangeForm
from controlsite.accounts.http import request_user
from controlsite.accounts.middleware import LAST_ACTIVITY_KEY, end_session
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability
from controlsite.accounts.services import (
    account_is_locked,
    authentication_failure_register,
    login_succeeded,
    password_change,
)
from controlsite.audit.events import KernelEvent

PENDING_USER_KEY = "controlsite_pending_user"
PENDING_NEXT_KEY = "controlsite_pending_next"
PENDING_AT_KEY = "controlsite_pending_at"
PENDING_SECONDS = 300
INVALID_LOGIN = "The username or password is not correct."


def _safe_next(request: HttpRequest, candidate: str | None) -> str:
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse(settings.LOGIN_REDIRECT_URL)


def _pending_user(request: HttpRequest) -> User | None:
    pk = request.session.get(PENDING_USER_KEY)
    started = request.session.get(PENDING_AT_KEY, 0)
    if pk is None or time.time() - float(started) > PENDING_SECONDS:
        return None
    return User.objects.filter(pk=pk, is_active=True).first()


def _complete_login(request: HttpRequest, user: User, *, device: object | None) -> HttpResponse:
    next_url = request.session.get(PENDING_NEXT_KEY)
    auth.login(request, user, backend="controlsite.accounts.backends.LockoutAwareBackend")
    if device is not None:
        otp_login(request, device)
    request.session[LAST_ACTIVITY_KEY] = time.time()
    login_succeeded(user=user, mfa=device is not None)
    if user.must_change_password:
        messages.info(request, "Choose a new password before you continue.")
        return redirect("accounts:password_change")
    return redirect(_safe_next(request, next_url))


@never_cache
def login_view(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect(_safe_next(request, request.GET.get("next")))
    form = LoginForm(request.POST or None)
    error = ""
    if request.method == "POST" and form.is_valid():
        username = form.cleaned_data["username"]
        user = auth.authenticate(request, username=username, password=form.cleaned_data["password"])
        if user is None:
            known = User.objects.filter(username=username).first()
            if known is not None and account_is_locked(known):
                error = (
                    "This account is locked after repeated failed attempts. "
                    "Ask a system administrator to unlock it, or try again later."
                )
                extra = {"locked": True}
            else:
                error = INVALID_LOGIN
                extra = {}
            locked_now = authentication_failure_register(
                event_type=KernelEvent.LOGIN_FAILED,
                username=username,
                user=known,
                extra=extra,
                reason="wrong username or password" if not extra else "attempt on locked account",
            )
            if locked_now:
                error = (
                    "Too many failed attempts: this account is now locked. "
                    "A system administrator has been told."
                )
        else:
            if not isinstance(user, User):
                raise PermissionDenied
            request.session.cycle_key()
            request.session[PENDING_USER_KEY] = user.pk
            request.session[PENDING_AT_KEY] = time.time()
            request.session[PENDING_NEXT_KEY] = request.POST.get("next") or request.GET.get(
                "next", ""
            )
            device = mfa.confirmed_device(user)
            if device is not None:
                return redirect("accounts:mfa_verify")
            if permissions.mfa_required(user):
                return redirect("accounts:mfa_enrol")
            return _complete_login(request, user, device=None)
    return render(
        request,
        "accounts/login.html",
        {
            "form": form,
            "error": error,
            "next": request.GET.get("next", ""),
            "lockout_threshold": settings.LOCKOUT_THRESHOLD,
        },
    )


@never_cache
def mfa_verify_view(request: HttpRequest) -> HttpResponse:
    user = _pending_user(request)
    if user is None:
        return redirect("accounts:login")
    device = mfa.confirmed_device(user)
    if device is None:
        return redirect("accounts:mfa_enrol")
    form = OtpForm(request.POST or None)
    error = ""
    if request.method == "POST" and form.is_valid():
        if account_is_locked(user):
            error = "This account is locked."
        elif mfa.verify_code(device, form.cleaned_data["otp"]):
            return _complete_login(request, user, device=device)
        else:
            error = "The code is not correct, or was already used."
            if authentication_failure_register(
                event_type=KernelEvent.OTP_FAILED,
                username=user.get_username(),
                user=user,
                reason="wrong authenticator code at login",
            ):
                error = "Too many failed attempts: this account is now locked."
    return render(
        request, "accounts/mfa_verify.html", {"form": form, "error": error, "pending": user}
    )


@never_cache
def mfa_enrol_view(request: HttpRequest) -> HttpResponse:
    """Enrol a TOTP authenticator: during login for a role that requires it, or from the
    account page for anyone who wants one."""
    during_login = not request.user.is_authenticated
    if during_login:
        pending = _pending_user(request)
        if pending is None:
            return redirect("accounts:login")
        user = pending
    else:
        user = request_user(request)
        if mfa.confirmed_device(user) is not None and not request.GET.get("replace"):
            messages.info(request, "You already have an authenticator enrolled.")
            return redirect("accounts:account")
    device = mfa.pending_device(user)
    form = OtpForm(request.POST or None)
    error = ""
    if request.method == "POST" and form.is_valid():
        if mfa.enrol_confirm(user=user, device=device, code=form.cleaned_data["otp"]):
            if during_login:
                return _complete_login(request, user, device=device)
            otp_login(request, device)
            messages.success(request, "Authenticator enrolled.")
            return redirect("accounts:account")
        error = "The code is not correct. Check your device's clock and try the next code."
    return render(
        request,
        "accounts/mfa_enrol.html",
        {
            "form": form,
            "error": error,
            "qr_svg": mfa.qr_svg(device),
            "secret": _base32(device),
            "required": permissions.mfa_required(user),
            "pending": user,
        },
    )


def _base32(device: object) -> str:
    import base64

    key: bytes = device.bin_key  # type: ignore[attr-defined]
    return base64.b32encode(key).decode().rstrip("=")


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    end_session(request, "Signed out by the user.")
    messages.info(request, "You are signed out.")
    return redirect("accounts:login")


@login_required
def account_view(request: HttpRequest) -> HttpResponse:
    user = request_user(request)
    from controlsite.api.models import ApiToken

    return render(
        request,
        "accounts/account.html",
        {
            "device": mfa.confirmed_device(user),
            "mfa_required": permissions.mfa_required(user),
            "tokens": ApiToken.objects.filter(user=user).order_by("-created_at")[:50],
            "can_create_tokens": permissions.user_can(user, Capability.MANAGE_OWN_TOKENS),
            "now": timezone.now(),
        },
    )


@login_required
def password_change_view(request: HttpRequest) -> HttpResponse:
    user = request_user(request)
    form = PasswordChangeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if not user.check_password(form.cleaned_data["current_password"]):
            form.add_error("current_password", "The current password is not correct.")
        else:
            try:
                password_change(user=user, new_password=form.cleaned_data["new_password"])
            except ValidationError as exc:
                form.add_error("new_password", exc)
            else:
                auth.update_session_auth_hash(request, user)
                messages.success(request, "Your password was changed.")
                return redirect("home")
    return render(request, "accounts/password_change.html", {"form": form})
