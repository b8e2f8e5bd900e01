"""The kernel's background tasks."""

from __future__ import annotations

import socket

from celery import shared_task

from controlsite.background.models import WorkerHeartbeat
from controlsite.background.tasks import RegulatedTask


@shared_task(base=RegulatedTask, bind=True, name="controlsite.health_ping")
def health_ping(self: RegulatedTask, token: str = "") -> str:
    """Prove a worker can reach the database: write (once) a heartbeat row for `token`."""
    import uuid

    token = token or uuid.uuid4().hex
    eager = bool(getattr(self.request, "is_eager", False))
    worker = "" if eager else (self.request.hostname or socket.gethostname())
    # Idempotent: a redelivered ping with the same token writes nothing new.
    WorkerHeartbeat.objects.get_or_create(token=token, defaults={"worker": worker, "eager": eager})
    return token


@shared_task(base=RegulatedTask, name="controlsite.idempotency_purge")
def idempotency_purge() -> int:
    """Forget API idempotency keys past their lifetime (design §6)."""
    from controlsite.api.idempotency import purge_expired

    return purge_expired()


# Celery finds tasks in `<app>.tasks`; the kernel's other task modules are imported here.
from controlsite.notifications.tasks import notification_email  # noqa: E402

__all__ = ["health_ping", "idempotency_purge", "notification_email"]
