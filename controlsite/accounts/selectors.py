"""Reads for the account pages."""

from __future__ import annotations

from django.db.models import Prefetch, Q, QuerySet

from controlsite.accounts import permissions
from controlsite.accounts.models import RoleGrant, User
from controlsite.accounts.roles import Role


def users_for_administration(*, query: str = "") -> QuerySet[User]:
    live = RoleGrant.objects.filter(permissions.live_grants_q()).order_by("role")
    users = User.objects.prefetch_related(Prefetch("role_grants", queryset=live, to_attr="live"))
    if query:
        users = users.filter(
            Q(username__icontains=query)
            | Q(first_name__icontains=query)
            | Q(last_name__icontains=query)
            | Q(email__icontains=query)
        )
    return users.order_by("username")


def role_grants_of(user: User) -> QuerySet[RoleGrant]:
    return (
        RoleGrant.objects.filter(user=user)
        .select_related("granted_by", "revoked_by")
        .order_by("-granted_at")
    )


def users_holding(*roles: Role) -> QuerySet[User]:
    """Active people holding any of `roles` now (a live, unexpired grant)."""
    grants = RoleGrant.objects.filter(permissions.live_grants_q(), role__in=roles)
    return User.objects.filter(is_active=True, pk__in=grants.values("user_id"))
