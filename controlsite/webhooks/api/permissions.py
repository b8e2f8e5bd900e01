"""Who may use the webhook endpoints."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from controlsite.accounts import permissions as perms
from controlsite.accounts.roles import Capability
from controlsite.api.auth import request_token, token_site_codes
from controlsite.api.models import TokenScope


class WebhookApiPermission(permissions.BasePermission):
    """Control Site QA and the system administrator (MANAGE_WEBHOOKS), and no one else.

    It stands in for `ApiAccessPermission` on these endpoints, because the administrator holds
    no USE_API and reaches no other endpoint (DI-03). The same limits apply: a read-only token
    or role only reads. A token limited to sites is refused: subscriptions and their deliveries
    span every site.
    """

    message = "Only Control Site QA and the system administrator manage webhooks."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not user.is_authenticated:
            return False
        if not perms.user_can(user, Capability.MANAGE_WEBHOOKS):
            return False
        if token_site_codes(request) is not None:
            self.message = "A token limited to sites cannot manage webhooks; they span every site."
            return False
        unsafe = request.method not in permissions.SAFE_METHODS
        token = request_token(request)
        if unsafe and token is not None and token.scope != TokenScope.READ_WRITE:
            self.message = "This token is read-only."
            return False
        if unsafe and perms.user_is_read_only(user):
            self.message = "Your role is read-only."
            return False
        return True
