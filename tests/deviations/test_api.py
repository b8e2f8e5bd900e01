"""The deviations API (issue 6; design §6): deviations by number with their lifecycle as POST
actions, extension requests and QA's decision, CAPAs with their actions, effectiveness check and
signed closure.

Who may do what is a permission matrix per route; the rest checks what integrators rely on: the
whole lifecycle through the API alone, a site-limited token sees and writes only its sites'
records (404 for the rest), strict input, the services' stable codes — and, for every refusal,
that nothing is written (DV-01…DV-05, ES-01).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from batches.models import Batch
from controlsite.accounts.models import User
from controlsite.audit.context import audit_context
from controlsite.audit.models import AuditEvent
from controlsite.signatures.models import ElectronicSignature
from deviations import services
from deviations.choices import (
    ActionStatus,
    CapaStatus,
    DeviationAction,
    DeviationClass,
    DeviationStatus,
    Effectiveness,
    ExtensionStatus,
)
from deviations.events import DeviationEvent
from deviations.models import Capa, CapaAction, Deviation, DeviationExtension
from tests.batches.helpers import Plant, do_steps, make_plant, start
from tests.batches.test_api import assert_problem, signature_fields, token_client
from tests.deviations.test_services import investigated, make_capa, raise_on, triaged
from tests.masterfile.helpers import signing
from tests.matrix import ANON, Matrix, only
from tests.personas import make_persona

pytestmark = pytest.mark.django_db


def _future(days: int) -> str:
    return (timezone.localdate() + dt.timedelta(days=days)).isoformat()


#
# The world every test starts from
#


@pytest.fixture
def plant() -> Plant:
    """tests.batches.helpers.make_plant: LDS1 and MAN2, active, with the site lead and the
    operators at both; the trainer and the integrator work at neither."""
    return make_plant()


@pytest.fixture
def persona(db: None) -> Callable[[str], User]:
    """The conftest's personas, reusing the plant's people (make_plant makes `qa`, `qp`,
    `site_lead` and `operator`), so a matrix client is the plant's own QA, lead or operator."""

    def get(name: str) -> User:
        return User.objects.filter(username=name).first() or make_persona(name)

    return get


@pytest.fixture
def deviation(plant: Plant) -> Deviation:
    """An open major deviation at LDS1, raised by the operator."""
    return raise_on(plant)


@pytest.fixture
def investigating(plant: Plant, deviation: Deviation) -> Deviation:
    """Class confirmed, triaged, investigating, with the investigation written."""
    return investigated(plant, triaged(plant, deviation))


@pytest.fixture
def capa(plant: Plant, deviation: Deviation) -> Capa:
    """A CAPA from the deviation with one open action owned by the site lead."""
    return make_capa(plant, deviation)


@pytest.fixture
def checked(plant: Plant, capa: Capa) -> Capa:
    """The CAPA with its action done and found effective: ready to close."""
    services.capa_action_complete(actor=plant.lead, action=capa.actions.get(), outcome="done")
    return services.capa_effectiveness_check(
        actor=plant.qa, capa=capa, effectiveness="effective", notes="none since", reason="check"
    )


@pytest.fixture
def extension(plant: Plant, deviation: Deviation) -> DeviationExtension:
    return services.extension_request(
        actor=plant.lead,
        deviation=deviation,
        requested_due_on=deviation.due_on + dt.timedelta(days=14),
        reason="vendor delay",
    )


def signed(persona: Callable[[str], User], who: str, **fields: Any) -> dict[str, Any]:
    """Signature fields of the persona itself (Control Site QA's for anonymous)."""
    return signature_fields(persona("qa") if who == ANON else persona(who), **fields)


# A field left out of the body.
OMIT = object()


def capa_body(source: Deviation, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "deviation": source.number,
        "kind": "corrective",
        "title": "Replace the bath thermostat",
        "description": "Replace and requalify; add a daily check.",
        "owner": "site_lead",
        "due_on": _future(14),
        "effectiveness_due_on": _future(60),
        "actions": [
            {"description": "Replace the thermostat", "owner": "site_lead", "due_on": _future(7)}
        ],
        "reason": "CAPA from the deviation",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not OMIT}


#
# Permission matrices
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
# Control Site QA only, on a record the caller may see (or not: 404).
QA_WRITE = only({"qa": 200, "trainer": 404, "integrator": 404}, others=403, anonymous=401)
# QA, or the site lead at the deviation's site.
QA_OR_LEAD = {**QA_WRITE, "site_lead": 200}

DEVIATION_LIST = Matrix("api:deviation-list", EVERY_API_USER)
DEVIATION_DETAIL = Matrix("api:deviation-detail", READERS)
# Site staff, integrators at the site, QA and QPs raise; a site the caller cannot see is a 400
# (unknown_site); the inspector's role is read-only.
DEVIATION_CREATE = Matrix(
    "api:deviation-create",
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
DEVIATION_CONFIRM_CLASS = Matrix("api:deviation-confirm-class", QA_WRITE)
DEVIATION_INVESTIGATION = Matrix("api:deviation-investigation", QA_OR_LEAD)
DEVIATION_TRIAGE = Matrix("api:deviation-triage", QA_WRITE)
DEVIATION_INVESTIGATE = Matrix("api:deviation-investigate", QA_WRITE)
DEVIATION_AWAIT_CAPA = Matrix("api:deviation-await-capa", QA_WRITE)
DEVIATION_CLOSE = Matrix("api:deviation-close", QA_WRITE)
DEVIATION_CANCEL = Matrix("api:deviation-cancel", QA_WRITE)
DEVIATION_EXTENSIONS = Matrix(
    "api:deviation-extensions", {**QA_OR_LEAD, "qa": 201, "site_lead": 201}
)

EXTENSION_LIST = Matrix("api:deviation-extension-list", EVERY_API_USER)
EXTENSION_DETAIL = Matrix("api:deviation-extension-detail", READERS)
EXTENSION_APPROVE = Matrix("api:deviation-extension-approve", QA_WRITE)
EXTENSION_REFUSE = Matrix("api:deviation-extension-refuse", QA_WRITE)

CAPA_LIST = Matrix("api:capa-list", EVERY_API_USER)
CAPA_DETAIL = Matrix("api:capa-detail", READERS)
# A deviation the caller cannot see is a 400 (unknown_deviation).
CAPA_CREATE = Matrix(
    "api:capa-create",
    only({"qa": 201, "trainer": 400, "integrator": 400}, others=403, anonymous=401),
)
CAPA_ACTIONS = Matrix("api:capa-actions", {**QA_WRITE, "qa": 201})
CAPA_EFFECTIVENESS = Matrix("api:capa-effectiveness", QA_WRITE)
CAPA_CLOSE = Matrix("api:capa-close", QA_WRITE)
CAPA_CANCEL = Matrix("api:capa-cancel", QA_WRITE)

CAPA_ACTION_LIST = Matrix("api:capa-action-list", EVERY_API_USER)
CAPA_ACTION_DETAIL = Matrix("api:capa-action-detail", READERS)
# Its owner (the site lead) or QA.
CAPA_ACTION_COMPLETE = Matrix("api:capa-action-complete", QA_OR_LEAD)

SEES = {"qa", "qp", "inspector", "site_lead", "operator"}


# Deviations


@pytest.mark.parametrize(("who", "expected"), DEVIATION_LIST.cases())
def test_deviation_list(as_persona, deviation, who, expected):
    response = as_persona(who).get(reverse("api:deviation-list"))
    assert response.status_code == expected
    if expected == 200:
        numbers = [d["number"] for d in response.json()["results"]]
        assert numbers == ([deviation.number] if who in SEES else [])


@pytest.mark.parametrize(("who", "expected"), DEVIATION_DETAIL.cases())
def test_deviation_detail(as_persona, deviation, who, expected):
    response = as_persona(who).get(reverse("api:deviation-detail", args=[deviation.number]))
    assert response.status_code == expected
    if expected == 200:
        body = response.json()
        assert body["number"] == deviation.number
        assert (body["proposed_class"], body["confirmed_class"]) == ("major", None)
        assert body["deviation_class"] == "major" and body["status"] == "open"
        assert body["overdue"] is False and body["closure_signature"] is None
        assert response["ETag"]
    else:
        assert response["Content-Type"].startswith("application/problem+json")


@pytest.mark.parametrize(("who", "expected"), DEVIATION_CREATE.cases())
def test_deviation_create(as_persona, plant, who, expected):
    response = as_persona(who).post(
        reverse("api:deviation-list"),
        {
            "site": "LDS1",
            "title": "Door left open",
            "description": "Grade C door open for 10 minutes.",
            "proposed_class": "minor",
        },
    )
    assert response.status_code == expected, response.content
    assert Deviation.objects.count() == (expected == 201)


@pytest.mark.parametrize(("who", "expected"), DEVIATION_CONFIRM_CLASS.cases())
def test_deviation_confirm_class(as_persona, deviation, who, expected):
    response = as_persona(who).post(
        reverse("api:deviation-confirm-class", args=[deviation.number]),
        {"deviation_class": "critical", "reason": "patient risk"},
    )
    assert response.status_code == expected, response.content
    deviation.refresh_from_db()
    assert (deviation.confirmed_class == "critical") == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), DEVIATION_INVESTIGATION.cases())
def test_deviation_investigation(as_persona, deviation, who, expected):
    response = as_persona(who).post(
        reverse("api:deviation-investigation", args=[deviation.number]),
        {"impact_assessment": "No impact on the cells.", "reason": "assessed"},
    )
    assert response.status_code == expected, response.content
    deviation.refresh_from_db()
    assert bool(deviation.impact_assessment) == (expected == 200)


@pytest.fixture
def class_confirmed(plant: Plant, deviation: Deviation) -> Deviation:
    return services.deviation_confirm_class(
        actor=plant.qa, deviation=deviation, deviation_class="major", reason="criteria read"
    )


@pytest.mark.parametrize(("who", "expected"), DEVIATION_TRIAGE.cases())
def test_deviation_triage(as_persona, class_confirmed, who, expected):
    response = as_persona(who).post(
        reverse("api:deviation-triage", args=[class_confirmed.number]), {"reason": "triaged"}
    )
    assert response.status_code == expected, response.content
    class_confirmed.refresh_from_db()
    assert (class_confirmed.status == DeviationStatus.TRIAGED) == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), DEVIATION_INVESTIGATE.cases())
def test_deviation_investigate(as_persona, plant, deviation, who, expected):
    deviation = triaged(plant, deviation)
    response = as_persona(who).post(
        reverse("api:deviation-investigate", args=[deviation.number]), {"reason": "start"}
    )
    assert response.status_code == expected, response.content
    deviation.refresh_from_db()
    assert (deviation.status == DeviationStatus.INVESTIGATING) == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), DEVIATION_AWAIT_CAPA.cases())
def test_deviation_await_capa(as_persona, plant, investigating, who, expected):
    make_capa(plant, investigating)
    response = as_persona(who).post(
        reverse("api:deviation-await-capa", args=[investigating.number]), {"reason": "CAPA"}
    )
    assert response.status_code == expected, response.content
    investigating.refresh_from_db()
    assert (investigating.status == DeviationStatus.PENDING_CAPA) == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), DEVIATION_CLOSE.cases())
def test_deviation_close(as_persona, persona, investigating, who, expected):
    response = as_persona(who).post(
        reverse("api:deviation-close", args=[investigating.number]),
        signed(persona, who, meaning="approved", reason="no impact"),
    )
    assert response.status_code == expected, response.content
    investigating.refresh_from_db()
    assert (investigating.status == DeviationStatus.CLOSED) == (expected == 200)
    assert (investigating.closure_signature_id is not None) == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), DEVIATION_CANCEL.cases())
def test_deviation_cancel(as_persona, deviation, who, expected):
    response = as_persona(who).post(
        reverse("api:deviation-cancel", args=[deviation.number]), {"reason": "duplicate"}
    )
    assert response.status_code == expected, response.content
    deviation.refresh_from_db()
    assert (deviation.status == DeviationStatus.CANCELLED) == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), DEVIATION_EXTENSIONS.cases())
def test_deviation_extensions(as_persona, deviation, who, expected):
    new_date = deviation.due_on + dt.timedelta(days=14)
    response = as_persona(who).post(
        reverse("api:deviation-extensions", args=[deviation.number]),
        {"requested_due_on": new_date.isoformat(), "reason": "vendor delay"},
    )
    assert response.status_code == expected, response.content
    assert DeviationExtension.objects.count() == (expected == 201)
    if expected == 201:
        body = response.json()
        assert (body["status"], body["requested_due_on"]) == ("requested", new_date.isoformat())
        assert response["Location"] == body["links"]["self"]


# Extensions


@pytest.mark.parametrize(("who", "expected"), EXTENSION_LIST.cases())
def test_extension_list(as_persona, extension, who, expected):
    response = as_persona(who).get(reverse("api:deviation-extension-list"))
    assert response.status_code == expected
    if expected == 200:
        assert len(response.json()["results"]) == (1 if who in SEES else 0)


@pytest.mark.parametrize(("who", "expected"), EXTENSION_DETAIL.cases())
def test_extension_detail(as_persona, extension, who, expected):
    response = as_persona(who).get(reverse("api:deviation-extension-detail", args=[extension.pk]))
    assert response.status_code == expected


@pytest.mark.parametrize(("who", "expected"), EXTENSION_APPROVE.cases())
def test_extension_approve(as_persona, deviation, extension, who, expected):
    response = as_persona(who).post(
        reverse("api:deviation-extension-approve", args=[extension.pk]), {"reason": "fair"}
    )
    assert response.status_code == expected, response.content
    deviation.refresh_from_db()
    assert (deviation.due_on == extension.requested_due_on) == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), EXTENSION_REFUSE.cases())
def test_extension_refuse(as_persona, deviation, extension, who, expected):
    due_on = deviation.due_on
    response = as_persona(who).post(
        reverse("api:deviation-extension-refuse", args=[extension.pk]), {"reason": "not needed"}
    )
    assert response.status_code == expected, response.content
    extension.refresh_from_db()
    assert (extension.status == ExtensionStatus.REFUSED) == (expected == 200)
    deviation.refresh_from_db()
    assert deviation.due_on == due_on


# CAPA


@pytest.mark.parametrize(("who", "expected"), CAPA_LIST.cases())
def test_capa_list(as_persona, capa, who, expected):
    response = as_persona(who).get(reverse("api:capa-list"))
    assert response.status_code == expected
    if expected == 200:
        numbers = [c["number"] for c in response.json()["results"]]
        assert numbers == ([capa.number] if who in SEES else [])


@pytest.mark.parametrize(("who", "expected"), CAPA_DETAIL.cases())
def test_capa_detail(as_persona, capa, who, expected):
    response = as_persona(who).get(reverse("api:capa-detail", args=[capa.number]))
    assert response.status_code == expected
    if expected == 200:
        body = response.json()
        assert body["owner"]["username"] == "site_lead"
        assert [a["status"] for a in body["actions"]] == ["open"]
        assert body["effectiveness"] is None and body["closure_signature"] is None


@pytest.mark.parametrize(("who", "expected"), CAPA_CREATE.cases())
def test_capa_create(as_persona, deviation, who, expected):
    response = as_persona(who).post(reverse("api:capa-list"), capa_body(deviation))
    assert response.status_code == expected, response.content
    assert Capa.objects.count() == (expected == 201)
    assert CapaAction.objects.count() == (expected == 201)


@pytest.mark.parametrize(("who", "expected"), CAPA_ACTIONS.cases())
def test_capa_actions(as_persona, capa, who, expected):
    response = as_persona(who).post(
        reverse("api:capa-actions", args=[capa.number]),
        {
            "description": "Add an alarm",
            "owner": "operator",
            "due_on": _future(10),
            "reason": "more",
        },
    )
    assert response.status_code == expected, response.content
    assert capa.actions.count() == (2 if expected == 201 else 1)
    if expected == 201:
        body = response.json()
        assert (body["capa"], body["owner"]["username"]) == (capa.number, "operator")
        assert response["Location"] == body["links"]["self"]


@pytest.mark.parametrize(("who", "expected"), CAPA_EFFECTIVENESS.cases())
def test_capa_effectiveness(as_persona, plant, capa, who, expected):
    services.capa_action_complete(actor=plant.lead, action=capa.actions.get(), outcome="done")
    response = as_persona(who).post(
        reverse("api:capa-effectiveness", args=[capa.number]),
        {"effectiveness": "effective", "notes": "No recurrence.", "reason": "check due"},
    )
    assert response.status_code == expected, response.content
    capa.refresh_from_db()
    assert (capa.status == CapaStatus.EFFECTIVENESS_CHECK) == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), CAPA_CLOSE.cases())
def test_capa_close(as_persona, persona, checked, who, expected):
    response = as_persona(who).post(
        reverse("api:capa-close", args=[checked.number]),
        signed(persona, who, meaning="approved", reason="effective"),
    )
    assert response.status_code == expected, response.content
    checked.refresh_from_db()
    assert (checked.status == CapaStatus.CLOSED) == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), CAPA_CANCEL.cases())
def test_capa_cancel(as_persona, capa, who, expected):
    response = as_persona(who).post(
        reverse("api:capa-cancel", args=[capa.number]), {"reason": "Raised twice."}
    )
    assert response.status_code == expected, response.content
    capa.refresh_from_db()
    assert (capa.status == CapaStatus.CANCELLED) == (expected == 200)
    assert (capa.cancel_reason == "Raised twice.") == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), CAPA_ACTION_LIST.cases())
def test_capa_action_list(as_persona, capa, who, expected):
    response = as_persona(who).get(reverse("api:capa-action-list"))
    assert response.status_code == expected
    if expected == 200:
        assert len(response.json()["results"]) == (1 if who in SEES else 0)


@pytest.mark.parametrize(("who", "expected"), CAPA_ACTION_DETAIL.cases())
def test_capa_action_detail(as_persona, capa, who, expected):
    action = capa.actions.get()
    response = as_persona(who).get(reverse("api:capa-action-detail", args=[action.pk]))
    assert response.status_code == expected


@pytest.mark.parametrize(("who", "expected"), CAPA_ACTION_COMPLETE.cases())
def test_capa_action_complete(as_persona, capa, who, expected):
    action = capa.actions.get()
    response = as_persona(who).post(
        reverse("api:capa-action-complete", args=[action.pk]),
        {"outcome": "Thermostat replaced; IQ/OQ passed."},
    )
    assert response.status_code == expected, response.content
    action.refresh_from_db()
    assert (action.status == ActionStatus.DONE) == (expected == 200)


#
# The whole lifecycle, through the API alone
#


def test_a_deviation_goes_from_raised_to_closed_through_the_api(api_client_for, plant):
    batch = do_steps(plant, start(plant), upto=1)
    operator, qa, lead = (api_client_for(who) for who in ("operator", "qa", "site_lead"))

    raised = operator.post(
        reverse("api:deviation-list"),
        {
            "site": "LDS1",
            "batch": batch.number,
            "step": 1,
            "title": "Bath over temperature",
            "description": "The water bath read 39.5 °C during thaw.",
            "proposed_class": "minor",
            "immediate_action": "Bag moved to the spare bath.",
        },
    )
    assert raised.status_code == 201, raised.content
    body = raised.json()
    number = body["number"]
    assert raised["Location"] == reverse("api:deviation-detail", args=[number])
    assert (body["batch"], body["step"], body["source"]) == (batch.number, 1, "step")
    assert (body["status"], body["deviation_class"], body["confirmed_class"]) == (
        "open",
        "minor",
        None,
    )
    assert body["raised_by"]["username"] == "operator"

    def post(client: Any, name: str, data: dict[str, Any], status: int = 200) -> dict[str, Any]:
        response = client.post(reverse(f"api:deviation-{name}", args=[number]), data)
        assert response.status_code == status, response.content
        answer: dict[str, Any] = response.json()
        return answer

    body = post(qa, "confirm-class", {"deviation_class": "major", "reason": "batch at risk"})
    assert (body["confirmed_class"], body["class_confirmed_by"]["username"]) == ("major", "qa")
    assert "May affect product quality" in body["class_criteria"]
    assert post(qa, "triage", {"reason": "triaged"})["status"] == "triaged"
    assert post(qa, "investigate", {"reason": "start"})["status"] == "investigating"
    body = post(
        lead,
        "investigation",
        {
            "impact_assessment": "Cells within viability; no impact on the batch.",
            "root_cause_category": "equipment",
            "root_cause": "Thermostat drift on bath 1.",
            "reason": "investigation written",
        },
    )
    assert (body["root_cause_category"], body["root_cause"]) == (
        "equipment",
        "Thermostat drift on bath 1.",
    )

    made = qa.post(
        reverse("api:capa-list"),
        capa_body(Deviation.objects.get(number=number), owner="site_lead"),
    )
    assert made.status_code == 201, made.content
    capa = made.json()
    assert (capa["deviation"], capa["status"], capa["site"]["code"]) == (number, "open", "LDS1")
    [action] = capa["actions"]
    assert (action["owner"]["username"], action["status"]) == ("site_lead", "open")

    body = post(qa, "await-capa", {"reason": "CAPA raised"})
    assert body["status"] == "pending_capa" and body["capas"] == [capa["number"]]

    done = lead.post(action["links"]["complete"], {"outcome": "Replaced, IQ/OQ ok."})
    assert done.status_code == 200, done.content
    assert (done.json()["status"], done.json()["done_by"]["username"]) == ("done", "site_lead")

    body = post(
        qa,
        "close",
        signature_fields(plant.qa, meaning="approved", reason="investigation complete"),
    )
    assert (body["status"], body["closed_by"]["username"]) == ("closed", "qa")
    signature = body["closure_signature"]
    assert (signature["meaning"], signature["username"], signature["valid"]) == (
        "approved",
        "qa",
        True,
    )
    closed = Deviation.objects.get(number=number)
    assert closed.status == DeviationStatus.CLOSED
    assert closed.closure_signature is not None and closed.closure_signature.signer == plant.qa
    events = list(
        AuditEvent.objects.filter(target_type="deviations.deviation", target_id=str(closed.pk))
        .order_by("seq")
        .values_list("event_type", flat=True)
    )
    assert events == [
        DeviationEvent.RAISED,
        DeviationEvent.CLASS_CONFIRMED,
        DeviationEvent.TRANSITIONED,
        DeviationEvent.TRANSITIONED,
        DeviationEvent.UPDATED,
        DeviationEvent.TRANSITIONED,
        "signature.applied",
        DeviationEvent.TRANSITIONED,
    ]
    # The closed record reads back the same, with its CAPA.
    read = qa.get(reverse("api:deviation-detail", args=[number])).json()
    assert read["capas"] == [capa["number"]] and read["closure_signature"]["valid"] is True


def test_a_capa_is_checked_and_closed_through_the_api(api_client_for, plant, capa):
    qa, lead = api_client_for("qa"), api_client_for("site_lead")
    url = reverse("api:capa-effectiveness", args=[capa.number])
    body = {"effectiveness": "effective", "notes": "No recurrence.", "reason": "check"}
    assert_problem(qa.post(url, body), 409, "capa_actions_open")
    action = capa.actions.get()
    lead.post(reverse("api:capa-action-complete", args=[action.pk]), {"outcome": "Replaced."})
    not_yet = qa.post(url, {**body, "effectiveness": "not_effective", "notes": "Recurred."})
    assert (not_yet.json()["status"], not_yet.json()["effectiveness"]) == ("open", "not_effective")
    added = qa.post(
        reverse("api:capa-actions", args=[capa.number]),
        {"description": "Fit an alarm.", "owner": "site_lead", "due_on": _future(5), "reason": "r"},
    )
    assert added.status_code == 201, added.content
    lead.post(added.json()["links"]["complete"], {"outcome": "Alarm fitted."})
    assert qa.post(url, body).json()["status"] == "effectiveness_check"
    closed = qa.post(
        reverse("api:capa-close", args=[capa.number]),
        signature_fields(plant.qa, meaning="approved", reason="effective"),
    )
    assert closed.status_code == 200, closed.content
    answer = closed.json()
    assert (answer["status"], answer["effectiveness"]) == ("closed", Effectiveness.EFFECTIVE)
    assert answer["closure_signature"]["meaning"] == "approved"


#
# Bad input: nothing is written
#


def _snapshot(deviation: Deviation) -> tuple[Any, ...]:
    deviation.refresh_from_db()
    return (
        deviation.status,
        deviation.confirmed_class,
        deviation.closure_signature_id,
        deviation.history.count(),
        AuditEvent.objects.count(),
        ElectronicSignature.objects.count(),
    )


def test_closing_with_open_capa_actions_is_409_and_writes_nothing(
    api_client_for, plant, investigating
):
    make_capa(plant, investigating)
    investigating = services.deviation_transition(
        actor=plant.qa, deviation=investigating, action=DeviationAction.AWAIT_CAPA, reason="r"
    )
    api = api_client_for("qa")
    before = _snapshot(investigating)
    response = api.post(
        reverse("api:deviation-close", args=[investigating.number]),
        signature_fields(plant.qa, meaning="approved", reason="done"),
    )
    assert_problem(response, 409, "capa_actions_open")
    assert _snapshot(investigating) == before
    assert investigating.status == DeviationStatus.PENDING_CAPA


@pytest.mark.parametrize("who", ["operator", "site_lead", "qp"])
def test_confirming_a_class_without_being_qa_is_403_and_writes_nothing(
    api_client_for, deviation, who
):
    api = api_client_for(who)
    before = _snapshot(deviation)
    response = api.post(
        reverse("api:deviation-confirm-class", args=[deviation.number]),
        {"deviation_class": "minor", "reason": "looks minor to me"},
    )
    assert_problem(response, 403, "permission_denied")
    assert _snapshot(deviation) == before
    assert deviation.confirmed_class == ""


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"owner": OMIT}, "required", "owner"),
        ({"owner": None}, "null", "owner"),
        ({"owner": "nobody"}, "unknown_user", "owner"),
        ({"due_on": OMIT}, "required", "due_on"),
        ({"effectiveness_due_on": OMIT}, "required", "effectiveness_due_on"),
        ({"due_on": "next week"}, "invalid", "due_on"),
        ({"actions": [{"description": "x", "due_on": _future(3)}]}, "required", "actions"),
    ],
)
def test_a_capa_without_owner_or_due_date_is_400_and_writes_nothing(
    api_client_for, deviation, overrides, code, field
):
    api = api_client_for("qa")
    events = AuditEvent.objects.count()
    response = api.post(reverse("api:capa-list"), capa_body(deviation, **overrides))
    body = assert_problem(response, 400, "validation_error" if code == "invalid" else code)
    assert field in body["errors"]
    assert not Capa.objects.exists() and not CapaAction.objects.exists()
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"due_on": _future(-1)}, "date_in_past"),
        ({"effectiveness_due_on": _future(-1)}, "date_in_past"),
        ({"effectiveness_due_on": _future(1)}, "invalid"),  # before the due date
        (
            {"actions": [{"description": "x", "owner": "site_lead", "due_on": _future(-3)}]},
            "date_in_past",
        ),
        ({"deviation": OMIT}, "source_required"),
        ({"audit_reference": "AUD-2026-04 F3"}, "source_required"),  # two sources
    ],
)
def test_a_capa_due_in_the_past_is_400_and_writes_nothing(
    api_client_for, deviation, overrides, code
):
    api = api_client_for("qa")
    events = AuditEvent.objects.count()
    response = api.post(reverse("api:capa-list"), capa_body(deviation, **overrides))
    assert_problem(response, 400, code)
    assert not Capa.objects.exists() and not CapaAction.objects.exists()
    assert AuditEvent.objects.count() == events


def test_a_capa_on_a_closed_deviation_is_409(api_client_for, plant, investigating):
    services.deviation_transition(
        actor=plant.qa,
        deviation=investigating,
        action=DeviationAction.CLOSE,
        reason="closed",
        credentials=signing(plant.qa),
    )
    response = api_client_for("qa").post(reverse("api:capa-list"), capa_body(investigating))
    assert_problem(response, 409, "deviation_not_open")
    assert not Capa.objects.exists()


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        (
            "create",
            {
                "site": "LDS1",
                "title": "t",
                "description": "d",
                "proposed_class": "minor",
                "status": "closed",
            },
            "status",
        ),
        (
            "create",
            {
                "site": "LDS1",
                "title": "t",
                "description": "d",
                "proposed_class": "minor",
                "confirmed_class": "minor",
            },
            "confirmed_class",
        ),
        ("confirm-class", {"deviation_class": "minor", "reason": "r", "by": "qa"}, "by"),
        ("investigation", {"root_cause": "x", "reason": "r", "status": "closed"}, "status"),
        ("triage", {"reason": "r", "triaged_at": "2026-01-01T00:00:00Z"}, "triaged_at"),
        ("extensions", {"requested_due_on": "2099-01-01", "reason": "r", "days": 9}, "days"),
        ("capa", {"priority": "high"}, "priority"),
        (
            "capa",
            {"actions": [{"description": "x", "owner": "qa", "due_on": "x", "y": 1}]},
            "actions",
        ),
    ],
)
def test_an_unknown_field_is_400_and_writes_nothing(api_client_for, deviation, route, body, field):
    api = api_client_for("qa")
    before = _snapshot(deviation)
    if route == "create":
        url = reverse("api:deviation-list")
    elif route == "capa":
        url, body = reverse("api:capa-list"), capa_body(deviation, **body)
    else:
        url = reverse(f"api:deviation-{route}", args=[deviation.number])
    response = api.post(url, body)
    problem = assert_problem(response, 400, "unknown_field")
    assert field in problem["errors"]
    assert _snapshot(deviation) == before
    assert Deviation.objects.count() == 1
    assert not Capa.objects.exists() and not DeviationExtension.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"step": 1}, "batch_required"),
        ({"batch": "LDS1-000000-001"}, "unknown_batch"),
        ({"batch": "BATCH"}, "validation_error"),
        ({"batch": "<batch>", "step": 2}, "unknown_step"),
        ({"batch": "<batch>", "result": "viability"}, "unknown_result"),
        ({"batch": "<spoke batch>"}, "invalid"),  # made at MAN2, not at LDS1
        ({"proposed_class": "severe"}, "invalid_choice"),
        ({"title": 42}, "validation_error"),
        ({"site": "ZZZ9"}, "unknown_site"),
        ({"occurred_at": "2999-01-01T00:00:00Z"}, "date_in_future"),
    ],
)
def test_raising_with_bad_input_is_400_and_writes_nothing(api_client_for, plant, overrides, code):
    batch = do_steps(plant, start(plant), upto=1)
    spoke_batch = start(plant, plant.spoke)
    names = {"<batch>": batch.number, "<spoke batch>": spoke_batch.number}
    body: dict[str, Any] = {
        "site": "LDS1",
        "title": "Bath over temperature",
        "description": "The water bath read 39.5 °C.",
        "proposed_class": "major",
    }
    body.update({k: names.get(v, v) if isinstance(v, str) else v for k, v in overrides.items()})
    api = api_client_for("operator")
    events = AuditEvent.objects.count()
    response = api.post(reverse("api:deviation-list"), body)
    assert_problem(response, 400, code)
    assert not Deviation.objects.exists()
    assert AuditEvent.objects.count() == events


def test_human_error_without_a_justification_is_400_and_writes_nothing(
    api_client_for, plant, deviation
):
    api = api_client_for("site_lead")
    before = _snapshot(deviation)
    response = api.post(
        reverse("api:deviation-investigation", args=[deviation.number]),
        {"root_cause_category": "human_error", "root_cause": "Misread the dial.", "reason": "r"},
    )
    assert_problem(response, 400, "human_error_unjustified")
    assert _snapshot(deviation) == before


def test_an_investigation_with_only_a_reason_is_400(api_client_for, deviation):
    response = api_client_for("qa").post(
        reverse("api:deviation-investigation", args=[deviation.number]), {"reason": "nothing"}
    )
    assert_problem(response, 400, "nothing_to_change")


@pytest.mark.parametrize(
    ("action", "code"),
    [
        ("triage", "class_not_confirmed"),
        ("investigate", "transition_not_allowed"),
        ("await-capa", "transition_not_allowed"),
    ],
)
def test_a_refused_step_is_409_and_writes_nothing(api_client_for, deviation, action, code):
    api = api_client_for("qa")
    before = _snapshot(deviation)
    response = api.post(
        reverse(f"api:deviation-{action}", args=[deviation.number]), {"reason": "go"}
    )
    assert_problem(response, 409, code)
    assert _snapshot(deviation) == before


def test_a_wrong_password_at_closure_is_422_and_closes_nothing(
    api_client_for, plant, investigating
):
    response = api_client_for("qa").post(
        reverse("api:deviation-close", args=[investigating.number]),
        signature_fields(plant.qa, meaning="approved", reason="done", password="wrong"),
    )
    assert response.status_code == 422, response.content
    investigating.refresh_from_db()
    assert investigating.status == DeviationStatus.INVESTIGATING
    assert investigating.closure_signature_id is None


def test_closing_with_another_meaning_is_400(api_client_for, plant, investigating):
    response = api_client_for("qa").post(
        reverse("api:deviation-close", args=[investigating.number]),
        signature_fields(plant.qa, meaning="reviewed", reason="done"),
    )
    assert response.status_code == 400
    assert "meaning" in response.json()["errors"]


def test_a_decided_extension_is_409(api_client_for, extension):
    api = api_client_for("qa")
    approve = reverse("api:deviation-extension-approve", args=[extension.pk])
    assert api.post(approve, {"reason": "fair"}).status_code == 200
    refuse = reverse("api:deviation-extension-refuse", args=[extension.pk])
    assert_problem(api.post(refuse, {"reason": "changed my mind"}), 409, "extension_decided")
    extension.refresh_from_db()
    assert extension.status == ExtensionStatus.APPROVED


def test_an_extension_into_the_past_is_400(api_client_for, deviation):
    response = api_client_for("site_lead").post(
        reverse("api:deviation-extensions", args=[deviation.number]),
        {"requested_due_on": _future(-1), "reason": "late"},
    )
    assert_problem(response, 400, "date_in_past")
    assert not DeviationExtension.objects.exists()


#
# Site-limited tokens: another site's records do not exist
#


def _raise_at_man2(plant: Plant) -> Deviation:
    return services.deviation_raise(
        actor=plant.operator,
        site=plant.spoke,
        title="Label misprint",
        description="Batch label printed twice.",
        proposed_class=DeviationClass.MINOR,
    )


def test_a_site_limited_token_cannot_see_another_sites_deviation(plant, deviation):
    at_man2 = _raise_at_man2(plant)
    api = token_client(plant.operator, site_codes=["MAN2"])
    listed = api.get(reverse("api:deviation-list")).json()["results"]
    assert [d["number"] for d in listed] == [at_man2.number]
    assert_problem(
        api.get(reverse("api:deviation-detail", args=[deviation.number])), 404, "not_found"
    )
    assert api.get(reverse("api:deviation-detail", args=[at_man2.number])).status_code == 200


def test_a_site_limited_token_writes_nothing_on_another_sites_deviation(plant, deviation):
    qa = token_client(plant.qa, site_codes=["MAN2"])
    lead = token_client(plant.lead, site_codes=["MAN2"])
    before = _snapshot(deviation)
    response = qa.post(
        reverse("api:deviation-confirm-class", args=[deviation.number]),
        {"deviation_class": "minor", "reason": "r"},
    )
    assert_problem(response, 404, "not_found")
    response = lead.post(
        reverse("api:deviation-investigation", args=[deviation.number]),
        {"root_cause": "x", "reason": "r"},
    )
    assert_problem(response, 404, "not_found")
    # A CAPA from it is refused too: the deviation is not one the token can name.
    response = qa.post(reverse("api:capa-list"), capa_body(deviation))
    assert_problem(response, 400, "unknown_deviation")
    assert _snapshot(deviation) == before
    assert not Capa.objects.exists()


def test_a_site_limited_token_cannot_see_another_sites_capa(plant, capa):
    api = token_client(plant.lead, site_codes=["MAN2"])
    assert api.get(reverse("api:capa-list")).json()["results"] == []
    assert_problem(api.get(reverse("api:capa-detail", args=[capa.number])), 404, "not_found")
    action = capa.actions.get()
    response = api.post(reverse("api:capa-action-complete", args=[action.pk]), {"outcome": "x"})
    assert_problem(response, 404, "not_found")
    action.refresh_from_db()
    assert action.status == ActionStatus.OPEN


#
# Retries, concurrency, lists
#


def test_a_retried_raise_never_makes_a_second_deviation(api_client_for, plant):
    api = api_client_for("operator")
    body = {"site": "LDS1", "title": "t", "description": "d", "proposed_class": "minor"}
    first = api.post(reverse("api:deviation-list"), body, HTTP_IDEMPOTENCY_KEY="dev-42")
    again = api.post(reverse("api:deviation-list"), body, HTTP_IDEMPOTENCY_KEY="dev-42")
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["number"] == again.json()["number"]
    changed = api.post(
        reverse("api:deviation-list"), {**body, "title": "other"}, HTTP_IDEMPOTENCY_KEY="dev-42"
    )
    assert changed.status_code == 409
    assert Deviation.objects.count() == 1


def test_a_stale_if_match_is_412(api_client_for, plant, deviation):
    api = api_client_for("qa")
    etag = api.get(reverse("api:deviation-detail", args=[deviation.number]))["ETag"]
    services.deviation_update(
        actor=plant.lead, deviation=deviation, reason="r", changes={"root_cause": "Drift."}
    )
    response = api.post(
        reverse("api:deviation-confirm-class", args=[deviation.number]),
        {"deviation_class": "minor", "reason": "r"},
        HTTP_IF_MATCH=etag,
    )
    assert_problem(response, 412, "precondition_failed")
    deviation.refresh_from_db()
    assert deviation.confirmed_class == ""


def test_the_deviation_filters(api_client_for, plant):
    batch = start(plant)
    on_batch = raise_on(plant, batch, cls=DeviationClass.CRITICAL)
    minor = raise_on(plant, cls=DeviationClass.MINOR)
    at_man2 = _raise_at_man2(plant)
    services.deviation_confirm_class(
        actor=plant.qa, deviation=minor, deviation_class="major", reason="reassessed"
    )
    with audit_context(reason="test: an old deviation"):
        at_man2.triage_due_on = timezone.localdate() - dt.timedelta(days=2)
        at_man2.save(update_fields=["triage_due_on"])
    api = api_client_for("qa")

    def numbers(**params: str) -> list[str]:
        response = api.get(reverse("api:deviation-list"), params)
        assert response.status_code == 200, response.content
        return [d["number"] for d in response.json()["results"]]

    assert numbers(site="MAN2") == [at_man2.number]
    assert numbers(batch=batch.number) == [on_batch.number]
    assert numbers(deviation_class="major") == [minor.number]
    assert numbers(deviation_class="minor") == [at_man2.number]
    assert numbers(overdue="true") == [at_man2.number]
    assert numbers(overdue="false") == [minor.number, on_batch.number]
    assert numbers(status="open") == [at_man2.number, minor.number, on_batch.number]
    listed = api.get(reverse("api:deviation-list"), {"overdue": "true"}).json()["results"]
    assert listed[0]["overdue"] is True
    for bad in ({"overdue": "maybe"}, {"status": "shut"}, {"site": ""}):
        assert api.get(reverse("api:deviation-list"), bad).status_code == 400


def test_the_deviation_list_costs_the_same_queries_for_one_or_many(api_client_for, plant):
    api = api_client_for("qa")
    first = raise_on(plant, start(plant))
    make_capa(plant, first)
    api.get(reverse("api:deviation-list"))  # warm the token's first-use writes

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert api.get(reverse("api:deviation-list")).status_code == 200
        return len(queries)

    one = count()
    for _ in range(4):
        make_capa(plant, raise_on(plant, start(plant)))
    closed = investigated(plant, triaged(plant, raise_on(plant)))
    services.deviation_transition(
        actor=plant.qa,
        deviation=closed,
        action=DeviationAction.CLOSE,
        reason="closed",
        credentials=signing(plant.qa),
    )
    assert count() == one


def test_the_capa_list_costs_the_same_queries_for_one_or_many(api_client_for, plant, capa):
    api = api_client_for("qa")
    api.get(reverse("api:capa-list"))

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert api.get(reverse("api:capa-list")).status_code == 200
        return len(queries)

    one = count()
    for _ in range(4):
        make_capa(plant, raise_on(plant))
    assert count() == one


def test_a_batch_number_resolves_only_to_a_visible_batch(plant):
    batch: Batch = start(plant)
    api = token_client(plant.operator, site_codes=["MAN2"])
    response = api.post(
        reverse("api:deviation-list"),
        {
            "site": "MAN2",
            "batch": batch.number,
            "title": "t",
            "description": "d",
            "proposed_class": "minor",
        },
    )
    assert_problem(response, 400, "unknown_batch")
    assert not Deviation.objects.exists()
