"""The sites API (issue 3; design §6): the register, the lifecycle as POST actions, memberships,
equipment, site audits, the MHRA log and the Control Site record.

Who may do what is a permission matrix per endpoint and per transition; the rest checks what
integrators rely on: 404 for sites you may not see, 409 for refused steps, signatures and audit
events for signed steps, strict input, token site limits, idempotent create and a fixed number
of queries per list.
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
from rest_framework.test import APIClient

from controlsite.accounts.models import User
from controlsite.api.models import TokenScope
from controlsite.api.tokens import api_token_create
from controlsite.audit.models import AuditEvent
from controlsite.signatures.models import ElectronicSignature
from controlsite.signatures.services import SignatureCredentials
from sites import services
from sites.choices import (
    ACTION_TRANSITIONS,
    ALLOWED_TRANSITIONS,
    SIGNED_ACTIONS,
    ChecklistItemStatus,
    EquipmentStatus,
    FindingGrade,
    NotificationKind,
    SiteAction,
    SiteAuditStatus,
    SiteKind,
    SiteRole,
    SiteStatus,
)
from sites.models import (
    AuditFinding,
    Equipment,
    RegulatoryNotification,
    Site,
    SiteAudit,
    SiteMembership,
    SiteMove,
)
from tests.matrix import ANON, Matrix, only
from tests.personas import PASSWORD, make_persona, signature_fields

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"
QA_CREDENTIALS = SignatureCredentials(username="qa", password=PASSWORD)


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code, body
    return body


#
# Building sites through the services
#


def register(qa: User, code: str = "A1", **kwargs: Any) -> Site:
    kwargs.setdefault("kind", SiteKind.POC_HOSPITAL)
    kwargs.setdefault("name", f"Site {code}")
    return services.site_register(actor=qa, code=code, reason="set up for the test", **kwargs)


def complete_checklist(qa: User, site: Site) -> None:
    for item in site.checklist.all():
        item = services.checklist_item_attach_evidence(
            actor=qa, item=item, reason="evidence", reference="REF"
        )
        services.checklist_item_sign_off(
            actor=qa, item=item, credentials=QA_CREDENTIALS, reason="verified"
        )


def step(qa: User, site: Site, action: SiteAction) -> Site:
    return services.site_transition(
        actor=qa,
        site=site,
        action=action,
        reason="moved for the test",
        credentials=QA_CREDENTIALS if action in SIGNED_ACTIONS else None,
    )


_PATH: dict[SiteStatus, list[SiteAction | str]] = {
    SiteStatus.PROPOSED: [],
    SiteStatus.ONBOARDING: [SiteAction.START_ONBOARDING],
    SiteStatus.QUALIFIED: [SiteAction.START_ONBOARDING, "checklist", SiteAction.QUALIFY],
    SiteStatus.ACTIVE: [
        SiteAction.START_ONBOARDING,
        "checklist",
        SiteAction.QUALIFY,
        SiteAction.ACTIVATE,
    ],
    SiteStatus.PAUSED: [
        SiteAction.START_ONBOARDING,
        "checklist",
        SiteAction.QUALIFY,
        SiteAction.ACTIVATE,
        SiteAction.PAUSE,
    ],
    SiteStatus.SUSPENDED: [
        SiteAction.START_ONBOARDING,
        "checklist",
        SiteAction.QUALIFY,
        SiteAction.ACTIVATE,
        SiteAction.SUSPEND,
    ],
    SiteStatus.CEASED: [SiteAction.CEASE],
}


def bring_to(qa: User, site: Site, status: SiteStatus) -> Site:
    for move in _PATH[status]:
        if move == "checklist":
            complete_checklist(qa, site)
        else:
            site = step(qa, site, SiteAction(move))
    assert site.status == status
    return site


def token_client(
    user: User, *, created_by: User | None = None, site_codes: list[str] | None = None
) -> APIClient:
    _, secret = api_token_create(
        user=user,
        name="test",
        scope=TokenScope.READ_WRITE,
        created_by=created_by or user,
        site_codes=site_codes,
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def body_for(persona: Any, who: str, site_action: SiteAction, **extra: Any) -> dict[str, Any]:
    """What `who` sends for a lifecycle step: a reason, or their own signature."""
    if site_action in SIGNED_ACTIONS:
        signer = persona("qa") if who == ANON else persona(who)
        return signature_fields(signer, meaning="approved", reason="for the test", **extra)
    return {"reason": "for the test", **extra}


@pytest.fixture
def qa(persona: Callable[[str], User]) -> User:
    return persona("qa")


@pytest.fixture
def qa_api(qa: User, api_client_for: Callable[[str], APIClient]) -> APIClient:
    return api_client_for("qa")


@pytest.fixture
def site_a(persona: Any, qa: User) -> Site:
    """Site A1, led by the site lead and worked at by the operator."""
    site = register(qa, "A1")
    services.membership_add(
        actor=qa, site=site, user=persona("site_lead"), role=SiteRole.SITE_LEAD, reason="lead"
    )
    services.membership_add(
        actor=qa, site=site, user=persona("operator"), role=SiteRole.SITE_OPERATOR, reason="op"
    )
    return site


#
# Permission matrices
#

# USE_API holders read lists (scoped to what they may see); sysadmin and outsider have no API.
EVERY_API_USER = only({"sysadmin": 403, "outsider": 403}, others=200, anonymous=401)
# One site's records: everyone who may see the site; the trainer and the integrator are members
# of no site, so for them it does not exist.
SITE_READERS = only(
    {"trainer": 404, "integrator": 404, "sysadmin": 403, "outsider": 403},
    others=200,
    anonymous=401,
)
# A write only Control Site QA makes on a site the caller may see (or not: 404).
QA_WRITE_ON_SITE = only({"qa": 200, "trainer": 404, "integrator": 404}, others=403, anonymous=401)
# Creating a record at a site named in the body: a site you cannot see is a 400 (unknown_site).
QA_CREATE_AT_SITE = only({"qa": 201, "trainer": 400, "integrator": 400}, others=403, anonymous=401)
CONTROL_SITE_READERS = {"qa": 200, "qp": 200, "inspector": 200}

SITE_LIST = Matrix("api:site-list", EVERY_API_USER)
SITE_DETAIL = Matrix("api:site-detail", SITE_READERS)
SITE_CREATE = Matrix("api:site-create", only({"qa": 201}, others=403, anonymous=401))
SITE_PARTIAL_UPDATE = Matrix("api:site-partial-update", QA_WRITE_ON_SITE)
SITE_MOVE = Matrix("api:site-move", QA_WRITE_ON_SITE)
SITE_TRANSITIONS = {
    site_action: Matrix(f"api:site-{site_action.value}", QA_WRITE_ON_SITE)
    for site_action in SiteAction
}
# Where each step is taken from in its matrix test.
STEP_FROM: dict[SiteAction, SiteStatus] = {
    SiteAction.START_ONBOARDING: SiteStatus.PROPOSED,
    SiteAction.QUALIFY: SiteStatus.ONBOARDING,
    SiteAction.ACTIVATE: SiteStatus.QUALIFIED,
    SiteAction.PAUSE: SiteStatus.ACTIVE,
    SiteAction.RESUME: SiteStatus.PAUSED,
    SiteAction.SUSPEND: SiteStatus.ACTIVE,
    SiteAction.REINSTATE: SiteStatus.SUSPENDED,
    SiteAction.CEASE: SiteStatus.ACTIVE,
}

MEMBERSHIP_LIST = Matrix("api:site-membership-list", EVERY_API_USER)
MEMBERSHIP_DETAIL = Matrix("api:site-membership-detail", SITE_READERS)
MEMBERSHIP_CREATE = Matrix("api:site-membership-create", QA_CREATE_AT_SITE)
MEMBERSHIP_END = Matrix("api:site-membership-end", QA_WRITE_ON_SITE)

EQUIPMENT_LIST = Matrix("api:equipment-list", EVERY_API_USER)
EQUIPMENT_DETAIL = Matrix("api:equipment-detail", SITE_READERS)
# QA or the site's own lead records equipment.
EQUIPMENT_CREATE = Matrix("api:equipment-create", {**QA_CREATE_AT_SITE, "site_lead": 201})
EQUIPMENT_PARTIAL_UPDATE = Matrix(
    "api:equipment-partial-update", {**QA_WRITE_ON_SITE, "site_lead": 200}
)

SITE_AUDIT_LIST = Matrix("api:site-audit-list", EVERY_API_USER)
SITE_AUDIT_DETAIL = Matrix("api:site-audit-detail", SITE_READERS)
SITE_AUDIT_CREATE = Matrix("api:site-audit-create", QA_CREATE_AT_SITE)
SITE_AUDIT_COMPLETE = Matrix("api:site-audit-complete", QA_WRITE_ON_SITE)
SITE_AUDIT_FINDINGS = Matrix("api:site-audit-findings", {**QA_WRITE_ON_SITE, "qa": 201})

# The MHRA log is the Control Site's: QA, QPs and inspectors read it; only QA records it sent.
NOTIFICATION_LIST = Matrix(
    "api:regulatory-notification-list", only(CONTROL_SITE_READERS, others=403, anonymous=401)
)
NOTIFICATION_DETAIL = Matrix(
    "api:regulatory-notification-detail", only(CONTROL_SITE_READERS, others=403, anonymous=401)
)
NOTIFICATION_MARK_SENT = Matrix(
    "api:regulatory-notification-mark-sent", only({"qa": 200}, others=403, anonymous=401)
)

CONTROL_SITE = Matrix("api:control-site-list", EVERY_API_USER)


@pytest.mark.parametrize(("who", "expected"), SITE_LIST.cases())
def test_site_list(as_persona, site_a, who, expected):
    response = as_persona(who).get(reverse("api:site-list"))
    assert response.status_code == expected
    if expected == 200:
        codes = [s["code"] for s in response.json()["results"]]
        assert codes == ([] if who in {"trainer", "integrator"} else ["A1"])


@pytest.mark.parametrize(("who", "expected"), SITE_DETAIL.cases())
def test_site_detail(as_persona, site_a, who, expected):
    response = as_persona(who).get(reverse("api:site-detail", args=["A1"]))
    assert response.status_code == expected
    if expected != 200:
        assert response["Content-Type"].startswith(PROBLEM)


@pytest.mark.parametrize(("who", "expected"), SITE_CREATE.cases())
def test_site_create(as_persona, qa, who, expected):
    response = as_persona(who).post(
        reverse("api:site-list"),
        {"code": "N1", "name": "New", "kind": "poc_hospital", "reason": "new site"},
        format="json",
    )
    assert response.status_code == expected, response.content
    assert Site.objects.filter(code="N1").exists() == (expected == 201)


@pytest.mark.parametrize(("who", "expected"), SITE_PARTIAL_UPDATE.cases())
def test_site_partial_update(as_persona, site_a, who, expected):
    response = as_persona(who).patch(
        reverse("api:site-detail", args=["A1"]),
        {"name": "Renamed", "reason": "new name"},
        format="json",
    )
    assert response.status_code == expected, response.content
    site_a.refresh_from_db()
    assert (site_a.name == "Renamed") == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), SITE_MOVE.cases())
def test_site_move(as_persona, persona, qa, who, expected):
    site = register(qa, "MU1", kind=SiteKind.MODULAR_UNIT, current_location="Bay 1")
    for name, role in (("site_lead", SiteRole.SITE_LEAD), ("operator", SiteRole.SITE_OPERATOR)):
        services.membership_add(actor=qa, site=site, user=persona(name), role=role, reason="m")
    response = as_persona(who).post(
        reverse("api:site-move", args=["MU1"]),
        {"location": "Bay 2", "reason": "redeployed"},
        format="json",
    )
    assert response.status_code == expected, response.content
    site.refresh_from_db()
    assert (site.current_location == "Bay 2") == (expected == 200)


@pytest.mark.parametrize(
    ("site_action", "who", "expected"),
    [
        pytest.param(site_action, *case.values, id=f"{site_action.value}-{case.id}")
        for site_action, matrix in SITE_TRANSITIONS.items()
        for case in matrix.cases()
    ],
)
def test_site_transition(as_persona, persona, site_a, qa, site_action, who, expected):
    source = STEP_FROM[site_action]
    site = bring_to(qa, site_a, source)
    if site_action == SiteAction.QUALIFY:
        complete_checklist(qa, site)
    response = as_persona(who).post(
        reverse(f"api:site-{site_action.value}", args=["A1"]),
        body_for(persona, who, site_action),
        format="json",
    )
    assert response.status_code == expected, response.content
    site.refresh_from_db()
    target = ACTION_TRANSITIONS[site_action][1]
    assert site.status == (target if expected == 200 else source)


@pytest.mark.parametrize(("who", "expected"), MEMBERSHIP_LIST.cases())
def test_site_membership_list(as_persona, site_a, who, expected):
    response = as_persona(who).get(reverse("api:site-membership-list"))
    assert response.status_code == expected
    if expected == 200:
        rows = response.json()["results"]
        assert len(rows) == (0 if who in {"trainer", "integrator"} else 2)


@pytest.mark.parametrize(("who", "expected"), MEMBERSHIP_DETAIL.cases())
def test_site_membership_detail(as_persona, site_a, who, expected):
    membership = SiteMembership.objects.get(site=site_a, role=SiteRole.SITE_OPERATOR)
    response = as_persona(who).get(reverse("api:site-membership-detail", args=[membership.pk]))
    assert response.status_code == expected


@pytest.mark.parametrize(("who", "expected"), MEMBERSHIP_CREATE.cases())
def test_site_membership_create(as_persona, persona, site_a, who, expected):
    newcomer = make_persona("operator", username="newcomer")
    response = as_persona(who).post(
        reverse("api:site-membership-list"),
        {"site": "A1", "user": "newcomer", "role": "site_operator", "reason": "joins"},
        format="json",
    )
    assert response.status_code == expected, response.content
    joined = SiteMembership.objects.filter(user=newcomer, ended_at__isnull=True).exists()
    assert joined == (expected == 201)


@pytest.mark.parametrize(("who", "expected"), MEMBERSHIP_END.cases())
def test_site_membership_end(as_persona, site_a, who, expected):
    membership = SiteMembership.objects.get(site=site_a, role=SiteRole.SITE_OPERATOR)
    response = as_persona(who).post(
        reverse("api:site-membership-end", args=[membership.pk]), {"reason": "left"}, format="json"
    )
    assert response.status_code == expected, response.content
    membership.refresh_from_db()
    assert (membership.ended_at is not None) == (expected == 200)


@pytest.fixture
def equipment(qa: User, site_a: Site) -> Equipment:
    return services.equipment_add(
        actor=qa, site=site_a, kind="processor", serial_number="SN1", reason="installed"
    )


@pytest.mark.parametrize(("who", "expected"), EQUIPMENT_LIST.cases())
def test_equipment_list(as_persona, equipment, who, expected):
    assert as_persona(who).get(reverse("api:equipment-list")).status_code == expected


@pytest.mark.parametrize(("who", "expected"), EQUIPMENT_DETAIL.cases())
def test_equipment_detail(as_persona, equipment, who, expected):
    response = as_persona(who).get(reverse("api:equipment-detail", args=[equipment.pk]))
    assert response.status_code == expected


@pytest.mark.parametrize(("who", "expected"), EQUIPMENT_CREATE.cases())
def test_equipment_create(as_persona, site_a, who, expected):
    response = as_persona(who).post(
        reverse("api:equipment-list"),
        {"site": "A1", "kind": "fridge", "serial_number": "F-9", "reason": "delivered"},
        format="json",
    )
    assert response.status_code == expected, response.content
    assert Equipment.objects.filter(serial_number="F-9").exists() == (expected == 201)


@pytest.mark.parametrize(("who", "expected"), EQUIPMENT_PARTIAL_UPDATE.cases())
def test_equipment_partial_update(as_persona, equipment, who, expected):
    response = as_persona(who).patch(
        reverse("api:equipment-detail", args=[equipment.pk]),
        {"qualification_status": "iq_done", "reason": "IQ report approved"},
        format="json",
    )
    assert response.status_code == expected, response.content
    equipment.refresh_from_db()
    changed = equipment.qualification_status == EquipmentStatus.IQ_DONE
    assert changed == (expected == 200)


@pytest.fixture
def site_audit(qa: User, site_a: Site) -> SiteAudit:
    return services.site_audit_plan(
        actor=qa, site=site_a, title="Annual", planned_for=dt.date(2026, 1, 5), reason="plan"
    )


@pytest.mark.parametrize(("who", "expected"), SITE_AUDIT_LIST.cases())
def test_site_audit_list(as_persona, site_audit, who, expected):
    assert as_persona(who).get(reverse("api:site-audit-list")).status_code == expected


@pytest.mark.parametrize(("who", "expected"), SITE_AUDIT_DETAIL.cases())
def test_site_audit_detail(as_persona, site_audit, who, expected):
    response = as_persona(who).get(reverse("api:site-audit-detail", args=[site_audit.pk]))
    assert response.status_code == expected


@pytest.mark.parametrize(("who", "expected"), SITE_AUDIT_CREATE.cases())
def test_site_audit_create(as_persona, site_a, who, expected):
    response = as_persona(who).post(
        reverse("api:site-audit-list"),
        {"site": "A1", "title": "Self-inspection", "planned_for": "2026-10-01", "reason": "p"},
        format="json",
    )
    assert response.status_code == expected, response.content
    assert SiteAudit.objects.filter(title="Self-inspection").exists() == (expected == 201)


@pytest.mark.parametrize(("who", "expected"), SITE_AUDIT_COMPLETE.cases())
def test_site_audit_complete(as_persona, site_audit, who, expected):
    response = as_persona(who).post(
        reverse("api:site-audit-complete", args=[site_audit.pk]),
        {"done_on": timezone.localdate().isoformat(), "summary": "fine", "reason": "report"},
        format="json",
    )
    assert response.status_code == expected, response.content
    site_audit.refresh_from_db()
    assert (site_audit.status == SiteAuditStatus.DONE) == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), SITE_AUDIT_FINDINGS.cases())
def test_site_audit_findings(as_persona, site_audit, who, expected):
    response = as_persona(who).post(
        reverse("api:site-audit-findings", args=[site_audit.pk]),
        {"grade": "minor", "description": "Log not countersigned.", "reason": "audit"},
        format="json",
    )
    assert response.status_code == expected, response.content
    assert AuditFinding.objects.filter(audit=site_audit).exists() == (expected == 201)


@pytest.fixture
def notification(qa: User) -> RegulatoryNotification:
    """Ceasing a site opens an MHRA notification."""
    step(qa, register(qa, "C1"), SiteAction.CEASE)
    return RegulatoryNotification.objects.get(kind=NotificationKind.SITE_CEASED)


@pytest.mark.parametrize(("who", "expected"), NOTIFICATION_LIST.cases())
def test_regulatory_notification_list(as_persona, notification, who, expected):
    response = as_persona(who).get(reverse("api:regulatory-notification-list"))
    assert response.status_code == expected
    if expected == 200:
        assert [n["id"] for n in response.json()["results"]] == [notification.pk]


@pytest.mark.parametrize(("who", "expected"), NOTIFICATION_DETAIL.cases())
def test_regulatory_notification_detail(as_persona, notification, who, expected):
    url = reverse("api:regulatory-notification-detail", args=[notification.pk])
    assert as_persona(who).get(url).status_code == expected


@pytest.mark.parametrize(("who", "expected"), NOTIFICATION_MARK_SENT.cases())
def test_regulatory_notification_mark_sent(as_persona, notification, who, expected):
    response = as_persona(who).post(
        reverse("api:regulatory-notification-mark-sent", args=[notification.pk]),
        {"sent_on": timezone.localdate().isoformat(), "reference": "MHRA-1", "reason": "sent"},
        format="json",
    )
    assert response.status_code == expected, response.content
    notification.refresh_from_db()
    assert (notification.reference == "MHRA-1") == (expected == 200)


@pytest.fixture
def control_site(qa: User, persona: Any) -> None:
    services.control_site_save(
        actor=qa,
        name="Control Site Ltd",
        address="1 Licence Street",
        licence_number="MIA 12345",
        scope_poc=True,
        scope_mm=True,
        regulator_contacts="",
        reason="set up",
    )
    services.named_qp_add(actor=qa, user=persona("qp"), reason="named")


@pytest.mark.parametrize(("who", "expected"), CONTROL_SITE.cases())
def test_control_site(as_persona, control_site, who, expected):
    assert as_persona(who).get(reverse("api:control-site-list")).status_code == expected


#
# The representation
#


def test_a_site_reads_with_its_checklist_people_and_links(qa_api, qa, persona):
    lead = persona("site_lead")
    site = register(qa, "LON1", nominated_person=lead, host_organisation="St Elsewhere")
    item = site.checklist.order_by("position").first()
    assert item is not None
    item = services.checklist_item_attach_evidence(
        actor=qa, item=item, reason="evidence", reference="PQ-2026-1"
    )
    services.checklist_item_sign_off(
        actor=qa, item=item, credentials=QA_CREDENTIALS, reason="verified"
    )

    response = qa_api.get(reverse("api:site-detail", args=["LON1"]))

    assert response.status_code == 200
    assert response["ETag"]
    body = response.json()
    assert body["status"] == "proposed"
    assert body["status_display"] == "Proposed"
    assert body["kind_display"] == "Point-of-care hospital site"
    assert body["nominated_person"] == {"username": "site_lead", "printed_name": "Sam Lee"}
    total = site.checklist.count()
    assert body["checklist"] == {"done": 1, "total": total}
    first = body["checklist_items"][0]
    assert first["key"] == item.key
    assert first["status"] == ChecklistItemStatus.DONE
    assert first["evidence_reference"] == "PQ-2026-1"
    assert first["signed_off_by"]["username"] == "qa"
    assert first["signed_off_at"]
    assert body["links"]["self"] == "/api/v1/sites/LON1/"
    assert body["links"]["html"] == "/sites/LON1/"
    assert set(body["links"]["actions"]) == {"start-onboarding", "cease"}


def test_the_list_does_not_nest_the_checklist(qa_api, qa):
    register(qa, "A1")
    (row,) = qa_api.get(reverse("api:site-list")).json()["results"]
    assert "checklist_items" not in row
    assert row["checklist"]["done"] == 0


def test_the_site_list_runs_a_fixed_number_of_queries(qa_api, qa, persona):
    lead = persona("site_lead")

    def count_queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = qa_api.get(reverse("api:site-list"), {"page_size": 100})
        assert response.status_code == 200
        return len(captured)

    for i in range(3):
        register(qa, f"S{i:02d}", nominated_person=lead)
    qa_api.get(reverse("api:site-list"))  # the token's first use records it once
    three = count_queries()
    for i in range(3, 30):
        register(qa, f"S{i:02d}", nominated_person=lead)
    thirty = count_queries()
    assert len(qa_api.get(reverse("api:site-list"), {"page_size": 100}).json()["results"]) == 30
    assert thirty == three


def test_sites_filter_by_status_kind_host_and_text(qa_api, qa):
    register(qa, "A1", host_organisation="North Trust", name="Alpha ward")
    register(qa, "B1", host_organisation="South Trust", kind=SiteKind.TESTING_LAB)
    step(qa, Site.objects.get(code="B1"), SiteAction.START_ONBOARDING)

    def codes(**params: str) -> list[str]:
        response = qa_api.get(reverse("api:site-list"), params)
        assert response.status_code == 200, response.content
        return [s["code"] for s in response.json()["results"]]

    assert codes() == ["A1", "B1"]
    assert codes(status="onboarding") == ["B1"]
    assert codes(kind="testing_lab") == ["B1"]
    assert codes(host="north") == ["A1"]
    assert codes(q="alpha") == ["A1"]
    assert codes(q="b1") == ["B1"]
    assert_problem(
        qa_api.get(reverse("api:site-list"), {"status": "closed"}), 400, "invalid_choice"
    )
    assert_problem(qa_api.get(reverse("api:site-list"), {"q": " "}), 400, "validation_error")


#
# The lifecycle through the API
#

ALLOWED_STEPS = [
    pytest.param(source, target, site_action, id=f"{source.value}-{site_action.value}")
    for source, targets in ALLOWED_TRANSITIONS.items()
    for target in sorted(targets)
    for site_action, (sources, to) in ACTION_TRANSITIONS.items()
    if source in sources and to == target
]


def test_every_allowed_transition_has_an_action():
    pairs = {(s, t) for s, targets in ALLOWED_TRANSITIONS.items() for t in targets}
    assert {(p.values[0], p.values[1]) for p in ALLOWED_STEPS} == pairs


@pytest.mark.parametrize(("source", "target", "site_action"), ALLOWED_STEPS)
def test_every_allowed_transition_through_the_api(qa_api, qa, persona, source, target, site_action):
    site = bring_to(qa, register(qa, "A1"), source)
    if site_action == SiteAction.QUALIFY:
        complete_checklist(qa, site)
    response = qa_api.post(
        reverse(f"api:site-{site_action.value}", args=["A1"]),
        body_for(persona, "qa", site_action),
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == target
    site.refresh_from_db()
    assert site.status == target
    event = AuditEvent.objects.filter(event_type="sites.status_changed").order_by("-seq").first()
    assert event is not None
    assert event.extra_data["old"] == source and event.extra_data["new"] == target


REFUSED_STEPS = [
    (SiteStatus.PROPOSED, SiteAction.ACTIVATE),
    (SiteStatus.PROPOSED, SiteAction.QUALIFY),
    (SiteStatus.ONBOARDING, SiteAction.START_ONBOARDING),
    (SiteStatus.ACTIVE, SiteAction.RESUME),
    (SiteStatus.ACTIVE, SiteAction.REINSTATE),
    (SiteStatus.SUSPENDED, SiteAction.PAUSE),
    (SiteStatus.CEASED, SiteAction.CEASE),
    (SiteStatus.CEASED, SiteAction.ACTIVATE),
]


@pytest.mark.parametrize(
    ("source", "site_action"),
    [pytest.param(s, a, id=f"{s.value}-{a.value}") for s, a in REFUSED_STEPS],
)
def test_a_step_from_the_wrong_status_is_a_409(qa_api, qa, persona, source, site_action):
    site = bring_to(qa, register(qa, "A1"), source)
    signatures = ElectronicSignature.objects.count()
    response = qa_api.post(
        reverse(f"api:site-{site_action.value}", args=["A1"]),
        body_for(persona, "qa", site_action),
        format="json",
    )
    assert_problem(response, 409, "transition_not_allowed")
    site.refresh_from_db()
    assert site.status == source
    assert ElectronicSignature.objects.count() == signatures


def test_qualification_with_open_items_is_a_409_naming_them(qa_api, qa):
    site = bring_to(qa, register(qa, "A1"), SiteStatus.ONBOARDING)
    first = site.checklist.order_by("position", "key").first()
    assert first is not None
    first = services.checklist_item_attach_evidence(
        actor=qa, item=first, reason="evidence", reference="REF"
    )
    services.checklist_item_sign_off(
        actor=qa, item=first, credentials=QA_CREDENTIALS, reason="verified"
    )
    response = qa_api.post(
        reverse("api:site-qualify", args=["A1"]), {"reason": "ready?"}, format="json"
    )
    body = assert_problem(response, 409, "checklist_open")
    still_open = list(
        site.checklist.filter(status=ChecklistItemStatus.OPEN)
        .order_by("position", "key")
        .values_list("key", flat=True)
    )
    assert body["extra"]["open_items"] == still_open
    assert first.key not in still_open
    site.refresh_from_db()
    assert site.status == SiteStatus.ONBOARDING


def test_a_signed_step_writes_the_signature_and_the_audit_event(qa_api, qa):
    site = bring_to(qa, register(qa, "A1"), SiteStatus.ACTIVE)
    response = qa_api.post(
        reverse("api:site-suspend", args=["A1"]),
        signature_fields(qa, meaning="approved", reason="sterility breach"),
        format="json",
    )
    assert response.status_code == 200, response.content
    event = AuditEvent.objects.filter(event_type="sites.status_changed").latest("seq")
    assert event.signature_id is not None
    signature = ElectronicSignature.objects.get(pk=event.signature_id)
    assert signature.meaning == "approved"
    assert signature.signer_username == "qa"
    assert signature.reason == "sterility breach"
    assert event.extra_data["new"] == "suspended"
    assert event.reason == "sterility breach"
    site.refresh_from_db()
    assert site.status == SiteStatus.SUSPENDED
    assert RegulatoryNotification.objects.filter(kind=NotificationKind.SITE_SUSPENDED).exists()
    assert PASSWORD not in response.content.decode()


def test_a_wrong_password_is_a_422_and_nothing_changes(qa_api, qa):
    site = bring_to(qa, register(qa, "A1"), SiteStatus.QUALIFIED)
    response = qa_api.post(
        reverse("api:site-activate", args=["A1"]),
        signature_fields(qa, meaning="approved", password="wrong"),
        format="json",
    )
    assert_problem(response, 422, "wrong_password")
    site.refresh_from_db()
    assert site.status == SiteStatus.QUALIFIED
    assert not ElectronicSignature.objects.filter(meaning="approved").exists()


def test_a_signed_step_takes_only_the_meaning_approved(qa_api, qa):
    site = bring_to(qa, register(qa, "A1"), SiteStatus.QUALIFIED)
    response = qa_api.post(
        reverse("api:site-activate", args=["A1"]),
        signature_fields(qa, meaning="reviewed"),
        format="json",
    )
    body = assert_problem(response, 400, "invalid_choice")
    assert "meaning" in body["errors"]
    site.refresh_from_db()
    assert site.status == SiteStatus.QUALIFIED


def test_a_signed_step_without_a_password_is_a_400(qa_api, qa):
    bring_to(qa, register(qa, "A1"), SiteStatus.QUALIFIED)
    fields = signature_fields(qa, meaning="approved")
    del fields["password"]
    response = qa_api.post(reverse("api:site-activate", args=["A1"]), fields, format="json")
    body = assert_problem(response, 400, "required")
    assert "password" in body["errors"]


def test_a_modular_unit_moves_and_keeps_a_dated_history(qa_api, qa):
    register(qa, "MU1", kind=SiteKind.MODULAR_UNIT, current_location="Bay 1")
    response = qa_api.post(
        reverse("api:site-move", args=["MU1"]),
        {"location": "Bay 2", "reason": "redeployed"},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["current_location"] == "Bay 2"
    assert [m["location"] for m in body["moves"]] == ["Bay 2", "Bay 1"]
    register(qa, "H1")
    response = qa_api.post(
        reverse("api:site-move", args=["H1"]), {"location": "X", "reason": "r"}, format="json"
    )
    assert_problem(response, 409, "not_modular")
    assert SiteMove.objects.filter(site__code="H1").count() == 0


#
# Isolation
#


@pytest.fixture
def operator_b(qa: User) -> User:
    """An operator of site B only."""
    site_b = register(qa, "B1")
    user = make_persona("operator", username="operator_b")
    services.membership_add(
        actor=qa, site=site_b, user=user, role=SiteRole.SITE_OPERATOR, reason="works at B"
    )
    return user


def test_an_operator_of_another_site_gets_404s_for_site_a(qa, site_a, operator_b, persona):
    client = token_client(operator_b, created_by=persona("sysadmin"))
    bring_to(qa, site_a, SiteStatus.ACTIVE)
    assert_problem(client.get(reverse("api:site-detail", args=["A1"])), 404, "not_found")
    response = client.patch(
        reverse("api:site-detail", args=["A1"]), {"name": "x", "reason": "r"}, format="json"
    )
    assert_problem(response, 404, "not_found")
    for site_action in SiteAction:
        response = client.post(
            reverse(f"api:site-{site_action.value}", args=["A1"]),
            body_for(persona, "qa", site_action),
            format="json",
        )
        assert_problem(response, 404, "not_found")
    site_a.refresh_from_db()
    assert site_a.status == SiteStatus.ACTIVE
    assert site_a.name == "Site A1"


def test_lists_never_leak_another_sites_records(qa, site_a, operator_b, persona):
    services.equipment_add(actor=qa, site=site_a, kind="k", serial_number="A", reason="r")
    services.site_audit_plan(
        actor=qa, site=site_a, title="A audit", planned_for=dt.date(2026, 2, 2), reason="r"
    )
    client = token_client(operator_b, created_by=persona("sysadmin"))

    sites = client.get(reverse("api:site-list")).json()["results"]
    assert [s["code"] for s in sites] == ["B1"]
    assert client.get(reverse("api:site-list"), {"q": "A1"}).json()["results"] == []
    memberships = client.get(reverse("api:site-membership-list")).json()["results"]
    assert {m["site"]["code"] for m in memberships} == {"B1"}
    assert client.get(reverse("api:equipment-list")).json()["results"] == []
    assert client.get(reverse("api:site-audit-list")).json()["results"] == []
    response = client.get(reverse("api:site-membership-list"), {"site": "A1"})
    assert response.json()["results"] == []


def test_a_token_limited_to_sites_sees_only_those_even_for_qa(qa, site_a):
    register(qa, "B1")
    client = token_client(qa, site_codes=["B1"])
    sites = client.get(reverse("api:site-list")).json()["results"]
    assert [s["code"] for s in sites] == ["B1"]
    assert_problem(client.get(reverse("api:site-detail", args=["A1"])), 404, "not_found")
    response = client.post(
        reverse("api:site-start-onboarding", args=["A1"]), {"reason": "r"}, format="json"
    )
    assert_problem(response, 404, "not_found")
    memberships = client.get(reverse("api:site-membership-list")).json()["results"]
    assert memberships == []
    site_a.refresh_from_db()
    assert site_a.status == SiteStatus.PROPOSED


#
# Bad input
#


def test_a_duplicate_code_is_a_409_and_writes_nothing(qa_api, qa):
    register(qa, "A1")
    sites, events = Site.objects.count(), AuditEvent.objects.count()
    response = qa_api.post(
        reverse("api:site-list"),
        {"code": "A1", "name": "Again", "kind": "poc_hospital", "reason": "again"},
        format="json",
    )
    assert_problem(response, 409, "site_code_taken")
    assert Site.objects.count() == sites
    assert AuditEvent.objects.count() == events


def test_a_malformed_code_is_a_400(qa_api):
    response = qa_api.post(
        reverse("api:site-list"),
        {"code": "lon-1", "name": "x", "kind": "poc_hospital", "reason": "r"},
        format="json",
    )
    body = assert_problem(response, 400, "validation_error")
    assert "code" in body["errors"]
    assert not Site.objects.exists()


def test_a_code_change_is_refused(qa_api, qa):
    register(qa, "A1")
    for code in ("B2", "A1"):
        response = qa_api.patch(
            reverse("api:site-detail", args=["A1"]),
            {"code": code, "reason": "rename"},
            format="json",
        )
        body = assert_problem(response, 400, "site_code_immutable")
        assert "code" in body["errors"]
    assert Site.objects.get().code == "A1"


@pytest.mark.parametrize("method", ["post", "patch"])
def test_status_in_the_body_is_refused(qa_api, qa, method):
    register(qa, "A1")
    if method == "post":
        url = reverse("api:site-list")
        data = {"code": "N1", "name": "x", "kind": "poc_hospital", "reason": "r"}
    else:
        url = reverse("api:site-detail", args=["A1"])
        data = {"reason": "r"}
    response = getattr(qa_api, method)(url, {**data, "status": "active"}, format="json")
    body = assert_problem(response, 400, "unknown_field")
    assert "status" in body["errors"]
    assert set(Site.objects.values_list("status", flat=True)) == {SiteStatus.PROPOSED}


def test_an_unknown_field_is_refused(qa_api):
    response = qa_api.post(
        reverse("api:site-list"),
        {"code": "N1", "name": "x", "kind": "poc_hospital", "reason": "r", "colour": "red"},
        format="json",
    )
    body = assert_problem(response, 400, "unknown_field")
    assert "colour" in body["errors"]
    assert not Site.objects.exists()


def test_a_missing_reason_is_a_400(qa_api, qa):
    register(qa, "A1")
    response = qa_api.post(reverse("api:site-start-onboarding", args=["A1"]), {}, format="json")
    body = assert_problem(response, 400, "required")
    assert "reason" in body["errors"]
    response = qa_api.patch(
        reverse("api:site-detail", args=["A1"]), {"name": "renamed"}, format="json"
    )
    assert_problem(response, 400, "required")
    response = qa_api.post(
        reverse("api:site-start-onboarding", args=["A1"]), {"reason": "  "}, format="json"
    )
    assert_problem(response, 400, "blank")
    site = Site.objects.get()
    assert (site.status, site.name) == (SiteStatus.PROPOSED, "Site A1")


def test_an_unknown_nominated_person_is_a_400(qa_api):
    response = qa_api.post(
        reverse("api:site-list"),
        {
            "code": "N1",
            "name": "x",
            "kind": "poc_hospital",
            "nominated_person": "nobody",
            "reason": "r",
        },
        format="json",
    )
    assert_problem(response, 400, "unknown_user")
    assert not Site.objects.exists()


def test_put_and_delete_are_not_offered(qa_api, qa):
    register(qa, "A1")
    url = reverse("api:site-detail", args=["A1"])
    assert_problem(qa_api.put(url, {"name": "x"}, format="json"), 405, "method_not_allowed")
    assert_problem(qa_api.delete(url), 405, "method_not_allowed")
    assert Site.objects.filter(code="A1").exists()


def test_a_stale_if_match_is_a_412(qa_api, qa):
    register(qa, "A1")
    url = reverse("api:site-detail", args=["A1"])
    etag = qa_api.get(url)["ETag"]
    ok = qa_api.patch(url, {"name": "One", "reason": "r"}, format="json", HTTP_IF_MATCH=etag)
    assert ok.status_code == 200, ok.content
    stale = qa_api.patch(url, {"name": "Two", "reason": "r"}, format="json", HTTP_IF_MATCH=etag)
    assert_problem(stale, 412, "precondition_failed")
    assert Site.objects.get().name == "One"


def test_a_number_where_text_is_due_is_refused(qa_api):
    response = qa_api.post(
        reverse("api:site-list"),
        {"code": "N1", "name": 42, "kind": "poc_hospital", "reason": "r"},
        format="json",
    )
    body = assert_problem(response, 400, "validation_error")
    assert "name" in body["errors"]
    assert not Site.objects.exists()


def test_a_malformed_body_is_a_400_whatever_if_match_says(qa_api, qa):
    register(qa, "A1")
    url = reverse("api:site-detail", args=["A1"])
    response = qa_api.patch(url, {"name": "x"}, format="json", HTTP_IF_MATCH='"stale"')
    assert_problem(response, 400, "required")
    response = qa_api.patch(
        url, {"name": "x", "reason": "r"}, format="json", HTTP_IF_MATCH='"stale"'
    )
    assert_problem(response, 412, "precondition_failed")


#
# Writes
#


def test_qa_registers_a_site_with_its_lead(qa_api, persona):
    persona("site_lead")
    response = qa_api.post(
        reverse("api:site-list"),
        {
            "code": "LON1",
            "name": "St Elsewhere",
            "kind": "poc_hospital",
            "nominated_person": "site_lead",
            "technical_agreement_ref": "TA-1",
            "reason": "board minute 7",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response["Location"] == "/api/v1/sites/LON1/"
    body = response.json()
    assert body["status"] == "proposed"
    assert body["checklist"]["done"] == 0
    assert body["checklist"]["total"] == len(body["checklist_items"]) > 0
    assert SiteMembership.objects.filter(
        site__code="LON1", user__username="site_lead", role=SiteRole.SITE_LEAD
    ).exists()
    event = AuditEvent.objects.filter(event_type="sites.registered").get()
    assert event.reason == "board minute 7"


def test_an_idempotent_retry_registers_one_site(qa_api):
    data = {"code": "N1", "name": "x", "kind": "poc_hospital", "reason": "r"}
    first = qa_api.post(reverse("api:site-list"), data, format="json", HTTP_IDEMPOTENCY_KEY="n1")
    second = qa_api.post(reverse("api:site-list"), data, format="json", HTTP_IDEMPOTENCY_KEY="n1")
    assert first.status_code == second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert Site.objects.count() == 1
    assert AuditEvent.objects.filter(event_type="sites.registered").count() == 1


def test_qa_changes_a_sites_particulars(qa_api, qa, persona):
    register(qa, "A1")
    persona("site_lead")
    response = qa_api.patch(
        reverse("api:site-detail", args=["A1"]),
        {"nominated_person": "site_lead", "kind": "testing_lab", "reason": "new lead"},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["nominated_person"]["username"] == "site_lead"
    assert body["kind"] == "testing_lab"
    event = AuditEvent.objects.filter(event_type="sites.updated").get()
    assert event.extra_data["new"]["nominated_person"] == "site_lead"


def test_a_ceased_site_is_not_changed(qa_api, qa):
    bring_to(qa, register(qa, "A1"), SiteStatus.CEASED)
    response = qa_api.patch(
        reverse("api:site-detail", args=["A1"]), {"name": "x", "reason": "r"}, format="json"
    )
    assert_problem(response, 409, "site_ceased")


def test_memberships_are_added_filtered_and_ended(qa_api, qa, site_a, persona):
    make_persona("operator", username="newcomer")
    created = qa_api.post(
        reverse("api:site-membership-list"),
        {"site": "A1", "user": "newcomer", "role": "site_operator", "reason": "joins"},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["site"] == {"code": "A1", "name": "Site A1"}
    assert body["user"]["username"] == "newcomer"
    assert body["role"] == "site_operator" and body["ended_at"] is None

    again = qa_api.post(
        reverse("api:site-membership-list"),
        {"site": "A1", "user": "newcomer", "role": "site_operator", "reason": "again"},
        format="json",
    )
    assert_problem(again, 409, "already_member")
    rows = qa_api.get(reverse("api:site-membership-list"), {"user": "newcomer"}).json()["results"]
    assert [r["id"] for r in rows] == [body["id"]]
    assert (
        len(qa_api.get(reverse("api:site-membership-list"), {"site": "A1"}).json()["results"]) == 3
    )

    ended = qa_api.post(
        reverse("api:site-membership-end", args=[body["id"]]), {"reason": "left"}, format="json"
    )
    assert ended.status_code == 200, ended.content
    assert ended.json()["ended_at"]
    gone = qa_api.get(reverse("api:site-membership-detail", args=[body["id"]]))
    assert_problem(gone, 404, "not_found")


def test_an_administrator_never_joins_a_site(qa_api, site_a, persona):
    persona("sysadmin")
    response = qa_api.post(
        reverse("api:site-membership-list"),
        {"site": "A1", "user": "sysadmin", "role": "site_operator", "reason": "no"},
        format="json",
    )
    assert_problem(response, 409, "segregation_of_duties")


def test_equipment_is_recorded_and_requalified(qa_api, site_a):
    created = qa_api.post(
        reverse("api:equipment-list"),
        {
            "site": "A1",
            "kind": "processor",
            "serial_number": "CSP-1",
            "qualification_status": "iq_done",
            "next_due": "2026-11-30",
            "reason": "installed",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["site"]["code"] == "A1"
    assert body["qualification_status_display"] == "IQ done"
    duplicate = qa_api.post(
        reverse("api:equipment-list"),
        {"site": "A1", "kind": "processor", "serial_number": "CSP-1", "reason": "again"},
        format="json",
    )
    assert_problem(duplicate, 409, "equipment_duplicate")

    url = reverse("api:equipment-detail", args=[body["id"]])
    nothing = qa_api.patch(url, {"reason": "nothing"}, format="json")
    assert_problem(nothing, 400, "nothing_to_change")
    changed = qa_api.patch(
        url, {"qualification_status": "qualified", "next_due": None, "reason": "PQ"}, format="json"
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["qualification_status"] == "qualified"
    assert changed.json()["next_due"] is None
    listed = qa_api.get(reverse("api:equipment-list"), {"site": "A1"}).json()["results"]
    assert [e["id"] for e in listed] == [body["id"]]


def test_a_site_audit_is_planned_done_and_given_findings(qa_api, site_a):
    created = qa_api.post(
        reverse("api:site-audit-list"),
        {"site": "A1", "title": "Annual", "planned_for": "2026-01-10", "reason": "programme"},
        format="json",
    )
    assert created.status_code == 201, created.content
    audit_id = created.json()["id"]
    assert created.json()["status"] == "planned"

    finding = qa_api.post(
        reverse("api:site-audit-findings", args=[audit_id]),
        {"grade": FindingGrade.MAJOR, "description": "No cleaning log.", "reason": "obs 1"},
        format="json",
    )
    assert finding.status_code == 201, finding.content
    assert finding.json()["audit"] == audit_id

    future = (timezone.localdate() + dt.timedelta(days=2)).isoformat()
    response = qa_api.post(
        reverse("api:site-audit-complete", args=[audit_id]),
        {"done_on": future, "summary": "", "reason": "r"},
        format="json",
    )
    assert_problem(response, 400, "date_in_future")
    done = qa_api.post(
        reverse("api:site-audit-complete", args=[audit_id]),
        {"done_on": timezone.localdate().isoformat(), "summary": "One major.", "reason": "r"},
        format="json",
    )
    assert done.status_code == 200, done.content
    assert done.json()["status"] == "done"
    assert [f["grade"] for f in done.json()["findings"]] == ["major"]
    again = qa_api.post(
        reverse("api:site-audit-complete", args=[audit_id]),
        {"done_on": timezone.localdate().isoformat(), "summary": "", "reason": "r"},
        format="json",
    )
    assert_problem(again, 409, "transition_not_allowed")
    rows = qa_api.get(reverse("api:site-audit-list"), {"status": "done"}).json()["results"]
    assert [r["id"] for r in rows] == [audit_id]


def test_an_mhra_notification_is_marked_sent_once(qa_api, notification):
    url = reverse("api:regulatory-notification-mark-sent", args=[notification.pk])
    pending = qa_api.get(reverse("api:regulatory-notification-list"), {"pending": "true"})
    assert [n["id"] for n in pending.json()["results"]] == [notification.pk]
    data = {"sent_on": timezone.localdate().isoformat(), "reference": "MHRA-9", "reason": "sent"}
    response = qa_api.post(url, data, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["sent_by"]["username"] == "qa"
    assert_problem(qa_api.post(url, data, format="json"), 409, "already_sent")
    pending = qa_api.get(reverse("api:regulatory-notification-list"), {"pending": "true"})
    assert pending.json()["results"] == []
    bad = qa_api.get(reverse("api:regulatory-notification-list"), {"pending": "maybe"})
    assert_problem(bad, 400, "invalid_choice")


def test_the_control_site_reads_with_its_named_qps(qa_api, control_site):
    body = qa_api.get(reverse("api:control-site-list")).json()
    assert body["licence_number"] == "MIA 12345"
    assert body["scope_label"] == "POC + MM"
    assert body["named_qps"] == [
        {
            "username": "qp",
            "printed_name": "Priya Patel",
            "named_from": timezone.localdate().isoformat(),
        }
    ]


def test_the_control_site_is_a_404_until_recorded(qa_api):
    assert_problem(qa_api.get(reverse("api:control-site-list")), 404, "no_control_site")
