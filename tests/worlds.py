"""Worlds built once per module (or class) and shared by its tests, each test still isolated.

A permission matrix asks the same few questions of the same rows for every persona; building those
rows through the services again for each of some 300 tests was most of the suite's time. A shared
world is built once inside an outer transaction (`shared_rows`). Each test's `db` fixture opens
its own savepoint inside it (pytest-django runs `TestCase` without the class-level atomics for
exactly this), so whatever a test writes is rolled back when it ends and the next test finds the
world as it was built. When the module or class is done the outer transaction is rolled back too,
and nothing is left in the test database.

The rules that keep the tests independent of each other:

- share rows, not Python objects: `refetched(world)` reads every model instance of the world
  again for each test, so an instance a test changes (or a role cache on a `User`) never reaches
  the next one;
- files the world writes go under a directory of its own, and each test works on a copy of it
  (`media_copy`), so a test that overwrites a file changes only its own copy;
- no transactional test (`transactional_db`, `live_server`) in the same module or class: it
  would flush the tables under the open transaction.

While a world is open, the end of a request (a test closing a response itself) does not close
the database connection, as Django's test client already arranges for the requests it makes:
closing it would end the world's transaction for every test after it.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

from django.db import models, transaction
from pytest_django import DjangoDbBlocker

from controlsite.audit import context

W = TypeVar("W")


@contextmanager
def shared_rows(django_db_blocker: DjangoDbBlocker) -> Iterator[None]:
    """Open the transaction a shared world lives in; roll it back at the end.

    Build the world inside `django_db_blocker.unblock()`; the tests' own `db` savepoints nest
    in this transaction. The world is built with an empty audit context, as each test starts
    with one (tests/conftest.py `_fresh_audit_context`).
    """
    connection = transaction.get_connection()
    close_if_obsolete = connection.close_if_unusable_or_obsolete

    def keep_the_world_open() -> None:
        # `request_finished` closes a connection whose autocommit is off, and inside a
        # transaction it is always off: outside one, do as Django does.
        if not connection.in_atomic_block:
            close_if_obsolete()

    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
    token = context.set_context(context.AuditContext())
    try:
        with mock.patch.object(connection, "close_if_unusable_or_obsolete", keep_the_world_open):
            yield
    finally:
        context.reset_context(token)
        with django_db_blocker.unblock():
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


def refetched(world: W) -> W:
    """A copy of a dataclass of model instances with every instance read again from the
    database (other fields are copied as they are)."""
    assert dataclasses.is_dataclass(world) and not isinstance(world, type)
    fresh: dict[str, Any] = {}
    for field in dataclasses.fields(world):
        value = getattr(world, field.name)
        if isinstance(value, models.Model):
            value = type(value)._default_manager.get(pk=value.pk)
        fresh[field.name] = value
    return dataclasses.replace(world, **fresh)


def media_copy(shared: Path, tmp_path: Path) -> Path:
    """A test's own copy of the files a shared world wrote, to use as its MEDIA_ROOT."""
    own = tmp_path / "media"
    if shared.exists():
        shutil.copytree(shared, own)
    else:
        own.mkdir()
    return own
