"""Electronic signatures (design §4; 21 CFR 11.50, 11.70, 11.100, 11.200; ES-01…ES-09)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class SignatureMeaning(models.TextChoices):
    """What a signature means (ES-01). Shown beside every signature, on screen and in PDFs."""

    AUTHORED = "authored", _("Authored")
    PERFORMED = "performed", _("Performed")
    VERIFIED = "verified", _("Verified")
    REVIEWED = "reviewed", _("Reviewed")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Rejected")
    QP_CERTIFIED = "qp_certified", _("QP certified")
    ACKNOWLEDGED = "acknowledged", _("Acknowledged")


class ElectronicSignature(models.Model):
    """A person's electronic signature on one version of one record.

    The signer re-entered their password (and TOTP code where their role needs it) at signing.
    `record_hash` is the SHA-256 of the record's canonical content at that moment, which binds the
    signature to exactly that version (ES-02): if the record changes afterwards, the signature
    shows as invalid (ES-03). Rows are never changed or deleted.
    """

    signer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("signer"),
        on_delete=models.PROTECT,
        related_name="signatures",
    )
    signer_username = models.CharField(_("signer username"), max_length=150)
    printed_name = models.CharField(_("printed name"), max_length=300)
    meaning = models.CharField(_("meaning"), max_length=32, choices=SignatureMeaning.choices)
    reason = models.TextField(_("reason"))
    signed_at = models.DateTimeField(_("signed at (UTC)"))
    target_type = models.CharField(_("record type"), max_length=100)
    target_id = models.CharField(_("record id"), max_length=64)
    target_repr = models.CharField(_("record"), max_length=255)
    record_hash = models.CharField(_("record hash (SHA-256)"), max_length=64)
    components = models.CharField(
        _("authentication components"),
        max_length=64,
        help_text=_("What was re-entered at signing, e.g. username+password+totp (ES-05, ES-06)."),
    )

    class Meta:
        verbose_name = _("electronic signature")
        verbose_name_plural = _("electronic signatures")
        ordering = ["signed_at", "id"]
        indexes = [
            models.Index(fields=["target_type", "target_id"], name="esig_target_idx"),
            models.Index(fields=["signer", "signed_at"], name="esig_signer_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(meaning__in=SignatureMeaning.values),
                name="esig_meaning_valid",
            ),
            models.CheckConstraint(condition=~models.Q(reason=""), name="esig_reason_required"),
        ]

    def __str__(self) -> str:
        when = f"{self.signed_at:%Y-%m-%d %H:%M} UTC"
        return f"{self.printed_name} — {self.get_meaning_display()} — {when}"
