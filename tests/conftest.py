from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

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
    """`persona("qa")` → the QA user, created once per test (or the one a world shared by the
    module's tests made already, tests/worlds.py)."""
    made: dict[str, User] = {}

    def get(name: str) -> User:
        if name not in made:
            made[name] = User.objects.filter(username=name).first() or make_persona(name)
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


# Rows the data migrations write. A transactional test (a live server, a PDF rendered outside
# any transaction) flushes every table when it ends, these rows included, and
# `serialized_rollback` cannot be relied on once a live-server test has run.
MIGRATION_SEEDS = (
    "sites.migrations.0002_default_checklist",
    "masterfile.migrations.0002_default_sections",
)


def _seed_from_migrations() -> None:
    import importlib

    from django.apps import apps

    from controlsite.audit.context import audit_context

    with audit_context(reason="default rows of the data migrations"):
        for module in MIGRATION_SEEDS:
            importlib.import_module(module).forwards(apps, None)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> None:
    """A kept test database (`--reuse-db`) was flushed by the last run's transactional tests:
    put the data migrations' rows back once, before any test (idempotent)."""
    with django_db_blocker.unblock():
        _seed_from_migrations()


@pytest.fixture
def migration_seeds(transactional_db: None) -> None:
    """Put the data migrations' rows back, as the migrations write them (idempotent)."""
    _seed_from_migrations()


BROKER = os.environ.get("CELERY_BROKER_URL", "")


@pytest.fixture
def real_worker() -> Iterator[None]:
    """A real Celery worker, in a thread of this process, taking tasks from the Redis broker.

    Skips without CELERY_BROKER_URL. The worker thread's database connection is closed after
    each task: left open, it would be garbage-collected during some later test.
    """
    if not BROKER:
        pytest.skip("needs CELERY_BROKER_URL (a real Redis broker)")
    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_postrun
    from django.db import connections

    from controlsite.celery import app

    def close_connections(**_: object) -> None:
        connections.close_all()

    task_postrun.connect(close_connections, weak=False)
    app.conf.task_always_eager = False
    app.conf.update(broker_url=BROKER)
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            yield
    finally:
        app.conf.task_always_eager = True
        task_postrun.disconnect(close_connections)


__all__ = ["ALL_PERSONAS"]
