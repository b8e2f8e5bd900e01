"""The training pages (issue 7 §6 and §7): who may open and post what (permission matrices), each
form's happy path, the refusals with nothing written (a superseded version 409, a trainer
assessing themselves 422, an assessment without a result 400), the matrix and its CSV, the
matrix page's fixed query count, and the panels on the home and site pages (TR-01…TR-07).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoDbBlocker

from controlsite.accounts.models import User
from controlsite.audit.context import audit_context
from controlsite.audit.models import AuditEvent
from controlsite.signatures.models import ElectronicSignature
from sites import services as site_services
from sites.choices import SiteRole, SiteStatus
from sites.models import Site
from tests.masterfile.helpers import signing
from tests.matrix import ANON, Matrix, only
from tests.personas import ALL_PERSONAS, PASSWORD, login, make_persona
from tests.sites.helpers import make_site
from tests.training.helpers import curriculum, issue, item, make_procedure, sop_file
from tests.worlds import media_copy, refetched, shared_rows
from training import selectors, services
from training.choices import AssignmentStatus, CellState, ItemKind, RecordMethod
from training.models import (
    Assignment,
    Curriculum,
    Procedure,
    ProcedureVersion,
    Requirement,
    TrainingItem,
    TrainingRecord,
)
from training.panels import compliance_panel, my_training_panel, site_compliance_context

pytestmark = pytest.mark.django_db

Persona = Callable[[str], User]


#
# A site with people, a procedure in force and a curriculum: built once for the module, each
# test's changes rolled back (tests/worlds.py)
#


@dataclasses.dataclass
class Place:
    qa: User
    trainer: User
    lead: User
    operator: User
    site: Site
    procedure: Procedure
    v1: ProcedureVersion
    sop: TrainingItem
    curriculum: Curriculum


@dataclasses.dataclass(frozen=True)
class SharedPlace:
    place: Place
    media: Path


def _build_place() -> Place:
    """LDS1 (active) with the persona site lead and operator; SOP-MFG-001 v1 in force; the
    operators' curriculum at LDS1 needs the SOP and the GxP induction. Every persona is made
    here, once: the `persona` fixture finds them by username."""
    people = {name: make_persona(name) for name in ALL_PERSONAS}
    qa, trainer = people["qa"], people["trainer"]
    lead, operator = people["site_lead"], people["operator"]
    site = make_site(qa, "LDS1")
    for user, role in ((lead, SiteRole.SITE_LEAD), (operator, SiteRole.SITE_OPERATOR)):
        site_services.membership_add(actor=qa, site=site, user=user, role=role, reason="joins")
    procedure = make_procedure(qa)
    v1 = issue(qa, procedure, summary="First issue.")
    sop = procedure.training_item
    made = curriculum(trainer, "site_operator", site, sop, item("GXP-IND"))
    return Place(qa, trainer, lead, operator, site, procedure, v1, sop, made)


@pytest.fixture(scope="module")
def _shared_place(
    django_db_setup: None,
    django_db_blocker: DjangoDbBlocker,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SharedPlace]:
    media = tmp_path_factory.mktemp("training-pages-media")
    with shared_rows(django_db_blocker):
        with django_db_blocker.unblock(), override_settings(MEDIA_ROOT=media):
            built = _build_place()
        yield SharedPlace(built, media)


@pytest.fixture(autouse=True)
def _media(settings: Any, tmp_path: Path, _shared_place: SharedPlace) -> None:
    """Procedure files go to a directory of the test's own, which starts as a copy of the
    shared place's files."""
    settings.MEDIA_ROOT = media_copy(_shared_place.media, tmp_path)


@pytest.fixture
def place(db: None, _shared_place: SharedPlace) -> Place:
    """The shared place as this test finds it: every record read again from the database."""
    return refetched(_shared_place.place)


def sig(
    user: User, prefix: str, meaning: str, reason: str = "signed in the test"
) -> dict[str, str]:
    """The signature dialog's fields: the first signing of a session asks for the username too;
    a TOTP code where the person has an authenticator."""
    credentials = signing(user)
    fields = {
        f"{prefix}-username": user.get_username(),
        f"{prefix}-password": PASSWORD,
        f"{prefix}-meaning": meaning,
        f"{prefix}-reason": reason,
    }
    if credentials.otp:
        fields[f"{prefix}-otp"] = credentials.otp
    return fields


def ack(user: User, sop: TrainingItem, version: int | None, **extra: str) -> dict[str, str]:
    fields = sig(user, f"ack{sop.pk}", "acknowledged", "read and understood")
    if version is not None:
        fields[f"ack{sop.pk}-version"] = str(version)
    fields.update(extra)
    return fields


def _url(name: str, *args: Any) -> str:
    return reverse(f"training:{name}", args=args)


def _counts() -> tuple[int, int, int]:
    return (
        TrainingRecord.objects.count(),
        ElectronicSignature.objects.count(),
        Assignment.objects.count(),
    )


def _messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def _overdue(user: User, code: str, *, days: int) -> None:
    """Move an open assignment's due date into the past, as if time had passed."""
    assignment = Assignment.objects.get(user=user, item__code=code, status=AssignmentStatus.OPEN)
    assignment.due_on = timezone.localdate() - dt.timedelta(days=days)
    with audit_context(reason="test: the due date has passed"):
        assignment.save(update_fields=["due_on", "updated_at"])


def _in(days: int) -> str:
    return (timezone.localdate() + dt.timedelta(days=days)).isoformat()


#
# Who may open what
#

EVERYONE_SIGNED_IN = only({}, others=200, anonymous=302)
# QA, trainers, QPs and inspectors read every site's training; a site lead their own sites'.
READS_SITE_TRAINING = only(
    {"qa": 200, "trainer": 200, "qp": 200, "inspector": 200, "site_lead": 200},
    others=404,
    anonymous=302,
)
# A person's own record, their site lead's view of it, and those who read all training.
READS_OPERATOR_RECORD = only(
    {"qa": 200, "trainer": 200, "qp": 200, "inspector": 200, "site_lead": 200, "operator": 200},
    others=404,
    anonymous=302,
)

MY = Matrix("training:my", EVERYONE_SIGNED_IN)
READ = Matrix("training:read", EVERYONE_SIGNED_IN)
PROCEDURES = Matrix("training:procedures", EVERYONE_SIGNED_IN)
PROCEDURE = Matrix("training:procedure-detail", EVERYONE_SIGNED_IN)
VERSION_FILE = Matrix("training:version-file", EVERYONE_SIGNED_IN)
ITEMS = Matrix("training:items", EVERYONE_SIGNED_IN)
ITEM = Matrix("training:item-detail", EVERYONE_SIGNED_IN)
CURRICULA = Matrix("training:curricula", EVERYONE_SIGNED_IN)
CURRICULUM = Matrix("training:curriculum-detail", READS_OPERATOR_RECORD)
ASSIGNMENTS = Matrix("training:assignments", EVERYONE_SIGNED_IN)
RECORDS = Matrix("training:records", EVERYONE_SIGNED_IN)
RECORD = Matrix("training:record-detail", READS_OPERATOR_RECORD)
MATRIX_INDEX = Matrix("training:matrix-index", EVERYONE_SIGNED_IN)
SITE_MATRIX = Matrix("training:matrix", READS_SITE_TRAINING)
# Whoever sees the site, or its matrix.
SITE_COMPLIANCE = Matrix(
    "training:site-compliance",
    only(
        {"integrator": 404, "sysadmin": 404, "outsider": 404},
        others=200,
        anonymous=302,
    ),
)


def _operator_record(place: Place) -> TrainingRecord:
    return services.acknowledge(
        actor=place.operator, item=place.sop, version=place.v1, credentials=signing(place.operator)
    )


PAGES: dict[str, Callable[[Place], str]] = {
    MY.name: lambda pl: _url("my"),
    READ.name: lambda pl: _url("read", pl.sop.code),
    PROCEDURES.name: lambda pl: _url("procedures"),
    PROCEDURE.name: lambda pl: _url("procedure-detail", pl.procedure.number),
    VERSION_FILE.name: lambda pl: _url("version-file", pl.procedure.number, 1),
    ITEMS.name: lambda pl: _url("items"),
    ITEM.name: lambda pl: _url("item-detail", "GXP-IND"),
    CURRICULA.name: lambda pl: _url("curricula"),
    CURRICULUM.name: lambda pl: _url("curriculum-detail", pl.curriculum.pk),
    ASSIGNMENTS.name: lambda pl: _url("assignments"),
    RECORDS.name: lambda pl: _url("records"),
    RECORD.name: lambda pl: _url("record-detail", _operator_record(pl).pk),
    MATRIX_INDEX.name: lambda pl: _url("matrix-index"),
    SITE_MATRIX.name: lambda pl: _url("matrix", pl.site.code),
    SITE_COMPLIANCE.name: lambda pl: _url("site-compliance", pl.site.code),
}
PAGE_CASES = [
    pytest.param(matrix, who, status, id=f"{matrix.name.split(':')[1]}-{who}-{status}")
    for matrix in (
        MY,
        READ,
        PROCEDURES,
        PROCEDURE,
        VERSION_FILE,
        ITEMS,
        ITEM,
        CURRICULA,
        CURRICULUM,
        ASSIGNMENTS,
        RECORDS,
        RECORD,
        MATRIX_INDEX,
        SITE_MATRIX,
        SITE_COMPLIANCE,
    )
    for who, status in matrix.expected.items()
]


@pytest.mark.parametrize(("matrix", "who", "expected"), PAGE_CASES)
def test_who_may_open_each_training_page(place, browser_as, matrix, who, expected):
    url = PAGES[matrix.name](place)
    response = browser_as(who).get(url)
    response.close()  # a file download is streamed from an open file
    assert response.status_code == expected, (url, who)
    if expected == 302:
        assert "/accounts/login/" in response["Location"]


@pytest.mark.parametrize(("who", "expected"), SITE_MATRIX.cases())
def test_the_matrix_csv_is_as_private_as_the_matrix(place, browser_as, who, expected):
    response = browser_as(who).get(_url("matrix", place.site.code), {"format": "csv"})
    assert response.status_code == expected
    if expected == 200:
        assert response["Content-Type"].startswith("text/csv")


#
# Who may post what: the service's refusal is the page's (403); nothing is written
#


def _posted(allowed: tuple[str, ...], *, hidden: tuple[str, ...] = ()) -> dict[str, int]:
    table = only(dict.fromkeys(allowed, 302), others=403, anonymous=302)
    table.update(dict.fromkeys(hidden, 404))
    return table


QA_ONLY = _posted(("qa",))
TRAINERS = _posted(("qa", "trainer"))
NOT_SEEN = ("integrator", "sysadmin", "outsider")
# Everyone who signs acknowledges for themselves; those who never sign are refused.
SIGNERS = _posted(("qa", "qp", "site_lead", "operator", "trainer"))

PROCEDURE_CREATE = Matrix("training:procedure-create", QA_ONLY)
VERSION_ISSUE = Matrix("training:version-issue", QA_ONLY)
ITEM_CREATE = Matrix("training:item-create", TRAINERS)
ITEM_EDIT = Matrix("training:item-edit", TRAINERS)
CURRICULUM_CREATE = Matrix("training:curriculum-create", TRAINERS)
REQUIREMENT_ADD = Matrix("training:requirement-add", _posted(("qa", "trainer"), hidden=NOT_SEEN))
REQUIREMENT_REMOVE = Matrix(
    "training:requirement-remove", _posted(("qa", "trainer"), hidden=NOT_SEEN)
)
ASSIGNMENT_CREATE = Matrix("training:assignment-create", TRAINERS)
RECORD_ASSESS = Matrix("training:record-assess", TRAINERS)
RECORD_ENTER = Matrix("training:record-enter", TRAINERS)
ACKNOWLEDGE = Matrix("training:acknowledge", SIGNERS)


def _signer(place: Place, who: str, persona: Persona) -> User:
    return persona(who) if who != ANON else place.qa


def _procedure_create(pl: Place, user: User) -> tuple[str, dict[str, Any]]:
    return _url("procedure-create"), {
        "procedure-number": "SOP-QC-007",
        "procedure-title": "Endotoxin testing",
        "procedure-due_days": "21",
        "procedure-reason": "new method",
    }


def _version_issue(pl: Place, user: User) -> tuple[str, dict[str, Any]]:
    return _url("version-issue", pl.procedure.number), {
        "version-effective_on": _in(0),
        "version-change_summary": "Hold time shortened to 30 minutes.",
        "version-file": sop_file("SOP-MFG-001-v2.pdf", "v2"),
        **sig(user, "issue", "approved", "v2 approved"),
    }


def _item_create(pl: Place, user: User) -> tuple[str, dict[str, Any]]:
    return _url("item-create"), {
        "item-code": "ASSESS-FILL",
        "item-title": "Aseptic filling, observed",
        "item-kind": "assessment",
        "item-due_days": "30",
        "item-reason": "practical sign-off",
    }


def _item_edit(pl: Place, user: User) -> tuple[str, dict[str, Any]]:
    return _url("item-edit", "GXP-IND"), {
        "edit-title": "GxP induction for new starters",
        "edit-description": "",
        "edit-validity_months": "",
        "edit-due_days": "10",
        "edit-active": "on",
        "edit-reason": "clearer title",
    }


def _curriculum_create(pl: Place, user: User) -> tuple[str, dict[str, Any]]:
    return _url("curriculum-create"), {
        "curriculum-role": "site_lead",
        "curriculum-site": pl.site.code,
        "curriculum-title": "LDS1 site leads",
        "curriculum-reason": "new curriculum",
    }


def _requirement_add(pl: Place, user: User) -> tuple[str, dict[str, Any]]:
    return _url("requirement-add", pl.curriculum.pk), {
        "add-item": "GXP-REF",
        "add-reason": "yearly refresher",
    }


def _requirement_remove(pl: Place, user: User) -> tuple[str, dict[str, Any]]:
    requirement = Requirement.objects.get(curriculum=pl.curriculum, item__code="GXP-IND")
    prefix = f"remove{requirement.pk}"
    return _url("requirement-remove", pl.curriculum.pk, requirement.pk), {
        f"{prefix}-reason": "covered elsewhere"
    }


def _assignment_create(pl: Place, user: User) -> tuple[str, dict[str, Any]]:
    return _url("assignment-create"), {
        "assign-user": pl.operator.get_username(),
        "assign-item": "GXP-REF",
        "assign-due_on": _in(14),
        "assign-site": pl.site.code,
        "assign-reason": "retraining after DEV-2026-0003",
    }


def _record_assess(pl: Place, user: User) -> tuple[str, dict[str, Any]]:
    return _url("record-assess"), {
        "assess-user": pl.operator.get_username(),
        "assess-item": "GXP-IND",
        "assess-result": "competent",
        "assess-notes": "Gowning observed.",
        **sig(user, "assess", "reviewed", "observed"),
    }


def _record_enter(pl: Place, user: User) -> tuple[str, dict[str, Any]]:
    return _url("record-enter"), {
        "enter-user": pl.operator.get_username(),
        "enter-item": "GXP-IND",
        "enter-completed_on": _in(-20),
        "enter-notes": "Classroom session, attendance sheet QF-12 p. 3.",
        **sig(user, "enter", "verified", "paper record checked"),
    }


def _acknowledge(pl: Place, user: User) -> tuple[str, dict[str, Any]]:
    induction = item("GXP-IND")
    return _url("acknowledge", induction.code), ack(user, induction, None)


POSTS: dict[str, Callable[[Place, User], tuple[str, dict[str, Any]]]] = {
    PROCEDURE_CREATE.name: _procedure_create,
    VERSION_ISSUE.name: _version_issue,
    ITEM_CREATE.name: _item_create,
    ITEM_EDIT.name: _item_edit,
    CURRICULUM_CREATE.name: _curriculum_create,
    REQUIREMENT_ADD.name: _requirement_add,
    REQUIREMENT_REMOVE.name: _requirement_remove,
    ASSIGNMENT_CREATE.name: _assignment_create,
    RECORD_ASSESS.name: _record_assess,
    RECORD_ENTER.name: _record_enter,
    ACKNOWLEDGE.name: _acknowledge,
}
POST_CASES = [
    pytest.param(matrix, who, status, id=f"{matrix.name.split(':')[1]}-{who}-{status}")
    for matrix in (
        PROCEDURE_CREATE,
        VERSION_ISSUE,
        ITEM_CREATE,
        ITEM_EDIT,
        CURRICULUM_CREATE,
        REQUIREMENT_ADD,
        REQUIREMENT_REMOVE,
        ASSIGNMENT_CREATE,
        RECORD_ASSESS,
        RECORD_ENTER,
        ACKNOWLEDGE,
    )
    for who, status in matrix.expected.items()
]


@pytest.mark.parametrize(("matrix", "who", "expected"), POST_CASES)
def test_who_may_post_each_training_form(persona, place, browser_as, matrix, who, expected):
    url, data = POSTS[matrix.name](place, _signer(place, who, persona))
    before = AuditEvent.objects.count()
    response = browser_as(who).post(url, data)
    assert response.status_code == expected, (who, _messages(response))
    if expected == 302 and who != ANON:
        assert AuditEvent.objects.count() > before  # the change is on the audit trail
    elif who == ANON:
        assert "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("name", sorted(POSTS))
def test_writes_refuse_get(client_for, place, name):
    url, _data = POSTS[name](place, place.qa)
    assert client_for("qa").get(url).status_code == 405


def test_writes_need_the_csrf_token(place):
    client = Client(enforce_csrf_checks=True)
    login(client, place.operator)
    induction = item("GXP-IND")
    response = client.post(
        _url("acknowledge", induction.code), ack(place.operator, induction, None)
    )
    assert response.status_code == 403
    assert not TrainingRecord.objects.filter(user=place.operator, item=induction).exists()


#
# My training: read and sign (TR-03, TR-07)
#


def test_my_training_lists_open_items_soonest_first_with_a_read_and_sign_button(client_for, place):
    page = client_for("operator").get(_url("my")).content.decode()
    assert "SOP-MFG-001" in page and "GXP-IND" in page
    assert page.index("GXP-IND") < page.index("SOP-MFG-001")  # 14 days allowed against 30
    assert _url("read", "SOP-MFG-001") in page and "Read and sign" in page


def test_an_overdue_item_is_flagged_on_my_training(client_for, place):
    _overdue(place.operator, "GXP-IND", days=2)
    page = client_for("operator").get(_url("my")).content.decode()
    assert "todo-overdue" in page and "1 overdue" in page


def test_the_read_page_shows_the_file_what_changed_and_the_dialog(client_for, place):
    page = client_for("operator").get(_url("read", place.sop.code)).content.decode()
    assert _url("version-file", "SOP-MFG-001", 1) in page
    assert "First issue." in page
    assert "Electronic signature — Acknowledged" in page
    assert f'name="ack{place.sop.pk}-version" value="1"' in page


def test_an_operator_reads_and_signs_an_sop_and_the_assignment_closes(client_for, place):
    client = client_for("operator")
    response = client.post(_url("acknowledge", place.sop.code), ack(place.operator, place.sop, 1))
    assert response.status_code == 302 and response["Location"] == _url("my")
    record = TrainingRecord.objects.get(user=place.operator, item=place.sop)
    assert record.method == RecordMethod.ACKNOWLEDGED and record.procedure_version == place.v1
    assert record.signature is not None and record.signature.meaning == "acknowledged"
    assignment = Assignment.objects.get(user=place.operator, item=place.sop)
    assert assignment.status == AssignmentStatus.COMPLETED and assignment.record == record
    page = client.get(_url("my")).content.decode()
    assert "SOP-MFG-001 v1 signed as read and understood." in page
    assert "Omar Okafor, <em>Acknowledged</em>" in page


def test_acknowledging_a_superseded_version_is_refused_and_nothing_is_written(client_for, place):
    """The page showed v1; QA issued v2 before the operator signed: 409, no record, no
    signature (issue 7, bad input)."""
    client = client_for("operator")
    assert client.get(_url("read", place.sop.code)).status_code == 200
    issue(place.qa, place.procedure, summary="v2")
    before = _counts()
    response = client.post(_url("acknowledge", place.sop.code), ack(place.operator, place.sop, 1))
    assert response.status_code == 409
    assert "superseded" in response.content.decode()
    assert _counts() == before
    # The page now offers v2, which the operator may sign.
    again = client.get(_url("read", place.sop.code)).content.decode()
    assert f'name="ack{place.sop.pk}-version" value="2"' in again


def test_a_wrong_password_refuses_the_acknowledgement(client_for, place):
    before = _counts()
    data = ack(place.operator, place.sop, 1, **{f"ack{place.sop.pk}-password": "wrong"})
    response = client_for("operator").post(_url("acknowledge", place.sop.code), data)
    assert response.status_code == 422
    assert "The password is not correct." in response.content.decode()
    assert _counts() == before


def test_an_unknown_version_is_bad_input(client_for, place):
    before = _counts()
    response = client_for("operator").post(
        _url("acknowledge", place.sop.code), ack(place.operator, place.sop, 9)
    )
    assert response.status_code == 400
    assert _counts() == before


def test_an_unknown_item_is_404(client_for, place):
    assert client_for("operator").get(_url("read", "NOPE-1")).status_code == 404


def test_the_inspector_reads_but_is_offered_no_signature(client_for, place):
    page = client_for("inspector").get(_url("read", place.sop.code)).content.decode()
    assert "Electronic signature" not in page and "do not sign" in page


#
# Procedures (TR-03)
#


def test_qa_registers_a_procedure_and_issues_a_version_with_a_file(client_for, place):
    client = client_for("qa")
    response = client.post(*_procedure_create(place, place.qa))
    assert response.status_code == 302
    assert response["Location"] == _url("procedure-detail", "SOP-QC-007")
    url, data = _version_issue(place, place.qa)
    url = _url("version-issue", "SOP-QC-007")
    response = client.post(url, {**data, "version-file": sop_file("qc7.pdf", "qc7")})
    assert response.status_code == 302, _messages(response)
    version = ProcedureVersion.objects.get(procedure__number="SOP-QC-007")
    assert version.number == 1 and version.approval_signature is not None
    page = client.get(_url("procedure-detail", "SOP-QC-007")).content.decode()
    assert (
        "Effective" in page and "qc7" in page and "Approved by <strong>Quinn Adams</strong>" in page
    )
    download = client.get(_url("version-file", "SOP-QC-007", 1))
    assert download.status_code == 200
    assert download.getvalue().startswith(b"%PDF")
    download.close()


def test_a_new_version_supersedes_the_old_and_assigns_the_operator(client_for, place):
    services.acknowledge(
        actor=place.operator, item=place.sop, version=place.v1, credentials=signing(place.operator)
    )
    url, data = _version_issue(place, place.qa)
    assert client_for("qa").post(url, data).status_code == 302
    place.v1.refresh_from_db()
    assert place.v1.status == "superseded"
    assert Assignment.objects.filter(
        user=place.operator,
        item=place.sop,
        status=AssignmentStatus.OPEN,
        procedure_version__number=2,
    ).exists()
    listing = client_for("operator").get(_url("procedures")).content.decode()
    assert "v2" in listing


def test_a_version_without_a_file_or_in_the_past_is_refused(client_for, place):
    client = client_for("qa")
    url, data = _version_issue(place, place.qa)
    data.pop("version-file")
    before = ProcedureVersion.objects.count()
    assert client.post(url, data).status_code == 400
    _url2, data = _version_issue(place, place.qa)
    data["version-effective_on"] = _in(-1)
    response = client.post(url, data)
    assert response.status_code == 400
    assert "cannot be in the past" in response.content.decode()
    assert ProcedureVersion.objects.count() == before


def test_a_version_file_is_404_when_there_is_no_such_version(client_for, place):
    assert client_for("operator").get(_url("version-file", "SOP-MFG-001", 7)).status_code == 404
    assert client_for("operator").get(_url("version-file", "SOP-NONE", 1)).status_code == 404


def test_a_duplicate_procedure_number_is_refused(client_for, place):
    response = client_for("qa").post(
        _url("procedure-create"),
        {
            "procedure-number": "sop-mfg-001",
            "procedure-title": "Again",
            "procedure-due_days": "30",
            "procedure-reason": "dup",
        },
    )
    assert response.status_code == 409
    assert Procedure.objects.count() == 1


#
# Items and curricula (TR-01, TR-05)
#


def test_a_trainer_creates_and_retires_an_item(client_for, place):
    client = client_for("trainer")
    response = client.post(*_item_create(place, place.trainer))
    assert response["Location"] == _url("item-detail", "ASSESS-FILL")
    response = client.post(
        _url("item-edit", "ASSESS-FILL"),
        {
            "edit-title": "Aseptic filling, observed",
            "edit-due_days": "30",
            "edit-reason": "method replaced",
        },
    )
    assert response.status_code == 302
    assert TrainingItem.objects.get(code="ASSESS-FILL").active is False
    page = client.get(_url("items")).content.decode()
    assert "Retired" in page


def test_the_accountability_item_cannot_be_retired(client_for, place):
    response = client_for("qa").post(
        _url("item-edit", "DI-ESIG"),
        {"edit-title": "Data integrity", "edit-due_days": "0", "edit-reason": "try"},
    )
    assert response.status_code == 409
    assert TrainingItem.objects.get(code="DI-ESIG").active is True


def test_an_item_needs_a_reason(client_for, place):
    url, data = _item_create(place, place.trainer)
    data.pop("item-reason")
    assert client_for("trainer").post(url, data).status_code == 400
    assert not TrainingItem.objects.filter(code="ASSESS-FILL").exists()


def test_a_curriculum_item_is_added_and_removed_with_a_reason(client_for, place):
    client = client_for("trainer")
    assert client.post(*_requirement_add(place, place.trainer)).status_code == 302
    assert Assignment.objects.filter(
        user=place.operator, item__code="GXP-REF", status=AssignmentStatus.OPEN
    ).exists()
    url, data = _requirement_remove(place, place.trainer)
    assert client.post(url, data).status_code == 302
    page = client.get(_url("curriculum-detail", place.curriculum.pk)).content.decode()
    assert "Removed items" in page and "removed by Tess Turner" in page
    # Without a reason nothing is removed.
    ref = Requirement.objects.get(curriculum=place.curriculum, item__code="GXP-REF")
    response = client.post(_url("requirement-remove", place.curriculum.pk, ref.pk), {})
    assert response.status_code == 400
    ref.refresh_from_db()
    assert ref.removed_at is None


def test_a_second_curriculum_for_the_same_role_and_site_is_refused(client_for, place):
    data = {
        "curriculum-role": "site_operator",
        "curriculum-site": place.site.code,
        "curriculum-title": "Again",
        "curriculum-reason": "dup",
    }
    assert client_for("qa").post(_url("curriculum-create"), data).status_code == 409
    assert Curriculum.objects.count() == 1


#
# Assignments (TR-03)
#


def _shown(response: Any) -> set[tuple[str, str]]:
    return {
        (r["assignment"].user.get_username(), r["assignment"].item.code)
        for r in response.context["rows"]
    }


def test_assignments_filter_by_open_overdue_site_and_person(client_for, persona, place):
    other = make_persona("operator", username="operator2")
    elsewhere = make_site(place.qa, "MAN2", SiteStatus.ACTIVE)
    site_services.membership_add(
        actor=place.qa, site=elsewhere, user=other, role=SiteRole.SITE_OPERATOR, reason="joins"
    )
    services.assignment_create(
        actor=place.trainer,
        user=other,
        item=item("GXP-REF"),
        due_on=timezone.localdate(),
        site=elsewhere,
        reason="retraining",
    )
    _overdue(place.operator, "GXP-IND", days=1)
    client = client_for("qa")
    overdue = client.get(_url("assignments"), {"show": "overdue"})
    assert _shown(overdue) == {("operator", "GXP-IND")}
    assert "row-overdue" in overdue.content.decode()
    mine = _shown(client.get(_url("assignments"), {"person": "operator"}))
    assert mine == {("operator", "GXP-IND"), ("operator", "SOP-MFG-001")}
    assert _shown(client.get(_url("assignments"), {"site": "man2"})) == {("operator2", "GXP-REF")}
    # A site lead sees the people at their site, an operator only themselves.
    assert _shown(client_for("site_lead").get(_url("assignments"))) == mine
    assert _shown(login(Client(), other).get(_url("assignments"))) == {("operator2", "GXP-REF")}


def test_an_assignment_in_the_past_is_refused(client_for, place):
    url, data = _assignment_create(place, place.trainer)
    data["assign-due_on"] = _in(-3)
    before = Assignment.objects.count()
    assert client_for("trainer").post(url, data).status_code == 400
    assert Assignment.objects.count() == before


#
# Records (TR-01, TR-05): assessments and paper records
#


def test_a_trainer_records_an_assessment_and_the_record_shows_the_signature(client_for, place):
    client = client_for("trainer")
    response = client.post(*_record_assess(place, place.trainer))
    assert response.status_code == 302, _messages(response)
    record = TrainingRecord.objects.get(user=place.operator, item__code="GXP-IND")
    assert response["Location"] == _url("record-detail", record.pk)
    assert (record.method, record.result, record.trainer) == (
        "assessed",
        "competent",
        place.trainer,
    )
    page = client.get(response["Location"]).content.decode()
    assert "Tess Turner" in page and "Reviewed" in page and "UTC" in page and "Valid" in page
    assert "Gowning observed." in page


def test_a_trainer_cannot_assess_themselves(client_for, place):
    """Self-assessment is a refused signature (422) and nothing is written (issue 7)."""
    url, data = _record_assess(place, place.trainer)
    data["assess-user"] = place.trainer.get_username()
    before = _counts()
    response = client_for("trainer").post(url, data)
    assert response.status_code == 422
    assert "cannot sign their own training record" in response.content.decode()
    assert _counts() == before


def test_an_assessment_without_a_result_is_refused(client_for, place):
    """No result: 400 and nothing is written (issue 7)."""
    url, data = _record_assess(place, place.trainer)
    data["assess-result"] = ""
    before = _counts()
    response = client_for("trainer").post(url, data)
    assert response.status_code == 400
    assert "Give the assessment" in response.content.decode()
    assert _counts() == before


def test_a_paper_record_is_entered_with_its_day(client_for, place):
    response = client_for("trainer").post(*_record_enter(place, place.trainer))
    assert response.status_code == 302, _messages(response)
    record = TrainingRecord.objects.get(user=place.operator, item__code="GXP-IND")
    assert record.method == RecordMethod.ENTERED
    assert timezone.localtime(record.completed_at).date() == timezone.localdate() - dt.timedelta(
        days=20
    )
    assert record.signature is not None and record.signature.meaning == "verified"


def test_a_paper_record_of_an_sop_names_the_version_read(client_for, place):
    url, data = _record_enter(place, place.trainer)
    data.update({"enter-item": "SOP-MFG-001", "enter-version": "1"})
    assert client_for("trainer").post(url, data).status_code == 302
    assert TrainingRecord.objects.get(item=place.sop).procedure_version == place.v1
    data.update({"enter-version": "5", **sig(place.trainer, "enter", "verified")})
    before = _counts()
    assert client_for("trainer").post(url, data).status_code == 400
    assert _counts() == before


def test_records_filter_by_person_and_item(client_for, place):
    _operator_record(place)
    services.record_enter(
        actor=place.trainer,
        trainee=place.lead,
        item=item("GXP-IND"),
        completed_on=timezone.localdate(),
        notes="paper",
        credentials=signing(place.trainer),
    )
    client = client_for("qa")

    def shown(response: Any) -> set[tuple[str, str]]:
        return {
            (r["record"].user.get_username(), r["record"].item.code)
            for r in response.context["rows"]
        }

    by_person = shown(client.get(_url("records"), {"person": "operator"}))
    assert ("operator", "SOP-MFG-001") in by_person
    assert {who for who, _ in by_person} == {"operator"}
    by_item = shown(client.get(_url("records"), {"item": "gxp-ind"}))
    assert by_item == {("site_lead", "GXP-IND")}
    # An operator sees only their own records, whatever the filter.
    assert not shown(client_for("operator").get(_url("records"), {"person": "site_lead"}))


#
# The training matrix (TR-05) and its CSV
#


def test_the_matrix_colours_each_cell_and_shows_the_compliance(client_for, place):
    _operator_record(place)
    response = client_for("qa").get(_url("matrix", place.site.code))
    page = response.content.decode()
    matrix = response.context["matrix"]
    states = {
        (row.user.get_username(), cell.item.code): cell.state
        for row in matrix.rows
        for cell in row.cells
    }
    assert states[("operator", "SOP-MFG-001")] == CellState.CURRENT
    assert states[("operator", "GXP-IND")] == CellState.MISSING
    assert states[("site_lead", "SOP-MFG-001")] == CellState.NOT_REQUIRED
    assert 'class="matrix-cell cell-ok" data-state="current"' in page
    assert 'class="matrix-cell cell-muted" data-state="missing"' in page
    for label in ("Current", "Due soon", "Overdue", "Missing"):
        assert label in page  # the legend
    assert f'aria-valuenow="{matrix.compliance}"' in page
    assert "?format=csv" in page


def test_the_matrix_marks_overdue_and_due_soon(client_for, place):
    _overdue(place.operator, "GXP-IND", days=3)
    _operator_record(place)  # v1 read; v2 comes into force in 10 days: due soon
    issue(place.qa, place.procedure, effective_on=timezone.localdate() + dt.timedelta(days=10))
    page = client_for("qa").get(_url("matrix", place.site.code)).content.decode()
    assert 'data-state="overdue"' in page and "cell-block" in page
    assert 'data-state="due_soon"' in page and "cell-warn" in page


def test_the_matrix_csv_has_a_row_per_person_and_a_column_per_item(client_for, place):
    record = _operator_record(place)
    response = client_for("site_lead").get(_url("matrix", place.site.code), {"format": "csv"})
    assert (
        "attachment;" in response["Content-Disposition"]
        and "LDS1" in response["Content-Disposition"]
    )
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    header, body = rows[0], rows[1:]
    assert header[:3] == ["Person", "Username", "Roles"] and header[-2:] == ["Held", "Required"]
    items = header[3:-2]
    assert items[0] == "DI-ESIG" and {"GXP-IND", "SOP-MFG-001"} <= set(items)
    by_user = {row[1]: dict(zip(items, row[3:-2], strict=True)) for row in body}
    assert set(by_user) == {"operator", "site_lead"}
    completed = timezone.localtime(record.completed_at).date().isoformat()
    assert by_user["operator"]["SOP-MFG-001"] == f"Current {completed}"
    due = Assignment.objects.get(user=place.operator, item__code="GXP-IND").due_on.isoformat()
    assert by_user["operator"]["GXP-IND"] == f"Missing {due}"
    assert by_user["site_lead"]["SOP-MFG-001"] == ""  # not required of a site lead
    assert by_user["operator"]["DI-ESIG"].startswith("Current ")


def test_the_matrix_csv_quotes_what_a_spreadsheet_would_run(client_for, place):
    place.operator.first_name = "=HYPERLINK(1)"
    with audit_context(reason="test: a hostile name"):
        place.operator.save(update_fields=["first_name"])
    response = client_for("qa").get(_url("matrix", place.site.code), {"format": "csv"})
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert any(row[0].startswith("'=HYPERLINK") for row in rows[1:])


def _join(place: Place, names: list[str]) -> None:
    """More operators at the site; every other one has read the SOP."""
    for i, name in enumerate(names):
        user = make_persona("operator", username=name)
        site_services.membership_add(
            actor=place.qa, site=place.site, user=user, role=SiteRole.SITE_OPERATOR, reason="joins"
        )
        if i % 2:
            services.acknowledge(
                actor=user, item=place.sop, version=place.v1, credentials=signing(user)
            )


def _queries(client: Client, url: str) -> int:
    client.get(url)  # warm the session and content types
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_the_matrix_runs_a_fixed_number_of_queries_as_people_are_added(client_for, place):
    """3 people, then 12: the same queries (design §8)."""
    _join(place, ["op000"])  # with the site lead and the operator: 3 people
    client = client_for("qa")
    url = _url("matrix", place.site.code)
    assert len(client.get(url).context["matrix"].rows) == 3
    small = _queries(client, url)
    small_csv = _queries(client, url + "?format=csv")
    _join(place, [f"op{i:03d}" for i in range(1, 10)])
    assert len(client.get(url).context["matrix"].rows) == 12
    assert _queries(client, url) == small
    assert _queries(client, url + "?format=csv") == small_csv


#
# Panels: the home dashboard and the site page (TR-06)
#


def test_your_training_panel_lists_the_persons_open_items_soonest_first(client_for, place):
    _overdue(place.operator, "SOP-MFG-001", days=1)
    home = client_for("operator").get(reverse("home")).content.decode()
    assert "Your training" in home and _url("my") in home
    assert home.index("SOP-MFG-001") < home.index("GXP-IND")  # overdue first
    assert 'class="todo-overdue"' in home and "1 overdue" in home
    # Nothing open: no panel.
    assert "Your training" not in client_for("inspector").get(reverse("home")).content.decode()


def test_the_compliance_panel_shows_each_site_lowest_first_for_those_who_see_all(client_for, place):
    full = make_site(place.qa, "MAN2", SiteStatus.ACTIVE)  # nobody works there: 100 %
    home = client_for("qa").get(reverse("home")).content.decode()
    assert "Training compliance" in home
    assert home.index(_url("matrix", "LDS1")) < home.index(_url("matrix", full.code))
    for who in ("trainer", "qp", "inspector"):
        assert "Training compliance" in client_for(who).get(reverse("home")).content.decode()
    for who in ("operator", "site_lead"):
        assert "Training compliance" not in client_for(who).get(reverse("home")).content.decode()


def test_the_compliance_panel_runs_a_fixed_number_of_queries(rf, place):
    request = rf.get("/")
    request.user = place.qa
    compliance_panel(request)  # warm the role cache
    with CaptureQueriesContext(connection) as small:
        ctx = compliance_panel(request)
    assert ctx is not None and ctx["sites"] == 1
    for code in ("MAN2", "BRS3", "GLA4"):
        site = make_site(place.qa, code, SiteStatus.ACTIVE)
        user = make_persona("operator", username=f"op-{code}")
        site_services.membership_add(
            actor=place.qa, site=site, user=user, role=SiteRole.SITE_OPERATOR, reason="joins"
        )
    request.user = User.objects.get(pk=place.qa.pk)
    compliance_panel(request)
    with CaptureQueriesContext(connection) as large:
        ctx = compliance_panel(request)
    assert ctx is not None and ctx["sites"] == 4
    assert len(large.captured_queries) == len(small.captured_queries)


def test_the_panels_agree_with_the_selectors(rf, place):
    request = rf.get("/")
    request.user = place.operator
    mine = my_training_panel(request)
    assert mine is not None and mine["total"] == len(selectors.todo_for(place.operator))
    request.user = place.qa
    figure = selectors.site_compliance([place.site.pk])[place.site.pk]
    site_ctx = site_compliance_context(request, place.site)
    assert site_ctx["c"] == figure and site_ctx["may_open"]
    request.user = place.operator
    assert not site_compliance_context(request, place.site)["may_open"]


def test_the_site_page_loads_its_training_compliance_with_a_link_to_the_matrix(client_for, place):
    """The site page's panel costs the page no query; its figure comes from the fragment
    (TR-06)."""
    figure = selectors.site_compliance([place.site.pk])[place.site.pk]
    assert figure.required and figure.pct < 100
    fragment_url = _url("site-compliance", place.site.code)
    client = client_for("qa")
    page = client.get(reverse("sites:detail", args=[place.site.code])).content.decode()
    assert 'id="site-panel-training"' in page and f'hx-get="{fragment_url}"' in page
    fragment = client.get(fragment_url, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in fragment
    assert f"{figure.pct} %" in fragment and f'aria-valuenow="{figure.pct}"' in fragment
    assert _url("matrix", place.site.code) in fragment
    # Without JavaScript the same figure is a page of its own.
    assert f"{figure.pct} %" in client.get(fragment_url).content.decode()
    # The operator sees their site's figure, not a matrix they may not open.
    own = client_for("operator").get(fragment_url, HTTP_HX_REQUEST="true").content.decode()
    assert f"{figure.pct} %" in own and _url("matrix", place.site.code) not in own


def test_the_items_list_shows_every_kind(client_for, place):
    page = client_for("operator").get(_url("items")).content.decode()
    for kind in (ItemKind.ACCOUNTABILITY, ItemKind.INDUCTION, ItemKind.REFRESHER, ItemKind.SOP):
        assert str(ItemKind(kind).label) in page
