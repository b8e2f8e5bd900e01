"""`manage.py demo_setup` and `manage.py totp_code`: the accounts `make demo` prints."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlsite.accounts import permissions
from controlsite.accounts.models import RoleGrant, User
from controlsite.accounts.roles import Role
from controlsite.api.models import ApiToken
from controlsite.audit.events import KernelEvent
from controlsite.audit.models import AuditEvent
from controlsite.audit.services import audit_chain_verify
from controlsite.management.commands.demo_setup import DEMO_PEOPLE
from tests.personas import totp_code


def run(*args: str) -> str:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue()


def counts() -> dict[str, int]:
    return {
        "users": User.objects.count(),
        "grants": RoleGrant.objects.count(),
        "devices": TOTPDevice.objects.count(),
        "tokens": ApiToken.objects.count(),
        "events": AuditEvent.objects.count(),
    }


def test_demo_setup_gives_every_role_a_user_and_a_second_run_changes_nothing(db):
    first = run("demo_setup")
    after_first = counts()
    second = run("demo_setup")

    assert counts() == after_first
    assert after_first["users"] == len(DEMO_PEOPLE) == len(Role)
    for role in Role:
        holders = [u for u in User.objects.all() if role in permissions.user_roles(u)]
        assert len(holders) == 1, role
    for username in ("qp", "admin"):
        user = User.objects.get(username=username)
        assert permissions.mfa_required(user)
        assert TOTPDevice.objects.filter(user=user, confirmed=True).count() == 1
    assert not TOTPDevice.objects.exclude(user__username__in=["qp", "admin"]).exists()
    inspector = RoleGrant.objects.get(user__username="inspector", role=Role.INSPECTOR)
    assert inspector.expires_at is not None

    # Every write went through an audited path with the reason "demo data".
    created = AuditEvent.objects.filter(event_type=KernelEvent.USER_CREATED)
    assert created.count() == len(DEMO_PEOPLE)
    assert set(created.values_list("reason", flat=True)) == {"demo data"}
    assert AuditEvent.objects.filter(event_type=KernelEvent.MFA_ENROLLED).count() == 2
    assert User.history.filter(history_change_reason="demo data").count() == len(DEMO_PEOPLE)
    assert audit_chain_verify().intact

    # The token secret is printed once, when it is made; the TOTP secrets every time.
    assert ApiToken.objects.filter(user__username="integrator").count() == 1
    assert "cst_" in first
    assert "cst_" not in second
    for output in (first, second):
        assert "ControlSite-demo-2026" in output
        for person in DEMO_PEOPLE:
            assert person.username in output


def test_demo_setup_keeps_the_same_totp_secret_on_a_rerun(db):
    run("demo_setup")
    key = TOTPDevice.objects.get(user__username="qp").key
    TOTPDevice.objects.filter(user__username="qp").delete()
    run("demo_setup")
    assert TOTPDevice.objects.get(user__username="qp").key == key


def test_demo_setup_is_refused_in_production(db, settings):
    settings.ENVIRONMENT = "production"
    with pytest.raises(CommandError, match="refused in production"):
        run("demo_setup")
    assert not User.objects.exists()


def test_totp_code_prints_what_the_authenticator_shows(db):
    run("demo_setup")
    qp = User.objects.get(username="qp")
    before = totp_code(qp)
    printed = run("totp_code", "qp").strip()
    after = totp_code(qp)
    assert printed in {before, after}  # a 30 s step may turn between the two reads
    assert len(printed) == 6
    assert printed.isdigit()


def test_totp_code_refuses_a_user_without_an_authenticator(db):
    run("demo_setup")
    with pytest.raises(CommandError, match="no confirmed TOTP authenticator"):
        run("totp_code", "qa")
    with pytest.raises(CommandError, match="No user"):
        run("totp_code", "nobody")


@pytest.mark.django_db
def test_create_administrator_makes_an_audited_administrator(monkeypatch):
    monkeypatch.setenv("CONTROLSITE_ADMIN_PASSWORD", "First-admin-password-2026")
    call_command(
        "create_administrator",
        "itadmin",
        "--first-name",
        "Alex",
        "--last-name",
        "Morgan",
        "--email",
        "it@example.org",
    )
    user = User.objects.get(username="itadmin")
    assert permissions.user_roles(user) == {Role.SYSADMIN}
    assert user.check_password("First-admin-password-2026")
    assert AuditEvent.objects.filter(
        target_id=str(user.pk), event_type="access.role_granted"
    ).exists()
