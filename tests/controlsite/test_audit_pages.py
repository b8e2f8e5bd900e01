"""The audit pages (AT-06): who may read them, filters, and one record's own trail."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from controlsite.accounts.roles import Role
from controlsite.accounts.services import role_grant, role_revoke
from tests.matrix import Matrix, only

pytestmark = pytest.mark.django_db

AUDIT_PAGE = Matrix(
    "page:audit-events", only({"qa": 200, "qp": 200, "inspector": 200}, others=403, anonymous=302)
)
HOME_PAGE = Matrix("page:home", only({}, others=200, anonymous=302))


@pytest.mark.parametrize(("who", "expected"), AUDIT_PAGE.cases())
def test_audit_page_permissions(browser_as, who, expected):
    assert browser_as(who).get(reverse("audit:events")).status_code == expected


@pytest.mark.parametrize(("who", "expected"), HOME_PAGE.cases())
def test_home_page_permissions(browser_as, who, expected):
    assert browser_as(who).get(reverse("home")).status_code == expected


def test_the_audit_page_filters_by_actor_record_and_date(client_for, persona):
    admin, operator = persona("sysadmin"), persona("operator")
    role_grant(user=operator, role=Role.TRAINER, granted_by=admin, reason="covers training")
    client = client_for("qa")
    by_actor = client.get(reverse("audit:events"), {"actor": "sysadmin"}).content.decode()
    assert "access.role_granted" in by_actor
    assert "auth.login" not in by_actor.split("<tbody>")[1]
    by_record = client.get(
        reverse("audit:events"), {"record_type": "controlsite.user", "record_id": operator.pk}
    ).content.decode()
    assert "covers training" in by_record
    today = timezone.localdate().isoformat()
    tomorrow = (timezone.localdate() + dt.timedelta(days=1)).isoformat()
    assert (
        "covers training"
        in client.get(
            reverse("audit:events"), {"date_from": today, "date_to": today}
        ).content.decode()
    )
    assert (
        "covers training"
        not in client.get(reverse("audit:events"), {"date_from": tomorrow}).content.decode()
    )


def test_the_htmx_filter_returns_only_the_rows(client_for):
    response = client_for("qa").get(
        reverse("audit:events"), {"actor": "qa"}, HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert "<table" in html
    assert "<html" not in html


def test_a_record_trail_shows_who_what_old_new_when_and_why(client_for, persona):
    admin, operator = persona("sysadmin"), persona("operator")
    role_grant(user=operator, role=Role.TRAINER, granted_by=admin, reason="covers training")
    role_revoke(user=operator, role=Role.TRAINER, revoked_by=admin, reason="cover ended")
    html = (
        client_for("inspector")
        .get(reverse("audit:record", args=["controlsite.user", operator.pk]))
        .content.decode()
    )
    assert "sysadmin" in html
    assert "Role revoked" in html
    assert "cover ended" in html
    assert "site_operator" in html and "trainer" in html  # old and new roles


def test_a_record_trail_for_an_unknown_record_is_404(client_for):
    client = client_for("qa")
    assert client.get(reverse("audit:record", args=["controlsite.user", 99999])).status_code == 404
    assert client.get(reverse("audit:record", args=["nope.model", 1])).status_code == 404


def test_the_audit_page_pages_backwards_by_sequence(client_for, persona):
    from controlsite.audit.context import audit_context
    from controlsite.audit.services import audit_event_record

    with audit_context(reason="fill"):
        for i in range(60):
            audit_event_record(event_type="test.fill", actor_username="t", extra={"i": i})
    client = client_for("qa")
    first = client.get(reverse("audit:events"), {"event_type": "test.fill"})
    assert first.context["next_query"]
    second = client.get(reverse("audit:events") + "?" + first.context["next_query"])
    assert len(second.context["events"]) == 10
    assert second.context["events"][0].seq < first.context["events"][-1].seq


def test_the_audit_page_uses_a_fixed_number_of_queries(client_for, django_assert_max_num_queries):
    client = client_for("qa")
    client.get(reverse("audit:events"))
    with django_assert_max_num_queries(15):
        client.get(reverse("audit:events"))


def test_an_unreadable_filter_shows_no_rows_rather_than_the_whole_trail(client_for):
    response = client_for("qa").get(reverse("audit:events"), {"actor": "qa", "date_from": "31/02"})
    assert response.context["events"] == []
    assert "Correct the filters" in response.content.decode()


def test_a_signed_review_page_shows_the_range_and_the_chain_result(client_for, persona):
    from controlsite.audit.review import audit_review_sign
    from controlsite.signatures.services import SignatureCredentials
    from tests.personas import PASSWORD

    review = audit_review_sign(
        reviewer=persona("qa"),
        credentials=SignatureCredentials(username="qa", password=PASSWORD),
        comment="nothing unusual",
        reason="weekly review",
    )
    html = (
        client_for("inspector")
        .get(reverse("audit:record", args=["controlsite.auditreview", review.pk]))
        .content.decode()
    )
    assert f"#{review.from_seq} to #{review.to_seq}" in html
    assert "intact" in html
    assert "nothing unusual" in html


EXPORT = Matrix(
    "page:audit-export", only({"qa": 200, "qp": 200, "inspector": 200}, others=403, anonymous=302)
)


@pytest.mark.parametrize(("who", "expected"), EXPORT.cases())
def test_audit_export_permissions(browser_as, who, expected):
    assert browser_as(who).get(reverse("audit:export")).status_code == expected


def test_the_export_is_the_filtered_trail_with_hashes_and_is_itself_audited(client_for, persona):
    import csv
    import io

    from controlsite.audit.models import AuditEvent

    persona("operator")
    client = client_for("inspector")
    response = client.get(reverse("audit:export"), {"actor": "system"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows
    assert {r["actor_username"] for r in rows} == {"system"}
    first = AuditEvent.objects.get(seq=int(rows[0]["seq"]))
    assert rows[0]["hash"] == first.hash
    assert rows[0]["prev_hash"] == first.prev_hash
    export = AuditEvent.objects.filter(event_type="audit.exported").get()
    assert export.actor_username == "inspector"
    assert export.extra_data == {"actor": "system"}


def test_an_export_with_unreadable_filters_is_refused(client_for):
    assert client_for("qa").get(reverse("audit:export"), {"date_from": "nope"}).status_code == 400
