from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend

from controlsite.accounts.services import account_is_locked


class LockoutAwareBackend(ModelBackend):
    """The model backend, refusing locked accounts even with the right password."""

    def user_can_authenticate(self, user: Any) -> bool:
        return super().user_can_authenticate(user) and not account_is_locked(user)
