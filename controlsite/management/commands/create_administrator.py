"""`manage.py create_administrator`: the first system administrator, through the services.

Django's `createsuperuser` writes an account without a reason for change, so the audit trail
refuses it; this command records who was created, with which role, and why.
"""

from __future__ import annotations

import getpass
import os
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from controlsite.accounts.roles import Role
from controlsite.accounts.services import role_grant, user_create
from controlsite.errors import ApplicationError

PASSWORD_ENV = "CONTROLSITE_ADMIN_PASSWORD"  # noqa: S105  (the variable's name, not a password)


class Command(BaseCommand):
    help = "Create a system administrator (accounts only: never signs, approves or releases)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--first-name", required=True)
        parser.add_argument("--last-name", required=True)
        parser.add_argument("--email", required=True)
        parser.add_argument(
            "--reason", default="first system administrator", help="Recorded in the audit trail."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get(PASSWORD_ENV) or self._ask()
        try:
            user = user_create(
                username=options["username"],
                first_name=options["first_name"],
                last_name=options["last_name"],
                email=options["email"],
                password=password,
                created_by=None,
                reason=options["reason"],
                must_change_password=False,
            )
            role_grant(user=user, role=Role.SYSADMIN, granted_by=None, reason=options["reason"])
        except ValidationError as exc:
            raise CommandError("Password refused: " + " ".join(exc.messages)) from exc
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Administrator {user.username} created. A TOTP authenticator is enrolled "
                "by QR code at the first sign-in."
            )
        )

    def _ask(self) -> str:
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password (again): "):
            raise CommandError("The passwords differ.")
        return first
