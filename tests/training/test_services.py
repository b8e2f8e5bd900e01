"""Training services: procedures and versions, curricula, assignments, records, expiry and the
daily round (TR-01, TR-03, TR-04, TR-05, TR-07; 21 CFR 11.10(i)-(j))."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from controlsite.accounts.models import User
from controlsite.accounts.roles import Role
from controlsite.accounts.services import role_grant
from controlsite.errors import ApplicationError
from controlsite.notifications.models import Notification
from controlsite.signatures.models import ElectronicSignature, SignatureMeaning
from controlsite.signatures.services import signature_is_valid
from sites import services as site_services
from sites.choices import SiteRole, SiteStatus
from sites.models import Site
from tests.masterfile.helpers import signing
from tests.personas import make_persona
from tests.sites.helpers import make_site
from tests.training.helpers import (
    curriculum,
    issue,
    item,
    make_procedure,
    signature_of,
    sop_file,
)
from training import selectors, services
from training.choices import (
    AssessmentResult,
    AssignmentCause,
    AssignmentStatus,
    CellState,
    ItemKind,
    RecordMethod,
    VersionStatus,
)
from training.models import Assignment, ProcedureVersion, TrainingItem, TrainingRecord

pytestmark = pytest.mark.django_db


@dataclasses.dataclass
class World:
    qa: User
    trainer: User
    lead: User
    operator: User
    operator2: User
    lds: Site
    man: Site


@pytest.fixture
def world() -> World:
    qa, trainer = make_persona("qa"), make_persona("trainer")
    lead, operator = make_persona("site_lead"), make_persona("operator")
    operator2 = make_persona("operator", username="operator2")
    lds = make_site(qa, "LDS1", SiteStatus.ACTIVE)
    man = make_site(qa, "MAN2", SiteStatus.ACTIVE)
    for site, user, role in (
        (lds, lead, SiteRole.SITE_LEAD),
        (lds, operator, SiteRole.SITE_OPERATOR),
        (man, operator2, SiteRole.SITE_OPERATOR),
    ):
        site_services.membership_add(actor=qa, site=site, user=user, role=role, reason="joins")
    return World(qa, trainer, lead, operator, operator2, lds, man)


def _refused(call: Any, status: int, code: str) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        call()
    assert (caught.value.status_code, caught.value.code) == (status, code), caught.value.message
    return caught.value


def _open(user: User) -> list[Assignment]:
    return list(
        Assignment.objects.filter(user=user, status=AssignmentStatus.OPEN).order_by("item__code")
    )


def _counts() -> tuple[int, int, int]:
    return (
        TrainingRecord.objects.count(),
        Assignment.objects.count(),
        ElectronicSignature.objects.count(),
    )


#
# Procedures and versions (TR-03)
#


def test_a_procedure_brings_its_read_and_understood_item(world):
    procedure = make_procedure(world.qa)
    sop = procedure.training_item
    assert (sop.code, sop.kind) == ("SOP-MFG-001", ItemKind.SOP)
    _refused(lambda: make_procedure(world.qa), 409, "duplicate_number")
    _refused(lambda: make_procedure(world.trainer, "SOP-X"), 403, "not_permitted")


def test_a_version_is_signed_by_qa_and_a_new_one_supersedes_it(world):
    procedure = make_procedure(world.qa)
    v1 = issue(world.qa, procedure)
    assert v1.status == VersionStatus.EFFECTIVE and v1.effective_at is not None
    assert signature_of(v1).meaning == SignatureMeaning.APPROVED
    assert signature_is_valid(signature_of(v1), v1)
    assert len(v1.file_sha256) == 64
    v2 = issue(world.qa, procedure, summary="new hold time")
    v1.refresh_from_db()
    assert (v1.status, v2.status, v2.number) == (
        VersionStatus.SUPERSEDED,
        VersionStatus.EFFECTIVE,
        2,
    )
    assert v1.superseded_at == v2.effective_at
    assert selectors.version_in_force(procedure) == v2


def test_a_version_issued_ahead_comes_into_force_on_its_day(world):
    procedure = make_procedure(world.qa)
    v1 = issue(world.qa, procedure)
    day = timezone.localdate() + dt.timedelta(days=7)
    v2 = issue(world.qa, procedure, effective_on=day)
    assert v2.status == VersionStatus.ISSUED and selectors.version_in_force(procedure) == v1
    _refused(lambda: issue(world.qa, procedure, effective_on=day), 409, "version_pending")
    assert services.training_round(today=day - dt.timedelta(days=1))["in_force"] == 0
    assert services.training_round(today=day)["in_force"] == 1
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.status, v2.status) == (VersionStatus.SUPERSEDED, VersionStatus.EFFECTIVE)


def test_bad_versions_are_refused_and_nothing_is_written(world):
    procedure = make_procedure(world.qa)
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    _refused(lambda: issue(world.qa, procedure, effective_on=yesterday), 400, "effective_in_past")
    with pytest.raises(ApplicationError):
        services.procedure_version_issue(
            actor=world.qa,
            procedure=procedure,
            effective_on=timezone.localdate(),
            change_summary="x",
            upload=sop_file("sop.exe"),
            credentials=signing(world.qa),
        )
    assert not ProcedureVersion.objects.exists()


#
# Assignments (TR-03)
#


def test_joining_a_site_or_a_role_assigns_the_curriculum(world):
    curriculum(world.trainer, "site_operator", None, item("GXP-IND"), item("GXP-REF"))
    assert [a.item.code for a in _open(world.operator)] == ["GXP-IND", "GXP-REF"]
    assert {a.cause for a in _open(world.operator)} == {AssignmentCause.CURRICULUM}
    newcomer = make_persona("operator", username="newcomer")
    site_services.membership_add(
        actor=world.qa, site=world.man, user=newcomer, role=SiteRole.SITE_OPERATOR, reason="new"
    )
    opened = _open(newcomer)
    assert [(a.item.code, a.cause, a.site) for a in opened] == [
        ("GXP-IND", AssignmentCause.JOINED_SITE, world.man),
        ("GXP-REF", AssignmentCause.JOINED_SITE, world.man),
    ]
    assert opened[0].due_on == timezone.localdate() + dt.timedelta(days=14)
    # A Control Site role: a QP curriculum assigns on the grant.
    curriculum(world.trainer, "qp", None, item("GXP-REF"))
    qp = make_persona("outsider", username="newqp")
    admin = make_persona("sysadmin")
    role_grant(user=qp, role=Role.QP, granted_by=admin, reason="new QP")
    assert [(a.item.code, a.cause) for a in _open(qp)] == [
        ("GXP-REF", AssignmentCause.ROLE_GRANTED)
    ]


def test_leaving_the_site_withdraws_what_is_no_longer_needed(world):
    curriculum(world.trainer, "site_operator", world.man, item("GXP-IND"))
    assert [a.item.code for a in _open(world.operator2)] == ["GXP-IND"]
    membership = world.operator2.site_memberships.get(site=world.man)
    site_services.membership_end(actor=world.qa, membership=membership, reason="left")
    assert _open(world.operator2) == []
    assert Assignment.objects.get(user=world.operator2).status == AssignmentStatus.WITHDRAWN


def test_reconciling_twice_changes_nothing(world):
    curriculum(world.trainer, "site_operator", None, item("GXP-IND"))
    before = Assignment.objects.count()
    assert services.assignments_reconcile(world.operator, cause=AssignmentCause.MANUAL) == []
    assert Assignment.objects.count() == before


def test_a_new_version_is_assigned_only_where_the_procedure_is_needed(world):
    procedure = make_procedure(world.qa)
    issue(world.qa, procedure)
    curriculum(world.trainer, "site_operator", world.lds, procedure.training_item)
    first = _open(world.operator)
    assert [a.procedure_version and a.procedure_version.number for a in first] == [1]
    day = timezone.localdate() + dt.timedelta(days=10)
    v2 = issue(world.qa, procedure, effective_on=day, summary="v2")
    opened = _open(world.operator)
    assert [(a.procedure_version, a.cause, a.due_on) for a in opened] == [
        (v2, AssignmentCause.NEW_VERSION, day)
    ]
    assert Assignment.objects.get(pk=first[0].pk).status == AssignmentStatus.WITHDRAWN
    # Not the operator at MAN2, nor the site lead at LDS1: the procedure is not theirs.
    assert _open(world.operator2) == [] and _open(world.lead) == []


def test_a_trainer_assigns_by_hand_and_never_twice(world):
    gxp = item("GXP-IND")
    due = timezone.localdate() + dt.timedelta(days=5)
    made = services.assignment_create(
        actor=world.trainer, user=world.operator, item=gxp, due_on=due, reason="retraining"
    )
    assert (made.cause, made.due_on) == (AssignmentCause.MANUAL, due)
    _refused(
        lambda: services.assignment_create(
            actor=world.trainer, user=world.operator, item=gxp, due_on=due, reason="again"
        ),
        409,
        "already_assigned",
    )
    _refused(
        lambda: services.assignment_create(
            actor=world.operator, user=world.operator2, item=gxp, due_on=due, reason="x"
        ),
        403,
        "not_permitted",
    )
    past = timezone.localdate() - dt.timedelta(days=1)
    _refused(
        lambda: services.assignment_create(
            actor=world.trainer, user=world.operator2, item=gxp, due_on=past, reason="x"
        ),
        400,
        "due_in_past",
    )


#
# Records (TR-05, TR-07)
#


def test_read_and_understood_is_signed_by_the_trainee_and_closes_the_assignment(world):
    procedure = make_procedure(world.qa)
    v1 = issue(world.qa, procedure)
    curriculum(world.trainer, "site_operator", world.lds, procedure.training_item)
    record = services.acknowledge(
        actor=world.operator,
        item=procedure.training_item,
        version=v1,
        credentials=signing(world.operator),
    )
    assert (record.method, record.procedure_version, record.expires_at) == (
        RecordMethod.ACKNOWLEDGED,
        v1,
        None,
    )
    assert signature_of(record).meaning == SignatureMeaning.ACKNOWLEDGED
    assert signature_of(record).signer == world.operator
    assert signature_is_valid(signature_of(record), record)
    assignment = Assignment.objects.get(user=world.operator)
    assert (assignment.status, assignment.record) == (AssignmentStatus.COMPLETED, record)


def test_acknowledging_a_superseded_version_is_refused_and_nothing_is_written(world):
    procedure = make_procedure(world.qa)
    v1 = issue(world.qa, procedure)
    issue(world.qa, procedure, summary="v2")
    before = _counts()
    _refused(
        lambda: services.acknowledge(
            actor=world.operator,
            item=procedure.training_item,
            version=v1,
            credentials=signing(world.operator),
        ),
        409,
        "version_superseded",
    )
    assert _counts() == before


def test_an_sop_needs_its_version_and_an_assessment_needs_a_trainer(world):
    procedure = make_procedure(world.qa)
    issue(world.qa, procedure)
    _refused(
        lambda: services.acknowledge(
            actor=world.operator, item=procedure.training_item, credentials=signing(world.operator)
        ),
        400,
        "version_required",
    )
    practical = services.item_create(
        actor=world.trainer,
        code="ASSESS-ASEPTIC",
        title="Aseptic technique",
        kind=ItemKind.ASSESSMENT,
        reason="new",
    )
    _refused(
        lambda: services.acknowledge(
            actor=world.operator, item=practical, credentials=signing(world.operator)
        ),
        400,
        "assessment_required",
    )


def _practical(world: World) -> TrainingItem:
    return services.item_create(
        actor=world.trainer,
        code="ASSESS-GOWN",
        title="Gowning qualification",
        kind=ItemKind.ASSESSMENT,
        validity_months=12,
        reason="new",
    )


def test_a_trainer_signs_an_assessment_with_its_result(world):
    practical = _practical(world)
    curriculum(world.trainer, "site_operator", None, practical)
    failed = services.assessment_record(
        actor=world.trainer,
        trainee=world.operator,
        item=practical,
        result=AssessmentResult.NOT_YET_COMPETENT,
        notes="Touched the glove port",
        credentials=signing(world.trainer),
    )
    assert failed.expires_at is None and not failed.passed
    assert [a.item for a in _open(world.operator)] == [practical]  # still to do
    passed = services.assessment_record(
        actor=world.trainer,
        trainee=world.operator,
        item=practical,
        result=AssessmentResult.COMPETENT,
        credentials=signing(world.trainer),
    )
    assert passed.trainer == world.trainer and signature_of(passed).signer == world.trainer
    assert signature_of(passed).meaning == SignatureMeaning.REVIEWED
    assert passed.expires_at is not None
    assert _open(world.operator) == []


def test_bad_assessments_are_refused_and_nothing_is_written(world):
    practical = _practical(world)
    before = _counts()
    _refused(
        lambda: services.assessment_record(
            actor=world.trainer,
            trainee=world.trainer,
            item=practical,
            result=AssessmentResult.COMPETENT,
            credentials=signing(world.trainer),
        ),
        422,
        "self_assessment",
    )
    _refused(
        lambda: services.assessment_record(
            actor=world.trainer,
            trainee=world.operator,
            item=practical,
            result="",
            credentials=signing(world.trainer),
        ),
        400,
        "result_required",
    )
    _refused(
        lambda: services.assessment_record(
            actor=world.lead,
            trainee=world.operator,
            item=practical,
            result=AssessmentResult.COMPETENT,
            credentials=signing(world.lead),
        ),
        403,
        "not_permitted",
    )
    assert _counts() == before


def test_the_refresher_expires_after_its_validity_which_is_configurable(world):
    refresher = item("GXP-REF")
    assert refresher.validity_months == 12
    record = services.acknowledge(
        actor=world.operator, item=refresher, credentials=signing(world.operator)
    )
    assert record.expires_at == selectors.add_months(record.completed_at, 12)
    services.item_update(
        actor=world.qa, item=refresher, reason="six-monthly", changes={"validity_months": 6}
    )
    again = services.acknowledge(
        actor=world.operator, item=refresher, credentials=signing(world.operator)
    )
    assert again.expires_at == selectors.add_months(again.completed_at, 6)
    record.refresh_from_db()
    assert record.expires_at == selectors.add_months(record.completed_at, 12)  # kept


def test_a_paper_record_keeps_its_date_and_is_verified_by_the_trainer(world):
    done = timezone.localdate() - dt.timedelta(days=400)
    record = services.record_enter(
        actor=world.trainer,
        trainee=world.operator,
        item=item("GXP-REF"),
        completed_on=done,
        notes="Classroom session, sign-in sheet GXP-2025-07",
        credentials=signing(world.trainer),
    )
    assert timezone.localtime(record.completed_at).date() == done
    assert record.expires_at is not None and record.expires_at < timezone.now()
    assert signature_of(record).meaning == SignatureMeaning.VERIFIED
    future = timezone.localdate() + dt.timedelta(days=1)
    _refused(
        lambda: services.record_enter(
            actor=world.trainer,
            trainee=world.operator,
            item=item("GXP-REF"),
            completed_on=future,
            notes="x",
            credentials=signing(world.trainer),
        ),
        400,
        "completed_in_future",
    )


def test_nobody_signs_anything_before_the_accountability_item(world):
    """TR-07, 21 CFR 11.10(j): the accountability acknowledgement comes before any signature,
    and is itself the one signature allowed without it."""
    newcomer = make_persona("operator", username="fresh", accountable=False)
    before = _counts()
    _refused(
        lambda: services.acknowledge(
            actor=newcomer, item=item("GXP-IND"), credentials=signing(newcomer)
        ),
        422,
        "training_required",
    )
    assert _counts() == before
    assert Assignment.objects.get(user=newcomer, item__code="DI-ESIG").due_on == (
        timezone.localdate()
    )
    accountability = services.acknowledge(
        actor=newcomer, item=item("DI-ESIG"), credentials=signing(newcomer)
    )
    assert signature_of(accountability).signer == newcomer
    services.acknowledge(actor=newcomer, item=item("GXP-IND"), credentials=signing(newcomer))
    assert selectors.accountability_gap(newcomer) is None


def test_the_accountability_item_cannot_be_retired_or_duplicated(world):
    _refused(
        lambda: services.item_update(
            actor=world.qa, item=item("DI-ESIG"), reason="x", changes={"active": False}
        ),
        409,
        "accountability_required",
    )
    _refused(
        lambda: services.item_create(
            actor=world.qa, code="DI-2", title="Again", kind=ItemKind.ACCOUNTABILITY, reason="x"
        ),
        409,
        "accountability_exists",
    )


def test_retiring_an_item_removes_it_from_curricula_and_withdraws_its_assignments(world):
    practical = _practical(world)
    made = curriculum(world.trainer, "site_operator", None, practical)
    assert _open(world.operator)
    services.item_update(
        actor=world.trainer, item=practical, reason="replaced", changes={"active": False}
    )
    assert _open(world.operator) == []
    assert not made.requirements.filter(removed_at__isnull=True).exists()


#
# The daily round: reminders, escalation, renewals (TR-03, TR-04)
#


def test_the_round_reminds_escalates_once_and_opens_renewals(world):
    curriculum(world.trainer, "site_operator", world.lds, item("GXP-IND"))
    assignment = Assignment.objects.get(user=world.operator, item__code="GXP-IND")
    today = timezone.localdate()
    counts = services.training_round(today=assignment.due_on - dt.timedelta(days=3))
    assert counts["reminded"] == 1
    assert services.training_round(today=assignment.due_on - dt.timedelta(days=2))["reminded"] == 0
    late = assignment.due_on + dt.timedelta(days=1)
    assert services.training_round(today=late)["escalated"] == 1
    assert services.training_round(today=late)["escalated"] == 0
    told = set(
        Notification.objects.filter(subject__startswith="Overdue training").values_list(
            "recipient__username", flat=True
        )
    )
    assert told == {"operator", "site_lead", "qa"}
    # A refresher done 11½ months ago is renewed before it lapses.
    curriculum(world.trainer, "site_operator", world.man, item("GXP-REF"))
    services.record_enter(
        actor=world.trainer,
        trainee=world.operator2,
        item=item("GXP-REF"),
        completed_on=today - dt.timedelta(days=350),
        notes="sheet",
        credentials=signing(world.trainer),
    )
    assert _open(world.operator2) == []
    assert services.training_round(today=today)["renewals"] == 1
    renewal = _open(world.operator2)[0]
    assert (renewal.item.code, renewal.cause) == ("GXP-REF", AssignmentCause.RENEWAL)
    assert services.training_round(today=today)["renewals"] == 0


def test_the_matrix_shows_each_state(world):
    practical = _practical(world)
    procedure = make_procedure(world.qa)
    issue(world.qa, procedure)
    curriculum(world.trainer, "site_operator", world.lds, item("GXP-REF"), procedure.training_item)
    curriculum(world.trainer, "site_lead", world.lds, practical)
    today = timezone.localdate()
    services.record_enter(
        actor=world.trainer,
        trainee=world.operator,
        item=item("GXP-REF"),
        completed_on=today - dt.timedelta(days=400),
        notes="lapsed",
        credentials=signing(world.trainer),
    )
    services.record_enter(
        actor=world.trainer,
        trainee=world.lead,
        item=practical,
        completed_on=today - dt.timedelta(days=350),
        notes="due soon",
        credentials=signing(world.trainer),
    )
    matrix = selectors.site_matrix(world.lds)
    states = {
        (row.user.username, cell.item.code): cell.state for row in matrix.rows for cell in row.cells
    }
    assert states[("operator", "DI-ESIG")] == CellState.CURRENT
    assert states[("operator", "GXP-REF")] == CellState.OVERDUE
    assert states[("operator", "SOP-MFG-001")] == CellState.MISSING
    assert states[("operator", "ASSESS-GOWN")] == CellState.NOT_REQUIRED
    assert states[("site_lead", "ASSESS-GOWN")] == CellState.DUE_SOON
    assert states[("site_lead", "GXP-REF")] == CellState.NOT_REQUIRED
    # held: 2 accountability + lead's due-soon; required: 2 + 2 (operator) + 1 (lead) = 5
    assert (matrix.held, matrix.required, matrix.compliance) == (3, 5, 60)
    assert selectors.site_compliance([world.lds.pk])[world.lds.pk].pct == 60


def test_every_signature_in_the_system_asks_for_accountability(world):
    """The kernel's `sign()` asks the registered check, so a site activation (sites app) is
    refused for a QA who has not acknowledged the accountability item (TR-07)."""
    newcomer = make_persona("qa", username="qa2", accountable=False)
    refused = _refused(
        lambda: make_site(newcomer, "NEW1", SiteStatus.ACTIVE), 422, "training_required"
    )
    assert "DI-ESIG" in refused.message
    assert not Site.objects.filter(code="NEW1", status=SiteStatus.ACTIVE).exists()


def test_a_refused_signature_leaves_no_version_and_no_file(world, settings, tmp_path):
    """The upload is written inside the signing transaction; when the signature is refused the
    transaction rolls back and the stored file is removed with it."""
    settings.MEDIA_ROOT = tmp_path
    procedure = make_procedure(world.qa)
    _refused(
        lambda: services.procedure_version_issue(
            actor=world.qa,
            procedure=procedure,
            effective_on=timezone.localdate(),
            change_summary="text",
            upload=sop_file(),
            credentials=dataclasses.replace(signing(world.qa), password="wrong"),
        ),
        422,
        "wrong_password",
    )
    assert not ProcedureVersion.objects.exists()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
