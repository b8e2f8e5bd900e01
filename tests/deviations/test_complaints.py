"""Complaints and suspected adverse reactions (issue 6 §5): recording per site and batch
(RP-06), the 15-day reporting clock of a serious suspected adverse reaction (RP-05), QA's
assessment, the report to the MHRA and who made it when (RP-04, DV-11), CAPA from a complaint
(DV-02), and the signed closure (ES-01) — through the services, the pages and the API, against
the real database. Every refusal is checked to write nothing.

Neither freezegun nor time_machine is installed: the clock is a pure function of the record and
a `today` that the tests pin (`report_clock(complaint, today)`), and the dates recorded are
chosen relative to the real today, so every assertion is exact on any day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from batches.models import Batch
from controlsite.accounts.models import User
from controlsite.audit.events import KernelEvent
from controlsite.audit.models import AuditEvent
from controlsite.errors import ApplicationError
from controlsite.notifications.models import Notification
from controlsite.signatures.models import ElectronicSignature, SignatureMeaning
from controlsite.signatures.services import SignatureCredentials, signatures_for
from deviations import services
from deviations.choices import (
    SERIOUS_ADR_REPORT_DAYS,
    CapaStatus,
    ComplaintKind,
    ComplaintStatus,
    adr_report_due,
)
from deviations.events import DeviationEvent
from deviations.models import Capa, Complaint, RecordSequence
from deviations.selectors.complaints import (
    ReportClock,
    complaint_counts,
    complaints_visible_to,
    report_clock,
)
from deviations.services import complaints as complaint_services
from tests.batches.helpers import Plant, make_plant, start
from tests.batches.test_api import assert_problem, signature_fields, token_client
from tests.batches.test_pages import sig
from tests.masterfile.helpers import make_product, signing
from tests.matrix import ANON, Matrix, only
from tests.personas import PASSWORD, login, make_persona

pytestmark = pytest.mark.django_db

TODAY = timezone.localdate()


def days_ago(days: int) -> dt.date:
    return timezone.localdate() - dt.timedelta(days=days)


def _future(days: int) -> dt.date:
    return timezone.localdate() + dt.timedelta(days=days)


#
# The world every test starts from
#


@pytest.fixture
def plant() -> Plant:
    """tests.batches.helpers.make_plant: LDS1 (reference) and MAN2, active, with the site
    lead and the operators at both; the trainer and the integrator work at neither."""
    return make_plant()


@pytest.fixture
def persona(db: None) -> Callable[[str], User]:
    """The conftest's personas, reusing the plant's people, so a matrix client is the plant's
    own QA, QP, lead or operator."""

    def get(name: str) -> User:
        return User.objects.filter(username=name).first() or make_persona(name)

    return get


def record(
    plant: Plant,
    batch: Batch | None = None,
    *,
    actor: User | None = None,
    kind: str = ComplaintKind.ADVERSE_REACTION,
    serious: bool = True,
    aware_on: dt.date | None = None,
    **extra: Any,
) -> Complaint:
    fields: dict[str, Any] = {
        "actor": actor or plant.operator,
        "site": plant.reference,
        "kind": kind,
        "description": "Grade 3 cytokine release syndrome two days after infusion.",
        "reporter": "Dr A. Khan, haematology ward 4",
        "aware_on": aware_on or timezone.localdate(),
        "serious": serious,
        "reason": "told by the treating team",
        "batch": batch,
    }
    if batch is None and "product" not in extra:
        fields["product"] = plant.product
    fields.update(extra)
    return complaint_services.complaint_record(**fields)


def assess(plant: Plant, complaint: Complaint, serious: bool | None = None) -> Complaint:
    return complaint_services.complaint_assess(
        actor=plant.qa,
        complaint=complaint,
        assessment="Causality possible; batch record reviewed without findings.",
        serious=serious,
        reason="assessed",
    )


def report(plant: Plant, complaint: Complaint, actor: User | None = None) -> Complaint:
    return complaint_services.complaint_mark_reported(
        actor=actor or plant.qa,
        complaint=complaint,
        reported_on=timezone.localdate(),
        reference="YC-2026-118734",
        reason="Yellow Card sent",
    )


def clock_on(complaint: Complaint, today: dt.date) -> ReportClock:
    clock = report_clock(complaint, today)
    assert clock is not None
    return clock


def _last_event_type() -> str:
    return str(AuditEvent.objects.order_by("-seq").values_list("event_type", flat=True)[0])


def _refused(call: Any, status: int, code: str) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        call()
    assert (caught.value.status_code, caught.value.code) == (status, code), caught.value.message
    return caught.value


def _snapshot(complaint: Complaint | None = None) -> tuple[Any, ...]:
    """Everything a refused call must leave as it was."""
    state: tuple[Any, ...] = (
        Complaint.objects.count(),
        AuditEvent.objects.count(),
        ElectronicSignature.objects.count(),
        Capa.objects.count(),
        list(RecordSequence.objects.order_by("pk").values_list("prefix", "last")),
    )
    if complaint is not None:
        complaint.refresh_from_db()
        state += (
            complaint.status,
            complaint.assessment,
            complaint.serious,
            complaint.report_due_on,
            complaint.reported_on,
            complaint.report_reference,
            complaint.history.count(),
        )
    return state


#
# Recording (DV-11, RP-05, RP-06)
#


def test_site_staff_record_a_serious_adr_on_a_batch_and_its_clock_starts(plant):
    """RP-05, RP-06: tied to site and batch, the product from the batch, the report due 15
    days after the day it was first known; QA and the QPs are told, urgently."""
    batch = start(plant)
    complaint = record(plant, batch, aware_on=TODAY)
    assert complaint.number == f"CMP-{TODAY.year}-0001"
    assert (complaint.site, complaint.batch, complaint.product) == (
        plant.reference,
        batch,
        plant.product,
    )
    assert complaint.status == ComplaintStatus.OPEN and complaint.created_by == plant.operator
    assert complaint.report_due_on == TODAY + dt.timedelta(days=SERIOUS_ADR_REPORT_DAYS)
    assert complaint.report_due_on == adr_report_due(TODAY)
    event = AuditEvent.objects.get(event_type=DeviationEvent.COMPLAINT_RECORDED)
    assert event.actor == plant.operator and event.site_code == "LDS1"
    assert event.extra_data["batch"] == batch.number and event.extra_data["serious"] is True
    assert event.extra_data["report_due_on"] == complaint.report_due_on.isoformat()
    assert event.reason == "told by the treating team"
    for person in (plant.qa, plant.qp):
        notice = Notification.objects.get(recipient=person, subject__contains=complaint.number)
        assert notice.severity == "block" and "Serious suspected adverse reaction" in notice.subject
    assert not Notification.objects.filter(
        recipient=plant.lead, subject__contains=complaint.number
    ).exists()
    assert complaint.history.get().history_type == "+"


def test_a_quality_complaint_on_a_product_has_no_clock_and_tells_qa_only(plant):
    """DV-11: a quality complaint is recorded against the product when no batch is known."""
    complaint = record(plant, kind=ComplaintKind.QUALITY, serious=False, aware_on=days_ago(2))
    assert complaint.batch is None and complaint.product == plant.product
    assert complaint.report_due_on is None
    assert report_clock(complaint, TODAY) is None
    about = Notification.objects.filter(subject__contains=complaint.number)
    assert [(n.recipient, n.severity) for n in about] == [(plant.qa, "warn")]


def test_a_non_serious_adr_has_no_clock(plant):
    """RP-05: only a serious suspected adverse reaction carries the 15-day clock."""
    complaint = record(plant, serious=False)
    assert complaint.report_due_on is None


def test_qa_and_qps_record_at_any_site(plant):
    """RP-06: the Control Site's people record complaints for every site."""
    at_man2 = record(plant, actor=plant.qa, site=plant.spoke, serious=False)
    by_qp = record(plant, actor=plant.qp, serious=False)
    assert (at_man2.site.code, by_qp.created_by) == ("MAN2", plant.qp)
    assert at_man2.number != by_qp.number


@pytest.mark.parametrize("who", ["inspector", "trainer", "sysadmin"])
def test_people_who_do_not_raise_records_cannot_record_complaints(plant, who):
    """DI-03: read-only people, trainers and the administrator record nothing."""
    person = make_persona(who)
    before = _snapshot()
    _refused(lambda: record(plant, actor=person), 403, "permission_denied")
    assert _snapshot() == before


def test_a_complaint_for_a_site_the_recorder_does_not_work_at_is_refused(plant):
    """RP-06: site staff record for their own sites only."""
    elsewhere = make_persona("operator", username="elsewhere")
    before = _snapshot()
    _refused(lambda: record(plant, actor=elsewhere), 403, "not_a_site_member")
    assert _snapshot() == before


def test_a_batch_of_another_site_is_refused(plant):
    """RP-06: the batch named must have been made at the complaint's site."""
    spoke_batch = start(plant, plant.spoke)
    before = _snapshot()
    _refused(lambda: record(plant, spoke_batch), 400, "batch_not_at_site")
    assert _snapshot() == before


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"aware_on": _future(1)}, "date_in_future"),
        ({"aware_on": TODAY - dt.timedelta(days=6 * 365)}, "date_out_of_range"),
        ({"aware_on": "2026-01-01"}, "date_required"),
        ({"kind": "rumour"}, "invalid_choice"),
        ({"description": "  "}, "invalid"),
        ({"reporter": ""}, "invalid"),
        ({"reporter": "x" * 201}, "too_long"),
        ({"serious": "yes"}, "invalid"),
        ({"reason": ""}, "reason_required"),
        ({"product": None}, "product_required"),
    ],
)
def test_bad_input_records_nothing(plant, overrides, code):
    """DV-11, AT-03: bad input is a 400 with a stable code, and nothing is written."""
    before = _snapshot()
    _refused(lambda: record(plant, **overrides), 400, code)
    assert _snapshot() == before


def test_a_batch_and_a_product_that_disagree_or_an_awareness_before_the_batch_are_refused(
    plant,
):
    """RP-06: the product comes from the batch; the complaint cannot predate the batch."""
    batch = start(plant)
    second = make_product(plant.qa, plant.reference, "CART-02")
    before = _snapshot()
    _refused(lambda: record(plant, batch, product=second), 400, "product_mismatch")
    _refused(lambda: record(plant, batch, aware_on=days_ago(1)), 400, "date_out_of_range")
    assert _snapshot() == before


#
# The reporting clock (RP-05)
#


def test_the_clock_counts_fifteen_days_from_awareness_and_turns_amber_then_red(plant):
    """RP-05: due on aware_on + 15; amber in the last 3 days, red once the due day has passed;
    the bar is the share of the 15 days used."""
    aware = days_ago(3)
    complaint = record(plant, aware_on=aware)
    due = aware + dt.timedelta(days=15)
    assert complaint.report_due_on == due

    first_day = clock_on(complaint, aware)
    assert (first_day.days_left, first_day.overdue, first_day.state) == (15, False, "ok")
    assert (first_day.percent, first_day.label) == (0, "15 days left")

    today = clock_on(complaint, TODAY)
    assert (today.days_left, today.percent, today.state) == (12, 20, "ok")

    amber = clock_on(complaint, due - dt.timedelta(days=3))
    assert (amber.days_left, amber.state, amber.label) == (3, "warn", "3 days left")
    assert clock_on(complaint, due - dt.timedelta(days=4)).state == "ok"

    due_day = clock_on(complaint, due)
    assert (due_day.days_left, due_day.overdue, due_day.state, due_day.label) == (
        0,
        False,
        "warn",
        "Due today",
    )

    late = clock_on(complaint, due + dt.timedelta(days=2))
    assert (late.days_left, late.overdue, late.state, late.percent) == (-2, True, "block", 100)
    assert late.label == "Overdue by 2 days"


def test_a_reported_clock_stops_and_says_whether_it_was_on_time(plant):
    """RP-05: once reported, the bar stops on the day of the report."""
    complaint = report(plant, record(plant, aware_on=days_ago(5)))
    clock = clock_on(complaint, TODAY + dt.timedelta(days=30))
    assert (clock.days_left, clock.overdue, clock.on_time, clock.state) == (None, False, True, "ok")
    assert (clock.percent, clock.label) == (33, "Reported on time")


def test_a_report_after_the_due_day_is_shown_late(plant):
    """RP-05: a serious ADR first known 20 days ago and reported today is 5 days late."""
    complaint = record(plant, aware_on=days_ago(20))
    assert clock_on(complaint, TODAY).overdue
    complaint = report(plant, complaint)
    clock = clock_on(complaint, TODAY)
    assert (clock.on_time, clock.state, clock.label) == (False, "block", "Reported 5 days late")
    event = AuditEvent.objects.get(event_type=DeviationEvent.COMPLAINT_REPORTED)
    assert event.extra_data["on_time"] is False


def test_the_counts_read_open_reports_due_and_overdue_in_one_query(plant):
    """RP-05: the list's counts."""
    record(plant, aware_on=days_ago(20))  # overdue
    record(plant, aware_on=days_ago(1))  # due
    report(plant, record(plant, aware_on=days_ago(2)))  # reported
    record(plant, kind=ComplaintKind.QUALITY, serious=True)  # no clock
    with CaptureQueriesContext(connection) as queries:
        counts = complaint_counts(complaints_visible_to(plant.qa), TODAY)
    assert (counts.open, counts.reports_due, counts.overdue) == (4, 2, 1)
    assert len(queries) == 1


#
# Assessment (DV-11)
#


def test_judging_an_adr_serious_starts_the_clock_and_not_serious_stops_it(plant):
    """RP-05, AT-02: the clock follows QA's judgement and each change is audited with its old
    and new values; the QPs are told when the clock appears."""
    aware = days_ago(4)
    complaint = record(plant, serious=False, aware_on=aware)
    assert complaint.report_due_on is None
    complaint = assess(plant, complaint, serious=True)
    assert complaint.serious and complaint.report_due_on == aware + dt.timedelta(days=15)
    event = AuditEvent.objects.filter(event_type=DeviationEvent.COMPLAINT_ASSESSED).get()
    assert event.actor == plant.qa and event.reason == "assessed"
    assert (event.extra_data["old"]["serious"], event.extra_data["new"]["serious"]) == (False, True)
    assert event.extra_data["old"]["report_due_on"] is None
    assert event.extra_data["new"]["report_due_on"] == (aware + dt.timedelta(days=15)).isoformat()
    assert Notification.objects.filter(
        recipient=plant.qp, subject__contains="judged a serious", severity="block"
    ).exists()

    complaint = assess(plant, complaint, serious=False)
    assert not complaint.serious and complaint.report_due_on is None
    last = (
        AuditEvent.objects.filter(event_type=DeviationEvent.COMPLAINT_ASSESSED)
        .order_by("seq")
        .last()
    )
    assert last is not None
    assert last.extra_data["changed"] == ["serious", "report_due_on"]
    assert (last.extra_data["old"]["serious"], last.extra_data["new"]["serious"]) == (True, False)


def test_an_assessment_that_changes_nothing_writes_nothing(plant):
    complaint = assess(plant, record(plant))
    before = _snapshot(complaint)
    assess(plant, complaint, serious=True)
    assert _snapshot(complaint) == before


@pytest.mark.parametrize("who", ["operator", "lead", "qp"])
def test_only_qa_assesses(plant, who):
    """DV-11: the risk assessment is QA's."""
    complaint = record(plant, serious=False)
    before = _snapshot(complaint)
    _refused(
        lambda: complaint_services.complaint_assess(
            actor=getattr(plant, who),
            complaint=complaint,
            assessment="mine",
            serious=True,
            reason="r",
        ),
        403,
        "permission_denied",
    )
    assert _snapshot(complaint) == before


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"assessment": ""}, "invalid"),
        ({"reason": " "}, "reason_required"),
        ({"serious": "no"}, "invalid"),
    ],
)
def test_a_bad_assessment_writes_nothing(plant, fields, code):
    complaint = record(plant)
    before = _snapshot(complaint)
    body = {"assessment": "Assessed.", "reason": "r", **fields}
    _refused(
        lambda: complaint_services.complaint_assess(actor=plant.qa, complaint=complaint, **body),
        400,
        code,
    )
    assert _snapshot(complaint) == before


#
# The report to the MHRA (RP-04, RP-05)
#


@pytest.mark.parametrize("who", ["qa", "qp"])
def test_qa_or_a_qp_records_the_report_and_is_named_as_reporter(plant, who):
    """RP-05, DV-11: who reported it when, with the MHRA's reference."""
    actor = getattr(plant, who)
    complaint = report(plant, record(plant, aware_on=days_ago(3)), actor=actor)
    assert (complaint.reported_on, complaint.reported_by) == (TODAY, actor)
    assert complaint.report_reference == "YC-2026-118734"
    event = AuditEvent.objects.get(event_type=DeviationEvent.COMPLAINT_REPORTED)
    assert event.actor == actor and event.extra_data["on_time"] is True
    assert event.extra_data["reference"] == "YC-2026-118734"


@pytest.mark.parametrize("who", ["operator", "lead"])
def test_site_staff_do_not_record_the_report(plant, who):
    complaint = record(plant)
    before = _snapshot(complaint)
    _refused(lambda: report(plant, complaint, actor=getattr(plant, who)), 403, "permission_denied")
    assert _snapshot(complaint) == before


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"reported_on": _future(1)}, "date_in_future"),
        ({"reported_on": days_ago(4)}, "report_before_awareness"),
        ({"reported_on": None}, "date_required"),
        ({"reference": " "}, "invalid"),
        ({"reference": "R" * 101}, "too_long"),
        ({"reason": ""}, "reason_required"),
    ],
)
def test_a_bad_report_writes_nothing(plant, fields, code):
    """RP-05: not in the future, not before it was first known, and a reference."""
    complaint = record(plant, aware_on=days_ago(3))
    before = _snapshot(complaint)
    body = {"reported_on": TODAY, "reference": "YC-1", "reason": "sent", **fields}
    _refused(
        lambda: complaint_services.complaint_mark_reported(
            actor=plant.qa, complaint=complaint, **body
        ),
        400,
        code,
    )
    assert _snapshot(complaint) == before


def test_a_complaint_is_reported_once(plant):
    complaint = report(plant, record(plant))
    before = _snapshot(complaint)
    _refused(lambda: report(plant, complaint, actor=plant.qp), 409, "already_reported")
    assert _snapshot(complaint) == before
    assert complaint.reported_by == plant.qa


#
# Closure (DV-11, ES-01)
#


def close(plant: Plant, complaint: Complaint, **overrides: Any) -> Complaint:
    fields: dict[str, Any] = {
        "actor": plant.qa,
        "complaint": complaint,
        "credentials": signing(plant.qa),
        "reason": "assessed, reported, no CAPA open",
    }
    fields.update(overrides)
    return complaint_services.complaint_close(**fields)


def test_qa_closes_an_assessed_and_reported_serious_adr_with_a_signature(plant):
    """DV-11, RP-05, ES-01: the closure is signed "approved" by QA and audited."""
    complaint = report(plant, assess(plant, record(plant)))
    closed = close(plant, complaint)
    assert closed.status == ComplaintStatus.CLOSED and closed.closed_at is not None
    [(signature, valid)] = signatures_for(closed)
    assert (signature.signer, signature.meaning, valid) == (
        plant.qa,
        SignatureMeaning.APPROVED,
        True,
    )
    event = AuditEvent.objects.get(event_type=DeviationEvent.COMPLAINT_CLOSED)
    assert event.signature == signature and event.extra_data == {"old": "open", "new": "closed"}
    # A closed complaint no longer changes.
    before = _snapshot(closed)
    _refused(lambda: assess(plant, closed, serious=False), 409, "complaint_not_open")
    _refused(lambda: close(plant, closed), 409, "complaint_not_open")
    assert _snapshot(closed) == before


def test_closing_without_an_assessment_writes_nothing(plant):
    complaint = record(plant, kind=ComplaintKind.QUALITY, serious=False)
    before = _snapshot(complaint)
    _refused(lambda: close(plant, complaint), 409, "assessment_required")
    assert _snapshot(complaint) == before


def test_closing_a_serious_adr_before_its_report_writes_nothing(plant):
    """RP-05: a serious suspected ADR closes only once reported to the MHRA."""
    complaint = assess(plant, record(plant))
    before = _snapshot(complaint)
    _refused(lambda: close(plant, complaint), 409, "report_required")
    assert _snapshot(complaint) == before


def test_an_open_capa_from_the_complaint_blocks_closure_until_it_closes(plant):
    """DV-02: CAPA from a complaint; its open CAPA keeps the complaint open."""
    complaint = assess(plant, record(plant, kind=ComplaintKind.QUALITY, serious=False))
    capa = services.capa_create(
        actor=plant.qa,
        complaint=complaint,
        title="Label legibility check",
        description="Add a legibility check to step 3.",
        kind="corrective",
        owner=plant.lead,
        due_on=_future(14),
        effectiveness_due_on=_future(60),
        reason="CAPA from the complaint",
        actions=[services.ActionInput("Add the check", plant.lead, _future(7))],
    )
    assert (capa.source, capa.complaint, capa.site) == ("complaint", complaint, plant.reference)
    before = _snapshot(complaint)
    error = _refused(lambda: close(plant, complaint), 409, "capa_open")
    assert capa.number in error.message
    assert _snapshot(complaint) == before

    services.capa_action_complete(actor=plant.lead, action=capa.actions.get(), outcome="Added.")
    services.capa_effectiveness_check(
        actor=plant.qa, capa=capa, effectiveness="effective", notes="No recurrence.", reason="r"
    )
    services.capa_close(actor=plant.qa, capa=capa, credentials=signing(plant.qa), reason="r")
    assert Capa.objects.get().status == CapaStatus.CLOSED
    assert close(plant, complaint).status == ComplaintStatus.CLOSED


def test_a_wrong_password_closes_nothing_and_is_recorded(plant):
    """ES-08: a refused signature changes nothing but is itself recorded."""
    complaint = report(plant, assess(plant, record(plant)))
    before = _snapshot(complaint)
    _refused(
        lambda: close(
            plant,
            complaint,
            credentials=SignatureCredentials(username="qa", password="wrong"),
        ),
        422,
        "wrong_password",
    )
    after = _snapshot(complaint)
    assert after[1] == before[1] + 1  # only the failed attempt is on the audit trail
    assert after[:1] + after[2:] == before[:1] + before[2:]
    assert _last_event_type() == KernelEvent.SIGNATURE_AUTH_FAILED


@pytest.mark.parametrize("who", ["qp", "lead", "operator"])
def test_only_qa_closes(plant, who):
    complaint = assess(plant, record(plant, kind=ComplaintKind.QUALITY, serious=False))
    before = _snapshot(complaint)
    actor = getattr(plant, who)
    _refused(
        lambda: close(plant, complaint, actor=actor, credentials=signing(actor)),
        403,
        "permission_denied",
    )
    assert _snapshot(complaint) == before


def test_a_capa_cannot_be_raised_from_a_closed_complaint_or_by_anyone_but_qa(plant):
    complaint = close(plant, assess(plant, record(plant, kind="quality", serious=False)))
    fields: dict[str, Any] = {
        "complaint": complaint,
        "title": "t",
        "description": "d",
        "kind": "corrective",
        "owner": plant.lead,
        "due_on": _future(5),
        "effectiveness_due_on": _future(30),
        "reason": "r",
    }
    before = _snapshot(complaint)
    _refused(
        lambda: services.capa_create(actor=plant.qa, **fields),
        409,
        "complaint_not_open",
    )
    _refused(
        lambda: services.capa_create(actor=plant.qp, **fields),
        403,
        "permission_denied",
    )
    assert _snapshot(complaint) == before


#
# Pages
#


def _page(user: User, name: str, *args: Any, **params: str) -> Any:
    return login(Client(), user).get(reverse(name, args=args), params)


def test_qa_reads_the_list_with_counts_and_a_small_clock_per_serious_adr(plant):
    """RP-05, RP-06: the list shows site, batch, kind, and each serious ADR's clock."""
    batch = start(plant)
    serious = record(plant, batch)
    overdue = record(plant, aware_on=days_ago(20))
    quality = record(plant, kind="quality", serious=False)
    page = _page(plant.qa, "deviations:complaint-index")
    assert page.status_code == 200
    text = page.content.decode()
    for complaint in (serious, overdue, quality):
        assert complaint.number in text
    assert batch.number in text and "report-clock-small" in text
    assert "15 days left" in text and "Overdue by 5 days" in text
    assert "row-overdue" in text and "report-clock-block" in text
    counts = page.context["counts"]
    assert (counts.open, counts.reports_due, counts.overdue) == (3, 2, 1)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"kind": "quality"}, {"quality"}),
        ({"serious": "yes"}, {"serious", "overdue"}),
        ({"overdue": "yes"}, {"overdue"}),
        ({"site": "MAN2"}, {"man2"}),
        ({"status": "closed"}, set()),
    ],
)
def test_the_list_filters(plant, params, expected):
    made = {
        "serious": record(plant),
        "overdue": record(plant, aware_on=days_ago(20)),
        "quality": record(plant, kind="quality", serious=False),
        "man2": record(plant, site=plant.spoke, serious=False),
    }
    page = _page(plant.qa, "deviations:complaint-index", **params)
    shown = {row["complaint"].number for row in page.context["rows"]}
    assert shown == {made[name].number for name in expected}


def test_the_detail_shows_an_amber_clock_in_the_last_days(plant):
    """RP-05: amber in the last 3 days, with the days left."""
    complaint = record(plant, aware_on=days_ago(13))
    text = _page(plant.qa, "deviations:complaint-detail", complaint.number).content.decode()
    assert "report-clock-warn" in text and "2 days left" in text
    assert f"report due by {complaint.report_due_on:%-d %b %Y}" in text
    assert 'aria-valuenow="87"' in text


def test_site_staff_see_their_sites_complaints_only(plant):
    """RP-06: 404 for another site's complaint; absent from the list."""
    complaint = record(plant)
    elsewhere = make_persona("operator", username="elsewhere")
    assert _page(plant.operator, "deviations:complaint-detail", complaint.number).status_code == 200
    assert _page(elsewhere, "deviations:complaint-detail", complaint.number).status_code == 404
    assert complaint.number not in _page(elsewhere, "deviations:complaint-index").content.decode()
    assert _page(plant.qa, "deviations:complaint-detail", "CMP-1999-0001").status_code == 404
    inspector = make_persona("inspector")
    assert _page(inspector, "deviations:complaint-detail", complaint.number).status_code == 200


def test_signed_out_people_are_sent_to_sign_in():
    response = Client().get(reverse("deviations:complaint-index"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_serious_adr_goes_from_recorded_to_closed_through_the_pages(plant):
    """DV-11, RP-05, ES-01: recorded by the operator, assessed by QA, reported by the QP,
    closed and signed by QA; the page says who reported it when, and that it was on time."""
    batch = start(plant)
    operator, qa, qp = (login(Client(), u) for u in (plant.operator, plant.qa, plant.qp))
    # The batch's number in the address prefills the site and the batch.
    form = operator.get(reverse("deviations:complaint-index"), {"batch": batch.number})
    assert f'value="{batch.number}"' in form.content.decode()
    recorded = operator.post(
        reverse("deviations:complaint-record"),
        {
            "site": "LDS1",
            "kind": "adverse_reaction",
            "batch": batch.number,
            "product": "",
            "description": "Grade 3 CRS two days after infusion.",
            "reporter": "Dr A. Khan",
            "aware_on": TODAY.isoformat(),
            "serious": "yes",
            "reason": "told by the ward",
        },
    )
    assert recorded.status_code == 302, recorded.content.decode()[:2000]
    complaint = Complaint.objects.get()
    url = reverse("deviations:complaint-detail", args=[complaint.number])
    assert recorded["Location"] == url
    assert complaint.batch == batch and complaint.report_due_on == adr_report_due(TODAY)
    page = operator.get(url).content.decode()
    assert "15 days left" in page and "report-clock-ok" in page
    assert "Save the assessment" not in page and "Record the report" not in page

    def post(client: Client, name: str, data: dict[str, str]) -> Any:
        return client.post(reverse(name, args=[complaint.number]), data)

    # Closing before anything else: refused on the page, nothing changes.
    refused = post(qa, "deviations:complaint-close", sig(plant.qa, "close", "approved", "done"))
    assert refused.status_code == 409 and "risk assessment" in refused.content.decode()
    assessed = post(
        qa,
        "deviations:complaint-assess",
        {"assessment": "Causality possible.", "serious": "yes", "reason": "assessed"},
    )
    assert assessed.status_code == 302
    bad = post(
        qp,
        "deviations:complaint-reported",
        {"reported_on": _future(2).isoformat(), "reference": "YC-1", "reason": "sent"},
    )
    assert bad.status_code == 400 and "in the future" in bad.content.decode()
    reported = post(
        qp,
        "deviations:complaint-reported",
        {"reported_on": TODAY.isoformat(), "reference": "YC-2026-118734", "reason": "sent"},
    )
    assert reported.status_code == 302
    closed = post(
        qa, "deviations:complaint-close", sig(plant.qa, "close", "approved", "assessed, reported")
    )
    assert closed.status_code == 302, closed.content.decode()[:2000]
    complaint.refresh_from_db()
    assert complaint.status == ComplaintStatus.CLOSED
    page = qa.get(url).content.decode()
    assert (
        f"Reported to the MHRA on {TODAY:%-d %b %Y} by Priya Patel, reference YC-2026-118734"
        in page
    )
    assert "On time" in page and "Quinn Adams" in page and "Approved" in page


def test_the_record_form_refuses_what_the_service_refuses(plant):
    """RP-06: a batch of another site is refused on the page and nothing is recorded."""
    spoke_batch = start(plant, plant.spoke)
    client = login(Client(), plant.operator)
    before = _snapshot()
    response = client.post(
        reverse("deviations:complaint-record"),
        {
            "site": "LDS1",
            "kind": "quality",
            "batch": spoke_batch.number,
            "description": "Smudged label.",
            "reporter": "Ward 4",
            "aware_on": TODAY.isoformat(),
            "serious": "no",
            "reason": "phoned in",
        },
    )
    assert response.status_code == 400
    assert "was not made at LDS1" in response.content.decode()
    missing_reason = client.post(
        reverse("deviations:complaint-record"),
        {
            "site": "LDS1",
            "kind": "quality",
            "product": "CART-01",
            "description": "Smudged label.",
            "reporter": "Ward 4",
            "aware_on": TODAY.isoformat(),
            "serious": "no",
        },
    )
    assert missing_reason.status_code == 400
    assert _snapshot() == before


def test_people_without_the_role_cannot_post(plant):
    """DV-11: assessing is QA's; the inspector records nothing."""
    complaint = record(plant)
    inspector = login(Client(), make_persona("inspector"))
    operator = login(Client(), plant.operator)
    before = _snapshot(complaint)
    response = operator.post(
        reverse("deviations:complaint-assess", args=[complaint.number]),
        {"assessment": "mine", "serious": "no", "reason": "r"},
    )
    assert response.status_code == 403
    response = operator.post(
        reverse("deviations:complaint-reported", args=[complaint.number]),
        {"reported_on": TODAY.isoformat(), "reference": "YC-1", "reason": "r"},
    )
    assert response.status_code == 403
    assert inspector.post(reverse("deviations:complaint-record"), {}).status_code == 403
    assert (
        operator.get(reverse("deviations:complaint-assess", args=[complaint.number])).status_code
        == 405
    )
    assert _snapshot(complaint) == before


def test_qa_raises_a_capa_from_the_complaint_page(plant):
    """DV-02: the "Raise CAPA" form offers people who may own it and makes the CAPA."""
    complaint = record(plant, kind="quality", serious=False)
    qa = login(Client(), plant.qa)
    page = qa.get(reverse("deviations:complaint-detail", args=[complaint.number]))
    assert 'value="site_lead"' in page.content.decode() and "Raise CAPA" in page.content.decode()
    made = qa.post(
        reverse("deviations:complaint-capa-create", args=[complaint.number]),
        {
            "title": "Label legibility check",
            "description": "Add a check.",
            "kind": "corrective",
            "owner": "site_lead",
            "due_on": _future(7).isoformat(),
            "effectiveness_due_on": _future(60).isoformat(),
            "first_action": "Add the check to step 3",
            "first_action_due_on": _future(7).isoformat(),
            "reason": "CAPA from the complaint",
        },
    )
    capa = Capa.objects.get()
    assert made["Location"] == reverse("deviations:capa-detail", args=[capa.number])
    assert capa.complaint == complaint and capa.actions.count() == 1
    after = qa.get(reverse("deviations:complaint-detail", args=[complaint.number]))
    assert capa.number in after.content.decode()


def test_the_list_page_reads_a_fixed_number_of_queries(plant):
    """Design §8: the page's queries do not grow with the complaints listed."""
    client = login(Client(), plant.qa)
    url = reverse("deviations:complaint-index")

    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    record(plant, start(plant))
    few = count()
    for _ in range(3):
        record(plant, start(plant))
    record(plant, aware_on=days_ago(20))
    record(plant, aware_on=days_ago(13))
    report(plant, record(plant, site=plant.spoke, kind="quality", serious=False))
    assert count() == few


#
# API: who may do what
#

# USE_API holders read lists (scoped to what they may see); sysadmin and outsider have no API.
EVERY_API_USER = only({"sysadmin": 403, "outsider": 403}, others=200, anonymous=401)
# One record: QA, QPs and inspectors see every one; the site lead and the operator those of
# their sites; the trainer and the integrator work at no site, so for them it does not exist.
READERS = only(
    {"trainer": 404, "integrator": 404, "sysadmin": 403, "outsider": 403},
    others=200,
    anonymous=401,
)
QA_WRITE = only({"qa": 200, "trainer": 404, "integrator": 404}, others=403, anonymous=401)

COMPLAINT_LIST = Matrix("api:complaint-list", EVERY_API_USER)
COMPLAINT_DETAIL = Matrix("api:complaint-detail", READERS)
# Site staff, QA and QPs record; a site the caller cannot see is a 400 (unknown_site); the
# inspector's role is read-only.
COMPLAINT_CREATE = Matrix(
    "api:complaint-create",
    only(
        {
            "qa": 201,
            "qp": 201,
            "site_lead": 201,
            "operator": 201,
            "trainer": 400,
            "integrator": 400,
        },
        others=403,
        anonymous=401,
    ),
)
COMPLAINT_ASSESS = Matrix("api:complaint-assess", QA_WRITE)
COMPLAINT_REPORTED = Matrix("api:complaint-reported", {**QA_WRITE, "qp": 200})
COMPLAINT_CAPAS = Matrix("api:complaint-capas", {**QA_WRITE, "qa": 201})
COMPLAINT_CLOSE = Matrix("api:complaint-close", QA_WRITE)

SEES = {"qa", "qp", "inspector", "site_lead", "operator"}


@pytest.fixture
def complaint(plant: Plant) -> Complaint:
    """An open serious suspected adverse reaction at LDS1, first known three days ago."""
    return record(plant, aware_on=days_ago(3))


@pytest.fixture
def closable(plant: Plant) -> Complaint:
    """An assessed quality complaint at LDS1: ready to close."""
    return assess(plant, record(plant, kind="quality", serious=False))


def signed(persona: Callable[[str], User], who: str, **fields: Any) -> dict[str, Any]:
    """Signature fields of the persona itself (Control Site QA's for anonymous)."""
    return signature_fields(persona("qa") if who == ANON else persona(who), **fields)


def record_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "site": "LDS1",
        "kind": "adverse_reaction",
        "product": "CART-01",
        "description": "Grade 3 CRS two days after infusion.",
        "reporter": "Dr A. Khan",
        "aware_on": TODAY.isoformat(),
        "serious": True,
        "reason": "told by the ward",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize(("who", "expected"), COMPLAINT_LIST.cases())
def test_complaint_list(as_persona, complaint, who, expected):
    response = as_persona(who).get(reverse("api:complaint-list"))
    assert response.status_code == expected
    if expected == 200:
        numbers = [c["number"] for c in response.json()["results"]]
        assert numbers == ([complaint.number] if who in SEES else [])


@pytest.mark.parametrize(("who", "expected"), COMPLAINT_DETAIL.cases())
def test_complaint_detail(as_persona, complaint, who, expected):
    """RP-05: the clock is in the record, read-only."""
    response = as_persona(who).get(reverse("api:complaint-detail", args=[complaint.number]))
    assert response.status_code == expected
    if expected == 200:
        body = response.json()
        assert (body["kind"], body["serious"], body["status"]) == ("adverse_reaction", True, "open")
        assert body["report_due_on"] == (days_ago(3) + dt.timedelta(days=15)).isoformat()
        assert (body["days_left"], body["overdue"], body["clock_state"]) == (12, False, "ok")
        assert body["report_on_time"] is None and body["closure_signature"] is None
        assert response["ETag"]
    else:
        assert response["Content-Type"].startswith("application/problem+json")


@pytest.mark.parametrize(("who", "expected"), COMPLAINT_CREATE.cases())
def test_complaint_create(as_persona, plant, who, expected):
    events = AuditEvent.objects.count()
    response = as_persona(who).post(reverse("api:complaint-list"), record_body())
    assert response.status_code == expected, response.content
    assert Complaint.objects.count() == (expected == 201)
    if expected != 201:
        assert AuditEvent.objects.filter(event_type__startswith="deviations.").count() == 0
        assert AuditEvent.objects.count() >= events


@pytest.mark.parametrize(("who", "expected"), COMPLAINT_ASSESS.cases())
def test_complaint_assess(as_persona, complaint, who, expected):
    response = as_persona(who).post(
        reverse("api:complaint-assess", args=[complaint.number]),
        {"assessment": "Causality possible.", "serious": False, "reason": "assessed"},
    )
    assert response.status_code == expected, response.content
    complaint.refresh_from_db()
    assert (complaint.report_due_on is None) == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), COMPLAINT_REPORTED.cases())
def test_complaint_reported(as_persona, persona, complaint, who, expected):
    response = as_persona(who).post(
        reverse("api:complaint-reported", args=[complaint.number]),
        {"reported_on": TODAY.isoformat(), "reference": "YC-2026-1", "reason": "sent"},
    )
    assert response.status_code == expected, response.content
    complaint.refresh_from_db()
    assert (complaint.reported_on is not None) == (expected == 200)
    if expected == 200:
        body = response.json()
        assert body["reported_by"]["username"] == who and body["report_on_time"] is True
        assert body["days_left"] is None and body["clock_state"] == "ok"


@pytest.mark.parametrize(("who", "expected"), COMPLAINT_CAPAS.cases())
def test_complaint_capas(as_persona, complaint, who, expected):
    response = as_persona(who).post(
        reverse("api:complaint-capas", args=[complaint.number]),
        {
            "kind": "corrective",
            "title": "Review the infusion guidance",
            "description": "Add CRS monitoring to the guidance.",
            "owner": "site_lead",
            "due_on": _future(14).isoformat(),
            "effectiveness_due_on": _future(60).isoformat(),
            "actions": [
                {"description": "Update guidance", "owner": "site_lead", "due_on": _future(7)}
            ],
            "reason": "CAPA from the complaint",
        },
    )
    assert response.status_code == expected, response.content
    assert Capa.objects.count() == (expected == 201)
    if expected == 201:
        body = response.json()
        assert (body["source"], body["site"]["code"]) == ("complaint", "LDS1")
        assert response["Location"] == reverse("api:capa-detail", args=[body["number"]])


@pytest.mark.parametrize(("who", "expected"), COMPLAINT_CLOSE.cases())
def test_complaint_close(as_persona, persona, closable, who, expected):
    response = as_persona(who).post(
        reverse("api:complaint-close", args=[closable.number]),
        signed(persona, who, meaning="approved", reason="assessed; nothing to report"),
    )
    assert response.status_code == expected, response.content
    closable.refresh_from_db()
    assert (closable.status == ComplaintStatus.CLOSED) == (expected == 200)
    assert bool(signatures_for(closable)) == (expected == 200)


#
# API: the whole flow, and what integrators rely on
#


def test_a_serious_adr_goes_from_recorded_to_closed_through_the_api(api_client_for, plant):
    """DV-11, RP-05, RP-06, ES-01: through the API alone, following the links it gives."""
    batch = start(plant)
    operator, qa, qp = (api_client_for(who) for who in ("operator", "qa", "qp"))
    aware = TODAY
    made = operator.post(
        reverse("api:complaint-list"),
        record_body(product=None, batch=batch.number, serious=False, aware_on=aware.isoformat()),
    )
    assert made.status_code == 201, made.content
    body = made.json()
    number = body["number"]
    assert made["Location"] == body["links"]["self"]
    assert (body["batch"], body["product"]["code"], body["site"]["code"]) == (
        batch.number,
        "CART-01",
        "LDS1",
    )
    assert body["report_due_on"] is None and body["days_left"] is None
    assert body["recorded_by"]["username"] == "operator"

    judged = qa.post(
        body["links"]["assess"],
        {"assessment": "Hospitalised: serious.", "serious": True, "reason": "criteria met"},
    )
    assert judged.status_code == 200, judged.content
    judged_body = judged.json()
    assert judged_body["report_due_on"] == (aware + dt.timedelta(days=15)).isoformat()
    assert judged_body["days_left"] == 15

    refused = qa.post(
        body["links"]["close"], signature_fields(plant.qa, meaning="approved", reason="done")
    )
    assert_problem(refused, 409, "report_required")

    reported = qp.post(
        body["links"]["reported"],
        {"reported_on": TODAY.isoformat(), "reference": "YC-2026-118734", "reason": "sent"},
    )
    assert reported.status_code == 200, reported.content
    reported_body = reported.json()
    assert (reported_body["reported_on"], reported_body["reported_by"]["username"]) == (
        TODAY.isoformat(),
        "qp",
    )
    assert reported_body["report_reference"] == "YC-2026-118734"
    assert reported_body["report_on_time"] is True

    closed = qa.post(
        body["links"]["close"],
        signature_fields(plant.qa, meaning="approved", reason="assessed and reported"),
    )
    assert closed.status_code == 200, closed.content
    closed_body = closed.json()
    assert closed_body["status"] == "closed"
    signature = closed_body["closure_signature"]
    assert (signature["meaning"], signature["username"], signature["valid"]) == (
        "approved",
        "qa",
        True,
    )
    complaint = Complaint.objects.get(number=number)
    events = list(
        AuditEvent.objects.filter(target_type="deviations.complaint", target_id=str(complaint.pk))
        .order_by("seq")
        .values_list("event_type", flat=True)
    )
    assert events == [
        DeviationEvent.COMPLAINT_RECORDED,
        DeviationEvent.COMPLAINT_ASSESSED,
        DeviationEvent.COMPLAINT_REPORTED,
        "signature.applied",
        DeviationEvent.COMPLAINT_CLOSED,
    ]
    read = qa.get(reverse("api:complaint-detail", args=[number])).json()
    assert read["closure_signature"]["valid"] is True


def _api_snapshot() -> tuple[int, int, int]:
    return (Complaint.objects.count(), AuditEvent.objects.count(), Capa.objects.count())


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"aware_on": _future(1).isoformat()}, "date_in_future"),
        ({"aware_on": "2019-01-01"}, "date_out_of_range"),
        ({"aware_on": "yesterday"}, "validation_error"),
        ({"batch": "<spoke batch>"}, "batch_not_at_site"),
        ({"batch": "LDS1-000000-001"}, "unknown_batch"),
        ({"product": "NOPE-1"}, "unknown_product"),
        ({"product": None}, "product_required"),
        ({"site": "ZZZ9"}, "unknown_site"),
        ({"kind": "rumour"}, "invalid_choice"),
        ({"serious": "yes"}, "validation_error"),
        ({"reason": None}, "required"),
        ({"status": "closed"}, "unknown_field"),
        ({"report_due_on": "2099-01-01"}, "unknown_field"),
    ],
)
def test_recording_with_bad_input_is_400_and_writes_nothing(api_client_for, plant, overrides, code):
    """DV-11, RP-05: strict input with stable codes; `status` and the clock are read-only."""
    spoke_batch = start(plant, plant.spoke)
    if overrides.get("batch") == "<spoke batch>":
        overrides = {**overrides, "batch": spoke_batch.number}
    api = api_client_for("operator")
    body = record_body(**overrides)
    if "product" in overrides and overrides["product"] is None:
        body.pop("product", None)
    before = _api_snapshot()
    assert_problem(api.post(reverse("api:complaint-list"), body), 400, code)
    assert _api_snapshot() == before


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"reported_on": _future(1).isoformat(), "reference": "R"}, 400, "date_in_future"),
        (
            {"reported_on": days_ago(5).isoformat(), "reference": "R"},
            400,
            "report_before_awareness",
        ),
        ({"reported_on": TODAY.isoformat()}, 400, "required"),
        ({"reported_on": TODAY.isoformat(), "reference": ""}, 400, "blank"),
        (
            {"reported_on": TODAY.isoformat(), "reference": "R", "reported_by": "qa"},
            400,
            "unknown_field",
        ),
    ],
)
def test_a_bad_report_is_400_and_writes_nothing(api_client_for, complaint, body, status, code):
    api = api_client_for("qa")
    before = _snapshot(complaint)
    response = api.post(
        reverse("api:complaint-reported", args=[complaint.number]), {**body, "reason": "sent"}
    )
    assert_problem(response, status, code)
    assert _snapshot(complaint) == before


def test_closing_refusals_are_problems_and_write_nothing(api_client_for, plant, complaint):
    """DV-11, RP-05, ES-08: 409 without an assessment or a report, 422 for a wrong password,
    400 for another meaning; nothing changes."""
    api = api_client_for("qa")
    url = reverse("api:complaint-close", args=[complaint.number])
    before = _snapshot(complaint)
    body = signature_fields(plant.qa, meaning="approved", reason="done")
    assert_problem(api.post(url, body), 409, "assessment_required")
    assert _snapshot(complaint) == before
    assess(plant, complaint)
    before = _snapshot(complaint)
    body = signature_fields(plant.qa, meaning="approved", reason="done")
    assert_problem(api.post(url, body), 409, "report_required")
    assert _snapshot(complaint) == before
    report(plant, complaint)
    before = _snapshot(complaint)
    wrong = signature_fields(plant.qa, meaning="approved", reason="done", password="wrong")
    assert_problem(api.post(url, wrong), 422, "wrong_password")
    other = signature_fields(plant.qa, meaning="reviewed", reason="done")
    response = api.post(url, other)
    assert response.status_code == 400 and "meaning" in response.json()["errors"]
    after = _snapshot(complaint)
    assert after[1] == before[1] + 1  # the failed signature attempt, and nothing else
    assert after[:1] + after[2:] == before[:1] + before[2:]


def test_an_open_capa_blocks_closure_through_the_api(api_client_for, plant, closable):
    api = api_client_for("qa")
    made = api.post(
        reverse("api:complaint-capas", args=[closable.number]),
        {
            "kind": "corrective",
            "title": "Label check",
            "description": "Add a check.",
            "owner": "site_lead",
            "due_on": _future(14).isoformat(),
            "effectiveness_due_on": _future(60).isoformat(),
            "reason": "CAPA",
        },
    )
    assert made.status_code == 201, made.content
    before = _snapshot(closable)
    response = api.post(
        reverse("api:complaint-close", args=[closable.number]),
        signature_fields(plant.qa, meaning="approved", reason="done"),
    )
    problem = assert_problem(response, 409, "capa_open")
    assert made.json()["number"] in problem["detail"]
    assert _snapshot(closable) == before
    read = api.get(reverse("api:complaint-detail", args=[closable.number])).json()
    assert read["capas"] == [made.json()["number"]]


def test_a_retried_record_never_makes_a_second_complaint(api_client_for, plant):
    """Design §6: `Idempotency-Key` replays the first answer."""
    api = api_client_for("operator")
    url = reverse("api:complaint-list")
    first = api.post(url, record_body(), HTTP_IDEMPOTENCY_KEY="cmp-42")
    again = api.post(url, record_body(), HTTP_IDEMPOTENCY_KEY="cmp-42")
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["number"] == again.json()["number"]
    changed = api.post(url, record_body(reporter="someone else"), HTTP_IDEMPOTENCY_KEY="cmp-42")
    assert changed.status_code == 409
    assert Complaint.objects.count() == 1


def test_the_complaint_filters(api_client_for, plant):
    """RP-05, RP-06: by kind, seriousness, status, site, batch, product and overdue."""
    batch = start(plant)
    on_batch = record(plant, batch, serious=False)
    overdue = record(plant, aware_on=days_ago(20))
    quality = record(plant, kind="quality", serious=True)
    at_man2 = record(plant, site=plant.spoke, serious=False)
    reported = report(plant, record(plant, aware_on=days_ago(18)))
    api = api_client_for("qa")

    def numbers(**params: str) -> list[str]:
        response = api.get(reverse("api:complaint-list"), params)
        assert response.status_code == 200, response.content
        return [c["number"] for c in response.json()["results"]]

    assert numbers(kind="quality") == [quality.number]
    assert numbers(serious="true") == [reported.number, quality.number, overdue.number]
    assert numbers(overdue="true") == [overdue.number]
    assert overdue.number not in numbers(overdue="false")
    assert numbers(site="MAN2") == [at_man2.number]
    assert numbers(batch=batch.number) == [on_batch.number]
    assert numbers(status="closed") == []
    assert len(numbers(product="CART-01")) == 5
    listed = api.get(reverse("api:complaint-list"), {"overdue": "true"}).json()["results"]
    assert (listed[0]["overdue"], listed[0]["days_left"], listed[0]["clock_state"]) == (
        True,
        -5,
        "block",
    )
    for bad in ({"overdue": "maybe"}, {"kind": "rumour"}, {"serious": "1"}, {"site": ""}):
        assert api.get(reverse("api:complaint-list"), bad).status_code == 400


def test_a_site_limited_token_cannot_see_or_touch_another_sites_complaint(plant, complaint):
    """RP-06: another site's complaint does not exist for a token limited to MAN2."""
    at_man2 = record(plant, site=plant.spoke, serious=False)
    qa = token_client(plant.qa, site_codes=["MAN2"])
    listed = qa.get(reverse("api:complaint-list")).json()["results"]
    assert [c["number"] for c in listed] == [at_man2.number]
    before = _snapshot(complaint)
    assert_problem(
        qa.get(reverse("api:complaint-detail", args=[complaint.number])), 404, "not_found"
    )
    response = qa.post(
        reverse("api:complaint-assess", args=[complaint.number]),
        {"assessment": "x", "reason": "r"},
    )
    assert_problem(response, 404, "not_found")
    assert _snapshot(complaint) == before


def test_the_complaint_list_costs_the_same_queries_for_one_or_many(api_client_for, plant):
    """Design §8."""
    api = api_client_for("qa")
    record(plant, start(plant))
    api.get(reverse("api:complaint-list"))  # warm the token's first-use writes

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert api.get(reverse("api:complaint-list")).status_code == 200
        return len(queries)

    one = count()
    for _ in range(3):
        record(plant, start(plant))
    report(plant, assess(plant, record(plant)))
    assert count() == one


def test_the_password_is_never_echoed(api_client_for, plant, closable):
    response = api_client_for("qa").post(
        reverse("api:complaint-close", args=[closable.number]),
        signature_fields(plant.qa, meaning="approved", reason="done"),
    )
    assert response.status_code == 200
    assert PASSWORD not in response.content.decode()
