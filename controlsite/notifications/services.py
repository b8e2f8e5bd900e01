"""Tell people something: an in-app notice for each recipient, and an e-mail after commit."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from controlsite.accounts.models import User
from controlsite.background.tasks import enqueue_on_commit
from controlsite.notifications.models import Notification

SEVERITIES = ("info", "warn", "block")


def notify(
    *,
    recipients: Iterable[User],
    subject: str,
    body: str = "",
    link: str = "",
    severity: str = "info",
) -> list[Notification]:
    """Create one notice per distinct, active recipient; each is e-mailed once committed."""
    if severity not in SEVERITIES:
        # A typo here would show as an unstyled notice; fail where it is written instead.
        raise ValueError(f"Unknown severity {severity!r}: one of {', '.join(SEVERITIES)}")
    from controlsite.notifications.tasks import notification_email

    unique = {user.pk: user for user in recipients if user.is_active}
    notices = []
    with transaction.atomic():
        for user in unique.values():
            notice = Notification.objects.create(
                recipient=user, subject=subject[:200], body=body, link=link, severity=severity
            )
            notices.append(notice)
            enqueue_on_commit(notification_email, notice.pk)
    return notices


def notification_mark_read(*, notice: Notification, reader: User) -> None:
    if notice.recipient_id != reader.pk or notice.read_at is not None:
        return
    notice.read_at = timezone.now()
    notice.save(update_fields=["read_at"])


def notifications_mark_all_read(*, reader: User) -> int:
    """Mark every unread notice of `reader` read; returns how many (not GMP data: one UPDATE)."""
    return Notification.objects.filter(recipient=reader, read_at__isnull=True).update(
        read_at=timezone.now()
    )


def notification_email_send(*, notice_id: int) -> bool:
    """Send the notice's e-mail once. Idempotent: a re-run of a sent notice does nothing."""
    from django.conf import settings
    from django.core.mail import send_mail

    with transaction.atomic():
        notice = (
            Notification.objects.select_for_update().select_related("recipient").get(pk=notice_id)
        )
        if notice.emailed_at is not None or not notice.recipient.email:
            return False
        notice.emailed_at = timezone.now()
        notice.save(update_fields=["emailed_at"])
    # Slow I/O outside the transaction; a failure re-raises and the task retries.
    send_mail(
        subject=f"[Control Site QMS] {notice.subject}",
        message=f"{notice.body}\n\n{notice.link}".strip(),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[notice.recipient.email],
    )
    return True
