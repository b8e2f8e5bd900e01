"""The training API (issue 7; design §6): procedures and their versions, training items,
curricula, assignments, records with the three ways of completing one, the qualification
question and the training matrix.

Who may do what is a permission matrix per route; the rest checks what integrators rely on: the
read-and-understood round trip through the API alone, who sees whose training, strict input, the
services' stable codes — and, for every refusal, that nothing is written (TR-01…TR-07, ES-01).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoDbBlocker
from rest_framework.test import APIClient

from controlsite.accounts.models import User
from controlsite.api.models import TokenScope
from controlsite.api.tokens import api_token_create
from controlsite.audit.context import audit_context
from controlsite.audit.events import KernelEvent
from controlsite.audit.models import AuditEvent
from controlsite.signatures.models import ElectronicSignature
from sites.choices import SiteRole
from sites.models import Site
from sites.services import membership_add
from tests.masterfile.helpers import signing
from tests.matrix import ANON, Matrix, only
from tests.personas import ALL_PERSONAS, make_persona, signature_fields
from tests.sites.helpers import make_site
from tests.training.helpers import curriculum, issue, item, make_procedure
from tests.worlds import media_copy, refetched, shared_rows
from training import services
from training.choices import AssignmentStatus, ItemKind, VersionStatus
from training.events import TrainingEvent
from training.models import (
    Assignment,
    Curriculum,
    Procedure,
    ProcedureVersion,
    Requirement,
    TrainingItem,
    TrainingRecord,
)

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


def _day(days: int) -> dt.date:
    return timezone.localdate() + dt.timedelta(days=days)


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def token_client(user: User, *, site_codes: list[str] | None = None) -> APIClient:
    """A read-write token for `user`, made by the world's system administrator."""
    creator = User.objects.get(username="sysadmin")
    _, secret = api_token_create(
        user=user,
        name="test",
        scope=TokenScope.READ_WRITE,
        created_by=creator,
        site_codes=site_codes,
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def pdf(text: str = "procedure", name: str = "sop.pdf") -> SimpleUploadedFile:
    """A small file that passes the upload checks (a PDF's magic bytes and some text)."""
    return SimpleUploadedFile(
        name, b"%PDF-1.7\n% " + text.encode() + b"\n%%EOF\n", content_type="application/pdf"
    )


#
# The world every test starts from: built once for the module, each test's changes rolled back
#


@dataclasses.dataclass(frozen=True)
class World:
    qa: User
    trainer: User
    lead: User
    operator: User
    operator2: User
    lds1: Site
    man2: Site
    procedure: Procedure
    v1: ProcedureVersion
    assessment: TrainingItem
    curriculum: Curriculum
    record: TrainingRecord  # the operator's signed GxP induction
    assignment: Assignment  # the operator's open assignment to read SOP-MFG-001 v1


@dataclasses.dataclass(frozen=True)
class SharedWorld:
    world: World
    media: Path


def _build_world() -> World:
    """LDS1 with its site lead and operator, MAN2 with a second operator; SOP-MFG-001 v1 in
    force; a practical assessment; the LDS1 operator curriculum (induction, the SOP, the
    assessment), so the operator has assignments; and the operator's signed induction. The
    trainer, the QP, the inspector and the integrator work at no site; the system administrator
    and the outsider have no API. Every persona is made here, once: the `persona` fixture finds
    them by username."""
    people = {name: make_persona(name) for name in ALL_PERSONAS}
    qa, trainer = people["qa"], people["trainer"]
    lead, operator = people["site_lead"], people["operator"]
    operator2 = make_persona("operator", username="operator2")
    lds1, man2 = make_site(qa, "LDS1"), make_site(qa, "MAN2")
    for site, user, role in (
        (lds1, lead, SiteRole.SITE_LEAD),
        (lds1, operator, SiteRole.SITE_OPERATOR),
        (man2, operator2, SiteRole.SITE_OPERATOR),
    ):
        membership_add(actor=qa, site=site, user=user, role=role, reason="works here")
    procedure = make_procedure(qa)
    v1 = issue(qa, procedure)
    assessment = services.item_create(
        actor=trainer,
        code="PA-ASEPTIC",
        title="Aseptic technique, observed",
        kind=ItemKind.ASSESSMENT,
        reason="media fill observation",
    )
    made = curriculum(
        trainer, "site_operator", lds1, item("GXP-IND"), item("SOP-MFG-001"), assessment
    )
    record = services.acknowledge(
        actor=operator, item=item("GXP-IND"), credentials=signing(operator), reason="read"
    )
    assignment = Assignment.objects.get(
        user=operator, item__code="SOP-MFG-001", status=AssignmentStatus.OPEN
    )
    return World(
        qa,
        trainer,
        lead,
        operator,
        operator2,
        lds1,
        man2,
        procedure,
        v1,
        assessment,
        made,
        record,
        assignment,
    )


@pytest.fixture(scope="module")
def _shared_world(
    django_db_setup: None,
    django_db_blocker: DjangoDbBlocker,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SharedWorld]:
    """The world, built once for the module (tests/worlds.py); each test's changes to it are
    rolled back when the test ends."""
    media = tmp_path_factory.mktemp("training-api-media")
    with shared_rows(django_db_blocker):
        with django_db_blocker.unblock(), override_settings(MEDIA_ROOT=media):
            built = _build_world()
        yield SharedWorld(built, media)


@pytest.fixture
def world(db: None, _shared_world: SharedWorld) -> World:
    """The shared world as this test finds it: every record read again from the database."""
    return refetched(_shared_world.world)


@pytest.fixture(autouse=True)
def _media(settings: Any, tmp_path: Path, _shared_world: SharedWorld) -> None:
    """Procedure files go to a directory of the test's own, which starts as a copy of the
    shared world's files."""
    settings.MEDIA_ROOT = media_copy(_shared_world.media, tmp_path)


def signed(persona: Callable[[str], User], who: str, **fields: Any) -> dict[str, Any]:
    """Signature fields of the persona itself (Control Site QA's for anonymous)."""
    return signature_fields(persona("qa") if who == ANON else persona(who), **fields)


#
# Permission matrices
#

# USE_API holders read lists (scoped to what they may see); sysadmin and outsider have no API.
EVERY_API_USER = only({"sysadmin": 403, "outsider": 403}, others=200, anonymous=401)
# One person's training: QA, trainers, QPs and inspectors read everyone's; the operator their
# own; the site lead that of the people at LDS1; the integrator works at no site.
PERSON_READERS = only(
    {"integrator": 404, "sysadmin": 403, "outsider": 403}, others=200, anonymous=401
)
# Control Site QA only.
QA_ONLY = only({"qa": 201}, others=403, anonymous=401)
# Control Site QA or a trainer (the services' MANAGE_TRAINING).
TRAINERS = only({"qa": 201, "trainer": 201}, others=403, anonymous=401)

PROCEDURE_LIST = Matrix("api:procedure-list", EVERY_API_USER)
PROCEDURE_DETAIL = Matrix("api:procedure-detail", EVERY_API_USER)
PROCEDURE_CREATE = Matrix("api:procedure-create", QA_ONLY)
PROCEDURE_VERSIONS = Matrix("api:procedure-versions", QA_ONLY)

VERSION_LIST = Matrix("api:procedure-version-list", EVERY_API_USER)
VERSION_DETAIL = Matrix("api:procedure-version-detail", EVERY_API_USER)
VERSION_FILE = Matrix("api:procedure-version-file", EVERY_API_USER)

ITEM_LIST = Matrix("api:training-item-list", EVERY_API_USER)
ITEM_DETAIL = Matrix("api:training-item-detail", EVERY_API_USER)
ITEM_CREATE = Matrix("api:training-item-create", TRAINERS)
ITEM_UPDATE = Matrix("api:training-item-update", {**TRAINERS, "qa": 200, "trainer": 200})

CURRICULUM_LIST = Matrix("api:curriculum-list", EVERY_API_USER)
# The LDS1 curriculum: every reader but the integrator, who sees no site.
CURRICULUM_DETAIL = Matrix("api:curriculum-detail", PERSON_READERS)
# The integrator cannot name LDS1 (400 unknown_site); the others are refused by the service.
CURRICULUM_CREATE = Matrix("api:curriculum-create", {**TRAINERS, "integrator": 400})
# A curriculum the integrator cannot see does not exist for it.
CURRICULUM_CHANGE = {**TRAINERS, "qa": 200, "trainer": 200, "integrator": 404}
CURRICULUM_ADD = Matrix("api:curriculum-add-requirement", CURRICULUM_CHANGE)
CURRICULUM_REMOVE = Matrix("api:curriculum-remove-requirement", CURRICULUM_CHANGE)

ASSIGNMENT_LIST = Matrix("api:training-assignment-list", EVERY_API_USER)
ASSIGNMENT_DETAIL = Matrix("api:training-assignment-detail", PERSON_READERS)
# The integrator cannot name LDS1 (400 unknown_site); the others are refused by the service.
ASSIGNMENT_CREATE = Matrix("api:training-assignment-create", {**TRAINERS, "integrator": 400})

RECORD_LIST = Matrix("api:training-record-list", EVERY_API_USER)
RECORD_DETAIL = Matrix("api:training-record-detail", PERSON_READERS)
# Everyone who signs acknowledges for themselves; the integrator never signs (422
# not_permitted_to_sign); the inspector's role is read-only.
RECORD_ACKNOWLEDGE = Matrix(
    "api:training-record-acknowledge",
    only(
        {
            "qa": 201,
            "qp": 201,
            "site_lead": 201,
            "operator": 201,
            "trainer": 201,
            "integrator": 422,
        },
        others=403,
        anonymous=401,
    ),
)
RECORD_ASSESS = Matrix("api:training-record-assess", TRAINERS)
RECORD_ENTER = Matrix("api:training-record-enter", TRAINERS)

# About the LDS1 operator: themselves, their site lead and everyone who sees all training; the
# integrator may not ask about them (400 unknown_user).
QUALIFICATION = Matrix("api:qualification-list", {**PERSON_READERS, "integrator": 400})

MATRIX_LIST = Matrix("api:training-matrix-list", EVERY_API_USER)
# LDS1's matrix: those who see all training and its site lead; not its operator.
MATRIX_DETAIL = Matrix(
    "api:training-matrix-detail", {**PERSON_READERS, "operator": 404, "integrator": 404}
)


# Procedures


@pytest.mark.parametrize(("who", "expected"), PROCEDURE_LIST.cases())
def test_procedure_list(as_persona, world, who, expected):
    response = as_persona(who).get(reverse("api:procedure-list"))
    assert response.status_code == expected
    if expected == 200:
        [row] = response.json()["results"]
        assert row["number"] == "SOP-MFG-001" and row["item_code"] == "SOP-MFG-001"
        assert row["version_in_force"]["number"] == 1 and row["upcoming_version"] is None


@pytest.mark.parametrize(("who", "expected"), PROCEDURE_DETAIL.cases())
def test_procedure_detail(as_persona, world, who, expected):
    response = as_persona(who).get(reverse("api:procedure-detail", args=[world.procedure.pk]))
    assert response.status_code == expected
    if expected == 200:
        assert [v["number"] for v in response.json()["versions"]] == [1]
        assert response["ETag"]


@pytest.mark.parametrize(("who", "expected"), PROCEDURE_CREATE.cases())
def test_procedure_create(as_persona, world, who, expected):
    response = as_persona(who).post(
        reverse("api:procedure-list"),
        {"number": "sop-qc-002", "title": "Sterility testing", "reason": "new SOP"},
    )
    assert response.status_code == expected, response.content
    created = Procedure.objects.filter(number="SOP-QC-002").exists()
    assert created == (expected == 201)
    if expected == 201:
        body = response.json()
        assert body["number"] == "SOP-QC-002" and body["versions"] == []
        assert TrainingItem.objects.get(code="SOP-QC-002").kind == ItemKind.SOP
        assert response["Location"] == reverse("api:procedure-detail", args=[body["id"]])


def _version_body(persona: Callable[[str], User], who: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "effective_on": timezone.localdate().isoformat(),
        "change_summary": "Hold time reduced to 30 minutes.",
        "file": pdf("version 2"),
        **signed(persona, who, meaning="approved", reason="v2 approved"),
    }
    body.update(overrides)
    return body


@pytest.mark.parametrize(("who", "expected"), PROCEDURE_VERSIONS.cases())
def test_procedure_versions(as_persona, persona, world, who, expected):
    response = as_persona(who).post(
        reverse("api:procedure-versions", args=[world.procedure.pk]),
        _version_body(persona, who),
        format="multipart",
    )
    assert response.status_code == expected, response.content
    if expected == 201:
        body = response.json()
        assert (body["number"], body["status"]) == (2, "effective")
        assert body["approval_signature"]["meaning"] == "approved"
        assert body["approval_signature"]["valid"] is True
        world.v1.refresh_from_db()
        assert world.v1.status == VersionStatus.SUPERSEDED
    else:
        assert world.procedure.versions.count() == 1


# Procedure versions


@pytest.mark.parametrize(("who", "expected"), VERSION_LIST.cases())
def test_procedure_version_list(as_persona, world, who, expected):
    response = as_persona(who).get(reverse("api:procedure-version-list"))
    assert response.status_code == expected
    if expected == 200:
        assert [v["id"] for v in response.json()["results"]] == [world.v1.pk]


@pytest.mark.parametrize(("who", "expected"), VERSION_DETAIL.cases())
def test_procedure_version_detail(as_persona, world, who, expected):
    response = as_persona(who).get(reverse("api:procedure-version-detail", args=[world.v1.pk]))
    assert response.status_code == expected
    if expected == 200:
        body = response.json()
        assert body["procedure"] == "SOP-MFG-001" and body["status"] == "effective"
        assert body["file_sha256"] == world.v1.file_sha256
        assert body["download_url"].endswith(
            reverse("api:procedure-version-file", args=[world.v1.pk])
        )


@pytest.mark.parametrize(("who", "expected"), VERSION_FILE.cases())
def test_procedure_version_file(as_persona, world, who, expected):
    response = as_persona(who).get(reverse("api:procedure-version-file", args=[world.v1.pk]))
    assert response.status_code == expected
    if expected == 200:
        content = b"".join(response.streaming_content)
        assert hashlib.sha256(content).hexdigest() == world.v1.file_sha256
        assert response["X-Content-SHA256"] == world.v1.file_sha256
        assert response["Content-Type"] == "application/pdf"
        assert "attachment" in response["Content-Disposition"]


# Training items


@pytest.mark.parametrize(("who", "expected"), ITEM_LIST.cases())
def test_training_item_list(as_persona, world, who, expected):
    response = as_persona(who).get(reverse("api:training-item-list"))
    assert response.status_code == expected
    if expected == 200:
        codes = [i["code"] for i in response.json()["results"]]
        assert codes == ["DI-ESIG", "GXP-IND", "GXP-REF", "PA-ASEPTIC", "SOP-MFG-001"]


@pytest.mark.parametrize(("who", "expected"), ITEM_DETAIL.cases())
def test_training_item_detail(as_persona, world, who, expected):
    response = as_persona(who).get(reverse("api:training-item-detail", args=[world.assessment.pk]))
    assert response.status_code == expected
    if expected == 200:
        body = response.json()
        assert (body["code"], body["kind"], body["procedure"]) == ("PA-ASEPTIC", "assessment", None)


@pytest.mark.parametrize(("who", "expected"), ITEM_CREATE.cases())
def test_training_item_create(as_persona, world, who, expected):
    response = as_persona(who).post(
        reverse("api:training-item-list"),
        {
            "code": "pa-gown",
            "title": "Gowning, observed",
            "kind": "assessment",
            "validity_months": 24,
            "reason": "gowning qualification",
        },
    )
    assert response.status_code == expected, response.content
    assert TrainingItem.objects.filter(code="PA-GOWN").exists() == (expected == 201)
    if expected == 201:
        assert response.json()["validity_months"] == 24


@pytest.mark.parametrize(("who", "expected"), ITEM_UPDATE.cases())
def test_training_item_update(as_persona, world, who, expected):
    response = as_persona(who).patch(
        reverse("api:training-item-detail", args=[world.assessment.pk]),
        {"due_days": 10, "reason": "shorter window"},
    )
    assert response.status_code == expected, response.content
    world.assessment.refresh_from_db()
    assert world.assessment.due_days == (10 if expected == 200 else 30)


# Curricula


@pytest.mark.parametrize(("who", "expected"), CURRICULUM_LIST.cases())
def test_curriculum_list(as_persona, world, who, expected):
    response = as_persona(who).get(reverse("api:curriculum-list"))
    assert response.status_code == expected
    if expected == 200:
        ids = [c["id"] for c in response.json()["results"]]
        assert ids == ([] if who == "integrator" else [world.curriculum.pk])


@pytest.mark.parametrize(("who", "expected"), CURRICULUM_DETAIL.cases())
def test_curriculum_detail(as_persona, world, who, expected):
    response = as_persona(who).get(reverse("api:curriculum-detail", args=[world.curriculum.pk]))
    assert response.status_code == expected
    if expected == 200:
        body = response.json()
        assert (body["role"], body["site"]["code"]) == ("site_operator", "LDS1")
        codes = [r["item"]["code"] for r in body["requirements"]]
        assert codes == ["GXP-IND", "PA-ASEPTIC", "SOP-MFG-001"]
        assert body["removed_requirements"] == []


@pytest.mark.parametrize(("who", "expected"), CURRICULUM_CREATE.cases())
def test_curriculum_create(as_persona, world, who, expected):
    response = as_persona(who).post(
        reverse("api:curriculum-list"),
        {"role": "site_lead", "site": "LDS1", "title": "LDS1 leads", "reason": "onboarding"},
    )
    assert response.status_code == expected, response.content
    made = Curriculum.objects.filter(role="site_lead", site=world.lds1).exists()
    assert made == (expected == 201)


@pytest.mark.parametrize(("who", "expected"), CURRICULUM_ADD.cases())
def test_curriculum_add_requirement(as_persona, world, who, expected):
    response = as_persona(who).post(
        reverse("api:curriculum-add-requirement", args=[world.curriculum.pk]),
        {"item": "GXP-REF", "reason": "yearly refresher"},
    )
    assert response.status_code == expected, response.content
    added = Requirement.objects.filter(curriculum=world.curriculum, item__code="GXP-REF")
    assert added.exists() == (expected == 200)
    if expected == 200:
        assert "GXP-REF" in [r["item"]["code"] for r in response.json()["requirements"]]
        # TR-03: the operator at LDS1 is assigned the new item at once.
        assert Assignment.objects.filter(
            user=world.operator, item__code="GXP-REF", status=AssignmentStatus.OPEN
        ).exists()


@pytest.mark.parametrize(("who", "expected"), CURRICULUM_REMOVE.cases())
def test_curriculum_remove_requirement(as_persona, world, who, expected):
    response = as_persona(who).post(
        reverse("api:curriculum-remove-requirement", args=[world.curriculum.pk]),
        {"item": "PA-ASEPTIC", "reason": "assessed at the Control Site instead"},
    )
    assert response.status_code == expected, response.content
    requirement = Requirement.objects.get(curriculum=world.curriculum, item=world.assessment)
    assert (requirement.removed_at is not None) == (expected == 200)
    if expected == 200:
        body = response.json()
        assert [r["item"]["code"] for r in body["removed_requirements"]] == ["PA-ASEPTIC"]
        # The operator's open assignment for it is withdrawn, not deleted.
        assert (
            Assignment.objects.get(user=world.operator, item=world.assessment).status
            == AssignmentStatus.WITHDRAWN
        )


# Assignments


@pytest.mark.parametrize(("who", "expected"), ASSIGNMENT_LIST.cases())
def test_training_assignment_list(as_persona, world, who, expected):
    response = as_persona(who).get(reverse("api:training-assignment-list"))
    assert response.status_code == expected
    if expected == 200:
        users = {a["user"]["username"] for a in response.json()["results"]}
        assert users == (set() if who == "integrator" else {"operator"})


@pytest.mark.parametrize(("who", "expected"), ASSIGNMENT_DETAIL.cases())
def test_training_assignment_detail(as_persona, world, who, expected):
    response = as_persona(who).get(
        reverse("api:training-assignment-detail", args=[world.assignment.pk])
    )
    assert response.status_code == expected
    if expected == 200:
        body = response.json()
        assert body["item"]["code"] == "SOP-MFG-001" and body["status"] == "open"
        assert body["procedure_version"]["number"] == 1 and body["overdue"] is False
        assert body["site"]["code"] == "LDS1" and body["record"] is None


@pytest.mark.parametrize(("who", "expected"), ASSIGNMENT_CREATE.cases())
def test_training_assignment_create(as_persona, world, who, expected):
    response = as_persona(who).post(
        reverse("api:training-assignment-list"),
        {
            "user": "operator",
            "item": "GXP-REF",
            "due_on": _day(14).isoformat(),
            "site": "LDS1",
            "reason": "retraining after a deviation",
        },
    )
    assert response.status_code == expected, response.content
    assigned = Assignment.objects.filter(user=world.operator, item__code="GXP-REF")
    assert assigned.exists() == (expected == 201)
    if expected == 201:
        body = response.json()
        assert (body["cause"], body["due_on"]) == ("manual", _day(14).isoformat())


# Records


@pytest.mark.parametrize(("who", "expected"), RECORD_LIST.cases())
def test_training_record_list(as_persona, persona, world, who, expected):
    response = as_persona(who).get(reverse("api:training-record-list"))
    assert response.status_code == expected
    if expected == 200:
        ids = [r["id"] for r in response.json()["results"]]
        if who in {"qa", "qp", "inspector", "trainer"}:
            assert world.record.pk in ids and len(ids) == TrainingRecord.objects.count()
        elif who in {"operator", "site_lead"}:
            # The operator's own records; the lead's own and those of the people at LDS1.
            mine = TrainingRecord.objects.filter(user__in=[world.operator, persona(who)])
            assert sorted(ids) == sorted(r.pk for r in mine)
        else:
            own = TrainingRecord.objects.filter(user=persona(who))
            assert sorted(ids) == sorted(r.pk for r in own)


@pytest.mark.parametrize(("who", "expected"), RECORD_DETAIL.cases())
def test_training_record_detail(as_persona, world, who, expected):
    response = as_persona(who).get(reverse("api:training-record-detail", args=[world.record.pk]))
    assert response.status_code == expected
    if expected == 200:
        body = response.json()
        assert body["item"]["code"] == "GXP-IND" and body["method"] == "acknowledged"
        assert body["signature"]["meaning"] == "acknowledged"
        assert body["signature"]["username"] == "operator"
        assert body["signature"]["valid"] is True and body["result"] is None
        assert response["ETag"]


@pytest.mark.parametrize(("who", "expected"), RECORD_ACKNOWLEDGE.cases())
def test_training_record_acknowledge(as_persona, persona, world, who, expected):
    api = as_persona(who)
    before = TrainingRecord.objects.count()
    response = api.post(
        reverse("api:training-record-acknowledge"),
        {"item": "GXP-IND", **signed(persona, who, meaning="acknowledged", reason="read")},
    )
    assert response.status_code == expected, response.content
    assert TrainingRecord.objects.count() == before + (expected == 201)
    if expected == 201:
        body = response.json()
        assert body["user"]["username"] == who and body["method"] == "acknowledged"
        assert body["signature"]["username"] == who
    elif expected == 422:
        assert response.json()["code"] == "not_permitted_to_sign"


@pytest.mark.parametrize(("who", "expected"), RECORD_ASSESS.cases())
def test_training_record_assess(as_persona, persona, world, who, expected):
    response = as_persona(who).post(
        reverse("api:training-record-assess"),
        {
            "trainee": "operator",
            "item": "PA-ASEPTIC",
            "result": "competent",
            "notes": "Full media fill observed.",
            **signed(persona, who, meaning="reviewed", reason="observed"),
        },
    )
    assert response.status_code == expected, response.content
    assessed = TrainingRecord.objects.filter(user=world.operator, item=world.assessment)
    assert assessed.exists() == (expected == 201)
    if expected == 201:
        body = response.json()
        assert (body["result"], body["trainer"]["username"]) == ("competent", who)
        assert body["signature"]["meaning"] == "reviewed"


@pytest.mark.parametrize(("who", "expected"), RECORD_ENTER.cases())
def test_training_record_enter(as_persona, persona, world, who, expected):
    response = as_persona(who).post(
        reverse("api:training-record-enter"),
        {
            "trainee": "operator",
            "item": "GXP-REF",
            "completed_on": _day(-3).isoformat(),
            "notes": "Classroom refresher, attendance sheet TR-2026-003.",
            **signed(persona, who, meaning="verified", reason="paper record"),
        },
    )
    assert response.status_code == expected, response.content
    entered = TrainingRecord.objects.filter(user=world.operator, item__code="GXP-REF")
    assert entered.exists() == (expected == 201)
    if expected == 201:
        body = response.json()
        assert body["method"] == "entered" and body["signature"]["meaning"] == "verified"
        # TR-04: the refresher expires twelve months after the day it was done.
        expires = dt.datetime.fromisoformat(body["expires_at"])
        completed = dt.datetime.fromisoformat(body["completed_at"])
        assert (expires.year - completed.year, expires.month) == (1, completed.month)


# Qualification and the matrix


@pytest.mark.parametrize(("who", "expected"), QUALIFICATION.cases())
def test_qualification(as_persona, world, who, expected):
    response = as_persona(who).get(
        reverse("api:qualification-list"),
        {"user": "operator", "site": "LDS1", "role": "site_operator"},
    )
    assert response.status_code == expected, response.content
    if expected == 200:
        body = response.json()
        assert body["qualified"] is False
        assert [g["item"]["code"] for g in body["gaps"]] == ["PA-ASEPTIC", "SOP-MFG-001"]
        assert {g["state"] for g in body["gaps"]} == {"missing"}
        assert "not qualified as site operator at LDS1" in body["message"]
    elif expected == 400:
        assert response.json()["code"] == "unknown_user"


@pytest.mark.parametrize(("who", "expected"), MATRIX_LIST.cases())
def test_training_matrix_list(as_persona, world, who, expected):
    response = as_persona(who).get(reverse("api:training-matrix-list"))
    assert response.status_code == expected
    if expected == 200:
        codes = [s["site"]["code"] for s in response.json()["results"]]
        if who in {"qa", "qp", "inspector", "trainer"}:
            assert codes == ["LDS1", "MAN2"]
        else:
            assert codes == (["LDS1"] if who == "site_lead" else [])


@pytest.mark.parametrize(("who", "expected"), MATRIX_DETAIL.cases())
def test_training_matrix_detail(as_persona, world, who, expected):
    response = as_persona(who).get(reverse("api:training-matrix-detail", args=["LDS1"]))
    assert response.status_code == expected
    if expected == 200:
        body = response.json()
        assert body["site"]["code"] == "LDS1"
        assert [r["user"]["username"] for r in body["rows"]] == ["site_lead", "operator"]
        assert "ETag" not in response


#
# Round trips through the API alone
#


def test_a_new_sop_is_read_and_understood_through_the_api(world):
    """TR-03: QA registers and issues a procedure, a trainer puts it in the LDS1 curriculum,
    the operator is assigned it, downloads the file and signs it read and understood; the
    assignment closes and the matrix cell turns current."""
    qa, trainer = token_client(world.qa), token_client(world.trainer)
    operator, lead = token_client(world.operator), token_client(world.lead)

    created = qa.post(
        reverse("api:procedure-list"),
        {"number": "SOP-QC-002", "title": "Sterility testing", "due_days": 7, "reason": "new"},
    )
    assert created.status_code == 201, created.content
    issued = qa.post(
        reverse("api:procedure-versions", args=[created.json()["id"]]),
        {
            "effective_on": timezone.localdate().isoformat(),
            "change_summary": "First issue.",
            "file": pdf("sterility", "SOP-QC-002.pdf"),
            **signature_fields(world.qa, meaning="approved", reason="approved for use"),
        },
        format="multipart",
    )
    assert issued.status_code == 201, issued.content
    version = issued.json()
    assert version["status"] == "effective" and version["file_name"] == "SOP-QC-002.pdf"

    added = trainer.post(
        reverse("api:curriculum-add-requirement", args=[world.curriculum.pk]),
        {"item": "SOP-QC-002", "reason": "operators test sterility"},
    )
    assert added.status_code == 200, added.content

    todo = operator.get(
        reverse("api:training-assignment-list"),
        {"user": "operator", "status": "open", "item": "SOP-QC-002"},
    ).json()["results"]
    assert len(todo) == 1
    assert todo[0]["procedure_version"]["number"] == 1
    assert todo[0]["due_on"] == _day(7).isoformat()

    download: Any = operator.get(version["download_url"])
    assert download.status_code == 200
    content = b"".join(download.streaming_content)
    assert hashlib.sha256(content).hexdigest() == version["file_sha256"]

    signed_off = operator.post(
        reverse("api:training-record-acknowledge"),
        {
            "item": "SOP-QC-002",
            "version": 1,
            **signature_fields(world.operator, meaning="acknowledged", reason="read it"),
        },
    )
    assert signed_off.status_code == 201, signed_off.content
    record = signed_off.json()
    assert record["procedure_version"]["number"] == 1
    assert record["signature"]["meaning"] == "acknowledged" and record["signature"]["valid"]
    event = AuditEvent.objects.get(
        event_type=TrainingEvent.ACKNOWLEDGED, target_id=str(record["id"])
    )
    assert event.signature_id is not None and event.actor_username == "operator"

    closed = operator.get(reverse("api:training-assignment-detail", args=[todo[0]["id"]])).json()
    assert (closed["status"], closed["record"]) == ("completed", record["id"])

    matrix = lead.get(reverse("api:training-matrix-detail", args=["LDS1"])).json()
    columns = [i["code"] for i in matrix["items"]]
    [row] = [r for r in matrix["rows"] if r["user"]["username"] == "operator"]
    cell = row["cells"][columns.index("SOP-QC-002")]
    assert (cell["state"], cell["record"]) == ("current", record["id"])


def test_the_operator_becomes_qualified_through_the_api(world):
    """TR-02: the verdict names what is missing until the operator has read the SOP in force
    and a trainer has signed the practical assessment."""
    operator, trainer = token_client(world.operator), token_client(world.trainer)
    query = {"user": "operator", "site": "LDS1", "role": "site_operator"}
    assert operator.get(reverse("api:qualification-list"), query).json()["qualified"] is False

    read = operator.post(
        reverse("api:training-record-acknowledge"),
        {
            "item": "SOP-MFG-001",
            "version": 1,
            **signature_fields(world.operator, meaning="acknowledged"),
        },
    )
    assert read.status_code == 201, read.content
    assessed = trainer.post(
        reverse("api:training-record-assess"),
        {
            "trainee": "operator",
            "item": "PA-ASEPTIC",
            "result": "competent",
            **signature_fields(world.trainer, meaning="reviewed"),
        },
    )
    assert assessed.status_code == 201, assessed.content

    verdict = operator.get(reverse("api:qualification-list"), query).json()
    assert (verdict["qualified"], verdict["gaps"], verdict["message"]) == (True, [], "")
    assert (verdict["role"], verdict["site"]["code"]) == ("site_operator", "LDS1")
    assert verdict["user"]["username"] == "operator"
    assert not Assignment.objects.filter(user=world.operator, status=AssignmentStatus.OPEN)


def test_a_lapsed_refresher_is_named_and_a_past_moment_is_answered_as_it_stood(world):
    """TR-04: an expired refresher removes the qualification; asked about an earlier moment,
    the answer is as the curriculum and the records stood then."""
    moment = timezone.now()
    services.requirement_add(
        actor=world.trainer, curriculum=world.curriculum, item=item("GXP-REF"), reason="yearly"
    )
    for code in ("SOP-MFG-001", "PA-ASEPTIC"):
        services.requirement_remove(
            actor=world.trainer,
            requirement=Requirement.objects.get(
                curriculum=world.curriculum, item__code=code, removed_at__isnull=True
            ),
            reason="not in this test",
        )
    services.record_enter(
        actor=world.trainer,
        trainee=world.operator,
        item=item("GXP-REF"),
        completed_on=_day(-400),
        notes="Refresher on paper.",
        credentials=signing(world.trainer),
    )
    api = token_client(world.lead)
    query = {"user": "operator", "site": "LDS1", "role": "site_operator"}
    verdict = api.get(reverse("api:qualification-list"), query).json()
    assert verdict["qualified"] is False
    [gap] = verdict["gaps"]
    assert (gap["item"]["code"], gap["state"]) == ("GXP-REF", "overdue")
    assert gap["detail"].startswith("expired")

    # Before the curriculum changed it asked for the SOP and the assessment, not the refresher.
    then = api.get(reverse("api:qualification-list"), {**query, "at": moment.isoformat()}).json()
    assert [g["item"]["code"] for g in then["gaps"]] == ["PA-ASEPTIC", "SOP-MFG-001"]


#
# Bad input: 400 and nothing written
#


def _written() -> tuple[int, ...]:
    """What a refused write must leave as it was."""
    return (
        TrainingRecord.objects.count(),
        ElectronicSignature.objects.count(),
        Assignment.objects.count(),
        Assignment.objects.filter(status=AssignmentStatus.OPEN).count(),
        AuditEvent.objects.filter(event_type__startswith="training.").count(),
        ProcedureVersion.objects.count(),
        TrainingItem.objects.count(),
    )


def test_an_assessment_without_a_result_is_400_and_writes_nothing(world):
    api = token_client(world.trainer)
    before = _written()
    for body in ({}, {"result": ""}):
        response = api.post(
            reverse("api:training-record-assess"),
            {
                "trainee": "operator",
                "item": "PA-ASEPTIC",
                **body,
                **signature_fields(world.trainer, meaning="reviewed"),
            },
        )
        assert_problem(response, 400, "result_required")
    assert _written() == before


@pytest.mark.parametrize(
    ("route", "body", "code"),
    [
        ("enter", {"completed_on": "12/01/2026"}, "validation_error"),
        ("enter", {"completed_on": "2026-02-30"}, "validation_error"),
        ("enter", {"completed_on": _day(2).isoformat()}, "completed_in_future"),
        ("enter", {"item": "NO-SUCH-ITEM"}, "unknown_item"),
        ("enter", {"trainee": "nobody"}, "unknown_user"),
        ("enter", {"item": "GXP-IND", "version": 1}, "version_not_expected"),
        ("enter", {"item": "SOP-MFG-001", "version": 9}, "unknown_version"),
        ("enter", {"item": "SOP-MFG-001", "version": "1"}, "validation_error"),
        ("enter", {"notes": 42}, "validation_error"),
        ("enter", {"status": "approved"}, "unknown_field"),
        ("assess", {"result": "great"}, "invalid_choice"),
        ("assess", {"item": "DI-ESIG", "result": "competent"}, "acknowledgement_required"),
    ],
)
def test_bad_record_input_is_400_and_writes_nothing(world, route, body, code):
    api = token_client(world.trainer)
    fields: dict[str, Any] = {
        "trainee": "operator",
        "item": "GXP-REF" if route == "enter" else "PA-ASEPTIC",
        "completed_on": _day(-1).isoformat(),
        "notes": "paper",
    }
    if route == "assess":
        fields.pop("completed_on")
    meaning = "verified" if route == "enter" else "reviewed"
    before = _written()
    response = api.post(
        reverse(f"api:training-record-{route}"),
        {**fields, **body, **signature_fields(world.trainer, meaning=meaning)},
    )
    assert_problem(response, 400, code)
    assert _written() == before


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"item": "NO-SUCH-ITEM"}, "unknown_item"),
        ({"item": "SOP-MFG-001"}, "version_required"),
        ({"item": "PA-ASEPTIC"}, "assessment_required"),
        ({"item": "GXP-IND", "meaning": "approved"}, "invalid_choice"),
        ({"item": "GXP-IND", "password": None}, "null"),
    ],
)
def test_bad_acknowledgements_are_400_and_write_nothing(world, body, code):
    api = token_client(world.operator)
    before = _written()
    response = api.post(
        reverse("api:training-record-acknowledge"),
        {**signature_fields(world.operator, meaning="acknowledged"), **body},
    )
    assert_problem(response, 400, code)
    assert _written() == before


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"due_on": "tomorrow"}, "validation_error"),
        ({"due_on": _day(-1).isoformat()}, "due_in_past"),
        ({"item": "NOPE"}, "unknown_item"),
        ({"site": "ZZ9"}, "unknown_site"),
        ({"site": "lds1"}, "validation_error"),
        ({"user": "nobody"}, "unknown_user"),
        ({"reason": ""}, "blank"),
    ],
)
def test_bad_assignments_are_400_and_write_nothing(world, body, code):
    api = token_client(world.trainer)
    before = _written()
    response = api.post(
        reverse("api:training-assignment-list"),
        {
            "user": "operator",
            "item": "GXP-REF",
            "due_on": _day(7).isoformat(),
            "reason": "retraining",
            **body,
        },
    )
    assert_problem(response, 400, code)
    assert _written() == before


def test_bad_item_changes_are_refused_and_write_nothing(world):
    api = token_client(world.trainer)
    url = reverse("api:training-item-detail", args=[world.assessment.pk])
    before = _written()
    assert_problem(api.patch(url, {"reason": "nothing"}), 400, "nothing_to_change")
    assert_problem(api.patch(url, {"kind": "sop", "reason": "r"}), 400, "unknown_field")
    assert_problem(api.patch(url, {"active": "no", "reason": "r"}), 400, "validation_error")
    assert_problem(api.patch(url, {"due_days": "9", "reason": "r"}), 400, "validation_error")
    assert_problem(api.patch(url, {"due_days": 9}), 400, "required")
    accountability = TrainingItem.objects.get(kind=ItemKind.ACCOUNTABILITY)
    response = api.patch(
        reverse("api:training-item-detail", args=[accountability.pk]),
        {"active": False, "reason": "tidy up"},
    )
    assert_problem(response, 409, "accountability_required")
    assert _written() == before


def test_an_sop_item_is_made_with_its_procedure_not_alone(world):
    response = token_client(world.trainer).post(
        reverse("api:training-item-list"),
        {"code": "SOP-X", "title": "x", "kind": "sop", "reason": "r"},
    )
    assert_problem(response, 400, "sop_item_from_procedure")
    assert not TrainingItem.objects.filter(code="SOP-X").exists()


def test_a_version_needs_multipart_and_a_proper_file(persona, world):
    api = token_client(world.qa)
    url = reverse("api:procedure-versions", args=[world.procedure.pk])
    before = _written()
    as_json = api.post(url, {"effective_on": timezone.localdate().isoformat()})
    assert_problem(as_json, 415, "unsupported_media_type")
    no_file = _version_body(persona, "qa")
    no_file.pop("file")
    assert_problem(api.post(url, no_file, format="multipart"), 400, "required")
    wrong_type = _version_body(persona, "qa", file=SimpleUploadedFile("sop.exe", b"MZ\x90"))
    assert_problem(api.post(url, wrong_type, format="multipart"), 400, "evidence_type")
    past = _version_body(persona, "qa", effective_on=_day(-1).isoformat())
    assert_problem(api.post(url, past, format="multipart"), 400, "effective_in_past")
    assert _written() == before


def test_a_body_larger_than_the_file_limit_is_413(settings, persona, world):
    settings.SITE_EVIDENCE_MAX_BYTES = 1024
    api = token_client(world.qa)
    big = _version_body(persona, "qa", file=pdf("x" * 100_000))
    response = api.post(
        reverse("api:procedure-versions", args=[world.procedure.pk]), big, format="multipart"
    )
    assert_problem(response, 413, "payload_too_large")
    assert world.procedure.versions.count() == 1


def test_an_idempotent_upload_must_fit_the_in_memory_limit(settings, persona, world):
    """The Idempotency-Key hashes the raw body, which Django holds in memory only up to
    DATA_UPLOAD_MAX_MEMORY_SIZE: a larger file is refused with the key (413, nothing issued)
    and accepted without it."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    api = token_client(world.qa)
    url = reverse("api:procedure-versions", args=[world.procedure.pk])
    body = _version_body(persona, "qa", file=pdf("y" * 8000))
    keyed = api.post(url, body, format="multipart", HTTP_IDEMPOTENCY_KEY="big-1")
    assert_problem(keyed, 413, "payload_too_large")
    assert world.procedure.versions.count() == 1
    body["file"].seek(0)
    plain = api.post(url, body, format="multipart")
    assert plain.status_code == 201, plain.content


#
# Refusals by the rules: 409 and 422, nothing written
#


def test_acknowledging_a_superseded_version_is_409_and_writes_nothing(world):
    """TR-02/TR-03: only the version in force (or the one coming) can be read and signed."""
    issue(world.qa, world.procedure, summary="v2")
    world.v1.refresh_from_db()
    assert world.v1.status == VersionStatus.SUPERSEDED
    api = token_client(world.operator)
    before = _written()
    response = api.post(
        reverse("api:training-record-acknowledge"),
        {
            "item": "SOP-MFG-001",
            "version": 1,
            **signature_fields(world.operator, meaning="acknowledged"),
        },
    )
    assert_problem(response, 409, "version_superseded")
    assert _written() == before


def test_a_trainer_assessing_themselves_is_422_and_writes_nothing(world):
    """ES-01/TR-05: a trainer never signs their own training record; the refusal itself is an
    audit event (ES-08), the record and the signature are not written."""
    api = token_client(world.trainer)
    before = _written()
    refusals = AuditEvent.objects.filter(event_type=KernelEvent.SIGNATURE_REFUSED).count()
    response = api.post(
        reverse("api:training-record-assess"),
        {
            "trainee": "trainer",
            "item": "PA-ASEPTIC",
            "result": "competent",
            **signature_fields(world.trainer, meaning="reviewed"),
        },
    )
    assert_problem(response, 422, "self_assessment")
    assert _written() == before
    assert not TrainingRecord.objects.filter(user=world.trainer, item=world.assessment).exists()
    refused = AuditEvent.objects.filter(event_type=KernelEvent.SIGNATURE_REFUSED)
    assert refused.count() == refusals + 1
    assert refused.latest("seq").extra_data["code"] == "self_assessment"
    entered = api.post(
        reverse("api:training-record-enter"),
        {
            "trainee": "trainer",
            "item": "GXP-REF",
            "completed_on": _day(-1).isoformat(),
            "notes": "paper",
            **signature_fields(world.trainer, meaning="verified"),
        },
    )
    assert_problem(entered, 422, "self_assessment")
    assert _written() == before


def test_a_wrong_password_is_422_and_writes_nothing(world):
    api = token_client(world.operator)
    before = _written()
    response = api.post(
        reverse("api:training-record-acknowledge"),
        {
            "item": "GXP-REF",
            **signature_fields(world.operator, meaning="acknowledged", password="wrong"),
        },
    )
    assert_problem(response, 422, "wrong_password")
    assert _written() == before


def test_nobody_signs_before_the_accountability_item(world):
    """TR-07, 21 CFR 11.10(j): the first signature of a new operator is refused until they
    acknowledge the accountability policy — which they may sign — and then it is accepted."""
    newcomer = make_persona("operator", username="newcomer", accountable=False)
    api = token_client(newcomer)
    refused = api.post(
        reverse("api:training-record-acknowledge"),
        {"item": "GXP-IND", **signature_fields(newcomer, meaning="acknowledged")},
    )
    assert_problem(refused, 422, "training_required")
    assert not TrainingRecord.objects.filter(user=newcomer).exists()
    policy = api.post(
        reverse("api:training-record-acknowledge"),
        {"item": "DI-ESIG", **signature_fields(newcomer, meaning="acknowledged")},
    )
    assert policy.status_code == 201, policy.content
    again = api.post(
        reverse("api:training-record-acknowledge"),
        {"item": "GXP-IND", **signature_fields(newcomer, meaning="acknowledged")},
    )
    assert again.status_code == 201, again.content


def test_refused_curriculum_and_assignment_changes(world):
    api = token_client(world.trainer)
    before = _written()
    again = api.post(
        reverse("api:curriculum-add-requirement", args=[world.curriculum.pk]),
        {"item": "GXP-IND", "reason": "twice"},
    )
    assert_problem(again, 409, "already_required")
    absent = api.post(
        reverse("api:curriculum-remove-requirement", args=[world.curriculum.pk]),
        {"item": "GXP-REF", "reason": "never there"},
    )
    assert_problem(absent, 409, "not_required")
    duplicate = api.post(
        reverse("api:curriculum-list"),
        {"role": "site_operator", "site": "LDS1", "title": "again", "reason": "r"},
    )
    assert_problem(duplicate, 409, "duplicate_curriculum")
    open_already = api.post(
        reverse("api:training-assignment-list"),
        {"user": "operator", "item": "SOP-MFG-001", "due_on": _day(3).isoformat(), "reason": "r"},
    )
    assert_problem(open_already, 409, "already_assigned")
    assert _written() == before


def test_a_stale_if_match_is_412(world):
    api = token_client(world.trainer)
    url = reverse("api:training-item-detail", args=[world.assessment.pk])
    etag = api.get(url)["ETag"]
    services.item_update(
        actor=world.qa, item=world.assessment, reason="r", changes={"title": "Aseptic, observed"}
    )
    response = api.patch(url, {"due_days": 5, "reason": "r"}, HTTP_IF_MATCH=etag)
    assert_problem(response, 412, "precondition_failed")
    world.assessment.refresh_from_db()
    assert world.assessment.due_days == 30
    fresh = api.get(url)["ETag"]
    assert api.patch(url, {"due_days": 5, "reason": "r"}, HTTP_IF_MATCH=fresh).status_code == 200


def test_a_tampered_file_is_409_not_served(world):
    with world.v1.file.storage.open(world.v1.file.name, "wb") as handle:
        handle.write(b"%PDF-1.7\n% changed behind QA's back\n")
    response = token_client(world.operator).get(
        reverse("api:procedure-version-file", args=[world.v1.pk]),
        HTTP_ACCEPT="application/pdf",
    )
    assert_problem(response, 409, "file_mismatch")


def test_a_missing_version_file_is_404_as_json_even_when_a_pdf_is_asked_for(world):
    response = token_client(world.operator).get(
        reverse("api:procedure-version-file", args=[world.v1.pk + 1000]),
        HTTP_ACCEPT="application/pdf",
    )
    assert_problem(response, 404, "not_found")


#
# Who sees whose training (TR-06)
#


def test_a_site_operator_sees_only_their_own_training(world):
    other = services.acknowledge(
        actor=world.operator2, item=item("GXP-IND"), credentials=signing(world.operator2)
    )
    api = token_client(world.operator)
    ids = [r["id"] for r in api.get(reverse("api:training-record-list")).json()["results"]]
    own = TrainingRecord.objects.filter(user=world.operator).order_by("-id")
    assert world.record.pk in ids and ids == [r.pk for r in own]
    detail = api.get(reverse("api:training-record-detail", args=[other.pk]))
    assert_problem(detail, 404, "not_found")
    users = {
        a["user"]["username"]
        for a in api.get(reverse("api:training-assignment-list")).json()["results"]
    }
    assert users == {"operator"}
    about_other = api.get(
        reverse("api:qualification-list"),
        {"user": "operator2", "site": "MAN2", "role": "site_operator"},
    )
    assert_problem(about_other, 400, "unknown_user")
    assert_problem(api.get(reverse("api:training-matrix-detail", args=["LDS1"])), 404, "not_found")


def test_a_site_lead_sees_the_people_of_the_sites_they_lead(world):
    other = services.acknowledge(
        actor=world.operator2, item=item("GXP-IND"), credentials=signing(world.operator2)
    )
    api = token_client(world.lead)
    users = {
        r["user"]["username"]
        for r in api.get(reverse("api:training-record-list")).json()["results"]
    }
    assert users == {"operator", "site_lead"}
    assert_problem(
        api.get(reverse("api:training-record-detail", args=[other.pk])), 404, "not_found"
    )
    assert api.get(reverse("api:training-record-detail", args=[world.record.pk])).status_code == 200
    mine = api.get(
        reverse("api:qualification-list"),
        {"user": "operator", "site": "LDS1", "role": "site_operator"},
    )
    assert mine.status_code == 200
    theirs = api.get(
        reverse("api:qualification-list"),
        {"user": "operator2", "site": "MAN2", "role": "site_operator"},
    )
    assert_problem(theirs, 400, "unknown_user")
    assert_problem(api.get(reverse("api:training-matrix-detail", args=["MAN2"])), 404, "not_found")


def test_a_site_limited_token_narrows_the_matrix_and_the_people(world):
    qa = token_client(world.qa, site_codes=["MAN2"])
    listed = [
        s["site"]["code"] for s in qa.get(reverse("api:training-matrix-list")).json()["results"]
    ]
    assert listed == ["MAN2"]
    assert_problem(qa.get(reverse("api:training-matrix-detail", args=["LDS1"])), 404, "not_found")
    lead = token_client(world.lead, site_codes=["MAN2"])
    about = lead.get(
        reverse("api:qualification-list"),
        {"user": "operator", "site": "LDS1", "role": "site_operator"},
    )
    assert_problem(about, 400, "unknown_user")


def test_qualification_questions_must_be_well_formed(world):
    api = token_client(world.qa)
    url = reverse("api:qualification-list")
    base = {"user": "operator", "site": "LDS1", "role": "site_operator"}
    assert_problem(api.get(url, {**base, "at": "2026-01-31T09:00:00"}), 400, "naive_datetime")
    assert_problem(api.get(url, {**base, "at": "last tuesday"}), 400, "validation_error")
    assert_problem(api.get(url, {**base, "role": "sysadmin"}), 400, "invalid_choice")
    assert_problem(
        api.get(url, {"user": "operator", "role": "site_operator"}), 400, "site_required"
    )
    assert_problem(api.get(url, {**base, "site": "ZZ9"}), 400, "unknown_site")
    assert_problem(api.get(url, {"site": "LDS1", "role": "site_operator"}), 400, "required")
    # A Control Site role needs no site.
    trainer = api.get(url, {"user": "trainer", "role": "trainer"})
    assert trainer.status_code == 200 and trainer.json()["site"] is None
    assert_problem(
        api.get(reverse("api:training-matrix-detail", args=["LDS1"]), {"at": "yesterday"}),
        400,
        "validation_error",
    )


#
# Filters
#


def test_the_assignment_filters(world):
    services.assignment_create(
        actor=world.trainer,
        user=world.operator2,
        item=item("GXP-REF"),
        due_on=timezone.localdate(),
        site=world.man2,
        reason="refresher",
    )
    late = Assignment.objects.get(user=world.operator, item=world.assessment)
    with audit_context(reason="test: an assignment past its date"):
        late.due_on = _day(-2)
        late.save(update_fields=["due_on"])
    api = token_client(world.qa)

    def ids(**params: str) -> list[int]:
        response = api.get(reverse("api:training-assignment-list"), params)
        assert response.status_code == 200, response.content
        return [a["id"] for a in response.json()["results"]]

    assert ids(overdue="true") == [late.pk]
    assert late.pk not in ids(overdue="false")
    assert {a.user.username for a in Assignment.objects.filter(pk__in=ids(site="MAN2"))} == {
        "operator2"
    }
    assert ids(user="operator", item="SOP-MFG-001") == [world.assignment.pk]
    assert ids(status="completed") == list(
        Assignment.objects.filter(status=AssignmentStatus.COMPLETED)
        .order_by("-id")
        .values_list("pk", flat=True)
    )
    assert ids(cause="manual") == list(
        Assignment.objects.filter(cause="manual").order_by("-id").values_list("pk", flat=True)
    )
    listed = api.get(reverse("api:training-assignment-list"), {"overdue": "true"}).json()
    assert listed["results"][0]["overdue"] is True
    for bad in ({"overdue": "maybe"}, {"status": "shut"}, {"site": ""}, {"user": ""}):
        assert api.get(reverse("api:training-assignment-list"), bad).status_code == 400


def test_the_record_and_catalogue_filters(world):
    services.assessment_record(
        actor=world.trainer,
        trainee=world.operator,
        item=world.assessment,
        result="not_yet_competent",
        credentials=signing(world.trainer),
    )
    api = token_client(world.qa)

    def records(**params: str) -> list[str]:
        response = api.get(reverse("api:training-record-list"), params)
        assert response.status_code == 200, response.content
        return [f"{r['user']['username']}:{r['item']['code']}" for r in response.json()["results"]]

    assert records(user="operator", item="PA-ASEPTIC") == ["operator:PA-ASEPTIC"]
    assert records(method="assessed") == ["operator:PA-ASEPTIC"]
    assert records(trainer="trainer") == ["operator:PA-ASEPTIC"]
    # The accountability item was entered from paper a day ago.
    hour_ago = (timezone.now() - dt.timedelta(hours=1)).isoformat()
    assert records(user="operator", completed_after=hour_ago) == [
        "operator:PA-ASEPTIC",
        "operator:GXP-IND",
    ]
    assert records(user="operator", completed_before=hour_ago) == ["operator:DI-ESIG"]
    assert (
        api.get(reverse("api:training-record-list"), {"completed_after": "2026-01-01"}).status_code
        == 400
    )
    row = api.get(reverse("api:training-record-list"), {"method": "assessed"}).json()["results"][0]
    assert (row["result"], row["passed"]) == ("not_yet_competent", False)

    def codes(name: str, **params: str) -> list[str]:
        response = api.get(reverse(name), params)
        assert response.status_code == 200, response.content
        return [r.get("code") or r.get("number") for r in response.json()["results"]]

    assert codes("api:training-item-list", kind="assessment") == ["PA-ASEPTIC"]
    assert codes("api:training-item-list", active="false") == []
    assert codes("api:procedure-list", q="aseptic") == ["SOP-MFG-001"]
    assert codes("api:procedure-list", number="sop-mfg-001") == ["SOP-MFG-001"]
    versions = api.get(reverse("api:procedure-version-list"), {"status": "superseded"}).json()
    assert versions["results"] == []
    curricula = api.get(reverse("api:curriculum-list"), {"item": "PA-ASEPTIC"}).json()["results"]
    assert [c["id"] for c in curricula] == [world.curriculum.pk]
    assert api.get(reverse("api:curriculum-list"), {"everywhere": "true"}).json()["results"] == []
    assert api.get(reverse("api:training-item-list"), {"kind": "nope"}).status_code == 400


#
# Retries and query counts
#


def test_a_retried_acknowledgement_never_signs_twice(world):
    """An integrator's or a flaky laptop's retry replays the first answer (design §6)."""
    api = token_client(world.operator)
    body = {"item": "GXP-REF", **signature_fields(world.operator, meaning="acknowledged")}
    first = api.post(reverse("api:training-record-acknowledge"), body, HTTP_IDEMPOTENCY_KEY="ack-1")
    again = api.post(reverse("api:training-record-acknowledge"), body, HTTP_IDEMPOTENCY_KEY="ack-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["id"] == again.json()["id"]
    assert again["Idempotent-Replayed"] == "true"
    changed = api.post(
        reverse("api:training-record-acknowledge"),
        {**body, "reason": "other"},
        HTTP_IDEMPOTENCY_KEY="ack-1",
    )
    assert_problem(changed, 409, "idempotency_key_reused")
    assert TrainingRecord.objects.filter(user=world.operator, item__code="GXP-REF").count() == 1
    assert (
        ElectronicSignature.objects.filter(
            signer=world.operator, target_id=str(first.json()["id"])
        ).count()
        == 1
    )


def test_a_retried_version_upload_never_issues_twice(persona, world):
    api = token_client(world.qa)
    url = reverse("api:procedure-versions", args=[world.procedure.pk])
    body = _version_body(persona, "qa")
    first = api.post(url, body, format="multipart", HTTP_IDEMPOTENCY_KEY="v2")
    body["file"].seek(0)
    again = api.post(url, body, format="multipart", HTTP_IDEMPOTENCY_KEY="v2")
    assert (first.status_code, again.status_code) == (201, 201), again.content
    assert first.json()["id"] == again.json()["id"]
    assert world.procedure.versions.count() == 2


def test_a_retried_assignment_never_assigns_twice(world):
    api = token_client(world.trainer)
    body = {
        "user": "operator2",
        "item": "GXP-REF",
        "due_on": _day(10).isoformat(),
        "reason": "refresher",
    }
    first = api.post(reverse("api:training-assignment-list"), body, HTTP_IDEMPOTENCY_KEY="a-1")
    again = api.post(reverse("api:training-assignment-list"), body, HTTP_IDEMPOTENCY_KEY="a-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["id"] == again.json()["id"]
    assert Assignment.objects.filter(user=world.operator2, item__code="GXP-REF").count() == 1


def _queries(api: APIClient, url: str, params: dict[str, str] | None = None) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = api.get(url, params or {})
        assert response.status_code == 200, response.content
    return len(queries)


def _more_training(world: World, n: int) -> None:
    """More people, procedures, versions, curricula, records and assignments."""
    for i in range(n):
        person = make_persona("operator", username=f"op{i}")
        membership_add(
            actor=world.qa, site=world.lds1, user=person, role=SiteRole.SITE_OPERATOR, reason="x"
        )
        services.acknowledge(actor=person, item=item("GXP-IND"), credentials=signing(person))
        services.assessment_record(
            actor=world.trainer,
            trainee=person,
            item=world.assessment,
            result="competent",
            notes="ok",
            credentials=signing(world.trainer),
        )
        services.record_enter(
            actor=world.trainer,
            trainee=person,
            item=item("SOP-MFG-001"),
            version=world.v1,
            completed_on=_day(-1),
            notes="paper",
            credentials=signing(world.trainer),
        )
        procedure = make_procedure(world.qa, number=f"SOP-EXTRA-{i}", title=f"Extra {i}")
        issue(world.qa, procedure, effective_on=_day(5))
        if i < 2:
            services.curriculum_create(
                actor=world.trainer,
                role="trainer",
                site=(None, world.man2)[i],
                title=f"trainers {i}",
                reason="x",
            )


@pytest.mark.parametrize(
    "name",
    [
        "api:procedure-list",
        "api:procedure-version-list",
        "api:training-item-list",
        "api:curriculum-list",
        "api:training-assignment-list",
        "api:training-record-list",
        "api:training-matrix-list",
    ],
)
def test_a_list_costs_the_same_queries_for_one_or_many(world, name):
    api = token_client(world.qa)
    api.get(reverse(name))  # warm the token's first-use write
    one = _queries(api, reverse(name))
    _more_training(world, 3)
    assert _queries(api, reverse(name)) == one


def test_the_matrix_and_the_verdict_cost_the_same_queries_for_few_or_many(world):
    api = token_client(world.lead)
    matrix = reverse("api:training-matrix-detail", args=["LDS1"])
    question = {"user": "operator", "site": "LDS1", "role": "site_operator"}
    api.get(matrix)
    few = (_queries(api, matrix), _queries(api, reverse("api:qualification-list"), question))
    _more_training(world, 3)
    many = (_queries(api, matrix), _queries(api, reverse("api:qualification-list"), question))
    assert many == few
    rows = api.get(matrix).json()["rows"]
    assert len(rows) == 5
