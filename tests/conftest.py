from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from django.test import Client
from rest_framework.test import APIClient

from controlsite.accounts.models import User
from tests.matrix import ANON
from tests.personas import ALL_PERSONAS, login, make_persona

# Playwright drives a live server from a sync test; Django must allow that.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def _fresh_audit_context() -> Iterator[None]:
    """Each test starts with an empty audit context, as each request and task does."""
    from controlsite.audit import context

    token = context.set_context(context.AuditContext())
    yield
    context.reset_context(token)


@pytest.fixture
def persona(db: None) -> Callable[[str], User]:
    """`persona("qa")` → the QA user, created once per test."""
    made: dict[str, User] = {}

    def get(name: str) -> User:
        if name not in made:
            made[name] = make_persona(name)
        return made[name]

    return get


@pytest.fixture
def client_for(persona: Callable[[str], User]) -> Callable[[str], Client]:
    """`client_for("qp")` → a browser-like client signed in as the QP (with second factor)."""

    def get(name: str) -> Client:
        return login(Client(), persona(name))

    return get


@pytest.fixture
def api_client_for(persona: Callable[[str], User]) -> Callable[[str], APIClient]:
    """`api_client_for("integrator")` → an API client holding a read-write token for the persona.

    The token is made by the persona itself where its roles allow, else by the administrator.
    """
    from controlsite.accounts import permissions
    from controlsite.accounts.roles import Capability
    from controlsite.api.models import TokenScope
    from controlsite.api.tokens import api_token_create

    def get(name: str) -> APIClient:
        user = persona(name)
        own = permissions.user_can(user, Capability.MANAGE_OWN_TOKENS) or permissions.user_can(
            user, Capability.MANAGE_ACCOUNTS
        )
        creator = user if own else persona("sysadmin")
        _, secret = api_token_create(
            user=user, name="test", scope=TokenScope.READ_WRITE, created_by=creator
        )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client

    return get


@pytest.fixture
def browser_as(client_for: Callable[[str], Client]) -> Callable[[str], Client]:
    """For permission matrices of pages: a signed-in client, or a bare one for "anonymous"."""

    def get(who: str) -> Client:
        return Client() if who == ANON else client_for(who)

    return get


@pytest.fixture
def as_persona(api_client_for: Callable[[str], APIClient]) -> Callable[[str], APIClient]:
    """For permission matrices of the API: a token client, or none for "anonymous"."""

    def get(who: str) -> APIClient:
        return APIClient() if who == ANON else api_client_for(who)

    return get


__all__ = ["ALL_PERSONAS"]
