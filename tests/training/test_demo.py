"""The training demo data (issue 7 §7, design §9): every demo signer acknowledges the
accountability item first, a realistic mix of procedures, curricula and records made through the
services by the people whose roles do each step, and a second run of `demo_setup` creates
nothing (TR-01…TR-07, 21 CFR 11.10(i)-(j))."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from batches import services as batch_services
from batches.demo import STAFFING, TEMPLATE_BY_PRODUCT
from batches.gates import SIGNER_NOT_QUALIFIED
from batches.models import Batch, StepRecord
from batches.selectors import batch_gate_report
from controlsite.accounts.models import User
from controlsite.accounts.roles import Role
from controlsite.audit.models import AuditEvent
from controlsite.audit.services import audit_chain_verify
from controlsite.demo import credentials
from controlsite.errors import PermissionRefusedError
from controlsite.signatures.models import ElectronicSignature, SignatureMeaning
from controlsite.signatures.services import signature_is_valid
from sites.choices import SiteRole
from sites.demo import DEMO_SITES
from sites.models import Site
from sites.selectors import live_memberships
from training import demo as training_demo
from training.choices import (
    AssessmentResult,
    AssignmentStatus,
    CellState,
    ItemKind,
    RecordMethod,
    VersionStatus,
)
from training.models import (
    Assignment,
    Curriculum,
    Procedure,
    ProcedureVersion,
    Requirement,
    TrainingItem,
    TrainingRecord,
)
from training.selectors import (
    accountability_gap,
    site_compliance,
    site_matrix,
    todo_for,
    user_is_qualified,
)


def run() -> str:
    out, err = StringIO(), StringIO()
    call_command("demo_setup", stdout=out, stderr=err)
    return out.getvalue()


@pytest.fixture(scope="module")
def _demo_once(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    """`demo_setup` run once for the module on the empty test database, inside a transaction
    rolled back at its end; each test then works in a savepoint of it (the `db` fixture)."""
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            assert not User.objects.exists()
            yield run()
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture
def demo_output(_demo_once: str, db: None) -> str:
    return _demo_once


def user(username: str) -> User:
    return User.objects.get(username=username)


def counts() -> dict[str, int]:
    return {
        "users": User.objects.count(),
        "procedures": Procedure.objects.count(),
        "versions": ProcedureVersion.objects.count(),
        "version_history": ProcedureVersion.history.count(),
        "items": TrainingItem.objects.count(),
        "curricula": Curriculum.objects.count(),
        "requirements": Requirement.objects.count(),
        "records": TrainingRecord.objects.count(),
        "record_history": TrainingRecord.history.count(),
        "assignments": Assignment.objects.count(),
        "assignment_history": Assignment.history.count(),
        "memberships": live_memberships().count(),
        "signatures": ElectronicSignature.objects.count(),
        "events": AuditEvent.objects.count(),
    }


def section(output: str, title: str) -> str:
    return output.split(title, 1)[1].split("\n\n", 1)[0]


def test_every_demo_signer_acknowledged_the_accountability_item_themselves(demo_output):
    """TR-07, 21 CFR 11.10(j): each demo person who signs acknowledged DI-ESIG with their own
    signature, before their first signature of anything else."""
    item = TrainingItem.objects.get(kind=ItemKind.ACCOUNTABILITY)
    signers = set(ElectronicSignature.objects.values_list("signer_username", flat=True))
    assert set(training_demo.ACCOUNTABLE) | {"operator2", "newstarter"} <= signers
    for username in signers:
        record = TrainingRecord.objects.get(user__username=username, item=item)
        assert record.method == RecordMethod.ACKNOWLEDGED
        assert record.signature is not None
        assert record.signature.signer_username == username
        assert record.signature.meaning == SignatureMeaning.ACKNOWLEDGED
        assert signature_is_valid(record.signature, record)
        first = ElectronicSignature.objects.filter(signer_username=username).order_by("signed_at")
        assert first.first() == record.signature, username
        assert accountability_gap(record.user) is None
    assert "Demo accountability" in demo_output
    assert audit_chain_verify().intact


def test_procedures_items_and_curricula_are_made_by_the_people_whose_role_does_it(demo_output):
    """QA issues the procedures (a PDF per version, "approved"); the trainer defines the
    assessments and curricula (TR-01, TR-03, TR-05)."""
    numbers = {spec.number for spec in training_demo.PROCEDURES}
    assert len(numbers) >= 6
    versions = ProcedureVersion.objects.filter(procedure__number__in=numbers)
    for version in versions:
        assert str(version.file.name).endswith(".pdf")
        with version.file.open("rb") as handle:
            assert handle.read(5) == b"%PDF-"
        assert version.approval_signature is not None
        assert version.approval_signature.signer_username == "qa"
        assert version.approval_signature.meaning == SignatureMeaning.APPROVED
    revised = {v.procedure.number for v in versions.filter(number=2)}
    assert len(revised) >= 2
    assert versions.filter(status=VersionStatus.SUPERSEDED).count() >= 1
    upcoming = versions.get(status=VersionStatus.ISSUED)
    assert upcoming.procedure.number == training_demo.GOWNING
    assert (upcoming.effective_on - timezone.localdate()).days == training_demo.GOWNING_V2_IN_DAYS

    assessments = TrainingItem.objects.filter(kind=ItemKind.ASSESSMENT)
    assert set(assessments.values_list("code", flat=True)) == {
        training_demo.ASEPTIC_ASSESSMENT,
        training_demo.GOWNING_ASSESSMENT,
    }
    assert set(assessments.values_list("created_by__username", flat=True)) == {"trainer"}
    curricula = {(c.role, c.site.code if c.site else ""): c for c in Curriculum.objects.all()}
    assert {
        (Role.SITE_OPERATOR.value, ""),
        (Role.SITE_LEAD.value, ""),
        (Role.SITE_OPERATOR.value, "MU01"),
        (Role.CONTROL_SITE_QA.value, ""),
        (Role.QP.value, ""),
    } <= set(curricula)
    assert {c.created_by.username for c in curricula.values() if c.created_by} == {"trainer"}
    mu01 = curricula[(Role.SITE_OPERATOR.value, "MU01")]
    assert list(mu01.requirements.values_list("item__code", flat=True)) == [
        training_demo.MODULAR_UNIT
    ]
    methods = set(TrainingRecord.objects.values_list("method", flat=True))
    assert methods == set(RecordMethod.values)
    entered = TrainingRecord.objects.filter(method=RecordMethod.ENTERED)
    assert set(entered.values_list("trainer__username", flat=True)) == {"trainer"}
    assert entered.filter(completed_at__lt=timezone.now() - dt.timedelta(days=365)).exists()
    assert "Demo training" in demo_output
    assert training_demo.LAPSED_OPERATOR in section(demo_output, "Demo training\n")


def test_a_second_run_creates_nothing(demo_output):
    before = counts()
    second = run()
    assert counts() == before
    first_rows = section(demo_output, "Demo training\n")
    second_rows = section(second, "Demo training\n")
    assert "created" in first_rows
    assert "created" not in second_rows.replace("(everything existing)", "")
    assert "created" not in section(second, "Demo accountability")


def test_the_lapsed_operator_is_refused_a_step_sign_off_naming_the_missing_item(demo_output):
    """TR-02, TR-04: an expired refresher removes the qualification; the refusal lists it and
    nothing is written."""
    lapsed = user(training_demo.LAPSED_OPERATOR)
    batch = Batch.objects.select_related("site").get(coi_reference="DEMO-CD19-1001")
    assert batch.site.code == "NCL1"
    assert (
        live_memberships()
        .filter(user=lapsed, site=batch.site, role=SiteRole.SITE_OPERATOR)
        .exists()
    )
    verdict = user_is_qualified(lapsed, batch.site, Role.SITE_OPERATOR)
    assert not verdict
    assert [gap.item.code for gap in verdict.gaps] == [training_demo.REFRESHER]

    steps, signatures = StepRecord.objects.count(), ElectronicSignature.objects.count()
    with pytest.raises(PermissionRefusedError) as refused:
        batch_services.step_record(
            actor=lapsed,
            batch=batch,
            position=1,
            values=dict(TEMPLATE_BY_PRODUCT["NAT-CD19"].steps[0].good),
            credentials=credentials(lapsed.username),
        )
    assert refused.value.code == "not_qualified"
    assert training_demo.REFRESHER in str(refused.value)
    assert any(training_demo.REFRESHER in missing for missing in refused.value.extra["missing"])
    assert StepRecord.objects.count() == steps
    assert ElectronicSignature.objects.count() == signatures

    row = next(r for r in site_matrix(batch.site).rows if r.user == lapsed)
    cell = next(c for c in row.cells if c.item.code == training_demo.REFRESHER)
    assert cell.state == CellState.OVERDUE
    assert "expired" in cell.detail


def test_every_demo_site_has_its_compliance_computed(demo_output):
    """TR-06: each site's share of required items held, as the dashboard shows it."""
    sites = {s.code: s for s in Site.objects.filter(code__in=[d.code for d in DEMO_SITES])}
    figures = site_compliance([s.pk for s in sites.values()])
    assert set(figures) == {s.pk for s in sites.values()}
    staffed = {code for code, _username, _role in STAFFING} | {"NCL1", "LDS1"}
    for code in staffed:
        assert figures[sites[code].pk].required > 0, code
        assert site_matrix(sites[code]).compliance == figures[sites[code].pk].pct
    assert figures[sites["NCL1"].pk].pct < 100  # the lapsed operator
    assert figures[sites["NCL1"].pk].overdue >= 1
    assert figures[sites["LDS1"].pk].overdue >= 1  # the new starter's induction
    section_text = section(demo_output, "Demo training compliance")
    for code in staffed:
        assert code in section_text


def test_the_matrix_shows_due_soon_overdue_and_not_yet_competent(demo_output):
    """TR-03, TR-04, TR-05: the site lead's refresher expires in two weeks (due soon, still
    qualified); the new starter's induction is overdue and was escalated; their gowning
    qualification was assessed "not yet competent" by the trainer."""
    lead = user("sitelead")
    ncl1 = Site.objects.get(code="NCL1")
    row = next(r for r in site_matrix(ncl1).rows if r.user == lead)
    refresher = next(c for c in row.cells if c.item.code == training_demo.REFRESHER)
    assert refresher.state == CellState.DUE_SOON
    assert user_is_qualified(lead, ncl1, Role.SITE_LEAD)
    assert Assignment.objects.filter(
        user=lead, item__code=training_demo.REFRESHER, status=AssignmentStatus.OPEN
    ).exists()  # the renewal the daily round opened

    newcomer = user(training_demo.NEW_STARTER)
    lds1 = Site.objects.get(code="LDS1")
    row = next(r for r in site_matrix(lds1).rows if r.user == newcomer)
    induction = next(c for c in row.cells if c.item.code == training_demo.INDUCTION)
    assert induction.state == CellState.OVERDUE
    overdue = Assignment.objects.get(
        user=newcomer, item__code=training_demo.INDUCTION, status=AssignmentStatus.OPEN
    )
    assert overdue.due_on < timezone.localdate()
    assert overdue.escalated_at is not None
    gowning = TrainingRecord.objects.get(user=newcomer, item__code=training_demo.GOWNING_ASSESSMENT)
    assert gowning.result == AssessmentResult.NOT_YET_COMPETENT
    assert gowning.trainer is not None and gowning.trainer.username == "trainer"
    assert not user_is_qualified(newcomer, lds1, Role.SITE_OPERATOR)


def test_the_operator_has_an_open_assignment_and_is_qualified(demo_output):
    """The operator must read the gowning revision due into force next week (their home page
    to-do), and stays qualified wherever the batches demo makes them sign, as does the site
    lead; the QP is qualified to certify (TR-02, TR-03)."""
    operator = user("operator")
    todo = todo_for(operator)
    assert [a.item.code for a in todo] == [training_demo.GOWNING]
    assert todo[0].procedure_version is not None and todo[0].procedure_version.number == 2
    assert todo[0].due_on > timezone.localdate()

    lead, qp = user("sitelead"), user("qp")
    for code, username, role in STAFFING:
        site = Site.objects.get(code=code)
        assert user_is_qualified(user(username), site, role), (code, username)
        if role == SiteRole.SITE_LEAD:  # the lead also verifies the operators' steps
            assert user_is_qualified(lead, site, Role.SITE_OPERATOR), code
    for batch in Batch.objects.filter(coi_reference__startswith="DEMO-").select_related("site"):
        assert user_is_qualified(qp, batch.site, Role.QP), batch.number
        codes = [f.code for f in batch_gate_report(batch).findings]
        assert SIGNER_NOT_QUALIFIED not in codes, batch.number
