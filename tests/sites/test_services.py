"""Sites services: the lifecycle from ALLOWED_TRANSITIONS, signatures, notices, the MHRA log,
the switch, visibility, onboarding evidence and bad input (issue 3; SO-01…SO-13, RP-08)."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from controlsite import gates
from controlsite.accounts.scope import limit_to_token_sites
from controlsite.audit.models import AuditEvent
from controlsite.errors import (
    ApplicationError,
    ConflictError,
    PermissionRefusedError,
    TransitionNotAllowedError,
)
from controlsite.notifications.models import Notification
from controlsite.signatures.models import ElectronicSignature
from controlsite.signatures.services import (
    SignatureCredentials,
    SignatureRefusedError,
    signature_is_valid,
)
from sites import services
from sites.choices import (
    ACTION_TRANSITIONS,
    ALLOWED_TRANSITIONS,
    DEFAULT_DUE_DAYS,
    SIGNED_ACTIONS,
    NotificationKind,
    SiteAction,
    SiteKind,
    SiteRole,
    SiteStatus,
)
from sites.events import SiteEvent
from sites.models import OnboardingItem, RegulatoryNotification, Site, SiteMembership
from sites.selectors import site_can_manufacture, sites_visible_to
from tests.personas import PASSWORD
from tests.sites.helpers import PATH_TO, complete_checklist, creds, make_site

pytestmark = pytest.mark.django_db

_codes = (f"S{n}" for n in itertools.count(10))


def action_for(source: SiteStatus, target: SiteStatus) -> SiteAction:
    (action,) = [
        a for a, (sources, to) in ACTION_TRANSITIONS.items() if source in sources and to == target
    ]
    return action


ALLOWED = [(s, t) for s, targets in ALLOWED_TRANSITIONS.items() for t in sorted(targets)]
REFUSED = [
    (status, action)
    for status in SiteStatus
    for action, (sources, _) in ACTION_TRANSITIONS.items()
    if status not in sources
]


def test_the_action_table_and_the_transition_table_agree():
    derived = {
        s: frozenset(t for a, (sources, t) in ACTION_TRANSITIONS.items() if s in sources)
        for s in SiteStatus
    }
    assert derived == ALLOWED_TRANSITIONS


#
# Every allowed transition
#


@pytest.mark.parametrize(("source", "target"), ALLOWED, ids=[f"{s}-{t}" for s, t in ALLOWED])
def test_every_allowed_transition(persona, django_capture_on_commit_callbacks, source, target):
    qa = persona("qa")
    site = make_site(qa, next(_codes), source)
    action = action_for(source, target)
    if action == SiteAction.QUALIFY:
        complete_checklist(qa, site)
    before_sigs = ElectronicSignature.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        services.site_transition(
            actor=qa,
            site=site,
            action=action,
            reason="because the test says so",
            credentials=creds(qa),
        )
    site.refresh_from_db()
    assert site.status == target
    event = AuditEvent.objects.filter(
        event_type=SiteEvent.STATUS_CHANGED, site_code=site.code
    ).latest("seq")
    assert event.extra_data == {"action": str(action), "old": source, "new": target}
    assert event.reason == "because the test says so"
    assert event.actor == qa
    if action in SIGNED_ACTIONS:
        sig = ElectronicSignature.objects.latest("id")
        assert ElectronicSignature.objects.count() == before_sigs + 1
        assert event.signature == sig
        change = site.status_changes.order_by("-id")[0]
        assert (sig.meaning, sig.target_type, sig.target_id, sig.printed_name) == (
            "approved",
            "sites.sitestatuschange",
            str(change.pk),
            "Quinn Adams",
        )
        assert (change.from_status, change.to_status) == (source, target)
    else:
        assert event.signature is None
    # The history row carries the reason too.
    assert site.history.latest("history_id").history_change_reason == "because the test says so"
    # Later steps never invalidate a signature: it binds to the step, not to the site row.
    if target != SiteStatus.CEASED:
        services.site_transition(
            actor=qa,
            site=site,
            action=SiteAction.CEASE,
            reason="later step",
            credentials=creds(qa),
        )
    assert all(signature_is_valid(s) for s in ElectronicSignature.objects.all())


@pytest.mark.parametrize(("status", "action"), REFUSED, ids=[f"{s}-{a}" for s, a in REFUSED])
def test_every_refused_transition_is_a_409_and_changes_nothing(persona, status, action):
    qa = persona("qa")
    site = make_site(qa, next(_codes), status)
    events = AuditEvent.objects.count()
    with pytest.raises(TransitionNotAllowedError) as excinfo:
        services.site_transition(
            actor=qa, site=site, action=action, reason="try", credentials=creds(qa)
        )
    assert excinfo.value.status_code == 409
    site.refresh_from_db()
    assert site.status == status
    assert AuditEvent.objects.count() == events


def test_ceased_is_final():
    assert ALLOWED_TRANSITIONS[SiteStatus.CEASED] == frozenset()


#
# Signatures, reasons, roles
#


@pytest.mark.parametrize("action", sorted(SIGNED_ACTIONS))
def test_the_signed_steps_refuse_to_run_without_a_signature(persona, action):
    qa = persona("qa")
    source = next(
        iter(
            ACTION_TRANSITIONS[action][0]
            - {SiteStatus.CEASED, SiteStatus.PROPOSED, SiteStatus.ONBOARDING}
        )
    )
    site = make_site(qa, next(_codes), source)
    with pytest.raises(ApplicationError) as excinfo:
        services.site_transition(actor=qa, site=site, action=action, reason="no signature")
    assert excinfo.value.code == "signature_required"
    site.refresh_from_db()
    assert site.status == source


def test_a_wrong_password_leaves_the_site_active_and_is_recorded(persona):
    qa = persona("qa")
    site = make_site(qa, "WRONG1", SiteStatus.ACTIVE)
    with pytest.raises(SignatureRefusedError):
        services.site_transition(
            actor=qa,
            site=site,
            action=SiteAction.SUSPEND,
            reason="contamination",
            credentials=SignatureCredentials(username="qa", password="not-it"),
        )
    site.refresh_from_db()
    assert site.status == SiteStatus.ACTIVE
    assert site_can_manufacture(site)
    assert AuditEvent.objects.filter(event_type="signature.authentication_failed").count() == 1
    assert not RegulatoryNotification.objects.filter(kind=NotificationKind.SITE_SUSPENDED).exists()


def test_a_transition_needs_a_reason(persona):
    qa = persona("qa")
    site = make_site(qa, "NOREAS")
    with pytest.raises(ApplicationError) as excinfo:
        services.site_transition(
            actor=qa, site=site, action=SiteAction.START_ONBOARDING, reason="  "
        )
    assert excinfo.value.code == "reason_required"
    site.refresh_from_db()
    assert site.status == SiteStatus.PROPOSED


@pytest.mark.parametrize(
    "who", ["qp", "inspector", "site_lead", "operator", "trainer", "integrator"]
)
def test_only_control_site_qa_moves_a_site_along_its_lifecycle(persona, who):
    qa, other = persona("qa"), persona(who)
    site = make_site(qa, "R" + "".join(c for c in who.upper() if c.isalnum())[:6])
    with pytest.raises(PermissionRefusedError):
        services.site_transition(
            actor=other, site=site, action=SiteAction.START_ONBOARDING, reason="mine"
        )


#
# Qualification and the checklist (SO-03)
#


def test_qualification_is_refused_while_items_are_open_and_names_them(persona):
    qa = persona("qa")
    site = make_site(qa, "QUAL1", SiteStatus.ONBOARDING)
    first = site.checklist.order_by("position").first()
    assert first is not None
    services.checklist_item_attach_evidence(
        actor=qa, item=first, reference="PQ-7", reason="report filed"
    )
    services.checklist_item_sign_off(actor=qa, item=first, credentials=creds(qa), reason="checked")
    with pytest.raises(ConflictError) as excinfo:
        services.site_transition(actor=qa, site=site, action=SiteAction.QUALIFY, reason="ready?")
    assert excinfo.value.code == "checklist_open"
    open_titles = list(site.checklist.exclude(pk=first.pk).values_list("title", flat=True))
    for title in open_titles:
        assert title in excinfo.value.message
    assert first.title not in excinfo.value.message
    assert len(excinfo.value.extra["open_items"]) == len(open_titles)
    site.refresh_from_db()
    assert site.status == SiteStatus.ONBOARDING


def test_a_new_site_starts_with_the_configured_checklist(persona):
    site = make_site(persona("qa"), "CHK1")
    keys = list(site.checklist.order_by("position").values_list("key", flat=True))
    assert keys == [
        "premises",
        "equipment-iq-oq",
        "technical-agreement",
        "staff-trained",
        "batches",
    ]


def test_sign_off_needs_evidence_and_a_signature(persona):
    qa = persona("qa")
    item = make_site(qa, "CHK2").checklist.first()
    assert item is not None
    with pytest.raises(ConflictError) as excinfo:
        services.checklist_item_sign_off(
            actor=qa, item=item, credentials=creds(qa), reason="no evidence yet"
        )
    assert excinfo.value.code == "evidence_required"
    services.checklist_item_attach_evidence(actor=qa, item=item, reference="REF-1", reason="filed")
    services.checklist_item_sign_off(actor=qa, item=item, credentials=creds(qa), reason="ok")
    item.refresh_from_db()
    assert item.status == "done"
    assert ElectronicSignature.objects.get(target_id=str(item.pk)).meaning == "verified"
    with pytest.raises(TransitionNotAllowedError):
        services.checklist_item_attach_evidence(
            actor=qa, item=item, reference="late", reason="after sign-off"
        )


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def test_an_evidence_file_is_stored_with_its_hash(persona, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    qa = persona("qa")
    item = make_site(qa, "EVI1").checklist.first()
    assert item is not None
    services.checklist_item_attach_evidence(
        actor=qa,
        item=item,
        reason="IQ report",
        upload=SimpleUploadedFile("iq-report.pdf", PDF, content_type="application/pdf"),
    )
    item.refresh_from_db()
    import hashlib

    assert item.evidence_sha256 == hashlib.sha256(PDF).hexdigest()
    assert str(item.evidence_file.name).startswith("sites/EVI1/onboarding/")
    with item.evidence_file.open("rb") as stored:
        assert stored.read() == PDF


@pytest.mark.parametrize(
    ("name", "content", "code"),
    [
        ("big.pdf", PDF + b"x" * 2048, "evidence_too_large"),
        ("tool.exe", b"MZ\x90\x00", "evidence_type"),
        ("fake.pdf", b"<html>not a pdf</html>", "evidence_type"),
        ("notes.txt", b"\xff\xfe\x00bad", "evidence_type"),
        ("empty.pdf", b"", "evidence_empty"),
    ],
)
def test_bad_evidence_is_refused_and_nothing_is_written(
    persona, settings, tmp_path, name, content, code
):
    settings.MEDIA_ROOT = tmp_path
    settings.SITE_EVIDENCE_MAX_BYTES = 1024
    qa = persona("qa")
    item = make_site(qa, "EVI2").checklist.first()
    assert item is not None
    events = AuditEvent.objects.count()
    with pytest.raises(ApplicationError) as excinfo:
        services.checklist_item_attach_evidence(
            actor=qa, item=item, reason="x", upload=SimpleUploadedFile(name, content)
        )
    assert excinfo.value.code == code
    assert excinfo.value.status_code == 400
    item.refresh_from_db()
    assert not item.evidence_file
    assert AuditEvent.objects.count() == events
    assert not list(tmp_path.rglob("*.*"))


#
# The switch (issue 3 §5) and its release gate
#


def test_the_switch_turns_off_the_moment_a_site_leaves_active(persona):
    qa = persona("qa")
    site = make_site(qa, "SWITCH", SiteStatus.ACTIVE)
    seen_by_a_batch_app = Site.objects.get(pk=site.pk)  # another part of the system's copy
    assert site_can_manufacture(seen_by_a_batch_app)
    services.site_transition(
        actor=qa,
        site=site,
        action=SiteAction.SUSPEND,
        reason="sterility failure",
        credentials=creds(qa),
    )
    # The other copy still says "active" in memory; the switch reads the database.
    assert seen_by_a_batch_app.status == SiteStatus.ACTIVE
    assert not site_can_manufacture(seen_by_a_batch_app)
    services.site_transition(
        actor=qa,
        site=site,
        action=SiteAction.REINSTATE,
        reason="investigation closed",
        credentials=creds(qa),
    )
    assert site_can_manufacture(seen_by_a_batch_app)


@pytest.mark.parametrize("status", [s for s in SiteStatus if s != SiteStatus.ACTIVE])
def test_only_an_active_site_can_manufacture(persona, status):
    site = make_site(persona("qa"), next(_codes), status)
    assert not site_can_manufacture(site)


def test_the_release_gate_blocks_a_batch_from_a_site_that_is_not_active(persona):
    class Batch:
        def __init__(self, site: Site) -> None:
            self.site = site

    qa = persona("qa")
    site = make_site(qa, "GATE1", SiteStatus.ACTIVE)
    site_gate = gates.registered()["sites.site_is_active"]
    assert list(site_gate(Batch(site))) == []
    services.site_transition(actor=qa, site=site, action=SiteAction.PAUSE, reason="staff short")
    findings = list(site_gate(Batch(Site.objects.get(pk=site.pk))))
    assert [f.code for f in findings] == ["site_not_active"]
    assert findings[0].severity == gates.Severity.BLOCK
    assert "paused" in findings[0].message


#
# Notices and the MHRA log (SO-04, RP-03, RP-08)
#


@pytest.mark.parametrize("action", [SiteAction.SUSPEND, SiteAction.CEASE])
def test_suspension_and_cessation_tell_the_site_lead_and_the_qps(
    persona, django_capture_on_commit_callbacks, action
):
    qa, _qp, lead, operator = (persona(p) for p in ("qa", "qp", "site_lead", "operator"))
    site = make_site(qa, f"A{action[:5].upper()}", SiteStatus.ACTIVE)
    services.membership_add(actor=qa, site=site, user=lead, role=SiteRole.SITE_LEAD, reason="lead")
    services.membership_add(
        actor=qa, site=site, user=operator, role=SiteRole.SITE_OPERATOR, reason="operator"
    )
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.site_transition(
            actor=qa, site=site, action=action, reason="sterility failure", credentials=creds(qa)
        )
    told = set(Notification.objects.values_list("recipient__username", flat=True))
    assert told == {"qp", "site_lead"}
    notice = Notification.objects.get(recipient=lead)
    assert site.code in notice.subject
    assert "sterility failure" in notice.body
    assert notice.link == f"/sites/{site.code}/"
    assert sorted(m.to[0] for m in mail.outbox) == ["qp@example.test", "site_lead@example.test"]
    kind = {
        SiteAction.SUSPEND: NotificationKind.SITE_SUSPENDED,
        SiteAction.CEASE: NotificationKind.SITE_CEASED,
    }[action]
    record = RegulatoryNotification.objects.get(kind=kind, site=site)
    assert record.due_on == timezone.localdate() + dt.timedelta(days=DEFAULT_DUE_DAYS[kind])
    assert record.sent_on is None


def test_reinstatement_and_first_activation_open_mhra_notifications(persona):
    qa = persona("qa")
    site = make_site(qa, "MHRA1", SiteStatus.SUSPENDED)
    services.site_transition(
        actor=qa,
        site=site,
        action=SiteAction.REINSTATE,
        reason="CAPA effective",
        credentials=creds(qa),
    )
    kinds = list(
        RegulatoryNotification.objects.filter(site=site)
        .order_by("id")
        .values_list("kind", flat=True)
    )
    assert kinds == ["site_added", "site_suspended", "site_reinstated"]
    # Pausing is internal: nobody outside needs to be told.
    services.site_transition(actor=qa, site=site, action=SiteAction.PAUSE, reason="holiday")
    services.site_transition(actor=qa, site=site, action=SiteAction.RESUME, reason="back")
    assert RegulatoryNotification.objects.filter(site=site).count() == 3


def test_the_due_period_is_configurable(persona, settings):
    settings.REGULATORY_NOTIFICATION_DUE_DAYS = {"site_suspended": 3}
    qa = persona("qa")
    site = make_site(qa, "DUE1", SiteStatus.SUSPENDED)
    record = RegulatoryNotification.objects.get(site=site, kind="site_suspended")
    assert record.due_on == timezone.localdate() + dt.timedelta(days=3)


def test_marking_a_notification_sent_needs_a_reference(persona):
    qa = persona("qa")
    site = make_site(qa, "SENT1", SiteStatus.SUSPENDED)
    record = RegulatoryNotification.objects.get(site=site, kind="site_suspended")
    with pytest.raises(ApplicationError):
        services.regulatory_notification_mark_sent(
            actor=qa, notification=record, sent_on=timezone.localdate(), reference="", reason="sent"
        )
    services.regulatory_notification_mark_sent(
        actor=qa,
        notification=record,
        sent_on=timezone.localdate(),
        reference="MHRA-DM-2026-0142",
        reason="sent by e-mail",
    )
    record.refresh_from_db()
    assert (record.reference, record.sent_by) == ("MHRA-DM-2026-0142", qa)
    with pytest.raises(ConflictError):
        services.regulatory_notification_mark_sent(
            actor=qa,
            notification=record,
            sent_on=timezone.localdate(),
            reference="again",
            reason="twice",
        )


def test_naming_a_qp_is_recorded_for_the_mhra(persona):
    qa, qp, operator = persona("qa"), persona("qp"), persona("operator")
    services.control_site_save(
        actor=qa,
        name="North Control Site",
        address="1 Hospital Road",
        licence_number="MIA 1/1",
        scope_poc=True,
        scope_mm=True,
        regulator_contacts="",
        reason="set up",
    )
    with pytest.raises(ApplicationError) as excinfo:
        services.named_qp_add(actor=qa, user=operator, reason="not a QP")
    assert excinfo.value.code == "not_a_qp"
    naming = services.named_qp_add(actor=qa, user=qp, reason="licence variation")
    assert RegulatoryNotification.objects.filter(kind="qp_changed").count() == 1
    services.named_qp_remove(actor=qa, naming=naming, reason="left")
    assert RegulatoryNotification.objects.filter(kind="qp_changed").count() == 2


#
# Visibility (issue 3 §6)
#


def test_a_site_scoped_user_sees_only_their_sites(persona):
    qa, operator = persona("qa"), persona("operator")
    a, b = make_site(qa, "SITEA"), make_site(qa, "SITEB")
    assert list(sites_visible_to(operator)) == []
    services.membership_add(
        actor=qa, site=b, user=operator, role=SiteRole.SITE_OPERATOR, reason="works at B"
    )
    assert list(sites_visible_to(operator)) == [b]
    for who in ("qa", "qp", "inspector"):
        assert set(sites_visible_to(persona(who))) == {a, b}
    membership = SiteMembership.objects.get(user=operator)
    services.membership_end(actor=qa, membership=membership, reason="moved on")
    assert list(sites_visible_to(operator)) == []


def test_a_token_limited_to_sites_narrows_even_qa(persona):
    qa = persona("qa")
    make_site(qa, "TOKA")
    b = make_site(qa, "TOKB")
    limit_to_token_sites(qa, ["TOKB"])
    assert list(sites_visible_to(qa)) == [b]


def test_an_administrator_never_works_at_a_site(persona):
    qa, admin = persona("qa"), persona("sysadmin")
    site = make_site(qa, "ADM1")
    with pytest.raises(ConflictError):
        services.membership_add(
            actor=qa, site=site, user=admin, role=SiteRole.SITE_LEAD, reason="no"
        )


#
# Register: bad input (issue 3 "Bad input")
#


def test_a_duplicate_code_is_a_409_and_nothing_is_written(persona):
    qa = persona("qa")
    make_site(qa, "DUP1")
    sites, events, items = (
        Site.objects.count(),
        AuditEvent.objects.count(),
        OnboardingItem.objects.count(),
    )
    with pytest.raises(ConflictError) as excinfo:
        services.site_register(
            actor=qa, code="DUP1", name="Again", kind=SiteKind.TESTING_LAB, reason="again"
        )
    assert excinfo.value.code == "site_code_taken"
    assert "DUP1" in excinfo.value.message
    assert (Site.objects.count(), AuditEvent.objects.count(), OnboardingItem.objects.count()) == (
        sites,
        events,
        items,
    )


@pytest.mark.parametrize("code", ["a1", "X", "TOOLONGCODE", "LON-1", "LÖN1", ""])
def test_a_malformed_code_is_refused(persona, code):
    with pytest.raises(ValidationError):
        services.site_register(
            actor=persona("qa"), code=code, name="x", kind=SiteKind.POC_HOSPITAL, reason="x"
        )
    assert not Site.objects.exists()


def test_a_code_never_changes(persona):
    qa = persona("qa")
    site = make_site(qa, "KEEP1")
    with pytest.raises(ApplicationError) as excinfo:
        services.site_update(actor=qa, site=site, reason="rename", changes={"code": "KEEP2"})
    assert excinfo.value.code == "site_code_immutable"
    site.refresh_from_db()
    assert site.code == "KEEP1"


def test_an_update_records_old_and_new_values(persona):
    qa = persona("qa")
    site = make_site(qa, "UPD1")
    services.site_update(
        actor=qa, site=site, reason="trust merger", changes={"host_organisation": "New NHS Trust"}
    )
    event = AuditEvent.objects.filter(event_type=SiteEvent.UPDATED).get()
    assert event.extra_data == {
        "old": {"host_organisation": ""},
        "new": {"host_organisation": "New NHS Trust"},
    }
    row = site.history.latest("history_id")
    assert row.history_change_reason == "trust merger"


def test_a_modular_unit_keeps_a_dated_history_of_moves(persona):
    qa = persona("qa")
    unit = make_site(qa, "MOD1", kind=SiteKind.MODULAR_UNIT, current_location="Bay 1")
    services.site_move(
        actor=qa, site=unit, location="Bay 4, North car park", reason="ward refurbishment"
    )
    unit.refresh_from_db()
    assert unit.current_location == "Bay 4, North car park"
    assert [m.location for m in unit.moves.all()] == ["Bay 4, North car park", "Bay 1"]
    with pytest.raises(ConflictError):
        services.site_move(actor=qa, site=make_site(qa, "FIX1"), location="x", reason="x")


def test_the_nominated_person_becomes_the_site_lead(persona):
    qa, lead = persona("qa"), persona("site_lead")
    site = make_site(qa, "NOM1", nominated_person=lead)
    assert SiteMembership.objects.filter(site=site, user=lead, role="site_lead").exists()
    assert list(sites_visible_to(lead)) == [site]


#
# Equipment and audits (SO-07, SO-10)
#


def test_equipment_and_audits_are_recorded_with_their_history(persona):
    from sites.choices import EquipmentStatus, FindingGrade

    qa, lead = persona("qa"), persona("site_lead")
    site = make_site(qa, "EQ1", SiteStatus.ACTIVE, nominated_person=lead)
    kit = services.equipment_add(
        actor=lead,
        site=site,
        kind="Closed-system processor",
        serial_number="CSP-001",
        reason="installed",
    )
    with pytest.raises(ConflictError):
        services.equipment_add(
            actor=qa,
            site=site,
            kind="Closed-system processor",
            serial_number="CSP-001",
            reason="again",
        )
    services.equipment_update(
        actor=qa,
        equipment=kit,
        reason="OQ passed",
        changes={"qualification_status": EquipmentStatus.OQ_DONE},
    )
    other = make_site(qa, "EQ2")
    with pytest.raises(PermissionRefusedError):
        services.equipment_add(
            actor=lead, site=other, kind="Cabinet", serial_number="1", reason="not my site"
        )
    audit = services.site_audit_plan(
        actor=qa,
        site=site,
        title="Annual self-inspection",
        planned_for=timezone.localdate(),
        reason="programme",
    )
    finding = services.audit_finding_add(
        actor=qa,
        audit=audit,
        grade=FindingGrade.MAJOR,
        description="Gowning log incomplete",
        reason="found",
    )
    services.site_audit_complete(
        actor=qa, audit=audit, done_on=timezone.localdate(), summary="1 major", reason="closed out"
    )
    assert finding.pk is not None
    kinds = set(AuditEvent.objects.filter(site_code="EQ1").values_list("event_type", flat=True))
    assert {
        SiteEvent.EQUIPMENT_ADDED,
        SiteEvent.EQUIPMENT_CHANGED,
        SiteEvent.AUDIT_PLANNED,
        SiteEvent.FINDING_ADDED,
        SiteEvent.AUDIT_DONE,
    } <= kinds


def test_the_paths_used_by_these_tests_reach_every_status():
    assert set(PATH_TO) == set(SiteStatus)
    assert PASSWORD


def test_qa_is_reminded_once_a_day_of_due_and_overdue_mhra_notifications(persona, settings):
    from sites.tasks import regulatory_notifications_remind

    settings.REGULATORY_NOTIFICATION_DUE_DAYS = {"site_suspended": 0}
    qa, operator = persona("qa"), persona("operator")
    make_site(qa, "REM1", SiteStatus.SUSPENDED)  # due today
    assert regulatory_notifications_remind.apply().get() == 1
    assert regulatory_notifications_remind.apply().get() == 0  # already reminded today
    notice = Notification.objects.get(recipient=qa)
    assert notice.subject.startswith("MHRA notification due: Site suspended: REM1")
    assert notice.link == reverse("sites:notifications")
    assert not Notification.objects.filter(recipient=operator).exists()
    tomorrow = timezone.localdate() + dt.timedelta(days=2)
    assert services.regulatory_notifications_remind(today=tomorrow) == 1
    assert Notification.objects.filter(recipient=qa, subject__contains="overdue").exists()


def test_a_ceased_sites_onboarding_is_closed(persona):
    qa = persona("qa")
    site = make_site(qa, "CLOSED", SiteStatus.CEASED)
    item = site.checklist.first()
    assert item is not None
    with pytest.raises(TransitionNotAllowedError) as excinfo:
        services.checklist_item_attach_evidence(
            actor=qa, item=item, reference="late", reason="after cessation"
        )
    assert excinfo.value.code == "site_ceased"


def test_a_site_limited_token_sees_only_its_sites_mhra_notices_and_registers_no_other(persona):
    from sites.selectors import regulatory_notifications_visible_to

    qa = persona("qa")
    make_site(qa, "LIMA", SiteStatus.SUSPENDED)
    make_site(qa, "LIMB", SiteStatus.SUSPENDED)
    limit_to_token_sites(qa, ["LIMB"])
    codes = {n.site.code for n in regulatory_notifications_visible_to(qa) if n.site}
    assert codes == {"LIMB"}
    with pytest.raises(PermissionRefusedError):
        services.site_register(
            actor=qa, code="LIMC", name="x", kind=SiteKind.TESTING_LAB, reason="outside the token"
        )


def test_a_file_stored_for_a_refused_change_is_removed_again(persona, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    qa = persona("qa")
    item = make_site(qa, "EVI3").checklist.first()
    assert item is not None
    services.checklist_item_attach_evidence(actor=qa, item=item, reference="R", reason="filed")
    services.checklist_item_sign_off(actor=qa, item=item, credentials=creds(qa), reason="ok")
    with pytest.raises(TransitionNotAllowedError):
        services.checklist_item_attach_evidence(
            actor=qa, item=item, reason="late", upload=SimpleUploadedFile("late.pdf", PDF)
        )
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
