from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from controlsite.accounts.models import User


def request_user(request: HttpRequest) -> User:
    """The signed-in user of a view that requires login, typed as our User."""
    user = request.user
    if not isinstance(user, User):
        raise PermissionDenied
    return user
