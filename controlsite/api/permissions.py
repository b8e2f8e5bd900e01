from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from controlsite.accounts import permissions as perms
from controlsite.accounts.roles import Capability
from controlsite.api.auth import request_token
from controlsite.api.models import TokenScope


class ApiAccessPermission(permissions.BasePermission):
    """Authenticated, holding a role that uses the API; read-only tokens and read-only roles
    (inspectors) may only read. Views add their own capability on top (`required_capability`)."""

    message = "You do not have access to this API."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not user.is_authenticated:
            return False
        if not perms.user_can(user, Capability.USE_API):
            return False
        unsafe = request.method not in permissions.SAFE_METHODS
        token = request_token(request)
        if unsafe and token is not None and token.scope != TokenScope.READ_WRITE:
            self.message = "This token is read-only."
            return False
        if unsafe and perms.user_is_read_only(user):
            self.message = "Your role is read-only."
            return False
        required = getattr(view, "required_capability", None)
        if required is not None and not perms.user_can(user, required):
            self.message = "Your roles do not allow this."
            return False
        return True
