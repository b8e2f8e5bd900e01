"""Accounts: login, lockout (ES-08), idle timeout (ES-06), TOTP (ES-09), segregation (DI-03)."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlsite.accounts import permissions
from controlsite.accounts.middleware import LAST_ACTIVITY_KEY
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability, Role
from controlsite.accounts.services import account_is_locked, role_grant, user_unlock
from controlsite.audit.events import KernelEvent
from controlsite.audit.models import AuditEvent
from controlsite.errors import ConflictError, PermissionRefusedError
from tests.personas import PASSWORD, totp_code, unused_totp_code

pytestmark = pytest.mark.django_db

LOGIN = reverse("accounts:login")


def events(kind: str, user: User) -> int:
    return AuditEvent.objects.filter(event_type=kind, target_id=str(user.pk)).count()


def post_login(client: Client, username: str, password: str):
    return client.post(LOGIN, {"username": username, "password": password})


#
# Login and logout
#


def test_login_and_logout_are_audit_events(persona):
    qa = persona("qa")
    client = Client()
    response = post_login(client, "qa", PASSWORD)
    assert response.status_code == 302
    assert events(KernelEvent.LOGIN, qa) == 1
    client.post(reverse("accounts:logout"))
    assert events(KernelEvent.LOGOUT, qa) == 1
    assert client.get(reverse("home")).status_code == 302


def test_a_failed_login_is_an_audit_event_and_says_nothing_about_which_part_was_wrong(persona):
    qa = persona("qa")
    response = post_login(Client(), "qa", "wrong-password")
    assert response.status_code == 200
    assert "username or password is not correct" in response.content.decode()
    assert events(KernelEvent.LOGIN_FAILED, qa) == 1
    unknown = post_login(Client(), "nobody", "wrong-password")
    assert "username or password is not correct" in unknown.content.decode()
    assert AuditEvent.objects.filter(
        event_type=KernelEvent.LOGIN_FAILED, actor_username="nobody"
    ).exists()


def test_logout_is_post_only(client_for):
    client = client_for("qa")
    assert client.get(reverse("accounts:logout")).status_code == 405


#
# Lockout (ES-08)
#


def test_five_failed_logins_within_fifteen_minutes_lock_the_account(persona):
    qa = persona("qa")
    client = Client()
    for _ in range(5):
        post_login(client, "qa", "wrong-password")
    qa.refresh_from_db()
    assert qa.locked_at is not None
    assert events(KernelEvent.LOCKED, qa) == 1
    # The right password no longer works while the lock stands.
    response = post_login(client, "qa", PASSWORD)
    assert response.status_code == 200
    assert "locked" in response.content.decode()
    assert events(KernelEvent.LOGIN, qa) == 0


def test_failures_older_than_the_window_do_not_count(persona):
    qa = persona("qa")
    for _ in range(4):
        post_login(Client(), "qa", "wrong-password")
    # Age the four failures beyond the 15-minute window (test-only rewrite of time).
    old = timezone.now() - dt.timedelta(minutes=16)
    from tests.controlsite.test_audit_trail import tampering

    with tampering():
        AuditEvent.objects.filter(event_type=KernelEvent.LOGIN_FAILED).update(occurred_at=old)
    post_login(Client(), "qa", "wrong-password")
    qa.refresh_from_db()
    assert qa.locked_at is None


def test_a_successful_login_resets_the_failure_count(persona):
    qa = persona("qa")
    for _ in range(4):
        post_login(Client(), "qa", "wrong-password")
    assert post_login(Client(), "qa", PASSWORD).status_code == 302
    for _ in range(4):
        post_login(Client(), "qa", "wrong-password")
    qa.refresh_from_db()
    assert qa.locked_at is None


def test_an_administrator_lifts_a_lock_and_it_is_audited(persona):
    admin, qa = persona("sysadmin"), persona("qa")
    for _ in range(5):
        post_login(Client(), "qa", "wrong-password")
    qa.refresh_from_db()
    user_unlock(user=qa, unlocked_by=admin, reason="identity confirmed by phone")
    qa.refresh_from_db()
    assert qa.locked_at is None
    event = AuditEvent.objects.filter(event_type=KernelEvent.UNLOCKED).latest("seq")
    assert event.actor == admin
    assert event.reason == "identity confirmed by phone"
    assert post_login(Client(), "qa", PASSWORD).status_code == 302


def test_only_an_administrator_lifts_a_lock(persona):
    qa, qp = persona("qa"), persona("qp")
    for _ in range(5):
        post_login(Client(), "qp", "wrong-password")
    qp.refresh_from_db()
    with pytest.raises(PermissionRefusedError):
        user_unlock(user=qp, unlocked_by=qa, reason="trying")


def test_a_lock_lifts_itself_after_the_configured_time(persona, settings):
    settings.LOCKOUT_DURATION_SECONDS = 600
    qa = persona("qa")
    for _ in range(5):
        post_login(Client(), "qa", "wrong-password")
    qa.refresh_from_db()
    assert account_is_locked(qa)
    qa.locked_at = timezone.now() - dt.timedelta(seconds=601)
    assert not account_is_locked(qa)


def test_a_zero_lockout_duration_keeps_the_lock_until_an_administrator_lifts_it(persona, settings):
    settings.LOCKOUT_DURATION_SECONDS = 0
    qa = persona("qa")
    qa.locked_at = timezone.now() - dt.timedelta(days=30)
    assert account_is_locked(qa)


def test_a_locked_user_is_signed_out_of_an_open_session(persona, client_for):
    client = client_for("qa")
    for _ in range(5):
        post_login(Client(), "qa", "wrong-password")
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)


#
# Idle timeout (ES-06 defines the continuous session)
#


def test_an_idle_session_is_ended_after_fifteen_minutes(persona, client_for, settings):
    assert settings.IDLE_TIMEOUT_SECONDS == 900
    qa = persona("qa")
    client = client_for("qa")
    assert client.get(reverse("home")).status_code == 200
    session = client.session
    session[LAST_ACTIVITY_KEY] = time.time() - 901
    session.save()
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)
    logout = AuditEvent.objects.filter(event_type=KernelEvent.LOGOUT, target_id=str(qa.pk)).get()
    assert "without activity" in logout.reason
    assert client.get(reverse("home")).status_code == 302


def test_activity_keeps_the_session_alive(client_for):
    client = client_for("qa")
    session = client.session
    session[LAST_ACTIVITY_KEY] = time.time() - 840
    session.save()
    assert client.get(reverse("home")).status_code == 200


#
# TOTP second factor (ES-09)
#


def test_a_qp_must_give_a_totp_code_to_sign_in(persona):
    qp = persona("qp")
    client = Client()
    response = post_login(client, "qp", PASSWORD)
    assert response["Location"] == reverse("accounts:mfa_verify")
    assert client.get(reverse("home")).status_code == 302  # not signed in yet
    bad = "123456" if totp_code(qp) != "123456" else "654321"
    wrong = client.post(reverse("accounts:mfa_verify"), {"otp": bad})
    assert "not correct" in wrong.content.decode()
    assert events(KernelEvent.OTP_FAILED, qp) == 1
    ok = client.post(reverse("accounts:mfa_verify"), {"otp": unused_totp_code(qp)})
    assert ok.status_code == 302
    assert client.get(reverse("home")).status_code == 200
    login_event = AuditEvent.objects.filter(
        event_type=KernelEvent.LOGIN, target_id=str(qp.pk)
    ).get()
    assert login_event.extra_data == {"mfa": True}


def test_a_qp_without_an_authenticator_must_enrol_by_qr_code_before_signing_in(persona):
    qp = persona("qp")
    TOTPDevice.objects.filter(user=qp).delete()
    client = Client()
    response = post_login(client, "qp", PASSWORD)
    assert response["Location"] == reverse("accounts:mfa_enrol")
    page = client.get(reverse("accounts:mfa_enrol"))
    html = page.content.decode()
    assert "<svg" in html  # the QR code
    device = TOTPDevice.objects.get(user=qp, confirmed=False)
    assert client.get(reverse("home")).status_code == 302
    from django_otp.oath import totp

    code = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"
    done = client.post(reverse("accounts:mfa_enrol"), {"otp": code})
    assert done.status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    assert events(KernelEvent.MFA_ENROLLED, qp) == 1
    assert client.get(reverse("home")).status_code == 200


def test_totp_is_optional_for_other_roles(persona):
    persona("qa")
    client = Client()
    assert post_login(client, "qa", PASSWORD)["Location"] == reverse("home")


def test_a_session_without_the_second_factor_is_ended_for_a_qp(persona):
    qp = persona("qp")
    client = Client()
    client.force_login(qp, backend="controlsite.accounts.backends.LockoutAwareBackend")
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)


def test_wrong_totp_codes_count_toward_lockout(persona):
    qp = persona("qp")
    bad = "123456" if totp_code(qp) != "123456" else "654321"
    for _ in range(5):
        client = Client()
        post_login(client, "qp", PASSWORD)
        client.post(reverse("accounts:mfa_verify"), {"otp": bad})
    qp.refresh_from_db()
    assert qp.locked_at is not None


#
# Roles and segregation of duties (DI-03)
#


def test_the_administrator_role_cannot_be_combined_with_a_signing_role(persona):
    admin = persona("sysadmin")
    qa = persona("qa")
    with pytest.raises(ConflictError) as excinfo:
        role_grant(user=qa, role=Role.SYSADMIN, granted_by=admin, reason="try")
    assert excinfo.value.code == "segregation_of_duties"


def test_an_administrator_has_no_signing_or_release_capability(persona):
    admin = persona("sysadmin")
    assert not permissions.user_can(admin, Capability.SIGN)
    assert not permissions.user_can(admin, Capability.CERTIFY_BATCH)
    assert permissions.user_can(admin, Capability.MANAGE_ACCOUNTS)


def test_a_superuser_is_treated_as_an_administrator_and_cannot_sign(persona):
    qa = persona("qa")
    qa.is_superuser = True
    assert not permissions.user_can(qa, Capability.SIGN)


def test_an_expired_role_grant_no_longer_counts(persona):
    admin = persona("sysadmin")
    from controlsite.accounts.services import user_create

    visitor = user_create(
        username="mhra-visitor",
        first_name="Vi",
        last_name="Sitor",
        created_by=admin,
        reason="inspection",
    )
    role_grant(
        user=visitor,
        role=Role.INSPECTOR,
        granted_by=admin,
        reason="inspection",
        expires_at=timezone.now() + dt.timedelta(days=1),
    )
    assert permissions.has_role(visitor, Role.INSPECTOR)
    permissions.forget_roles(visitor)
    from controlsite.accounts.models import RoleGrant
    from controlsite.audit.context import audit_context

    grant = RoleGrant.objects.get(user=visitor)
    with audit_context(reason="test: the inspection window passed"):
        grant.expires_at = timezone.now() - dt.timedelta(seconds=1)
        grant.save(update_fields=["expires_at"])
    assert not permissions.has_role(visitor, Role.INSPECTOR)


def test_nobody_grants_roles_without_being_an_administrator(persona):
    qa, operator = persona("qa"), persona("operator")
    with pytest.raises(PermissionRefusedError):
        role_grant(user=operator, role=Role.QP, granted_by=qa, reason="promotion")
