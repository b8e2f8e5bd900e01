"""Integrator tokens: create, authenticate, revoke (design §6)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.db import transaction
from django.utils import timezone

from controlsite.accounts import permissions
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability
from controlsite.api.models import ApiToken, TokenScope
from controlsite.audit.events import KernelEvent
from controlsite.audit.services import audit_event_record
from controlsite.errors import ApplicationError, ConflictError

TOKEN_PREFIX = "cst"  # noqa: S105  (the public prefix of every token, not a secret)
_LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_token_create(
    *,
    user: User,
    name: str,
    scope: TokenScope,
    created_by: User,
    expires_at: dt.datetime | None = None,
    site_codes: list[str] | None = None,
) -> tuple[ApiToken, str]:
    """Create a token for `user` and return it with its secret, which is never shown again."""
    if created_by.pk != user.pk or not permissions.user_can(user, Capability.MANAGE_OWN_TOKENS):
        permissions.require(
            created_by, Capability.MANAGE_ACCOUNTS, "Only an administrator creates this token."
        )
    if not name.strip():
        raise ApplicationError("Give the token a name.", code="name_required")
    if expires_at is not None and expires_at <= timezone.now():
        raise ApplicationError("The expiry must be in the future.", code="expiry_in_past")
    codes = sorted({code.strip().upper() for code in site_codes or [] if code.strip()})
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name.strip()[:100],
            prefix=prefix,
            key_hash=_hash(secret),
            scope=scope,
            site_codes=codes,
            expires_at=expires_at,
        )
        audit_event_record(
            event_type=KernelEvent.TOKEN_CREATED,
            actor=created_by,
            target=user,
            extra={
                "token": prefix,
                "name": token.name,
                "scope": scope.value,
                "site_codes": codes,
                "expires_at": expires_at,
            },
            reason=f"API token {token.name!r} created",
        )
    return token, f"{TOKEN_PREFIX}_{prefix}_{secret}"


def api_token_revoke(*, token: ApiToken, revoked_by: User) -> None:
    if revoked_by.pk != token.user_id:
        permissions.require(revoked_by, Capability.MANAGE_ACCOUNTS)
    with transaction.atomic():
        locked = ApiToken.objects.select_for_update().get(pk=token.pk)
        if locked.revoked_at is not None:
            raise ConflictError("The token is already revoked.", code="token_revoked")
        locked.revoked_at = timezone.now()
        locked.save(update_fields=["revoked_at"])
        audit_event_record(
            event_type=KernelEvent.TOKEN_REVOKED,
            actor=revoked_by,
            target=locked.user,
            extra={"token": locked.prefix, "name": locked.name},
            reason=f"API token {locked.name!r} revoked",
        )
    token.revoked_at = locked.revoked_at


class TokenInvalidError(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def api_token_authenticate(raw: str) -> ApiToken:
    """Find the live token for a presented secret, or raise `TokenInvalidError`."""
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise TokenInvalidError("The token is malformed.", "token_invalid")
    token = ApiToken.objects.select_related("user").filter(prefix=parts[1]).first()
    if token is None or not secrets.compare_digest(token.key_hash, _hash(parts[2])):
        raise TokenInvalidError("The token is not valid.", "token_invalid")
    now = timezone.now()
    if token.revoked_at is not None:
        raise TokenInvalidError("The token was revoked.", "token_revoked")
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenInvalidError("The token has expired.", "token_expired")
    if not token.user.is_active:
        raise TokenInvalidError("The token's user is inactive.", "user_inactive")
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
        # Not regulated data; written at most once a minute so reads stay reads.
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token
