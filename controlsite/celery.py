"""The Celery application. With no CELERY_BROKER_URL, tasks run in-process (eager)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlsite.settings.base")

app = Celery("controlsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_prerun.connect
def _fresh_audit_context(**_: Any) -> None:
    """Each task starts with an empty audit context: nothing leaks from the previous task run
    by the same worker process. Tasks open their own `audit_context(...)`."""
    from controlsite.audit import context

    context.set_context(context.AuditContext(origin="task"))
