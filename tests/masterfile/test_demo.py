"""The master-file demo data (issue 4 §9, design §9): three products, each with a history of
versions made through the services and signed by QA and the QP, one version in review waiting for
the QP; a second run of `demo_setup` creates nothing (MF-03, MF-04, MF-08, MF-12, ES-01, ES-02)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlsite import demo
from controlsite.accounts.models import User
from controlsite.audit.models import AuditEvent
from controlsite.audit.services import audit_chain_verify
from controlsite.signatures.models import ElectronicSignature, SignatureMeaning
from controlsite.signatures.services import signature_is_valid
from masterfile import services
from masterfile.choices import (
    ApprovalCapacity,
    Designation,
    ProductSiteRole,
    SupplyStatus,
    VersionStatus,
)
from masterfile.demo import DEMO_PRODUCTS
from masterfile.events import MasterFileEvent
from masterfile.markdown import render_markdown
from masterfile.models import (
    AnnexEntry,
    MasterFileVersion,
    Product,
    ReviewComment,
    Section,
    SectionTemplate,
    VersionApproval,
)
from masterfile.selectors import (
    annex_diff,
    approval_state,
    live_product_sites,
    site_listed_for_product,
    version_diff,
)
from sites.choices import SiteKind, SiteStatus
from sites.models import Site
from tests.personas import unused_totp_code

S = VersionStatus
HISTORIES = {
    "NAT-CD19": {1: S.SUPERSEDED, 2: S.EFFECTIVE, 3: S.IN_REVIEW},
    "NAT-CMV": {1: S.SUPERSEDED, 2: S.EFFECTIVE},
    "NAT-WBC": {1: S.EFFECTIVE, 2: S.DRAFT},
}


def run() -> str:
    out, err = StringIO(), StringIO()
    call_command("demo_setup", stdout=out, stderr=err)
    return out.getvalue()


@pytest.fixture(scope="module")
def _demo_once(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    """`demo_setup` run once for the module, inside a transaction rolled back at its end; each
    test then works in a savepoint of it (the `db` fixture), so what a test changes is undone."""
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            yield run()
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture
def demo_output(_demo_once: str, db: None) -> str:
    return _demo_once


def version(code: str, number: int) -> MasterFileVersion:
    return MasterFileVersion.objects.get(master_file__product__code=code, number=number)


def counts() -> dict[str, int]:
    return {
        "products": Product.objects.count(),
        "product_history": Product.history.count(),
        "site_links": live_product_sites().count(),
        "versions": MasterFileVersion.objects.count(),
        "version_history": MasterFileVersion.history.count(),
        "sections": Section.objects.count(),
        "section_history": Section.history.count(),
        "annex": AnnexEntry.objects.count(),
        "comments": ReviewComment.objects.count(),
        "approvals": VersionApproval.objects.count(),
        "signatures": ElectronicSignature.objects.count(),
        "events": AuditEvent.objects.count(),
    }


def test_three_products_each_with_a_history_of_versions_and_one_in_review(demo_output):
    products = {p.code: p for p in Product.objects.all()}
    assert set(products) == set(HISTORIES) == {spec.code for spec in DEMO_PRODUCTS}
    for code, history in HISTORIES.items():
        # Not the draft a demo change control opens (the deviations loader, issue 6).
        got = dict(
            MasterFileVersion.objects.filter(
                master_file__product__code=code, change_controls__isnull=True
            ).values_list("number", "status")
        )
        assert got == history, code
    assert MasterFileVersion.objects.filter(status=S.IN_REVIEW).count() == 1
    assert MasterFileVersion.objects.filter(status=S.APPROVED).count() == 0

    # Designations, dosage forms, shelf lives from minutes to days, every supply status (MF-08).
    assert {p.shelf_life_minutes for p in products.values()} == {45, 6 * 60, 3 * 24 * 60}
    assert {p.supply_status for p in products.values()} == set(SupplyStatus.values)
    assert {p.designation for p in products.values()} == set(Designation.values)
    for product in products.values():
        assert product.designation_reference.startswith("MHRA-DES-")
        assert product.designation_date is not None
        assert product.dosage_form
        assert product.reference_site.status == SiteStatus.ACTIVE
        assert product.reference_site.kind != SiteKind.TESTING_LAB
        links = live_product_sites().filter(product=product)
        assert links.filter(role=ProductSiteRole.TESTING, site__code="QCL1").exists()
        assert links.filter(role=ProductSiteRole.MANUFACTURING).count() >= 2
    assert products["NAT-CMV"].reference_site.kind == SiteKind.MODULAR_UNIT

    # Effective dates and review dates on the versions in force; v1 is superseded by v2.
    for current in MasterFileVersion.objects.filter(status=S.EFFECTIVE):
        assert current.effective_date is not None
        assert current.next_review_date is not None
        assert current.next_review_date > current.effective_date
    assert version("NAT-CD19", 1).superseded_at is not None
    assert audit_chain_verify().intact


def test_every_approved_version_carries_two_valid_signatures_by_two_people(demo_output):
    signed = MasterFileVersion.objects.filter(status__in=[S.EFFECTIVE, S.SUPERSEDED])
    assert signed.count() == 5
    for item in signed:
        approvals = list(item.approvals.filter(withdrawn_at__isnull=True))
        assert {a.capacity for a in approvals} == set(ApprovalCapacity.values), item
        assert len({a.signer_id for a in approvals}) == 2, item
        by = {a.capacity: a.signer.username for a in approvals}
        assert by == {ApprovalCapacity.QA: "qa", ApprovalCapacity.QP: "qp"}
        for approval in approvals:
            assert approval.signature.meaning == SignatureMeaning.APPROVED
            assert signature_is_valid(approval.signature, item), item
            assert approval.signature.reason
        qp_signature = next(a.signature for a in approvals if a.capacity == ApprovalCapacity.QP)
        assert "totp" in qp_signature.components  # the QP signs with the second factor

    # The version in review: QA has signed, the QP has not; one comment resolved, one open.
    review = version("NAT-CD19", 3)
    state = approval_state(review)
    assert set(state.done) == {ApprovalCapacity.QA}
    assert state.next_capacity == ApprovalCapacity.QP
    assert signature_is_valid(state.done[ApprovalCapacity.QA].signature, review)
    comments = list(review.comments.order_by("id"))
    assert len(comments) == 2
    assert comments[0].resolved_at is not None
    assert comments[0].resolved_by is not None
    assert comments[0].resolution
    assert comments[1].resolved_at is None
    assert comments[1].created_at > state.done[ApprovalCapacity.QA].created_at
    assert all(c.section is not None and c.section.version_id == review.pk for c in comments)
    assert not version("NAT-WBC", 2).approvals.exists()


def test_later_versions_rewrite_some_sections_and_say_why(demo_output):
    template_keys = set(SectionTemplate.objects.filter(active=True).values_list("key", flat=True))
    # Not the untouched draft a demo change control opens (the deviations loader, issue 6).
    demo_versions = MasterFileVersion.objects.filter(change_controls__isnull=True)
    for item in demo_versions.select_related("based_on"):
        sections = list(item.sections.all())
        assert {s.key for s in sections} == template_keys, item
        for section in sections:
            assert section.body.strip(), (item, section.key)
            assert "{" not in section.body, (item, section.key)  # every token was filled in
        if item.number == 1:
            assert item.based_on is None
            continue
        assert item.based_on is not None
        assert item.based_on.number == item.number - 1
        assert len(item.change_summary) > 200
        changed = [d.key for d in version_diff(item.based_on, item) if d.changed]
        assert 0 < len(changed) < len(template_keys), item
        for key in changed:  # the change summary names each rewritten section
            title = item.sections.get(key=key).title
            assert title.split(" ")[0].lower() in item.change_summary.lower(), (item, key)

    # The draft shows its edits on the diff page: several sections, line by line.
    draft_changes = [
        d for d in version_diff(version("NAT-WBC", 1), version("NAT-WBC", 2)) if d.changed
    ]
    assert {d.key for d in draft_changes} >= {"manufacture-and-release", "quality-control"}
    assert all(any(line.kind == "added" for line in d.lines) for d in draft_changes)
    assert any(line.kind == "removed" for d in draft_changes for line in d.lines)

    # The Control Site's particulars come from the register (MF-05).
    control = version("NAT-CD19", 1).sections.get(key="control-site").body
    assert "Newcastle upon Tyne NE7 7DN (hosted by" in control
    assert "MIA 12345/0001" in control
    assert ",," not in control

    # Section bodies are real Markdown: tables and lists render on the page and in the PDF.
    qc = version("NAT-CD19", 2).sections.get(key="quality-control")
    assert "<table>" in render_markdown(qc.body)
    assert "<ol>" in render_markdown(version("NAT-CMV", 2).sections.get(key="site-approval").body)


def test_the_annex_follows_the_sites_added_between_versions(demo_output):
    def annex(code: str, number: int) -> set[tuple[str, str]]:
        return set(version(code, number).annex_entries.values_list("site_code", "role").distinct())

    m, t = ProductSiteRole.MANUFACTURING, ProductSiteRole.TESTING
    assert annex("NAT-CD19", 1) == {("NCL1", m), ("QCL1", t)}
    assert annex("NAT-CD19", 2) == {("NCL1", m), ("MAN1", m), ("SHF1", m), ("QCL1", t)}
    assert annex("NAT-CD19", 3) == annex("NAT-CD19", 2)
    assert annex_diff(version("NAT-CD19", 1), version("NAT-CD19", 2)).added == (
        "MAN1 (manufacturing)",
        "SHF1 (manufacturing)",
    )
    assert annex("NAT-CMV", 2) == {("MU01", m), ("MU02", m), ("QCL1", t)}
    assert annex("NAT-WBC", 1) == {("BHM1", m), ("LDS1", m), ("QCL1", t)}
    assert not version("NAT-WBC", 2).annex_entries.exists()  # a draft's annex is not frozen yet
    for item in MasterFileVersion.objects.exclude(status=S.DRAFT):
        reference = item.annex_entries.get(is_reference=True)
        assert reference.site_id == item.master_file.product.reference_site_id

    # The manufacturing gate reads the effective version's annex (MF-01).
    cd19 = Product.objects.get(code="NAT-CD19")
    assert site_listed_for_product(Site.objects.get(code="MAN1"), cd19)
    assert not site_listed_for_product(Site.objects.get(code="LDS1"), cd19)
    assert not site_listed_for_product(Site.objects.get(code="QCL1"), cd19)

    # The shelf-life change went through product_update and flagged the designation (MF-08).
    updated = AuditEvent.objects.get(event_type=MasterFileEvent.PRODUCT_UPDATED)
    assert updated.extra_data["fields"] == ["shelf_life_minutes"]
    assert updated.extra_data["designation_review_needed"] is True


def test_every_write_is_attributed_to_the_demo_person_whose_role_does_it(demo_output):
    assert set(Section.history.values_list("history_username", flat=True)) == {"qa"}
    assert "" not in set(Section.history.values_list("history_change_reason", flat=True))
    assert set(MasterFileVersion.history.values_list("history_username", flat=True)) == {
        "qa",
        "qp",  # the QP's approval moves a version to approved
    }
    authors = set(ReviewComment.objects.values_list("author__username", flat=True))
    assert authors == {"qp"}
    signers = ElectronicSignature.objects.filter(target_type="masterfile.masterfileversion")
    assert signers.filter(signer_username="qa").count() == 6
    assert signers.filter(signer_username="qp").count() == 5


def test_a_second_run_creates_nothing_and_leaves_demo_changes_alone(demo_output):
    qa = User.objects.get(username="qa")
    services.version_return(
        actor=qa, version=version("NAT-CD19", 3), reason="returned in the demo for a change"
    )
    before = counts()
    second = run()
    assert counts() == before
    assert version("NAT-CD19", 3).status == S.DRAFT
    for spec in DEMO_PRODUCTS:
        assert spec.code in demo_output
        assert spec.code in second
    assert "created" in demo_output.split("Demo products")[1].split("\n\n")[0]
    assert "created" not in second.split("Demo products")[1].split("\n\n")[0]


def test_the_qp_can_finish_the_review_as_soon_as_the_demo_has_run(demo_output):
    """The demo's QP signatures used past TOTP steps and left the authenticator as it was, so
    the QP's current code is accepted at once: resolve the open comment, approve, make it
    effective."""
    qa, qp = User.objects.get(username="qa"), User.objects.get(username="qp")
    device = TOTPDevice.objects.get(user=qp, confirmed=True)
    now_step = int((time.time() - device.t0) // device.step)
    assert (device.tolerance, device.drift) == (1, 0)
    assert device.last_t < now_step  # the demo's codes were all from past steps

    review = version("NAT-CD19", 3)
    services.comment_resolve(
        actor=qp,
        comment=review.comments.get(resolved_at__isnull=True),
        resolution="CP-CD19-01 revision 3 adds potency to the yearly comparability.",
    )
    services.version_approve(
        actor=qp,
        version=review,
        capacity=ApprovalCapacity.QP,
        credentials=dataclasses.replace(demo.credentials("qp"), otp=unused_totp_code(qp)),
        reason="Reviewed as QP in the demo.",
    )
    services.version_make_effective(actor=qa, version=review, reason="in force")
    assert version("NAT-CD19", 3).status == S.EFFECTIVE
    assert version("NAT-CD19", 2).status == S.SUPERSEDED


def test_the_report_lists_every_product_with_its_versions(demo_output):
    report = demo_output.split("Demo products and master files")[1]
    assert "v3 in review, v2 effective, v1 superseded" in report
    assert "v2 effective, v1 superseded" in report
    assert "v2 draft, v1 effective" in report
    for label in ("45 min", "6 h", "3 days"):
        assert label in report
    assert "Sign in as qp to resolve the open review comment and approve it." in report
