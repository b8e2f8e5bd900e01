"""Admin for support staff: accounts and role grants through the services, audit read-only.

The admin is not a second path around the services (style "Admin"): users are created and roles
granted or revoked by the accounts services, with a reason, so every change is an audit event.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from controlsite.accounts import services
from controlsite.accounts.models import RoleGrant, User
from controlsite.api.models import ApiToken
from controlsite.audit.edges import ReasonForChangeAdminMixin
from controlsite.audit.models import AuditEvent, AuditReview
from controlsite.errors import ApplicationError
from controlsite.signatures.models import ElectronicSignature


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Append-only records: viewable, never added, changed or deleted here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = [
        "seq",
        "occurred_at",
        "event_type",
        "actor_username",
        "target_type",
        "target_id",
        "reason",
    ]
    list_filter = ["event_type"]
    search_fields = ["actor_username", "target_id", "target_repr", "reason"]
    show_full_result_count = False


@admin.register(ElectronicSignature)
class ElectronicSignatureAdmin(ReadOnlyAdmin):
    list_display = ["signed_at", "printed_name", "meaning", "target_type", "target_id"]
    show_full_result_count = False


@admin.register(AuditReview)
class AuditReviewAdmin(ReadOnlyAdmin):
    list_display = ["from_seq", "to_seq", "chain_intact", "created_at", "created_by"]


@admin.register(User)
class UserAdmin(ReasonForChangeAdminMixin, SimpleHistoryAdmin):
    """Account details only; passwords, roles and locks go through the services."""

    list_display = ["username", "printed_name", "email", "is_active", "locked_at"]
    search_fields = ["username", "first_name", "last_name", "email"]
    readonly_fields = [
        "username",
        "last_login",
        "date_joined",
        "locked_at",
        "live_roles",
        "is_active",
    ]
    fields = [
        "username",
        "first_name",
        "last_name",
        "email",
        "is_active",
        "live_roles",
        "locked_at",
        "last_login",
        "date_joined",
    ]
    actions = ["unlock_accounts"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # accounts are created on the Accounts page, through the service

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # accounts are deactivated, never deleted

    @admin.display(description="Roles")
    def live_roles(self, obj: User) -> str:
        from controlsite.accounts.permissions import user_roles

        return ", ".join(sorted(str(r.label) for r in user_roles(obj))) or "—"

    @admin.action(description="Unlock the selected accounts")
    def unlock_accounts(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset.filter(locked_at__isnull=False):
            try:
                services.user_unlock(
                    user=user,
                    unlocked_by=request.user,  # type: ignore[arg-type]
                    reason="unlocked by an administrator",
                )
            except ApplicationError as exc:
                messages.error(request, f"{user}: {exc.message}")
            else:
                messages.success(request, f"{user} unlocked.")


@admin.register(RoleGrant)
class RoleGrantAdmin(ReadOnlyAdmin):
    list_display = ["user", "role", "granted_at", "granted_by", "expires_at", "revoked_at"]
    list_filter = ["role"]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ["name", "prefix", "user", "scope", "expires_at", "last_used_at", "revoked_at"]
