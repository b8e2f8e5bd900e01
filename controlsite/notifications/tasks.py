from __future__ import annotations

from celery import shared_task

from controlsite.background.tasks import RegulatedTask


@shared_task(base=RegulatedTask, bind=True, name="controlsite.notification_email")
def notification_email(self: RegulatedTask, notice_id: int) -> bool:
    from controlsite.notifications.services import notification_email_send

    return notification_email_send(notice_id=notice_id)
