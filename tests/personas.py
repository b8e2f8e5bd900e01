"""Named people for tests (Zulip/healthchecks style): one per role of design §1, plus an outsider.

`make_persona("qp")` creates the user with its role (and, for roles that need it, an enrolled
TOTP authenticator). `login(client, user)` signs a test client in the way the login view would,
including the second factor, so the session middleware accepts it.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from django.test import Client
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlsite.accounts import permissions
from controlsite.accounts.middleware import LAST_ACTIVITY_KEY
from controlsite.accounts.models import User
from controlsite.accounts.roles import Role
from controlsite.accounts.services import role_grant, user_create
from controlsite.audit.context import audit_context
from training.choices import ItemKind, RecordMethod
from training.models import TrainingItem, TrainingRecord
from training.standard import ensure_standard_items

PASSWORD = "Persona-password-2026"

PERSONAS: dict[str, tuple[str, str, Role | None]] = {
    "qa": ("Quinn", "Adams", Role.CONTROL_SITE_QA),
    "qp": ("Priya", "Patel", Role.QP),
    "site_lead": ("Sam", "Lee", Role.SITE_LEAD),
    "operator": ("Omar", "Okafor", Role.SITE_OPERATOR),
    "trainer": ("Tess", "Turner", Role.TRAINER),
    "inspector": ("Ines", "Ibarra", Role.INSPECTOR),
    "integrator": ("Ivo", "Ingram", Role.INTEGRATOR),
    "sysadmin": ("Ada", "Admin", Role.SYSADMIN),
    "outsider": ("Olly", "Outsider", None),
}
ALL_PERSONAS = tuple(PERSONAS)


def make_persona(name: str, *, username: str | None = None, accountable: bool = True) -> User:
    first, last, role = PERSONAS[name]
    user = user_create(
        username=username or name,
        first_name=first,
        last_name=last,
        email=f"{username or name}@example.test",
        password=PASSWORD,
        created_by=None,
        reason="test persona",
        must_change_password=False,
        validate=False,
    )
    if accountable:
        give_accountability(user)
    if role is not None:
        role_grant(user=user, role=role, granted_by=None, reason="test persona")
    if permissions.mfa_required(user):
        TOTPDevice.objects.create(user=user, name="test", confirmed=True)
    return user


def give_accountability(user: User) -> TrainingRecord:
    """Give `user` the data-integrity and e-signature accountability item, as a record entered
    from paper before the account was first used, so that they may sign (TR-07). Tests of the
    item itself start from `make_persona(..., accountable=False)` and acknowledge it through
    the service."""
    with audit_context(reason="test persona"):
        item = TrainingItem.objects.filter(kind=ItemKind.ACCOUNTABILITY).first()
        if item is None:  # a transactional test starts from an empty table
            ensure_standard_items(TrainingItem)
            item = TrainingItem.objects.get(kind=ItemKind.ACCOUNTABILITY)
        return TrainingRecord.objects.create(
            user=user,
            item=item,
            method=RecordMethod.ENTERED,
            completed_at=timezone.now() - dt.timedelta(days=3650),
            notes="Accountability policy signed on paper before the account was first used.",
        )


# A code typed with less than this many seconds left in its 30 s step may have expired by the
# time the server checks it (argon2 and a loaded CI machine take their time).
TOTP_MARGIN_SECONDS = 10.0


def unused_totp_code(user: User) -> str:
    """A code the user's device has not accepted yet and that stays valid for at least
    TOTP_MARGIN_SECONDS: a code is accepted once, and the device takes the steps `tolerance`
    either side of now (after its learnt drift). Waits for the next step when every step in
    the window is used."""
    while True:
        device = TOTPDevice.objects.get(user=user, confirmed=True)
        elapsed = time.time() - device.t0
        now = int(elapsed // device.step)
        left = device.step - elapsed % device.step
        oldest = now + device.drift - device.tolerance
        newest = now + device.drift + device.tolerance
        target = max(device.last_t + 1, oldest)
        if target == oldest and left < TOTP_MARGIN_SECONDS:
            target += 1  # the oldest step leaves the window at the next boundary
        if target <= newest:
            return totp_code(user, offset=target - now)
        time.sleep(left + 0.05)


def totp_code(user: User, *, offset: int = 0) -> str:
    """The code the user's authenticator shows now (offset in 30 s steps)."""
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    code = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=offset)
    return f"{code:06d}"


def login(client: Client, user: User) -> Client:
    client.force_login(user, backend="controlsite.accounts.backends.LockoutAwareBackend")
    session = client.session
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is not None:
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session[LAST_ACTIVITY_KEY] = time.time()
    session.save()
    return client


def signature_fields(user: User, **overrides: Any) -> dict[str, Any]:
    """Everything an API signing action needs for `user`."""
    fields: dict[str, Any] = {
        "username": user.get_username(),
        "password": PASSWORD,
        "meaning": "reviewed",
        "reason": "reviewed for the test",
    }
    if TOTPDevice.objects.filter(user=user, confirmed=True).exists():
        fields["otp"] = unused_totp_code(user)
    fields.update(overrides)
    return fields
