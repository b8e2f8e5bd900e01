"""The one place that answers "may this user do that?" (design §1, DI-02, DI-03).

Everything asks through `user_can(user, Capability.X)`; roles come from live `RoleGrant` rows,
read once per user object and cached on it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from controlsite.accounts.roles import READ_ONLY_ROLES, ROLE_CAPABILITIES, Capability, Role
from controlsite.errors import PermissionRefusedError

_CACHE_ATTR = "_controlsite_roles"


def live_grants_q() -> Q:
    now = timezone.now()
    return Q(revoked_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))


def user_roles(user: Any) -> frozenset[Role]:
    """The roles a user holds right now (expired or revoked grants do not count)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    cached: frozenset[Role] | None = getattr(user, _CACHE_ATTR, None)
    if cached is None:
        values = user.role_grants.filter(live_grants_q()).values_list("role", flat=True)
        cached = frozenset(Role(v) for v in values)
        setattr(user, _CACHE_ATTR, cached)
    return cached


def forget_roles(user: Any) -> None:
    if hasattr(user, _CACHE_ATTR):
        delattr(user, _CACHE_ATTR)


def has_role(user: Any, *roles: Role) -> bool:
    return bool(user_roles(user) & set(roles))


def user_capabilities(user: Any) -> frozenset[Capability]:
    caps: set[Capability] = set()
    for role in user_roles(user):
        caps |= ROLE_CAPABILITIES[role]
    if user_is_administrator(user):
        # Segregation of duties: whatever else an administrator holds, they never sign.
        caps.discard(Capability.SIGN)
        caps.discard(Capability.CERTIFY_BATCH)
    return frozenset(caps)


def user_can(user: Any, capability: Capability) -> bool:
    return capability in user_capabilities(user)


def require(user: Any, capability: Capability, message: str = "") -> None:
    if not user_can(user, capability):
        raise PermissionRefusedError(
            message or f"Your roles do not allow this ({capability.value.replace('_', ' ')}).",
            code="permission_denied",
        )


def user_is_administrator(user: Any) -> bool:
    return bool(getattr(user, "is_superuser", False)) or Role.SYSADMIN in user_roles(user)


def user_is_read_only(user: Any) -> bool:
    """True when every role the user holds only reads (an inspector)."""
    roles = user_roles(user)
    return bool(roles) and roles <= READ_ONLY_ROLES


def mfa_required(user: Any) -> bool:
    """TOTP is required for the roles named in MFA_REQUIRED_ROLES (QP, administrator)."""
    required = {Role(r) for r in settings.MFA_REQUIRED_ROLES}
    return bool(user_roles(user) & required) or bool(getattr(user, "is_superuser", False))
