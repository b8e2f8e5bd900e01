"""Which sites a user works at: the kernel's view of site scoping.

The sites app owns memberships; it registers a provider here in `AppConfig.ready()` so the kernel
(the header, the API) can show a user's sites without importing it. A token limited to some
sites narrows everything the request sees: `ApiTokenAuthentication` records the limit on the
request's user and every `visible_to(user)` selector applies it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_SITE_LIMIT_ATTR = "_controlsite_token_site_codes"
_provider: Callable[[Any], list[str]] | None = None


def register_site_provider(provider: Callable[[Any], list[str]]) -> None:
    """`provider(user)` → the codes of the sites the user is a member of."""
    global _provider  # a registry filled once, at start-up
    _provider = provider


def user_site_codes(user: Any) -> list[str]:
    if _provider is None or user is None or not getattr(user, "is_authenticated", False):
        return []
    return _provider(user)


def limit_to_token_sites(user: Any, codes: list[str]) -> None:
    setattr(user, _SITE_LIMIT_ATTR, frozenset(codes) if codes else None)


def token_site_limit(user: Any) -> frozenset[str] | None:
    """The site codes the request's token is limited to, or None when it is not limited."""
    limit: frozenset[str] | None = getattr(user, _SITE_LIMIT_ATTR, None)
    return limit
