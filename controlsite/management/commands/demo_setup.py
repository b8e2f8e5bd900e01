"""`manage.py demo_setup`: the demo accounts `make demo` signs in with, and the demo sites.

Creates one person per role of design §1 through the accounts services (so every account, role
grant and enrolment is an audit event with the reason "demo data"), a TOTP authenticator for the
roles that need a second factor, and one API token for the integrator.

Then every app's demo data, from the kernel's demo registry (`controlsite.demo`): each app
registers a loader in `AppConfig.ready()` that acts through its own services as the demo person
whose role would do the work (the sites app: the Control Site and twelve sites in every status).
All of it is one transaction under the reason "demo data".

Running it again changes nothing that is already there and creates no duplicates: people are
keyed on usernames, and each loader keys its records likewise (sites on their codes).

The password and the TOTP keys are published in the README: this command refuses to run in
production.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import hashlib
import io
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlsite import demo
from controlsite.accounts import permissions
from controlsite.accounts.models import User
from controlsite.accounts.roles import Role
from controlsite.accounts.services import role_grant, user_create
from controlsite.api.models import ApiToken, TokenScope
from controlsite.api.tokens import api_token_create
from controlsite.audit.context import audit_context
from controlsite.audit.events import KernelEvent
from controlsite.audit.services import audit_event_record
from controlsite.demo import DEMO_PASSWORD, DEMO_REASON
from controlsite.errors import ApplicationError
from controlsite.tasks import health_ping

REASON = DEMO_REASON
INSPECTOR_ACCESS = dt.timedelta(days=90)
INTEGRATOR_LABEL = "demo integrator"
DEVICE_NAME = "demo authenticator"


@dataclasses.dataclass(frozen=True)
class DemoPerson:
    username: str
    first_name: str
    last_name: str
    role: Role
    job: str


DEMO_PEOPLE: tuple[DemoPerson, ...] = (
    DemoPerson("qa", "Quinn", "Adams", Role.CONTROL_SITE_QA, "Control Site QA manager"),
    DemoPerson("qp", "Priya", "Patel", Role.QP, "Qualified Person"),
    DemoPerson("sitelead", "Sam", "Lee", Role.SITE_LEAD, "Site lead, spoke site"),
    DemoPerson("operator", "Omar", "Okafor", Role.SITE_OPERATOR, "Manufacturing operator"),
    DemoPerson("trainer", "Tess", "Turner", Role.TRAINER, "GxP trainer"),
    DemoPerson("inspector", "Ines", "Ibarra", Role.INSPECTOR, "Inspector (read-only, 90 days)"),
    DemoPerson("integrator", "Ivo", "Ingram", Role.INTEGRATOR, "Closed-system integration"),
    DemoPerson("admin", "Alex", "Morgan", Role.SYSADMIN, "System administrator"),
)


def demo_totp_key(username: str) -> str:
    """A fixed 40-hex-digit (160-bit) TOTP key per demo user, so reruns keep the same secret."""
    return hashlib.sha256(f"controlsite-demo-totp:{username}".encode()).hexdigest()[:40]


def base32_secret(device: TOTPDevice) -> str:
    """The secret as an authenticator app expects it to be typed in."""
    return base64.b32encode(device.bin_key).decode("ascii")


class Command(BaseCommand):
    help = (
        "Create the demo accounts (one per role), TOTP authenticators for QP and administrator, "
        "and an integrator API token. Idempotent. Refused in production."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--quiet-secrets",
            action="store_true",
            help="Do not print the TOTP secrets (the login table is still printed).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if getattr(settings, "ENVIRONMENT", "production") == "production":
            raise CommandError(
                "demo_setup creates accounts with a published password; it is refused in "
                "production. Run it with CONTROLSITE_ENV=development (as `make demo` does)."
            )
        # The console e-mail backend of a development setup would print the alerts that a
        # suspension or cessation sends between the lines of the report: keep them aside.
        mail = io.StringIO()
        with (
            contextlib.redirect_stdout(mail),
            audit_context(reason=REASON, origin="manage.py demo_setup"),
            transaction.atomic(),
        ):
            rows = [self._person(person) for person in DEMO_PEOPLE]
            devices = self._authenticators()
            token_secret = self._integrator_token()
            sections = [self._load(loader) for loader in demo.loaders()]
            # A first heartbeat, so the dashboard shows the in-process worker alive.
            transaction.on_commit(lambda: health_ping.delay())
        self._report(
            rows,
            devices,
            token_secret,
            sections,
            show_secrets=not options["quiet_secrets"],
            mailed=bool(mail.getvalue()),
        )

    #
    # Writes (each through a service, or audited here where no service exists)
    #

    def _person(self, person: DemoPerson) -> tuple[DemoPerson, str]:
        user = User.objects.filter(username__iexact=person.username).first()
        state = "existing"
        if user is None:
            user = user_create(
                username=person.username,
                first_name=person.first_name,
                last_name=person.last_name,
                email=f"{person.username}@controlsite.example",
                password=DEMO_PASSWORD,
                created_by=None,
                reason=REASON,
                must_change_password=False,
                validate=False,
            )
            state = "created"
        if person.role not in permissions.user_roles(user):
            expires_at = (
                timezone.now() + INSPECTOR_ACCESS if person.role == Role.INSPECTOR else None
            )
            role_grant(
                user=user, role=person.role, granted_by=None, reason=REASON, expires_at=expires_at
            )
            if state == "existing":
                state = "role granted"
        return person, state

    def _authenticators(self) -> list[tuple[User, TOTPDevice, bool]]:
        """A confirmed TOTP device for every demo user whose role needs a second factor."""
        result: list[tuple[User, TOTPDevice, bool]] = []
        for person in DEMO_PEOPLE:
            user = User.objects.get(username__iexact=person.username)
            if not permissions.mfa_required(user):
                continue
            device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("id").first()
            if device is None:
                device = TOTPDevice.objects.create(
                    user=user, name=DEVICE_NAME, confirmed=True, key=demo_totp_key(user.username)
                )
                audit_event_record(
                    event_type=KernelEvent.MFA_ENROLLED,
                    as_system=True,
                    target=user,
                    extra={"device": DEVICE_NAME},
                    reason=REASON,
                )
            result.append((user, device, device.key == demo_totp_key(user.username)))
        return result

    def _integrator_token(self) -> str | None:
        """The integrator's token, made once; its secret exists only in this return value."""
        integrator = User.objects.get(username__iexact="integrator")
        if ApiToken.objects.filter(
            user=integrator, name=INTEGRATOR_LABEL, revoked_at__isnull=True
        ).exists():
            return None
        _, secret = api_token_create(
            user=integrator,
            name=INTEGRATOR_LABEL,
            scope=TokenScope.READ_WRITE,
            created_by=integrator,
        )
        return secret

    @staticmethod
    def _load(loader: demo.DemoLoader) -> demo.DemoSection:
        try:
            return loader.load()
        except ApplicationError as exc:
            raise CommandError(f"The {loader.name} demo data could not be made: {exc}") from exc

    #
    # Output
    #

    def _report(
        self,
        rows: list[tuple[DemoPerson, str]],
        devices: list[tuple[User, TOTPDevice, bool]],
        token_secret: str | None,
        sections: list[demo.DemoSection],
        *,
        show_secrets: bool,
        mailed: bool,
    ) -> None:
        out = self.stdout
        mfa_users = {user.username for user, _, _ in devices}
        header = ("Username", "Name", "Role", "Second factor", "This run")
        table = [
            (
                person.username,
                f"{person.first_name} {person.last_name}",
                str(person.role.label),
                "TOTP" if person.username in mfa_users else "-",
                state,
            )
            for person, state in rows
        ]
        widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]

        def line(cells: tuple[str, ...]) -> str:
            return "  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))

        out.write("")
        out.write(self.style.MIGRATE_HEADING("Demo logins"))
        out.write(f"  Password for every account: {DEMO_PASSWORD}")
        out.write("")
        out.write(line(header).rstrip())
        out.write(line(tuple("-" * w for w in widths)).rstrip())
        for row in table:
            out.write(line(row).rstrip())
        out.write("")
        for section in sections:
            out.write(self.style.MIGRATE_HEADING(section.title))
            for text in section.lines:
                out.write(text)
            out.write("")
        if mailed:
            out.write(
                "  The notices this demo data raised (e.g. a site suspended) were also e-mailed\n"
                "  to the demo users by the console e-mail backend; not shown here."
            )
            out.write("")
        if devices:
            out.write(self.style.MIGRATE_HEADING("Second factor (TOTP) for QP and administrator"))
            out.write(
                "  Add the secret to an authenticator app, or run `make totp USER=<username>`\n"
                "  for the current 6-digit code (a code is accepted once per 30 s)."
            )
            for user, device, is_demo_key in devices:
                if not is_demo_key:
                    out.write(f"  {user.username:<10} own authenticator enrolled (not shown)")
                elif show_secrets:
                    out.write(f"  {user.username:<10} {base32_secret(device)}")
                else:
                    out.write(f"  {user.username:<10} (secret hidden)")
            out.write("")
        out.write(self.style.MIGRATE_HEADING("Integrator API token"))
        if token_secret is not None:
            out.write(
                "  Created now. Copy it: it is stored only as a hash and cannot be shown again.\n"
                f"  {token_secret}\n"
                "  Try: curl -H 'Authorization: Bearer <token>' http://127.0.0.1:8000/api/v1/"
            )
        else:
            out.write(
                f"  {INTEGRATOR_LABEL!r} already exists; its secret was shown only when it was\n"
                "  created. `make clean-demo` then `make demo` starts over with a new one."
            )
        out.write("")
        out.write(
            self.style.WARNING(
                "  These are public demo credentials. Never load them into a real system."
            )
        )
