"""Account administration (AT-07, DI-02, ES-07) and API tokens from the account page."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from controlsite.accounts import permissions
from controlsite.accounts.models import User
from controlsite.accounts.roles import Role
from controlsite.api.models import ApiToken
from controlsite.audit.events import KernelEvent
from controlsite.audit.models import AuditEvent
from tests.matrix import Matrix, only
from tests.personas import PASSWORD, login

pytestmark = pytest.mark.django_db

USERS_PAGE = Matrix("page:accounts-users", only({"sysadmin": 200}, others=403, anonymous=302))
TOKEN_PAGE = Matrix(
    "page:accounts-token-create", only({"qa": 200, "integrator": 200}, others=403, anonymous=302)
)


@pytest.mark.parametrize(("who", "expected"), USERS_PAGE.cases())
def test_account_administration_permissions(browser_as, who, expected):
    assert browser_as(who).get(reverse("accounts:users")).status_code == expected


@pytest.mark.parametrize(("who", "expected"), TOKEN_PAGE.cases())
def test_token_page_permissions(browser_as, who, expected):
    assert browser_as(who).get(reverse("accounts:token_create")).status_code == expected


def test_an_administrator_creates_an_account_who_must_change_the_password(client_for, persona):
    admin = client_for("sysadmin")
    response = admin.post(
        reverse("accounts:user_create"),
        {
            "username": "nurse.jones",
            "first_name": "Nia",
            "last_name": "Jones",
            "email": "nia@example.test",
            "temporary_password": "Temporary-pass-2026",
            "reason": "new site operator at ward 7",
        },
    )
    user = User.objects.get(username="nurse.jones")
    assert response["Location"] == reverse("accounts:user_detail", args=[user.pk])
    assert user.must_change_password
    event = AuditEvent.objects.get(event_type=KernelEvent.USER_CREATED, target_id=str(user.pk))
    assert event.reason == "new site operator at ward 7"
    # At first sign-in every page leads to the password change until it is done.
    client = Client()
    client.post(
        reverse("accounts:login"), {"username": "nurse.jones", "password": "Temporary-pass-2026"}
    )
    assert client.get(reverse("home"))["Location"] == reverse("accounts:password_change")
    done = client.post(
        reverse("accounts:password_change"),
        {
            "current_password": "Temporary-pass-2026",
            "new_password": "My-own-secret-2026",
            "repeat_password": "My-own-secret-2026",
        },
    )
    assert done.status_code == 302
    assert client.get(reverse("home")).status_code == 200


def test_an_administrator_grants_and_revokes_roles_with_a_reason(client_for, persona):
    operator = persona("operator")
    admin = client_for("sysadmin")
    url = reverse("accounts:user_action", args=[operator.pk, "grant"])
    admin.post(url, {"grant-role": "trainer", "grant-reason": "trains new starters"})
    assert permissions.has_role(User.objects.get(pk=operator.pk), Role.TRAINER)
    admin.post(
        reverse("accounts:user_action", args=[operator.pk, "revoke"]),
        {"revoke-role": "trainer", "revoke-reason": "no longer trains"},
    )
    assert not permissions.has_role(User.objects.get(pk=operator.pk), Role.TRAINER)
    kinds = list(
        AuditEvent.objects.filter(target_id=str(operator.pk), event_type__startswith="access.role")
        .order_by("seq")
        .values_list("event_type", "reason")
    )
    assert kinds[-2:] == [
        (KernelEvent.ROLE_GRANTED, "trains new starters"),
        (KernelEvent.ROLE_REVOKED, "no longer trains"),
    ]


def test_a_change_without_a_reason_changes_nothing(client_for, persona):
    operator = persona("operator")
    admin = client_for("sysadmin")
    before = AuditEvent.objects.count()
    admin.post(
        reverse("accounts:user_action", args=[operator.pk, "grant"]), {"grant-role": "trainer"}
    )
    assert not permissions.has_role(User.objects.get(pk=operator.pk), Role.TRAINER)
    assert AuditEvent.objects.count() == before


def test_an_administrator_lifts_a_lock_from_the_account_page(client_for, persona):
    qa = persona("qa")
    for _ in range(5):
        Client().post(reverse("accounts:login"), {"username": "qa", "password": "wrong"})
    client_for("sysadmin").post(
        reverse("accounts:user_action", args=[qa.pk, "unlock"]),
        {"unlock-reason": "verified by phone"},
    )
    qa.refresh_from_db()
    assert qa.locked_at is None


def test_a_deactivated_user_cannot_sign_in(client_for, persona):
    qa = persona("qa")
    client_for("sysadmin").post(
        reverse("accounts:user_action", args=[qa.pk, "deactivate"]),
        {"deactivate-reason": "left the trust"},
    )
    response = Client().post(reverse("accounts:login"), {"username": "qa", "password": PASSWORD})
    assert response.status_code == 200
    assert not User.objects.get(pk=qa.pk).is_active


def test_an_unknown_action_is_refused(client_for, persona):
    qa = persona("qa")
    response = client_for("sysadmin").post(
        reverse("accounts:user_action", args=[qa.pk, "delete"]), {"reason": "x"}
    )
    assert response.status_code == 403


def test_an_integrator_creates_a_token_and_sees_the_secret_once(client_for, persona):
    integrator = persona("integrator")
    client = login(Client(), integrator)
    page = client.post(
        reverse("accounts:token_create"),
        {
            "name": "cell processor 3",
            "scope": "read_write",
            "expires_in_days": 30,
            "site_codes": "lon1",
        },
    )
    html = page.content.decode()
    token = ApiToken.objects.get(user=integrator)
    assert f"cst_{token.prefix}_" in html
    assert token.site_codes == ["LON1"]
    again = client.get(reverse("accounts:account")).content.decode()
    assert f"cst_{token.prefix}_" not in again
    assert token.prefix in again
    client.post(reverse("accounts:token_revoke", args=[token.pk]))
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_nobody_revokes_someone_elses_token(client_for, persona):
    from controlsite.api.models import TokenScope
    from controlsite.api.tokens import api_token_create

    integrator = persona("integrator")
    token, _ = api_token_create(
        user=integrator, name="x", scope=TokenScope.READ, created_by=integrator
    )
    response = client_for("qa").post(reverse("accounts:token_revoke", args=[token.pk]))
    assert response.status_code == 404


def _superuser() -> User:
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from controlsite.audit.context import audit_context

    with audit_context(reason="test: support superuser"):
        user = User.objects.create_superuser("support", "support@example.test", PASSWORD)
    TOTPDevice.objects.create(user=user, name="test", confirmed=True)  # administrators need MFA
    return user


def test_the_django_admin_records_the_reason_typed_for_a_change(persona):
    qa = persona("qa")
    client = login(Client(), _superuser())
    url = reverse("admin:controlsite_user_change", args=[qa.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert 'name="reason"' in page.content.decode()  # the reason box is on the form
    refused = client.post(url, {"first_name": "Quinn", "last_name": "Adams", "email": "q@x.test"})
    assert refused.status_code == 200  # the form comes back: the reason is missing
    assert User.objects.get(pk=qa.pk).email == "qa@example.test"
    client.post(
        url,
        {
            "first_name": "Quinn",
            "last_name": "Adams",
            "email": "q@x.test",
            "reason": "new NHS e-mail address",
        },
    )
    qa.refresh_from_db()
    assert qa.email == "q@x.test"
    row = qa.history.order_by("-history_id")[0]
    assert row.history_change_reason == "new NHS e-mail address"
    assert row.history_username == "support"
