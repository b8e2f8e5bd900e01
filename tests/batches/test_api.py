"""The batches API (issue 5 §9; design §6): templates and their approval, batches by number,
steps with second-person verification, results, the release gates' findings, the QP's
certification and rejection, supply and administration.

Who may do what is a permission matrix per route; the rest checks what integrators rely on: a
site-limited token sees and writes only its sites' batches (404 for the rest), an
`Idempotency-Key` reused with another body is 409, an unknown CQA is 400, a decided or expired
batch cannot be certified (409), strict input — and, for every refusal, that nothing is written
(BR-01, BR-02, BR-03, BR-07, BR-08, BR-09, BR-12, BR-13, BR-14, BR-15, ES-01, ES-03).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoDbBlocker
from rest_framework.test import APIClient

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
from controlsite.accounts.models import User
from controlsite.api.models import TokenScope
from controlsite.api.tokens import api_token_create
from controlsite.audit.models import AuditEvent
from controlsite.signatures.models import ElectronicSignature
from masterfile import services as masterfile_services
from masterfile.choices import ProductSiteRole
from sites import services as site_services
from sites.choices import SiteRole, SiteStatus
from tests.batches.helpers import (
    COI,
    Plant,
    approved_template,
    do_steps,
    passing_results,
    ready_batch,
    start,
)
from tests.masterfile.helpers import make_effective_version, make_product, signing
from tests.matrix import ANON, Matrix, only
from tests.personas import ALL_PERSONAS, make_persona
from tests.personas import signature_fields as persona_signature_fields
from tests.sites.helpers import make_site
from tests.worlds import refetched, shared_rows

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


def signature_fields(user: User, **overrides: Any) -> dict[str, Any]:
    """The persona's signature fields, with a TOTP code its device has not accepted yet (the
    fixtures sign too, and a code is accepted once)."""
    fields = persona_signature_fields(user, **overrides)
    if "otp" in fields and "otp" not in overrides:
        fields["otp"] = signing(user).otp
    return fields


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


#
# The world every test starts from: built once for the module, each test's changes rolled back
# (tests/worlds.py)
#


def _build_plant() -> Plant:
    """tests.batches.helpers.make_plant, with the personas of the permission matrices: LDS1
    and MAN2 active and listed for CART-01, whose three-step template is approved; the site
    lead and the operators work at both; the trainer and the integrator at neither. Every
    persona is made here, once: the `persona` fixture finds them by username."""
    people = {name: make_persona(name) for name in ALL_PERSONAS}
    qa, qp = people["qa"], people["qp"]
    lead, operator = people["site_lead"], people["operator"]
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
        actor=qa, product=product, site=spoke, role=ProductSiteRole.MANUFACTURING, reason="2nd"
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


@pytest.fixture
def plant(db: None, _shared_plant: Plant) -> Plant:
    """The shared plant as this test finds it: every record read again from the database."""
    return refetched(_shared_plant)


@pytest.fixture
def batch(plant: Plant) -> Batch:
    return start(plant)


@pytest.fixture
def ready(plant: Plant) -> Batch:
    return ready_batch(plant)


@pytest.fixture
def certified(plant: Plant, ready: Batch) -> Batch:
    services.batch_certify(
        actor=plant.qp, batch=ready, credentials=signing(plant.qp), reason="all clear"
    )
    ready.refresh_from_db()
    return ready


@pytest.fixture
def draft(plant: Plant) -> BatchTemplate:
    return services.template_create(
        actor=plant.qa, product=plant.product, title="v2", reason="next version"
    )


def token_client(user: User, *, site_codes: list[str] | None = None) -> APIClient:
    """A read-write token for `user`, made by the plant's system administrator (made here when
    the module's plant has none)."""
    creator = User.objects.filter(username="sysadmin").first() or make_persona("sysadmin")
    _, secret = api_token_create(
        user=user,
        name="site-limited",
        scope=TokenScope.READ_WRITE,
        created_by=creator,
        site_codes=site_codes,
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def signed(persona: Callable[[str], User], who: str, **fields: Any) -> dict[str, Any]:
    """Signature fields of the persona itself (Control Site QA's for anonymous)."""
    return signature_fields(persona("qa") if who == ANON else persona(who), **fields)


def step_body(persona: Callable[[str], User], who: str, position: int = 1) -> dict[str, Any]:
    values = {1: {"bath-temp": "37.0", "volume": 50}, 2: {"moi": 3}, 3: {}}[position]
    return {
        "position": position,
        "values": values,
        **signed(persona, who, meaning="performed", reason="done"),
    }


#
# Permission matrices
#

# USE_API holders read lists (scoped to what they may see); sysadmin and outsider have no API.
EVERY_API_USER = only({"sysadmin": 403, "outsider": 403}, others=200, anonymous=401)
# One batch or template: QA, QPs and inspectors see every one; the site lead and the operator
# those of their sites; the trainer and the integrator work at no site, so for them it does
# not exist.
READERS = only(
    {"trainer": 404, "integrator": 404, "sysadmin": 403, "outsider": 403},
    others=200,
    anonymous=401,
)
# Template writes: Control Site QA only, on a template the caller may see (or not: 404).
QA_WRITE = only({"qa": 200, "trainer": 404, "integrator": 404}, others=403, anonymous=401)
# Recording at a site: its staff; a batch the caller cannot see is 404.
RECORDER = only(
    {"site_lead": 201, "operator": 201, "trainer": 404, "integrator": 404},
    others=403,
    anonymous=401,
)
# The QP's decision.
QP_ONLY = only({"qp": 200, "trainer": 404, "integrator": 404}, others=403, anonymous=401)

TEMPLATE_LIST = Matrix("api:batch-template-list", EVERY_API_USER)
TEMPLATE_DETAIL = Matrix("api:batch-template-detail", READERS)
# A product the caller cannot see is a 400 (unknown_product).
TEMPLATE_CREATE = Matrix(
    "api:batch-template-create",
    only({"qa": 201, "trainer": 400, "integrator": 400}, others=403, anonymous=401),
)
TEMPLATE_STEPS = Matrix("api:batch-template-steps", {**QA_WRITE, "qa": 201})
TEMPLATE_SPECIFICATIONS = Matrix("api:batch-template-specifications", {**QA_WRITE, "qa": 201})
TEMPLATE_APPROVE = Matrix("api:batch-template-approve", QA_WRITE)

BATCH_LIST = Matrix("api:batch-list", EVERY_API_USER)
BATCH_DETAIL = Matrix("api:batch-detail", READERS)
# A site the caller cannot see is a 400 (unknown_site).
BATCH_CREATE = Matrix("api:batch-create", {**RECORDER, "trainer": 400, "integrator": 400})
BATCH_STEPS = Matrix("api:batch-steps", RECORDER)
BATCH_STEP_VERIFY = Matrix("api:batch-step-verify", {**RECORDER, "site_lead": 200, "operator": 200})
BATCH_RESULTS = Matrix("api:batch-results", READERS)
BATCH_RESULTS_RECORD = Matrix("api:batch-results-record", RECORDER)
BATCH_RESULTS_BULK = Matrix("api:batch-results-bulk", RECORDER)
BATCH_FINDINGS = Matrix("api:batch-findings", READERS)
BATCH_CERTIFY = Matrix("api:batch-certify", QP_ONLY)
BATCH_REJECT = Matrix("api:batch-reject", QP_ONLY)
BATCH_SUPPLIES = Matrix("api:batch-supplies", RECORDER)

SUPPLY_LIST = Matrix("api:supply-list", EVERY_API_USER)
SUPPLY_DETAIL = Matrix("api:supply-detail", READERS)
SUPPLY_CONFIRM = Matrix(
    "api:supply-confirm-administration", {**RECORDER, "site_lead": 200, "operator": 200}
)

SEES = {"qa", "qp", "inspector", "site_lead", "operator"}


# Templates


@pytest.mark.parametrize(("who", "expected"), TEMPLATE_LIST.cases())
def test_template_list(as_persona, plant, who, expected):
    response = as_persona(who).get(reverse("api:batch-template-list"))
    assert response.status_code == expected
    if expected == 200:
        assert len(response.json()["results"]) == (1 if who in SEES else 0)


@pytest.mark.parametrize(("who", "expected"), TEMPLATE_DETAIL.cases())
def test_template_detail(as_persona, plant, who, expected):
    response = as_persona(who).get(reverse("api:batch-template-detail", args=[plant.template.pk]))
    assert response.status_code == expected
    if expected == 200:
        body = response.json()
        assert [s["position"] for s in body["steps"]] == [1, 2, 3]
        assert [s["key"] for s in body["specifications"]] == ["endotoxin", "sterility", "viability"]
        assert response["ETag"]


@pytest.mark.parametrize(("who", "expected"), TEMPLATE_CREATE.cases())
def test_template_create(as_persona, plant, who, expected):
    response = as_persona(who).post(
        reverse("api:batch-template-list"),
        {"product": "CART-01", "title": "v2", "reason": "next version"},
    )
    assert response.status_code == expected, response.content
    drafts = BatchTemplate.objects.filter(status=TemplateStatus.DRAFT).count()
    assert drafts == (expected == 201)


@pytest.mark.parametrize(("who", "expected"), TEMPLATE_STEPS.cases())
def test_template_steps(as_persona, draft, who, expected):
    response = as_persona(who).post(
        reverse("api:batch-template-steps", args=[draft.pk]),
        {"title": "Release", "instruction": "Hand over.", "reason": "step 4"},
    )
    assert response.status_code == expected, response.content
    assert draft.steps.count() == (4 if expected == 201 else 3)


@pytest.mark.parametrize(("who", "expected"), TEMPLATE_SPECIFICATIONS.cases())
def test_template_specifications(as_persona, draft, who, expected):
    response = as_persona(who).post(
        reverse("api:batch-template-specifications", args=[draft.pk]),
        {"key": "cd3", "name": "CD3+", "unit": "%", "low": "80", "reason": "new CQA"},
    )
    assert response.status_code == expected, response.content
    assert draft.specifications.filter(key="cd3").exists() == (expected == 201)


@pytest.mark.parametrize(("who", "expected"), TEMPLATE_APPROVE.cases())
def test_template_approve(as_persona, persona, draft, who, expected):
    response = as_persona(who).post(
        reverse("api:batch-template-approve", args=[draft.pk]),
        signed(persona, who, meaning="approved", reason="v2 approved"),
    )
    assert response.status_code == expected, response.content
    draft.refresh_from_db()
    approved = draft.status == TemplateStatus.APPROVED
    assert approved == (expected == 200)


# Batches


@pytest.mark.parametrize(("who", "expected"), BATCH_LIST.cases())
def test_batch_list(as_persona, batch, who, expected):
    response = as_persona(who).get(reverse("api:batch-list"))
    assert response.status_code == expected
    if expected == 200:
        numbers = [b["number"] for b in response.json()["results"]]
        assert numbers == ([batch.number] if who in SEES else [])


@pytest.mark.parametrize(("who", "expected"), BATCH_DETAIL.cases())
def test_batch_detail(as_persona, batch, who, expected):
    response = as_persona(who).get(reverse("api:batch-detail", args=[batch.number]))
    assert response.status_code == expected
    if expected == 200:
        body = response.json()
        assert body["number"] == batch.number
        assert body["progress"]["current_step"] == 1
        assert body["findings"]["can_certify"] is False
        assert response["ETag"]
    else:
        assert response["Content-Type"].startswith(PROBLEM)


@pytest.mark.parametrize(("who", "expected"), BATCH_CREATE.cases())
def test_batch_create(as_persona, plant, who, expected):
    response = as_persona(who).post(
        reverse("api:batch-list"), {"site": "LDS1", "product": "CART-01", "coi_reference": COI}
    )
    assert response.status_code == expected, response.content
    assert Batch.objects.count() == (expected == 201)


@pytest.mark.parametrize(("who", "expected"), BATCH_STEPS.cases())
def test_batch_steps(as_persona, persona, batch, who, expected):
    response = as_persona(who).post(
        reverse("api:batch-steps", args=[batch.number]), step_body(persona, who)
    )
    assert response.status_code == expected, response.content
    assert StepRecord.objects.filter(batch=batch).count() == (expected == 201)


@pytest.fixture
def awaiting_verification(plant: Plant, batch: Batch) -> StepRecord:
    """Step 2 performed by the second operator, awaiting a second person."""
    do_steps(plant, batch, upto=1)
    return services.step_record(
        actor=plant.operator2,
        batch=batch,
        position=2,
        values={"moi": 3},
        credentials=signing(plant.operator2),
    )


@pytest.mark.parametrize(("who", "expected"), BATCH_STEP_VERIFY.cases())
def test_batch_step_verify(as_persona, persona, awaiting_verification, who, expected):
    record = awaiting_verification
    response = as_persona(who).post(
        reverse("api:batch-step-verify", args=[record.batch.number, 2]),
        signed(persona, who, meaning="verified", reason="witnessed"),
    )
    assert response.status_code == expected, response.content
    record.refresh_from_db()
    assert (record.verified_by_id is not None) == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), BATCH_RESULTS.cases())
def test_batch_results(as_persona, plant, ready, who, expected):
    response = as_persona(who).get(reverse("api:batch-results", args=[ready.number]))
    assert response.status_code == expected
    if expected == 200:
        rows = {r["specification"]["key"]: r["result"] for r in response.json()}
        assert rows["viability"]["value"] == "92.5"
        assert rows["sterility"] is None


@pytest.mark.parametrize(("who", "expected"), BATCH_RESULTS_RECORD.cases())
def test_batch_results_record(as_persona, batch, who, expected):
    response = as_persona(who).post(
        reverse("api:batch-results", args=[batch.number]),
        {"specification": "viability", "value": 88},
    )
    assert response.status_code == expected, response.content
    assert TestResult.objects.filter(batch=batch).count() == (expected == 201)


@pytest.mark.parametrize(("who", "expected"), BATCH_RESULTS_BULK.cases())
def test_batch_results_bulk(as_persona, batch, who, expected):
    response = as_persona(who).post(
        reverse("api:batch-results-bulk", args=[batch.number]),
        {
            "results": [
                {"specification": "viability", "value": 88},
                {"specification": "endotoxin", "value": "6", "comment": "LAL"},
            ],
            "reason": "LIMS upload",
        },
    )
    assert response.status_code == expected, response.content
    assert TestResult.objects.filter(batch=batch).count() == (2 if expected == 201 else 0)
    if expected == 201:
        body = response.json()
        assert [(r["specification"]["key"], r["passed"]) for r in body] == [
            ("viability", True),
            ("endotoxin", False),
        ]
        assert body[1]["comment"] == "LAL" and body[1]["batch"] == batch.number


@pytest.mark.parametrize(
    ("results", "status", "code"),
    [
        ([{"specification": "viability", "value": 1, "unit": "%"}], 400, "unknown_field"),
        ([{"specification": "potency", "value": 1}], 400, "unknown_specification"),
        ([{"specification": "viability", "value": 1}] * 2, 400, "duplicate_specification"),
        ([], 400, "min_length"),
        ("viability=1", 400, "not_a_list"),
    ],
)
def test_results_sent_together_with_bad_input_write_nothing(
    api_client_for, batch, results, status, code
):
    api = api_client_for("operator")
    events = AuditEvent.objects.count()
    response = api.post(
        reverse("api:batch-results-bulk", args=[batch.number]), {"results": results}
    )
    assert_problem(response, status, code)
    assert not TestResult.objects.exists()
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize(("who", "expected"), BATCH_FINDINGS.cases())
def test_batch_findings(as_persona, ready, who, expected):
    response = as_persona(who).get(reverse("api:batch-findings", args=[ready.number]))
    assert response.status_code == expected
    if expected == 200:
        assert response.json() == {"can_certify": True, "blocks": 0, "warnings": 0, "findings": []}


@pytest.mark.parametrize(("who", "expected"), BATCH_CERTIFY.cases())
def test_batch_certify(as_persona, persona, ready, who, expected):
    response = as_persona(who).post(
        reverse("api:batch-certify", args=[ready.number]),
        signed(persona, who, meaning="qp_certified", reason="all clear"),
    )
    assert response.status_code == expected, response.content
    ready.refresh_from_db()
    assert (ready.status == BatchStatus.CERTIFIED) == (expected == 200)
    assert Certification.objects.filter(batch=ready).exists() == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), BATCH_REJECT.cases())
def test_batch_reject(as_persona, persona, batch, who, expected):
    response = as_persona(who).post(
        reverse("api:batch-reject", args=[batch.number]),
        signed(persona, who, meaning="rejected", reason="bag leaked"),
    )
    assert response.status_code == expected, response.content
    batch.refresh_from_db()
    assert (batch.status == BatchStatus.REJECTED) == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), BATCH_SUPPLIES.cases())
def test_batch_supplies(as_persona, certified, who, expected):
    response = as_persona(who).post(
        reverse("api:batch-supplies", args=[certified.number]),
        {"coi_reference": COI, "supplied_to": "Ward 7", "quantity": "1", "unit": "bag"},
    )
    assert response.status_code == expected, response.content
    assert SupplyRecord.objects.filter(batch=certified).count() == (expected == 201)


@pytest.fixture
def supply(plant: Plant, certified: Batch) -> SupplyRecord:
    return services.supply_record(
        actor=plant.operator,
        batch=certified,
        coi_reference=COI,
        supplied_to="Ward 7",
        quantity=1,
        unit="bag",
    )


@pytest.mark.parametrize(("who", "expected"), SUPPLY_LIST.cases())
def test_supply_list(as_persona, supply, who, expected):
    response = as_persona(who).get(reverse("api:supply-list"))
    assert response.status_code == expected
    if expected == 200:
        assert len(response.json()["results"]) == (1 if who in SEES else 0)


@pytest.mark.parametrize(("who", "expected"), SUPPLY_DETAIL.cases())
def test_supply_detail(as_persona, supply, who, expected):
    response = as_persona(who).get(reverse("api:supply-detail", args=[supply.pk]))
    assert response.status_code == expected


@pytest.mark.parametrize(("who", "expected"), SUPPLY_CONFIRM.cases())
def test_supply_confirm_administration(as_persona, supply, who, expected):
    response = as_persona(who).post(
        reverse("api:supply-confirm-administration", args=[supply.pk]), {"coi_reference": COI}
    )
    assert response.status_code == expected, response.content
    supply.refresh_from_db()
    assert (supply.administered_at is not None) == (expected == 200)


#
# Site-limited tokens (issue 5 tests: "cannot see or write another site's batches")
#


def test_a_site_limited_token_sees_only_its_sites_batches(plant):
    at_lds1, at_man2 = start(plant), start(plant, plant.spoke)
    api = token_client(plant.operator, site_codes=["MAN2"])
    listed = api.get(reverse("api:batch-list")).json()["results"]
    assert [b["number"] for b in listed] == [at_man2.number]
    assert_problem(api.get(reverse("api:batch-detail", args=[at_lds1.number])), 404, "not_found")
    assert api.get(reverse("api:batch-detail", args=[at_man2.number])).status_code == 200
    assert_problem(api.get(reverse("api:batch-findings", args=[at_lds1.number])), 404, "not_found")


def test_a_step_for_another_sites_batch_is_404_and_writes_nothing(plant, batch):
    api = token_client(plant.operator, site_codes=["MAN2"])
    events = AuditEvent.objects.count()
    signatures = ElectronicSignature.objects.count()
    response = api.post(
        reverse("api:batch-steps", args=[batch.number]),
        {
            "position": 1,
            "values": {"bath-temp": 37, "volume": 50},
            **signature_fields(plant.operator, meaning="performed", reason="done"),
        },
    )
    assert_problem(response, 404, "not_found")
    assert not StepRecord.objects.exists()
    assert ElectronicSignature.objects.count() == signatures
    assert AuditEvent.objects.count() == events


def test_a_result_for_another_sites_batch_is_404_and_writes_nothing(plant, batch):
    api = token_client(plant.operator, site_codes=["MAN2"])
    response = api.post(
        reverse("api:batch-results", args=[batch.number]),
        {"specification": "viability", "value": 90},
    )
    assert_problem(response, 404, "not_found")
    assert not TestResult.objects.exists()


def test_a_site_limited_token_cannot_start_a_batch_at_another_site(plant):
    api = token_client(plant.operator, site_codes=["MAN2"])
    response = api.post(
        reverse("api:batch-list"), {"site": "LDS1", "product": "CART-01", "coi_reference": COI}
    )
    assert_problem(response, 400, "unknown_site")
    assert not Batch.objects.exists()
    made = api.post(
        reverse("api:batch-list"), {"site": "MAN2", "product": "CART-01", "coi_reference": COI}
    )
    assert made.status_code == 201, made.content
    assert made.json()["number"].startswith("MAN2-")


#
# Bad input: nothing is written
#


def test_an_idempotency_key_reused_with_another_body_is_409_and_writes_nothing(
    api_client_for, plant, batch
):
    api = api_client_for("operator")
    url = reverse("api:batch-results", args=[batch.number])
    first = api.post(url, {"specification": "viability", "value": 90}, HTTP_IDEMPOTENCY_KEY="r-1")
    assert first.status_code == 201, first.content
    replay = api.post(url, {"specification": "viability", "value": 90}, HTTP_IDEMPOTENCY_KEY="r-1")
    assert replay.status_code == 201
    assert replay.json() == first.json()
    events = AuditEvent.objects.count()
    other = api.post(url, {"specification": "endotoxin", "value": 1}, HTTP_IDEMPOTENCY_KEY="r-1")
    assert other.status_code == 409, other.content
    assert other["Content-Type"].startswith(PROBLEM)
    assert list(TestResult.objects.values_list("specification__key", flat=True)) == ["viability"]
    assert AuditEvent.objects.count() == events


def test_a_retried_start_never_makes_a_second_batch(api_client_for, plant):
    api = api_client_for("operator")
    body = {"site": "LDS1", "product": "CART-01", "coi_reference": COI}
    first = api.post(reverse("api:batch-list"), body, HTTP_IDEMPOTENCY_KEY="start-42")
    again = api.post(reverse("api:batch-list"), body, HTTP_IDEMPOTENCY_KEY="start-42")
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["number"] == again.json()["number"]
    changed = api.post(
        reverse("api:batch-list"),
        {**body, "coi_reference": "PT-OTHER"},
        HTTP_IDEMPOTENCY_KEY="start-42",
    )
    assert changed.status_code == 409
    assert Batch.objects.count() == 1


def test_an_unknown_cqa_is_400_and_writes_nothing(api_client_for, batch):
    api = api_client_for("operator")
    events = AuditEvent.objects.count()
    response = api.post(
        reverse("api:batch-results", args=[batch.number]),
        {"specification": "potency", "value": "1.5"},
    )
    assert_problem(response, 400, "unknown_specification")
    assert not TestResult.objects.exists()
    assert AuditEvent.objects.count() == events


def test_certifying_an_expired_batch_is_409_and_writes_nothing(api_client_for, persona, ready):
    Batch.objects.filter(pk=ready.pk).update(  # the clock moved on
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    signatures = ElectronicSignature.objects.count()
    response = api_client_for("qp").post(
        reverse("api:batch-certify", args=[ready.number]),
        signature_fields(persona("qp"), meaning="qp_certified", reason="all clear"),
    )
    body = assert_problem(response, 409, "gates_blocking")
    assert "batch_expired" in [f["code"] for f in body["extra"]["findings"]]
    assert not Certification.objects.exists()
    assert ElectronicSignature.objects.count() == signatures
    ready.refresh_from_db()
    assert ready.status == BatchStatus.COMPLETED


@pytest.mark.parametrize("action", ["certify", "reject"])
def test_deciding_a_decided_batch_is_409_and_writes_nothing(
    api_client_for, persona, certified, action
):
    signatures = ElectronicSignature.objects.count()
    meaning = "qp_certified" if action == "certify" else "rejected"
    response = api_client_for("qp").post(
        reverse(f"api:batch-{action}", args=[certified.number]),
        signature_fields(persona("qp"), meaning=meaning, reason="again"),
    )
    assert_problem(response, 409, "batch_already_decided")
    assert Certification.objects.count() == 1
    assert ElectronicSignature.objects.count() == signatures
    certified.refresh_from_db()
    assert certified.status == BatchStatus.CERTIFIED


def test_a_blocked_batch_shows_every_finding_and_refuses_certification(
    api_client_for, persona, plant, batch
):
    do_steps(plant, batch, upto=3)
    api = api_client_for("qp")
    findings = api.get(reverse("api:batch-findings", args=[batch.number])).json()
    assert findings["can_certify"] is False
    assert [f["code"] for f in findings["findings"]] == ["result_missing", "result_missing"]
    assert all(
        f["link"].endswith("#result-" + k)
        for f, k in zip(findings["findings"], ["endotoxin", "viability"], strict=True)
    )
    response = api.post(
        reverse("api:batch-certify", args=[batch.number]),
        signature_fields(persona("qp"), meaning="qp_certified", reason="all clear"),
    )
    assert_problem(response, 409, "gates_blocking")
    assert not Certification.objects.exists()


def test_a_concession_is_shown_distinctly(api_client_for, persona, plant, batch):
    do_steps(plant, batch)
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="viability", value=60
    )
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="endotoxin", value=1
    )
    api = api_client_for("qp")
    body = {
        **signature_fields(persona("qp"), meaning="qp_certified", reason="clinical need"),
        "concession": True,
        "justification": "No alternative therapy; risk accepted.",
        "clinician_request": "Dr Jones, request CR-17 of today.",
    }
    response = api.post(reverse("api:batch-certify", args=[batch.number]), body)
    assert response.status_code == 200, response.content
    answer = response.json()
    assert (answer["status"], answer["badge"]) == ("certified_under_concession", "concession")
    assert answer["certification"]["decision"] == "certified_under_concession"


@pytest.mark.parametrize(
    ("url_name", "body", "field"),
    [
        (
            "api:batch-list",
            {"site": "LDS1", "product": "CART-01", "coi_reference": COI, "status": "certified"},
            "status",
        ),
        (
            "api:batch-list",
            {"site": "LDS1", "product": "CART-01", "coi_reference": 42},
            "coi_reference",
        ),
        (
            "api:batch-list",
            {"site": "LDS1", "product": "CART-01", "coi_reference": "Jane Doe"},
            "coi_reference",
        ),
        ("api:batch-results", {"specification": "viability", "value": True}, "value"),
        ("api:batch-results", {"specification": "viability", "value": [1]}, "value"),
        ("api:batch-results", {"specification": "viability", "value": 1, "passed": True}, "passed"),
        ("api:batch-results", {"specification": 7, "value": 1}, "specification"),
        ("api:batch-steps", {"position": "1", "values": {}}, "position"),
        ("api:batch-steps", {"position": 1, "values": [37]}, "values"),
        ("api:batch-steps", {"position": 1, "values": {"bath-temp": None}}, "values"),
    ],
)
def test_unknown_fields_and_wrong_types_are_400_and_write_nothing(
    api_client_for, persona, batch, url_name, body, field
):
    if url_name == "api:batch-steps":
        body = {**signature_fields(persona("operator"), meaning="performed", reason="r"), **body}
    args = [] if url_name == "api:batch-list" else [batch.number]
    response = api_client_for("operator").post(reverse(url_name, args=args), body)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert Batch.objects.count() == 1
    assert not StepRecord.objects.exists()
    assert not TestResult.objects.exists()


def test_a_step_with_the_wrong_meaning_is_400(api_client_for, persona, batch):
    body = step_body(persona, "operator")
    body["meaning"] = "qp_certified"
    response = api_client_for("operator").post(
        reverse("api:batch-steps", args=[batch.number]), body
    )
    assert response.status_code == 400
    assert "meaning" in response.json()["errors"]


def test_a_step_out_of_order_is_409(api_client_for, persona, batch):
    response = api_client_for("operator").post(
        reverse("api:batch-steps", args=[batch.number]), step_body(persona, "operator", 2)
    )
    assert_problem(response, 409, "step_out_of_order")


def test_a_wrong_password_is_422_and_records_no_step(api_client_for, persona, batch):
    body = step_body(persona, "operator")
    body["password"] = "not-the-password"
    response = api_client_for("operator").post(
        reverse("api:batch-steps", args=[batch.number]), body
    )
    assert response.status_code == 422, response.content
    assert not StepRecord.objects.exists()


def test_a_stale_if_match_is_412(api_client_for, persona, plant, batch):
    api = api_client_for("operator")
    url = reverse("api:batch-detail", args=[batch.number])
    etag = api.get(url)["ETag"]
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="viability", value=90
    )
    do_steps(plant, batch, upto=1)
    response = api.post(
        reverse("api:batch-steps", args=[batch.number]),
        step_body(persona, "operator", 2),
        HTTP_IF_MATCH=etag,
    )
    assert_problem(response, 412, "precondition_failed")
    assert StepRecord.objects.count() == 1


def test_verifying_a_step_not_recorded_is_404(api_client_for, persona, batch):
    response = api_client_for("operator").post(
        reverse("api:batch-step-verify", args=[batch.number, 2]),
        signature_fields(persona("operator"), meaning="verified", reason="r"),
    )
    assert_problem(response, 404, "not_found")


def test_a_supply_with_the_wrong_chain_of_identity_is_refused_and_recorded(
    api_client_for, certified
):
    response = api_client_for("operator").post(
        reverse("api:batch-supplies", args=[certified.number]),
        {"coi_reference": "PT-WRONG-1", "supplied_to": "Ward 7", "quantity": 1, "unit": "bag"},
    )
    assert_problem(response, 409, "coi_mismatch")
    assert not SupplyRecord.objects.exists()
    assert AuditEvent.objects.filter(event_type="batches.coi_mismatch").exists()


#
# Lists: filters and fixed query counts
#


def test_the_qp_queue_filter(api_client_for, plant, ready):
    other = start(plant, plant.spoke)
    api = api_client_for("qp")
    awaiting = api.get(reverse("api:batch-list"), {"awaiting_certification": "true"}).json()
    assert [b["number"] for b in awaiting["results"]] == [ready.number]
    at_man2 = api.get(reverse("api:batch-list"), {"site": "MAN2"}).json()
    assert [b["number"] for b in at_man2["results"]] == [other.number]
    in_progress = api.get(reverse("api:batch-list"), {"status": "in_progress"}).json()
    assert [b["number"] for b in in_progress["results"]] == [other.number]
    bad = api.get(reverse("api:batch-list"), {"awaiting_certification": "maybe"})
    assert bad.status_code == 400


def test_the_batch_list_costs_the_same_queries_for_one_or_many(api_client_for, plant):
    api = api_client_for("qp")
    start(plant)
    api.get(reverse("api:batch-list"))  # warm the token's first-use writes

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert api.get(reverse("api:batch-list")).status_code == 200
        return len(queries)

    one = count()
    for _ in range(5):
        start(plant, plant.spoke)
    assert count() == one


def test_passing_results_helper_is_visible_in_the_batch(api_client_for, plant, batch):
    passing_results(plant, batch)
    body = api_client_for("operator").get(reverse("api:batch-detail", args=[batch.number])).json()
    results = {r["specification"]["key"]: r["result"] for r in body["results"]}
    assert results["viability"]["passed"] is True
    assert results["endotoxin"]["value"] == "1"
