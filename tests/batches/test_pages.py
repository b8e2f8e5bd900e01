"""The batch pages: who may open and post what (permission matrices), each form's happy path and
its refusals with nothing written, the QP queue's fixed query count and its polled rows, and the
queue's bulk gate summary agreeing with the gates (issue 5 pages; BR-01…BR-15, ES-01, ES-05).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoDbBlocker

from batches import services
from batches.choices import BatchStatus, TemplateStatus
from batches.models import (
    Batch,
    BatchTemplate,
    Certification,
    StepRecord,
    SupplyRecord,
    TestResult,
)
from batches.panels import batches_panel
from batches.selectors import (
    QueueFilters,
    batch_gate_report,
    gate_summary,
    qp_queue,
    queue_gate_summaries,
)
from batches.views import left_label
from controlsite.accounts.models import User
from controlsite.audit.context import audit_context
from controlsite.signatures.models import ElectronicSignature
from masterfile import services as masterfile_services
from masterfile.choices import ProductSiteRole
from sites import services as site_services
from sites.choices import SiteRole, SiteStatus
from tests.batches.helpers import (
    COI,
    GOOD_STEP_VALUES,
    Plant,
    approved_template,
    passing_results,
)
from tests.masterfile.helpers import make_effective_version, make_product, signing
from tests.matrix import ANON, Matrix, only
from tests.personas import ALL_PERSONAS, PASSWORD, login, make_persona, totp_code
from tests.sites.helpers import make_site
from tests.worlds import refetched, shared_rows

pytestmark = pytest.mark.django_db

Persona = Callable[[str], User]


#
# A plant with the personas (the matrices sign in as them): built once for the module, each
# test's changes rolled back (tests/worlds.py)
#


def _build_plant() -> Plant:
    """tests.batches.helpers.make_plant with the personas: LDS1 and MAN2 active and listed,
    CART-01 with an approved three-step template. Every persona is made here, once: the
    `persona` fixture finds them by username."""
    people = {name: make_persona(name) for name in ALL_PERSONAS}
    qa, qp, lead, operator = people["qa"], people["qp"], people["site_lead"], people["operator"]
    operator2 = make_persona("operator", username="operator2")
    reference = make_site(qa, "LDS1", SiteStatus.ACTIVE)
    spoke = make_site(qa, "MAN2", SiteStatus.ACTIVE)
    for site in (reference, spoke):
        for user, role in (
            (lead, SiteRole.SITE_LEAD),
            (operator, SiteRole.SITE_OPERATOR),
            (operator2, SiteRole.SITE_OPERATOR),
        ):
            site_services.membership_add(
                actor=qa, site=site, user=user, role=role, reason="works here"
            )
    product = make_product(qa, reference, "CART-01", shelf_life_minutes=120)
    masterfile_services.product_site_add(
        actor=qa, product=product, site=spoke, role=ProductSiteRole.MANUFACTURING, reason="spoke"
    )
    make_effective_version(qa, qp, product)
    template = approved_template(qa, product)
    return Plant(qa, qp, lead, operator, operator2, reference, spoke, product, template)


@pytest.fixture(scope="module")
def _shared_plant(django_db_setup: None, django_db_blocker: DjangoDbBlocker) -> Iterator[Plant]:
    with shared_rows(django_db_blocker):
        with django_db_blocker.unblock():
            built = _build_plant()
        yield built


@pytest.fixture(autouse=True)
def _plant_of_the_test(persona: Persona, _shared_plant: Plant) -> None:
    """The shared plant as this test finds it (every record read again from the database), kept
    on the test's own persona function for `_plant`."""
    persona.plant = refetched(_shared_plant)  # type: ignore[attr-defined]


def _plant(p: Persona) -> Plant:
    """The test's plant (`_plant_of_the_test`)."""
    plant: Plant = p.plant  # type: ignore[attr-defined]
    return plant


def _started(p: Persona) -> Batch:
    plant = _plant(p)
    return services.batch_start(
        actor=plant.operator, site=plant.reference, product=plant.product, coi_reference=COI
    )


def _steps(plant: Plant, batch: Batch, upto: int = 3) -> Batch:
    for position in range(1, upto + 1):
        performer = plant.lead if position == 3 else plant.operator
        record = services.step_record(
            actor=performer,
            batch=batch,
            position=position,
            values=GOOD_STEP_VALUES[position],
            credentials=signing(performer),
        )
        if position == 2:
            services.step_verify(
                actor=plant.operator2, record=record, credentials=signing(plant.operator2)
            )
    batch.refresh_from_db()
    return batch


def _completed(p: Persona) -> Batch:
    return _steps(_plant(p), _started(p))


def _ready(p: Persona) -> Batch:
    plant = _plant(p)
    batch = _completed(p)
    passing_results(plant, batch)
    return batch


def _certified(p: Persona) -> Batch:
    plant = _plant(p)
    batch = _ready(p)
    services.batch_certify(
        actor=plant.qp, batch=batch, credentials=signing(plant.qp), reason="released"
    )
    batch.refresh_from_db()
    return batch


def _failed_registered(p: Persona) -> Batch:
    plant = _plant(p)
    batch = _completed(p)
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="viability", value=50
    )
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="endotoxin", value=1
    )
    return batch


def _draft_template(p: Persona) -> BatchTemplate:
    plant = _plant(p)
    return services.template_create(
        actor=plant.qa, product=plant.product, title="Revision", reason="revise"
    )


def _url(name: str, *args: Any) -> str:
    return reverse(name, args=args)


def sig(
    user: User, prefix: str, meaning: str, reason: str = "signed in the test"
) -> dict[str, str]:
    """The signature dialog's fields (first signing of a session: username too; TOTP for QPs)."""
    fields = {
        f"{prefix}-username": user.get_username(),
        f"{prefix}-password": PASSWORD,
        f"{prefix}-meaning": meaning,
        f"{prefix}-reason": reason,
    }
    credentials = signing(user)
    if credentials.otp:
        fields[f"{prefix}-otp"] = credentials.otp
    return fields


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


#
# Who may open and post what
#

ALL_OK = only({}, others=200, anonymous=302)
# VIEW_ALL_SITES sees every batch; the site's lead and operator see their site's; others 404.
SEES_BATCH = only(
    {"qa": 200, "qp": 200, "inspector": 200, "site_lead": 200, "operator": 200},
    others=404,
    anonymous=302,
)
QP_PAGE = only(
    {"qp": 200, "qa": 403, "inspector": 403, "site_lead": 403, "operator": 403},
    others=404,
    anonymous=302,
)
SEES_TEMPLATE = only(
    {"qa": 200, "qp": 200, "inspector": 200, "site_lead": 200, "operator": 200},
    others=404,
    anonymous=302,
)


def _posted(table: dict[str, int]) -> dict[str, int]:
    return {who: 302 if status == 200 else status for who, status in table.items()}


# Site staff of the batch's site write; who sees without recording is refused (403).
SITE_WRITES = _posted(
    only(
        {"qa": 403, "qp": 403, "inspector": 403, "site_lead": 200, "operator": 200},
        others=404,
        anonymous=302,
    )
)
QP_WRITES = _posted(QP_PAGE)
QA_WRITES = _posted(
    only(
        {"qa": 200, "qp": 403, "inspector": 403, "site_lead": 403, "operator": 403},
        others=404,
        anonymous=302,
    )
)
START = _posted(only({"site_lead": 200, "operator": 200}, others=403, anonymous=302))
QA_CREATE = _posted(only({"qa": 200}, others=403, anonymous=302))


@dataclasses.dataclass(frozen=True)
class Endpoint:
    matrix: Matrix
    method: str
    build: Callable[[Persona, str], tuple[str, dict[str, Any]]]
    htmx: bool = False


def _step1(p: Persona, who: str) -> tuple[str, dict[str, Any]]:
    batch = _started(p)
    user = p(who) if who != ANON else p("operator")
    return _url("batches:step-record", batch.number, 1), {
        "step-value_bath-temp": "37",
        "step-value_volume": "50",
        **sig(user, "stepsig", "performed"),
    }


def _verify2(p: Persona, who: str) -> tuple[str, dict[str, Any]]:
    plant = _plant(p)
    batch = _started(p)
    _steps(plant, batch, 1)
    services.step_record(
        actor=plant.operator2,
        batch=batch,
        position=2,
        values={"moi": 3},
        credentials=signing(plant.operator2),
    )
    user = p(who) if who != ANON else p("operator")
    return _url("batches:step-verify", batch.number, 2), sig(user, "verify", "verified")


def _result(p: Persona, who: str) -> tuple[str, dict[str, Any]]:
    batch = _completed(p)
    return _url("batches:result-record", batch.number), {
        "result-specification": "viability",
        "result-value": "90",
    }


def _certify(p: Persona, who: str) -> tuple[str, dict[str, Any]]:
    batch = _ready(p)
    user = p(who) if who != ANON else p("qp")
    return _url("batches:certify-sign", batch.number), sig(user, "sig", "qp_certified")


def _concession(p: Persona, who: str) -> tuple[str, dict[str, Any]]:
    batch = _failed_registered(p)
    user = p(who) if who != ANON else p("qp")
    return _url("batches:concession-sign", batch.number), {
        "concession-clinician_request": "Dr Rao, written request CR-7, 09:10",
        "concession-justification": "No alternative therapy; viability 50 % acceptable here.",
        **sig(user, "csig", "qp_certified"),
    }


def _reject(p: Persona, who: str) -> tuple[str, dict[str, Any]]:
    batch = _completed(p)
    user = p(who) if who != ANON else p("qp")
    return _url("batches:reject", batch.number), sig(user, "rsig", "rejected", "bag leaked")


def _supply(p: Persona, who: str) -> tuple[str, dict[str, Any]]:
    batch = _certified(p)
    return _url("batches:supply-record", batch.number), {
        "supply-coi_reference": COI,
        "supply-supplied_to": "Ward 7, bed 3",
        "supply-quantity": "1",
        "supply-unit": "bag",
    }


def _administered(p: Persona, who: str) -> tuple[str, dict[str, Any]]:
    plant = _plant(p)
    batch = _certified(p)
    supply = services.supply_record(
        actor=plant.operator,
        batch=batch,
        coi_reference=COI,
        supplied_to="Ward 7",
        quantity=1,
        unit="bag",
    )
    key = f"admin-{supply.pk}"
    return _url("batches:administration-confirm", batch.number, supply.pk), {
        f"{key}-coi_reference": COI
    }


def _start(p: Persona, who: str) -> tuple[str, dict[str, Any]]:
    plant = _plant(p)
    return _url("batches:start"), {
        "start-site": plant.reference.pk,
        "start-product": plant.product.pk,
        "start-coi_reference": "PT-2026-0100",
    }


def _template_create(p: Persona, who: str) -> tuple[str, dict[str, Any]]:
    plant = _plant(p)
    return _url("batches:template-create"), {
        "template-product": plant.product.pk,
        "template-title": "Revision 2",
        "template-reason": "new MBR",
    }


def _step_add(p: Persona, who: str) -> tuple[str, dict[str, Any]]:
    return _url("batches:template-step-add", _draft_template(p).pk), {
        "step-title": "Count",
        "step-instruction": "Count the cells.",
        "step-role": "site_operator",
        "step-p0_key": "count",
        "step-p0_name": "Cell count",
        "step-p0_unit": "10^6",
        "step-p0_low": "100",
        "step-p0_high": "",
        "step-reason": "added",
    }


def _spec_add(p: Persona, who: str) -> tuple[str, dict[str, Any]]:
    return _url("batches:template-specification-add", _draft_template(p).pk), {
        "spec-key": "cd3",
        "spec-name": "CD3+",
        "spec-unit": "%",
        "spec-low": "80",
        "spec-registered": "on",
        "spec-timing": "before_release",
        "spec-reason": "added",
    }


def _approve(p: Persona, who: str) -> tuple[str, dict[str, Any]]:
    template = _draft_template(p)
    user = p(who) if who != ANON else p("qa")
    return _url("batches:template-approve", template.pk), sig(user, "asig", "approved")


ENDPOINTS: list[Endpoint] = [
    Endpoint(Matrix("page:batches-index", ALL_OK), "get", lambda p, w: (_url("batches:index"), {})),
    Endpoint(Matrix("page:batches-queue", ALL_OK), "get", lambda p, w: (_url("batches:queue"), {})),
    Endpoint(
        Matrix("page:batches-queue-rows", ALL_OK),
        "get",
        lambda p, w: (_url("batches:queue-rows"), {}),
        htmx=True,
    ),
    Endpoint(
        Matrix("page:batches-detail", SEES_BATCH),
        "get",
        lambda p, w: (_url("batches:detail", _started(p).number), {}),
    ),
    Endpoint(
        Matrix("page:batches-certify", QP_PAGE),
        "get",
        lambda p, w: (_url("batches:certify", _ready(p).number), {}),
    ),
    Endpoint(
        Matrix("page:batches-templates", ALL_OK),
        "get",
        lambda p, w: (_url("batches:templates"), {}),
    ),
    Endpoint(
        Matrix("page:batches-template-detail", SEES_TEMPLATE),
        "get",
        lambda p, w: (_url("batches:template-detail", _plant(p).template.pk), {}),
    ),
    Endpoint(Matrix("page:batches-start-post", START), "post", _start),
    Endpoint(Matrix("page:batches-step-record-post", SITE_WRITES), "post", _step1),
    Endpoint(Matrix("page:batches-step-verify-post", SITE_WRITES), "post", _verify2),
    Endpoint(Matrix("page:batches-result-post", SITE_WRITES), "post", _result),
    Endpoint(Matrix("page:batches-certify-post", QP_WRITES), "post", _certify),
    Endpoint(Matrix("page:batches-concession-post", QP_WRITES), "post", _concession),
    Endpoint(Matrix("page:batches-reject-post", QP_WRITES), "post", _reject),
    Endpoint(Matrix("page:batches-supply-post", SITE_WRITES), "post", _supply),
    Endpoint(Matrix("page:batches-administration-post", SITE_WRITES), "post", _administered),
    Endpoint(Matrix("page:batches-template-create-post", QA_CREATE), "post", _template_create),
    Endpoint(Matrix("page:batches-template-step-post", QA_WRITES), "post", _step_add),
    Endpoint(Matrix("page:batches-template-spec-post", QA_WRITES), "post", _spec_add),
    Endpoint(Matrix("page:batches-template-approve-post", QA_WRITES), "post", _approve),
]
ENDPOINT_CASES = [
    pytest.param(endpoint, who, status, id=f"{endpoint.matrix.name}-{who}-{status}")
    for endpoint in ENDPOINTS
    for who, status in endpoint.matrix.expected.items()
]


@pytest.mark.parametrize(("endpoint", "who", "expected"), ENDPOINT_CASES)
def test_who_may_open_and_post_each_batch_page(persona, browser_as, endpoint, who, expected):
    url, data = endpoint.build(persona, who)
    client = browser_as(who)
    headers = {"HTTP_HX_REQUEST": "true"} if endpoint.htmx else {}
    if endpoint.method == "get":
        response = client.get(url, **headers)
    else:
        response = client.post(url, data, **headers)
    assert response.status_code == expected, messages_of(response)


@pytest.mark.parametrize(
    "name",
    ["batches:start", "batches:template-create"],
)
def test_writes_refuse_get(client_for, name):
    assert client_for("qa").get(_url(name)).status_code == 405


#
# Happy paths and refusals
#


def _client(user: User) -> Client:
    return login(Client(), user)


def test_an_operator_records_step_1_and_sees_it_signed(persona):
    batch = _started(persona)
    plant = _plant(persona)
    client = _client(plant.operator)
    page = client.get(_url("batches:detail", batch.number))
    assert b'action="/batches/' in page.content and b"Sign the step" in page.content
    response = client.post(
        _url("batches:step-record", batch.number, 1),
        {
            "step-value_bath-temp": "39.5",
            "step-value_volume": "50",
            "step-comment": "bath ran warm",
            **sig(plant.operator, "stepsig", "performed"),
        },
        follow=True,
    )
    assert response.status_code == 200
    record = StepRecord.objects.get(batch=batch, position=1)
    assert record.out_of_limit == ["bath-temp"]
    assert record.performed_signature is not None
    text = response.content.decode()
    assert 'class="value-out"' in text
    assert "outside limits" in " ".join(messages_of(response))


def test_a_step_out_of_order_is_refused_and_nothing_is_written(persona):
    batch = _started(persona)
    plant = _plant(persona)
    signatures = ElectronicSignature.objects.count()
    response = _client(plant.operator).post(
        _url("batches:step-record", batch.number, 2),
        {"step-value_moi": "3", **sig(plant.operator, "stepsig", "performed")},
    )
    assert response.status_code == 409
    assert any("out of order" in m for m in messages_of(response))
    assert not StepRecord.objects.filter(batch=batch).exists()
    assert ElectronicSignature.objects.count() == signatures


def test_a_wrong_password_is_shown_in_the_dialog_and_nothing_is_written(persona):
    batch = _started(persona)
    plant = _plant(persona)
    data = {
        "step-value_bath-temp": "37",
        "step-value_volume": "50",
        **sig(plant.operator, "stepsig", "performed"),
        "stepsig-password": "wrong",
    }
    response = _client(plant.operator).post(_url("batches:step-record", batch.number, 1), data)
    assert response.status_code == 422
    assert not StepRecord.objects.filter(batch=batch).exists()
    assert response.context["step_sig"].non_field_errors()


def test_a_value_that_is_not_a_number_is_refused_with_the_service_message(persona):
    batch = _started(persona)
    plant = _plant(persona)
    data = {
        "step-value_bath-temp": "warm",
        "step-value_volume": "50",
        **sig(plant.operator, "stepsig", "performed"),
    }
    response = _client(plant.operator).post(_url("batches:step-record", batch.number, 1), data)
    assert response.status_code == 400
    assert any("must be a number" in m for m in messages_of(response))
    assert not StepRecord.objects.filter(batch=batch).exists()


def test_the_performer_cannot_verify_their_own_step(persona):
    plant = _plant(persona)
    batch = _steps(plant, _started(persona), 1)
    record = services.step_record(
        actor=plant.operator,
        batch=batch,
        position=2,
        values={"moi": 3},
        credentials=signing(plant.operator),
    )
    client = _client(plant.operator)
    page = client.get(_url("batches:detail", batch.number))
    assert b"Verify the step" not in page.content  # not offered to the performer
    response = client.post(
        _url("batches:step-verify", batch.number, 2), sig(plant.operator, "verify", "verified")
    )
    assert response.status_code == 422
    record.refresh_from_db()
    assert record.verified_by_id is None
    ok = _client(plant.operator2).post(
        _url("batches:step-verify", batch.number, 2), sig(plant.operator2, "verify", "verified")
    )
    assert ok.status_code == 302
    record.refresh_from_db()
    assert record.verified_by == plant.operator2


def test_a_result_is_recorded_with_its_verdict_and_a_second_one_is_refused(persona):
    plant = _plant(persona)
    batch = _completed(persona)
    client = _client(plant.operator)
    data = {"result-specification": "viability", "result-value": "55"}
    response = client.post(_url("batches:result-record", batch.number), data, follow=True)
    assert response.status_code == 200
    assert not TestResult.objects.get(batch=batch).passed
    assert b'id="result-viability"' in response.content
    again = client.post(_url("batches:result-record", batch.number), data)
    assert again.status_code == 409
    assert TestResult.objects.filter(batch=batch).count() == 1


def test_an_unknown_specification_is_refused(persona):
    plant = _plant(persona)
    batch = _completed(persona)
    data = {"result-specification": "nope", "result-value": "1"}
    response = _client(plant.operator).post(_url("batches:result-record", batch.number), data)
    assert response.status_code == 400
    assert not TestResult.objects.filter(batch=batch).exists()


def test_the_certification_page_shows_every_finding_and_disables_certify_on_a_block(persona):
    plant = _plant(persona)
    batch = _completed(persona)  # no results: result_missing blocks
    response = _client(plant.qp).get(_url("batches:certify", batch.number))
    text = response.content.decode()
    assert response.status_code == 200
    assert text.count('class="finding finding-block"') == len(batch_gate_report(batch).blocks)
    assert "#result-viability" in text
    assert _url("batches:certify-sign", batch.number) not in text
    assert "Reject the batch" in text
    refused = _client(plant.qp).post(
        _url("batches:certify-sign", batch.number), sig(plant.qp, "sig", "qp_certified")
    )
    assert refused.status_code == 409
    assert not Certification.objects.filter(batch=batch).exists()


def test_a_qp_certifies_with_password_and_totp(persona):
    plant = _plant(persona)
    batch = _ready(persona)
    client = _client(plant.qp)
    page = client.get(_url("batches:certify", batch.number))
    assert b"Authenticator code" in page.content
    response = client.post(
        _url("batches:certify-sign", batch.number),
        {
            "certify-remote": "on",
            "certify-location": "On call, home",
            **sig(plant.qp, "sig", "qp_certified"),
        },
        follow=True,
    )
    assert response.status_code == 200
    batch.refresh_from_db()
    assert batch.status == BatchStatus.CERTIFIED
    certification = Certification.objects.get(batch=batch)
    assert certification.remote and certification.location == "On call, home"
    assert certification.signature is not None
    assert certification.signature.meaning == "qp_certified"
    assert "Remotely, from On call, home" in response.content.decode()


def test_certifying_without_totp_is_refused(persona):
    plant = _plant(persona)
    batch = _ready(persona)
    data = sig(plant.qp, "sig", "qp_certified")
    data.pop("sig-otp")
    response = _client(plant.qp).post(_url("batches:certify-sign", batch.number), data)
    assert response.status_code == 400
    batch.refresh_from_db()
    assert batch.status == BatchStatus.COMPLETED


def test_a_warning_needs_a_justification(persona):
    plant = _plant(persona)
    batch = _completed(persona)
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="viability", value=90
    )
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="endotoxin", value=9
    )
    client = _client(plant.qp)
    response = client.post(
        _url("batches:certify-sign", batch.number), sig(plant.qp, "sig", "qp_certified")
    )
    assert response.status_code == 400
    assert any("justification" in m for m in messages_of(response))
    assert not Certification.objects.filter(batch=batch).exists()
    ok = client.post(
        _url("batches:certify-sign", batch.number),
        {
            "certify-justification": "Endotoxin trend reviewed.",
            **sig(plant.qp, "sig", "qp_certified"),
        },
    )
    assert ok.status_code == 302


def test_remote_without_location_is_refused(persona):
    plant = _plant(persona)
    batch = _ready(persona)
    response = _client(plant.qp).post(
        _url("batches:certify-sign", batch.number),
        {"certify-remote": "on", **sig(plant.qp, "sig", "qp_certified")},
    )
    assert response.status_code == 400
    assert not Certification.objects.filter(batch=batch).exists()


def test_a_concession_is_offered_only_for_a_failed_registered_specification(persona):
    plant = _plant(persona)
    batch = _failed_registered(persona)
    client = _client(plant.qp)
    page = client.get(_url("batches:certify", batch.number)).content.decode()
    assert "Certify under concession" in page
    incomplete = client.post(
        _url("batches:concession-sign", batch.number),
        {"concession-justification": "needed", **sig(plant.qp, "csig", "qp_certified")},
    )
    assert incomplete.status_code == 400
    assert not Certification.objects.filter(batch=batch).exists()
    data = {
        "concession-clinician_request": "Dr Rao, written request CR-7, 09:10",
        "concession-justification": "No alternative therapy; viability 50 % acceptable here.",
        **sig(plant.qp, "csig", "qp_certified"),
    }
    response = client.post(_url("batches:concession-sign", batch.number), data, follow=True)
    assert response.status_code == 200, messages_of(response)
    batch.refresh_from_db()
    assert batch.status == BatchStatus.CERTIFIED_UNDER_CONCESSION
    assert 'badge-concession">Certified under concession' in response.content.decode()
    assert "Dr Rao" in response.content.decode()
    ready = _client(plant.qp).get(_url("batches:certify", _ready(persona).number)).content
    assert b"Certify under concession</h2>" not in ready


def test_a_qp_rejects_with_a_reason(persona):
    plant = _plant(persona)
    batch = _completed(persona)
    response = _client(plant.qp).post(
        _url("batches:reject", batch.number), sig(plant.qp, "rsig", "rejected", "bag leaked")
    )
    assert response.status_code == 302
    batch.refresh_from_db()
    assert batch.status == BatchStatus.REJECTED
    again = _client(plant.qp).post(
        _url("batches:certify-sign", batch.number), sig(plant.qp, "sig", "qp_certified")
    )
    assert again.status_code == 409


def test_supply_checks_the_chain_of_identity_then_administration_is_confirmed(persona):
    plant = _plant(persona)
    batch = _certified(persona)
    client = _client(plant.operator)
    data = {
        "supply-coi_reference": "PT-WRONG",
        "supply-supplied_to": "Ward 7",
        "supply-quantity": "1",
        "supply-unit": "bag",
    }
    mismatch = client.post(_url("batches:supply-record", batch.number), data)
    assert mismatch.status_code == 409
    assert any("does not match" in m for m in messages_of(mismatch))
    assert not SupplyRecord.objects.exists()
    data["supply-coi_reference"] = COI
    assert client.post(_url("batches:supply-record", batch.number), data).status_code == 302
    supply = SupplyRecord.objects.get()
    key = f"admin-{supply.pk}"
    url = _url("batches:administration-confirm", batch.number, supply.pk)
    assert client.post(url, {f"{key}-coi_reference": "X-1"}).status_code == 409
    assert client.post(url, {f"{key}-coi_reference": COI}).status_code == 302
    supply.refresh_from_db()
    assert supply.administered_confirmed_by == plant.operator


def test_supply_of_an_uncertified_batch_is_refused(persona):
    plant = _plant(persona)
    batch = _ready(persona)
    data = {
        "supply-coi_reference": COI,
        "supply-supplied_to": "Ward 7",
        "supply-quantity": "1",
        "supply-unit": "bag",
    }
    response = _client(plant.operator).post(_url("batches:supply-record", batch.number), data)
    assert response.status_code == 409
    assert not SupplyRecord.objects.exists()


def test_starting_at_a_suspended_site_is_refused_with_its_reason(persona):
    plant = _plant(persona)
    site = make_site(plant.qa, "BRS3", SiteStatus.SUSPENDED)
    site_services.membership_add(
        actor=plant.qa, site=site, user=plant.operator, role=SiteRole.SITE_OPERATOR, reason="r"
    )
    response = _client(plant.operator).post(
        _url("batches:start"),
        {"start-site": site.pk, "start-product": plant.product.pk, "start-coi_reference": "PT-1"},
    )
    assert response.status_code == 409
    assert any("cannot manufacture" in m for m in messages_of(response))
    assert not Batch.objects.exists()


def test_a_bad_chain_of_identity_reference_is_refused(persona):
    plant = _plant(persona)
    response = _client(plant.operator).post(
        _url("batches:start"),
        {
            "start-site": plant.reference.pk,
            "start-product": plant.product.pk,
            "start-coi_reference": "Jane Doe",
        },
    )
    assert response.status_code == 400
    assert not Batch.objects.exists()


def test_the_start_form_starts_a_batch(persona):
    plant = _plant(persona)
    response = _client(plant.operator).post(
        _url("batches:start"),
        {
            "start-site": plant.reference.pk,
            "start-product": plant.product.pk,
            "start-coi_reference": "PT-2026-0100",
        },
    )
    batch = Batch.objects.get()
    assert response.status_code == 302 and response["Location"] == _url(
        "batches:detail", batch.number
    )


def test_qa_drafts_adds_a_step_and_a_specification_and_approves_a_template(persona):
    plant = _plant(persona)
    client = _client(plant.qa)
    created = client.post(*_template_create(persona, "qa"))
    assert created.status_code == 302
    draft = BatchTemplate.objects.get(status=TemplateStatus.DRAFT)
    url = _url("batches:template-step-add", draft.pk)
    data = {
        "step-title": "Count",
        "step-instruction": "Count the cells.",
        "step-role": "site_operator",
        "step-p0_key": "count",
        "step-p0_name": "Cell count",
        "step-p0_low": "100",
        "step-reason": "added",
    }
    assert client.post(url, data).status_code == 302
    bad = client.post(url, {**data, "step-p0_low": "9", "step-p0_high": "1"})
    assert bad.status_code == 400
    steps = draft.steps.count()
    spec = {
        "spec-key": "cd3",
        "spec-name": "CD3+",
        "spec-low": "80",
        "spec-timing": "before_release",
        "spec-reason": "added",
    }
    assert (
        client.post(_url("batches:template-specification-add", draft.pk), spec).status_code == 302
    )
    dup = client.post(_url("batches:template-specification-add", draft.pk), spec)
    assert dup.status_code == 409
    page = client.get(_url("batches:template-detail", draft.pk)).content.decode()
    assert "Cell count" in page and "CD3+" in page and "Approve the template" in page
    approved = client.post(
        _url("batches:template-approve", draft.pk), sig(plant.qa, "asig", "approved")
    )
    assert approved.status_code == 302
    draft.refresh_from_db()
    assert draft.status == TemplateStatus.APPROVED and draft.steps.count() == steps
    page = client.get(_url("batches:template-detail", draft.pk)).content.decode()
    assert "Approve the template" not in page and "Approved" in page


#
# The queue: fixed query count, the polled rows, the gate summary
#


def _completed_batches(plant: Plant, n: int) -> list[Batch]:
    batches = []
    for i in range(n):
        site = plant.reference if i % 2 else plant.spoke
        batch = services.batch_start(
            actor=plant.operator, site=site, product=plant.product, coi_reference=COI
        )
        batches.append(_steps(plant, batch))
    return batches


def _queue_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_the_queue_costs_the_same_queries_for_2_and_12_batches(persona):
    plant = _plant(persona)
    client = _client(plant.qp)
    _completed_batches(plant, 2)
    url, rows = _url("batches:queue"), _url("batches:queue-rows")
    few, few_rows = _queue_queries(client, url), _queue_queries(client, rows)
    _completed_batches(plant, 10)
    assert _queue_queries(client, url) == few
    assert _queue_queries(client, rows) == few_rows
    assert Batch.objects.filter(status=BatchStatus.COMPLETED).count() == 12


def test_the_queue_rows_partial_returns_the_rows_soonest_first_and_filters(persona):
    plant = _plant(persona)
    first, second = _completed_batches(plant, 2)
    client = _client(plant.qp)
    response = client.get(_url("batches:queue-rows"), HTTP_HX_REQUEST="true")
    text = response.content.decode()
    assert text.lstrip().startswith("<tbody")
    assert 'hx-trigger="every 2s"' in text
    assert text.index(first.number) < text.index(second.number)
    assert first.expires_at is not None
    assert f'data-expires="{first.expires_at.astimezone(dt.UTC).isoformat()}"' in text
    only_spoke = client.get(_url("batches:queue-rows"), {"site": "MAN2"}).content.decode()
    assert first.number in only_spoke and second.number not in only_spoke
    assert 'hx-get="/batches/queue/rows/?site=MAN2"' in only_spoke
    page = client.get(_url("batches:queue")).content.decode()
    assert 'hx-trigger="every 2s"' in page and "countdown.js" in page


def test_the_queue_rows_escape_what_people_typed(persona):
    plant = _plant(persona)
    (batch,) = _completed_batches(plant, 1)
    with audit_context(reason="rename for the test"):
        plant.product.name = '<img src=x onerror="alert(1)"> & Co'
        plant.product.save(update_fields=["name"])
    text = _client(plant.qp).get(_url("batches:queue-rows")).content.decode()
    assert "<img" not in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; Co" in text
    assert f'href="/batches/{batch.number}/certify/"' in text


@pytest.mark.parametrize(
    ("seconds", "label"),
    [
        (7199, "1 h 59 min 59 s"),
        (3600, "1 h 00 min 00 s"),
        (7200, "2 h 00 min"),
        (7325, "2 h 02 min"),
        (249, "4 min 09 s"),
        (1, "0 min 01 s"),
        (0, "expired"),
        (-5, "expired"),
    ],
)
def test_the_first_paint_of_a_countdown_reads_as_the_script_writes_it(seconds, label):
    """static/batches/countdown.js `label` takes over a second later: the text must not jump."""
    assert left_label(seconds) == label


def test_the_queue_of_site_staff_shows_their_sites_only(persona):
    plant = _plant(persona)
    _completed_batches(plant, 2)
    other = make_persona("operator", username="elsewhere")
    text = _client(other).get(_url("batches:queue-rows")).content.decode()
    assert "Nothing awaits certification" in text


def _summaries(plant: Plant) -> dict[str, tuple[int, int]]:
    qs = queue_gate_summaries(qp_queue(user=plant.qp, filters=QueueFilters()))
    now = timezone.now()
    return {b.number: dataclasses.astuple(gate_summary(b, now)) for b in qs}


def test_the_bulk_gate_summary_agrees_with_the_gates(persona):
    """The queue counts findings in SQL; each case must match `batch_gate_report`."""
    plant = _plant(persona)
    clear, _no_results, failed, warned, expired = _completed_batches(plant, 5)
    passing_results(plant, clear)
    services.result_record(
        actor=plant.operator, batch=failed, specification_key="viability", value=1
    )
    services.result_record(
        actor=plant.operator, batch=warned, specification_key="viability", value=90
    )
    services.result_record(
        actor=plant.operator, batch=warned, specification_key="endotoxin", value=9
    )
    passing_results(plant, expired)
    Batch.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - dt.timedelta(minutes=1))
    out = services.batch_start(
        actor=plant.operator, site=plant.reference, product=plant.product, coi_reference=COI
    )
    services.step_record(
        actor=plant.operator,
        batch=out,
        position=1,
        values={"bath-temp": 40, "volume": 50},
        credentials=signing(plant.operator),
    )
    rec = services.step_record(
        actor=plant.operator,
        batch=out,
        position=2,
        values={"moi": 3},
        credentials=signing(plant.operator),
    )
    services.step_verify(actor=plant.operator2, record=rec, credentials=signing(plant.operator2))
    services.step_record(
        actor=plant.lead, batch=out, position=3, values={}, credentials=signing(plant.lead)
    )
    passing_results(plant, out)
    summaries = _summaries(plant)
    for batch in Batch.objects.filter(status=BatchStatus.COMPLETED):
        report = batch_gate_report(batch)
        assert summaries[batch.number] == (len(report.blocks), len(report.warnings)), batch.number
    assert summaries[clear.number] == (0, 0)
    assert summaries[out.number] == (0, 1)
    # The spoke's suspension blocks every batch made there, in both.
    plant.spoke.status = SiteStatus.SUSPENDED
    with audit_context(reason="suspended for the test"):
        plant.spoke.save(update_fields=["status"])
    summaries = _summaries(plant)
    for batch in Batch.objects.filter(status=BatchStatus.COMPLETED):
        report = batch_gate_report(batch)
        assert summaries[batch.number] == (len(report.blocks), len(report.warnings)), batch.number


def test_the_dashboard_panel_counts_batches_and_lists_the_soonest(persona, rf):
    plant = _plant(persona)
    _completed_batches(plant, 1)
    request = rf.get("/")
    request.user = plant.qp
    ctx = batches_panel(request)
    assert ctx is not None and ctx["awaiting"] == 1 and len(ctx["soonest"]) == 1
    request.user = persona("outsider")
    assert batches_panel(request) is None


def test_the_qp_totp_code_is_the_personas(persona):
    """The signature helper gives the QP a code their device accepts (tests/personas.py)."""
    assert len(totp_code(persona("qp"))) == 6
