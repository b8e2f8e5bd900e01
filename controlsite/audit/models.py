"""The append-only, hash-chained audit event log (design §4; AT-01…AT-08)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from controlsite.audit.history import RegulatedHistory
from controlsite.base_models import TimeStampedModel


class AuditEvent(models.Model):
    """One domain event: a login, a transition, a signature, an export, a permission change.

    Rows are only ever inserted. Each carries `prev_hash` and `hash` (SHA-256 over its canonical
    JSON and the previous hash), so `manage.py verify_audit_chain` can prove that nothing was
    altered, removed or reordered (AT-04). On PostgreSQL a trigger refuses UPDATE and DELETE.
    """

    seq = models.PositiveBigIntegerField(_("sequence"), unique=True, editable=False)
    occurred_at = models.DateTimeField(_("occurred at (UTC)"), editable=False)
    event_type = models.CharField(_("event type"), max_length=64)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("actor"),
        on_delete=models.PROTECT,
        related_name="audit_events",
        null=True,
        blank=True,
    )
    actor_username = models.CharField(_("actor username"), max_length=150, blank=True)
    target_type = models.CharField(
        _("record type"), max_length=100, blank=True, help_text=_("app_label.model")
    )
    target_id = models.CharField(_("record id"), max_length=64, blank=True)
    target_repr = models.CharField(_("record"), max_length=255, blank=True)
    site_code = models.CharField(_("site code"), max_length=8, blank=True)
    extra_data = models.JSONField(_("details"), default=dict, blank=True)
    reason = models.TextField(_("reason"), blank=True)
    request_id = models.CharField(_("request id"), max_length=64, blank=True)
    ip = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    signature = models.ForeignKey(
        "controlsite.ElectronicSignature",
        verbose_name=_("signature"),
        on_delete=models.PROTECT,
        related_name="audit_events",
        null=True,
        blank=True,
    )
    prev_hash = models.CharField(_("previous hash"), max_length=64)
    hash = models.CharField(_("hash"), max_length=64, unique=True)

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        ordering = ["-seq"]
        indexes = [
            models.Index(fields=["target_type", "target_id", "seq"], name="auditevent_target_idx"),
            models.Index(fields=["actor", "seq"], name="auditevent_actor_idx"),
            models.Index(fields=["event_type", "seq"], name="auditevent_type_idx"),
            models.Index(fields=["occurred_at"], name="auditevent_time_idx"),
            models.Index(fields=["site_code", "seq"], name="auditevent_site_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.event_type} by {self.actor_username or 'system'}"


class AuditReview(TimeStampedModel):
    """A signed review of a stretch of the audit trail (AT-06; PI 041-1 audit-trail review).

    The reviewer states which events they reviewed (up to `to_seq`); the chain is verified over
    that range at the moment of signing and the result is frozen into the record.
    """

    from_seq = models.PositiveBigIntegerField(_("from event"))
    to_seq = models.PositiveBigIntegerField(_("to event"))
    events_reviewed = models.PositiveIntegerField(_("events reviewed"))
    chain_intact = models.BooleanField(_("hash chain intact"))
    comment = models.TextField(_("comment"), blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("audit-trail review")
        verbose_name_plural = _("audit-trail reviews")
        ordering = ["-to_seq"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(to_seq__gte=models.F("from_seq")),
                name="auditreview_range_ordered",
            )
        ]

    def __str__(self) -> str:
        return f"Audit-trail review #{self.from_seq}–#{self.to_seq}"

    def trail_facts(self) -> list[tuple[str, object]]:
        return [
            ("Events reviewed", f"#{self.from_seq} to #{self.to_seq} ({self.events_reviewed})"),
            ("Hash chain", "intact" if self.chain_intact else "BROKEN at review time"),
            ("Comment", self.comment or "—"),
            ("Recorded (UTC)", f"{self.created_at:%d %b %Y %H:%M:%S}"),
        ]

    def signature_content(self) -> dict[str, object]:
        return {
            "from_seq": self.from_seq,
            "to_seq": self.to_seq,
            "events_reviewed": self.events_reviewed,
            "chain_intact": self.chain_intact,
            "comment": self.comment,
        }
