"""Background tasks: in-process by default, a real worker on Redis when a broker is configured."""

from __future__ import annotations

import time
import uuid

import pytest
from django.db import transaction

from controlsite.audit.context import AuditContext, audit_context, current
from controlsite.background.models import WorkerHeartbeat
from controlsite.background.tasks import RegulatedTask, enqueue_on_commit
from controlsite.tasks import health_ping


def test_task_conventions_live_on_the_base_class():
    assert health_ping.acks_late is True
    assert health_ping.reject_on_worker_lost is True
    assert health_ping.max_retries == 5
    assert issubclass(type(health_ping), RegulatedTask) or isinstance(health_ping, RegulatedTask)


@pytest.mark.django_db
def test_without_a_broker_the_health_task_runs_in_process_on_commit(
    django_capture_on_commit_callbacks,
):
    token = uuid.uuid4().hex
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        enqueue_on_commit(health_ping, token)
        assert not WorkerHeartbeat.objects.filter(token=token).exists()
    assert len(callbacks) == 1
    beat = WorkerHeartbeat.objects.get(token=token)
    assert beat.eager is True


@pytest.mark.django_db
def test_a_rerun_of_the_health_task_is_idempotent():
    token = uuid.uuid4().hex
    health_ping.apply(args=(token,))
    health_ping.apply(args=(token,))
    assert WorkerHeartbeat.objects.filter(token=token).count() == 1


@pytest.mark.django_db
def test_an_enqueue_inside_a_rolled_back_transaction_never_runs(django_capture_on_commit_callbacks):
    token = uuid.uuid4().hex
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            with transaction.atomic():
                enqueue_on_commit(health_ping, token)
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
    assert callbacks == []
    assert not WorkerHeartbeat.objects.filter(token=token).exists()


@pytest.mark.django_db
def test_a_task_run_in_process_leaves_its_callers_audit_context_as_it_was():
    """AT-02: an eager task starts from an empty context and, when it ends, the caller's
    context (who, why) is the one the caller's later audit rows copy."""
    with audit_context(reason="caller's reason", origin="web") as before:
        health_ping.apply(args=(uuid.uuid4().hex,))
        assert current() == before
    assert current() == AuditContext()


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_on_redis_runs_a_task_end_to_end(real_worker):
    token = uuid.uuid4().hex
    result = health_ping.delay(token)
    assert result.id
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not WorkerHeartbeat.objects.filter(token=token).exists():
        time.sleep(0.1)
    beat = WorkerHeartbeat.objects.get(token=token)
    assert beat.eager is False
    assert beat.worker  # the worker's hostname, not in-process
