"""`manage.py totp_code <username>`: the code a demo user's authenticator shows right now.

For demos and development only (`make totp USER=qp`): it reads the second factor straight from
the database, so it is refused in production.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlsite.accounts.models import User


def current_code(device: TOTPDevice) -> str:
    """The 6-digit (or `device.digits`) code for the current time step, with the device drift."""
    value = totp(
        device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=device.drift
    )
    return f"{value:0{device.digits}d}"


class Command(BaseCommand):
    help = "Print the current TOTP code of a user's confirmed authenticator (not in production)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="The demo user, e.g. qp or admin.")

    def handle(self, *args: Any, **options: Any) -> None:
        if getattr(settings, "ENVIRONMENT", "production") == "production":
            raise CommandError("totp_code reveals a second factor; it is refused in production.")
        username: str = options["username"]
        user = User.objects.filter(username__iexact=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}. Run `make demo` (or demo_setup) first.")
        device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("id").first()
        if device is None:
            raise CommandError(
                f"{user.get_username()} has no confirmed TOTP authenticator, so signs in with "
                "the password alone."
            )
        remaining = device.step - int(time.time() - device.t0) % device.step
        self.stdout.write(current_code(device))
        if options["verbosity"] >= 1:
            self.stderr.write(
                f"(for {user.get_username()}; valid for about {remaining} s more, "
                "and accepted once)"
            )
