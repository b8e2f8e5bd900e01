"""Accounts: creating users, granting roles, authenticating, locking (ES-07, ES-08, AT-07).

Every function here writes the audit trail for what it changes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from controlsite.accounts import permissions
from controlsite.accounts.models import RoleGrant, User
from controlsite.accounts.roles import EXCLUSIVE_ROLES, Capability, Role
from controlsite.audit.context import audit_context
from controlsite.audit.events import (
    FAILED_AUTHENTICATION_EVENTS,
    LOCKOUT_RESET_EVENTS,
    KernelEvent,
)
from controlsite.audit.models import AuditEvent
from controlsite.audit.services import audit_event_record, record_label
from controlsite.errors import ApplicationError, ConflictError, PermissionRefusedError
from controlsite.notifications.services import notify

#
# Users and roles
#


def _require_account_manager(actor: User | None, reason: str | None = None) -> None:
    """Only an administrator changes accounts, and always says why (AT-03, AT-07).

    `None` as the actor is the system itself (a management command run on the host).
    """
    if actor is not None and not permissions.user_can(actor, Capability.MANAGE_ACCOUNTS):
        raise PermissionRefusedError("Only a system administrator manages accounts.")
    if reason is not None and not reason.strip():
        raise ApplicationError("A reason is required.", code="reason_required")


def user_create(
    *,
    username: str,
    first_name: str,
    last_name: str,
    email: str = "",
    password: str | None = None,
    created_by: User | None,
    reason: str,
    must_change_password: bool | None = None,
    validate: bool = True,
) -> User:
    """Create an account. A password set by someone else must be changed at first login (ES-07)."""
    _require_account_manager(created_by, reason)
    if User.objects.filter(username__iexact=username).exists():
        raise ConflictError(f"The username {username!r} is taken.", code="username_taken")
    user = User(username=username, first_name=first_name, last_name=last_name, email=email)
    if password is not None:
        if validate:
            validate_password(password, user)
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.must_change_password = (
        (created_by is not None) if must_change_password is None else must_change_password
    )
    with transaction.atomic(), audit_context(reason=reason):
        user.save()
        audit_event_record(
            event_type=KernelEvent.USER_CREATED, actor=created_by, target=user, reason=reason
        )
    return user


def role_grant(
    *,
    user: User,
    role: Role,
    granted_by: User | None,
    reason: str,
    expires_at: dt.datetime | None = None,
) -> RoleGrant:
    """Grant a role. The administrator role is never combined with another (DI-03)."""
    _require_account_manager(granted_by, reason)
    if granted_by is not None and granted_by.pk == user.pk:
        raise PermissionRefusedError("Nobody grants roles to themselves.", code="self_grant")
    with transaction.atomic(), audit_context(reason=reason):
        User.objects.select_for_update().get(pk=user.pk)
        held = set(
            RoleGrant.objects.filter(permissions.live_grants_q(), user=user).values_list(
                "role", flat=True
            )
        )
        if role in held:
            raise ConflictError(f"{user} already holds {role.label}.", code="role_already_held")
        if (role in EXCLUSIVE_ROLES and held) or (held & set(EXCLUSIVE_ROLES)):
            raise ConflictError(
                "The system administrator role cannot be combined with any other role "
                "(an administrator can never sign, approve or release).",
                code="segregation_of_duties",
            )
        # A revoked-but-live-by-date row would clash with the partial unique index only if
        # unrevoked, so a lapsed grant is closed before the new one opens.
        for lapsed in RoleGrant.objects.filter(user=user, role=role, revoked_at__isnull=True):
            lapsed.revoked_at = timezone.now()
            lapsed.save(update_fields=["revoked_at"])
        grant = RoleGrant.objects.create(
            user=user, role=role, granted_by=granted_by, expires_at=expires_at
        )
        audit_event_record(
            event_type=KernelEvent.ROLE_GRANTED,
            actor=granted_by,
            target=user,
            extra={
                "role": role.value,
                "old": sorted(held),
                "new": sorted(held | {role.value}),
                "expires_at": expires_at,
            },
            reason=reason,
        )
    permissions.forget_roles(user)
    return grant


def role_revoke(*, user: User, role: Role, revoked_by: User | None, reason: str) -> RoleGrant:
    _require_account_manager(revoked_by, reason)
    with transaction.atomic(), audit_context(reason=reason):
        grant = (
            RoleGrant.objects.select_for_update()
            .filter(user=user, role=role, revoked_at__isnull=True)
            .first()
        )
        if grant is None:
            raise ConflictError(f"{user} does not hold {role.label}.", code="role_not_held")
        held = set(
            RoleGrant.objects.filter(permissions.live_grants_q(), user=user).values_list(
                "role", flat=True
            )
        )
        grant.revoked_at = timezone.now()
        grant.revoked_by = revoked_by
        grant.save(update_fields=["revoked_at", "revoked_by"])
        audit_event_record(
            event_type=KernelEvent.ROLE_REVOKED,
            actor=revoked_by,
            target=user,
            extra={"role": role.value, "old": sorted(held), "new": sorted(held - {role.value})},
            reason=reason,
        )
    permissions.forget_roles(user)
    return grant


#
# Authentication, failures and lockout (ES-08)
#


def account_is_locked(user: User) -> bool:
    if user.locked_at is None:
        return False
    duration = settings.LOCKOUT_DURATION_SECONDS
    if duration <= 0:
        return True
    return timezone.now() < user.locked_at + dt.timedelta(seconds=duration)


def failed_authentications_since_reset(user: User) -> int:
    label, pk = record_label(user), str(user.pk)
    reset = (
        AuditEvent.objects.filter(
            target_type=label, target_id=pk, event_type__in=list(LOCKOUT_RESET_EVENTS)
        )
        .order_by("-seq")
        .values_list("seq", flat=True)
        .first()
    ) or 0
    window_start = timezone.now() - dt.timedelta(seconds=settings.LOCKOUT_WINDOW_SECONDS)
    return AuditEvent.objects.filter(
        target_type=label,
        target_id=pk,
        event_type__in=list(FAILED_AUTHENTICATION_EVENTS),
        seq__gt=reset,
        occurred_at__gte=window_start,
    ).count()


def authentication_failure_register(
    *,
    event_type: KernelEvent,
    username: str,
    user: User | None,
    extra: dict[str, Any] | None = None,
    reason: str = "",
) -> bool:
    """Record a failed authentication; lock the account at the threshold. True if it locked."""
    if event_type not in FAILED_AUTHENTICATION_EVENTS:
        raise ValueError(f"{event_type} is not a failed-authentication event")
    with transaction.atomic():
        audit_event_record(
            event_type=event_type,
            actor=user,
            actor_username=username,
            target=user,
            extra=extra,
            reason=reason or "failed authentication",
        )
        if user is None:
            return False
        locked = User.objects.select_for_update().get(pk=user.pk)
        if locked.locked_at is not None and account_is_locked(locked):
            return False
        if failed_authentications_since_reset(locked) >= settings.LOCKOUT_THRESHOLD:
            _lock(locked)
            user.locked_at = locked.locked_at
            return True
    return False


def _lock(user: User) -> None:
    reason = (
        f"{settings.LOCKOUT_THRESHOLD} failed authentications within "
        f"{settings.LOCKOUT_WINDOW_SECONDS // 60} minutes"
    )
    with audit_context(reason=reason):
        user.locked_at = timezone.now()
        user.save(update_fields=["locked_at"])
        audit_event_record(
            event_type=KernelEvent.LOCKED,
            actor=None,
            target=user,
            reason=reason,
            as_system=True,
        )
    administrators = User.objects.filter(
        pk__in=RoleGrant.objects.filter(permissions.live_grants_q(), role=Role.SYSADMIN).values(
            "user_id"
        ),
        is_active=True,
    )
    # ES-08: attempted misuse is reported at once — an in-app notice and an e-mail to every
    # administrator, sent by the notifications service once the lock is committed.
    notify(
        recipients=administrators,
        subject=f"Account locked: {user.get_username()}",
        body=(
            f"The account {user.get_username()} ({user.printed_name}) was locked at "
            f"{timezone.localtime(user.locked_at):%Y-%m-%d %H:%M:%S %Z} after {reason}."
        ),
        link=reverse("accounts:user_detail", args=[user.pk]),
        severity="block",
    )


def user_unlock(*, user: User, unlocked_by: User | None, reason: str) -> None:
    """Lift a lock: an administrator, or the system once the lock has run its time."""
    _require_account_manager(unlocked_by, reason)
    with transaction.atomic(), audit_context(reason=reason):
        locked = User.objects.select_for_update().get(pk=user.pk)
        if locked.locked_at is None:
            raise ConflictError(f"{user} is not locked.", code="not_locked")
        locked.locked_at = None
        locked.save(update_fields=["locked_at"])
        audit_event_record(
            event_type=KernelEvent.UNLOCKED,
            actor=unlocked_by,
            as_system=unlocked_by is None,
            target=locked,
            reason=reason,
        )
    user.locked_at = None


def login_succeeded(*, user: User, mfa: bool) -> None:
    """Record a completed login. `last_login` is operational, so it writes no history row."""
    with transaction.atomic():
        if user.locked_at is not None:
            # The lock ran its time (account_is_locked was false at the password check).
            user_unlock(user=user, unlocked_by=None, reason="lock period elapsed")
        user.last_login = timezone.now()
        user.skip_history_when_saving = True  # type: ignore[attr-defined]
        try:
            user.save(update_fields=["last_login"])
        finally:
            del user.skip_history_when_saving  # type: ignore[attr-defined]
        audit_event_record(
            event_type=KernelEvent.LOGIN,
            actor=user,
            target=user,
            extra={"mfa": mfa},
            reason="login",
        )


def logout_record(*, user: User, why: str) -> None:
    audit_event_record(event_type=KernelEvent.LOGOUT, actor=user, target=user, reason=why)


def password_change(*, user: User, new_password: str, reason: str = "password changed") -> None:
    validate_password(new_password, user)
    with transaction.atomic(), audit_context(reason=reason):
        user.set_password(new_password)
        user.must_change_password = False
        user.save(update_fields=["password", "must_change_password"])
        audit_event_record(
            event_type=KernelEvent.PASSWORD_CHANGED, actor=user, target=user, reason=reason
        )


def user_set_active(*, user: User, active: bool, changed_by: User, reason: str) -> None:
    """Deactivate a leaver (accounts are never deleted) or reactivate an account (AT-07)."""
    _require_account_manager(changed_by, reason)
    if changed_by.pk == user.pk:
        raise PermissionRefusedError("Nobody deactivates their own account.", code="self_change")
    with transaction.atomic(), audit_context(reason=reason):
        locked = User.objects.select_for_update().get(pk=user.pk)
        if locked.is_active == active:
            state = "active" if active else "inactive"
            raise ConflictError(f"{user} is already {state}.", code="no_change")
        locked.is_active = active
        locked.save(update_fields=["is_active"])
        audit_event_record(
            event_type=KernelEvent.USER_CHANGED,
            actor=changed_by,
            target=locked,
            extra={"field": "is_active", "old": not active, "new": active},
            reason=reason,
        )
    user.is_active = active


def user_reset_password(
    *, user: User, temporary_password: str, reset_by: User, reason: str
) -> None:
    """An administrator sets a temporary password; the user must change it at once (ES-07)."""
    _require_account_manager(reset_by, reason)
    validate_password(temporary_password, user)
    with transaction.atomic(), audit_context(reason=reason):
        locked = User.objects.select_for_update().get(pk=user.pk)
        locked.set_password(temporary_password)
        locked.must_change_password = True
        locked.save(update_fields=["password", "must_change_password"])
        audit_event_record(
            event_type=KernelEvent.PASSWORD_CHANGED,
            actor=reset_by,
            target=locked,
            extra={"by_administrator": True},
            reason=reason,
        )
