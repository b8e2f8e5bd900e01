"""The sites pages: who may open and post what, site isolation, a QA's walk from registration
to suspension through the forms, bad input, and fixed query counts (issue 3, pages)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from controlsite.accounts.models import User
from controlsite.audit.context import audit_context
from controlsite.audit.models import AuditEvent
from controlsite.audit.services import audit_event_record
from controlsite.notifications.models import Notification
from controlsite.notifications.services import notify
from controlsite.signatures.models import ElectronicSignature
from controlsite.signatures.services import SignatureCredentials
from sites import services
from sites.choices import (
    ChecklistItemStatus,
    EquipmentStatus,
    FindingGrade,
    NotificationKind,
    SiteAction,
    SiteKind,
    SiteRole,
    SiteStatus,
)
from sites.events import SiteEvent
from sites.models import (
    ControlSite,
    Equipment,
    NamedQP,
    OnboardingItem,
    RegulatoryNotification,
    Site,
    SiteAudit,
    SiteMembership,
)
from tests.matrix import ANON, Matrix, only
from tests.personas import PASSWORD

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
_codes = (f"T{n}" for n in itertools.count(100))


@pytest.fixture(autouse=True)
def _media_in_tmp(settings: Any, tmp_path: Any) -> None:
    """Evidence files land in a throwaway folder, never in var/."""
    settings.MEDIA_ROOT = tmp_path / "media"


#
# Building sites through the real services
#


def creds(user: User) -> SignatureCredentials:
    return SignatureCredentials(username=user.get_username(), password=PASSWORD)


def register(qa: User, code: str = "AAA1", **fields: Any) -> Site:
    fields.setdefault("kind", SiteKind.POC_HOSPITAL)
    return services.site_register(
        actor=qa, code=code, name=f"Site {code}", reason="new spoke", **fields
    )


def complete_checklist(qa: User, site: Site) -> None:
    for item in site.checklist.all():
        services.checklist_item_attach_evidence(
            actor=qa, item=item, reference=f"DOC-{item.key}", reason="evidence on file"
        )
        services.checklist_item_sign_off(
            actor=qa, item=item, credentials=creds(qa), reason="evidence reviewed"
        )


def walk(qa: User, site: Site, *actions: SiteAction) -> Site:
    for action in actions:
        if action == SiteAction.QUALIFY:
            complete_checklist(qa, site)
        services.site_transition(
            actor=qa, site=site, action=action, reason=f"test: {action}", credentials=creds(qa)
        )
    site.refresh_from_db()
    return site


TO_QUALIFIED = (SiteAction.START_ONBOARDING, SiteAction.QUALIFY)
TO_ACTIVE = (*TO_QUALIFIED, SiteAction.ACTIVATE)


def signature(reason: str = "signed for the test", *, meaning: str = "approved") -> dict[str, str]:
    """The signature dialog's fields for QA's first signing in a session (username too)."""
    return {"username": "qa", "password": PASSWORD, "meaning": meaning, "reason": reason}


def message_texts(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


#
# Who may open and post what
#

ALL_OK = only({}, others=200, anonymous=302)
READERS = {"qa": 200, "qp": 200, "inspector": 200}  # VIEW_ALL_SITES: every site, read-only
QA_ONLY_403 = only({"qa": 200}, others=403, anonymous=302)
# A page of a site that only QA may change: readers of every site get 403, everyone else does
# not see the site at all (404).
QA_WRITES_SITE = only({"qa": 200, "qp": 403, "inspector": 403}, others=404, anonymous=302)
SITE_READERS = only(READERS, others=404, anonymous=302)
LICENCE_READERS = only(READERS, others=403, anonymous=302)


def _posted(table: dict[str, int]) -> dict[str, int]:
    """A successful POST redirects (302): the same table with 200 read as 302."""
    return {who: 302 if status == 200 else status for who, status in table.items()}


@dataclasses.dataclass(frozen=True)
class Endpoint:
    matrix: Matrix
    method: str
    build: Callable[[Callable[[str], User]], tuple[str, dict[str, Any]]]


def _site(persona: Callable[[str], User], *actions: SiteAction, **fields: Any) -> Site:
    site = register(persona("qa"), **fields)
    return walk(persona("qa"), site, *actions) if actions else site


def _item_with_evidence(persona: Callable[[str], User]) -> OnboardingItem:
    site = _site(persona, SiteAction.START_ONBOARDING)
    item = site.checklist.order_by("position").first()
    assert item is not None
    upload = SimpleUploadedFile("premises.pdf", PDF, content_type="application/pdf")
    return services.checklist_item_attach_evidence(
        actor=persona("qa"), item=item, upload=upload, reason="evidence on file"
    )


def _equipment(persona: Callable[[str], User]) -> Equipment:
    return services.equipment_add(
        actor=persona("qa"),
        site=_site(persona),
        kind="Closed-system processor",
        serial_number="SN-1",
        reason="installed",
    )


def _audit(persona: Callable[[str], User]) -> SiteAudit:
    return services.site_audit_plan(
        actor=persona("qa"),
        site=_site(persona),
        title="Annual GMP audit",
        planned_for=timezone.localdate(),
        reason="audit programme",
    )


def _membership(persona: Callable[[str], User]) -> SiteMembership:
    from tests.personas import make_persona

    site = _site(persona)
    return services.membership_add(
        actor=persona("qa"),
        site=site,
        # someone outside the matrix, so the personas still do not see the site
        user=make_persona("operator", username="member1"),
        role=SiteRole.SITE_OPERATOR,
        reason="joins the team",
    )


def _control(persona: Callable[[str], User]) -> ControlSite:
    return services.control_site_save(
        actor=persona("qa"),
        name="Northern Control Site",
        address="1 Freeman Road",
        licence_number="MIA 12345/0001",
        scope_poc=True,
        scope_mm=False,
        regulator_contacts="",
        reason="licence granted",
    )


def _qp_add_url(persona: Callable[[str], User]) -> str:
    _control(persona)  # a QP is named on a recorded licence
    return _url("sites:qp_add")


def _named_qp(persona: Callable[[str], User]) -> NamedQP:
    _control(persona)
    return services.named_qp_add(actor=persona("qa"), user=persona("qp"), reason="named")


def _pending_notification(persona: Callable[[str], User]) -> RegulatoryNotification:
    site = _site(persona, SiteAction.CEASE)
    return RegulatoryNotification.objects.get(site=site, kind=NotificationKind.SITE_CEASED)


def _url(name: str, *args: Any) -> str:
    return reverse(name, args=args)


REASON = {"reason": "recorded for the test"}

ENDPOINTS: list[Endpoint] = [
    # Pages (GET)
    Endpoint(Matrix("page:sites-list", ALL_OK), "get", lambda p: (_url("sites:index"), {})),
    Endpoint(
        Matrix("page:sites-detail", SITE_READERS),
        "get",
        lambda p: (_url("sites:detail", _site(p).code), {}),
    ),
    Endpoint(Matrix("page:sites-create", QA_ONLY_403), "get", lambda p: (_url("sites:create"), {})),
    Endpoint(
        Matrix("page:sites-edit", QA_WRITES_SITE),
        "get",
        lambda p: (_url("sites:edit", _site(p).code), {}),
    ),
    Endpoint(
        Matrix("page:sites-transition", QA_WRITES_SITE),
        "get",
        lambda p: (_url("sites:transition", _site(p).code, "start-onboarding"), {}),
    ),
    Endpoint(
        Matrix("page:sites-checklist-item", SITE_READERS),
        "get",
        lambda p: (_url("sites:item", _site(p).code, "premises"), {}),
    ),
    Endpoint(
        Matrix("page:sites-evidence-file", SITE_READERS),
        "get",
        lambda p: (_url("sites:evidence_file", (i := _item_with_evidence(p)).site.code, i.key), {}),
    ),
    Endpoint(
        Matrix("page:sites-equipment-edit", QA_WRITES_SITE),
        "get",
        lambda p: (_url("sites:equipment_edit", (e := _equipment(p)).site.code, e.pk), {}),
    ),
    Endpoint(
        Matrix("page:sites-audit", SITE_READERS),
        "get",
        lambda p: (_url("sites:audit", (a := _audit(p)).site.code, a.pk), {}),
    ),
    Endpoint(
        Matrix("page:sites-control", LICENCE_READERS), "get", lambda p: (_url("sites:control"), {})
    ),
    Endpoint(
        Matrix("page:sites-mhra-log", LICENCE_READERS),
        "get",
        lambda p: (_url("sites:notifications"), {}),
    ),
    Endpoint(
        Matrix("page:sites-mhra-sent", QA_ONLY_403),
        "get",
        lambda p: (_url("sites:notification_sent", _pending_notification(p).pk), {}),
    ),
    Endpoint(
        Matrix("page:notifications", ALL_OK), "get", lambda p: (_url("notifications:list"), {})
    ),
    # Writes (POST): QA only, and only on a site the poster can see
    Endpoint(
        Matrix("page:sites-create-post", _posted(QA_ONLY_403)),
        "post",
        lambda p: (
            _url("sites:create"),
            {"code": "NEW1", "name": "New site", "kind": "poc_hospital", **REASON},
        ),
    ),
    Endpoint(
        Matrix("page:sites-edit-post", _posted(QA_WRITES_SITE)),
        "post",
        lambda p: (
            _url("sites:edit", _site(p).code),
            {"name": "Renamed", "kind": "poc_hospital", **REASON},
        ),
    ),
    Endpoint(
        Matrix("page:sites-transition-post", _posted(QA_WRITES_SITE)),
        "post",
        lambda p: (_url("sites:transition", _site(p).code, "start-onboarding"), REASON),
    ),
    Endpoint(
        Matrix("page:sites-transition-signed-post", _posted(QA_WRITES_SITE)),
        "post",
        lambda p: (
            _url("sites:transition", _site(p, *TO_QUALIFIED).code, "activate"),
            signature(),
        ),
    ),
    Endpoint(
        Matrix("page:sites-move-post", _posted(QA_WRITES_SITE)),
        "post",
        lambda p: (
            _url("sites:move", _site(p, kind=SiteKind.MODULAR_UNIT).code),
            {"move-location": "Car park C", "move-reason": "relocated"},
        ),
    ),
    Endpoint(
        Matrix("page:sites-evidence-post", _posted(QA_WRITES_SITE)),
        "post",
        lambda p: (
            _url("sites:evidence", _site(p, SiteAction.START_ONBOARDING).code, "premises"),
            {"evidence-reference": "PQR-1", "evidence-reason": "on file"},
        ),
    ),
    Endpoint(
        Matrix("page:sites-signoff-post", _posted(QA_WRITES_SITE)),
        "post",
        lambda p: (
            _url("sites:signoff", (i := _item_with_evidence(p)).site.code, i.key),
            signature(meaning="verified"),
        ),
    ),
    Endpoint(
        Matrix("page:sites-member-add-post", _posted(QA_WRITES_SITE)),
        "post",
        lambda p: (
            _url("sites:member_add", _site(p).code),
            {
                "member-user": p("trainer").pk,
                "member-role": "site_operator",
                "member-reason": "joins",
            },
        ),
    ),
    Endpoint(
        Matrix("page:sites-member-end-post", _posted(QA_WRITES_SITE)),
        "post",
        lambda p: (
            _url("sites:member_end", (m := _membership(p)).site.code, m.pk),
            {f"end-{m.pk}-reason": "left the trust"},
        ),
    ),
    Endpoint(
        Matrix("page:sites-equipment-add-post", _posted(QA_WRITES_SITE)),
        "post",
        lambda p: (
            _url("sites:equipment_add", _site(p).code),
            {
                "equipment-kind": "Cell counter",
                "equipment-serial_number": "CC-9",
                "equipment-qualification_status": "not_qualified",
                "equipment-reason": "installed",
            },
        ),
    ),
    Endpoint(
        Matrix("page:sites-equipment-edit-post", _posted(QA_WRITES_SITE)),
        "post",
        lambda p: (
            _url("sites:equipment_edit", (e := _equipment(p)).site.code, e.pk),
            {"qualification_status": "iq_done", **REASON},
        ),
    ),
    Endpoint(
        Matrix("page:sites-audit-add-post", _posted(QA_WRITES_SITE)),
        "post",
        lambda p: (
            _url("sites:audit_add", _site(p).code),
            {
                "audit-title": "Self-inspection",
                "audit-planned_for": "2030-01-10",
                "audit-reason": "programme",
            },
        ),
    ),
    Endpoint(
        Matrix("page:sites-audit-complete-post", _posted(QA_WRITES_SITE)),
        "post",
        lambda p: (
            _url("sites:audit_complete", (a := _audit(p)).site.code, a.pk),
            {
                "complete-done_on": timezone.localdate().isoformat(),
                "complete-reason": "report issued",
            },
        ),
    ),
    Endpoint(
        Matrix("page:sites-finding-add-post", _posted(QA_WRITES_SITE)),
        "post",
        lambda p: (
            _url("sites:finding_add", (a := _audit(p)).site.code, a.pk),
            {
                "finding-grade": "major",
                "finding-description": "Gowning SOP not followed",
                "finding-reason": "from the report",
            },
        ),
    ),
    Endpoint(
        Matrix("page:sites-control-edit-post", _posted(QA_ONLY_403)),
        "post",
        lambda p: (
            _url("sites:control_edit"),
            {
                "control-name": "Northern Control Site",
                "control-address": "1 Freeman Road",
                "control-licence_number": "MIA 12345/0001",
                "control-scope_poc": "on",
                "control-reason": "licence granted",
            },
        ),
    ),
    Endpoint(
        Matrix("page:sites-qp-add-post", _posted(QA_ONLY_403)),
        "post",
        lambda p: (
            _qp_add_url(p),
            {"qp-user": p("qp").pk, "qp-reason": "named on the licence"},
        ),
    ),
    Endpoint(
        Matrix("page:sites-qp-remove-post", _posted(QA_ONLY_403)),
        "post",
        lambda p: (
            _url("sites:qp_remove", (n := _named_qp(p)).pk),
            {f"qp-{n.pk}-reason": "left the company"},
        ),
    ),
    Endpoint(
        Matrix("page:sites-mhra-sent-post", _posted(QA_ONLY_403)),
        "post",
        lambda p: (
            _url("sites:notification_sent", _pending_notification(p).pk),
            {"sent_on": timezone.localdate().isoformat(), "reference": "MHRA-1", **REASON},
        ),
    ),
]

ENDPOINT_CASES = [
    pytest.param(endpoint, who, status, id=f"{endpoint.matrix.name}-{who}-{status}")
    for endpoint in ENDPOINTS
    for who, status in endpoint.matrix.expected.items()
]


@pytest.mark.parametrize(("endpoint", "who", "expected"), ENDPOINT_CASES)
def test_who_may_open_and_post_each_sites_page(persona, browser_as, endpoint, who, expected):
    url, data = endpoint.build(persona)
    client = browser_as(who)
    response = client.get(url) if endpoint.method == "get" else client.post(url, data)
    response.close()  # a file download streams from an open file
    assert response.status_code == expected


NOTICE_READ = Matrix("page:notifications-read-post", only({}, others=302, anonymous=302))


@pytest.mark.parametrize(("who", "expected"), NOTICE_READ.cases())
def test_everyone_marks_their_own_notice_read(persona, browser_as, who, expected):
    owner = persona("qa" if who == ANON else who)
    (notice,) = notify(recipients=[owner], subject="Site S1 suspended")
    response = browser_as(who).post(reverse("notifications:read", args=[notice.pk]))
    assert response.status_code == expected
    notice.refresh_from_db()
    assert (notice.read_at is not None) == (who != ANON)


NOTICE_READ_ALL = Matrix("page:notifications-read-all-post", only({}, others=302, anonymous=302))


@pytest.mark.parametrize(("who", "expected"), NOTICE_READ_ALL.cases())
def test_everyone_marks_all_their_own_notices_read_and_no_one_elses(
    persona, browser_as, who, expected
):
    owner = persona("qa" if who == ANON else who)
    other = persona("inspector" if who != "inspector" else "qp")
    mine = notify(recipients=[owner], subject="one") + notify(recipients=[owner], subject="two")
    (theirs,) = notify(recipients=[other], subject="not yours")
    assert browser_as(who).post(reverse("notifications:read_all")).status_code == expected
    for notice in mine:
        notice.refresh_from_db()
        assert (notice.read_at is not None) == (who != ANON)
    theirs.refresh_from_db()
    assert theirs.read_at is None


@pytest.mark.parametrize(
    "name",
    [
        "sites:move",
        "sites:member_add",
        "sites:equipment_add",
        "sites:audit_add",
    ],
)
def test_writes_refuse_get(client_for, persona, name):
    site = register(persona("qa"))
    assert client_for("qa").get(reverse(name, args=[site.code])).status_code == 405


def test_writes_need_the_csrf_token(persona):
    from tests.personas import login

    register(persona("qa"))
    client = login(Client(enforce_csrf_checks=True), persona("qa"))
    response = client.post(reverse("sites:transition", args=["AAA1", "start-onboarding"]), REASON)
    assert response.status_code == 403
    assert Site.objects.get(code="AAA1").status == SiteStatus.PROPOSED


def test_a_site_lead_changes_equipment_at_their_own_site_only(persona, client_for):
    qa, lead = persona("qa"), persona("site_lead")
    own, other = register(qa, "OWN1"), register(qa, "OTH1")
    services.membership_add(actor=qa, site=own, user=lead, role=SiteRole.SITE_LEAD, reason="lead")
    client = client_for("site_lead")
    data = {
        "equipment-kind": "Cell counter",
        "equipment-serial_number": "CC-1",
        "equipment-qualification_status": "qualified",
        "equipment-next_due": "2030-01-01",
        "equipment-reason": "installed",
    }
    assert client.post(reverse("sites:equipment_add", args=["OWN1"]), data).status_code == 302
    assert client.post(reverse("sites:equipment_add", args=["OTH1"]), data).status_code == 404
    equipment = own.equipment.get()
    page = client.get(reverse("sites:detail", args=["OWN1"])).content.decode()
    assert reverse("sites:equipment_edit", args=["OWN1", equipment.pk]) in page
    assert "Lifecycle actions" not in page  # the lifecycle stays QA's
    response = client.post(
        reverse("sites:equipment_edit", args=["OWN1", equipment.pk]),
        {"qualification_status": "out_of_service", "next_due": "2030-01-01", **REASON},
    )
    assert response.status_code == 302
    equipment.refresh_from_db()
    assert equipment.qualification_status == EquipmentStatus.OUT_OF_SERVICE
    assert other.equipment.count() == 0


#
# Isolation: a site-scoped user sees only their own sites
#


def test_an_operator_sees_only_the_sites_they_work_at(persona, client_for):
    qa, operator = persona("qa"), persona("operator")
    site_a = walk(qa, register(qa, "SITA"), SiteAction.START_ONBOARDING)
    site_b = register(qa, "SITB")
    services.membership_add(
        actor=qa, site=site_b, user=operator, role=SiteRole.SITE_OPERATOR, reason="works at B"
    )
    audit = services.site_audit_plan(
        actor=qa, site=site_a, title="A audit", planned_for=timezone.localdate(), reason="plan"
    )
    client = client_for("operator")

    listing = client.get(reverse("sites:index"))
    assert [row.site.code for row in listing.context["rows"]] == ["SITB"]
    assert "SITA" not in listing.content.decode()
    assert client.get(reverse("sites:detail", args=["SITB"])).status_code == 200

    hidden = [
        ("get", reverse("sites:detail", args=["SITA"]), {}),
        ("get", reverse("sites:item", args=["SITA", "premises"]), {}),
        ("get", reverse("sites:audit", args=["SITA", audit.pk]), {}),
        ("get", reverse("sites:transition", args=["SITA", "qualify"]), {}),
        ("post", reverse("sites:transition", args=["SITA", "qualify"]), REASON),
        (
            "post",
            reverse("sites:evidence", args=["SITA", "premises"]),
            {"evidence-reference": "X", "evidence-reason": "r"},
        ),
        ("post", reverse("sites:equipment_add", args=["SITA"]), {}),
        ("post", reverse("sites:member_add", args=["SITA"]), {}),
        ("post", reverse("sites:finding_add", args=["SITA", audit.pk]), {}),
    ]
    for method, url, data in hidden:
        response = client.get(url) if method == "get" else client.post(url, data)
        assert response.status_code == 404, url
    site_a.refresh_from_db()
    assert site_a.status == SiteStatus.ONBOARDING
    assert not site_a.checklist.exclude(evidence_reference="").exists()


#
# A QA's walk through the forms
#


def test_qa_registers_completes_qualifies_activates_and_suspends_a_site(client_for, persona):
    qa = persona("qa")
    client = client_for("qa")

    response = client.post(
        reverse("sites:create"),
        {
            "code": "lon1",  # typed in lower case: the form upper-cases it
            "name": "London Bridge Cell Therapy Unit",
            "kind": "poc_hospital",
            "host_organisation": "Guy's and St Thomas' NHS Foundation Trust",
            "address": "Great Maze Pond, London SE1 9RT",
            "reason": "Proposed by the trust; technical agreement in draft.",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("sites:detail", args=["LON1"])
    site = Site.objects.get(code="LON1")
    assert site.status == SiteStatus.PROPOSED

    response = client.post(
        reverse("sites:transition", args=["LON1", "start-onboarding"]),
        {"reason": "Technical agreement signed."},
    )
    assert response.status_code == 302

    items = list(site.checklist.order_by("position"))
    assert len(items) >= 2
    for n, item in enumerate(items):
        upload = SimpleUploadedFile(f"{item.key}.pdf", PDF, content_type="application/pdf")
        response = client.post(
            reverse("sites:evidence", args=["LON1", item.key]),
            {
                "evidence-file": upload,
                "evidence-reference": f"DOC-{n}",
                "evidence-reason": "Evidence on file.",
            },
        )
        assert response.status_code == 302, message_texts(response)
        sign = {"password": PASSWORD, "meaning": "verified", "reason": "Evidence verified."}
        if n == 0:
            sign["username"] = "qa"  # the first signing of the session names the signer
        response = client.post(reverse("sites:signoff", args=["LON1", item.key]), sign)
        assert response.status_code == 302, message_texts(response)
        item.refresh_from_db()
        assert item.status == ChecklistItemStatus.DONE
        assert item.evidence_sha256 and (item.evidence_file.name or "").endswith(".pdf")
    last = client.get(reverse("sites:detail", args=["LON1"]))
    assert f"{len(items)} of {len(items)}" in last.content.decode()

    response = client.post(
        reverse("sites:transition", args=["LON1", "qualify"]),
        {"reason": "Every onboarding item signed off."},
    )
    assert response.status_code == 302
    response = client.post(
        reverse("sites:transition", args=["LON1", "activate"]),
        {"password": PASSWORD, "meaning": "approved", "reason": "Comparability batch passed."},
    )
    assert response.status_code == 302
    site.refresh_from_db()
    assert site.status == SiteStatus.ACTIVE

    page = client.get(reverse("sites:detail", args=["LON1"]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Comparability batch passed." in html
    assert "Quinn Adams" in html and "Approved" in html and "Valid" in html

    response = client.post(
        reverse("sites:transition", args=["LON1", "suspend"]),
        {"password": PASSWORD, "meaning": "approved", "reason": "Sterility failure on LON1-0004."},
    )
    assert response.status_code == 302
    site.refresh_from_db()
    assert site.status == SiteStatus.SUSPENDED

    changes = AuditEvent.objects.filter(
        event_type=SiteEvent.STATUS_CHANGED, site_code="LON1"
    ).order_by("seq")
    assert [(e.extra_data["old"], e.extra_data["new"]) for e in changes] == [
        ("proposed", "onboarding"),
        ("onboarding", "qualified"),
        ("qualified", "active"),
        ("active", "suspended"),
    ]
    signed = [e for e in changes if e.signature_id]
    assert [e.extra_data["action"] for e in signed] == ["activate", "suspend"]
    assert all(e.actor == qa for e in changes)
    assert [
        s.meaning for s in ElectronicSignature.objects.filter(target_type="sites.sitestatuschange")
    ] == [
        "approved",
        "approved",
    ]
    assert signed[1].signature is not None
    assert signed[1].signature.reason == "Sterility failure on LON1-0004."
    assert ElectronicSignature.objects.filter(
        target_type="sites.onboardingitem", meaning="verified", signer=qa
    ).count() == len(items)

    page = client.get(reverse("sites:detail", args=["LON1"])).content.decode()
    # The activation's signature binds to its own step, so it stays valid after the suspension.
    assert page.count(">Valid<") >= 2
    assert "Invalid" not in page
    assert "no batch may start" in page
    log = client.get(reverse("sites:notifications")).content.decode()
    assert "Site suspended: LON1" in log and "Site added: LON1" in log


def test_qualification_is_refused_while_items_are_open_and_names_them(client_for, persona):
    qa = persona("qa")
    site = walk(qa, register(qa), SiteAction.START_ONBOARDING)
    first = site.checklist.order_by("position").first()
    assert first is not None
    services.checklist_item_attach_evidence(actor=qa, item=first, reference="R", reason="r")
    services.checklist_item_sign_off(actor=qa, item=first, credentials=creds(qa), reason="ok")
    open_titles = [i.title for i in site.checklist.filter(status=ChecklistItemStatus.OPEN)]

    client = client_for("qa")
    page = client.get(reverse("sites:transition", args=[site.code, "qualify"]))
    assert "Qualification will be refused" in page.content.decode()

    response = client.post(reverse("sites:transition", args=[site.code, "qualify"]), REASON)
    assert response.status_code == 409
    (message,) = message_texts(response)
    assert all(title in message for title in open_titles)
    assert first.title not in message
    site.refresh_from_db()
    assert site.status == SiteStatus.ONBOARDING


#
# Bad input through the forms
#


def test_a_duplicate_code_is_refused_with_a_message_and_nothing_is_written(client_for, persona):
    register(persona("qa"), "DUP1")
    events = AuditEvent.objects.count()
    response = client_for("qa").post(
        reverse("sites:create"),
        {"code": "DUP1", "name": "Second", "kind": "poc_hospital", **REASON},
    )
    assert response.status_code == 409
    assert "already taken" in response.content.decode()
    assert "already taken" in str(response.context["form"].errors["code"])
    assert Site.objects.filter(code="DUP1").get().name == "Site DUP1"
    assert AuditEvent.objects.count() == events


def test_a_bad_code_is_explained(client_for):
    response = client_for("qa").post(
        reverse("sites:create"), {"code": "L-1", "name": "X", "kind": "poc_hospital", **REASON}
    )
    assert response.status_code == 400
    assert "2–8 upper-case letters" in str(response.context["form"].errors["code"])
    assert not Site.objects.exists()


def test_a_missing_reason_is_asked_for_and_nothing_changes(client_for, persona):
    site = register(persona("qa"))
    client = client_for("qa")
    response = client.post(
        reverse("sites:create"), {"code": "NEW2", "name": "No reason", "kind": "poc_hospital"}
    )
    assert response.status_code == 400
    assert "Give a reason" in str(response.context["form"].errors["reason"])
    assert not Site.objects.filter(code="NEW2").exists()

    response = client.post(
        reverse("sites:transition", args=[site.code, "start-onboarding"]), {"reason": "  "}
    )
    assert response.status_code == 400
    site.refresh_from_db()
    assert site.status == SiteStatus.PROPOSED

    response = client.post(
        reverse("sites:member_add", args=[site.code]),
        {"member-user": persona("operator").pk, "member-role": "site_operator"},
    )
    assert response.status_code == 400
    assert "Give a reason" in response.content.decode()
    assert response.context["open_form"] == "member"
    assert not SiteMembership.objects.filter(site=site).exists()


def test_oversized_evidence_is_refused(client_for, persona, settings):
    settings.SITE_EVIDENCE_MAX_BYTES = 16
    site = walk(persona("qa"), register(persona("qa")), SiteAction.START_ONBOARDING)
    upload = SimpleUploadedFile("big.pdf", PDF, content_type="application/pdf")
    response = client_for("qa").post(
        reverse("sites:evidence", args=[site.code, "premises"]),
        {"evidence-file": upload, "evidence-reason": "on file"},
    )
    assert response.status_code == 400
    assert "larger than" in str(response.context["evidence_form"].errors["file"])
    item = site.checklist.get(key="premises")
    assert not item.has_evidence


@pytest.mark.parametrize(
    ("name", "content"),
    [("tool.exe", b"MZ\x90\x00"), ("fake.pdf", b"this is not a PDF at all")],
)
def test_evidence_of_the_wrong_type_is_refused(client_for, persona, name, content):
    site = walk(persona("qa"), register(persona("qa")), SiteAction.START_ONBOARDING)
    upload = SimpleUploadedFile(name, content)
    response = client_for("qa").post(
        reverse("sites:evidence", args=[site.code, "premises"]),
        {"evidence-file": upload, "evidence-reason": "on file"},
    )
    assert response.status_code == 400
    assert response.context["evidence_form"].errors["file"]
    assert not site.checklist.get(key="premises").has_evidence


def test_evidence_needs_a_file_or_a_reference(client_for, persona):
    site = walk(persona("qa"), register(persona("qa")), SiteAction.START_ONBOARDING)
    response = client_for("qa").post(
        reverse("sites:evidence", args=[site.code, "premises"]), {"evidence-reason": "on file"}
    )
    assert response.status_code == 400
    assert "Upload a file or give a document reference" in response.content.decode()


def test_a_transition_from_the_wrong_state_is_refused(client_for, persona):
    site = register(persona("qa"))
    client = client_for("qa")
    page = client.get(reverse("sites:transition", args=[site.code, "activate"]))
    assert page.status_code == 200
    assert page.context["allowed"] is False
    assert "cannot be taken through this step" in page.content.decode()

    response = client.post(reverse("sites:transition", args=[site.code, "activate"]), signature())
    assert response.status_code == 409
    assert "cannot be" in message_texts(response)[0]
    site.refresh_from_db()
    assert site.status == SiteStatus.PROPOSED
    assert not ElectronicSignature.objects.exists()


def test_an_unknown_action_is_404(client_for, persona):
    site = register(persona("qa"))
    url = reverse("sites:transition", args=[site.code, "teleport"])
    assert client_for("qa").get(url).status_code == 404


def test_a_wrong_password_refuses_the_signature_and_changes_nothing(client_for, persona):
    site = walk(persona("qa"), register(persona("qa")), *TO_QUALIFIED)
    response = client_for("qa").post(
        reverse("sites:transition", args=[site.code, "activate"]),
        {**signature(), "password": "not-it"},
    )
    assert response.status_code == 422
    # shown inside the signature dialog, which opens again with it
    assert "password" in str(response.context["signature_form"].non_field_errors()).lower()
    assert 'signature-dialog" data-signature-dialog open' in response.content.decode()
    site.refresh_from_db()
    assert site.status == SiteStatus.QUALIFIED


def test_a_signed_step_without_a_password_shows_the_field_error(client_for, persona):
    site = walk(persona("qa"), register(persona("qa")), *TO_QUALIFIED)
    response = client_for("qa").post(
        reverse("sites:transition", args=[site.code, "activate"]),
        {"username": "qa", "meaning": "approved", "reason": "go"},
    )
    assert response.status_code == 400
    assert response.context["signature_form"].errors["password"]
    site.refresh_from_db()
    assert site.status == SiteStatus.QUALIFIED


#
# The other pages' work
#


def test_a_modular_unit_is_moved_and_its_locations_listed(client_for, persona):
    site = register(persona("qa"), "MU1", kind=SiteKind.MODULAR_UNIT, current_location="Bay 1")
    client = client_for("qa")
    response = client.post(
        reverse("sites:move", args=["MU1"]),
        {"move-location": "Car park C, Royal Victoria Infirmary", "move-reason": "New host"},
    )
    assert response.status_code == 302
    site.refresh_from_db()
    assert site.current_location == "Car park C, Royal Victoria Infirmary"
    html = client.get(reverse("sites:detail", args=["MU1"])).content.decode()
    assert "Car park C" in html and "Bay 1" in html

    poc = register(persona("qa"), "POC1")
    response = client.post(
        reverse("sites:move", args=[poc.code]), {"move-location": "X", "move-reason": "y"}
    )
    assert response.status_code == 409
    assert "Only a modular unit moves" in response.content.decode()


def test_memberships_are_added_and_ended(client_for, persona):
    site = register(persona("qa"))
    operator = persona("operator")
    client = client_for("qa")
    response = client.post(
        reverse("sites:member_add", args=[site.code]),
        {"member-user": operator.pk, "member-role": "site_operator", "member-reason": "joins"},
    )
    assert response.status_code == 302
    membership = SiteMembership.objects.get(site=site, user=operator, ended_at__isnull=True)
    assert client_for("operator").get(reverse("sites:detail", args=[site.code])).status_code == 200

    again = client.post(
        reverse("sites:member_add", args=[site.code]),
        {"member-user": operator.pk, "member-role": "site_operator", "member-reason": "again"},
    )
    assert again.status_code == 409

    response = client.post(
        reverse("sites:member_end", args=[site.code, membership.pk]),
        {f"end-{membership.pk}-reason": "Left the trust"},
    )
    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.ended_at is not None
    assert client_for("operator").get(reverse("sites:detail", args=[site.code])).status_code == 404


def test_equipment_is_added_and_its_status_and_due_date_changed(client_for, persona):
    site = register(persona("qa"))
    client = client_for("qa")
    data = {
        "equipment-kind": "Biosafety cabinet",
        "equipment-serial_number": "BSC-1",
        "equipment-qualification_status": "iq_done",
        "equipment-next_due": "2020-01-01",
        "equipment-reason": "installed",
    }
    assert client.post(reverse("sites:equipment_add", args=[site.code]), data).status_code == 302
    duplicate = client.post(reverse("sites:equipment_add", args=[site.code]), data)
    assert duplicate.status_code == 409
    assert "already registered" in duplicate.content.decode()
    equipment = Equipment.objects.get(site=site)
    page = client.get(reverse("sites:detail", args=[site.code]))
    assert page.context["equipment"][0].overdue is True

    url = reverse("sites:equipment_edit", args=[site.code, equipment.pk])
    response = client.post(
        url, {"name": "", "qualification_status": "qualified", "next_due": "2031-05-01", **REASON}
    )
    assert response.status_code == 302
    equipment.refresh_from_db()
    assert equipment.qualification_status == EquipmentStatus.QUALIFIED
    assert equipment.next_due == dt.date(2031, 5, 1)
    changed = AuditEvent.objects.filter(event_type=SiteEvent.EQUIPMENT_CHANGED).get()
    assert set(changed.extra_data["new"]) == {"qualification_status", "next_due"}


def test_an_audit_is_planned_completed_and_given_graded_findings(client_for, persona):
    site = register(persona("qa"))
    client = client_for("qa")
    response = client.post(
        reverse("sites:audit_add", args=[site.code]),
        {
            "audit-title": "Annual GMP audit",
            "audit-planned_for": timezone.localdate().isoformat(),
            "audit-lead_auditor": "Q. Adams",
            "audit-reason": "programme",
        },
    )
    audit = SiteAudit.objects.get(site=site)
    assert response["Location"] == reverse("sites:audit", args=[site.code, audit.pk])
    future = (timezone.localdate() + dt.timedelta(days=3)).isoformat()
    refused = client.post(
        reverse("sites:audit_complete", args=[site.code, audit.pk]),
        {"complete-done_on": future, "complete-reason": "done"},
    )
    assert refused.status_code == 400
    assert "future" in refused.content.decode()
    done = client.post(
        reverse("sites:audit_complete", args=[site.code, audit.pk]),
        {
            "complete-done_on": timezone.localdate().isoformat(),
            "complete-summary": "Two findings.",
            "complete-reason": "report issued",
        },
    )
    assert done.status_code == 302
    for grade in (FindingGrade.CRITICAL, FindingGrade.MINOR):
        response = client.post(
            reverse("sites:finding_add", args=[site.code, audit.pk]),
            {
                "finding-grade": grade.value,
                "finding-description": f"A {grade.label} finding",
                "finding-reason": "from the report",
            },
        )
        assert response.status_code == 302
    page = client.get(reverse("sites:audit", args=[site.code, audit.pk])).content.decode()
    assert "badge badge-block" in page and "Critical" in page and "Minor" in page
    audit.refresh_from_db()
    assert audit.status == "done"


def test_the_control_site_record_and_its_named_qps(client_for, persona):
    client = client_for("qa")
    page = client.get(reverse("sites:control"))
    assert "not recorded yet" in page.content.decode()
    no_scope = client.post(
        reverse("sites:control_edit"),
        {
            "control-name": "Northern",
            "control-address": "1 Road",
            "control-licence_number": "MIA 1",
            "control-reason": "r",
        },
    )
    assert no_scope.status_code == 400
    assert "tick at least one" in no_scope.content.decode()
    saved = client.post(
        reverse("sites:control_edit"),
        {
            "control-name": "Northern Advanced Therapies",
            "control-address": "1 Freeman Road",
            "control-licence_number": "MIA 12345/0001",
            "control-scope_poc": "on",
            "control-scope_mm": "on",
            "control-regulator_contacts": "MHRA GMP Inspectorate",
            "control-reason": "licence granted",
        },
    )
    assert saved.status_code == 302
    qp = persona("qp")
    named = client.post(
        reverse("sites:qp_add"), {"qp-user": qp.pk, "qp-reason": "named on the licence"}
    )
    assert named.status_code == 302
    naming = NamedQP.objects.get(user=qp, named_until__isnull=True)
    html = client_for("inspector").get(reverse("sites:control")).content.decode()
    assert "MIA 12345/0001" in html and "Priya Patel" in html and "Modular manufacture" in html
    assert RegulatoryNotification.objects.filter(kind=NotificationKind.QP_CHANGED).count() == 1

    not_a_qp = client.post(
        reverse("sites:qp_add"), {"qp-user": persona("operator").pk, "qp-reason": "r"}
    )
    assert not_a_qp.status_code == 400  # only QPs are offered

    removed = client.post(
        reverse("sites:qp_remove", args=[naming.pk]), {f"qp-{naming.pk}-reason": "retired"}
    )
    assert removed.status_code == 302
    naming.refresh_from_db()
    assert naming.named_until is not None


def test_the_mhra_log_highlights_overdue_notifications_and_records_sending(client_for, persona):
    qa = persona("qa")
    with audit_context(reason="a suspension recorded before this system"):
        late = RegulatoryNotification.objects.create(
            kind=NotificationKind.SITE_SUSPENDED,
            subject="Site suspended: OLD1",
            event_at=timezone.now() - dt.timedelta(days=5),
            due_on=timezone.localdate() - dt.timedelta(days=4),
            created_by=qa,
        )
    client = client_for("qa")
    page = client.get(reverse("sites:notifications"))
    html = page.content.decode()
    assert "Overdue by 4 days" in html
    assert 'class="row-overdue"' in html
    assert "1 notification is overdue" in html
    assert page.context["overdue_count"] == 1

    url = reverse("sites:notification_sent", args=[late.pk])
    missing = client.post(url, {"sent_on": timezone.localdate().isoformat(), **REASON})
    assert missing.status_code == 400
    response = client.post(
        url,
        {"sent_on": timezone.localdate().isoformat(), "reference": "MHRA-2026-77", **REASON},
    )
    assert response.status_code == 302
    late.refresh_from_db()
    assert late.sent_on == timezone.localdate() and late.reference == "MHRA-2026-77"
    assert late.sent_by == qa
    sent = client.get(reverse("sites:notifications"), {"show": "sent"}).content.decode()
    assert "MHRA-2026-77" in sent
    again = client.post(url, {"sent_on": "2026-01-01", "reference": "X", **REASON})
    assert again.status_code == 409


def test_the_site_list_filters_by_status_kind_and_host(client_for, persona):
    qa = persona("qa")
    register(qa, "HOS1", host_organisation="Leeds Teaching Hospitals")
    walk(qa, register(qa, "HOS2", host_organisation="Leeds Teaching Hospitals"), SiteAction.CEASE)
    register(qa, "MOD1", kind=SiteKind.MODULAR_UNIT, host_organisation="Sheffield")
    client = client_for("qa")

    def codes(**params: str) -> list[str]:
        response = client.get(reverse("sites:index"), params)
        return [row.site.code for row in response.context["rows"]]

    assert codes() == ["HOS1", "HOS2", "MOD1"]
    assert codes(status="ceased") == ["HOS2"]
    assert codes(kind="modular_unit") == ["MOD1"]
    assert codes(host="leeds") == ["HOS1", "HOS2"]
    assert codes(host="leeds", status="proposed") == ["HOS1"]
    assert codes(q="mod") == ["MOD1"]
    bad = client.get(reverse("sites:index"), {"status": "sideways"})
    assert bad.context["rows"] == []
    assert "Correct the filters" in bad.content.decode()
    html = client.get(reverse("sites:index")).content.decode()
    assert 'class="badge badge-muted">Ceased' in html
    partial = client.get(reverse("sites:index"), {"kind": "modular_unit"}, HTTP_HX_REQUEST="true")
    assert "<html" not in partial.content.decode() and "MOD1" in partial.content.decode()


def test_the_site_list_pages_by_code(client_for, persona, settings):
    from sites import views

    qa = persona("qa")
    for n in range(5):
        register(qa, f"PG{n}")
    client = client_for("qa")
    original = views.LIST_PAGE_SIZE
    views.LIST_PAGE_SIZE = 2
    try:
        first = client.get(reverse("sites:index"))
        assert [r.site.code for r in first.context["rows"]] == ["PG0", "PG1"]
        second = client.get(reverse("sites:index") + "?" + first.context["next_query"])
        assert [r.site.code for r in second.context["rows"]] == ["PG2", "PG3"]
    finally:
        views.LIST_PAGE_SIZE = original


#
# The timeline
#


def _fill_timeline(site: Site, n: int) -> None:
    with audit_context(reason="filler"):
        for i in range(n):
            audit_event_record(
                event_type=SiteEvent.UPDATED,
                actor_username="qa",
                target=site,
                site_code=site.code,
                extra={"old": {"name": f"n{i}"}, "new": {"name": f"n{i + 1}"}},
            )


def test_the_timeline_pages_back_fifty_at_a_time(client_for, persona):
    site = register(persona("qa"))
    _fill_timeline(site, 120)
    client = client_for("qa")
    first = client.get(reverse("sites:detail", args=[site.code]))
    assert len(first.context["timeline"]) == 50
    older = first.context["timeline_older"]
    assert older == first.context["timeline"][-1].event.seq
    partial = client.get(
        reverse("sites:detail", args=[site.code]), {"before": older}, HTTP_HX_REQUEST="true"
    )
    html = partial.content.decode()
    assert "<html" not in html and html.count('class="tl-item') == 50
    assert all(t.event.seq < older for t in partial.context["timeline"])
    tenth = AuditEvent.objects.filter(site_code=site.code).order_by("seq")[10].seq
    last = client.get(reverse("sites:detail", args=[site.code]), {"before": tenth})
    assert len(last.context["timeline"]) == 10
    assert last.context["timeline_older"] is None
    assert "Back to the newest events" in last.content.decode()


def test_the_timeline_shows_who_when_why_and_the_signature(client_for, persona):
    qa = persona("qa")
    site = walk(qa, register(qa), *TO_ACTIVE)
    html = client_for("inspector").get(reverse("sites:detail", args=[site.code])).content.decode()
    assert "Site status changed" in html
    assert "test: activate" in html  # why
    assert "Quinn Adams" in html and "Approved" in html and "Verified" in html
    assert 'class="badge badge-ok">Valid' in html
    assert "Lifecycle actions" not in html  # an inspector only reads


#
# Notifications
#


def test_notifications_are_listed_counted_in_the_bell_and_opened(client_for, persona):
    lead = persona("site_lead")
    mine = notify(
        recipients=[lead],
        subject="Site S1 suspended",
        body="Stop.",
        link="/sites/",
        severity="block",
    )[0]
    notify(recipients=[persona("qa")], subject="Not for the lead")
    notify(recipients=[lead], subject="Elsewhere", link="https://evil.example/")
    client = client_for("site_lead")
    page = client.get(reverse("notifications:list"))
    html = page.content.decode()
    assert "Site S1 suspended" in html and "Not for the lead" not in html
    assert page.context["unread_notifications"] == 2
    assert '<span class="bell-count">2</span>' in html

    opened = client.post(reverse("notifications:open", args=[mine.pk]))
    assert opened["Location"] == "/sites/"
    mine.refresh_from_db()
    assert mine.read_at is not None
    evil = Notification.objects.get(subject="Elsewhere")
    assert client.post(reverse("notifications:open", args=[evil.pk]))["Location"] == reverse(
        "notifications:list"
    )
    unread = client.get(reverse("notifications:list"), {"show": "unread"})
    assert unread.context["notices"] == []
    other = Notification.objects.get(subject="Not for the lead")
    assert client.post(reverse("notifications:read", args=[other.pk])).status_code == 404
    assert client.get(reverse("notifications:read", args=[mine.pk])).status_code == 405


def test_a_suspension_tells_the_site_lead_through_the_bell(client_for, persona):
    qa, lead = persona("qa"), persona("site_lead")
    site = walk(qa, register(qa, nominated_person=lead), *TO_ACTIVE)
    walk(qa, site, SiteAction.SUSPEND)
    html = client_for("site_lead").get(reverse("sites:detail", args=[site.code])).content.decode()
    assert '<span class="bell-count">1</span>' in html


#
# Fixed query counts (design §8)
#


def _queries(client: Client, url: str) -> int:
    client.get(url)  # warm caches (content types, session)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_the_site_list_runs_a_fixed_number_of_queries(
    client_for, persona, django_assert_max_num_queries
):
    qa = persona("qa")
    lead = persona("site_lead")
    for n in range(30):
        register(qa, f"Q{n:03d}", nominated_person=lead if n % 2 else None)
    client = client_for("qa")
    url = reverse("sites:index")
    small = _queries(client, url)
    for n in range(30, 60):
        register(qa, f"Q{n:03d}", nominated_person=lead)
    assert _queries(client, url) == small
    with django_assert_max_num_queries(11):
        client.get(url)
    assert _queries(client, url + "?status=proposed&host=x") <= small + 1


def test_the_site_page_runs_a_fixed_number_of_queries(
    client_for, persona, django_assert_max_num_queries
):
    qa = persona("qa")

    def build(code: str, n: int) -> str:
        site = walk(
            qa, register(qa, code, kind=SiteKind.MODULAR_UNIT, current_location="A"), *TO_ACTIVE
        )
        for i in range(n):
            services.equipment_add(
                actor=qa, site=site, kind="Processor", serial_number=f"P{i}", reason="r"
            )
            audit = services.site_audit_plan(
                actor=qa, site=site, title=f"A{i}", planned_for=timezone.localdate(), reason="r"
            )
            services.audit_finding_add(
                actor=qa, audit=audit, grade=FindingGrade.MINOR, description="d", reason="r"
            )
            services.site_move(actor=qa, site=site, location=f"Bay {i}", reason="r")
            services.membership_add(
                actor=qa,
                site=site,
                user=persona(("operator", "site_lead", "trainer")[i % 3]),
                role=SiteRole.SITE_OPERATOR if i < 3 else SiteRole.SITE_LEAD,
                reason="r",
            )
        _fill_timeline(site, 120 * n)
        return reverse("sites:detail", args=[code])

    client = client_for("qa")
    small, large = build("SMALL", 1), build("LARGE", 2)
    assert _queries(client, small) == _queries(client, large)
    with django_assert_max_num_queries(20):
        client.get(large)
    older = AuditEvent.objects.filter(site_code="LARGE").order_by("-seq")[60].seq
    partial = f"{large}?before={older}"
    with django_assert_max_num_queries(12):
        client.get(partial, HTTP_HX_REQUEST="true")
