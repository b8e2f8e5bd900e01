"""Account administration for the system administrator, and API tokens for their owners.

Every change goes through `accounts.services` with a reason, so each is an audit event (AT-07).
"""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from controlsite.accounts import permissions, services
from controlsite.accounts.forms import (
    PasswordResetForm,
    ReasonForm,
    RoleGrantForm,
    TokenCreateForm,
    UserCreateForm,
)
from controlsite.accounts.http import request_user
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability, Role
from controlsite.accounts.selectors import role_grants_of, users_for_administration
from controlsite.api.models import ApiToken, TokenScope
from controlsite.api.tokens import api_token_create, api_token_revoke
from controlsite.errors import ApplicationError


def _administrator(request: HttpRequest) -> User:
    user = request_user(request)
    if not permissions.user_can(user, Capability.MANAGE_ACCOUNTS):
        raise PermissionDenied
    return user


def _errors(form: object) -> str:
    errors = getattr(form, "errors", {})
    return " ".join(f"{name}: {msgs[0]}" for name, msgs in errors.items())


@login_required
def user_list(request: HttpRequest) -> HttpResponse:
    _administrator(request)
    query = request.GET.get("q", "").strip()[:100]
    return render(
        request,
        "accounts/users.html",
        {
            "users": users_for_administration(query=query)[:200],
            "q": query,
            "form": UserCreateForm(),
        },
    )


@login_required
@require_POST
def user_create(request: HttpRequest) -> HttpResponse:
    admin = _administrator(request)
    form = UserCreateForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            user = services.user_create(
                username=data["username"],
                first_name=data["first_name"],
                last_name=data["last_name"],
                email=data["email"],
                password=data["temporary_password"],
                created_by=admin,
                reason=data["reason"],
            )
        except ValidationError as exc:
            messages.error(request, "Not created: " + " ".join(exc.messages))
        except ApplicationError as exc:
            messages.error(request, f"Not created: {exc.message}")
        else:
            messages.success(request, f"Account {user.username} created. Now grant its roles.")
            return redirect("accounts:user_detail", pk=user.pk)
    else:
        messages.error(request, "Not created: " + _errors(form))
    return redirect("accounts:users")


@login_required
def user_detail(request: HttpRequest, pk: int) -> HttpResponse:
    _administrator(request)
    subject = get_object_or_404(User, pk=pk)
    return render(
        request,
        "accounts/user_detail.html",
        {
            "subject": subject,
            "subject_roles": sorted(permissions.user_roles(subject), key=lambda r: r.label),
            "grants": role_grants_of(subject),
            "locked": services.account_is_locked(subject),
            # One prefix per form, so each field id on the page is unique.
            "grant_form": RoleGrantForm(prefix="grant"),
            "revoke_form": ReasonForm(prefix="revoke"),
            "unlock_form": ReasonForm(prefix="unlock"),
            "active_form": ReasonForm(prefix="deactivate" if subject.is_active else "reactivate"),
            "password_form": PasswordResetForm(prefix="password"),
            "roles": Role.choices,
        },
    )


@login_required
@require_POST
def user_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """One POST endpoint per change: grant, revoke, unlock, deactivate, reactivate, password."""
    admin = _administrator(request)
    subject = get_object_or_404(User, pk=pk)
    form: ReasonForm
    if action == "grant":
        form = RoleGrantForm(request.POST, prefix=action)
    elif action == "password":
        form = PasswordResetForm(request.POST, prefix=action)
    elif action in {"revoke", "unlock", "deactivate", "reactivate"}:
        form = ReasonForm(request.POST, prefix=action)
    else:
        raise PermissionDenied
    if not form.is_valid():
        messages.error(request, "Not changed: " + _errors(form))
        return redirect("accounts:user_detail", pk=pk)
    reason = form.cleaned_data["reason"]
    try:
        if action == "grant":
            services.role_grant(
                user=subject,
                role=Role(form.cleaned_data["role"]),
                granted_by=admin,
                reason=reason,
                expires_at=form.cleaned_data.get("expires_at"),
            )
        elif action == "revoke":
            role = request.POST.get("revoke-role", "")
            if role not in Role.values:
                raise ApplicationError("Choose a role to revoke.", code="invalid_role")
            services.role_revoke(user=subject, role=Role(role), revoked_by=admin, reason=reason)
        elif action == "unlock":
            services.user_unlock(user=subject, unlocked_by=admin, reason=reason)
        elif action in {"deactivate", "reactivate"}:
            services.user_set_active(
                user=subject, active=action == "reactivate", changed_by=admin, reason=reason
            )
        else:
            services.user_reset_password(
                user=subject,
                temporary_password=form.cleaned_data["temporary_password"],
                reset_by=admin,
                reason=reason,
            )
    except ValidationError as exc:
        messages.error(request, "Not changed: " + " ".join(exc.messages))
    except ApplicationError as exc:
        messages.error(request, f"Not changed: {exc.message}")
    else:
        messages.success(request, "Done; the change is in the audit trail.")
    return redirect("accounts:user_detail", pk=pk)


#
# API tokens (design §6)
#


@login_required
def token_create(request: HttpRequest) -> HttpResponse:
    user = request_user(request)
    if not permissions.user_can(user, Capability.MANAGE_OWN_TOKENS):
        raise PermissionDenied
    form = TokenCreateForm(request.POST or None)
    secret = ""
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        days = data.get("expires_in_days")
        try:
            token, secret = api_token_create(
                user=user,
                name=data["name"],
                scope=TokenScope(data["scope"]),
                created_by=user,
                expires_at=timezone.now() + dt.timedelta(days=days) if days else None,
                site_codes=[c for c in data["site_codes"].split(",") if c.strip()],
            )
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            return render(
                request, "accounts/token_created.html", {"token": token, "secret": secret}
            )
    return render(request, "accounts/token_form.html", {"form": form})


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    user = request_user(request)
    token = get_object_or_404(ApiToken, pk=pk, user=user)
    try:
        api_token_revoke(token=token, revoked_by=user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Token {token.name} revoked.")
    return redirect("accounts:account")
