"""Electronic signatures: each test names the ES item of regulatory.md it proves."""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from controlsite.accounts.models import User
from controlsite.audit.context import audit_context
from controlsite.audit.events import KernelEvent
from controlsite.audit.models import AuditEvent, AuditReview
from controlsite.audit.review import audit_review_sign
from controlsite.signatures.models import ElectronicSignature, SignatureMeaning
from controlsite.signatures.services import (
    SignatureCredentials,
    SignatureRefusedError,
    content_hash,
    sign,
    signature_is_valid,
    signatures_for,
    signing_transaction,
)
from tests.personas import PASSWORD, login, totp_code, unused_totp_code

pytestmark = pytest.mark.django_db


def creds(user: User, **changes: str | bool) -> SignatureCredentials:
    base: dict[str, str | bool] = {"username": user.get_username(), "password": PASSWORD}
    base.update(changes)
    return SignatureCredentials(**base)  # type: ignore[arg-type]


def review(user: User, **changes: str | bool) -> AuditReview:
    return audit_review_sign(
        reviewer=user, credentials=creds(user, **changes), comment="ok", reason="weekly review"
    )


def failures(user: User) -> int:
    return AuditEvent.objects.filter(
        event_type=KernelEvent.SIGNATURE_AUTH_FAILED, target_id=str(user.pk)
    ).count()


def test_es01_signature_shows_printed_name_time_and_meaning(persona, client_for):
    qa = persona("qa")
    rec = review(qa)
    sig = ElectronicSignature.objects.get(target_id=str(rec.pk))
    assert sig.printed_name == "Quinn Adams"
    assert sig.meaning == SignatureMeaning.REVIEWED
    assert sig.signed_at is not None
    page = client_for("qa").get(reverse("audit:record", args=["controlsite.auditreview", rec.pk]))
    html = page.content.decode()
    assert "Quinn Adams" in html
    assert "Reviewed" in html
    assert sig.signed_at.strftime("%Y") in html


def test_es02_signature_is_bound_to_the_exact_record_content(persona):
    qa = persona("qa")
    rec = review(qa)
    sig = ElectronicSignature.objects.get(target_id=str(rec.pk))
    assert sig.record_hash == content_hash(rec)
    # The same signature cannot be carried over to another record.
    with audit_context(reason="second review for the test"):
        other = AuditReview.objects.create(
            from_seq=rec.from_seq,
            to_seq=rec.to_seq,
            events_reviewed=1,
            chain_intact=True,
            comment="different",
        )
    assert not signature_is_valid(sig, other)


def test_es03_a_record_changed_after_signing_shows_the_signature_invalid(persona, client_for):
    qa = persona("qa")
    rec = review(qa)
    ((sig, valid),) = signatures_for(rec)
    assert valid
    with audit_context(reason="edited after signing"):
        rec.comment = "edited afterwards"
        rec.save(update_fields=["comment"])
    ((sig, valid),) = signatures_for(rec)
    assert not valid
    assert not signature_is_valid(sig)
    page = client_for("qa").get(reverse("audit:record", args=["controlsite.auditreview", rec.pk]))
    assert "Invalid" in page.content.decode()


def test_es04_a_signature_belongs_to_its_signer_and_cannot_be_made_for_someone_else(persona):
    qa, qp = persona("qa"), persona("qp")
    # QA tries to sign with the QP's username and password: refused, counted against QA.
    with pytest.raises(SignatureRefusedError) as excinfo:
        review(qa, username="qp")
    assert excinfo.value.code == "username_mismatch"
    assert not ElectronicSignature.objects.exists()
    assert failures(qa) == 1
    assert failures(qp) == 0


def test_es04_an_administrator_can_never_sign(persona):
    admin = persona("sysadmin")
    with audit_context(reason="test record"):
        rec = AuditReview.objects.create(from_seq=1, to_seq=1, events_reviewed=1, chain_intact=True)
    with pytest.raises(SignatureRefusedError) as excinfo, signing_transaction():
        sign(
            signer=admin,
            credentials=creds(admin, otp=totp_code(admin)),
            record=rec,
            meaning=SignatureMeaning.APPROVED,
            reason="trying",
        )
    assert excinfo.value.code == "not_permitted_to_sign"
    assert AuditEvent.objects.filter(event_type=KernelEvent.SIGNATURE_REFUSED).exists()


def test_es05_signing_needs_two_components_username_and_password(persona):
    qa = persona("qa")
    with pytest.raises(SignatureRefusedError) as excinfo:
        review(qa, username="")
    assert excinfo.value.code == "username_required"
    with pytest.raises(SignatureRefusedError) as excinfo:
        review(qa, password="")
    assert excinfo.value.code == "wrong_password"
    sig = ElectronicSignature.objects.get(target_id=str(review(qa).pk))
    assert sig.components == "username+password"


def test_es06_within_a_continuous_session_later_signings_need_only_the_password(persona):
    qa = persona("qa")
    client = login(Client(), qa)
    url = reverse("audit:review")
    # First signing of the session: username and password.
    client.post(url, {"comment": "", "password": PASSWORD, "meaning": "reviewed", "reason": "r1"})
    assert not ElectronicSignature.objects.exists()  # the username was missing
    client.post(
        url,
        {
            "comment": "",
            "username": "qa",
            "password": PASSWORD,
            "meaning": "reviewed",
            "reason": "r1",
        },
    )
    assert ElectronicSignature.objects.count() == 1
    # Second signing in the same session: the password alone.
    client.post(url, {"comment": "", "password": PASSWORD, "meaning": "reviewed", "reason": "r2"})
    assert ElectronicSignature.objects.count() == 2
    assert ElectronicSignature.objects.order_by("id").reverse()[0].components == "password"
    # A new session (after logout or idle timeout) asks for every component again.
    fresh = login(Client(), qa)
    fresh.post(url, {"comment": "", "password": PASSWORD, "meaning": "reviewed", "reason": "r3"})
    assert ElectronicSignature.objects.count() == 2


def test_es06_api_signings_always_need_every_component(persona):
    qa = persona("qa")
    with pytest.raises(SignatureRefusedError):
        review(qa, username="", continuous_session=False)


def test_es07_a_password_set_by_an_administrator_must_be_changed_at_first_login(persona):
    from controlsite.accounts.services import user_create

    admin = persona("sysadmin")
    user = user_create(
        username="newstarter",
        first_name="New",
        last_name="Starter",
        password="Temporary-password-2026",
        created_by=admin,
        reason="new starter",
    )
    assert user.must_change_password
    client = Client()
    response = client.post(
        reverse("accounts:login"), {"username": "newstarter", "password": "Temporary-password-2026"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:password_change")


def test_es08_a_wrong_signature_password_is_recorded_and_counts_toward_lockout(
    persona, settings, django_capture_on_commit_callbacks
):
    settings.LOCKOUT_THRESHOLD = 5
    admin = persona("sysadmin")
    qa = persona("qa")
    with django_capture_on_commit_callbacks(execute=True):
        for attempt in range(1, 6):
            with pytest.raises(SignatureRefusedError) as excinfo:
                review(qa, password="not-my-password")
            assert excinfo.value.code == "wrong_password"
            assert failures(qa) == attempt
    qa.refresh_from_db()
    assert qa.locked_at is not None
    assert AuditEvent.objects.filter(event_type=KernelEvent.LOCKED, target_id=str(qa.pk)).exists()
    # Attempted misuse is reported at once to the administrators.
    assert any(admin.email in m.to for m in mail.outbox)
    from controlsite.notifications.models import Notification

    assert Notification.objects.filter(recipient=admin, subject="Account locked: qa").exists()
    # Locked: even the right password cannot sign now.
    with pytest.raises(SignatureRefusedError) as excinfo:
        review(qa)
    assert excinfo.value.code == "account_locked"
    # Nothing was signed and the refused review was rolled back.
    assert not ElectronicSignature.objects.exists()
    assert not AuditReview.objects.exists()


def test_es09_a_qp_signature_needs_the_totp_code(persona):
    qp = persona("qp")
    with audit_context(reason="test record"):
        rec = AuditReview.objects.create(from_seq=1, to_seq=1, events_reviewed=1, chain_intact=True)

    def attempt(otp: str) -> ElectronicSignature:
        with signing_transaction():
            return sign(
                signer=qp,
                credentials=creds(qp, otp=otp),
                record=rec,
                meaning=SignatureMeaning.APPROVED,
                reason="approve",
            )

    with pytest.raises(SignatureRefusedError) as excinfo:
        attempt("")
    assert excinfo.value.code == "otp_required"
    with pytest.raises(SignatureRefusedError) as excinfo:
        attempt("000000" if totp_code(qp) != "000000" else "111111")
    assert excinfo.value.code == "otp_invalid"
    sig = attempt(unused_totp_code(qp))
    assert sig.components == "username+password+totp"


def test_sign_outside_a_signing_transaction_is_a_programming_error(persona):
    qa = persona("qa")
    with pytest.raises(RuntimeError):
        sign(
            signer=qa,
            credentials=creds(qa),
            record=qa,
            meaning=SignatureMeaning.APPROVED,
            reason="x",
        )


def test_a_signature_writes_an_audit_event_linked_to_it(persona):
    qa = persona("qa")
    rec = review(qa)
    sig = ElectronicSignature.objects.get(target_id=str(rec.pk))
    event = AuditEvent.objects.get(event_type=KernelEvent.SIGNATURE_APPLIED, signature=sig)
    assert event.actor == qa
    assert event.reason == "weekly review"
    assert event.extra_data["meaning"] == "reviewed"
