"""Webhook tasks: thin, each calls one service (design §7).

Retries are not Celery's: a failed attempt sets the delivery's `next_attempt_at`, and the beat
task `webhooks.deliver_due` (every minute, CELERY_BEAT_SCHEDULE) sends whatever is due. So a
delivery survives a lost message, a dead worker or a Redis restart: the database knows it is
pending. `RegulatedTask` still retries the task itself when the database is briefly away.
"""

from __future__ import annotations

from celery import shared_task

from controlsite.background.tasks import RegulatedTask


@shared_task(base=RegulatedTask, bind=True, name="webhooks.deliver")
def webhook_deliver(self: RegulatedTask, delivery_id: int) -> bool:
    """Make one attempt at a delivery (late acknowledgement; a re-run does nothing)."""
    from controlsite.audit.context import audit_context
    from controlsite.webhooks.services import webhook_deliver as webhook_deliver_service

    with audit_context(reason=f"webhook delivery {delivery_id}", origin="task"):
        return webhook_deliver_service(int(delivery_id))


@shared_task(base=RegulatedTask, bind=True, name="webhooks.deliver_due")
def webhook_deliver_due(self: RegulatedTask) -> int:
    """Enqueue every pending delivery whose next attempt is due."""
    from controlsite.audit.context import audit_context
    from controlsite.webhooks.services import webhook_deliveries_enqueue_due

    with audit_context(reason="webhook deliveries due", origin="task"):
        return webhook_deliveries_enqueue_due()
