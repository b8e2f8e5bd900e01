from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from controlsite.accounts import permissions, scope
from controlsite.accounts.roles import Capability


def shell(request: HttpRequest) -> dict[str, Any]:
    """What the base layout shows: who is signed in, their roles, the version."""
    user = getattr(request, "user", None)
    roles = sorted(permissions.user_roles(user), key=lambda r: r.label) if user else []
    return {
        "app_version": settings.CONTROLSITE_VERSION,
        "current_roles": roles,
        "can_view_audit": bool(user) and permissions.user_can(user, Capability.VIEW_AUDIT_TRAIL),
        "is_administrator": bool(user) and permissions.user_is_administrator(user),
        "sees_all_sites": bool(user) and permissions.user_can(user, Capability.VIEW_ALL_SITES),
        "can_certify": bool(user) and permissions.user_can(user, Capability.CERTIFY_BATCH),
        "current_site_codes": scope.user_site_codes(user),
    }
