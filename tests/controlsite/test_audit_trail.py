"""The audit trail: history rows with reasons, the hash chain, DB immutability (AT-01…AT-08)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from controlsite.accounts.models import RoleGrant, User
from controlsite.accounts.roles import Role
from controlsite.accounts.services import role_grant, role_revoke
from controlsite.audit.context import audit_context
from controlsite.audit.events import KernelEvent
from controlsite.audit.history import ChangeReasonMissingError, create_with_history
from controlsite.audit.immutability import TRIGGER_NAME, history_tables, protected_tables
from controlsite.audit.models import AuditEvent
from controlsite.audit.review import audit_review_sign
from controlsite.audit.services import audit_chain_verify, audit_event_record
from controlsite.signatures.services import SignatureCredentials
from tests.personas import PASSWORD

pytestmark = pytest.mark.django_db

on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the append-only trigger exists on PostgreSQL"
)


@contextmanager
def tampering() -> Iterator[None]:
    """Let a test alter audit rows the way an attacker with DB superuser rights could."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = replica")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SET session_replication_role = DEFAULT")
    else:
        yield


def _events(n: int) -> list[AuditEvent]:
    with audit_context(reason="test"):
        return [
            audit_event_record(event_type="test.event", actor_username="t", extra={"n": i})
            for i in range(n)
        ]


#
# Row history (AT-01, AT-02, AT-03)
#


def test_every_regulated_write_leaves_a_history_row_with_who_why_and_request(persona):
    admin = persona("sysadmin")
    user = persona("operator")
    with audit_context(request_id="req-12345678", ip="10.0.0.7", user=admin):
        role_grant(user=user, role=Role.TRAINER, granted_by=admin, reason="covers training")
    grant = RoleGrant.objects.get(user=user, role=Role.TRAINER)
    row = grant.history.get()
    assert row.history_change_reason == "covers training"
    assert row.history_username == "sysadmin"
    assert row.request_id == "req-12345678"
    assert row.ip == "10.0.0.7"
    assert row.history_type == "+"


def test_a_change_records_old_and_new_values_and_the_reason(persona):
    admin, user = persona("sysadmin"), persona("operator")
    role_grant(user=user, role=Role.TRAINER, granted_by=admin, reason="covers training")
    role_revoke(user=user, role=Role.TRAINER, revoked_by=admin, reason="cover ended")
    grant = RoleGrant.objects.get(user=user, role=Role.TRAINER)
    newest, older = grant.history.order_by("-history_id")[:2]
    delta = newest.diff_against(older)
    changed = {c.field for c in delta.changes}
    assert {"revoked_at", "revoked_by"} <= changed
    assert newest.history_change_reason == "cover ended"


def test_a_write_without_a_reason_is_refused_and_nothing_is_saved(persona):
    user = persona("operator")
    user.first_name = "Changed"
    with pytest.raises(ChangeReasonMissingError):
        user.save(update_fields=["first_name"])
    assert User.objects.get(pk=user.pk).first_name == "Omar"
    assert user.history.count() == 1


HISTORY_FIELDS = ["history_type", "history_change_reason", "history_username", "request_id"]
HISTORY_FIELDS += ["ip", "user_agent", "history_user_id", "user_id", "role", "granted_by_id"]


def test_rows_created_together_get_the_history_rows_save_would_write(persona):
    """AT-01, AT-03: `create_with_history` is a bulk insert that keeps every history row."""
    admin, one, two = persona("sysadmin"), persona("operator"), persona("trainer")
    with audit_context(request_id="req-1", ip="10.0.0.7", user=admin, reason="cover"):
        saved = RoleGrant(user=one, role=Role.QP, granted_by=admin)
        saved.save()
        together = create_with_history(
            [
                RoleGrant(user=one, role=Role.TRAINER, granted_by=admin),
                RoleGrant(user=two, role=Role.QP, granted_by=admin),
            ]
        )
    assert all(grant.pk for grant in together)
    expected = saved.history.values(*HISTORY_FIELDS).get()
    for grant in together:
        row = grant.history.values(*HISTORY_FIELDS).get()
        assert {**row, "user_id": 0, "role": ""} == {**expected, "user_id": 0, "role": ""}
        assert (row["user_id"], row["role"]) == (grant.user_id, grant.role)
    assert RoleGrant.objects.get(pk=together[1].pk).role == Role.QP


def test_rows_created_together_without_a_reason_are_refused_and_none_is_saved(persona):
    admin, user = persona("sysadmin"), persona("operator")
    before = RoleGrant.objects.count()
    with pytest.raises(ChangeReasonMissingError):
        create_with_history([RoleGrant(user=user, role=Role.QP, granted_by=admin)])
    with pytest.raises(TypeError), audit_context(reason="mixed"):
        create_with_history([RoleGrant(user=user, role=Role.QP), AuditEvent()])
    assert RoleGrant.objects.count() == before


def test_role_changes_are_audit_events_with_old_and_new_roles(persona):
    admin, user = persona("sysadmin"), persona("operator")
    role_grant(user=user, role=Role.TRAINER, granted_by=admin, reason="covers training")
    event = AuditEvent.objects.filter(
        event_type=KernelEvent.ROLE_GRANTED, target_id=str(user.pk)
    ).latest("seq")
    assert event.actor == admin
    assert event.extra_data["old"] == ["site_operator"]
    assert event.extra_data["new"] == ["site_operator", "trainer"]
    assert event.reason == "covers training"


#
# The hash chain (AT-04)
#


def test_the_chain_of_fresh_events_verifies():
    _events(5)
    report = audit_chain_verify()
    assert report.intact
    assert report.checked == AuditEvent.objects.count()


def test_each_event_links_to_the_previous_hash():
    first, second = _events(2)
    assert second.prev_hash == first.hash
    assert second.seq == first.seq + 1
    assert len(second.hash) == 64


def test_verify_command_passes_on_an_intact_chain(capsys):
    _events(3)
    call_command("verify_audit_chain")
    assert "intact" in capsys.readouterr().out


def test_verify_command_names_an_altered_row():
    events = _events(4)
    target = events[2]
    with tampering():
        AuditEvent.objects.filter(pk=target.pk).update(reason="rewritten history")
    with pytest.raises(CommandError) as excinfo:
        call_command("verify_audit_chain")
    assert excinfo.value.returncode == 1
    assert f"seq={target.seq}" in str(excinfo.value)
    assert "altered" in str(excinfo.value)


def test_verify_command_names_the_row_after_a_deleted_one():
    events = _events(4)
    with tampering():
        AuditEvent.objects.filter(pk=events[1].pk).delete()
    with pytest.raises(CommandError) as excinfo:
        call_command("verify_audit_chain")
    assert excinfo.value.returncode == 1
    assert f"seq={events[2].seq}" in str(excinfo.value)
    assert "missing" in str(excinfo.value)


def test_verify_command_catches_reordered_rows():
    events = _events(4)
    a, b = events[1], events[2]
    with tampering():
        # Swap the two rows' places in the sequence (a temporary value dodges the unique index).
        AuditEvent.objects.filter(pk=a.pk).update(seq=10_000_000)
        AuditEvent.objects.filter(pk=b.pk).update(seq=a.seq)
        AuditEvent.objects.filter(pk=a.pk).update(seq=b.seq)
    report = audit_chain_verify()
    assert not report.intact
    assert report.first_break is not None
    assert report.first_break.seq == a.seq
    with pytest.raises(CommandError, match=f"seq={a.seq}"):
        call_command("verify_audit_chain")


def test_timestamps_are_stored_in_utc():
    (event,) = _events(1)
    event.refresh_from_db()
    assert event.occurred_at.utcoffset() == dt.timedelta(0)
    assert abs(event.occurred_at - timezone.now()) < dt.timedelta(minutes=1)


#
# Database immutability on PostgreSQL (AT-04)
#


@on_postgres
@pytest.mark.parametrize("statement", ["UPDATE {table} SET {col} = {col}", "DELETE FROM {table}"])
@pytest.mark.parametrize(
    ("table", "col"),
    [
        ("controlsite_auditevent", "reason"),
        ("controlsite_electronicsignature", "reason"),
        ("controlsite_historicaluser", "history_change_reason"),
        ("controlsite_historicalrolegrant", "history_change_reason"),
    ],
)
def test_raw_sql_cannot_change_or_delete_audit_rows(persona, statement, table, col):
    qa = persona("qa")
    # Rows in every table: history and events from the persona, a signature from a review.
    audit_review_sign(
        reviewer=qa,
        credentials=SignatureCredentials(username="qa", password=PASSWORD),
        comment="",
        reason="periodic review",
    )
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement.format(table=table, col=col))


@on_postgres
def test_every_history_table_of_every_app_carries_the_trigger():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname = %s",
            [TRIGGER_NAME],
        )
        protected = {row[0] for row in cursor.fetchall()}
    assert set(history_tables()) <= protected
    assert set(protected_tables()) <= protected


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_the_chain_whole():
    """Four connections appending at once: the advisory lock serialises them, so the sequence
    has no gaps or duplicates and every link holds."""
    import threading

    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with audit_context(reason="concurrent test"):
                for i in range(25):
                    audit_event_record(
                        event_type="test.concurrent", actor_username=f"w{n}", extra={"i": i}
                    )
        except BaseException as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, 101))
    assert audit_chain_verify().intact
