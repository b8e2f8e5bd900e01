"""API authentication: bearer tokens for integrators, the session for the browser."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from controlsite.accounts.scope import limit_to_token_sites
from controlsite.accounts.services import account_is_locked
from controlsite.api.models import ApiToken
from controlsite.api.tokens import TokenInvalidError, api_token_authenticate
from controlsite.audit import context


class TokenAuthenticationFailedError(exceptions.AuthenticationFailed):
    pass


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer cst_<prefix>_<secret>`."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() not in {"bearer", "token"}:
            return None
        raw = raw.strip()
        if not raw:
            raise exceptions.AuthenticationFailed("No token after 'Bearer'.", code="token_invalid")
        try:
            token = api_token_authenticate(raw)
        except TokenInvalidError as exc:
            raise exceptions.AuthenticationFailed(str(exc), code=exc.code) from exc
        if account_is_locked(token.user):
            raise exceptions.AuthenticationFailed("The token's user is locked.", code="user_locked")
        context.update_context(user=token.user)
        limit_to_token_sites(token.user, list(token.site_codes))
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class SessionAuthentication(authentication.SessionAuthentication):
    """The browser session, CSRF-checked for unsafe methods."""


def request_token(request: Request) -> ApiToken | None:
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, ApiToken) else None


def token_site_codes(request: Request) -> list[str] | None:
    """Site codes the request's token is limited to, or None when it is not limited."""
    token = request_token(request)
    if token is None or not token.site_codes:
        return None
    return list(token.site_codes)


class ApiTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "controlsite.api.auth.ApiTokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "cst_<prefix>_<secret>",
            "description": "An integrator token, created on the account page.",
        }


class SessionScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "controlsite.api.auth.SessionAuthentication"
    name = "sessionCookie"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
