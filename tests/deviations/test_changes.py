"""Change control through its services, its pages and its API (issue 6 §4; DV-07, DV-08,
DV-09, MF-09).

A change says what changes, its risk and its regulatory impact; the regulatory flag follows
from what it touches. QA approves it, signed, and a QP too when it is regulatory, in either
order and never the same person twice. Approval of a master-file change opens exactly one new
master-file draft; one touching a site's status or the release process opens one MHRA
notification record. Implementation tasks, implementation, then a signed post-implementation
review. Every refusal is checked to write nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlsite.accounts.models import User
from controlsite.accounts.roles import Role
from controlsite.accounts.services import role_grant
from controlsite.audit.events import KernelEvent
from controlsite.audit.models import AuditEvent
from controlsite.errors import ApplicationError
from controlsite.notifications.models import Notification
from controlsite.signatures.models import ElectronicSignature, SignatureMeaning
from controlsite.signatures.services import SignatureCredentials, SignatureRefusedError
from deviations.choices import ActionStatus, ChangeScope, ChangeStatus
from deviations.events import DeviationEvent
from deviations.models import ChangeControl, ChangeTask
from deviations.selectors.changes import (
    change_proposal_sites,
    change_review_signature,
    changes_visible_to,
)
from deviations.services import changes as services
from masterfile import services as masterfile_services
from masterfile.choices import VersionStatus
from masterfile.events import MasterFileEvent
from masterfile.models import MasterFileVersion
from sites.choices import DEFAULT_DUE_DAYS, NotificationKind, SiteRole, SiteStatus
from sites.models import RegulatoryNotification
from sites.services import membership_add
from tests.batches.helpers import Plant, make_plant
from tests.batches.test_api import assert_problem, signature_fields, token_client
from tests.batches.test_pages import sig
from tests.masterfile.helpers import make_effective_version, signing
from tests.matrix import ANON, Matrix, only
from tests.personas import login, make_persona
from tests.sites.helpers import make_site

pytestmark = pytest.mark.django_db

CHANGE_EVENTS = [
    DeviationEvent.CHANGE_PROPOSED,
    DeviationEvent.CHANGE_UPDATED,
    DeviationEvent.CHANGE_TRANSITIONED,
    DeviationEvent.CHANGE_APPROVAL_SIGNED,
    DeviationEvent.CHANGE_DRAFT_OPENED,
    DeviationEvent.CHANGE_NOTIFICATION_RAISED,
    DeviationEvent.CHANGE_TASK_ADDED,
    DeviationEvent.CHANGE_TASK_DONE,
]


@pytest.fixture
def plant() -> Plant:
    """tests.batches.helpers.make_plant: LDS1 and MAN2 active; CART-01 with an effective
    master file v1 (no version open); the site lead and the operators at both sites."""
    return make_plant()


@pytest.fixture
def persona(db: None) -> Callable[[str], User]:
    """The conftest's personas, reusing the plant's people (make_plant makes `qa`, `qp`,
    `site_lead` and `operator`), so a matrix client is the plant's own QA, lead or operator."""

    def get(name: str) -> User:
        return User.objects.filter(username=name).first() or make_persona(name)

    return get


def _future(days: int) -> dt.date:
    return timezone.localdate() + dt.timedelta(days=days)


def _refused(call: Callable[[], Any], status: int, code: str) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        call()
    assert (caught.value.status_code, caught.value.code) == (status, code), caught.value.message
    return caught.value


class Snapshot:
    """Every row a change-control call might write, counted, to prove a refusal wrote none."""

    def __init__(self) -> None:
        self.counts = self._counts()

    @staticmethod
    def _counts() -> dict[str, int]:
        return {
            "changes": ChangeControl.objects.count(),
            "change_history": ChangeControl.history.count(),
            "tasks": ChangeTask.objects.count(),
            "task_history": ChangeTask.history.count(),
            "signatures": ElectronicSignature.objects.count(),
            "versions": MasterFileVersion.objects.count(),
            "notifications": RegulatoryNotification.objects.filter(
                kind=NotificationKind.CHANGE_CONTROL
            ).count(),
            "change_events": AuditEvent.objects.filter(event_type__in=CHANGE_EVENTS).count(),
            "signature_events": AuditEvent.objects.filter(
                event_type=KernelEvent.SIGNATURE_APPLIED
            ).count(),
        }

    def unchanged(self) -> bool:
        now = self._counts()
        assert now == self.counts
        return True


@pytest.fixture
def nothing_written() -> Iterator[Callable[[], Snapshot]]:
    yield Snapshot


def propose(plant: Plant, **overrides: Any) -> ChangeControl:
    fields: dict[str, Any] = {
        "actor": plant.qa,
        "title": "Dry thawer instead of the water bath",
        "description": "Replace water bath 1 at LDS1 with a dry thawing device.",
        "scopes": [ChangeScope.EQUIPMENT],
        "risk_level": "medium",
        "risk_assessment": "FMEA: thaw profile equivalent; contamination risk lower.",
        "reason": "equipment change proposed",
        "site": plant.reference,
    }
    fields.update(overrides)
    return services.change_propose(**fields)


def propose_master_file(plant: Plant, **overrides: Any) -> ChangeControl:
    fields: dict[str, Any] = {
        "title": "Add a wash step to the process description",
        "scopes": [ChangeScope.MASTER_FILE],
        "product": plant.product,
        "site": None,
        "regulatory_impact": "Variation of the POC master file; MHRA to be notified.",
    }
    fields.update(overrides)
    return propose(plant, **fields)


def propose_site_status(plant: Plant, **overrides: Any) -> ChangeControl:
    fields: dict[str, Any] = {
        "title": "Pause MAN2 during the ward refurbishment",
        "scopes": [ChangeScope.SITE_STATUS],
        "site": plant.spoke,
        "regulatory_impact": "The site list changes; notify the MHRA.",
    }
    fields.update(overrides)
    return propose(plant, **fields)


def submitted(plant: Plant, change: ChangeControl) -> ChangeControl:
    return services.change_submit(actor=plant.qa, change=change, reason="ready for review")


def qa_approves(plant: Plant, change: ChangeControl) -> ChangeControl:
    return services.change_approve(
        actor=plant.qa, change=change, credentials=signing(plant.qa), reason="risk acceptable"
    )


def qp_approves(plant: Plant, change: ChangeControl) -> ChangeControl:
    return services.change_approve(
        actor=plant.qp, change=change, credentials=signing(plant.qp), reason="fit for release"
    )


def approved(plant: Plant, change: ChangeControl) -> ChangeControl:
    change = qa_approves(plant, submitted(plant, change))
    return qp_approves(plant, change) if change.regulatory else change


def add_task(plant: Plant, change: ChangeControl, **overrides: Any) -> ChangeTask:
    fields: dict[str, Any] = {
        "actor": plant.qa,
        "change": change,
        "description": "Install and qualify the dry thawer",
        "owner": plant.lead,
        "due_on": _future(7),
        "reason": "implementation plan",
    }
    fields.update(overrides)
    return services.change_task_add(**fields)


def qa_and_qp(username: str = "qaqp") -> User:
    """One person holding both the QA and the QP role, with an authenticator."""
    user = make_persona("qa", username=username)
    role_grant(user=user, role=Role.QP, granted_by=None, reason="test: both roles")
    TOTPDevice.objects.create(user=user, name="test", confirmed=True)
    return user


#
# Proposing (DV-07, DV-08, DV-09)
#


def test_qa_proposes_a_numbered_draft_with_its_risk_assessment(plant):
    """DV-07: a change is recorded with what changes, its risk and its assessment."""
    change = propose(plant)
    assert change.number == f"CC-{timezone.localdate().year}-0001"
    assert change.status == ChangeStatus.DRAFT and change.regulatory is False
    assert change.scopes == ["equipment"] and change.risk_level == "medium"
    event = AuditEvent.objects.get(event_type=DeviationEvent.CHANGE_PROPOSED)
    assert event.actor == plant.qa and event.reason == "equipment change proposed"
    assert event.extra_data["regulatory"] is False and event.site_code == "LDS1"
    assert change.history.get().history_type == "+"
    assert propose(plant).number == f"CC-{timezone.localdate().year}-0002"


@pytest.mark.parametrize(
    ("scopes", "regulatory"),
    [
        (["equipment"], False),
        (["procedure", "system"], False),
        (["site_status"], True),
        (["release_process"], True),
        (["equipment", "master_file"], True),
    ],
)
def test_the_regulatory_flag_is_derived_from_what_the_change_touches(plant, scopes, regulatory):
    """DV-09: a change touching the master file, a site's status or the release process is
    regulatory — derived from its scopes, never typed."""
    change = propose(
        plant,
        scopes=scopes,
        product=plant.product,
        regulatory_impact="Assessed: notification needed." if regulatory else "",
    )
    assert change.regulatory is regulatory


def test_a_system_change_goes_through_change_control(plant):
    """DV-08: a change to the computerised system or its configuration is a change control."""
    change = propose(plant, scopes=[ChangeScope.SYSTEM], site=None, title="Raise session timeout")
    assert change.scopes == ["system"] and change.site is None and not change.regulatory


def test_editing_the_scopes_re_derives_the_regulatory_flag(plant):
    """DV-09: the flag follows the scopes when the draft is edited."""
    change = propose(plant)
    change = services.change_update(
        actor=plant.qa,
        change=change,
        reason="it also changes the release process",
        changes={
            "scopes": ["equipment", "release_process"],
            "regulatory_impact": "Release process description changes.",
        },
    )
    assert change.regulatory is True and change.scopes == ["release_process", "equipment"]
    event = AuditEvent.objects.get(event_type=DeviationEvent.CHANGE_UPDATED)
    assert event.extra_data["changed"]["scopes"] == [
        ["equipment"],
        ["release_process", "equipment"],
    ]
    _refused(
        lambda: services.change_update(
            actor=plant.qa, change=change, reason="no", changes={"regulatory_impact": ""}
        ),
        400,
        "regulatory_impact_required",
    )


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"scopes": []}, "scope_required"),
        ({"scopes": ["teleport"]}, "invalid_choice"),
        ({"scopes": "equipment"}, "invalid"),
        (
            {"scopes": ["master_file"], "regulatory_impact": "x", "product": None},
            "product_required",
        ),
        ({"scopes": ["site_status"], "regulatory_impact": "x", "site": None}, "site_required"),
        ({"scopes": ["release_process"]}, "regulatory_impact_required"),
        ({"risk_level": "extreme"}, "invalid_choice"),
        ({"risk_assessment": "  "}, "invalid"),
        ({"title": ""}, "invalid"),
        ({"title": "x" * 201}, "too_long"),
        ({"reason": ""}, "reason_required"),
    ],
)
def test_a_proposal_with_bad_input_is_refused_and_writes_nothing(
    plant, nothing_written, overrides, code
):
    """DV-07, DV-09: scopes, risk and regulatory impact are checked; 400 with a stable code."""
    before = nothing_written()
    _refused(lambda: propose(plant, **overrides), 400, code)
    assert before.unchanged()


def test_a_site_lead_proposes_for_their_own_site_only(plant):
    """DV-07: site leads propose changes at their sites; other site staff and QPs do not."""
    change = propose(plant, actor=plant.lead, site=plant.spoke)
    assert change.created_by == plant.lead
    elsewhere = make_site(plant.qa, "OXF3", SiteStatus.ACTIVE)
    before = Snapshot()
    for site in (None, elsewhere):
        _refused(partial(propose, plant, actor=plant.lead, site=site), 403, "permission_denied")
    for who in (plant.operator, plant.qp, make_persona("inspector"), make_persona("trainer")):
        _refused(partial(propose, plant, actor=who), 403, "permission_denied")
    assert before.unchanged()
    assert set(change_proposal_sites(plant.lead).values_list("code", flat=True)) == {
        "LDS1",
        "MAN2",
    }
    assert not change_proposal_sites(plant.operator).exists()
    assert services.may_propose(plant.lead) and not services.may_propose(plant.operator)


def test_the_proposer_or_qa_edits_the_draft_and_nobody_edits_it_under_review(plant):
    """DV-07: the draft changes until it is submitted; its approvals bind to its content."""
    change = propose(plant, actor=plant.lead, site=plant.spoke)
    services.change_update(
        actor=plant.lead, change=change, reason="clearer", changes={"title": "Dry thawer at MAN2"}
    )
    services.change_update(
        actor=plant.qa, change=change, reason="risk", changes={"risk_level": "high"}
    )
    change.refresh_from_db()
    assert (change.title, change.risk_level) == ("Dry thawer at MAN2", "high")
    elsewhere = make_site(plant.qa, "OXF3", SiteStatus.ACTIVE)
    before = Snapshot()
    _refused(
        lambda: services.change_update(
            actor=plant.operator, change=change, reason="mine", changes={"title": "x"}
        ),
        403,
        "permission_denied",
    )
    _refused(
        lambda: services.change_update(
            actor=plant.lead, change=change, reason="move", changes={"site": elsewhere}
        ),
        403,
        "permission_denied",
    )
    _refused(
        lambda: services.change_update(
            actor=plant.qa, change=change, reason="x", changes={"status": "approved"}
        ),
        400,
        "unknown_field",
    )
    assert before.unchanged()
    # Saving what is already there writes nothing.
    services.change_update(
        actor=plant.qa, change=change, reason="same", changes={"risk_level": "high"}
    )
    assert before.unchanged()
    submitted(plant, change)
    before = Snapshot()
    _refused(
        lambda: services.change_update(
            actor=plant.qa, change=change, reason="late", changes={"title": "Other"}
        ),
        409,
        "change_not_draft",
    )
    assert before.unchanged()


#
# Review and approval (DV-07, DV-09)
#


def test_submitting_moves_the_draft_to_review_and_tells_qa(plant):
    """DV-07: the proposer submits; QA (and the QPs for a regulatory change) are told."""
    change = propose_site_status(plant, actor=plant.lead)
    change = services.change_submit(actor=plant.lead, change=change, reason="ready")
    assert change.status == ChangeStatus.IN_REVIEW
    told = set(
        Notification.objects.filter(subject__contains=change.number).values_list(
            "recipient__username", flat=True
        )
    )
    assert {"qa", "qp"} <= told
    other = propose(plant)
    before = Snapshot()
    _refused(
        lambda: services.change_submit(actor=plant.lead, change=change, reason="again"),
        409,
        "transition_not_allowed",
    )
    _refused(
        lambda: services.change_submit(actor=plant.operator, change=other, reason="go"),
        403,
        "permission_denied",
    )
    assert before.unchanged()


def test_qa_alone_approves_a_non_regulatory_change(plant, nothing_written):
    """DV-07: a non-regulatory change is approved by QA's signature alone."""
    change = submitted(plant, propose(plant))
    before = nothing_written()
    _refused(lambda: qp_approves(plant, change), 403, "permission_denied")
    _refused(
        lambda: services.change_approve(
            actor=plant.lead, change=change, credentials=signing(plant.lead), reason="ok"
        ),
        403,
        "permission_denied",
    )
    assert before.unchanged()
    change = qa_approves(plant, change)
    assert change.status == ChangeStatus.APPROVED
    assert change.qa_signature.meaning == SignatureMeaning.APPROVED
    assert change.qa_signature.signer == plant.qa and change.qp_signature is None
    assert change.master_file_draft is None and change.regulatory_notification is None
    signed = AuditEvent.objects.get(event_type=DeviationEvent.CHANGE_APPROVAL_SIGNED)
    assert signed.signature == change.qa_signature and signed.extra_data["capacity"] == "qa"
    moved = AuditEvent.objects.get(
        event_type=DeviationEvent.CHANGE_TRANSITIONED, extra_data__action="approve"
    )
    assert moved.extra_data["new"] == "approved"


@pytest.mark.parametrize("qa_first", [True, False], ids=["qa-then-qp", "qp-then-qa"])
def test_a_regulatory_change_needs_qa_and_a_qp_in_either_order(plant, qa_first):
    """DV-09, MF-09: a regulatory change is approved only once QA and a QP have both signed."""
    change = submitted(plant, propose_site_status(plant))
    first, second = (qa_approves, qp_approves) if qa_first else (qp_approves, qa_approves)
    change = first(plant, change)
    assert change.status == ChangeStatus.IN_REVIEW
    assert (change.qa_signature is not None) is qa_first
    assert (change.qp_signature is not None) is not qa_first
    assert services.approvals_due(change) == (["qp"] if qa_first else ["qa"])
    assert RegulatoryNotification.objects.filter(kind=NotificationKind.CHANGE_CONTROL).count() == 0
    change = second(plant, change)
    assert change.status == ChangeStatus.APPROVED
    assert change.qa_signature.signer == plant.qa and change.qp_signature.signer == plant.qp
    assert services.approvals_due(change) == []


def test_the_same_person_may_not_give_both_approvals(plant, nothing_written):
    """DV-09, ES-04: QA's and the QP's approvals come from two people."""
    both = qa_and_qp()
    change = submitted(plant, propose_site_status(plant))
    services.change_approve(actor=both, change=change, credentials=signing(both), reason="QA ok")
    change.refresh_from_db()
    assert change.qa_signature.signer == both and change.status == ChangeStatus.IN_REVIEW
    before = nothing_written()
    _refused(
        lambda: services.change_approve(
            actor=both, change=change, credentials=signing(both), reason="QP ok too"
        ),
        409,
        "same_signer",
    )
    assert before.unchanged()
    change.refresh_from_db()
    assert change.qp_signature is None and change.status == ChangeStatus.IN_REVIEW


def test_a_signer_who_already_signed_is_refused(plant, nothing_written):
    """DV-09: nobody signs a change's approval twice; a second QA adds nothing."""
    change = submitted(plant, propose_site_status(plant))
    change = qa_approves(plant, change)
    before = nothing_written()
    _refused(lambda: qa_approves(plant, change), 409, "already_signed")
    second_qa = make_persona("qa", username="qa2")
    _refused(
        lambda: services.change_approve(
            actor=second_qa, change=change, credentials=signing(second_qa), reason="me too"
        ),
        409,
        "already_signed",
    )
    assert before.unchanged()


def test_a_wrong_password_signs_nothing_and_changes_nothing(plant, nothing_written):
    """ES-05, ES-08: a refused signature is 422, counted as a failure, and writes nothing."""
    change = submitted(plant, propose(plant))
    before = nothing_written()
    with pytest.raises(SignatureRefusedError) as refused:
        services.change_approve(
            actor=plant.qa,
            change=change,
            credentials=SignatureCredentials(username="qa", password="wrong"),
            reason="approve",
        )
    assert (refused.value.status_code, refused.value.code) == (422, "wrong_password")
    assert before.unchanged()
    change.refresh_from_db()
    assert change.status == ChangeStatus.IN_REVIEW and change.qa_signature is None
    assert AuditEvent.objects.filter(event_type=KernelEvent.SIGNATURE_AUTH_FAILED).exists()


def test_approval_is_only_from_review_and_a_retry_changes_nothing(plant, nothing_written):
    """DV-07: approval follows submission; an approved change is not approved again."""
    draft = propose(plant)
    before = nothing_written()
    _refused(lambda: qa_approves(plant, draft), 409, "transition_not_allowed")
    assert before.unchanged()
    change = approved(plant, draft)
    before = nothing_written()
    _refused(lambda: qa_approves(plant, change), 409, "transition_not_allowed")
    assert before.unchanged()


#
# What an approval sets off (MF-09, DV-09)
#


@pytest.mark.parametrize("qa_first", [True, False], ids=["qp-completes", "qa-completes"])
def test_a_master_file_change_opens_exactly_one_new_draft(plant, nothing_written, qa_first):
    """MF-09: approving a change touching the master file opens exactly one new master-file
    draft, linked to the change; a retry or a second approval attempt opens no other."""
    master_file = plant.product.master_file
    assert list(master_file.versions.values_list("number", "status")) == [(1, "effective")]
    change = submitted(plant, propose_master_file(plant))
    order = (qa_approves, qp_approves) if qa_first else (qp_approves, qa_approves)
    change = order[0](plant, change)
    assert master_file.versions.count() == 1
    change = order[1](plant, change)
    assert change.status == ChangeStatus.APPROVED
    draft = change.master_file_draft
    assert draft is not None and (draft.number, draft.status) == (2, VersionStatus.DRAFT)
    assert draft.master_file == master_file
    assert draft.based_on is not None and draft.based_on.number == 1
    assert master_file.versions.count() == 2
    assert draft.created_by == plant.qa  # starting a master-file draft is QA's act
    opened = AuditEvent.objects.get(event_type=DeviationEvent.CHANGE_DRAFT_OPENED)
    assert opened.extra_data["version"] == 2
    assert AuditEvent.objects.filter(event_type=MasterFileEvent.DRAFT_STARTED).count() == 1
    before = nothing_written()
    for attempt in (qa_approves, qp_approves):
        _refused(partial(attempt, plant, change), 409, "transition_not_allowed")
    assert before.unchanged()
    assert master_file.versions.filter(status=VersionStatus.DRAFT).count() == 1


def test_a_master_file_change_is_refused_cleanly_while_a_version_is_open(plant, nothing_written):
    """MF-09: only one master-file version is on its way at a time — the approval that would
    open a second is refused (409 `version_open`) and writes nothing, its signature included."""
    change = submitted(plant, propose_master_file(plant))
    change = qa_approves(plant, change)
    masterfile_services.draft_start(
        actor=plant.qa, master_file=plant.product.master_file, reason="periodic review"
    )
    before = nothing_written()
    refused = _refused(lambda: qp_approves(plant, change), 409, "version_open")
    assert "v" in refused.message or "Version 2" in refused.message
    assert before.unchanged()
    change.refresh_from_db()
    assert change.status == ChangeStatus.IN_REVIEW and change.qp_signature is None
    assert change.master_file_draft is None


def test_a_site_status_change_creates_one_regulatory_notification(plant, nothing_written):
    """DV-09, RP-03: approving a change to a site's status opens one MHRA notification."""
    change = approved(plant, propose_site_status(plant))
    record = change.regulatory_notification
    assert record is not None and record.kind == NotificationKind.CHANGE_CONTROL
    assert record.site == plant.spoke and change.number in record.subject
    days = DEFAULT_DUE_DAYS[NotificationKind.CHANGE_CONTROL]
    assert record.due_on == timezone.localdate() + dt.timedelta(days=days)
    assert RegulatoryNotification.objects.filter(kind=NotificationKind.CHANGE_CONTROL).count() == 1
    assert change.master_file_draft is None
    before = nothing_written()
    _refused(lambda: qp_approves(plant, change), 409, "transition_not_allowed")
    assert before.unchanged()


def test_a_release_process_change_touching_the_master_file_sets_off_both(plant):
    """DV-09, MF-09: one draft and one notification, even for a network-wide change."""
    change = approved(
        plant,
        propose_master_file(plant, scopes=["master_file", "release_process"]),
    )
    assert change.master_file_draft is not None
    assert change.regulatory_notification is not None
    assert change.regulatory_notification.site is None
    assert MasterFileVersion.objects.filter(status=VersionStatus.DRAFT).count() == 1
    assert RegulatoryNotification.objects.filter(kind=NotificationKind.CHANGE_CONTROL).count() == 1


def test_the_notification_service_is_for_qa_and_qps():
    """RP-03: the public wrapper refuses people whose decision it is not."""
    from sites.services import regulatory_notification_raise

    operator = make_persona("operator")
    _refused(
        lambda: regulatory_notification_raise(
            actor=operator,
            kind=NotificationKind.CHANGE_CONTROL,
            site=None,
            subject="x",
            reason="y",
        ),
        403,
        "permission_denied",
    )
    assert RegulatoryNotification.objects.filter(kind=NotificationKind.CHANGE_CONTROL).count() == 0


def test_qa_or_a_qp_rejects_a_change_under_review(plant, nothing_written):
    """DV-07: a change under review is rejected with its reason."""
    change = submitted(plant, propose_site_status(plant))
    before = nothing_written()
    _refused(
        lambda: services.change_reject(actor=plant.lead, change=change, reason="no"),
        403,
        "permission_denied",
    )
    _refused(
        lambda: services.change_reject(actor=plant.qp, change=change, reason=""),
        400,
        "reason_required",
    )
    assert before.unchanged()
    change = services.change_reject(actor=plant.qp, change=change, reason="Not justified.")
    assert (change.status, change.rejection_reason) == (ChangeStatus.REJECTED, "Not justified.")
    before = nothing_written()
    _refused(
        lambda: services.change_reject(actor=plant.qa, change=change, reason="again"),
        409,
        "transition_not_allowed",
    )
    _refused(lambda: qa_approves(plant, change), 409, "transition_not_allowed")
    draft = propose(plant)
    before = nothing_written()
    _refused(
        lambda: services.change_reject(actor=plant.qa, change=draft, reason="early"),
        409,
        "transition_not_allowed",
    )
    assert before.unchanged()


#
# Tasks, implementation, post-implementation review (DV-07)
#


def test_tasks_are_planned_and_done_while_the_change_is_approved(plant, nothing_written):
    """DV-07: implementation tasks, each with an eligible owner and a due date."""
    in_review = submitted(plant, propose(plant))
    before = nothing_written()
    _refused(lambda: add_task(plant, in_review), 409, "change_not_approved")
    assert before.unchanged()
    change = qa_approves(plant, in_review)
    before = nothing_written()
    _refused(lambda: add_task(plant, change, actor=plant.lead), 403, "permission_denied")
    _refused(
        lambda: add_task(plant, change, owner=make_persona("inspector")), 400, "owner_not_eligible"
    )
    _refused(lambda: add_task(plant, change, owner=None), 400, "owner_required")
    _refused(lambda: add_task(plant, change, due_on=_future(-1)), 400, "date_in_past")
    _refused(lambda: add_task(plant, change, description=""), 400, "invalid")
    _refused(lambda: add_task(plant, change, reason=""), 400, "reason_required")
    assert before.unchanged()
    task = add_task(plant, change)
    assert (task.owner, task.status) == (plant.lead, ActionStatus.OPEN)
    assert Notification.objects.filter(recipient=plant.lead, subject__contains="task").exists()
    before = nothing_written()
    _refused(
        lambda: services.change_task_complete(actor=plant.operator, task=task, reason="done"),
        403,
        "permission_denied",
    )
    assert before.unchanged()
    task = services.change_task_complete(
        actor=plant.lead, task=task, reason="Installed; IQ passed."
    )
    assert task.status == ActionStatus.DONE and task.done_by == plant.lead and task.done_at
    before = nothing_written()
    _refused(
        lambda: services.change_task_complete(actor=plant.qa, task=task, reason="again"),
        409,
        "task_done",
    )
    assert before.unchanged()


def test_implementation_waits_for_every_task(plant, nothing_written):
    """DV-07: a change is implemented once its tasks are done (409 `tasks_open`)."""
    change = approved(plant, propose(plant))
    task = add_task(plant, change)
    before = nothing_written()
    _refused(
        lambda: services.change_implement(actor=plant.qa, change=change, reason="done"),
        409,
        "tasks_open",
    )
    _refused(
        lambda: services.change_implement(actor=plant.lead, change=change, reason="done"),
        403,
        "permission_denied",
    )
    assert before.unchanged()
    services.change_task_complete(actor=plant.lead, task=task, reason="done")
    change = services.change_implement(actor=plant.qa, change=change, reason="in use")
    assert change.status == ChangeStatus.IMPLEMENTED and change.implemented_at
    before = nothing_written()
    _refused(lambda: add_task(plant, change), 409, "change_not_approved")
    _refused(
        lambda: services.change_implement(actor=plant.qa, change=change, reason="again"),
        409,
        "transition_not_allowed",
    )
    assert before.unchanged()


def test_a_master_file_change_is_implemented_once_its_new_version_is_effective(
    plant, nothing_written
):
    """MF-09, RP-02: the change is not in force until its master-file version is effective."""
    change = approved(plant, propose_master_file(plant))
    before = nothing_written()
    _refused(
        lambda: services.change_implement(actor=plant.qa, change=change, reason="done"),
        409,
        "master_file_not_effective",
    )
    assert before.unchanged()
    version = make_effective_version(plant.qa, plant.qp, plant.product)
    assert version == change.master_file_draft
    change = services.change_implement(actor=plant.qa, change=change, reason="v2 in force")
    assert change.status == ChangeStatus.IMPLEMENTED


def test_closing_needs_the_review_and_qa_signs_it(plant, nothing_written):
    """DV-07: the post-implementation review closes the change, signed "reviewed" by QA."""
    change = approved(plant, propose(plant))

    def close(**overrides: Any) -> ChangeControl:
        fields: dict[str, Any] = {
            "actor": plant.qa,
            "change": change,
            "review": "Thaw times equivalent over 20 batches; no deviations.",
            "credentials": signing(plant.qa),
            "reason": "post-implementation review",
        }
        fields.update(overrides)
        return services.change_close(**fields)

    before = nothing_written()
    _refused(close, 409, "transition_not_allowed")
    assert before.unchanged()
    change = services.change_implement(actor=plant.qa, change=change, reason="in use")
    before = nothing_written()
    _refused(lambda: close(review="   "), 400, "review_required")
    _refused(lambda: close(actor=plant.qp, credentials=signing(plant.qp)), 403, "permission_denied")
    with pytest.raises(SignatureRefusedError):
        close(credentials=SignatureCredentials(username="qa", password="nope"))
    assert before.unchanged()
    change = close()
    assert change.status == ChangeStatus.CLOSED and change.closed_at
    assert change.review.startswith("Thaw times equivalent")
    signature = change_review_signature(change)
    assert signature is not None and signature.meaning == SignatureMeaning.REVIEWED
    closed = AuditEvent.objects.get(
        event_type=DeviationEvent.CHANGE_TRANSITIONED, extra_data__action="close"
    )
    assert closed.signature == signature
    assert closed.extra_data["review_signature"] == signature.pk
    _refused(close, 409, "transition_not_allowed")


#
# Who sees what
#


def test_site_staff_see_their_sites_changes_and_the_control_site_sees_all(plant):
    """SO-12: a change is visible to the Control Site's people and to its site's staff."""
    at_lds1 = propose(plant)
    network = propose(plant, site=None, scopes=["system"])
    elsewhere = make_persona("operator", username="elsewhere")
    oxf3 = make_site(plant.qa, "OXF3", SiteStatus.ACTIVE)
    membership_add(
        actor=plant.qa, site=oxf3, user=elsewhere, role=SiteRole.SITE_OPERATOR, reason="works"
    )
    assert set(changes_visible_to(plant.operator)) == {at_lds1}
    assert not changes_visible_to(elsewhere).exists()
    for who in (plant.qa, plant.qp, make_persona("inspector")):
        assert set(changes_visible_to(who)) == {at_lds1, network}
    assert not changes_visible_to(make_persona("outsider")).exists()


#
# Pages
#


def _page(user: User, name: str, *args: Any) -> Any:
    return login(Client(), user).get(reverse(name, args=args))


def test_the_list_shows_changes_with_their_badges_and_the_propose_form(plant):
    """DV-07, DV-09: the list names each change, its status and whether it is regulatory."""
    change = propose_site_status(plant)
    page = _page(plant.qa, "deviations:change-index").content.decode()
    assert change.number in page and "Regulatory" in page and "badge-muted" in page
    assert 'action="/deviations/changes/propose/"' in page
    # Site staff read their sites' changes; only a lead may propose, for the sites they lead.
    operator = _page(plant.operator, "deviations:change-index").content.decode()
    assert change.number in operator and "Propose a change" not in operator
    lead = _page(plant.lead, "deviations:change-index")
    assert "Propose a change" in lead.content.decode()
    offered = lead.context["form"].fields["site"].queryset
    assert set(offered.values_list("code", flat=True)) == {"LDS1", "MAN2"}


def test_the_list_reads_a_fixed_number_of_queries(plant):
    """Design §8: the page's work does not grow with the number of changes."""
    client = login(Client(), plant.qa)

    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse("deviations:change-index")).status_code == 200
        return len(captured)

    propose(plant)
    few = count()
    for _ in range(4):
        propose_master_file(plant)
    assert count() == few


def test_proposing_on_the_page_and_its_refusals(plant):
    """DV-07, DV-09: the page proposes a change; a refusal is shown and writes nothing."""
    qa = login(Client(), plant.qa)
    body = {
        "title": "Pause MAN2",
        "description": "Ward refurbishment.",
        "scopes": ["site_status"],
        "site": "MAN2",
        "risk_level": "high",
        "risk_assessment": "No batches for 6 weeks; patients routed to LDS1.",
        "regulatory_impact": "",
        "reason": "refurbishment planned",
    }
    before = Snapshot()
    refused = qa.post(reverse("deviations:change-propose"), body)
    assert refused.status_code == 400 and "regulatory impact" in refused.content.decode()
    no_reason = qa.post(reverse("deviations:change-propose"), {**body, "reason": ""})
    assert no_reason.status_code == 400
    operator = login(Client(), plant.operator)
    assert operator.post(reverse("deviations:change-propose"), body).status_code == 403
    assert before.unchanged()
    made = qa.post(
        reverse("deviations:change-propose"), {**body, "regulatory_impact": "Site list changes."}
    )
    change = ChangeControl.objects.get()
    assert made.status_code == 302
    assert made["Location"] == reverse("deviations:change-detail", args=[change.number])
    assert change.regulatory and change.site == plant.spoke


def test_site_staff_elsewhere_do_not_see_a_change(plant):
    """SO-12: a change you may not see is a 404, its pages and its POSTs alike."""
    change = propose(plant)
    elsewhere = make_persona("operator", username="elsewhere")
    assert _page(plant.operator, "deviations:change-detail", change.number).status_code == 200
    assert _page(elsewhere, "deviations:change-detail", change.number).status_code == 404
    assert _page(plant.qa, "deviations:change-detail", "CC-1999-0001").status_code == 404
    response = login(Client(), elsewhere).post(
        reverse("deviations:change-transition", args=[change.number, "submit"]),
        {"reason": "go"},
    )
    assert response.status_code == 404
    assert Client().get(reverse("deviations:change-index")).status_code == 302


def test_a_regulatory_change_goes_from_proposed_to_closed_through_the_pages(plant):
    """DV-07, DV-09, MF-09: every step on the page — the progress picture, the approvals
    given and due, the notification the approval raised, tasks, the signed review."""
    qa, qp, lead = (login(Client(), u) for u in (plant.qa, plant.qp, plant.lead))
    change = propose_site_status(plant)
    url = reverse("deviations:change-detail", args=[change.number])

    def post(client: Client, name: str, data: dict[str, Any], *args: object) -> Any:
        return client.post(reverse(name, args=[change.number, *args]), data)

    page = qa.get(url).content.decode()
    assert 'class="stepper"' in page and 'aria-current="step"' in page
    assert "Submit for review" in page and "Edit the draft" in page
    edited = post(
        qa,
        "deviations:change-edit",
        {
            "title": "Pause MAN2 for the refurbishment",
            "description": change.description,
            "scopes": ["site_status"],
            "site": "MAN2",
            "product": "",
            "risk_level": "high",
            "risk_assessment": change.risk_assessment,
            "regulatory_impact": change.regulatory_impact,
            "reason": "clearer title",
        },
    )
    assert edited.status_code == 302
    assert (
        post(qa, "deviations:change-transition", {"reason": "ready"}, "submit").status_code == 302
    )
    page = qa.get(url).content.decode()
    assert "Pending" in page and "Approve and sign" in page
    signed = post(qa, "deviations:change-approve", sig(plant.qa, "approve", "approved", "ok"))
    assert signed.status_code == 302, signed.content.decode()[:2000]
    # QA has signed: the page offers QA nothing more, and waits for a QP.
    page = qa.get(url).content.decode()
    assert "Signed by Quinn Adams" in page and "Approve and sign" not in page
    wrong = sig(plant.qp, "approve", "approved", "fit")
    wrong["approve-password"] = "wrong"
    refused = post(qp, "deviations:change-approve", wrong)
    assert refused.status_code == 422
    change.refresh_from_db()
    assert change.qp_signature is None
    done = post(qp, "deviations:change-approve", sig(plant.qp, "approve", "approved", "fit"))
    assert done.status_code == 302
    change.refresh_from_db()
    assert change.status == ChangeStatus.APPROVED and change.regulatory_notification
    page = qa.get(url).content.decode()
    assert "Signed by Priya Patel" in page and "MHRA notification" in page
    assert f"#n{change.regulatory_notification.pk}" in page
    added = post(
        qa,
        "deviations:change-task-add",
        {
            "description": "Tell the ward and reroute patients",
            "owner": "site_lead",
            "due_on": _future(3).isoformat(),
            "reason": "plan",
        },
    )
    assert added.status_code == 302
    task = change.tasks.get()
    refused = post(qa, "deviations:change-transition", {"reason": "done"}, "implement")
    assert refused.status_code == 409 and "still open" in refused.content.decode()
    assert (
        post(lead, "deviations:change-task-done", {"reason": "Ward told."}, task.pk).status_code
        == 302
    )
    assert (
        post(qa, "deviations:change-transition", {"reason": "paused"}, "implement").status_code
        == 302
    )
    no_review = post(qa, "deviations:change-close", sig(plant.qa, "close", "reviewed", "review"))
    assert no_review.status_code == 400
    closed = post(
        qa,
        "deviations:change-close",
        {"review": "Refurbishment done; no batch affected.", **sig(plant.qa, "close", "reviewed")},
    )
    assert closed.status_code == 302, closed.content.decode()[:2000]
    change.refresh_from_db()
    assert change.status == ChangeStatus.CLOSED
    page = qa.get(url).content.decode()
    assert "Refurbishment done" in page and "Reviewed" in page


def test_the_page_links_the_master_file_draft_and_warns_of_an_open_version(plant):
    """MF-09: the page says when the approval would be refused, and links the draft opened."""
    change = submitted(plant, propose_master_file(plant))
    masterfile_services.draft_start(
        actor=plant.qa, master_file=plant.product.master_file, reason="periodic"
    )
    page = _page(plant.qa, "deviations:change-detail", change.number).content.decode()
    assert "Version 2 of the CART-01 master file is draft" in page
    change = qa_approves(plant, change)
    client = login(Client(), plant.qp)
    refused = client.post(
        reverse("deviations:change-approve", args=[change.number]),
        sig(plant.qp, "approve", "approved", "fit"),
    )
    assert refused.status_code == 409 and "only one version" in refused.content.decode()
    change.refresh_from_db()
    assert change.qp_signature is None


def test_people_without_the_role_cannot_post_qa_steps(plant):
    """DV-07: a step refused for the role is a 403 on the page and writes nothing."""
    change = approved(plant, propose(plant))
    operator = login(Client(), plant.operator)

    def post(name: str, data: dict[str, str], *args: object) -> int:
        return operator.post(reverse(name, args=[change.number, *args]), data).status_code

    before = Snapshot()
    assert post("deviations:change-transition", {"reason": "mine"}, "implement") == 403
    task = {
        "description": "Mine",
        "owner": "operator",
        "due_on": _future(2).isoformat(),
        "reason": "plan",
    }
    assert post("deviations:change-task-add", task) == 403
    assert (
        post("deviations:change-close", {"review": "x", **sig(plant.operator, "close", "reviewed")})
        == 403
    )
    assert post("deviations:change-transition", {"reason": "x"}, "teleport") == 404
    assert before.unchanged()


#
# API (design §6)
#

# USE_API holders read lists (scoped to what they may see); sysadmin and outsider have no API.
EVERY_API_USER = only({"sysadmin": 403, "outsider": 403}, others=200, anonymous=401)
# One record at LDS1: QA, QPs and inspectors see every one; the lead and the operator work at
# LDS1; the trainer and the integrator work at no site, so for them it does not exist.
READERS = only(
    {"trainer": 404, "integrator": 404, "sysadmin": 403, "outsider": 403},
    others=200,
    anonymous=401,
)
QA_WRITE = only({"qa": 200, "trainer": 404, "integrator": 404}, others=403, anonymous=401)
QA_OR_QP = {**QA_WRITE, "qp": 200}

CHANGE_LIST = Matrix("api:change-control-list", EVERY_API_USER)
CHANGE_DETAIL = Matrix("api:change-control-detail", READERS)
# QA, or the site lead at LDS1; a site the caller cannot see is 400 `unknown_site`; the
# inspector's role is read-only.
CHANGE_CREATE = Matrix(
    "api:change-control-create",
    only(
        {"qa": 201, "site_lead": 201, "trainer": 400, "integrator": 400},
        others=403,
        anonymous=401,
    ),
)
CHANGE_UPDATE = Matrix("api:change-control-partial-update", QA_WRITE)
CHANGE_SUBMIT = Matrix("api:change-control-submit", QA_WRITE)
CHANGE_APPROVE = Matrix("api:change-control-approve", QA_OR_QP)
CHANGE_REJECT = Matrix("api:change-control-reject", QA_OR_QP)
CHANGE_TASKS = Matrix("api:change-control-tasks", {**QA_WRITE, "qa": 201})
CHANGE_IMPLEMENT = Matrix("api:change-control-implement", QA_WRITE)
CHANGE_CLOSE = Matrix("api:change-control-close", QA_WRITE)
TASK_LIST = Matrix("api:change-task-list", EVERY_API_USER)
TASK_DETAIL = Matrix("api:change-task-detail", READERS)
# Its owner (the site lead) or QA.
TASK_COMPLETE = Matrix("api:change-task-complete", {**QA_WRITE, "site_lead": 200})

SEES = {"qa", "qp", "inspector", "site_lead", "operator"}


def signed(persona: Callable[[str], User], who: str, **fields: Any) -> dict[str, Any]:
    """Signature fields of the persona itself (Control Site QA's for anonymous)."""
    return signature_fields(persona("qa") if who == ANON else persona(who), **fields)


@pytest.fixture
def change(plant: Plant) -> ChangeControl:
    """A draft equipment change at LDS1, proposed by QA."""
    return propose(plant)


@pytest.fixture
def regulatory_in_review(plant: Plant) -> ChangeControl:
    """A change to LDS1's status, in review: QA and a QP each may approve."""
    return submitted(plant, propose_site_status(plant, site=plant.reference))


@pytest.fixture
def approved_change(plant: Plant, change: ChangeControl) -> ChangeControl:
    return approved(plant, change)


@pytest.fixture
def task(plant: Plant, approved_change: ChangeControl) -> ChangeTask:
    return add_task(plant, approved_change)


def propose_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Dry thawer instead of the water bath",
        "description": "Replace water bath 1 at LDS1.",
        "scopes": ["equipment"],
        "site": "LDS1",
        "risk_level": "low",
        "risk_assessment": "Equivalent thaw profile.",
        "reason": "bath at end of life",
    }
    body.update(overrides)
    return body


@pytest.mark.parametrize(("who", "expected"), CHANGE_LIST.cases())
def test_change_list(as_persona, change, who, expected):
    response = as_persona(who).get(reverse("api:change-control-list"))
    assert response.status_code == expected
    if expected == 200:
        numbers = [c["number"] for c in response.json()["results"]]
        assert numbers == ([change.number] if who in SEES else [])


@pytest.mark.parametrize(("who", "expected"), CHANGE_DETAIL.cases())
def test_change_detail(as_persona, change, who, expected):
    response = as_persona(who).get(reverse("api:change-control-detail", args=[change.number]))
    assert response.status_code == expected
    if expected == 200:
        body = response.json()
        assert (body["number"], body["status"], body["regulatory"]) == (
            change.number,
            "draft",
            False,
        )
        assert body["qa_signature"] is None and body["master_file_draft"] is None
        assert response["ETag"]
    else:
        assert response["Content-Type"].startswith("application/problem+json")


@pytest.mark.parametrize(("who", "expected"), CHANGE_CREATE.cases())
def test_change_create(as_persona, plant, who, expected):
    response = as_persona(who).post(reverse("api:change-control-list"), propose_body())
    assert response.status_code == expected, response.content
    assert ChangeControl.objects.count() == (expected == 201)
    if expected == 201:
        assert response["Location"] == response.json()["links"]["self"]


@pytest.mark.parametrize(("who", "expected"), CHANGE_UPDATE.cases())
def test_change_update(as_persona, change, who, expected):
    response = as_persona(who).patch(
        reverse("api:change-control-detail", args=[change.number]),
        {"risk_level": "high", "reason": "reassessed"},
    )
    assert response.status_code == expected, response.content
    change.refresh_from_db()
    assert (change.risk_level == "high") == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), CHANGE_SUBMIT.cases())
def test_change_submit(as_persona, change, who, expected):
    response = as_persona(who).post(
        reverse("api:change-control-submit", args=[change.number]), {"reason": "ready"}
    )
    assert response.status_code == expected, response.content
    change.refresh_from_db()
    assert (change.status == ChangeStatus.IN_REVIEW) == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), CHANGE_APPROVE.cases())
def test_change_approve(as_persona, persona, regulatory_in_review, who, expected):
    response = as_persona(who).post(
        reverse("api:change-control-approve", args=[regulatory_in_review.number]),
        signed(persona, who, meaning="approved", reason="ok"),
    )
    assert response.status_code == expected, response.content
    regulatory_in_review.refresh_from_db()
    given = [regulatory_in_review.qa_signature_id, regulatory_in_review.qp_signature_id]
    assert sum(x is not None for x in given) == (expected == 200)
    if expected == 200:
        assert response.json()["approvals_due"] == (["qp"] if who == "qa" else ["qa"])


@pytest.mark.parametrize(("who", "expected"), CHANGE_REJECT.cases())
def test_change_reject(as_persona, regulatory_in_review, who, expected):
    response = as_persona(who).post(
        reverse("api:change-control-reject", args=[regulatory_in_review.number]),
        {"reason": "not justified"},
    )
    assert response.status_code == expected, response.content
    regulatory_in_review.refresh_from_db()
    assert (regulatory_in_review.status == ChangeStatus.REJECTED) == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), CHANGE_TASKS.cases())
def test_change_tasks(as_persona, approved_change, who, expected):
    response = as_persona(who).post(
        reverse("api:change-control-tasks", args=[approved_change.number]),
        {
            "description": "Install it",
            "owner": "site_lead",
            "due_on": _future(5).isoformat(),
            "reason": "plan",
        },
    )
    assert response.status_code == expected, response.content
    assert ChangeTask.objects.count() == (expected == 201)
    if expected == 201:
        body = response.json()
        assert (body["owner"]["username"], body["status"], body["overdue"]) == (
            "site_lead",
            "open",
            False,
        )
        assert response["Location"] == body["links"]["self"]


@pytest.mark.parametrize(("who", "expected"), CHANGE_IMPLEMENT.cases())
def test_change_implement(as_persona, approved_change, who, expected):
    response = as_persona(who).post(
        reverse("api:change-control-implement", args=[approved_change.number]),
        {"reason": "in use"},
    )
    assert response.status_code == expected, response.content
    approved_change.refresh_from_db()
    assert (approved_change.status == ChangeStatus.IMPLEMENTED) == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), CHANGE_CLOSE.cases())
def test_change_close(as_persona, persona, plant, approved_change, who, expected):
    services.change_implement(actor=plant.qa, change=approved_change, reason="in use")
    response = as_persona(who).post(
        reverse("api:change-control-close", args=[approved_change.number]),
        signed(persona, who, meaning="reviewed", reason="review", review="Works as intended."),
    )
    assert response.status_code == expected, response.content
    approved_change.refresh_from_db()
    assert (approved_change.status == ChangeStatus.CLOSED) == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), TASK_LIST.cases())
def test_task_list(as_persona, task, who, expected):
    response = as_persona(who).get(reverse("api:change-task-list"))
    assert response.status_code == expected
    if expected == 200:
        assert len(response.json()["results"]) == (1 if who in SEES else 0)


@pytest.mark.parametrize(("who", "expected"), TASK_DETAIL.cases())
def test_task_detail(as_persona, task, who, expected):
    response = as_persona(who).get(reverse("api:change-task-detail", args=[task.pk]))
    assert response.status_code == expected


@pytest.mark.parametrize(("who", "expected"), TASK_COMPLETE.cases())
def test_task_complete(as_persona, task, who, expected):
    response = as_persona(who).post(
        reverse("api:change-task-complete", args=[task.pk]), {"reason": "installed"}
    )
    assert response.status_code == expected, response.content
    task.refresh_from_db()
    assert (task.status == ActionStatus.DONE) == (expected == 200)


def test_a_master_file_change_through_the_api_alone(plant, persona, api_client_for):
    """MF-09, DV-07, DV-09: the whole lifecycle from the API — one draft opened, never two;
    the change implemented once its version is effective; the review signed."""
    qa, qp = api_client_for("qa"), api_client_for("qp")
    body = propose_body(
        scopes=["master_file"],
        product="CART-01",
        site=None,
        regulatory_impact="Variation of the POC master file.",
    )
    first = qa.post(reverse("api:change-control-list"), body, HTTP_IDEMPOTENCY_KEY="cc-1")
    again = qa.post(reverse("api:change-control-list"), body, HTTP_IDEMPOTENCY_KEY="cc-1")
    assert first.status_code == again.status_code == 201
    assert first.json()["number"] == again.json()["number"] and ChangeControl.objects.count() == 1
    created = first.json()
    assert created["regulatory"] is True and created["product"]["code"] == "CART-01"
    links = created["links"]
    assert qa.post(links["submit"], {"reason": "ready"}).status_code == 200
    answer = qa.post(links["approve"], signed(persona, "qa", meaning="approved", reason="ok"))
    assert answer.status_code == 200 and answer.json()["approvals_due"] == ["qp"]
    answer = qa.post(links["approve"], signed(persona, "qa", meaning="approved", reason="again"))
    assert_problem(answer, 409, "already_signed")
    answer = qp.post(links["approve"], signed(persona, "qp", meaning="approved", reason="fit"))
    assert answer.status_code == 200, answer.content
    approved_body = answer.json()
    assert approved_body["status"] == "approved" and approved_body["approvals_due"] == []
    assert approved_body["master_file_draft"]["number"] == 2
    assert approved_body["master_file_draft"]["status"] == "draft"
    assert approved_body["qp_signature"]["meaning"] == "approved"
    assert approved_body["regulatory_notification"] is None
    retry = qp.post(links["approve"], signed(persona, "qp", meaning="approved", reason="fit"))
    assert_problem(retry, 409, "transition_not_allowed")
    assert MasterFileVersion.objects.filter(status=VersionStatus.DRAFT).count() == 1
    task_body = {
        "description": "Train the sites on v2",
        "owner": "site_lead",
        "due_on": _future(5).isoformat(),
        "reason": "plan",
    }
    # Site staff do not see a network-wide change, so they cannot own its tasks.
    assert_problem(qa.post(links["tasks"], task_body), 400, "owner_not_eligible")
    made = qa.post(
        links["tasks"],
        {
            "description": "Train the sites on v2",
            "owner": "qp",
            "due_on": _future(5).isoformat(),
            "reason": "plan",
        },
    )
    assert made.status_code == 201
    assert_problem(qa.post(links["implement"], {"reason": "done"}), 409, "tasks_open")
    complete = made.json()["links"]["complete"]
    assert qp.post(complete, {"reason": "trained"}).status_code == 200
    assert_problem(
        qa.post(links["implement"], {"reason": "done"}), 409, "master_file_not_effective"
    )
    make_effective_version(plant.qa, plant.qp, plant.product)
    assert qa.post(links["implement"], {"reason": "v2 in force"}).status_code == 200
    blank = signed(persona, "qa", meaning="reviewed", reason="review", review=" ")
    assert_problem(qa.post(links["close"], blank), 400, "review_required")
    before = Snapshot()
    wrong = signed(persona, "qa", meaning="reviewed", reason="r", review="ok", password="nope")
    assert_problem(qa.post(links["close"], wrong), 422, "wrong_password")
    assert before.unchanged()
    closed = qa.post(
        links["close"],
        signed(persona, "qa", meaning="reviewed", reason="review", review="v2 works well."),
    )
    assert closed.status_code == 200, closed.content
    body = closed.json()
    assert body["status"] == "closed" and body["review"] == "v2 works well."
    assert body["review_signature"]["meaning"] == "reviewed"
    assert body["tasks"][0]["status"] == "done"


def test_a_site_status_change_reports_its_notification(plant, persona, api_client_for):
    """DV-09: the approved change carries the MHRA notification it opened."""
    change = submitted(plant, propose_site_status(plant))
    qa_approves(plant, change)
    answer = api_client_for("qp").post(
        reverse("api:change-control-approve", args=[change.number]),
        signed(persona, "qp", meaning="approved", reason="fit"),
    )
    assert answer.status_code == 200, answer.content
    notification = answer.json()["regulatory_notification"]
    assert notification["kind"] == "change_control" and notification["site"]["code"] == "MAN2"


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"regulatory": True}, "unknown_field"),
        ({"status": "approved"}, "unknown_field"),
        ({"scopes": []}, "scope_required"),
        ({"scopes": ["teleport"]}, "invalid_choice"),
        ({"scopes": ["release_process"]}, "regulatory_impact_required"),
        ({"scopes": ["master_file"], "regulatory_impact": "x"}, "product_required"),
        ({"product": "NOPE-1"}, "unknown_product"),
        ({"site": "ZZZ9"}, "unknown_site"),
        ({"risk_level": "extreme"}, "invalid_choice"),
        ({"title": 12}, "validation_error"),
        ({"reason": ""}, "blank"),
    ],
)
def test_bad_proposals_are_400_with_a_stable_code_and_write_nothing(
    plant, api_client_for, overrides, code
):
    """DV-07, DV-09, design §6: the regulatory flag and the status are never typed."""
    before = Snapshot()
    response = api_client_for("qa").post(
        reverse("api:change-control-list"), propose_body(**overrides)
    )
    assert_problem(response, 400, code)
    assert before.unchanged()


def test_api_refusals_of_the_lifecycle_write_nothing(plant, persona, api_client_for):
    """DV-07, MF-09: 404 for what you cannot see, 409 for the lifecycle, 412 for a stale
    read, 422 for a refused signature — each writing nothing."""
    qa = api_client_for("qa")
    change = submitted(plant, propose_master_file(plant))
    masterfile_services.draft_start(
        actor=plant.qa, master_file=plant.product.master_file, reason="periodic"
    )
    url = reverse("api:change-control-approve", args=[change.number])
    before = Snapshot()
    assert_problem(
        qa.post(url, signed(persona, "qa", meaning="approved", password="bad")),
        422,
        "wrong_password",
    )
    qa_approves(plant, change)
    before = Snapshot()
    assert_problem(
        api_client_for("qp").post(url, signed(persona, "qp", meaning="approved", reason="fit")),
        409,
        "version_open",
    )
    assert_problem(
        qa.post(reverse("api:change-control-submit", args=[change.number]), {"reason": "x"}),
        409,
        "transition_not_allowed",
    )
    assert_problem(
        qa.post(
            reverse("api:change-control-approve", args=["CC-1999-0001"]),
            signed(persona, "qa", meaning="approved"),
        ),
        404,
        "not_found",
    )
    # A token limited to MAN2 does not see a change at LDS1.
    at_lds1 = propose(plant)
    limited = token_client(plant.qa, site_codes=["MAN2"])
    before = Snapshot()
    assert (
        limited.get(reverse("api:change-control-detail", args=[at_lds1.number])).status_code == 404
    )
    assert_problem(
        limited.post(reverse("api:change-control-submit", args=[at_lds1.number]), {"reason": "go"}),
        404,
        "not_found",
    )
    # If-Match: a stale ETag is 412.
    detail = qa.get(reverse("api:change-control-detail", args=[at_lds1.number]))
    etag = detail["ETag"]
    services.change_update(
        actor=plant.qa, change=at_lds1, reason="title", changes={"title": "New title"}
    )
    before = Snapshot()
    stale = qa.patch(
        reverse("api:change-control-detail", args=[at_lds1.number]),
        {"risk_level": "high", "reason": "x"},
        HTTP_IF_MATCH=etag,
    )
    assert_problem(stale, 412, "precondition_failed")
    assert_problem(
        qa.patch(reverse("api:change-control-detail", args=[at_lds1.number]), {"reason": "x"}),
        400,
        "nothing_to_change",
    )
    assert_problem(
        qa.patch(
            reverse("api:change-control-detail", args=[at_lds1.number]),
            {"regulatory": True, "reason": "x"},
        ),
        400,
        "unknown_field",
    )
    assert before.unchanged()


def test_the_filters_narrow_the_list(plant, api_client_for):
    """Design §6: status, scope, site, product and regulatory filters; a bad value is 400."""
    equipment = propose(plant)
    master = propose_master_file(plant)
    pause = submitted(plant, propose_site_status(plant))
    qa = api_client_for("qa")

    def numbers(**params: str) -> set[str]:
        response = qa.get(reverse("api:change-control-list"), params)
        assert response.status_code == 200, response.content
        return {c["number"] for c in response.json()["results"]}

    assert numbers(status="in_review") == {pause.number}
    assert numbers(scope="master_file") == {master.number}
    assert numbers(site="LDS1") == {equipment.number}
    assert numbers(product="CART-01") == {master.number}
    assert numbers(regulatory="true") == {master.number, pause.number}
    assert numbers(regulatory="false") == {equipment.number}
    for bad in ({"scope": "teleport"}, {"regulatory": "maybe"}, {"status": "done"}):
        assert qa.get(reverse("api:change-control-list"), bad).status_code == 400


def test_the_api_list_reads_a_fixed_number_of_queries(plant, api_client_for):
    """Design §8: the list's work does not grow with the changes, their tasks or signatures."""
    qa = api_client_for("qa")

    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert qa.get(reverse("api:change-control-list")).status_code == 200
        return len(captured)

    add_task(plant, approved(plant, propose(plant)))
    count()  # the token's last use is recorded, then not again for a while
    few = count()
    for _ in range(3):
        change = approved(plant, propose_site_status(plant))
        add_task(plant, change)
    assert count() == few
