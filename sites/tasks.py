"""The sites app's background tasks: thin, each calls one service."""

from __future__ import annotations

from celery import shared_task

from controlsite.background.tasks import RegulatedTask


@shared_task(base=RegulatedTask, bind=True, name="sites.regulatory_notifications_remind")
def regulatory_notifications_remind(self: RegulatedTask) -> int:
    from controlsite.audit.context import audit_context
    from sites.services import regulatory_notifications_remind as remind

    with audit_context(reason="daily reminder of MHRA notifications", origin="task"):
        return remind()
