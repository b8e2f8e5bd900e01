"""The Celery application. With no CELERY_BROKER_URL, tasks run in-process (eager)."""

from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlsite.settings.base")

app = Celery("controlsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# The token each running task's context was set with, by task id: `task_postrun` puts back the
# context the task found. In a worker that is the empty one; a task run eagerly (no broker: the
# demo and on_commit hooks in tests) runs inside its caller, whose context must survive it.
_tokens: dict[str, contextvars.Token[Any]] = {}


@signals.task_prerun.connect
def _fresh_audit_context(task_id: str | None = None, **_: Any) -> None:
    """Each task starts with an empty audit context: nothing leaks from the previous task run
    by the same worker process, nor from an eager task's caller. Tasks open their own
    `audit_context(...)`."""
    from controlsite.audit import context

    token = context.set_context(context.AuditContext(origin="task"))
    if task_id is not None:
        _tokens[task_id] = token


@signals.task_postrun.connect
def _restore_audit_context(task_id: str | None = None, **_: Any) -> None:
    """Put back the context the task started in."""
    from controlsite.audit import context

    token = _tokens.pop(task_id, None) if task_id is not None else None
    if token is not None:
        # A token set in another contextvars.Context has nothing of the caller's to restore.
        with contextlib.suppress(ValueError):
            context.reset_context(token)
