"""Names of the kernel's audit event types. Apps name theirs `<app>.<event>` the same way."""

from __future__ import annotations

from enum import StrEnum


class KernelEvent(StrEnum):
    LOGIN = "auth.login"
    LOGOUT = "auth.logout"
    LOGIN_FAILED = "auth.login_failed"
    OTP_FAILED = "auth.otp_failed"
    LOCKED = "auth.locked"
    UNLOCKED = "auth.unlocked"
    MFA_ENROLLED = "auth.mfa_enrolled"
    PASSWORD_CHANGED = "auth.password_changed"
    USER_CREATED = "access.user_created"
    USER_CHANGED = "access.user_changed"
    ROLE_GRANTED = "access.role_granted"
    ROLE_REVOKED = "access.role_revoked"
    PERMISSION_CHANGED = "access.permission_changed"
    TOKEN_CREATED = "api.token_created"
    TOKEN_REVOKED = "api.token_revoked"
    SIGNATURE_APPLIED = "signature.applied"
    SIGNATURE_AUTH_FAILED = "signature.authentication_failed"
    SIGNATURE_REFUSED = "signature.refused"
    AUDIT_REVIEWED = "audit.reviewed"
    AUDIT_EXPORTED = "audit.exported"


# Failed authentications that count toward lockout (ES-08): logins, second factors and
# signature re-authentication share one counter.
FAILED_AUTHENTICATION_EVENTS = frozenset(
    {KernelEvent.LOGIN_FAILED, KernelEvent.OTP_FAILED, KernelEvent.SIGNATURE_AUTH_FAILED}
)
# Events after which the failure count starts again.
LOCKOUT_RESET_EVENTS = frozenset({KernelEvent.LOGIN, KernelEvent.LOCKED, KernelEvent.UNLOCKED})


# What people read instead of the event code. Apps add theirs with `register_event_labels()`
# in `AppConfig.ready()`; an unknown code is shown as it is.
_LABELS: dict[str, str] = {
    KernelEvent.LOGIN: "Signed in",
    KernelEvent.LOGOUT: "Signed out",
    KernelEvent.LOGIN_FAILED: "Failed sign-in",
    KernelEvent.OTP_FAILED: "Wrong authenticator code",
    KernelEvent.LOCKED: "Account locked",
    KernelEvent.UNLOCKED: "Account unlocked",
    KernelEvent.MFA_ENROLLED: "Authenticator enrolled",
    KernelEvent.PASSWORD_CHANGED: "Password changed",
    KernelEvent.USER_CREATED: "Account created",
    KernelEvent.USER_CHANGED: "Account changed",
    KernelEvent.ROLE_GRANTED: "Role granted",
    KernelEvent.ROLE_REVOKED: "Role revoked",
    KernelEvent.PERMISSION_CHANGED: "Permission changed",
    KernelEvent.TOKEN_CREATED: "API token created",
    KernelEvent.TOKEN_REVOKED: "API token revoked",
    KernelEvent.SIGNATURE_APPLIED: "Signed",
    KernelEvent.SIGNATURE_AUTH_FAILED: "Signature refused: wrong credentials",
    KernelEvent.SIGNATURE_REFUSED: "Signature refused",
    KernelEvent.AUDIT_REVIEWED: "Audit trail reviewed",
    KernelEvent.AUDIT_EXPORTED: "Audit trail exported",
}


def register_event_labels(labels: dict[str, str]) -> None:
    _LABELS.update(labels)


def event_label(code: str) -> str:
    return _LABELS.get(code, code)
