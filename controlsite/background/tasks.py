"""Task conventions, in one place (design §7, style "Celery").

- `RegulatedTask` is the base every task uses: late acknowledgement (a task whose worker dies is
  redelivered), JSON only, bounded retries with backoff for transient failures, no result kept.
- Tasks are thin: load by id, call a service. A re-run of finished work must do nothing, so
  services check the job row's status under `select_for_update()` and return early.
- `enqueue_on_commit()` is the only way app code enqueues: the task is sent only if the
  transaction that created its work commits.
"""

from __future__ import annotations

from typing import Any

from celery import Task
from django.db import InterfaceError, OperationalError, transaction


class RegulatedTask(Task):  # type: ignore[type-arg]
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    autoretry_for = (OperationalError, InterfaceError, ConnectionError, TimeoutError)
    max_retries = 5
    retry_backoff = True
    retry_backoff_max = 300
    retry_jitter = True


def enqueue_on_commit(task: Any, *args: Any, **kwargs: Any) -> None:
    """Send `task` with these arguments once the current transaction commits."""
    transaction.on_commit(lambda: task.delay(*args, **kwargs))
