"""The master-file API (issue 4 §7 and §9; design §6): products and their sites, master files,
versions with their lifecycle as POST actions, sections, review comments and exports.

Who may do what is a permission matrix per route; the rest checks what integrators rely on: 404
for records you may not see, 409 for refused steps and frozen content, 422 for a refused
signature, 400 with the limits stated for bad sections, 412 for a stale `If-Match`, strict input
— and, for every refusal, that nothing is written (MF-03, MF-06, ES-01, ES-03, DI-07).

Exports here never render a PDF: the worker's rendering step is replaced by a stub, so every
row still moves through `masterfile.exports` (the real PDF is in test_api_flow.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from controlsite.accounts.models import User
from controlsite.accounts.roles import Role
from controlsite.accounts.services import role_grant
from controlsite.api.models import TokenScope
from controlsite.api.tokens import api_token_create
from controlsite.audit.models import AuditEvent
from controlsite.signatures.models import ElectronicSignature
from masterfile import exports, pdfjobs, services
from masterfile.choices import (
    SECTION_BODY_MAX,
    ApprovalCapacity,
    ExportStatus,
    ProductSiteRole,
    VersionStatus,
)
from masterfile.models import (
    MasterFile,
    MasterFileExport,
    MasterFileVersion,
    Product,
    ProductSite,
    ReviewComment,
    Section,
    VersionApproval,
)
from sites.choices import SiteKind, SiteRole
from sites.models import Site
from sites.services import membership_add
from tests.masterfile.helpers import (
    approve,
    fill_sections,
    make_effective_version,
    make_product,
    signing,
)
from tests.matrix import ANON, Matrix, only
from tests.personas import make_persona, signature_fields, unused_totp_code
from tests.sites.helpers import make_site

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"
FAKE_PDF = b"%PDF-1.7\n% a stand-in for the rendered file\n%%EOF\n"


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code, body
    return body


#
# The world every test starts from
#


@pytest.fixture
def qa(persona: Callable[[str], User]) -> User:
    return persona("qa")


@pytest.fixture
def qa_api(qa: User, api_client_for: Callable[[str], APIClient]) -> APIClient:
    return api_client_for("qa")


@pytest.fixture
def site_a(persona: Callable[[str], User], qa: User) -> Site:
    """Site A1, led by the site lead and worked at by the operator."""
    site = make_site(qa, "A1")
    membership_add(
        actor=qa, site=site, user=persona("site_lead"), role=SiteRole.SITE_LEAD, reason="lead"
    )
    membership_add(
        actor=qa, site=site, user=persona("operator"), role=SiteRole.SITE_OPERATOR, reason="op"
    )
    return site


@pytest.fixture
def product(qa: User, site_a: Site) -> Product:
    """CART-01, made at A1, with its master file and a first draft of the default sections."""
    return make_product(qa, site_a)


@pytest.fixture
def draft(product: Product) -> MasterFileVersion:
    return product.master_file.versions.get()


@pytest.fixture
def in_review(qa: User, draft: MasterFileVersion) -> MasterFileVersion:
    fill_sections(qa, draft)
    services.version_submit(actor=qa, version=draft, reason="ready for review")
    draft.refresh_from_db()
    return draft


@pytest.fixture
def approved(qa: User, persona: Callable[[str], User], in_review: MasterFileVersion) -> Any:
    approve(qa, persona("qp"), in_review)
    in_review.refresh_from_db()
    assert in_review.status == VersionStatus.APPROVED
    return in_review


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def run_export(export: MasterFileExport, monkeypatch: Any, *, fail: bool = False) -> None:
    """Run the real task body with the rendering step stubbed: a tiny file, or a failure."""

    def render(_export: MasterFileExport) -> pdfjobs.Made:
        if fail:
            raise ValueError("the layout engine ran out of paper")
        return pdfjobs.Made(FAKE_PDF, 1)

    monkeypatch.setattr(exports, "_render", render)
    exports.export_run(export.pk)
    export.refresh_from_db()


@pytest.fixture
def finished_export(
    qa: User, draft: MasterFileVersion, media: Path, monkeypatch: Any
) -> MasterFileExport:
    export = exports.export_request(actor=qa, version=draft)
    run_export(export, monkeypatch)
    assert export.status == ExportStatus.DONE, export.error
    return export


@pytest.fixture
def failed_export(
    qa: User, draft: MasterFileVersion, media: Path, monkeypatch: Any
) -> MasterFileExport:
    export = exports.export_request(actor=qa, version=draft)
    run_export(export, monkeypatch, fail=True)
    assert export.status == ExportStatus.FAILED
    return export


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


def signer_for(persona: Callable[[str], User], who: str) -> User:
    return persona("qa") if who == ANON else persona(who)


#
# Permission matrices
#

# USE_API holders read lists (scoped to what they may see); sysadmin and outsider have no API.
EVERY_API_USER = only({"sysadmin": 403, "outsider": 403}, others=200, anonymous=401)
# One product's records: QA, QPs and inspectors see every product, the site lead and operator
# see the products of their site; the trainer and the integrator are members of no site, so
# for them the product does not exist.
READERS = only(
    {"trainer": 404, "integrator": 404, "sysadmin": 403, "outsider": 403},
    others=200,
    anonymous=401,
)
# A write only Control Site QA makes on a record the caller may see (or not: 404).
QA_WRITE = only({"qa": 200, "trainer": 404, "integrator": 404}, others=403, anonymous=401)
# Review (return, comments) and exports: Control Site QA or a QP.
REVIEWER_WRITE = {**QA_WRITE, "qp": 200}
EXPORTER = {**QA_WRITE, "qa": 202, "qp": 202}
# Creating with a reference in the body: a record you cannot see is a 400 (unknown_…).
QA_CREATE = only({"qa": 201, "trainer": 400, "integrator": 400}, others=403, anonymous=401)

PRODUCT_LIST = Matrix("api:product-list", EVERY_API_USER)
PRODUCT_DETAIL = Matrix("api:product-detail", READERS)
PRODUCT_CREATE = Matrix("api:product-create", QA_CREATE)
PRODUCT_PARTIAL_UPDATE = Matrix("api:product-partial-update", QA_WRITE)

PRODUCT_SITE_LIST = Matrix("api:product-site-list", EVERY_API_USER)
PRODUCT_SITE_DETAIL = Matrix("api:product-site-detail", READERS)
PRODUCT_SITE_CREATE = Matrix("api:product-site-create", QA_CREATE)
PRODUCT_SITE_END = Matrix("api:product-site-end", QA_WRITE)

MASTER_FILE_LIST = Matrix("api:master-file-list", EVERY_API_USER)
MASTER_FILE_DETAIL = Matrix("api:master-file-detail", READERS)
MASTER_FILE_PARTIAL_UPDATE = Matrix("api:master-file-partial-update", QA_WRITE)
MASTER_FILE_DRAFTS = Matrix("api:master-file-drafts", {**QA_WRITE, "qa": 201})

VERSION_LIST = Matrix("api:master-file-version-list", EVERY_API_USER)
VERSION_DETAIL = Matrix("api:master-file-version-detail", READERS)
VERSION_PARTIAL_UPDATE = Matrix("api:master-file-version-partial-update", QA_WRITE)
VERSION_SUBMIT = Matrix("api:master-file-version-submit", QA_WRITE)
VERSION_RETURN = Matrix("api:master-file-version-return", REVIEWER_WRITE)
# The first approval is Control Site QA's: a QP asking for it lacks the role (403).
VERSION_APPROVE = Matrix("api:master-file-version-approve", QA_WRITE)
VERSION_MAKE_EFFECTIVE = Matrix("api:master-file-version-make-effective", QA_WRITE)
VERSION_DIFF = Matrix("api:master-file-version-diff", READERS)
VERSION_EXPORTS = Matrix("api:master-file-version-exports", EXPORTER)
VERSION_SECTIONS = Matrix("api:master-file-version-sections", {**QA_WRITE, "qa": 201})
VERSION_REORDER = Matrix("api:master-file-version-reorder", QA_WRITE)

SECTION_LIST = Matrix("api:section-list", EVERY_API_USER)
SECTION_DETAIL = Matrix("api:section-detail", READERS)
SECTION_PARTIAL_UPDATE = Matrix("api:section-partial-update", QA_WRITE)

COMMENT_LIST = Matrix("api:review-comment-list", EVERY_API_USER)
COMMENT_DETAIL = Matrix("api:review-comment-detail", READERS)
COMMENT_CREATE = Matrix("api:review-comment-create", {**QA_CREATE, "qp": 201})
COMMENT_RESOLVE = Matrix("api:review-comment-resolve", REVIEWER_WRITE)

EXPORT_LIST = Matrix("api:export-list", EVERY_API_USER)
EXPORT_DETAIL = Matrix("api:export-detail", READERS)
EXPORT_DOWNLOAD = Matrix("api:export-download", READERS)
EXPORT_RETRY = Matrix("api:export-retry", EXPORTER)

SEES_EVERYTHING = {"qa", "qp", "inspector"}
SEES_SITE_A = {"site_lead", "operator"}


def visible_count(who: str, rows: int) -> int:
    return rows if who in SEES_EVERYTHING | SEES_SITE_A else 0


# Products


@pytest.mark.parametrize(("who", "expected"), PRODUCT_LIST.cases())
def test_product_list(as_persona, product, who, expected):
    response = as_persona(who).get(reverse("api:product-list"))
    assert response.status_code == expected
    if expected == 200:
        assert len(response.json()["results"]) == visible_count(who, 1)


@pytest.mark.parametrize(("who", "expected"), PRODUCT_DETAIL.cases())
def test_product_detail(as_persona, product, who, expected):
    response = as_persona(who).get(reverse("api:product-detail", args=[product.pk]))
    assert response.status_code == expected
    if expected != 200:
        assert response["Content-Type"].startswith(PROBLEM)


@pytest.mark.parametrize(("who", "expected"), PRODUCT_CREATE.cases())
def test_product_create(as_persona, site_a, who, expected):
    response = as_persona(who).post(
        reverse("api:product-list"),
        {
            "code": "NEW-1",
            "name": "New product",
            "designation": "mm",
            "designation_reference": "DM-9",
            "designation_date": "2026-04-01",
            "dosage_form": "Tablet",
            "shelf_life_minutes": 60,
            "supply_status": "licensed",
            "reference_site": "A1",
            "reason": "designated",
        },
        format="json",
    )
    assert response.status_code == expected, response.content
    assert Product.objects.filter(code="NEW-1").exists() == (expected == 201)


@pytest.mark.parametrize(("who", "expected"), PRODUCT_PARTIAL_UPDATE.cases())
def test_product_partial_update(as_persona, product, who, expected):
    response = as_persona(who).patch(
        reverse("api:product-detail", args=[product.pk]),
        {"dosage_form": "Infusion", "reason": "new form"},
        format="json",
    )
    assert response.status_code == expected, response.content
    product.refresh_from_db()
    assert (product.dosage_form == "Infusion") == (expected == 200)


# Product sites


@pytest.fixture
def testing_link(qa: User, product: Product, site_a: Site) -> ProductSite:
    return services.product_site_add(
        actor=qa, product=product, site=site_a, role=ProductSiteRole.TESTING, reason="tests here"
    )


@pytest.mark.parametrize(("who", "expected"), PRODUCT_SITE_LIST.cases())
def test_product_site_list(as_persona, product, who, expected):
    response = as_persona(who).get(reverse("api:product-site-list"))
    assert response.status_code == expected
    if expected == 200:
        assert len(response.json()["results"]) == visible_count(who, 1)


@pytest.mark.parametrize(("who", "expected"), PRODUCT_SITE_DETAIL.cases())
def test_product_site_detail(as_persona, product, who, expected):
    link = ProductSite.objects.get(product=product)
    assert as_persona(who).get(reverse("api:product-site-detail", args=[link.pk])).status_code == (
        expected
    )


@pytest.mark.parametrize(("who", "expected"), PRODUCT_SITE_CREATE.cases())
def test_product_site_create(as_persona, product, who, expected):
    response = as_persona(who).post(
        reverse("api:product-site-list"),
        {"product": product.pk, "site": "A1", "role": "testing", "reason": "tests here"},
        format="json",
    )
    assert response.status_code == expected, response.content
    linked = ProductSite.objects.filter(product=product, role=ProductSiteRole.TESTING).exists()
    assert linked == (expected == 201)


@pytest.mark.parametrize(("who", "expected"), PRODUCT_SITE_END.cases())
def test_product_site_end(as_persona, testing_link, who, expected):
    response = as_persona(who).post(
        reverse("api:product-site-end", args=[testing_link.pk]), {"reason": "r"}, format="json"
    )
    assert response.status_code == expected, response.content
    testing_link.refresh_from_db()
    assert (testing_link.ended_at is not None) == (expected == 200)


# Master files


@pytest.mark.parametrize(("who", "expected"), MASTER_FILE_LIST.cases())
def test_master_file_list(as_persona, product, who, expected):
    response = as_persona(who).get(reverse("api:master-file-list"))
    assert response.status_code == expected
    if expected == 200:
        assert len(response.json()["results"]) == visible_count(who, 1)


@pytest.mark.parametrize(("who", "expected"), MASTER_FILE_DETAIL.cases())
def test_master_file_detail(as_persona, product, who, expected):
    url = reverse("api:master-file-detail", args=[product.master_file.pk])
    assert as_persona(who).get(url).status_code == expected


@pytest.mark.parametrize(("who", "expected"), MASTER_FILE_PARTIAL_UPDATE.cases())
def test_master_file_partial_update(as_persona, product, who, expected):
    response = as_persona(who).patch(
        reverse("api:master-file-detail", args=[product.master_file.pk]),
        {"review_interval_months": 6, "reason": "riskier product"},
        format="json",
    )
    assert response.status_code == expected, response.content
    master_file = MasterFile.objects.get(pk=product.master_file.pk)
    assert (master_file.review_interval_months == 6) == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), MASTER_FILE_DRAFTS.cases())
def test_master_file_drafts(as_persona, persona, qa, product, who, expected):
    make_effective_version(qa, persona("qp"), product)
    response = as_persona(who).post(
        reverse("api:master-file-drafts", args=[product.master_file.pk]),
        {"reason": "annual review"},
        format="json",
    )
    assert response.status_code == expected, response.content
    assert product.master_file.versions.count() == (2 if expected == 201 else 1)


# Versions


@pytest.mark.parametrize(("who", "expected"), VERSION_LIST.cases())
def test_version_list(as_persona, draft, who, expected):
    response = as_persona(who).get(reverse("api:master-file-version-list"))
    assert response.status_code == expected
    if expected == 200:
        assert len(response.json()["results"]) == visible_count(who, 1)


@pytest.mark.parametrize(("who", "expected"), VERSION_DETAIL.cases())
def test_version_detail(as_persona, draft, who, expected):
    url = reverse("api:master-file-version-detail", args=[draft.pk])
    assert as_persona(who).get(url).status_code == expected


@pytest.mark.parametrize(("who", "expected"), VERSION_PARTIAL_UPDATE.cases())
def test_version_partial_update(as_persona, draft, who, expected):
    response = as_persona(who).patch(
        reverse("api:master-file-version-detail", args=[draft.pk]),
        {"change_summary": "First edition.", "reason": "summary"},
        format="json",
    )
    assert response.status_code == expected, response.content
    draft.refresh_from_db()
    assert (draft.change_summary == "First edition.") == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), VERSION_SUBMIT.cases())
def test_version_submit(as_persona, qa, draft, who, expected):
    fill_sections(qa, draft)
    response = as_persona(who).post(
        reverse("api:master-file-version-submit", args=[draft.pk]), {"reason": "r"}, format="json"
    )
    assert response.status_code == expected, response.content
    draft.refresh_from_db()
    assert draft.status == (VersionStatus.IN_REVIEW if expected == 200 else VersionStatus.DRAFT)


@pytest.mark.parametrize(("who", "expected"), VERSION_RETURN.cases())
def test_version_return(as_persona, in_review, who, expected):
    response = as_persona(who).post(
        reverse("api:master-file-version-return", args=[in_review.pk]),
        {"reason": "needs work"},
        format="json",
    )
    assert response.status_code == expected, response.content
    in_review.refresh_from_db()
    assert in_review.status == (VersionStatus.DRAFT if expected == 200 else VersionStatus.IN_REVIEW)


@pytest.mark.parametrize(("who", "expected"), VERSION_APPROVE.cases())
def test_version_approve(as_persona, persona, in_review, who, expected):
    body = signature_fields(
        signer_for(persona, who), meaning="approved", capacity="qa", reason="content right"
    )
    response = as_persona(who).post(
        reverse("api:master-file-version-approve", args=[in_review.pk]), body, format="json"
    )
    assert response.status_code == expected, response.content
    assert VersionApproval.objects.filter(version=in_review).count() == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), VERSION_MAKE_EFFECTIVE.cases())
def test_version_make_effective(as_persona, approved, who, expected):
    response = as_persona(who).post(
        reverse("api:master-file-version-make-effective", args=[approved.pk]),
        {"reason": "in force"},
        format="json",
    )
    assert response.status_code == expected, response.content
    approved.refresh_from_db()
    assert approved.status == (
        VersionStatus.EFFECTIVE if expected == 200 else VersionStatus.APPROVED
    )


@pytest.mark.parametrize(("who", "expected"), VERSION_DIFF.cases())
def test_version_diff(as_persona, draft, who, expected):
    response = as_persona(who).get(
        reverse("api:master-file-version-diff", args=[draft.pk]), {"against": draft.pk}
    )
    assert response.status_code == expected, response.content


@pytest.mark.parametrize(("who", "expected"), VERSION_EXPORTS.cases())
def test_version_exports(as_persona, draft, who, expected):
    response = as_persona(who).post(
        reverse("api:master-file-version-exports", args=[draft.pk]), {}, format="json"
    )
    assert response.status_code == expected, response.content
    assert MasterFileExport.objects.filter(version=draft).count() == (expected == 202)


@pytest.mark.parametrize(("who", "expected"), VERSION_SECTIONS.cases())
def test_version_sections(as_persona, draft, who, expected):
    response = as_persona(who).post(
        reverse("api:master-file-version-sections", args=[draft.pk]),
        {"key": "cold-chain", "title": "Cold chain", "body": "2–8 °C.", "reason": "added"},
        format="json",
    )
    assert response.status_code == expected, response.content
    assert draft.sections.filter(key="cold-chain").exists() == (expected == 201)


@pytest.mark.parametrize(("who", "expected"), VERSION_REORDER.cases())
def test_version_reorder(as_persona, draft, who, expected):
    keys = list(draft.sections.order_by("position").values_list("key", flat=True))
    response = as_persona(who).post(
        reverse("api:master-file-version-reorder", args=[draft.pk]),
        {"keys": keys[::-1], "reason": "new order"},
        format="json",
    )
    assert response.status_code == expected, response.content
    now = list(draft.sections.order_by("position").values_list("key", flat=True))
    assert now == (keys[::-1] if expected == 200 else keys)


# Sections


@pytest.mark.parametrize(("who", "expected"), SECTION_LIST.cases())
def test_section_list(as_persona, draft, who, expected):
    response = as_persona(who).get(reverse("api:section-list"), {"page_size": 200})
    assert response.status_code == expected
    if expected == 200:
        assert len(response.json()["results"]) == visible_count(who, draft.sections.count())


@pytest.mark.parametrize(("who", "expected"), SECTION_DETAIL.cases())
def test_section_detail(as_persona, draft, who, expected):
    section = draft.sections.order_by("position").first()
    assert section is not None
    assert as_persona(who).get(reverse("api:section-detail", args=[section.pk])).status_code == (
        expected
    )


@pytest.mark.parametrize(("who", "expected"), SECTION_PARTIAL_UPDATE.cases())
def test_section_partial_update(as_persona, draft, who, expected):
    section = draft.sections.order_by("position").first()
    assert section is not None
    response = as_persona(who).patch(
        reverse("api:section-detail", args=[section.pk]),
        {"body": "Written through the API.", "reason": "drafting"},
        format="json",
    )
    assert response.status_code == expected, response.content
    section.refresh_from_db()
    assert (section.body == "Written through the API.") == (expected == 200)


# Review comments


@pytest.fixture
def comment(qa: User, draft: MasterFileVersion) -> ReviewComment:
    return services.comment_add(actor=qa, version=draft, body="Name the deputy QP.")


@pytest.mark.parametrize(("who", "expected"), COMMENT_LIST.cases())
def test_review_comment_list(as_persona, comment, who, expected):
    response = as_persona(who).get(reverse("api:review-comment-list"))
    assert response.status_code == expected
    if expected == 200:
        assert len(response.json()["results"]) == visible_count(who, 1)


@pytest.mark.parametrize(("who", "expected"), COMMENT_DETAIL.cases())
def test_review_comment_detail(as_persona, comment, who, expected):
    url = reverse("api:review-comment-detail", args=[comment.pk])
    assert as_persona(who).get(url).status_code == expected


@pytest.mark.parametrize(("who", "expected"), COMMENT_CREATE.cases())
def test_review_comment_create(as_persona, draft, who, expected):
    key = draft.sections.order_by("position").values_list("key", flat=True).first()
    response = as_persona(who).post(
        reverse("api:review-comment-list"),
        {"version": draft.pk, "section": key, "body": "Say who releases at night."},
        format="json",
    )
    assert response.status_code == expected, response.content
    assert ReviewComment.objects.filter(version=draft).exists() == (expected == 201)


@pytest.mark.parametrize(("who", "expected"), COMMENT_RESOLVE.cases())
def test_review_comment_resolve(as_persona, comment, who, expected):
    response = as_persona(who).post(
        reverse("api:review-comment-resolve", args=[comment.pk]),
        {"resolution": "Deputy named in section 7."},
        format="json",
    )
    assert response.status_code == expected, response.content
    comment.refresh_from_db()
    assert (comment.resolved_at is not None) == (expected == 200)


# Exports


@pytest.mark.parametrize(("who", "expected"), EXPORT_LIST.cases())
def test_export_list(as_persona, finished_export, who, expected):
    response = as_persona(who).get(reverse("api:export-list"))
    assert response.status_code == expected
    if expected == 200:
        assert len(response.json()["results"]) == visible_count(who, 1)


@pytest.mark.parametrize(("who", "expected"), EXPORT_DETAIL.cases())
def test_export_detail(as_persona, finished_export, who, expected):
    url = reverse("api:export-detail", args=[finished_export.pk])
    assert as_persona(who).get(url).status_code == expected


@pytest.mark.parametrize(("who", "expected"), EXPORT_DOWNLOAD.cases())
def test_export_download(as_persona, finished_export, who, expected):
    response = as_persona(who).get(reverse("api:export-download", args=[finished_export.pk]))
    assert response.status_code == expected
    downloads = AuditEvent.objects.filter(event_type="masterfile.export_downloaded").count()
    assert downloads == (expected == 200)
    if expected == 200:
        assert b"".join(response.streaming_content) == FAKE_PDF


@pytest.mark.parametrize(("who", "expected"), EXPORT_RETRY.cases())
def test_export_retry(as_persona, failed_export, who, expected):
    response = as_persona(who).post(
        reverse("api:export-retry", args=[failed_export.pk]), {}, format="json"
    )
    assert response.status_code == expected, response.content
    failed_export.refresh_from_db()
    assert failed_export.status == (ExportStatus.QUEUED if expected == 202 else ExportStatus.FAILED)


#
# What nothing-written means
#


def snapshot() -> dict[str, int]:
    """Rows, history rows and audit events that any write to a master file would add."""
    return {
        "products": Product.objects.count(),
        "product_history": Product.history.count(),
        "links": ProductSite.history.count(),
        "master_file_history": MasterFile.history.count(),
        "versions": MasterFileVersion.objects.count(),
        "version_history": MasterFileVersion.history.count(),
        "sections": Section.objects.count(),
        "section_history": Section.history.count(),
        "comments": ReviewComment.history.count(),
        "approvals": VersionApproval.history.count(),
        "signatures": ElectronicSignature.objects.count(),
        "exports": MasterFileExport.objects.count(),
        "audit_events": AuditEvent.objects.count(),
    }


@pytest.fixture
def nothing_written() -> Iterator[None]:
    """Asserts, after the test, that the test's requests changed nothing."""
    before = snapshot()
    yield
    assert snapshot() == before


#
# Bad input (issue 4 "Bad input"): refused, and nothing is written
#


def test_editing_a_version_that_is_not_a_draft_is_a_409(qa_api, in_review):
    section = in_review.sections.order_by("position").first()
    assert section is not None
    before, body = snapshot(), section.body
    response = qa_api.patch(
        reverse("api:section-detail", args=[section.pk]),
        {"body": "Changed after submission.", "reason": "late edit"},
        format="json",
    )
    detail = assert_problem(response, 409, "version_not_editable")["detail"]
    assert "in review" in detail and "new draft" in detail
    response = qa_api.patch(
        reverse("api:master-file-version-detail", args=[in_review.pk]),
        {"change_summary": "Late.", "reason": "late"},
        format="json",
    )
    assert_problem(response, 409, "version_not_editable")
    response = qa_api.post(
        reverse("api:master-file-version-sections", args=[in_review.pk]),
        {"key": "late", "title": "Late", "body": "Late.", "reason": "late"},
        format="json",
    )
    assert_problem(response, 409, "version_not_editable")
    keys = list(in_review.sections.order_by("position").values_list("key", flat=True))
    response = qa_api.post(
        reverse("api:master-file-version-reorder", args=[in_review.pk]),
        {"keys": keys[::-1], "reason": "late"},
        format="json",
    )
    assert_problem(response, 409, "version_not_editable")
    assert snapshot() == before
    section.refresh_from_db()
    assert section.body == body


def test_an_effective_version_refuses_edits_too(qa_api, qa, persona, product):
    version = make_effective_version(qa, persona("qp"), product)
    section = version.sections.order_by("position").first()
    assert section is not None
    before = snapshot()
    response = qa_api.patch(
        reverse("api:section-detail", args=[section.pk]),
        {"title": "Renamed", "reason": "late"},
        format="json",
    )
    assert_problem(response, 409, "version_not_editable")
    assert snapshot() == before
    detail = qa_api.get(reverse("api:section-detail", args=[section.pk])).json()
    assert detail["editable"] is False


def test_approving_twice_is_a_409(qa_api, qa, in_review):
    url = reverse("api:master-file-version-approve", args=[in_review.pk])
    first = qa_api.post(
        url, signature_fields(qa, meaning="approved", capacity="qa", reason="ok"), format="json"
    )
    assert first.status_code == 200, first.content
    before = snapshot()
    again = qa_api.post(
        url, signature_fields(qa, meaning="approved", capacity="qa", reason="again"), format="json"
    )
    body = assert_problem(again, 409, "already_approved")
    assert "Quinn Adams" in body["detail"]
    assert snapshot() == before


def test_the_qp_before_qa_is_out_of_order_409(api_client_for, persona, in_review):
    qp, client = persona("qp"), api_client_for("qp")
    before = snapshot()
    response = client.post(
        reverse("api:master-file-version-approve", args=[in_review.pk]),
        signature_fields(qp, meaning="approved", capacity="qp", reason="too early"),
        format="json",
    )
    body = assert_problem(response, 409, "approval_out_of_order")
    assert "Control Site QA" in body["detail"]
    assert snapshot() == before
    in_review.refresh_from_db()
    assert in_review.status == VersionStatus.IN_REVIEW


def test_approving_an_approved_version_is_a_409(api_client_for, persona, approved):
    client = api_client_for("qp")
    before = snapshot()
    response = client.post(
        reverse("api:master-file-version-approve", args=[approved.pk]),
        signature_fields(persona("qp"), meaning="approved", capacity="qp", reason="again"),
        format="json",
    )
    assert_problem(response, 409, "transition_not_allowed")
    assert snapshot() == before


def test_a_second_signature_by_the_same_person_is_a_422(qa_api, qa, in_review):
    """One person holding both roles still cannot give both approvals (MF-03, ES-01)."""
    role_grant(user=qa, role=Role.QP, granted_by=None, reason="also a QP for this test")
    TOTPDevice.objects.create(user=qa, name="test", confirmed=True)  # the QP role needs MFA
    url = reverse("api:master-file-version-approve", args=[in_review.pk])
    first = qa_api.post(
        url,
        signature_fields(qa, meaning="approved", capacity="qa", reason="QA approval"),
        format="json",
    )
    assert first.status_code == 200, first.content
    before = snapshot()
    second = qa_api.post(
        url,
        signature_fields(
            qa, meaning="approved", capacity="qp", otp=unused_totp_code(qa), reason="QP too"
        ),
        format="json",
    )
    assert_problem(second, 422, "same_signer")
    after = snapshot()
    # The refused attempt itself is on record (ES-08); nothing else is.
    assert after == {**before, "audit_events": before["audit_events"] + 1}
    refused = AuditEvent.objects.latest("seq")
    assert refused.event_type == "signature.refused"
    assert refused.extra_data["code"] == "same_signer"
    in_review.refresh_from_db()
    assert in_review.status == VersionStatus.IN_REVIEW
    assert list(VersionApproval.objects.values_list("capacity", flat=True)) == ["qa"]


def test_a_wrong_password_is_a_422_and_changes_nothing_but_the_failure_record(
    qa_api, qa, in_review
):
    approvals = VersionApproval.objects.count()
    response = qa_api.post(
        reverse("api:master-file-version-approve", args=[in_review.pk]),
        signature_fields(qa, meaning="approved", capacity="qa", password="wrong"),
        format="json",
    )
    assert_problem(response, 422, "wrong_password")
    assert VersionApproval.objects.count() == approvals
    assert not ElectronicSignature.objects.filter(meaning="approved").exists()


def test_an_export_of_a_version_you_may_not_see_is_a_404(qa, persona, draft):
    site_b = make_site(qa, "B1")
    operator_b = make_persona("operator", username="operator_b")
    membership_add(
        actor=qa, site=site_b, user=operator_b, role=SiteRole.SITE_OPERATOR, reason="works at B"
    )
    url = reverse("api:master-file-version-exports", args=[draft.pk])
    clients = (
        token_client(operator_b, created_by=persona("sysadmin")),
        token_client(qa, site_codes=["B1"]),  # even QA, through a token limited to site B1
    )
    before = snapshot()
    for client in clients:
        assert_problem(client.post(url, {}, format="json"), 404, "not_found")
    assert snapshot() == before


def test_an_operator_who_may_see_the_version_may_still_not_export_it(as_persona, draft):
    client = as_persona("operator")
    before = snapshot()
    response = client.post(
        reverse("api:master-file-version-exports", args=[draft.pk]), {}, format="json"
    )
    assert_problem(response, 403, "permission_denied")
    assert snapshot() == before


@pytest.mark.parametrize(
    ("body", "code", "stated"),
    [
        pytest.param("", "section_empty", "cannot be empty", id="empty"),
        pytest.param("  \n\t ", "section_empty", "cannot be empty", id="blank"),
        pytest.param(
            "x" * (SECTION_BODY_MAX + 1),
            "section_too_long",
            f"at most {SECTION_BODY_MAX:,} characters",
            id="enormous",
        ),
    ],
)
def test_an_empty_or_enormous_section_is_a_400_stating_the_limit(qa_api, draft, body, code, stated):
    section = draft.sections.order_by("position").first()
    assert section is not None
    before = snapshot()
    response = qa_api.patch(
        reverse("api:section-detail", args=[section.pk]),
        {"body": body, "reason": "write"},
        format="json",
    )
    assert stated in assert_problem(response, 400, code)["detail"]
    response = qa_api.post(
        reverse("api:master-file-version-sections", args=[draft.pk]),
        {"key": "extra", "title": "Extra", "body": body, "reason": "add"},
        format="json",
    )
    assert stated in assert_problem(response, 400, code)["detail"]
    assert snapshot() == before
    section.refresh_from_db()
    assert section.body == ""


def test_a_section_at_the_limit_is_taken(qa_api, draft):
    section = draft.sections.order_by("position").first()
    assert section is not None
    response = qa_api.patch(
        reverse("api:section-detail", args=[section.pk]),
        {"body": "x" * SECTION_BODY_MAX, "reason": "long"},
        format="json",
    )
    assert response.status_code == 200, response.content[:500]
    assert response.json()["body"] == "x" * SECTION_BODY_MAX


def test_an_empty_section_title_is_a_400(qa_api, draft, nothing_written):
    section = draft.sections.order_by("position").first()
    assert section is not None
    response = qa_api.patch(
        reverse("api:section-detail", args=[section.pk]),
        {"title": " ", "reason": "rename"},
        format="json",
    )
    assert_problem(response, 400, "title_required")


def test_a_stale_if_match_is_a_412_and_writes_nothing(qa_api, draft):
    section = draft.sections.order_by("position").first()
    assert section is not None
    url = reverse("api:section-detail", args=[section.pk])
    etag = qa_api.get(url)["ETag"]
    assert etag
    ok = qa_api.patch(url, {"body": "One.", "reason": "r"}, format="json", HTTP_IF_MATCH=etag)
    assert ok.status_code == 200, ok.content
    before = snapshot()
    stale = qa_api.patch(url, {"body": "Two.", "reason": "r"}, format="json", HTTP_IF_MATCH=etag)
    assert_problem(stale, 412, "precondition_failed")
    assert snapshot() == before
    section.refresh_from_db()
    assert section.body == "One."


def test_a_stale_if_match_on_a_version_step_is_a_412(qa_api, qa, draft):
    url = reverse("api:master-file-version-detail", args=[draft.pk])
    etag = qa_api.get(url)["ETag"]
    services.change_summary_set(actor=qa, version=draft, summary="Meanwhile.", reason="r")
    response = qa_api.patch(
        url, {"change_summary": "Mine.", "reason": "r"}, format="json", HTTP_IF_MATCH=etag
    )
    assert_problem(response, 412, "precondition_failed")
    fill_sections(qa, draft)
    before = snapshot()
    response = qa_api.post(
        reverse("api:master-file-version-submit", args=[draft.pk]),
        {"reason": "r"},
        format="json",
        HTTP_IF_MATCH=etag,
    )
    assert_problem(response, 412, "precondition_failed")
    assert snapshot() == before
    draft.refresh_from_db()
    assert (draft.status, draft.change_summary) == (VersionStatus.DRAFT, "Meanwhile.")


def test_a_malformed_body_is_a_400_whatever_if_match_says(qa_api, qa, in_review):
    section = in_review.sections.order_by("position").first()
    assert section is not None
    stale = '"stale"'
    before = snapshot()
    response = qa_api.patch(
        reverse("api:section-detail", args=[section.pk]),
        {"body": "No reason."},
        format="json",
        HTTP_IF_MATCH=stale,
    )
    assert_problem(response, 400, "required")
    response = qa_api.post(
        reverse("api:master-file-version-approve", args=[in_review.pk]),
        signature_fields(qa, meaning="approved", capacity="boss"),
        format="json",
        HTTP_IF_MATCH=stale,
    )
    assert_problem(response, 400, "invalid_choice")
    response = qa_api.post(
        reverse("api:master-file-version-exports", args=[in_review.pk]),
        {"colour": "red"},
        format="json",
        HTTP_IF_MATCH=stale,
    )
    assert_problem(response, 400, "unknown_field")
    response = qa_api.post(
        reverse("api:master-file-version-return", args=[in_review.pk]),
        {"reason": "r"},
        format="json",
        HTTP_IF_MATCH=stale,
    )
    assert_problem(response, 412, "precondition_failed")
    assert snapshot() == before


@pytest.mark.parametrize(
    ("route", "method", "body"),
    [
        pytest.param("section", "patch", {"body": "x", "reason": "r"}, id="section"),
        pytest.param("version", "patch", {"change_summary": "x", "reason": "r"}, id="version"),
        pytest.param("product", "patch", {"name": "x", "reason": "r"}, id="product"),
        pytest.param("submit", "post", {"reason": "r"}, id="submit"),
        pytest.param("comments", "post", {"body": "x"}, id="comment"),
    ],
)
@pytest.mark.parametrize("unknown", ["status", "colour"])
def test_unknown_and_read_only_fields_are_refused(qa_api, draft, route, method, body, unknown):
    section = draft.sections.order_by("position").first()
    assert section is not None
    url, data = {
        "section": (reverse("api:section-detail", args=[section.pk]), body),
        "version": (reverse("api:master-file-version-detail", args=[draft.pk]), body),
        "product": (reverse("api:product-detail", args=[draft.master_file.product_id]), body),
        "submit": (reverse("api:master-file-version-submit", args=[draft.pk]), body),
        "comments": (reverse("api:review-comment-list"), {**body, "version": draft.pk}),
    }[route]
    before = snapshot()
    response = getattr(qa_api, method)(url, {**data, unknown: "approved"}, format="json")
    assert unknown in assert_problem(response, 400, "unknown_field")["errors"]
    assert snapshot() == before


def test_a_product_with_unknown_fields_or_a_status_is_refused(qa_api, site_a, nothing_written):
    data = {
        "code": "NEW-1",
        "name": "New",
        "designation": "poc",
        "designation_reference": "DM-1",
        "designation_date": "2026-01-01",
        "dosage_form": "Tablet",
        "shelf_life_minutes": 30,
        "supply_status": "licensed",
        "reference_site": "A1",
        "reason": "r",
    }
    for extra in ({"status": "approved"}, {"colour": "red"}):
        response = qa_api.post(reverse("api:product-list"), {**data, **extra}, format="json")
        assert_problem(response, 400, "unknown_field")
    for bad in (
        {"shelf_life_minutes": "30"},  # a string where a number is due
        {"shelf_life_minutes": 0},
        {"shelf_life_minutes": 60 * 24 * 91},
        {"name": 42},
        {"code": "lower-case"},
        {"reference_site": "ZZ9"},
        {"designation": "batch"},
    ):
        response = qa_api.post(reverse("api:product-list"), {**data, **bad}, format="json")
        assert response.status_code == 400, (bad, response.content)
        assert set(bad) <= set(response.json()["errors"])


def test_a_products_code_never_changes(qa_api, product, nothing_written):
    response = qa_api.patch(
        reverse("api:product-detail", args=[product.pk]),
        {"code": "OTHER-1", "reason": "rename"},
        format="json",
    )
    assert_problem(response, 400, "product_code_immutable")


def test_a_missing_reason_is_a_400(qa_api, draft, nothing_written):
    section = draft.sections.order_by("position").first()
    assert section is not None
    response = qa_api.patch(
        reverse("api:section-detail", args=[section.pk]), {"body": "x"}, format="json"
    )
    assert "reason" in assert_problem(response, 400, "required")["errors"]
    response = qa_api.post(
        reverse("api:master-file-version-submit", args=[draft.pk]), {}, format="json"
    )
    assert_problem(response, 400, "required")
    response = qa_api.post(
        reverse("api:master-file-drafts", args=[draft.master_file_id]),
        {"reason": "   "},
        format="json",
    )
    assert_problem(response, 400, "blank")


def test_a_change_with_nothing_to_change_is_a_400(qa_api, draft, nothing_written):
    section = draft.sections.order_by("position").first()
    assert section is not None
    for url in (
        reverse("api:section-detail", args=[section.pk]),
        reverse("api:product-detail", args=[draft.master_file.product_id]),
        reverse("api:master-file-detail", args=[draft.master_file_id]),
    ):
        response = qa_api.patch(url, {"reason": "nothing"}, format="json")
        assert_problem(response, 400, "nothing_to_change")


def test_put_and_delete_are_not_offered(qa_api, draft, nothing_written):
    for url in (
        reverse("api:product-detail", args=[draft.master_file.product_id]),
        reverse("api:master-file-version-detail", args=[draft.pk]),
        reverse("api:section-detail", args=[draft.sections.first().pk]),
    ):
        assert_problem(qa_api.put(url, {"reason": "x"}, format="json"), 405, "method_not_allowed")
        assert_problem(qa_api.delete(url), 405, "method_not_allowed")


def test_a_step_from_the_wrong_status_is_a_409(qa_api, draft, nothing_written):
    for step in ("return", "make-effective"):
        response = qa_api.post(
            reverse(f"api:master-file-version-{step}", args=[draft.pk]),
            {"reason": "r"},
            format="json",
        )
        assert_problem(response, 409, "transition_not_allowed")


def test_submitting_with_empty_sections_is_a_409_naming_them(qa_api, qa, draft):
    first = draft.sections.order_by("position").first()
    assert first is not None
    services.section_update(actor=qa, section=first, body="Written.", reason="r")
    before = snapshot()
    response = qa_api.post(
        reverse("api:master-file-version-submit", args=[draft.pk]), {"reason": "r"}, format="json"
    )
    body = assert_problem(response, 409, "sections_empty")
    expected = list(
        draft.sections.exclude(pk=first.pk)
        .order_by("position", "key")
        .values_list("key", flat=True)
    )
    assert body["extra"]["sections"] == expected
    assert snapshot() == before


def test_a_second_draft_while_one_is_open_is_a_409(qa_api, draft, nothing_written):
    response = qa_api.post(
        reverse("api:master-file-drafts", args=[draft.master_file_id]),
        {"reason": "another"},
        format="json",
    )
    assert assert_problem(response, 409, "version_open")["extra"]["open_version"] == draft.pk


def test_a_comment_on_an_unknown_section_or_version_is_a_400(qa_api, draft, nothing_written):
    response = qa_api.post(
        reverse("api:review-comment-list"),
        {"version": draft.pk, "section": "no-such-section", "body": "x"},
        format="json",
    )
    assert_problem(response, 400, "unknown_section")
    response = qa_api.post(
        reverse("api:review-comment-list"),
        {"version": draft.pk + 1000, "body": "x"},
        format="json",
    )
    assert_problem(response, 400, "unknown")
    response = qa_api.post(
        reverse("api:review-comment-list"), {"version": draft.pk, "body": " "}, format="json"
    )
    assert_problem(response, 400, "comment_empty")


def test_a_diff_against_another_master_file_is_a_400(qa_api, qa, draft, site_a):
    other = make_product(qa, site_a, "OTHER-1").master_file.versions.get()
    url = reverse("api:master-file-version-diff", args=[draft.pk])
    assert_problem(qa_api.get(url, {"against": other.pk}), 400, "unknown_version")
    assert_problem(qa_api.get(url), 400, "no_earlier_version")
    assert_problem(qa_api.get(url, {"against": "v1"}), 400, "validation_error")


def test_bad_filters_are_a_400(qa_api, draft):
    for route, params, code in (
        ("api:master-file-version-list", {"status": "published"}, "invalid_choice"),
        ("api:master-file-version-list", {"product": "CART-01"}, "invalid_id"),
        ("api:master-file-version-list", {"master_file": "9" * 19}, "invalid_id"),
        ("api:section-list", {"version": " "}, "validation_error"),
        ("api:review-comment-list", {"resolved": "maybe"}, "invalid_choice"),
        ("api:product-site-list", {"ended": "yes"}, "invalid_choice"),
        ("api:export-list", {"status": "printing"}, "invalid_choice"),
    ):
        assert_problem(qa_api.get(reverse(route), params), 400, code)


def test_a_download_before_the_export_is_done_is_a_409(qa_api, qa, draft):
    export = exports.export_request(actor=qa, version=draft)
    before = snapshot()
    response = qa_api.get(reverse("api:export-download", args=[export.pk]))
    assert_problem(response, 409, "export_not_ready")
    assert snapshot() == before
    body = qa_api.get(reverse("api:export-detail", args=[export.pk])).json()
    assert (body["status"], body["download_url"]) == ("queued", None)


def test_a_second_export_while_one_is_queued_is_a_409(qa_api, draft):
    url = reverse("api:master-file-version-exports", args=[draft.pk])
    assert qa_api.post(url, {}, format="json").status_code == 202
    before = snapshot()
    assert_problem(qa_api.post(url, {}, format="json"), 409, "export_in_flight")
    assert snapshot() == before


def test_only_a_failed_export_is_retried(qa_api, finished_export, nothing_written):
    response = qa_api.post(
        reverse("api:export-retry", args=[finished_export.pk]), {}, format="json"
    )
    assert_problem(response, 409, "export_not_failed")


#
# Writes and what they answer
#


def test_qa_registers_a_product_with_its_master_file_and_first_draft(qa_api, site_a):
    response = qa_api.post(
        reverse("api:product-list"),
        {
            "code": "CART-02",
            "name": "Allogeneic CAR-T cells",
            "designation": "poc",
            "designation_reference": "DM-2026-0009",
            "designation_date": "2026-03-01",
            "dosage_form": "Suspension for infusion",
            "shelf_life_minutes": 90,
            "supply_status": "investigational",
            "reference_site": "A1",
            "reason": "Designated by the MHRA.",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    product = Product.objects.get(code="CART-02")
    assert response["Location"] == f"/api/v1/products/{product.pk}/"
    assert body["reference_site"] == {"code": "A1", "name": "Site A1"}
    assert body["shelf_life_display"] == "1 h 30 min"
    assert body["designation_display"] == "Point of care (POC)"
    assert body["effective_version"] is None
    assert [(s["site"]["code"], s["role"], s["is_reference"]) for s in body["sites"]] == [
        ("A1", "manufacturing", True)
    ]
    master_file = qa_api.get(body["links"]["master_file"]).json()
    assert master_file["owner"]["username"] == "qa"
    assert master_file["open_version"]["number"] == 1
    assert master_file["open_version"]["status"] == "draft"
    event = AuditEvent.objects.get(event_type="masterfile.product_registered")
    assert event.reason == "Designated by the MHRA."


def test_an_idempotent_retry_registers_one_product(qa_api, site_a):
    data = {
        "code": "NEW-1",
        "name": "New",
        "designation": "poc",
        "designation_reference": "DM-1",
        "designation_date": "2026-01-01",
        "dosage_form": "Tablet",
        "shelf_life_minutes": 30,
        "supply_status": "licensed",
        "reference_site": "A1",
        "reason": "r",
    }
    url = reverse("api:product-list")
    first = qa_api.post(url, data, format="json", HTTP_IDEMPOTENCY_KEY="p1")
    second = qa_api.post(url, data, format="json", HTTP_IDEMPOTENCY_KEY="p1")
    assert first.status_code == second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert Product.objects.count() == 1
    assert AuditEvent.objects.filter(event_type="masterfile.product_registered").count() == 1


def test_qa_changes_a_product_and_a_designation_change_is_flagged(qa_api, product):
    response = qa_api.patch(
        reverse("api:product-detail", args=[product.pk]),
        {"shelf_life_minutes": 240, "reason": "stability study"},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["shelf_life_display"] == "4 h"
    event = AuditEvent.objects.get(event_type="masterfile.product_updated")
    assert event.extra_data["designation_review_needed"] is True
    assert event.reason == "stability study"


def test_product_sites_are_added_listed_and_ended(qa_api, qa, product):
    lab = make_site(qa, "LAB1", kind=SiteKind.TESTING_LAB)
    response = qa_api.post(
        reverse("api:product-site-list"),
        {"product": product.pk, "site": "LAB1", "role": "manufacturing", "reason": "r"},
        format="json",
    )
    assert_problem(response, 400, "site_kind")
    created = qa_api.post(
        reverse("api:product-site-list"),
        {"product": product.pk, "site": lab.code, "role": "testing", "reason": "QC lab"},
        format="json",
    )
    assert created.status_code == 201, created.content
    link = created.json()
    assert (link["site"]["code"], link["role"], link["is_reference"]) == ("LAB1", "testing", False)
    listed = qa_api.get(reverse("api:product-site-list"), {"product": product.pk}).json()
    assert [r["site"]["code"] for r in listed["results"]] == ["A1", "LAB1"]

    reference = ProductSite.objects.get(product=product, site__code="A1")
    response = qa_api.post(
        reverse("api:product-site-end", args=[reference.pk]), {"reason": "r"}, format="json"
    )
    assert_problem(response, 409, "reference_site")
    ended = qa_api.post(
        reverse("api:product-site-end", args=[link["id"]]), {"reason": "lab closed"}, format="json"
    )
    assert ended.status_code == 200, ended.content
    assert ended.json()["ended_at"]
    live = qa_api.get(reverse("api:product-site-list"), {"product": product.pk}).json()
    assert [r["site"]["code"] for r in live["results"]] == ["A1"]
    gone = qa_api.get(reverse("api:product-site-list"), {"ended": "true"}).json()
    assert [r["id"] for r in gone["results"]] == [link["id"]]


def test_a_version_reads_with_sections_annex_approvals_and_links(qa_api, qa, persona, in_review):
    qa_approval = signature_fields(qa, meaning="approved", capacity="qa", reason="content right")
    response = qa_api.post(
        reverse("api:master-file-version-approve", args=[in_review.pk]), qa_approval, format="json"
    )
    assert response.status_code == 200, response.content

    response = qa_api.get(reverse("api:master-file-version-detail", args=[in_review.pk]))
    assert response.status_code == 200
    assert response["ETag"]
    body = response.json()
    assert (body["number"], body["label"], body["status"]) == (1, "v1", "in_review")
    assert body["status_display"] == "In review"
    assert body["product"]["code"] == "CART-01"
    sections = list(in_review.sections.order_by("position", "key"))
    assert [s["key"] for s in body["sections"]] == [s.key for s in sections]
    assert all(not s["empty"] and s["characters"] > 0 for s in body["sections"])
    assert body["sections"][0]["url"] == f"/api/v1/sections/{sections[0].pk}/"
    assert [(a["site_code"], a["role"], a["is_reference"]) for a in body["annex"]] == [
        ("A1", "manufacturing", True)
    ]
    (approval,) = body["approvals"]
    assert approval["capacity"] == "qa"
    assert approval["signer"] == {"username": "qa", "printed_name": "Quinn Adams"}
    assert approval["printed_name"] == "Quinn Adams"
    assert approval["meaning"] == "approved" and approval["meaning_display"] == "Approved"
    assert approval["signed_at"].endswith("Z")  # UTC (ES-01)
    assert approval["valid"] is True and approval["withdrawn_at"] is None
    assert approval["reason"] == "content right"
    assert body["next_approval"] == "qp"
    assert body["open_comments"] == 0
    assert body["links"]["html"] == f"/master-files/versions/{in_review.pk}/"
    assert set(body["links"]["actions"]) == {"approve", "return"}
    assert body["links"]["actions"]["approve"] == (
        f"/api/v1/master-file-versions/{in_review.pk}/approve/"
    )


def test_a_returned_and_edited_version_shows_the_old_signature_invalid(qa_api, qa, in_review):
    services.version_approve(
        actor=qa,
        version=in_review,
        capacity=ApprovalCapacity.QA,
        credentials=signing(qa),
        reason="ok",
    )
    returned = qa_api.post(
        reverse("api:master-file-version-return", args=[in_review.pk]),
        {"reason": "section 2 is wrong"},
        format="json",
    )
    assert returned.status_code == 200, returned.content
    assert returned.json()["status"] == "draft"
    section = in_review.sections.order_by("position").first()
    assert section is not None
    edited = qa_api.patch(
        reverse("api:section-detail", args=[section.pk]),
        {"body": "Rewritten.", "reason": "fix"},
        format="json",
    )
    assert edited.status_code == 200, edited.content
    body = qa_api.get(reverse("api:master-file-version-detail", args=[in_review.pk])).json()
    (approval,) = body["approvals"]
    assert approval["valid"] is False
    assert approval["withdrawn_at"]
    assert body["next_approval"] is None  # not in review


def test_qa_writes_adds_and_reorders_sections_in_a_draft(qa_api, draft):
    first = draft.sections.order_by("position").first()
    assert first is not None
    url = reverse("api:section-detail", args=[first.pk])
    response = qa_api.patch(
        url,
        {"title": "Identification", "body": "# Sites\n\n<script>x</script>", "reason": "draft"},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["title"] == "Identification"
    assert body["editable"] is True
    assert "<script>" not in body["body_html"] and "<h3>Sites</h3>" in body["body_html"]
    event = AuditEvent.objects.get(event_type="masterfile.section_changed")
    assert event.reason == "draft"
    assert first.history.latest().history_change_reason == "draft"

    added = qa_api.post(
        reverse("api:master-file-version-sections", args=[draft.pk]),
        {
            "key": "cold-chain",
            "title": "Cold chain",
            "body": "2–8 °C.",
            "after_key": first.key,
            "reason": "MHRA question",
        },
        format="json",
    )
    assert added.status_code == 201, added.content
    assert added["Location"] == f"/api/v1/sections/{added.json()['id']}/"
    keys = list(draft.sections.order_by("position", "key").values_list("key", flat=True))
    assert keys[:2] == [first.key, "cold-chain"]
    duplicate = qa_api.post(
        reverse("api:master-file-version-sections", args=[draft.pk]),
        {"key": "cold-chain", "title": "Again", "body": "x", "reason": "r"},
        format="json",
    )
    assert_problem(duplicate, 409, "key_exists")

    reordered = qa_api.post(
        reverse("api:master-file-version-reorder", args=[draft.pk]),
        {"keys": keys[::-1], "reason": "follow the MHRA form"},
        format="json",
    )
    assert reordered.status_code == 200, reordered.content
    assert [s["key"] for s in reordered.json()["sections"]] == keys[::-1]
    listed = qa_api.get(reverse("api:section-list"), {"version": draft.pk, "page_size": 200})
    assert [s["key"] for s in listed.json()["results"]] == keys[::-1]
    incomplete = qa_api.post(
        reverse("api:master-file-version-reorder", args=[draft.pk]),
        {"keys": keys[:3], "reason": "r"},
        format="json",
    )
    assert assert_problem(incomplete, 400, "invalid_order")["extra"]["expected"] == sorted(keys)
    bad = qa_api.post(
        reverse("api:master-file-version-reorder", args=[draft.pk]),
        {"keys": [1, 2], "reason": "r"},
        format="json",
    )
    assert "keys" in assert_problem(bad, 400, "validation_error")["errors"]


def test_review_comments_are_made_filtered_and_resolved(api_client_for, qa, in_review):
    qp_api = api_client_for("qp")
    section = in_review.sections.order_by("position").first()
    assert section is not None
    created = qp_api.post(
        reverse("api:review-comment-list"),
        {"version": in_review.pk, "section": section.key, "body": "Name the deputy QP."},
        format="json",
    )
    assert created.status_code == 201, created.content
    comment = created.json()
    assert comment["author"]["username"] == "qp"
    assert (comment["version"], comment["section"]) == (in_review.pk, section.key)
    detail = qp_api.get(reverse("api:master-file-version-detail", args=[in_review.pk])).json()
    assert detail["open_comments"] == 1

    qa_api = api_client_for("qa")
    approval = signature_fields(qa, meaning="approved", capacity="qa", reason="ok")
    blocked = qa_api.post(
        reverse("api:master-file-version-approve", args=[in_review.pk]), approval, format="json"
    )
    assert_problem(blocked, 409, "comments_open")
    open_ = qa_api.get(
        reverse("api:review-comment-list"), {"version": in_review.pk, "resolved": "false"}
    )
    assert [c["id"] for c in open_.json()["results"]] == [comment["id"]]
    resolved = qa_api.post(
        reverse("api:review-comment-resolve", args=[comment["id"]]),
        {"resolution": "Named in section 7."},
        format="json",
    )
    assert resolved.status_code == 200, resolved.content
    assert resolved.json()["resolved_by"]["username"] == "qa"
    again = qa_api.post(
        reverse("api:review-comment-resolve", args=[comment["id"]]),
        {"resolution": "Again."},
        format="json",
    )
    assert_problem(again, 409, "already_resolved")
    open_ = qa_api.get(reverse("api:review-comment-list"), {"resolved": "false"})
    assert open_.json()["results"] == []


def test_a_new_draft_and_its_diff_through_the_api(qa_api, qa, persona, product):
    v1 = make_effective_version(qa, persona("qp"), product)
    started = qa_api.post(
        reverse("api:master-file-drafts", args=[product.master_file.pk]),
        {"reason": "annual review"},
        format="json",
    )
    assert started.status_code == 201, started.content
    v2 = started.json()
    assert started["Location"] == f"/api/v1/master-file-versions/{v2['id']}/"
    assert (v2["number"], v2["status"], v2["based_on"]) == (2, "draft", v1.pk)
    assert v2["previous_version"]["id"] == v1.pk
    first_key = v2["sections"][0]["key"]
    section_id = v2["sections"][0]["id"]
    qa_api.patch(
        reverse("api:section-detail", args=[section_id]),
        {"body": "v1: changed line.\nA new line.", "reason": "update"},
        format="json",
    )
    diff = qa_api.get(reverse("api:master-file-version-diff", args=[v2["id"]]))
    assert diff.status_code == 200, diff.content
    body = diff.json()
    assert (body["version"]["number"], body["against"]["number"]) == (2, 1)
    changed = [s for s in body["sections"] if s["change"] != "unchanged"]
    assert [s["key"] for s in changed] == [first_key]
    assert {"kind": "added", "text": "A new line."} in changed[0]["lines"]
    # A draft's annex is generated when it is submitted: until then v1's sites are "removed".
    assert body["annex"] == {"added": [], "removed": ["A1 (manufacturing)"], "changed": []}
    same = qa_api.get(
        reverse("api:master-file-version-diff", args=[v2["id"]]), {"against": v1.pk}
    ).json()
    assert same == body

    master_file = qa_api.get(reverse("api:master-file-detail", args=[product.master_file.pk]))
    mf = master_file.json()
    assert mf["effective_version"]["id"] == v1.pk
    assert mf["open_version"]["id"] == v2["id"]
    assert [v["number"] for v in mf["versions"]] == [2, 1]
    listed = qa_api.get(reverse("api:product-detail", args=[product.pk])).json()
    assert listed["effective_version"]["number"] == 1


def test_the_master_file_owner_and_interval_change(qa_api, persona, product):
    persona("qp")
    response = qa_api.patch(
        reverse("api:master-file-detail", args=[product.master_file.pk]),
        {"owner": "qp", "review_interval_months": 24, "reason": "handover"},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["owner"]["username"] == "qp"
    assert response.json()["review_interval_months"] == 24
    for bad in ({"review_interval_months": 61}, {"owner": "nobody"}):
        response = qa_api.patch(
            reverse("api:master-file-detail", args=[product.master_file.pk]),
            {**bad, "reason": "r"},
            format="json",
        )
        assert response.status_code == 400, response.content


def test_an_export_is_requested_polled_and_downloaded(
    qa_api, qa, draft, media, monkeypatch, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = qa_api.post(
            reverse("api:master-file-version-exports", args=[draft.pk]), {}, format="json"
        )
    assert response.status_code == 202, response.content
    assert len(callbacks) == 1  # the task is sent once the request's transaction commits
    body = response.json()
    assert response["Location"] == f"/api/v1/exports/{body['id']}/"
    assert (body["status"], body["progress"], body["download_url"]) == ("queued", 0, None)
    assert body["watermarked"] is True  # a draft
    assert body["requested_by"]["username"] == "qa"

    run_export(MasterFileExport.objects.get(pk=body["id"]), monkeypatch)
    polled = qa_api.get(response["Location"]).json()
    assert (polled["status"], polled["progress"]) == ("done", 100)
    assert polled["sha256"] and polled["size_bytes"] == len(FAKE_PDF)
    assert polled["page_count"] == 1
    assert polled["download_url"] == f"http://testserver/api/v1/exports/{body['id']}/download/"

    download = qa_api.get(polled["download_url"])
    assert download.status_code == 200
    assert download["Content-Type"] == "application/pdf"
    assert download["X-Content-SHA256"] == polled["sha256"]
    assert download["Repr-Digest"].startswith("sha-256=:")
    assert "attachment" in download["Content-Disposition"]
    assert b"".join(download.streaming_content) == FAKE_PDF
    listed = qa_api.get(reverse("api:export-list"), {"version": draft.pk}).json()
    assert [e["id"] for e in listed["results"]] == [body["id"]]


def test_a_client_asking_for_a_pdf_gets_the_file_and_json_problems(qa_api, qa, finished_export):
    url = reverse("api:export-download", args=[finished_export.pk])
    response = qa_api.get(url, HTTP_ACCEPT="application/pdf")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == FAKE_PDF
    queued = exports.export_request(actor=qa, version=finished_export.version)
    response = qa_api.get(
        reverse("api:export-download", args=[queued.pk]), HTTP_ACCEPT="application/pdf"
    )
    assert_problem(response, 409, "export_not_ready")


def test_a_failed_export_shows_its_error_and_is_retried(qa_api, failed_export):
    detail = qa_api.get(reverse("api:export-detail", args=[failed_export.pk])).json()
    assert detail["status"] == "failed"
    assert "ran out of paper" in detail["error"]
    response = qa_api.post(reverse("api:export-retry", args=[failed_export.pk]), {}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued"
    assert response.json()["error"] == ""
    assert AuditEvent.objects.filter(event_type="masterfile.export_retried").count() == 1


#
# Isolation
#


@pytest.fixture
def operator_b(qa: User) -> User:
    """An operator of site B1 only, where nothing of CART-01 is made."""
    site_b = make_site(qa, "B1")
    user = make_persona("operator", username="operator_b")
    membership_add(
        actor=qa, site=site_b, user=user, role=SiteRole.SITE_OPERATOR, reason="works at B"
    )
    return user


def test_another_sites_operator_sees_nothing_of_the_product(persona, draft, comment, operator_b):
    client = token_client(operator_b, created_by=persona("sysadmin"))
    section = draft.sections.order_by("position").first()
    assert section is not None
    product = draft.master_file.product
    for url in (
        reverse("api:product-detail", args=[product.pk]),
        reverse("api:master-file-detail", args=[draft.master_file_id]),
        reverse("api:master-file-version-detail", args=[draft.pk]),
        reverse("api:master-file-version-diff", args=[draft.pk]),
        reverse("api:section-detail", args=[section.pk]),
        reverse("api:review-comment-detail", args=[comment.pk]),
    ):
        assert_problem(client.get(url), 404, "not_found")
    for route in (
        "api:product-list",
        "api:product-site-list",
        "api:master-file-list",
        "api:master-file-version-list",
        "api:section-list",
        "api:review-comment-list",
        "api:export-list",
    ):
        assert client.get(reverse(route)).json()["results"] == [], route


def test_a_site_lead_reads_the_products_of_their_site(as_persona, qa, draft, site_a):
    other_site = make_site(qa, "C1")
    make_product(qa, other_site, "OTHER-1")
    client = as_persona("site_lead")
    products = client.get(reverse("api:product-list")).json()["results"]
    assert [p["code"] for p in products] == ["CART-01"]
    versions = client.get(reverse("api:master-file-version-list")).json()["results"]
    assert [v["id"] for v in versions] == [draft.pk]


#
# Lists: filters, order and a fixed number of queries
#


def test_versions_filter_by_status_product_and_master_file(qa_api, qa, persona, product, site_a):
    v1 = make_effective_version(qa, persona("qp"), product)
    v2 = services.draft_start(actor=qa, master_file=product.master_file, reason="next")
    other = make_product(qa, site_a, "OTHER-1").master_file.versions.get()

    def ids(**params: Any) -> list[int]:
        response = qa_api.get(reverse("api:master-file-version-list"), params)
        assert response.status_code == 200, response.content
        return [v["id"] for v in response.json()["results"]]

    assert ids() == [other.pk, v2.pk, v1.pk]
    assert ids(status="effective") == [v1.pk]
    assert ids(status="draft") == [other.pk, v2.pk]
    assert ids(product=product.pk) == [v2.pk, v1.pk]
    assert ids(master_file=other.master_file_id) == [other.pk]
    products = qa_api.get(reverse("api:product-list"), {"q": "other"}).json()["results"]
    assert [p["code"] for p in products] == ["OTHER-1"]
    products = qa_api.get(reverse("api:product-list"), {"site": "A1"}).json()["results"]
    assert [p["code"] for p in products] == ["CART-01", "OTHER-1"]


def _count_queries(client: APIClient, route: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse(route), {"page_size": 100})
    assert response.status_code == 200
    return len(captured)


@pytest.mark.parametrize(
    "route",
    [
        "api:product-list",
        "api:master-file-list",
        "api:master-file-version-list",
        "api:product-site-list",
        "api:section-list",
        "api:review-comment-list",
    ],
)
def test_lists_run_a_fixed_number_of_queries(qa_api, qa, site_a, route):
    def add(n: int, start: int) -> None:
        for i in range(start, start + n):
            product = make_product(qa, site_a, f"P-{i:02d}")
            services.comment_add(actor=qa, version=product.master_file.versions.get(), body=f"c{i}")

    add(2, 0)
    qa_api.get(reverse(route))  # the token's first use records it once
    few = _count_queries(qa_api, route)
    add(8, 2)
    assert _count_queries(qa_api, route) == few
