"""OOS investigations (issue 6 §2; DV-10, DV-05): opened by the system from a failed registered
specification or by Control Site QA, taken through Phases Ia, Ib, II and III, concluded with
QA's signature — the result confirmed, or invalidated on evidence of a laboratory cause — while
the original result is never changed; an open investigation blocks the batch's certification.

Through the services, the pages and the API, against the real database: every refusal is
checked to write nothing (no row, no history, no audit event, no signature).
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

from batches import selectors as batch_selectors
from batches import services as batch_services
from batches.choices import SignalKind
from batches.models import Batch, TestResult
from controlsite.accounts.models import User
from controlsite.audit.models import AuditEvent
from controlsite.errors import ApplicationError
from controlsite.notifications.models import Notification
from controlsite.signatures.models import ElectronicSignature, SignatureMeaning
from controlsite.signatures.services import SignatureCredentials, SignatureRefusedError
from deviations import services
from deviations.choices import DeviationAction, DeviationClass, OosOutcome, OosPhase
from deviations.events import DeviationEvent
from deviations.gates import OOS_OPEN
from deviations.models import Capa, Deviation, OosInvestigation
from deviations.services import oos as oos_services
from sites import services as site_services
from sites.choices import SiteRole
from tests.batches.helpers import Plant, do_steps, make_plant, passing_results, start
from tests.batches.test_api import assert_problem, signature_fields, token_client
from tests.batches.test_pages import sig
from tests.deviations.test_services import raise_on
from tests.masterfile.helpers import signing
from tests.matrix import ANON, Matrix, only
from tests.personas import PASSWORD, login, make_persona

pytestmark = pytest.mark.django_db

YEAR = timezone.localdate().year

#
# The world
#


@pytest.fixture
def plant() -> Plant:
    """tests.batches.helpers.make_plant: LDS1 and MAN2 active; the site lead and the operators
    work at both; the CART-01 template has `viability` (registered, ≥ 70 %), `endotoxin`
    (in-house, ≤ 5 EU/mL) and `sterility` (registered, late)."""
    return make_plant()


@pytest.fixture
def persona(db: None) -> Callable[[str], User]:
    """The conftest's personas, reusing the plant's people, so a matrix client is the plant's
    own QA, lead or operator."""

    def get(name: str) -> User:
        return User.objects.filter(username=name).first() or make_persona(name)

    return get


def _failed(plant: Plant, key: str = "viability", value: str = "50") -> TestResult:
    """A completed batch at LDS1 whose `key` result failed (viability is registered, endotoxin
    in-house)."""
    batch = do_steps(plant, start(plant))
    return batch_services.result_record(
        actor=plant.operator, batch=batch, specification_key=key, value=value
    )


@pytest.fixture
def failed(plant: Plant) -> TestResult:
    """A failed registered result (viability 50 %, limit ≥ 70 %), not yet investigated."""
    return _failed(plant)


@pytest.fixture
def oos(plant: Plant, failed: TestResult) -> OosInvestigation:
    """An open investigation of the failed viability result, opened by QA, in Phase Ia."""
    return oos_services.oos_open(actor=plant.qa, result=failed, reason="viability below 70 %")


def _refused(call: Callable[[], Any], status: int, code: str) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        call()
    assert (caught.value.status_code, caught.value.code) == (status, code), caught.value.message
    return caught.value


def _snapshot() -> tuple[Any, ...]:
    """Everything a refused OOS write must leave as it was."""
    rows = OosInvestigation.objects.order_by("pk")
    return (
        list(rows.values_list("number", "phase", "outcome", "phase_ia_findings", "deviation_id")),
        OosInvestigation.history.count(),
        AuditEvent.objects.count(),
        ElectronicSignature.objects.count(),
    )


def _findings(plant: Plant, oos: OosInvestigation, text: str) -> OosInvestigation:
    return oos_services.oos_record_findings(
        actor=plant.lead, oos=oos, findings=text, reason="findings written"
    )


def _advance(plant: Plant, oos: OosInvestigation) -> OosInvestigation:
    return oos_services.oos_advance(actor=plant.qa, oos=oos, reason="no laboratory cause")


def to_phase_ii(plant: Plant, oos: OosInvestigation) -> OosInvestigation:
    """Ia and Ib found no laboratory cause; Phase II's findings are written."""
    oos = _advance(plant, _findings(plant, oos, "No obvious error: calculation and log fine."))
    oos = _advance(plant, _findings(plant, oos, "Retest by a second analyst confirmed 50 %."))
    return _findings(plant, oos, "The wash step ran 4 minutes short.")


def _conclude(
    plant: Plant,
    oos: OosInvestigation,
    outcome: str = OosOutcome.INVALIDATED,
    evidence: str = "Calibration certificate CAL-0917 expired on 20 Nov.",
    *,
    actor: User | None = None,
    credentials: SignatureCredentials | None = None,
    conclusion: str = "Assignable laboratory cause: pipette out of calibration.",
) -> OosInvestigation:
    actor = actor or plant.qa
    return oos_services.oos_conclude(
        actor=actor,
        oos=oos,
        outcome=outcome,
        conclusion=conclusion,
        invalidation_evidence=evidence,
        credentials=credentials or signing(actor),
        reason="investigation concluded",
    )


def _lead_elsewhere(plant: Plant) -> User:
    """A site lead who works at MAN2 only."""
    lead = make_persona("site_lead", username="lead-man2")
    site_services.membership_add(
        actor=plant.qa, site=plant.spoke, user=lead, role=SiteRole.SITE_LEAD, reason="leads MAN2"
    )
    return lead


def _operator_elsewhere(plant: Plant) -> User:
    """An operator who works at MAN2 only."""
    operator = make_persona("operator", username="operator-man2")
    site_services.membership_add(
        actor=plant.qa,
        site=plant.spoke,
        user=operator,
        role=SiteRole.SITE_OPERATOR,
        reason="works at MAN2",
    )
    return operator


#
# Opening by the system (DV-10, BR-08): a failed registered specification, exactly once
#


def test_a_failed_registered_result_opens_its_oos_with_its_deviation_exactly_once(plant):
    """DV-10: the system opens the investigation in the transaction that turns the signal into
    a deviation, linked to it; an in-house failure gets a deviation but no investigation."""
    viability = _failed(plant)
    endotoxin = batch_services.result_record(
        actor=plant.operator, batch=viability.batch, specification_key="endotoxin", value="9"
    )
    assert services.signals_process() == 2
    oos = OosInvestigation.objects.get()
    assert oos.result == viability and oos.number == f"OOS-{YEAR}-0001"
    assert (oos.phase, oos.outcome, oos.created_by) == (OosPhase.PHASE_IA, OosOutcome.OPEN, None)
    deviation = Deviation.objects.get(signal__detail__specification="viability")
    assert oos.deviation == deviation and deviation.proposed_class == DeviationClass.MAJOR
    assert not OosInvestigation.objects.filter(result=endotoxin).exists()
    event = AuditEvent.objects.get(event_type=DeviationEvent.OOS_OPENED)
    assert event.actor is None and event.actor_username == "system"
    assert event.extra_data["specification"] == "viability"
    assert event.extra_data["deviation"] == deviation.number
    for person in (plant.qa, plant.lead):
        assert Notification.objects.filter(recipient=person, subject__contains=oos.number)
    assert oos.history.get().history_type == "+"
    # A second run (or a second worker) opens nothing more.
    assert services.signals_process() == 0
    assert OosInvestigation.objects.count() == 1
    assert AuditEvent.objects.filter(event_type=DeviationEvent.OOS_OPENED).count() == 1


def test_a_late_registered_failure_after_certification_opens_its_oos(plant):
    """DV-10, BR-09: a late sterility failure on a certified batch is investigated too."""
    batch = do_steps(plant, start(plant))
    passing_results(plant, batch)
    batch_services.batch_certify(
        actor=plant.qp, batch=batch, credentials=signing(plant.qp), reason="all gates clear"
    )
    late = batch_services.result_record(
        actor=plant.operator, batch=batch, specification_key="sterility", value="3"
    )
    assert late.late and not late.passed
    services.signals_process()
    oos = OosInvestigation.objects.get()
    assert oos.result == late
    assert oos.deviation is not None and oos.deviation.signal is not None
    assert oos.deviation.signal.kind == SignalKind.LATE_RESULT_FAILED


def test_an_oos_opened_by_hand_first_is_linked_when_the_signal_arrives(plant, oos):
    """DV-10: QA opened it before the outbox ran; the system adds the deviation, no second."""
    assert oos.deviation_id is None
    services.signals_process()
    linked = OosInvestigation.objects.get()
    assert linked.pk == oos.pk
    assert linked.deviation == Deviation.objects.get(signal__detail__specification="viability")
    assert AuditEvent.objects.filter(event_type=DeviationEvent.OOS_LINKED).count() == 1


#
# Opening by Control Site QA
#


def test_qa_opens_an_oos_of_an_in_house_failure_linked_to_its_deviation(plant):
    """DV-10: an in-house failure is investigated when QA decides; the deviation the system
    raised from the same result's signal is linked."""
    result = _failed(plant, "endotoxin", "9")
    services.signals_process()
    assert not OosInvestigation.objects.exists()
    oos = oos_services.oos_open(actor=plant.qa, result=result, reason="trend of endotoxin")
    assert oos.deviation == Deviation.objects.get(signal__detail__specification="endotoxin")
    assert oos.created_by == plant.qa and oos.phase == OosPhase.PHASE_IA
    event = AuditEvent.objects.get(event_type=DeviationEvent.OOS_OPENED)
    assert (event.actor, event.reason) == (plant.qa, "trend of endotoxin")
    assert Notification.objects.filter(recipient=plant.lead, subject__contains=oos.number)


def test_a_deviation_named_by_qa_is_linked(plant, failed):
    """DV-10: the deviation QA names is linked, if it is about the same batch and open."""
    deviation = raise_on(plant, failed.batch, result=failed)
    oos = oos_services.oos_open(
        actor=plant.qa, result=failed, reason="with its deviation", deviation=deviation
    )
    assert oos.deviation == deviation


def test_a_passed_result_or_a_second_investigation_is_refused_and_writes_nothing(plant, failed):
    """DV-10: only a failed result is investigated, once (never the one-to-one's error)."""
    passed = batch_services.result_record(
        actor=plant.operator, batch=failed.batch, specification_key="endotoxin", value="1"
    )
    before = _snapshot()
    _refused(
        lambda: oos_services.oos_open(actor=plant.qa, result=passed, reason="look"),
        400,
        "result_passed",
    )
    assert _snapshot() == before
    first = oos_services.oos_open(actor=plant.qa, result=failed, reason="first")
    before = _snapshot()
    error = _refused(
        lambda: oos_services.oos_open(actor=plant.qa, result=failed, reason="again"),
        409,
        "oos_exists",
    )
    assert first.number in error.message
    assert _snapshot() == before


@pytest.mark.parametrize("who", ["operator", "lead", "qp"])
def test_only_qa_opens_an_investigation(plant, failed, who):
    """DV-10: opening is Control Site QA's; a refusal writes nothing."""
    before = _snapshot()
    _refused(
        lambda: oos_services.oos_open(actor=getattr(plant, who), result=failed, reason="mine"),
        403,
        "permission_denied",
    )
    assert _snapshot() == before


@pytest.mark.parametrize(
    ("call", "status", "code"),
    [
        ("no reason", 400, "reason_required"),
        ("other batch's deviation", 400, "deviation_not_of_batch"),
        ("cancelled deviation", 409, "deviation_not_open"),
    ],
)
def test_bad_input_to_opening_writes_nothing(plant, failed, call, status, code):
    """DV-10: a reason is required; a deviation named is of the same batch and open."""
    deviation = None
    reason = "open it"
    if call == "no reason":
        reason = " "
    elif call == "other batch's deviation":
        deviation = raise_on(plant, start(plant))
    else:
        deviation = raise_on(plant, failed.batch)
        services.deviation_confirm_class(
            actor=plant.qa, deviation=deviation, deviation_class="major", reason="criteria"
        )
        services.deviation_transition(
            actor=plant.qa,
            deviation=deviation,
            action=DeviationAction.CANCEL,
            reason="raised twice",
        )
    before = _snapshot()
    _refused(
        lambda: oos_services.oos_open(
            actor=plant.qa, result=failed, reason=reason, deviation=deviation
        ),
        status,
        code,
    )
    assert _snapshot() == before


#
# The phases (DV-10)
#


def test_the_phases_move_on_only_with_findings_and_never_beyond_phase_iii(plant, oos):
    """DV-10: Ia → Ib → II → III, each once its findings are written; QA moves it on."""
    before = _snapshot()
    _refused(lambda: _advance(plant, oos), 409, "findings_required")
    assert _snapshot() == before
    seen = [oos.phase]
    for text in ("No obvious error.", "No laboratory cause.", "Wash step short."):
        oos = _advance(plant, _findings(plant, oos, text))
        seen.append(oos.phase)
    assert seen == ["ia", "ib", "ii", "iii"]
    # Earlier phases keep their findings; Phase III has none yet.
    assert oos.phase_ib_findings == "No laboratory cause." and oos.phase_iii_findings == ""
    _findings(plant, oos, "Batch rejected; no other batch affected.")
    before = _snapshot()
    _refused(lambda: _advance(plant, oos), 409, "transition_not_allowed")
    assert _snapshot() == before
    moves = AuditEvent.objects.filter(event_type=DeviationEvent.OOS_ADVANCED).order_by("seq")
    assert [(e.extra_data["old"], e.extra_data["new"]) for e in moves] == [
        ("ia", "ib"),
        ("ib", "ii"),
        ("ii", "iii"),
    ]
    # Moving to Phase II tells QA and the site lead the laboratory found nothing.
    assert Notification.objects.filter(recipient=plant.lead, subject__contains="full investi")


@pytest.mark.parametrize("who", ["lead", "operator", "qp"])
def test_only_qa_moves_an_investigation_on(plant, oos, who):
    """DV-10: the phase changes only by Control Site QA."""
    oos = _findings(plant, oos, "No obvious error.")
    before = _snapshot()
    _refused(
        lambda: oos_services.oos_advance(actor=getattr(plant, who), oos=oos, reason="go"),
        403,
        "permission_denied",
    )
    assert _snapshot() == before


def test_findings_are_written_by_qa_or_the_site_lead_at_the_batchs_site(plant, oos):
    """DV-10: QA or the site lead at the batch's site; an operator or another site's lead is
    refused (403) and nothing is written; rewriting the same text changes nothing."""

    def write_as(person: User) -> Callable[[], Any]:
        return lambda: oos_services.oos_record_findings(
            actor=person, oos=oos, findings="mine", reason="r"
        )

    for person in (plant.operator, plant.qp, _lead_elsewhere(plant)):
        before = _snapshot()
        _refused(write_as(person), 403, "permission_denied")
        assert _snapshot() == before
    _refused(lambda: _findings(plant, oos, "   "), 400, "invalid")
    written = _findings(plant, oos, "Calculation checked: correct.")
    assert written.phase_ia_findings == "Calculation checked: correct."
    oos_services.oos_record_findings(
        actor=plant.qa, oos=oos, findings="Pipette out of calibration.", reason="QA's update"
    )
    event = AuditEvent.objects.filter(event_type=DeviationEvent.OOS_FINDINGS).order_by("-seq")[0]
    assert (event.extra_data["old"], event.extra_data["new"]) == (
        "Calculation checked: correct.",
        "Pipette out of calibration.",
    )
    before = _snapshot()
    oos_services.oos_record_findings(
        actor=plant.qa, oos=oos, findings="Pipette out of calibration.", reason="same again"
    )
    assert _snapshot() == before


#
# The conclusion, signed (DV-10, ES-01)
#


def test_an_invalidation_needs_evidence_and_qas_signature_and_keeps_the_result(plant, oos):
    """DV-10: in Phase Ia, on the evidence of a laboratory cause, signed "approved" by QA; the
    TestResult row is never changed."""
    result = oos.result
    value, history = result.value, result.history.count()
    oos = _findings(plant, oos, "The pipette used was out of calibration since 20 Nov.")
    before = _snapshot()
    _refused(lambda: _conclude(plant, oos, evidence=""), 400, "evidence_required")
    _refused(lambda: _conclude(plant, oos, actor=plant.lead), 403, "permission_denied")
    _refused(lambda: _conclude(plant, oos, actor=plant.qp), 403, "permission_denied")
    assert _snapshot() == before
    done = _conclude(plant, oos)
    assert (done.outcome, done.phase) == (OosOutcome.INVALIDATED, OosPhase.PHASE_IA)
    assert done.invalidation_evidence.startswith("Calibration certificate")
    assert done.closed_at is not None and not done.is_open
    signature = done.closure_signature
    assert signature is not None
    assert (signature.meaning, signature.signer) == (SignatureMeaning.APPROVED, plant.qa)
    event = AuditEvent.objects.get(event_type=DeviationEvent.OOS_CONCLUDED)
    assert event.signature == signature and event.extra_data["outcome"] == "invalidated"
    assert event.extra_data["value"] == format(value, "f")
    # The original result stays exactly as recorded.
    result.refresh_from_db()
    assert (result.value, result.passed, result.history.count()) == (value, False, history)


def test_a_wrong_password_concludes_nothing_and_is_recorded(plant, oos):
    """DV-10, ES-08: 422; the investigation and the result stay as they were; only the failed
    authentication is recorded (it counts toward lockout)."""
    oos = _findings(plant, oos, "Pipette out of calibration.")
    good = signing(plant.qa)
    wrong = SignatureCredentials(username=good.username, password="wrong", otp=good.otp)
    before = _snapshot()
    with pytest.raises(SignatureRefusedError) as caught:
        _conclude(plant, oos, credentials=wrong)
    assert caught.value.status_code == 422
    rows, history, events, signatures = _snapshot()
    assert (rows, history, signatures) == before[:2] + before[3:]
    assert events == before[2] + 1
    assert AuditEvent.objects.order_by("-seq")[0].event_type == "signature.authentication_failed"
    oos.refresh_from_db()
    assert oos.is_open and oos.closure_signature is None


@pytest.mark.parametrize(
    ("setup", "outcome", "evidence", "status", "code"),
    [
        ("ia", OosOutcome.CONFIRMED, "", 409, "confirmation_too_early"),
        ("ib", OosOutcome.CONFIRMED, "", 409, "confirmation_too_early"),
        ("ii", OosOutcome.INVALIDATED, "A reason", 409, "invalidation_needs_lab_cause"),
        ("ii", OosOutcome.CONFIRMED, "Some evidence", 400, "evidence_not_applicable"),
        ("ii", OosOutcome.OPEN, "", 400, "invalid_choice"),
        ("ii", "dismissed", "", 400, "invalid_choice"),
        ("ib no findings", OosOutcome.INVALIDATED, "Evidence", 409, "findings_required"),
    ],
)
def test_conclusions_against_the_phased_model_are_refused(
    plant, oos, setup, outcome, evidence, status, code
):
    """DV-10: invalidate only in Ia/Ib with the cause written; confirm from Phase II on."""
    oos = _findings(plant, oos, "No obvious error.")
    if setup != "ia":
        oos = _advance(plant, oos)
    if setup == "ii":
        oos = _advance(plant, _findings(plant, oos, "No laboratory cause."))
        oos = _findings(plant, oos, "Wash step short.")
    before = _snapshot()
    _refused(lambda: _conclude(plant, oos, outcome, evidence), status, code)
    assert _snapshot() == before


def test_a_conclusion_needs_its_text(plant, oos):
    """DV-10, AT-02: the conclusion QA signs says what was found and why."""
    oos = _findings(plant, oos, "Pipette out of calibration.")
    _refused(lambda: _conclude(plant, oos, conclusion=" "), 400, "conclusion_required")


def test_a_confirmed_result_from_phase_ii_and_a_concluded_investigation_no_longer_changes(
    plant, oos
):
    """DV-10: confirmed once the laboratory phases found nothing; then closed to changes."""
    oos = to_phase_ii(plant, oos)
    done = _conclude(
        plant, oos, OosOutcome.CONFIRMED, "", conclusion="No laboratory cause; wash too short."
    )
    assert (done.outcome, done.invalidation_evidence) == (OosOutcome.CONFIRMED, "")
    before = _snapshot()
    _refused(lambda: _advance(plant, done), 409, "oos_concluded")
    _refused(lambda: _findings(plant, done, "More."), 409, "oos_concluded")
    _refused(
        lambda: _conclude(plant, done, OosOutcome.CONFIRMED, "", conclusion="Again."),
        409,
        "oos_concluded",
    )
    assert _snapshot() == before


#
# The release gate (design §5; DV-05)
#


def _gate_codes(batch: Batch) -> list[str]:
    return [f.code for f in batch_selectors.batch_gate_report(batch).findings]


def test_an_open_oos_blocks_certification_and_concluding_clears_it(plant):
    """DV-05: an open investigation of one of the batch's results blocks the QP; once
    concluded its finding is gone (the in-house failure still warns)."""
    batch = do_steps(plant, start(plant))
    batch_services.result_record(
        actor=plant.operator, batch=batch, specification_key="viability", value="90"
    )
    result = batch_services.result_record(
        actor=plant.operator, batch=batch, specification_key="endotoxin", value="9"
    )
    assert _gate_codes(batch) == ["unregistered_specification_failed"]
    oos = oos_services.oos_open(actor=plant.qa, result=result, reason="investigate")
    report = batch_selectors.batch_gate_report(batch)
    assert [f.code for f in report.blocks] == [OOS_OPEN]
    assert oos.number in report.blocks[0].message
    _refused(
        lambda: batch_services.batch_certify(
            actor=plant.qp,
            batch=batch,
            credentials=signing(plant.qp),
            reason="go",
            justification="endotoxin in-house only",
        ),
        409,
        "gates_blocking",
    )
    _conclude(plant, _findings(plant, oos, "Sample contaminated at the bench."))
    assert OOS_OPEN not in _gate_codes(batch)
    assert batch_selectors.batch_gate_report(batch).blocks == ()


def test_a_registered_failure_blocks_twice_and_a_confirmed_one_still_blocks(plant, failed):
    """DV-05, BR-08: the system's investigation blocks beside the failed specification and its
    deviation; concluding clears only the investigation's own finding."""
    services.signals_process()
    batch = failed.batch
    codes = _gate_codes(batch)
    assert {OOS_OPEN, "specification_failed", "deviation_open"} <= set(codes)
    oos = to_phase_ii(plant, OosInvestigation.objects.get())
    _conclude(plant, oos, OosOutcome.CONFIRMED, "", conclusion="Confirmed: wash too short.")
    codes = _gate_codes(batch)
    assert OOS_OPEN not in codes and "specification_failed" in codes


#
# Pages
#


def _get(user: User, name: str, *args: Any) -> Any:
    return login(Client(), user).get(reverse(name, args=args))


def test_qa_reads_the_list_and_the_investigation_with_the_original_result(plant, oos):
    """DV-10: the page shows the original result in full and the phases as a stepper."""
    listing = _get(plant.qa, "deviations:oos-index")
    assert listing.status_code == 200
    text = listing.content.decode()
    assert oos.number in text and "50 %" in text and oos.result.batch.number in text
    page = _get(plant.qa, "deviations:oos-detail", oos.number)
    assert page.status_code == 200
    html = page.content.decode()
    for expected in ("50 %", "≥ 70 %", "Fail", "LDS1", oos.result.batch.number, "Viability"):
        assert expected in html
    assert 'aria-label="Investigation phases"' in html and 'aria-current="step"' in html
    assert "Phase Ia" in html and "Phase III" in html
    assert "cannot be certified while this investigation is open" in html
    # QA sees the forms: findings, move on, conclude (signed), raise a CAPA.
    for url in ("oos-findings", "oos-advance", "oos-conclude", "oos-capa-create"):
        assert reverse(f"deviations:{url}", args=[oos.number]) in html
    assert 'name="conclude-password"' in html


def test_the_list_offers_qa_to_open_an_investigation_of_a_failed_result(plant, failed):
    """DV-10: QA's queue of failed results without an investigation; the lead sees it, no form."""
    listing = _get(plant.qa, "deviations:oos-index").content.decode()
    assert reverse("deviations:oos-open", args=[failed.pk]) in listing
    assert "Open OOS investigation" in listing
    lead_view = _get(plant.lead, "deviations:oos-index").content.decode()
    assert failed.batch.number in lead_view
    assert reverse("deviations:oos-open", args=[failed.pk]) not in lead_view


def test_an_operator_of_another_site_sees_nothing_of_it(plant, oos):
    """DV-10: another site's investigation does not exist for them (404), in the list too."""
    elsewhere = _operator_elsewhere(plant)
    assert _get(elsewhere, "deviations:oos-detail", oos.number).status_code == 404
    listing = _get(elsewhere, "deviations:oos-index").content.decode()
    assert oos.number not in listing and oos.result.batch.number not in listing
    client = login(Client(), elsewhere)
    before = _snapshot()
    response = client.post(
        reverse("deviations:oos-findings", args=[oos.number]), {"findings": "x", "reason": "r"}
    )
    assert response.status_code == 404
    response = client.post(reverse("deviations:oos-open", args=[oos.result.pk]), {"reason": "r"})
    assert response.status_code == 404
    assert _snapshot() == before
    assert _get(plant.qa, "deviations:oos-detail", "OOS-1999-0001").status_code == 404


def test_people_without_the_role_cannot_post_qa_actions(plant, failed):
    """DV-10: opening is QA's; an operator's POST is 403 and writes nothing."""
    operator = login(Client(), plant.operator)
    before = _snapshot()
    response = operator.post(reverse("deviations:oos-open", args=[failed.pk]), {"reason": "r"})
    assert response.status_code == 403
    assert _snapshot() == before


def test_qa_opens_an_investigation_from_the_list(plant, failed):
    """DV-10: the list's form opens it (a reason is required); a second is refused (409)."""
    qa = login(Client(), plant.qa)
    url = reverse("deviations:oos-open", args=[failed.pk])
    refused = qa.post(url, {"reason": ""})
    assert refused.status_code == 400 and not OosInvestigation.objects.exists()
    opened = qa.post(url, {"reason": "below 70 %"})
    oos = OosInvestigation.objects.get()
    assert opened.status_code == 302
    assert opened["Location"] == reverse("deviations:oos-detail", args=[oos.number])
    before = _snapshot()
    again = qa.post(url, {"reason": "twice"})
    assert again.status_code == 409 and oos.number in again.content.decode()
    assert _snapshot() == before


def test_the_forms_of_one_investigation(plant, oos):
    """DV-10: findings (site lead), move on (QA, refused without findings), conclude signed
    (refused without evidence, with a wrong password), CAPA from the investigation."""
    qa, lead = login(Client(), plant.qa), login(Client(), plant.lead)
    url = reverse("deviations:oos-detail", args=[oos.number])

    def post(client: Client, name: str, data: dict[str, str]) -> Any:
        return client.post(reverse(f"deviations:{name}", args=[oos.number]), data)

    early = post(qa, "oos-advance", {"reason": "go"})
    assert early.status_code == 409 and "Write the findings of Phase Ia" in early.content.decode()
    saved = post(lead, "oos-findings", {"findings": "Pipette out of calibration.", "reason": "Ia"})
    assert saved.status_code == 302
    assert lead.get(url).status_code == 200
    conclusion = {
        "outcome": "invalidated",
        "conclusion": "Assignable laboratory cause: pipette out of calibration.",
        "invalidation_evidence": "",
    }
    no_evidence = post(qa, "oos-conclude", {**conclusion, **sig(plant.qa, "conclude", "approved")})
    assert no_evidence.status_code == 400 and "evidence" in no_evidence.content.decode()
    conclusion["invalidation_evidence"] = "Certificate CAL-0917 expired 20 Nov."
    wrong = sig(plant.qa, "conclude", "approved")
    wrong["conclude-password"] = "not-" + PASSWORD
    refused = post(qa, "oos-conclude", {**conclusion, **wrong})
    assert refused.status_code == 422
    assert OosInvestigation.objects.filter(pk=oos.pk, outcome=OosOutcome.OPEN).exists()
    done = post(qa, "oos-conclude", {**conclusion, **sig(plant.qa, "conclude", "approved")})
    assert done.status_code == 302, done.content.decode()[:2000]
    oos.refresh_from_db()
    assert oos.outcome == OosOutcome.INVALIDATED and oos.closure_signature is not None
    page = qa.get(url).content.decode()
    assert f"Result invalidated by {oos.number} on evidence" in page
    assert "50 %" in page and "Certificate CAL-0917" in page and "Quinn Adams" in page
    # The list shows the value too, never hidden.
    assert "50 %" in qa.get(reverse("deviations:oos-index")).content.decode()
    soon = (timezone.localdate() + dt.timedelta(days=7)).isoformat()
    later = (timezone.localdate() + dt.timedelta(days=60)).isoformat()
    made = post(
        qa,
        "oos-capa-create",
        {
            "title": "Pipette calibration control",
            "description": "Calibration due dates checked before use.",
            "kind": "preventive",
            "owner": "site_lead",
            "due_on": soon,
            "effectiveness_due_on": later,
            "first_action": "Add the check to the bench SOP",
            "first_action_due_on": soon,
            "reason": "CAPA from the OOS",
        },
    )
    capa = Capa.objects.get()
    assert made.status_code == 302
    assert made["Location"] == reverse("deviations:capa-detail", args=[capa.number])
    assert (capa.source, capa.oos, capa.site) == ("oos", oos, plant.reference)
    assert capa.number in qa.get(url).content.decode()


def test_the_list_reads_a_fixed_number_of_queries(plant, oos):
    """DV-10, design §8: the list costs the same for one investigation or many."""
    client = login(Client(), plant.qa)
    url = reverse("deviations:oos-index")
    client.get(url)

    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    few = count()
    for _ in range(3):
        oos_services.oos_open(actor=plant.qa, result=_failed(plant), reason="another")
    _failed(plant, "endotoxin", "9")
    assert count() == few


#
# API: permission matrices
#

EVERY_API_USER = only({"sysadmin": 403, "outsider": 403}, others=200, anonymous=401)
READERS = only(
    {"trainer": 404, "integrator": 404, "sysadmin": 403, "outsider": 403},
    others=200,
    anonymous=401,
)
QA_WRITE = only({"qa": 200, "trainer": 404, "integrator": 404}, others=403, anonymous=401)

OOS_LIST = Matrix("api:oos-investigation-list", EVERY_API_USER)
OOS_DETAIL = Matrix("api:oos-investigation-detail", READERS)
# A result of a batch the caller cannot see is a 400 (unknown_result).
OOS_CREATE = Matrix(
    "api:oos-investigation-create",
    only({"qa": 201, "trainer": 400, "integrator": 400}, others=403, anonymous=401),
)
OOS_FINDINGS = Matrix("api:oos-investigation-findings", {**QA_WRITE, "site_lead": 200})
OOS_ADVANCE = Matrix("api:oos-investigation-advance", QA_WRITE)
OOS_CONCLUDE = Matrix("api:oos-investigation-conclude", QA_WRITE)

SEES = {"qa", "qp", "inspector", "site_lead", "operator"}


def _detail_url(oos: OosInvestigation, name: str = "detail") -> str:
    return reverse(f"api:oos-investigation-{name}", args=[oos.number])


def _signed(persona: Callable[[str], User], who: str, **fields: Any) -> dict[str, Any]:
    """The persona's own signature fields (Control Site QA's for anonymous)."""
    return signature_fields(persona("qa") if who == ANON else persona(who), **fields)


INVALIDATE = {
    "outcome": "invalidated",
    "conclusion": "Assignable laboratory cause: pipette out of calibration.",
    "invalidation_evidence": "Certificate CAL-0917 expired on 20 Nov.",
}


@pytest.mark.parametrize(("who", "expected"), OOS_LIST.cases())
def test_api_list(as_persona, oos, who, expected):
    """DV-10: every API user lists the investigations they may see."""
    response = as_persona(who).get(reverse("api:oos-investigation-list"))
    assert response.status_code == expected
    if expected == 200:
        numbers = [o["number"] for o in response.json()["results"]]
        assert numbers == ([oos.number] if who in SEES else [])


@pytest.mark.parametrize(("who", "expected"), OOS_DETAIL.cases())
def test_api_detail(as_persona, oos, who, expected):
    """DV-10: the original result in full, for those who may see it; 404 otherwise."""
    response = as_persona(who).get(_detail_url(oos))
    assert response.status_code == expected
    if expected == 200:
        body = response.json()
        assert (body["number"], body["phase"], body["outcome"]) == (oos.number, "ia", "open")
        result = body["result"]
        assert (result["value"], result["unit"], result["passed"], result["late"]) == (
            "50",
            "%",
            False,
            False,
        )
        assert result["specification"]["key"] == "viability"
        assert result["specification"]["limits_label"] == "≥ 70 %"
        assert result["id"] == oos.result_id and result["batch"] == oos.result.batch.number
        assert body["next_phase"] == "ib" and body["closure_signature"] is None
        assert response["ETag"]
    else:
        assert response["Content-Type"].startswith("application/problem+json")


@pytest.mark.parametrize(("who", "expected"), OOS_CREATE.cases())
def test_api_create(as_persona, failed, who, expected):
    """DV-10: only Control Site QA opens; a result you cannot see is 400."""
    response = as_persona(who).post(
        reverse("api:oos-investigation-list"), {"result": failed.pk, "reason": "below 70 %"}
    )
    assert response.status_code == expected, response.content
    assert OosInvestigation.objects.count() == (expected == 201)
    if expected == 201:
        body = response.json()
        assert response["Location"] == body["links"]["self"]
        assert body["number"] == f"OOS-{YEAR}-0001" and body["opened_by"]["username"] == "qa"


@pytest.mark.parametrize(("who", "expected"), OOS_FINDINGS.cases())
def test_api_findings(as_persona, oos, who, expected):
    """DV-10: QA or the site lead at the batch's site write the findings."""
    response = as_persona(who).post(
        _detail_url(oos, "findings"), {"findings": "Calculation correct.", "reason": "Ia"}
    )
    assert response.status_code == expected, response.content
    oos.refresh_from_db()
    assert (oos.phase_ia_findings == "Calculation correct.") == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), OOS_ADVANCE.cases())
def test_api_advance(as_persona, plant, oos, who, expected):
    """DV-10: only Control Site QA moves an investigation on."""
    _findings(plant, oos, "No obvious error.")
    response = as_persona(who).post(_detail_url(oos, "advance"), {"reason": "laboratory next"})
    assert response.status_code == expected, response.content
    oos.refresh_from_db()
    assert (oos.phase == OosPhase.PHASE_IB) == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), OOS_CONCLUDE.cases())
def test_api_conclude(as_persona, persona, plant, oos, who, expected):
    """DV-10, ES-01: only Control Site QA concludes, signed "approved"."""
    _findings(plant, oos, "Pipette out of calibration.")
    response = as_persona(who).post(
        _detail_url(oos, "conclude"),
        {**INVALIDATE, **_signed(persona, who, meaning="approved", reason="concluded")},
    )
    assert response.status_code == expected, response.content
    oos.refresh_from_db()
    assert (oos.outcome == OosOutcome.INVALIDATED) == (expected == 200)
    assert (oos.closure_signature_id is not None) == (expected == 200)


#
# API: the whole investigation through the API alone
#


def test_an_investigation_goes_from_opened_to_confirmed_through_the_api(api_client_for, plant):
    """DV-10: open by batch and specification, the phases, a signed confirmation; the result
    reads back unchanged."""
    failed = _failed(plant, "endotoxin", "9")
    qa, lead = api_client_for("qa"), api_client_for("site_lead")
    opened = qa.post(
        reverse("api:oos-investigation-list"),
        {"batch": failed.batch.number, "specification": "endotoxin", "reason": "investigate"},
    )
    assert opened.status_code == 201, opened.content
    body = opened.json()
    number = body["number"]
    assert (body["phase"], body["outcome"], body["is_open"]) == ("ia", "open", True)
    assert body["result"]["value"] == "9" and body["result"]["specification"]["registered"] is False

    def post(client: Any, name: str, data: dict[str, Any], status: int = 200) -> dict[str, Any]:
        response = client.post(reverse(f"api:oos-investigation-{name}", args=[number]), data)
        assert response.status_code == status, response.content
        answer: dict[str, Any] = response.json()
        return answer

    for phase, text in (("ia", "No obvious error."), ("ib", "Second analyst got 9 EU/mL.")):
        assert post(lead, "findings", {"findings": text, "reason": phase})["phase"] == phase
        post(qa, "advance", {"reason": "no laboratory cause"})
    body = post(lead, "findings", {"findings": "Water system excursion.", "reason": "II"})
    assert (body["phase"], body["phase_ii_findings"]) == ("ii", "Water system excursion.")
    body = post(
        qa,
        "conclude",
        {
            "outcome": "confirmed",
            "conclusion": "Confirmed: water system excursion.",
            **signature_fields(plant.qa, meaning="approved", reason="confirmed"),
        },
    )
    assert (body["outcome"], body["is_open"], body["next_phase"]) == ("confirmed", False, None)
    signature = body["closure_signature"]
    assert (signature["meaning"], signature["username"], signature["valid"]) == (
        "approved",
        "qa",
        True,
    )
    read = qa.get(reverse("api:oos-investigation-detail", args=[number])).json()
    assert read["result"]["value"] == "9" and read["result"]["passed"] is False
    oos = OosInvestigation.objects.get(number=number)
    events = list(
        AuditEvent.objects.filter(target_type="deviations.oosinvestigation", target_id=str(oos.pk))
        .order_by("seq")
        .values_list("event_type", flat=True)
    )
    assert events == [
        DeviationEvent.OOS_OPENED,
        DeviationEvent.OOS_FINDINGS,
        DeviationEvent.OOS_ADVANCED,
        DeviationEvent.OOS_FINDINGS,
        DeviationEvent.OOS_ADVANCED,
        DeviationEvent.OOS_FINDINGS,
        "signature.applied",
        DeviationEvent.OOS_CONCLUDED,
    ]


#
# API: refusals write nothing
#


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "result_required"),
        (
            {"result": "<failed>", "batch": "<batch>", "specification": "viability"},
            400,
            "result_required",
        ),
        ({"batch": "<batch>"}, 400, "result_required"),
        ({"result": 999999}, 400, "unknown_result"),
        ({"result": "12"}, 400, "validation_error"),
        ({"batch": "<batch>", "specification": "purity"}, 400, "unknown_result"),
        ({"batch": "LDS1-000000-001", "specification": "viability"}, 400, "unknown_batch"),
        ({"result": "<passed>"}, 400, "result_passed"),
        ({"result": "<failed>", "deviation": "DEV-1999-0001"}, 400, "unknown_deviation"),
        ({"result": "<failed>", "phase": "iii"}, 400, "unknown_field"),
        ({"result": "<failed>", "outcome": "invalidated"}, 400, "unknown_field"),
    ],
)
def test_api_opening_with_bad_input_is_400_and_writes_nothing(
    api_client_for, plant, failed, body, status, code
):
    """DV-10: each bad body has its stable code, and nothing is written."""
    passed = batch_services.result_record(
        actor=plant.operator, batch=failed.batch, specification_key="endotoxin", value="1"
    )
    names = {"<failed>": failed.pk, "<passed>": passed.pk, "<batch>": failed.batch.number}
    payload = {k: names.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    payload.setdefault("reason", "open it")
    api = api_client_for("qa")
    before = _snapshot()
    response = api.post(reverse("api:oos-investigation-list"), payload)
    assert_problem(response, status, code)
    assert _snapshot() == before


def test_api_a_second_investigation_is_409(api_client_for, oos):
    """DV-10: a result is investigated once (409, never the one-to-one's error)."""
    api = api_client_for("qa")
    before = _snapshot()
    response = api.post(
        reverse("api:oos-investigation-list"), {"result": oos.result_id, "reason": "again"}
    )
    assert_problem(response, 409, "oos_exists")
    assert _snapshot() == before


def test_api_a_retried_open_never_makes_a_second_investigation(api_client_for, failed):
    """DV-10, DI-12: an Idempotency-Key replays the first answer."""
    api = api_client_for("qa")
    body = {"result": failed.pk, "reason": "below 70 %"}
    url = reverse("api:oos-investigation-list")
    first = api.post(url, body, HTTP_IDEMPOTENCY_KEY="oos-42")
    again = api.post(url, body, HTTP_IDEMPOTENCY_KEY="oos-42")
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["number"] == again.json()["number"]
    changed = api.post(url, {**body, "reason": "other"}, HTTP_IDEMPOTENCY_KEY="oos-42")
    assert changed.status_code == 409
    assert OosInvestigation.objects.count() == 1


@pytest.mark.parametrize(
    ("route", "body", "status", "code"),
    [
        ("advance", {"reason": "go"}, 409, "findings_required"),
        ("advance", {"reason": "go", "phase": "ii"}, 400, "unknown_field"),
        (
            "findings",
            {"findings": "x", "reason": "r", "outcome": "invalidated"},
            400,
            "unknown_field",
        ),
        ("findings", {"findings": "", "reason": "r"}, 400, "blank"),
        ("findings", {"findings": 42, "reason": "r"}, 400, "validation_error"),
        ("conclude", {**INVALIDATE, "invalidation_evidence": ""}, 400, "evidence_required"),
        ("conclude", {**INVALIDATE, "outcome": "open"}, 400, "invalid_choice"),
        ("conclude", {**INVALIDATE, "outcome": "confirmed"}, 400, "evidence_not_applicable"),
        (
            "conclude",
            {**INVALIDATE, "outcome": "confirmed", "invalidation_evidence": ""},
            409,
            "confirmation_too_early",
        ),
        ("conclude", {**INVALIDATE, "meaning": "reviewed"}, 400, "invalid_choice"),
    ],
)
def test_api_refused_steps_write_nothing(api_client_for, plant, oos, route, body, status, code):
    """DV-10: each refusal has its stable code and leaves the investigation as it was."""
    if route == "conclude":
        body = {**signature_fields(plant.qa, meaning="approved", reason="concluded"), **body}
    api = api_client_for("qa")
    before = _snapshot()
    response = api.post(_detail_url(oos, route), body)
    assert_problem(response, status, code)
    assert _snapshot() == before


def test_api_a_wrong_password_is_422_and_concludes_nothing(api_client_for, plant, oos):
    """DV-10, ES-08: a refused signature is 422 and concludes nothing."""
    _findings(plant, oos, "Pipette out of calibration.")
    response = api_client_for("qa").post(
        _detail_url(oos, "conclude"),
        {**INVALIDATE, **signature_fields(plant.qa, meaning="approved", reason="r", password="x")},
    )
    assert_problem(response, 422, "wrong_password")
    oos.refresh_from_db()
    assert oos.is_open and oos.closure_signature_id is None
    assert not AuditEvent.objects.filter(event_type=DeviationEvent.OOS_CONCLUDED).exists()


def test_api_another_sites_lead_cannot_write_findings(plant, oos):
    """DV-10: a lead who works only at MAN2 does not see LDS1's investigation (404); a token
    limited to MAN2 does not either, even for QA."""
    lead = token_client(_lead_elsewhere(plant))
    qa = token_client(plant.qa, site_codes=["MAN2"])
    before = _snapshot()
    response = lead.post(_detail_url(oos, "findings"), {"findings": "x", "reason": "r"})
    assert_problem(response, 404, "not_found")
    assert qa.get(reverse("api:oos-investigation-list")).json()["results"] == []
    assert_problem(qa.get(_detail_url(oos)), 404, "not_found")
    response = qa.post(_detail_url(oos, "advance"), {"reason": "r"})
    assert_problem(response, 404, "not_found")
    # Naming its result does not work either: it is not one the token can see.
    response = qa.post(
        reverse("api:oos-investigation-list"), {"result": oos.result_id, "reason": "r"}
    )
    assert_problem(response, 400, "unknown_result")
    assert _snapshot() == before


#
# API: lists
#


def test_api_filters(api_client_for, plant, oos):
    """DV-10: outcome, phase, site and batch narrow the list; a bad value is 400."""
    other = oos_services.oos_open(
        actor=plant.qa, result=_failed(plant, "endotoxin", "9"), reason="second"
    )
    spoke = do_steps(plant, start(plant, plant.spoke))
    at_man2 = oos_services.oos_open(
        actor=plant.qa,
        result=batch_services.result_record(
            actor=plant.operator, batch=spoke, specification_key="viability", value="10"
        ),
        reason="third",
    )
    _advance(plant, _findings(plant, other, "No obvious error."))
    _conclude(plant, _findings(plant, oos, "Pipette out of calibration."))
    api = api_client_for("qa")

    def numbers(**params: str) -> list[str]:
        response = api.get(reverse("api:oos-investigation-list"), params)
        assert response.status_code == 200, response.content
        return [o["number"] for o in response.json()["results"]]

    assert numbers(site="MAN2") == [at_man2.number]
    assert numbers(batch=oos.result.batch.number) == [oos.number]
    assert numbers(outcome="invalidated") == [oos.number]
    assert numbers(outcome="open") == [at_man2.number, other.number]
    assert numbers(phase="ib") == [other.number]
    for bad in ({"outcome": "closed"}, {"phase": "iv"}, {"site": ""}):
        assert api.get(reverse("api:oos-investigation-list"), bad).status_code == 400


def test_api_list_costs_the_same_queries_for_one_or_many(api_client_for, plant, oos):
    """DV-10, design §8: a fixed number of queries per list."""
    api = api_client_for("qa")
    api.get(reverse("api:oos-investigation-list"))

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert api.get(reverse("api:oos-investigation-list")).status_code == 200
        return len(queries)

    one = count()
    for _ in range(3):
        oos_services.oos_open(actor=plant.qa, result=_failed(plant), reason="another")
    _conclude(plant, _findings(plant, oos, "Pipette out of calibration."))
    assert count() == one
