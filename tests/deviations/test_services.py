"""Deviations and CAPA through their services (issue 6; DV-01…DV-05)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from batches import selectors as batch_selectors
from batches import services as batch_services
from batches.choices import SignalKind
from batches.models import BatchSignal
from controlsite.audit.models import AuditEvent
from controlsite.errors import ApplicationError
from controlsite.notifications.models import Notification
from controlsite.signatures.models import SignatureMeaning
from controlsite.signatures.services import SignatureRefusedError
from deviations import services
from deviations.choices import (
    CapaStatus,
    DeviationAction,
    DeviationClass,
    DeviationStatus,
    Effectiveness,
)
from deviations.events import DeviationEvent
from deviations.models import Capa, CapaAction, Deviation
from tests.batches.helpers import Plant, do_steps, make_plant, ready_batch, start
from tests.masterfile.helpers import signing
from tests.personas import make_persona

pytestmark = pytest.mark.django_db


@pytest.fixture
def plant() -> Plant:
    return make_plant()


def _refused(call: Any, status: int, code: str) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        call()
    assert (caught.value.status_code, caught.value.code) == (status, code), caught.value.message
    return caught.value


def raise_on(
    plant: Plant, batch: Any = None, cls: str = DeviationClass.MAJOR, **extra: Any
) -> Deviation:
    return services.deviation_raise(
        actor=plant.operator,
        site=plant.reference,
        batch=batch,
        title="Bath over temperature",
        description="The water bath read 39.5 °C during thaw.",
        proposed_class=cls,
        immediate_action="Bag moved to the spare bath.",
        **extra,
    )


def triaged(plant: Plant, deviation: Deviation, cls: str | None = None) -> Deviation:
    services.deviation_confirm_class(
        actor=plant.qa,
        deviation=deviation,
        deviation_class=cls or deviation.proposed_class,
        reason="criteria read",
    )
    return services.deviation_transition(
        actor=plant.qa, deviation=deviation, action=DeviationAction.TRIAGE, reason="triaged"
    )


def investigated(plant: Plant, deviation: Deviation) -> Deviation:
    deviation = services.deviation_transition(
        actor=plant.qa, deviation=deviation, action=DeviationAction.INVESTIGATE, reason="start"
    )
    return services.deviation_update(
        actor=plant.lead,
        deviation=deviation,
        reason="investigation written",
        changes={
            "impact_assessment": "Cells within viability; no impact on the batch.",
            "root_cause_category": "equipment",
            "root_cause": "Thermostat drift on bath 1.",
        },
    )


def _future(days: int) -> dt.date:
    return timezone.localdate() + dt.timedelta(days=days)


def make_capa(plant: Plant, source: Deviation, **overrides: Any) -> Capa:
    fields: dict[str, Any] = {
        "actor": plant.qa,
        "title": "Replace the bath thermostat",
        "description": "Replace and requalify; add a daily check.",
        "kind": "corrective",
        "owner": plant.lead,
        "due_on": _future(14),
        "effectiveness_due_on": _future(60),
        "reason": "CAPA from the deviation",
        "deviation": source,
        "actions": [services.ActionInput("Replace the thermostat", plant.lead, _future(7))],
    }
    fields.update(overrides)
    return services.capa_create(**fields)


#
# Raising (DV-01, DV-03)
#


def test_an_operator_raises_a_deviation_on_a_batch_and_qa_is_told(plant):
    batch = start(plant)
    deviation = raise_on(plant, batch)
    assert deviation.number == f"DEV-{timezone.localdate().year}-0001"
    assert deviation.status == DeviationStatus.OPEN and deviation.source == "batch"
    assert deviation.deviation_class == DeviationClass.MAJOR and deviation.confirmed_class == ""
    assert deviation.triage_due_on > timezone.localdate()
    assert deviation.triage_due_on.weekday() < 5
    assert deviation.due_on == timezone.localdate() + dt.timedelta(days=30)
    event = AuditEvent.objects.get(event_type=DeviationEvent.RAISED)
    assert event.actor == plant.operator and event.extra_data["batch"] == batch.number
    assert Notification.objects.filter(recipient=plant.qa, subject__contains=deviation.number)
    assert deviation.history.get().history_type == "+"


@pytest.mark.parametrize("who", ["inspector", "trainer", "sysadmin"])
def test_read_only_people_do_not_raise_deviations(plant, who):
    person = make_persona(who)
    _refused(
        lambda: services.deviation_raise(
            actor=person,
            site=plant.reference,
            title="x",
            description="y",
            proposed_class="minor",
        ),
        403,
        "permission_denied",
    )
    assert not Deviation.objects.exists()


def test_a_deviation_for_a_site_the_raiser_does_not_work_at_is_refused(plant):
    outsider = make_persona("operator", username="elsewhere")
    _refused(
        lambda: services.deviation_raise(
            actor=outsider, site=plant.reference, title="x", description="y", proposed_class="minor"
        ),
        403,
        "not_a_site_member",
    )


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"title": ""}, "invalid"),
        ({"description": "  "}, "invalid"),
        ({"proposed_class": "severe"}, "invalid_choice"),
        ({"title": "x" * 201}, "too_long"),
    ],
)
def test_bad_input_raises_nothing(plant, overrides, code):
    fields = {"title": "t", "description": "d", "proposed_class": "minor", **overrides}
    _refused(
        lambda: services.deviation_raise(actor=plant.operator, site=plant.reference, **fields),
        400,
        code,
    )
    assert not Deviation.objects.exists()


def test_only_qa_confirms_the_class_and_the_change_is_audited(plant):
    deviation = raise_on(plant, cls=DeviationClass.MINOR)
    for person in (plant.operator, plant.lead, plant.qp):
        _refused(
            lambda person=person: services.deviation_confirm_class(
                actor=person, deviation=deviation, deviation_class="major", reason="no"
            ),
            403,
            "permission_denied",
        )
    confirmed = services.deviation_confirm_class(
        actor=plant.qa, deviation=deviation, deviation_class="critical", reason="patient risk"
    )
    assert confirmed.deviation_class == DeviationClass.CRITICAL
    assert confirmed.class_confirmed_by == plant.qa
    event = AuditEvent.objects.get(event_type=DeviationEvent.CLASS_CONFIRMED)
    assert (event.extra_data["old"], event.extra_data["new"]) == ("minor", "critical")


#
# Lifecycle
#


def test_triage_needs_the_class_confirmed_first(plant):
    deviation = raise_on(plant)
    _refused(
        lambda: services.deviation_transition(
            actor=plant.qa, deviation=deviation, action=DeviationAction.TRIAGE, reason="go"
        ),
        409,
        "class_not_confirmed",
    )
    assert triaged(plant, deviation).status == DeviationStatus.TRIAGED


def test_the_whole_lifecycle_with_a_signed_closure(plant):
    deviation = investigated(plant, triaged(plant, raise_on(plant)))
    _refused(
        lambda: services.deviation_transition(
            actor=plant.qa, deviation=deviation, action=DeviationAction.AWAIT_CAPA, reason="go"
        ),
        409,
        "no_capa",
    )
    capa = make_capa(plant, deviation)
    deviation = services.deviation_transition(
        actor=plant.qa, deviation=deviation, action=DeviationAction.AWAIT_CAPA, reason="CAPA"
    )
    assert deviation.status == DeviationStatus.PENDING_CAPA
    # Closing with an open CAPA action is refused, and nothing is written.
    events = AuditEvent.objects.count()
    _refused(
        lambda: services.deviation_transition(
            actor=plant.qa,
            deviation=deviation,
            action=DeviationAction.CLOSE,
            reason="done",
            credentials=signing(plant.qa),
        ),
        409,
        "capa_actions_open",
    )
    assert AuditEvent.objects.count() == events
    action = capa.actions.get()
    services.capa_action_complete(actor=plant.lead, action=action, outcome="Replaced, IQ/OQ ok.")
    closed = services.deviation_transition(
        actor=plant.qa,
        deviation=deviation,
        action=DeviationAction.CLOSE,
        reason="investigation complete, CAPA in place",
        credentials=signing(plant.qa),
    )
    assert closed.status == DeviationStatus.CLOSED and closed.closed_by == plant.qa
    assert closed.closure_signature.meaning == SignatureMeaning.APPROVED
    assert closed.closure_signature.signer == plant.qa


@pytest.mark.parametrize(
    ("action", "status"),
    [
        (DeviationAction.INVESTIGATE, DeviationStatus.OPEN),
        (DeviationAction.AWAIT_CAPA, DeviationStatus.TRIAGED),
        (DeviationAction.CLOSE, DeviationStatus.TRIAGED),
        (DeviationAction.TRIAGE, DeviationStatus.CANCELLED),
        (DeviationAction.CANCEL, DeviationStatus.CANCELLED),
    ],
)
def test_refused_transitions_change_nothing(plant, action, status):
    deviation = raise_on(plant)
    if status != DeviationStatus.OPEN:
        deviation = triaged(plant, deviation)
    if status == DeviationStatus.CANCELLED:
        deviation = services.deviation_transition(
            actor=plant.qa, deviation=deviation, action=DeviationAction.CANCEL, reason="dup"
        )
    before = deviation.history.count()
    _refused(
        lambda: services.deviation_transition(
            actor=plant.qa,
            deviation=deviation,
            action=action,
            reason="try",
            credentials=signing(plant.qa),
        ),
        409,
        "transition_not_allowed",
    )
    deviation.refresh_from_db()
    assert deviation.status == status and deviation.history.count() == before


def test_closing_needs_the_investigation_written(plant):
    deviation = triaged(plant, raise_on(plant))
    deviation = services.deviation_transition(
        actor=plant.qa, deviation=deviation, action=DeviationAction.INVESTIGATE, reason="go"
    )
    error = _refused(
        lambda: services.deviation_transition(
            actor=plant.qa,
            deviation=deviation,
            action=DeviationAction.CLOSE,
            reason="done",
            credentials=signing(plant.qa),
        ),
        409,
        "investigation_incomplete",
    )
    assert "impact assessment" in error.message and "root cause" in error.message


def test_a_wrong_password_at_closure_closes_nothing_and_is_recorded(plant):
    deviation = investigated(plant, triaged(plant, raise_on(plant, cls=DeviationClass.MINOR)))
    credentials = signing(plant.qa)
    with pytest.raises(SignatureRefusedError):
        services.deviation_transition(
            actor=plant.qa,
            deviation=deviation,
            action=DeviationAction.CLOSE,
            reason="done",
            credentials=type(credentials)(
                username=credentials.username, password="wrong", otp=credentials.otp
            ),
        )
    deviation.refresh_from_db()
    assert deviation.status == DeviationStatus.INVESTIGATING
    assert AuditEvent.objects.filter(event_type="signature.authentication_failed").exists()


def test_human_error_needs_a_justification(plant):
    deviation = triaged(plant, raise_on(plant))
    _refused(
        lambda: services.deviation_update(
            actor=plant.lead,
            deviation=deviation,
            reason="cause",
            changes={"root_cause_category": "human_error", "root_cause": "Misread the dial."},
        ),
        400,
        "human_error_unjustified",
    )
    deviation.refresh_from_db()
    assert deviation.root_cause_category == ""
    updated = services.deviation_update(
        actor=plant.lead,
        deviation=deviation,
        reason="cause",
        changes={
            "root_cause_category": "human_error",
            "root_cause": "Misread the dial.",
            "human_error_justification": "Dial unlabelled; training covered the digital model.",
        },
    )
    assert updated.root_cause_category == "human_error"


def test_an_operator_cannot_write_the_investigation(plant):
    deviation = raise_on(plant)
    _refused(
        lambda: services.deviation_update(
            actor=plant.operator, deviation=deviation, reason="x", changes={"root_cause": "y"}
        ),
        403,
        "permission_denied",
    )


#
# Due dates, overdue and extensions (DV-04), with a frozen clock
#


def test_triage_is_due_the_next_working_day():
    friday = dt.date(2026, 11, 20)
    assert services.triage_due(friday) == dt.date(2026, 11, 23)  # Monday
    assert services.triage_due(dt.date(2026, 11, 23)) == dt.date(2026, 11, 24)
    assert services.closure_due(friday, "critical") == dt.date(2026, 12, 20)


def test_the_clocks_start_when_it_happened_not_when_it_was_recorded(plant):
    """DV-04: a deviation recorded ten days late is overdue for triage at once, and its
    closure date counts from the day it happened."""
    happened = timezone.now() - dt.timedelta(days=10)
    deviation = raise_on(plant, occurred_at=happened)
    assert deviation.triage_due_on == services.triage_due(timezone.localdate(happened))
    assert deviation.due_on == timezone.localdate(happened) + dt.timedelta(days=30)
    assert deviation.is_overdue(timezone.localdate())
    assert services.deviations_escalate_overdue() == 1


def test_overdue_deviations_are_escalated_once(plant, settings):
    deviation = raise_on(plant)
    assert not deviation.is_overdue(timezone.localdate())
    later = deviation.triage_due_on + dt.timedelta(days=1)
    assert deviation.is_overdue(later)
    assert services.deviations_escalate_overdue(today=later) == 1
    assert services.deviations_escalate_overdue(today=later) == 0
    assert Notification.objects.filter(subject__startswith=f"OVERDUE {deviation.number}").count()
    assert AuditEvent.objects.filter(event_type=DeviationEvent.ESCALATED).count() == 1
    # Triaged in time for closure: not overdue until the closure date passes.
    deviation = triaged(plant, deviation)
    assert not deviation.is_overdue(later)
    assert deviation.is_overdue(deviation.due_on + dt.timedelta(days=1))


def test_an_extension_is_requested_and_approved_by_qa(plant):
    deviation = raise_on(plant)
    new_date = deviation.due_on + dt.timedelta(days=14)
    extension = services.extension_request(
        actor=plant.lead, deviation=deviation, requested_due_on=new_date, reason="vendor delay"
    )
    _refused(
        lambda: services.extension_request(
            actor=plant.lead, deviation=deviation, requested_due_on=new_date, reason="again"
        ),
        409,
        "extension_pending",
    )
    _refused(
        lambda: services.extension_decide(
            actor=plant.lead, extension=extension, approve=True, reason="self"
        ),
        403,
        "permission_denied",
    )
    services.extension_decide(actor=plant.qa, extension=extension, approve=True, reason="fair")
    deviation.refresh_from_db()
    assert deviation.due_on == new_date


def test_an_extension_to_an_earlier_date_or_the_past_is_refused(plant):
    deviation = raise_on(plant)
    _refused(
        lambda: services.extension_request(
            actor=plant.qa,
            deviation=deviation,
            requested_due_on=deviation.due_on,
            reason="same day",
        ),
        400,
        "invalid",
    )
    _refused(
        lambda: services.extension_request(
            actor=plant.qa, deviation=deviation, requested_due_on=_future(-1), reason="past"
        ),
        400,
        "date_in_past",
    )


#
# CAPA (DV-02)
#


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"owner": None}, "owner_required"),
        ({"due_on": None}, "due_date_required"),
        ({"due_on": _future(-1)}, "date_in_past"),
        ({"effectiveness_due_on": _future(1)}, "invalid"),
        ({"deviation": None}, "source_required"),
        ({"actions": [services.ActionInput("x", None, _future(3))]}, "owner_required"),
        ({"actions": "lead's action in the past"}, "date_in_past"),
    ],
)
def test_a_capa_without_owner_or_due_date_writes_nothing(plant, overrides, code):
    deviation = raise_on(plant)
    if overrides.get("actions") == "lead's action in the past":
        overrides["actions"] = [services.ActionInput("x", plant.lead, _future(-3))]
    _refused(lambda: make_capa(plant, deviation, **overrides), 400, code)
    assert not Capa.objects.exists() and not CapaAction.objects.exists()


@pytest.mark.parametrize("who", ["sysadmin", "inspector", "elsewhere"])
def test_a_capa_owner_must_be_able_to_act_at_the_site(plant, who):
    deviation = raise_on(plant)
    owner = (
        make_persona("operator", username="elsewhere") if who == "elsewhere" else make_persona(who)
    )
    _refused(lambda: make_capa(plant, deviation, owner=owner), 400, "owner_not_eligible")
    assert not Capa.objects.exists()


def test_an_extension_of_a_closed_deviation_cannot_be_decided(plant):
    deviation = raise_on(plant)
    extension = services.extension_request(
        actor=plant.qa,
        deviation=deviation,
        requested_due_on=deviation.due_on + dt.timedelta(days=7),
        reason="vendor",
    )
    deviation = triaged(plant, deviation)
    services.deviation_transition(
        actor=plant.qa, deviation=deviation, action=DeviationAction.CANCEL, reason="duplicate"
    )
    _refused(
        lambda: services.extension_decide(
            actor=plant.qa, extension=extension, approve=True, reason="late"
        ),
        409,
        "deviation_not_open",
    )
    deviation.refresh_from_db()
    assert deviation.due_on == extension.current_due_on


def test_a_capa_closes_only_after_an_effective_check_and_a_signature(plant):
    deviation = raise_on(plant)
    capa = make_capa(plant, deviation)
    assert capa.number == f"CAPA-{timezone.localdate().year}-0001"
    _refused(
        lambda: services.capa_effectiveness_check(
            actor=plant.qa, capa=capa, effectiveness="effective", notes="ok", reason="check"
        ),
        409,
        "capa_actions_open",
    )
    _refused(
        lambda: services.capa_close(
            actor=plant.qa, capa=capa, credentials=signing(plant.qa), reason="close"
        ),
        409,
        "effectiveness_not_checked",
    )
    stranger = make_persona("operator", username="stranger")
    _refused(
        lambda: services.capa_action_complete(
            actor=stranger, action=capa.actions.get(), outcome="done"
        ),
        403,
        "permission_denied",
    )
    services.capa_action_complete(actor=plant.lead, action=capa.actions.get(), outcome="done")
    not_yet = services.capa_effectiveness_check(
        actor=plant.qa, capa=capa, effectiveness="not_effective", notes="recurred", reason="check"
    )
    assert not_yet.status == CapaStatus.OPEN
    services.capa_action_add(
        actor=plant.qa,
        capa=capa,
        item=services.ActionInput("Add an alarm", plant.lead, _future(10)),
        reason="more",
    )
    services.capa_action_complete(
        actor=plant.qa, action=capa.actions.get(status="open"), outcome="Alarm fitted."
    )
    checked = services.capa_effectiveness_check(
        actor=plant.qa,
        capa=capa,
        effectiveness=Effectiveness.EFFECTIVE,
        notes="none since",
        reason="c",
    )
    assert checked.status == CapaStatus.EFFECTIVENESS_CHECK
    closed = services.capa_close(
        actor=plant.qa, capa=capa, credentials=signing(plant.qa), reason="effective"
    )
    assert closed.status == CapaStatus.CLOSED
    assert closed.closure_signature.meaning == SignatureMeaning.APPROVED


def test_qa_cancels_an_open_capa_with_a_reason_and_a_closed_one_stays(plant):
    """DV-02: a CAPA raised in error is cancelled, never deleted; the reason stays with it."""
    capa = make_capa(plant, raise_on(plant))
    _refused(
        lambda: services.capa_cancel(actor=plant.lead, capa=capa, reason="not needed"),
        403,
        "permission_denied",
    )
    _refused(lambda: services.capa_cancel(actor=plant.qa, capa=capa, reason=" "), 400, "invalid")
    assert not AuditEvent.objects.filter(event_type=DeviationEvent.CAPA_CANCELLED).exists()
    cancelled = services.capa_cancel(actor=plant.qa, capa=capa, reason="Raised twice.")
    assert (cancelled.status, cancelled.cancel_reason) == (CapaStatus.CANCELLED, "Raised twice.")
    event = AuditEvent.objects.get(event_type=DeviationEvent.CAPA_CANCELLED)
    assert event.extra_data["from"] == CapaStatus.OPEN and event.reason == "Raised twice."
    _refused(
        lambda: services.capa_cancel(actor=plant.qa, capa=capa, reason="again"),
        409,
        "capa_not_open",
    )


#
# The release gate (design §5; DV-05)
#


def test_an_open_major_deviation_blocks_certification_and_closing_it_clears_the_gate(plant):
    batch = ready_batch(plant)
    deviation = raise_on(plant, batch, cls=DeviationClass.MAJOR)
    report = batch_selectors.batch_gate_report(batch)
    assert [f.code for f in report.blocks] == ["deviation_open"]
    assert deviation.number in report.blocks[0].message
    _refused(
        lambda: batch_services.batch_certify(
            actor=plant.qp, batch=batch, credentials=signing(plant.qp), reason="go"
        ),
        409,
        "gates_blocking",
    )
    deviation = investigated(plant, triaged(plant, deviation))
    services.deviation_transition(
        actor=plant.qa,
        deviation=deviation,
        action=DeviationAction.CLOSE,
        reason="no impact",
        credentials=signing(plant.qa),
    )
    assert batch_selectors.batch_gate_report(batch).findings == ()


def test_an_open_minor_deviation_warns_and_a_cancelled_one_says_nothing(plant):
    batch = ready_batch(plant)
    deviation = raise_on(plant, batch, cls=DeviationClass.MINOR)
    report = batch_selectors.batch_gate_report(batch)
    assert [(f.code, f.severity.value) for f in report.findings] == [
        ("minor_deviation_open", "warn")
    ]
    # QA confirming it major makes it block.
    services.deviation_confirm_class(
        actor=plant.qa, deviation=deviation, deviation_class="major", reason="reassessed"
    )
    assert batch_selectors.batch_gate_report(batch).blocks
    services.deviation_transition(
        actor=plant.qa, deviation=deviation, action=DeviationAction.CANCEL, reason="duplicate"
    )
    assert batch_selectors.batch_gate_report(batch).findings == ()


#
# The batches outbox (design §2)
#


def test_batch_signals_become_deviations_exactly_once(plant):
    batch = do_steps(plant, start(plant))
    for key, value in (("endotoxin", "9"), ("viability", "50")):
        batch_services.result_record(
            actor=plant.operator, batch=batch, specification_key=key, value=value
        )
    assert services.signals_process() == 2
    assert services.signals_process() == 0
    by_key = {
        str(d.signal.detail["specification"]): d
        for d in Deviation.objects.select_related("signal").filter(signal__batch=batch)
        if d.signal is not None
    }
    # As the gates weigh them: a failed registered specification is major, in-house minor.
    assert by_key["viability"].proposed_class == DeviationClass.MAJOR
    assert by_key["endotoxin"].proposed_class == DeviationClass.MINOR
    deviation = by_key["endotoxin"]
    assert deviation.source == "signal" and deviation.batch == batch
    assert "endotoxin" in deviation.description
    event = AuditEvent.objects.filter(event_type=DeviationEvent.RAISED).first()
    assert event is not None and event.actor is None and event.actor_username == "system"
    assert not BatchSignal.objects.filter(batch=batch, processed_at__isnull=True).exists()
    assert BatchSignal.objects.filter(batch=batch, kind=SignalKind.RESULT_FAILED).count() == 2
