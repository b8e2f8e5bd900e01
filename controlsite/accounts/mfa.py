"""TOTP second factor (ES-09): enrolment by QR code and verification, with django-otp."""

from __future__ import annotations

import io

import qrcode
import qrcode.image.svg
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlsite.accounts.models import User
from controlsite.audit.events import KernelEvent
from controlsite.audit.services import audit_event_record


def confirmed_device(user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("id").first()


def pending_device(user: User) -> TOTPDevice:
    """The unconfirmed device an enrolment is showing, created on first need."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-id").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)
    return device


def qr_svg(device: TOTPDevice) -> str:
    image = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue().decode()


def verify_code(device: TOTPDevice, code: str) -> bool:
    cleaned = "".join(ch for ch in code if ch.isdigit())
    if len(cleaned) != 6:
        return False
    # django-otp refuses a code already used (replay) by remembering the last time step.
    return bool(device.verify_token(cleaned))


def enrol_confirm(*, user: User, device: TOTPDevice, code: str) -> bool:
    """Confirm a pending device with a first code; older devices are retired."""
    if not verify_code(device, code):
        return False
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=True).exclude(pk=device.pk).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        audit_event_record(
            event_type=KernelEvent.MFA_ENROLLED,
            actor=user,
            target=user,
            reason="TOTP authenticator enrolled",
        )
    return True
