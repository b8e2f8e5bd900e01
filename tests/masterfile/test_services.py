"""Master-file services: products, the version lifecycle, the frozen annex, two-person approval,
the manufacturing gate and review reminders (issue 4; MF-01…MF-12, ES-01…ES-03)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import IntegrityError, transaction

from controlsite.accounts.roles import Role
from controlsite.accounts.services import role_grant
from controlsite.audit.context import audit_context
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
    signatures_for,
)
from masterfile import services
from masterfile.choices import (
    SECTION_BODY_MAX,
    ApprovalCapacity,
    ProductSiteRole,
    VersionStatus,
)
from masterfile.gates import master_file_in_force
from masterfile.markdown import render_markdown
from masterfile.models import (
    AnnexEntry,
    MasterFileVersion,
    Product,
    Section,
    SectionTemplate,
    VersionApproval,
)
from masterfile.selectors import site_listed_for_product, version_diff
from sites import services as site_services
from sites.choices import SiteAction, SiteKind, SiteStatus
from tests.masterfile.helpers import (
    approve,
    fill_sections,
    make_effective_version,
    make_product,
    signing,
)
from tests.sites.helpers import make_site

pytestmark = pytest.mark.django_db


@pytest.fixture
def qa(persona: Any) -> Any:
    return persona("qa")


@pytest.fixture
def qp(persona: Any) -> Any:
    return persona("qp")


@pytest.fixture
def reference(qa: Any) -> Any:
    return make_site(qa, "NCL1", SiteStatus.ACTIVE)


@pytest.fixture
def product(qa: Any, reference: Any) -> Product:
    return make_product(qa, reference)


def draft_of(product: Product) -> MasterFileVersion:
    return product.master_file.versions.get(status=VersionStatus.DRAFT)


def submitted(qa: Any, product: Product) -> MasterFileVersion:
    version = draft_of(product)
    fill_sections(qa, version)
    services.version_submit(actor=qa, version=version, reason="ready")
    version.refresh_from_db()
    return version


def snapshot() -> tuple[int, ...]:
    """Row counts that a refused request must leave as they were."""
    return (
        MasterFileVersion.objects.count(),
        VersionApproval.objects.count(),
        AnnexEntry.objects.count(),
        Section.history.count(),
        MasterFileVersion.history.count(),
        ElectronicSignature.objects.count(),
    )


#
# Products (issue 4 §1; MF-08)
#


def test_registering_a_product_makes_its_master_file_and_a_first_draft_from_the_templates(
    qa: Any, reference: Any
) -> None:
    product = make_product(qa, reference, shelf_life_minutes=45)
    version = draft_of(product)
    assert version.number == 1
    templates = list(SectionTemplate.objects.filter(active=True).values_list("key", flat=True))
    assert list(version.sections.values_list("key", flat=True)) == templates
    assert {"site-identification", "site-approval", "manufacture-and-release"} <= set(templates)
    assert product.site_links.get().site == reference
    assert product.shelf_life_display == "45 min"
    assert AuditEvent.objects.filter(event_type="masterfile.product_registered").count() == 1


def test_the_database_holds_exactly_one_reference_site_per_product(product: Product) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Product.objects.filter(pk=product.pk).update(reference_site=None)


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("shelf_life_minutes", 0, "invalid"),
        ("shelf_life_minutes", 10**7, "invalid"),
        ("code", "lower case", "invalid"),
        ("designation", "xx", "invalid"),
    ],
)
def test_product_fields_are_checked(
    qa: Any, reference: Any, field: str, value: Any, code: str
) -> None:
    fields: dict[str, Any] = {"code": "GOOD-1", "shelf_life_minutes": 60, "designation": "poc"}
    fields[field] = value
    with pytest.raises(ApplicationError) as refused:
        services.product_register(
            actor=qa,
            reason="new",
            name="Product",
            designation_reference="DM-1",
            designation_date=dt.date(2026, 1, 1),
            dosage_form="Infusion",
            supply_status="investigational",
            reference_site=reference,
            **fields,
        )
    assert refused.value.code == code
    assert not Product.objects.exists()


def test_only_qa_registers_products_and_a_testing_lab_is_never_a_reference_site(
    persona: Any, qa: Any, reference: Any
) -> None:
    with pytest.raises(PermissionRefusedError):
        make_product(persona("operator"), reference)
    lab = make_site(qa, "QCL1", SiteStatus.ACTIVE, kind=SiteKind.TESTING_LAB)
    with pytest.raises(ApplicationError) as refused:
        make_product(qa, lab)
    assert refused.value.code == "reference_site_kind"
    assert not Product.objects.exists()


def test_a_duplicate_product_code_is_a_conflict(qa: Any, reference: Any, product: Product) -> None:
    with pytest.raises(ApplicationError):
        make_product(qa, reference, code=product.code)
    assert Product.objects.count() == 1


def test_a_change_to_what_the_designation_rests_on_is_flagged(qa: Any, product: Product) -> None:
    services.product_update(
        actor=qa, product=product, reason="new formulation", changes={"dosage_form": "Powder"}
    )
    event = AuditEvent.objects.get(event_type="masterfile.product_updated")
    assert event.extra_data["designation_review_needed"] is True
    assert event.extra_data["old"] == {"dosage_form": "Suspension for infusion"}
    services.product_update(
        actor=qa, product=product, reason="typo", changes={"name": "Renamed product"}
    )
    latest = AuditEvent.objects.filter(event_type="masterfile.product_updated").first()
    assert latest is not None and latest.extra_data["designation_review_needed"] is False


def test_the_reference_site_link_cannot_be_removed(qa: Any, product: Product) -> None:
    link = product.site_links.get()
    with pytest.raises(ConflictError) as refused:
        services.product_site_end(actor=qa, link=link, reason="no")
    assert refused.value.code == "reference_site"


#
# Sections and drafts (issue 4 §2-3)
#


def test_a_section_edit_records_its_reason_in_history(qa: Any, product: Product) -> None:
    section = draft_of(product).sections.get(key="production")
    services.section_update(actor=qa, section=section, body="Closed system.", reason="first text")
    row = section.history.first()
    assert row is not None
    assert row.history_change_reason == "first text"
    assert row.history_user_id == qa.pk


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("", "section_empty"),
        ("   \n", "section_empty"),
        ("x" * (SECTION_BODY_MAX + 1), "section_too_long"),
    ],
)
def test_empty_or_enormous_sections_are_refused_with_the_limit(
    qa: Any, product: Product, body: str, code: str
) -> None:
    section = draft_of(product).sections.first()
    assert section is not None
    before = snapshot()
    with pytest.raises(ApplicationError) as refused:
        services.section_update(actor=qa, section=section, body=body, reason="edit")
    assert refused.value.code == code
    assert refused.value.status_code == 400
    if code == "section_too_long":
        assert f"{SECTION_BODY_MAX:,}" in refused.value.message
    assert snapshot() == before


def test_an_edit_over_someone_elses_newer_change_is_refused(qa: Any, product: Product) -> None:
    section = draft_of(product).sections.first()
    assert section is not None
    loaded_at = section.updated_at
    services.section_update(actor=qa, section=section, body="Theirs.", reason="edit")
    with pytest.raises(ConflictError) as refused:
        services.section_update(
            actor=qa, section=section, body="Mine.", reason="edit", expected_updated_at=loaded_at
        )
    assert refused.value.code == "stale_edit"
    section.refresh_from_db()
    assert section.body == "Theirs."


def test_sections_are_added_after_a_named_one_and_reordered(qa: Any, product: Product) -> None:
    version = draft_of(product)
    services.section_add(
        actor=qa,
        version=version,
        key="cold-chain",
        title="Cold chain",
        body="Shipped at 2-8 °C.",
        after_key="designation",
        reason="new chapter",
    )
    keys = list(version.sections.order_by("position").values_list("key", flat=True))
    assert keys[:2] == ["designation", "cold-chain"]
    services.sections_reorder(actor=qa, version=version, keys=keys[::-1], reason="reorder")
    assert list(version.sections.order_by("position").values_list("key", flat=True)) == keys[::-1]
    with pytest.raises(ApplicationError) as refused:
        services.sections_reorder(actor=qa, version=version, keys=keys[:-1], reason="reorder")
    assert refused.value.code == "invalid_order"
    with pytest.raises(ConflictError):
        services.section_add(
            actor=qa, version=version, key="cold-chain", title="Again", body="x", reason="dup"
        )


def test_a_new_draft_is_a_copy_of_the_effective_version_and_only_one_is_open(
    qa: Any, qp: Any, product: Product
) -> None:
    effective = make_effective_version(qa, qp, product)
    draft = services.draft_start(actor=qa, master_file=product.master_file, reason="update")
    assert draft.number == 2
    assert draft.based_on == effective
    assert [(s.key, s.title, s.body) for s in draft.sections.order_by("position")] == [
        (s.key, s.title, s.body) for s in effective.sections.order_by("position")
    ]
    with pytest.raises(ConflictError) as refused:
        services.draft_start(actor=qa, master_file=product.master_file, reason="another")
    assert refused.value.code == "version_open"
    with (
        audit_context(reason="bypass the services"),
        pytest.raises(IntegrityError),
        transaction.atomic(),
    ):
        MasterFileVersion.objects.create(master_file=product.master_file, number=3)


#
# Submission and the annex (issue 4 §4)
#


def test_submission_refuses_empty_sections_and_names_them(qa: Any, product: Product) -> None:
    version = draft_of(product)
    before = snapshot()
    with pytest.raises(ConflictError) as refused:
        services.version_submit(actor=qa, version=version, reason="ready")
    assert refused.value.code == "sections_empty"
    assert "Production" in refused.value.message
    assert snapshot() == before
    version.refresh_from_db()
    assert version.status == VersionStatus.DRAFT


def test_the_annex_holds_exactly_the_product_sites_that_have_not_ceased(
    qa: Any, reference: Any, product: Product
) -> None:
    paused = make_site(qa, "LDS1", SiteStatus.PAUSED)
    onboarding = make_site(qa, "NOT1", SiteStatus.ONBOARDING, kind=SiteKind.MODULAR_UNIT)
    lab = make_site(qa, "QCL1", SiteStatus.ACTIVE, kind=SiteKind.TESTING_LAB)
    ceased = make_site(qa, "CAM1", SiteStatus.ACTIVE)
    make_site(qa, "BHM1", SiteStatus.ACTIVE)  # active, but does not make this product
    for site, role in [
        (paused, ProductSiteRole.MANUFACTURING),
        (onboarding, ProductSiteRole.MANUFACTURING),
        (lab, ProductSiteRole.TESTING),
        (ceased, ProductSiteRole.MANUFACTURING),
    ]:
        services.product_site_add(actor=qa, product=product, site=site, role=role, reason="add")
    ended = services.product_site_add(
        actor=qa,
        product=product,
        site=make_site(qa, "MAN1", SiteStatus.ACTIVE),
        role="testing",
        reason="add",
    )
    services.product_site_end(actor=qa, link=ended, reason="stopped testing")
    site_services.site_transition(
        actor=qa, site=ceased, action=SiteAction.CEASE, reason="closed", credentials=signing(qa)
    )

    version = submitted(qa, product)

    rows = {(a.site_code, a.role): a for a in version.annex_entries.all()}
    assert set(rows) == {
        ("NCL1", "manufacturing"),
        ("LDS1", "manufacturing"),
        ("NOT1", "manufacturing"),
        ("QCL1", "testing"),
    }
    assert rows["NCL1", "manufacturing"].is_reference
    assert rows["LDS1", "manufacturing"].site_status == "Paused"
    assert rows["NOT1", "manufacturing"].kind == "Modular unit"


def test_the_annex_is_frozen_at_submission(qa: Any, reference: Any, product: Product) -> None:
    version = submitted(qa, product)
    frozen = list(version.annex_entries.values_list("site_code", "site_name", "location"))
    site_services.site_update(
        actor=qa,
        site=reference,
        reason="renamed by the trust",
        changes={"name": "Renamed hospital", "address": "New address"},
    )
    services.product_site_add(
        actor=qa,
        product=product,
        site=make_site(qa, "LDS1", SiteStatus.ACTIVE),
        role="manufacturing",
        reason="add",
    )
    assert list(version.annex_entries.values_list("site_code", "site_name", "location")) == frozen


def test_returning_to_draft_and_resubmitting_regenerates_the_annex(
    qa: Any, qp: Any, product: Product
) -> None:
    version = submitted(qa, product)
    services.product_site_add(
        actor=qa,
        product=product,
        site=make_site(qa, "LDS1", SiteStatus.ACTIVE),
        role="manufacturing",
        reason="add",
    )
    services.version_return(actor=qp, version=version, reason="add the Leeds site")
    services.version_submit(actor=qa, version=version, reason="again")
    assert set(version.annex_entries.values_list("site_code", flat=True)) == {"NCL1", "LDS1"}


#
# Frozen content (issue 4 §5)
#


@pytest.mark.parametrize("status", ["in_review", "approved", "effective"])
def test_content_is_frozen_once_the_version_leaves_draft(
    qa: Any, qp: Any, product: Product, status: str
) -> None:
    version = submitted(qa, product)
    if status != "in_review":
        approve(qa, qp, version)
    if status == "effective":
        services.version_make_effective(actor=qa, version=version, reason="in force")
    section = version.sections.first()
    assert section is not None
    before = snapshot()
    attempts = [
        lambda: services.section_update(actor=qa, section=section, body="New.", reason="r"),
        lambda: services.section_add(
            actor=qa, version=version, key="extra", title="Extra", body="x", reason="r"
        ),
        lambda: services.sections_reorder(
            actor=qa,
            version=version,
            keys=list(version.sections.values_list("key", flat=True)),
            reason="r",
        ),
        lambda: services.change_summary_set(actor=qa, version=version, summary="s", reason="r"),
    ]
    for attempt in attempts:
        with pytest.raises(ConflictError) as refused:
            attempt()
        assert refused.value.code == "version_not_editable"
        assert refused.value.status_code == 409
    assert snapshot() == before


#
# Approval (issue 4 §5; MF-03, ES-01)
#


def test_approval_needs_qa_then_a_qp_each_signing(qa: Any, qp: Any, product: Product) -> None:
    version = submitted(qa, product)
    services.version_approve(
        actor=qa, version=version, capacity="qa", credentials=signing(qa), reason="content ok"
    )
    version.refresh_from_db()
    assert version.status == VersionStatus.IN_REVIEW
    services.version_approve(
        actor=qp, version=version, capacity="qp", credentials=signing(qp), reason="releasable"
    )
    version.refresh_from_db()
    assert version.status == VersionStatus.APPROVED
    signatures = signatures_for(version)
    assert [(s.printed_name, s.meaning, valid) for s, valid in signatures] == [
        (qa.printed_name, "approved", True),
        (qp.printed_name, "approved", True),
    ]
    assert "totp" in signatures[1][0].components


def test_the_qp_cannot_approve_before_qa(qa: Any, qp: Any, product: Product) -> None:
    version = submitted(qa, product)
    before = snapshot()
    with pytest.raises(ConflictError) as refused:
        services.version_approve(
            actor=qp, version=version, capacity="qp", credentials=signing(qp), reason="early"
        )
    assert refused.value.code == "approval_out_of_order"
    assert snapshot() == before


def test_approving_twice_is_refused(qa: Any, persona: Any, product: Product) -> None:
    version = submitted(qa, product)
    services.version_approve(
        actor=qa, version=version, capacity="qa", credentials=signing(qa), reason="ok"
    )
    before = snapshot()
    with pytest.raises(ConflictError) as refused:
        services.version_approve(
            actor=qa, version=version, capacity="qa", credentials=signing(qa), reason="again"
        )
    assert refused.value.code == "already_approved"
    assert snapshot() == before


def test_approving_a_draft_or_an_approved_version_is_a_refused_transition(
    qa: Any, qp: Any, product: Product
) -> None:
    version = draft_of(product)
    with pytest.raises(TransitionNotAllowedError):
        services.version_approve(
            actor=qa, version=version, capacity="qa", credentials=signing(qa), reason="ok"
        )
    fill_sections(qa, version)
    services.version_submit(actor=qa, version=version, reason="ready")
    approve(qa, qp, version)
    with pytest.raises(TransitionNotAllowedError):
        services.version_approve(
            actor=qp, version=version, capacity="qp", credentials=signing(qp), reason="again"
        )


def test_the_second_signature_must_be_by_a_different_person(
    persona: Any, qa: Any, product: Product
) -> None:
    both = persona("qp")
    admin = persona("sysadmin")
    role_grant(user=both, role=Role.CONTROL_SITE_QA, granted_by=admin, reason="covers QA too")
    version = submitted(qa, product)
    services.version_approve(
        actor=both, version=version, capacity="qa", credentials=signing(both), reason="QA view"
    )
    before = snapshot()
    with pytest.raises(SignatureRefusedError) as refused:
        services.version_approve(
            actor=both, version=version, capacity="qp", credentials=signing(both), reason="QP"
        )
    assert refused.value.code == "same_signer"
    assert refused.value.status_code == 422
    assert snapshot() == before
    assert AuditEvent.objects.filter(event_type="signature.refused").exists()
    # The database holds it too, whatever a service does.
    first = version.approvals.get()
    second = ElectronicSignature.objects.create(
        signer=both,
        signer_username=both.username,
        printed_name=both.printed_name,
        meaning="approved",
        reason="behind the services",
        signed_at=first.signature.signed_at,
        target_type=first.signature.target_type,
        target_id=first.signature.target_id,
        record_hash=first.signature.record_hash,
    )
    with (
        audit_context(reason="bypass the services"),
        pytest.raises(IntegrityError, match=r"versionapproval_two_people|UNIQUE"),
        transaction.atomic(),
    ):
        VersionApproval.objects.create(
            version=version, capacity=ApprovalCapacity.QP, signer=both, signature=second
        )


def test_a_wrong_password_approves_nothing(qa: Any, qp: Any, product: Product) -> None:
    version = submitted(qa, product)
    before = snapshot()
    with pytest.raises(SignatureRefusedError):
        services.version_approve(
            actor=qa,
            version=version,
            capacity="qa",
            credentials=SignatureCredentials(username=qa.username, password="wrong"),
            reason="ok",
        )
    assert snapshot() == before


def test_only_the_holder_of_the_role_approves_in_that_capacity(
    persona: Any, qa: Any, product: Product
) -> None:
    version = submitted(qa, product)
    for who, capacity in [("qp", "qa"), ("site_lead", "qa"), ("inspector", "qp")]:
        user = persona(who)
        with pytest.raises(PermissionRefusedError):
            services.version_approve(
                actor=user,
                version=version,
                capacity=capacity,
                credentials=signing(user),
                reason="x",
            )


def test_open_review_comments_hold_the_approval(qa: Any, qp: Any, product: Product) -> None:
    version = submitted(qa, product)
    section = version.sections.get(key="production")
    comment = services.comment_add(
        actor=qp, version=version, section=section, body="Name the closed system."
    )
    with pytest.raises(ConflictError) as refused:
        services.version_approve(
            actor=qa, version=version, capacity="qa", credentials=signing(qa), reason="ok"
        )
    assert refused.value.code == "comments_open"
    services.comment_resolve(actor=qa, comment=comment, resolution="Named in 6.2.")
    approve(qa, qp, version)
    with pytest.raises(ConflictError):
        services.comment_add(actor=qp, version=version, body="Too late.")


def test_returning_withdraws_the_approvals_given_so_far(qa: Any, qp: Any, product: Product) -> None:
    version = submitted(qa, product)
    services.version_approve(
        actor=qa, version=version, capacity="qa", credentials=signing(qa), reason="ok"
    )
    services.version_return(actor=qp, version=version, reason="section 6 incomplete")
    assert version.approvals.get().withdrawn_at is not None
    section = version.sections.get(key="production")
    services.section_update(actor=qa, section=section, body="Completed.", reason="QP comment")
    services.version_submit(actor=qa, version=version, reason="again")
    approve(qa, qp, version)
    version.refresh_from_db()
    assert version.status == VersionStatus.APPROVED
    assert version.approvals.filter(withdrawn_at__isnull=True).count() == 2


#
# Effect, supersession and the gate (issue 4 §5-6; MF-01)
#


def test_making_effective_supersedes_the_previous_version(
    qa: Any, qp: Any, product: Product
) -> None:
    first = make_effective_version(qa, qp, product)
    assert first.effective_date is not None
    assert first.next_review_date == services.add_months(first.effective_date, 12)
    second = make_effective_version(qa, qp, product)
    first.refresh_from_db()
    assert first.status == VersionStatus.SUPERSEDED
    assert product.master_file.versions.filter(status=VersionStatus.EFFECTIVE).get() == second
    # Signatures bind content, not status: the superseded version's approvals stay valid.
    assert all(valid for _sig, valid in signatures_for(first))


def test_the_database_allows_one_effective_version(qa: Any, qp: Any, product: Product) -> None:
    make_effective_version(qa, qp, product)
    with (
        audit_context(reason="bypass the services"),
        pytest.raises(IntegrityError),
        transaction.atomic(),
    ):
        MasterFileVersion.objects.create(
            master_file=product.master_file, number=9, status=VersionStatus.EFFECTIVE
        )


def test_approved_content_changed_behind_the_services_invalidates_the_signatures(
    qa: Any, qp: Any, product: Product
) -> None:
    version = make_effective_version(qa, qp, product)
    Section.objects.filter(version=version, key="production").update(body="Tampered.")
    assert [valid for _sig, valid in signatures_for(version)] == [False, False]


def test_a_site_is_listed_only_in_the_effective_versions_manufacturing_annex(
    qa: Any, qp: Any, reference: Any, product: Product
) -> None:
    leeds = make_site(qa, "LDS1", SiteStatus.ACTIVE)
    lab = make_site(qa, "QCL1", SiteStatus.ACTIVE, kind=SiteKind.TESTING_LAB)
    services.product_site_add(actor=qa, product=product, site=lab, role="testing", reason="qc")
    assert not site_listed_for_product(reference, product)  # nothing effective yet
    make_effective_version(qa, qp, product)
    assert site_listed_for_product(reference, product)
    assert not site_listed_for_product(lab, product)  # tests, never makes
    services.product_site_add(
        actor=qa, product=product, site=leeds, role="manufacturing", reason="x"
    )
    assert not site_listed_for_product(leeds, product)  # not until a version lists it
    draft = services.draft_start(actor=qa, master_file=product.master_file, reason="add Leeds")
    services.change_summary_set(actor=qa, version=draft, summary="Adds LDS1.", reason="s")
    services.version_submit(actor=qa, version=draft, reason="ready")
    assert not site_listed_for_product(leeds, product)  # in review is not effective
    approve(qa, qp, draft)
    services.version_make_effective(actor=qa, version=draft, reason="in force")
    assert site_listed_for_product(leeds, product)


def test_the_release_gate_blocks_without_an_effective_listing(
    qa: Any, qp: Any, reference: Any, product: Product
) -> None:
    other = make_site(qa, "LDS1", SiteStatus.ACTIVE)
    codes = [f.code for f in master_file_in_force(SimpleNamespace(product=product, site=reference))]
    assert codes == ["master_file_not_effective"]
    make_effective_version(qa, qp, product)
    assert master_file_in_force(SimpleNamespace(product=product, site=reference)) == []
    findings = master_file_in_force(SimpleNamespace(product=product, site=other))
    assert [(f.code, f.severity.value) for f in findings] == [("site_not_listed", "block")]


#
# Diff, reminders, Markdown
#


def test_the_diff_shows_changed_added_and_moved_sections(
    qa: Any, qp: Any, product: Product
) -> None:
    first = make_effective_version(qa, qp, product)
    draft = services.draft_start(actor=qa, master_file=product.master_file, reason="update")
    production = draft.sections.get(key="production")
    services.section_update(
        actor=qa, section=production, body=production.body + "\nSecond line.", reason="r"
    )
    services.section_add(
        actor=qa, version=draft, key="cold-chain", title="Cold chain", body="2-8 °C.", reason="r"
    )
    by_key = {d.key: d for d in version_diff(first, draft)}
    assert by_key["production"].change == "changed"
    assert ("added", "Second line.") in [
        (line.kind, line.text) for line in by_key["production"].lines
    ]
    assert by_key["cold-chain"].change == "added"
    assert by_key["designation"].change == "unchanged"


def test_owners_are_reminded_once_before_the_review_date(
    qa: Any, qp: Any, product: Product
) -> None:
    version = make_effective_version(qa, qp, product)
    assert version.next_review_date is not None
    early = version.next_review_date - dt.timedelta(days=31)
    assert services.review_reminders_send(today=early) == 0
    window = version.next_review_date - dt.timedelta(days=30)
    assert services.review_reminders_send(today=window) == 1
    assert services.review_reminders_send(today=window + dt.timedelta(days=1)) == 0
    note = Notification.objects.get(recipient=qa, subject__contains="due for review")
    assert product.code in note.subject
    assert AuditEvent.objects.filter(event_type="masterfile.review_due").count() == 1


def test_months_are_added_to_the_end_of_a_short_month() -> None:
    assert services.add_months(dt.date(2026, 1, 31), 1) == dt.date(2026, 2, 28)
    assert services.add_months(dt.date(2026, 11, 15), 14) == dt.date(2028, 1, 15)


def test_markdown_cannot_inject_markup() -> None:
    html = render_markdown(
        "<script>alert(1)</script>\n\n[x](javascript:alert(1))\n\n<img src=x onerror=alert(1)>"
    )
    assert "<script" not in html
    assert "&lt;script&gt;" in html
    assert "<img" not in html
    assert 'href="javascript' not in html
