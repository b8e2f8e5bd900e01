"""The master-file pages: who may open and post what, a QA's and a QP's walk through the forms
from registering a product to a version in force, frozen content offering no edit controls and
refusing edits, stale edits, bad input, exports and their download, the diff page, Markdown that
cannot inject markup, and fixed query counts (issue 4, pages; MF-03, MF-06, ES-01, ES-03)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from controlsite.accounts.models import User
from controlsite.audit.models import AuditEvent
from controlsite.signatures.models import ElectronicSignature
from masterfile import exports, services
from masterfile.choices import (
    ApprovalCapacity,
    ExportStatus,
    ProductSiteRole,
    VersionStatus,
)
from masterfile.events import MasterFileEvent
from masterfile.models import (
    MasterFileExport,
    MasterFileVersion,
    Product,
    ProductSite,
    ReviewComment,
    Section,
)
from masterfile.panels import master_files_panel
from sites import services as site_services
from sites.choices import SiteKind, SiteRole
from tests.masterfile.helpers import (
    approve,
    fill_sections,
    make_effective_version,
    make_product,
    signing,
)
from tests.matrix import Matrix, only
from tests.personas import PASSWORD, unused_totp_code
from tests.sites.helpers import make_site

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
SCRIPT = '<script>alert("mf")</script>'


@pytest.fixture(autouse=True)
def _media_in_tmp(settings: Any, tmp_path: Any) -> None:
    """Export files land in a throwaway folder, never in var/."""
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _no_export_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The pages only queue exports; rendering is the export service's (tests/masterfile/
    test_exports.py, and the browser test). Queued exports are collected, not rendered."""
    queued: list[int] = []

    class Worker:
        @staticmethod
        def delay(export_id: int) -> None:
            queued.append(export_id)

    monkeypatch.setattr(exports, "_task", lambda: Worker)
    yield queued


#
# Building products and versions through the real services
#

Persona = Callable[[str], User]


def _product(p: Persona, code: str = "CART-01", site: str = "REF1") -> Product:
    return make_product(p("qa"), make_site(p("qa"), site), code)


def _draft(p: Persona) -> MasterFileVersion:
    return _product(p).master_file.versions.get()


def _filled(p: Persona) -> MasterFileVersion:
    version = _draft(p)
    fill_sections(p("qa"), version)
    return version


def _in_review(p: Persona) -> MasterFileVersion:
    version = _filled(p)
    services.version_submit(actor=p("qa"), version=version, reason="ready for review")
    version.refresh_from_db()
    return version


def _approved(p: Persona) -> MasterFileVersion:
    version = _in_review(p)
    approve(p("qa"), p("qp"), version)
    version.refresh_from_db()
    return version


def _effective(p: Persona) -> MasterFileVersion:
    return make_effective_version(p("qa"), p("qp"), _product(p))


def _first_section(version: MasterFileVersion) -> Section:
    section = version.sections.order_by("position").first()
    assert section is not None
    return section


def _export(p: Persona, status: ExportStatus = ExportStatus.DONE) -> MasterFileExport:
    """An export row in the given state (the renderer is tested in test_exports.py): a done one
    carries a stored file and its SHA-256, as the export service leaves it."""
    version = _effective(p)
    export = MasterFileExport.objects.create(
        version=version,
        requested_by=p("qa"),
        status=status,
        progress=100 if status == ExportStatus.DONE else 40,
        stage="Laying out the pages" if status == ExportStatus.RUNNING else "",
        created_by=p("qa"),
    )
    if status == ExportStatus.DONE:
        export.file.save(export.filename, ContentFile(PDF), save=False)
        export.sha256 = hashlib.sha256(PDF).hexdigest()
        export.size_bytes, export.page_count = len(PDF), 9
        export.finished_at = timezone.now()
        export.save()
    if status == ExportStatus.FAILED:
        export.error = "The PDF could not be made (ValueError): a table was too wide"
        export.save(update_fields=["error"])
    return export


def _url(name: str, *args: Any) -> str:
    return reverse(name, args=args)


def message_texts(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def signature(username: str = "qa", reason: str = "signed for the test") -> dict[str, str]:
    """The signature dialog's fields for a first signing in a session (username too)."""
    return {"username": username, "password": PASSWORD, "meaning": "approved", "reason": reason}


REASON = {"reason": "recorded for the test"}


def _reason(prefix: str) -> dict[str, str]:
    return {f"{prefix}-reason": "recorded for the test"}


#
# Who may open and post what
#

ALL_OK = only({}, others=200, anonymous=302)
READERS = {"qa": 200, "qp": 200, "inspector": 200}  # VIEW_ALL_SITES: every product, read-only
SEES = only(READERS, others=404, anonymous=302)
QA_ONLY_403 = only({"qa": 200}, others=403, anonymous=302)
# A page that only QA may use, on a record that QPs and inspectors see; anyone else does not
# see the product at all (404).
QA_WRITES = only({"qa": 200, "qp": 403, "inspector": 403}, others=404, anonymous=302)
# Review work: QA and QPs.
REVIEWERS = only({"qa": 200, "qp": 200, "inspector": 403}, others=404, anonymous=302)
# Approving in the QA capacity: only QA (a QP is refused the QA slot by the service).
QA_SIGNS = only({"qa": 200, "qp": 403, "inspector": 403}, others=404, anonymous=302)


def _posted(table: dict[str, int]) -> dict[str, int]:
    """A successful POST redirects (302): the same table with 200 read as 302."""
    return {who: 302 if status == 200 else status for who, status in table.items()}


@dataclasses.dataclass(frozen=True)
class Endpoint:
    matrix: Matrix
    method: str
    build: Callable[[Persona], tuple[str, dict[str, Any]]]
    htmx: bool = False


def _site_add(p: Persona) -> tuple[str, dict[str, Any]]:
    product = _product(p)
    lab = make_site(p("qa"), "LAB1", kind=SiteKind.TESTING_LAB)
    return _url("masterfile:product-site-add", product.pk), {
        "site-site": lab.pk,
        "site-role": "testing",
        **_reason("site"),
    }


def _site_end(p: Persona) -> tuple[str, dict[str, Any]]:
    product = _product(p)
    link = services.product_site_add(
        actor=p("qa"),
        product=product,
        site=make_site(p("qa"), "LAB1", kind=SiteKind.TESTING_LAB),
        role=ProductSiteRole.TESTING,
        reason="tests",
    )
    return _url("masterfile:product-site-end", product.pk, link.pk), _reason(f"end-{link.pk}")


def _section_edit(p: Persona) -> tuple[str, dict[str, Any]]:
    version = _draft(p)
    section = _first_section(version)
    return _url("masterfile:section-edit", version.pk, section.pk), {
        "title": section.title,
        "body": "Written through the page.",
        "loaded_at": section.updated_at.isoformat(),
        **REASON,
    }


def _comment(p: Persona) -> ReviewComment:
    return services.comment_add(actor=p("qa"), version=_in_review(p), body="Check the wording.")


def _product_fields() -> dict[str, Any]:
    return {
        "name": "Allogeneic NK cells",
        "designation": "mm",
        "designation_reference": "DM-2026-0042",
        "designation_date": "2026-02-01",
        "dosage_form": "Dispersion for infusion",
        "shelf_life": "6",
        "shelf_life_unit": "hours",
        "supply_status": "investigational",
    }


ENDPOINTS: list[Endpoint] = [
    # Pages (GET)
    Endpoint(
        Matrix("page:masterfile-list", ALL_OK), "get", lambda p: (_url("masterfile:index"), {})
    ),
    Endpoint(
        Matrix("page:masterfile-product-create", QA_ONLY_403),
        "get",
        lambda p: (_url("masterfile:product-create"), {}),
    ),
    Endpoint(
        Matrix("page:masterfile-product-detail", SEES),
        "get",
        lambda p: (_url("masterfile:product-detail", _product(p).pk), {}),
    ),
    Endpoint(
        Matrix("page:masterfile-product-edit", QA_WRITES),
        "get",
        lambda p: (_url("masterfile:product-edit", _product(p).pk), {}),
    ),
    Endpoint(
        Matrix("page:masterfile-version-detail", SEES),
        "get",
        lambda p: (_url("masterfile:version-detail", _draft(p).pk), {}),
    ),
    Endpoint(
        Matrix("page:masterfile-version-diff", SEES),
        "get",
        lambda p: (_url("masterfile:version-diff", _draft(p).pk), {}),
    ),
    Endpoint(
        Matrix("page:masterfile-section-edit", QA_WRITES),
        "get",
        lambda p: (_url("masterfile:section-edit", (v := _draft(p)).pk, _first_section(v).pk), {}),
    ),
    Endpoint(
        Matrix("page:masterfile-export-status", SEES),
        "get",
        lambda p: (_url("masterfile:export-status", _export(p, ExportStatus.RUNNING).pk), {}),
        htmx=True,
    ),
    Endpoint(
        Matrix("page:masterfile-export-download", SEES),
        "get",
        lambda p: (_url("masterfile:export-download", _export(p).pk), {}),
    ),
    # Writes (POST)
    Endpoint(
        Matrix("page:masterfile-product-create-post", _posted(QA_ONLY_403)),
        "post",
        lambda p: (
            _url("masterfile:product-create"),
            {
                "code": "NK-02",
                **_product_fields(),
                "reference_site": make_site(p("qa"), "REF2").pk,
                **REASON,
            },
        ),
    ),
    Endpoint(
        Matrix("page:masterfile-product-edit-post", _posted(QA_WRITES)),
        "post",
        lambda p: (
            _url("masterfile:product-edit", (pr := _product(p)).pk),
            {**_product_fields(), "reference_site": pr.reference_site_id, **REASON},
        ),
    ),
    Endpoint(Matrix("page:masterfile-site-add-post", _posted(QA_WRITES)), "post", _site_add),
    Endpoint(Matrix("page:masterfile-site-end-post", _posted(QA_WRITES)), "post", _site_end),
    Endpoint(
        Matrix("page:masterfile-master-file-post", _posted(QA_WRITES)),
        "post",
        lambda p: (
            _url("masterfile:master-file-edit", _product(p).pk),
            {
                "masterfile-owner": p("qa").pk,
                "masterfile-review_interval_months": "24",
                **_reason("masterfile"),
            },
        ),
    ),
    Endpoint(
        Matrix("page:masterfile-draft-start-post", _posted(QA_WRITES)),
        "post",
        lambda p: (
            _url("masterfile:draft-start", _effective(p).master_file.product_id),
            _reason("draft"),
        ),
    ),
    Endpoint(
        Matrix("page:masterfile-section-edit-post", _posted(QA_WRITES)), "post", _section_edit
    ),
    Endpoint(
        Matrix("page:masterfile-section-preview-post", SEES),
        "post",
        lambda p: (_url("masterfile:section-preview", _draft(p).pk), {"body": "**bold**"}),
        htmx=True,
    ),
    Endpoint(
        Matrix("page:masterfile-section-add-post", _posted(QA_WRITES)),
        "post",
        lambda p: (
            _url("masterfile:section-add", _draft(p).pk),
            {
                "section-title": "Cold chain",
                "section-key": "cold-chain",
                "section-body": "Shipped at 2–8 °C.",
                **_reason("section"),
            },
        ),
    ),
    Endpoint(
        Matrix("page:masterfile-sections-reorder-post", _posted(QA_WRITES)),
        "post",
        lambda p: (
            _url("masterfile:sections-reorder", (v := _draft(p)).pk),
            {
                **{
                    f"reorder-pos_{s.key}": str(100 - n)
                    for n, s in enumerate(v.sections.order_by("position"))
                },
                **_reason("reorder"),
            },
        ),
    ),
    Endpoint(
        Matrix("page:masterfile-change-summary-post", _posted(QA_WRITES)),
        "post",
        lambda p: (
            _url("masterfile:change-summary", _draft(p).pk),
            {"summary-summary": "First edition.", **_reason("summary")},
        ),
    ),
    Endpoint(
        Matrix("page:masterfile-submit-post", _posted(QA_WRITES)),
        "post",
        lambda p: (_url("masterfile:version-action", _filled(p).pk, "submit"), _reason("submit")),
    ),
    Endpoint(
        Matrix("page:masterfile-return-post", _posted(REVIEWERS)),
        "post",
        lambda p: (
            _url("masterfile:version-action", _in_review(p).pk, "return"),
            _reason("return"),
        ),
    ),
    Endpoint(
        Matrix("page:masterfile-make-effective-post", _posted(QA_WRITES)),
        "post",
        lambda p: (
            _url("masterfile:version-action", _approved(p).pk, "make-effective"),
            _reason("make-effective"),
        ),
    ),
    Endpoint(
        Matrix("page:masterfile-approve-post", _posted(QA_SIGNS)),
        "post",
        lambda p: (
            _url("masterfile:version-approve", _in_review(p).pk),
            # The QP's code too: a QP's dialog asks for one, and is then refused the QA slot.
            {**signature(), "otp": unused_totp_code(p("qp")), "capacity": "qa"},
        ),
    ),
    Endpoint(
        Matrix("page:masterfile-comment-add-post", _posted(REVIEWERS)),
        "post",
        lambda p: (
            _url("masterfile:comment-add", _in_review(p).pk),
            {"comment-section": "", "comment-body": "Say which SOP applies."},
        ),
    ),
    Endpoint(
        Matrix("page:masterfile-comment-resolve-post", _posted(REVIEWERS)),
        "post",
        lambda p: (
            _url("masterfile:comment-resolve", (c := _comment(p)).pk),
            {f"resolve-{c.pk}-resolution": "Reworded."},
        ),
    ),
    Endpoint(
        Matrix("page:masterfile-export-create-post", _posted(REVIEWERS)),
        "post",
        lambda p: (_url("masterfile:export-create", _effective(p).pk), {}),
    ),
    Endpoint(
        Matrix("page:masterfile-export-retry-post", _posted(REVIEWERS)),
        "post",
        lambda p: (_url("masterfile:export-retry", _export(p, ExportStatus.FAILED).pk), {}),
    ),
]

ENDPOINT_CASES = [
    pytest.param(endpoint, who, status, id=f"{endpoint.matrix.name}-{who}-{status}")
    for endpoint in ENDPOINTS
    for who, status in endpoint.matrix.expected.items()
]


@pytest.mark.parametrize(("endpoint", "who", "expected"), ENDPOINT_CASES)
def test_who_may_open_and_post_each_master_file_page(persona, browser_as, endpoint, who, expected):
    url, data = endpoint.build(persona)
    client = browser_as(who)
    headers = {"HTTP_HX_REQUEST": "true"} if endpoint.htmx else {}
    if endpoint.method == "get":
        response = client.get(url, **headers)
    else:
        response = client.post(url, data, **headers)
    response.close()  # a file download streams from an open file
    assert response.status_code == expected, message_texts(response)


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("masterfile:product-site-add", lambda p: [_product(p).pk]),
        ("masterfile:master-file-edit", lambda p: [_product(p).pk]),
        ("masterfile:draft-start", lambda p: [_product(p).pk]),
        ("masterfile:version-approve", lambda p: [_draft(p).pk]),
        ("masterfile:section-add", lambda p: [_draft(p).pk]),
        ("masterfile:sections-reorder", lambda p: [_draft(p).pk]),
        ("masterfile:change-summary", lambda p: [_draft(p).pk]),
        ("masterfile:comment-add", lambda p: [_draft(p).pk]),
        ("masterfile:export-create", lambda p: [_draft(p).pk]),
        ("masterfile:section-preview", lambda p: [_draft(p).pk]),
        ("masterfile:version-action", lambda p: [_draft(p).pk, "submit"]),
    ],
)
def test_writes_refuse_get(client_for, persona, name, build):
    assert client_for("qa").get(reverse(name, args=build(persona))).status_code == 405


def test_writes_need_the_csrf_token(persona):
    from tests.personas import login

    version = _filled(persona)
    client = login(Client(enforce_csrf_checks=True), persona("qa"))
    response = client.post(
        _url("masterfile:version-action", version.pk, "submit"), _reason("submit")
    )
    assert response.status_code == 403
    version.refresh_from_db()
    assert version.status == VersionStatus.DRAFT


def test_an_unknown_lifecycle_step_is_404(client_for, persona):
    version = _draft(persona)
    url = _url("masterfile:version-action", version.pk, "teleport")
    assert client_for("qa").post(url, _reason("teleport")).status_code == 404


def test_a_site_lead_sees_only_the_products_made_at_their_sites(client_for, persona):
    qa, lead = persona("qa"), persona("site_lead")
    own, other = make_site(qa, "OWN1"), make_site(qa, "OTH1")
    site_services.membership_add(
        actor=qa, site=own, user=lead, role=SiteRole.SITE_LEAD, reason="lead"
    )
    mine, theirs = make_product(qa, own, "MINE-01"), make_product(qa, other, "THEIRS-01")
    client = client_for("site_lead")
    listing = client.get(_url("masterfile:index"))
    assert [row.product.code for row in listing.context["rows"]] == ["MINE-01"]
    assert "THEIRS-01" not in listing.content.decode()
    assert client.get(_url("masterfile:product-detail", mine.pk)).status_code == 200
    version = mine.master_file.versions.get()
    page = client.get(_url("masterfile:version-detail", version.pk)).content.decode()
    assert "section-edit" not in page and "Export PDF" not in page  # reads only
    hidden = theirs.master_file.versions.get()
    for url in (
        _url("masterfile:product-detail", theirs.pk),
        _url("masterfile:version-detail", hidden.pk),
        _url("masterfile:version-diff", hidden.pk),
    ):
        assert client.get(url).status_code == 404, url


#
# A QA's and a QP's walk through the forms
#


def test_qa_registers_a_product_and_takes_its_master_file_to_effect(client_for, persona):
    qa, qp = persona("qa"), persona("qp")
    reference = make_site(qa, "LON1")
    lab = make_site(qa, "LAB1", kind=SiteKind.TESTING_LAB)
    client = client_for("qa")

    response = client.post(
        _url("masterfile:product-create"),
        {
            "code": "cart-01",  # typed in lower case: the form upper-cases it
            **_product_fields(),
            "name": "Autologous CAR-T cells",
            "shelf_life": "3",
            "shelf_life_unit": "days",
            "reference_site": reference.pk,
            "reason": "Designated by the MHRA.",
        },
    )
    assert response.status_code == 302, message_texts(response)
    product = Product.objects.get(code="CART-01")
    assert response["Location"] == _url("masterfile:product-detail", product.pk)
    assert product.shelf_life_minutes == 3 * 24 * 60
    assert product.master_file.owner == qa
    version = product.master_file.versions.get()
    assert version.status == VersionStatus.DRAFT and version.sections.count() >= 10

    response = client.post(
        _url("masterfile:product-site-add", product.pk),
        {"site-site": lab.pk, "site-role": "testing", "site-reason": "Release testing."},
    )
    assert response.status_code == 302
    assert ProductSite.objects.filter(product=product, site=lab, ended_at__isnull=True).exists()

    # Every section written through the editor, each with the time it was loaded.
    for section in version.sections.order_by("position"):
        editor = client.get(_url("masterfile:section-edit", version.pk, section.pk))
        loaded_at = editor.context["form"]["loaded_at"].value()
        response = client.post(
            _url("masterfile:section-edit", version.pk, section.pk),
            {
                "title": section.title,
                "body": f"## How\n\nThe **{section.key}** arrangements.",
                "loaded_at": loaded_at,
                "reason": "First edition.",
            },
        )
        assert response.status_code == 302, message_texts(response)
        assert response["Location"].endswith(f"#section-{section.key}")
    assert not version.sections.filter(body="").exists()

    page = client.get(_url("masterfile:version-detail", version.pk))
    html = page.content.decode()
    assert "<h4>How</h4>" in html  # Markdown rendered, headings below the section title
    assert "Generated on submission" in html and "LAB1" in html  # annex preview

    response = client.post(
        _url("masterfile:version-action", version.pk, "submit"),
        {"submit-reason": "Ready for review."},
    )
    assert response.status_code == 302
    version.refresh_from_db()
    assert version.status == VersionStatus.IN_REVIEW
    assert {e.site_code for e in version.annex_entries.all()} == {"LON1", "LAB1"}

    # QA approves through the signature dialog (first signing of the session: username too).
    page = client.get(_url("masterfile:version-detail", version.pk))
    assert page.context["sign_capacity"] == "qa"
    assert "Approve as Control Site QA" in page.content.decode()
    response = client.post(
        _url("masterfile:version-approve", version.pk),
        {**signature(reason="Content checked."), "capacity": "qa"},
    )
    assert response.status_code == 302, message_texts(response)
    page = client.get(_url("masterfile:version-detail", version.pk))
    assert page.context["signature_form"] is None  # QA's part is done; the QP signs next

    # The QP: password and authenticator code.
    qp_client = client_for("qp")
    page = qp_client.get(_url("masterfile:version-detail", version.pk))
    assert page.context["sign_capacity"] == "qp"
    assert "otp" in page.context["signature_form"].fields
    response = qp_client.post(
        _url("masterfile:version-approve", version.pk),
        {**signature("qp", "Fit for release."), "otp": unused_totp_code(qp), "capacity": "qp"},
    )
    assert response.status_code == 302, message_texts(response)
    version.refresh_from_db()
    assert version.status == VersionStatus.APPROVED
    html = client.get(_url("masterfile:version-detail", version.pk)).content.decode()
    assert "Quinn Adams" in html and "Priya Patel" in html
    assert html.count('class="badge badge-ok">Valid') == 2
    assert " UTC" in html

    response = client.post(
        _url("masterfile:version-action", version.pk, "make-effective"),
        {"make-effective-reason": "In force."},
    )
    assert response.status_code == 302
    version.refresh_from_db()
    assert version.status == VersionStatus.EFFECTIVE
    assert version.effective_date == timezone.localdate()

    signed = ElectronicSignature.objects.filter(
        target_type="masterfile.masterfileversion", target_id=str(version.pk)
    )
    assert sorted(s.signer.username for s in signed) == ["qa", "qp"]
    assert {s.meaning for s in signed} == {"approved"}

    # The product list shows it in force, with its next review.
    listing = client.get(_url("masterfile:index"))
    (row,) = listing.context["rows"]
    assert row.effective == version and row.open is None
    assert f"v{version.number}" in listing.content.decode()

    # A new draft, a copy of the one in force.
    response = client.post(
        _url("masterfile:draft-start", product.pk), {"draft-reason": "Annual review."}
    )
    draft = product.master_file.versions.get(number=2)
    assert response["Location"] == _url("masterfile:version-detail", draft.pk)
    assert draft.based_on == version
    again = client.post(_url("masterfile:draft-start", product.pk), {"draft-reason": "again"})
    assert again.status_code == 409
    assert any("still draft" in m for m in message_texts(again))


def test_the_product_page_edits_details_sites_and_the_master_file(client_for, persona):
    qa = persona("qa")
    product = _product(persona)
    lab = make_site(qa, "LAB1", kind=SiteKind.TESTING_LAB)
    client = client_for("qa")

    unchanged = client.post(
        _url("masterfile:product-edit", product.pk),
        {
            **{k: str(v) for k, v in _edit_data(product).items()},
            **REASON,
        },
    )
    assert unchanged.status_code == 302
    assert not AuditEvent.objects.filter(event_type=MasterFileEvent.PRODUCT_UPDATED).exists()

    response = client.post(
        _url("masterfile:product-edit", product.pk),
        {
            **_edit_data(product),
            "dosage_form": "Cryopreserved suspension",
            "shelf_life": "45",
            "shelf_life_unit": "minutes",
            "reason": "New formulation.",
        },
    )
    assert response.status_code == 302
    product.refresh_from_db()
    assert product.dosage_form == "Cryopreserved suspension"
    assert product.shelf_life_minutes == 45
    event = AuditEvent.objects.get(event_type=MasterFileEvent.PRODUCT_UPDATED)
    assert event.extra_data["designation_review_needed"] is True
    assert set(event.extra_data["fields"]) == {"dosage_form", "shelf_life_minutes"}

    client.post(
        _url("masterfile:product-site-add", product.pk),
        {"site-site": lab.pk, "site-role": "testing", "site-reason": "tests"},
    )
    page = client.get(_url("masterfile:product-detail", product.pk))
    html = page.content.decode()
    assert "Reference site" in html and "the reference site stays" in html
    rows = {r.link.site.code: r for r in page.context["site_rows"]}
    assert rows["REF1"].is_reference and rows["REF1"].end_form is None
    link = rows["LAB1"].link
    reference_link = rows["REF1"].link
    refused = client.post(
        _url("masterfile:product-site-end", product.pk, reference_link.pk),
        {f"end-{reference_link.pk}-reason": "try"},
    )
    assert refused.status_code == 409
    assert "reference site cannot be removed" in message_texts(refused)[0]
    response = client.post(
        _url("masterfile:product-site-end", product.pk, link.pk),
        {f"end-{link.pk}-reason": "Contract ended."},
    )
    assert response.status_code == 302
    link.refresh_from_db()
    assert link.ended_at is not None

    response = client.post(
        _url("masterfile:master-file-edit", product.pk),
        {
            "masterfile-owner": persona("qp").pk,
            "masterfile-review_interval_months": "6",
            "masterfile-reason": "New owner.",
        },
    )
    assert response.status_code == 302
    master_file = product.master_file
    master_file.refresh_from_db()
    assert master_file.owner == persona("qp") and master_file.review_interval_months == 6


def _edit_data(product: Product) -> dict[str, Any]:
    from masterfile.forms import ProductEditForm

    initial = ProductEditForm.initial_for(product)
    initial["designation_date"] = initial["designation_date"].isoformat()
    return initial


def test_sections_are_added_reordered_and_the_change_summary_saved(client_for, persona):
    version = _draft(persona)
    client = client_for("qa")
    keys = list(version.sections.order_by("position").values_list("key", flat=True))
    response = client.post(
        _url("masterfile:section-add", version.pk),
        {
            "section-title": "Cold chain",
            "section-key": "cold-chain",
            "section-after_key": keys[0],
            "section-body": "Shipped at 2–8 °C in validated shippers.",
            "section-reason": "New section.",
        },
    )
    assert response.status_code == 302
    order = list(version.sections.order_by("position").values_list("key", flat=True))
    assert order[:2] == [keys[0], "cold-chain"]

    # Number the last section 1: it moves to the top, the rest keep their order.
    data = {f"reorder-pos_{k}": str(n) for n, k in enumerate(order, start=2)}
    data[f"reorder-pos_{order[-1]}"] = "1"
    response = client.post(
        _url("masterfile:sections-reorder", version.pk), {**data, "reorder-reason": "Reorder."}
    )
    assert response.status_code == 302
    assert list(version.sections.order_by("position").values_list("key", flat=True)) == [
        order[-1],
        *order[:-1],
    ]

    response = client.post(
        _url("masterfile:change-summary", version.pk),
        {"summary-summary": "First edition, **with** a cold-chain section.", "summary-reason": "r"},
    )
    assert response.status_code == 302
    version.refresh_from_db()
    assert version.change_summary.startswith("First edition")
    html = client.get(_url("masterfile:version-detail", version.pk)).content.decode()
    assert "<strong>with</strong>" in html

    duplicate = client.post(
        _url("masterfile:section-add", version.pk),
        {
            "section-title": "Again",
            "section-key": "cold-chain",
            "section-body": "x",
            "section-reason": "r",
        },
    )
    assert duplicate.status_code == 409
    assert duplicate.context["open_form"] == "section"


def test_review_comments_are_added_resolved_and_hold_back_the_qa_approval(client_for, persona):
    version = _in_review(persona)
    section = _first_section(version)
    client = client_for("qp")
    response = client.post(
        _url("masterfile:comment-add", version.pk),
        {"comment-section": str(section.pk), "comment-body": "Name the SOP."},
    )
    assert response["Location"].endswith(f"#section-{section.key}")
    client.post(
        _url("masterfile:comment-add", version.pk),
        {"comment-section": "", "comment-body": "Overall fine."},
    )
    page = client_for("qa").get(_url("masterfile:version-detail", version.pk))
    assert page.context["open_comments"] == 2
    assert page.context["approval_blocked_by_comments"] is True
    html = page.content.decode()
    assert "Name the SOP." in html and "Overall fine." in html
    section_row = next(r for r in page.context["section_rows"] if r.section == section)
    assert [c.comment.body for c in section_row.comments] == ["Name the SOP."]

    refused = client_for("qa").post(
        _url("masterfile:version-approve", version.pk), {**signature(), "capacity": "qa"}
    )
    assert refused.status_code == 409
    assert "Resolve the open review comments" in message_texts(refused)[0]
    assert not ElectronicSignature.objects.filter(target_type="masterfile.masterfileversion")

    for comment in ReviewComment.objects.filter(version=version):
        response = client_for("qa").post(
            _url("masterfile:comment-resolve", comment.pk),
            {f"resolve-{comment.pk}-resolution": "Done in v1."},
        )
        assert response.status_code == 302
    assert not ReviewComment.objects.filter(version=version, resolved_at__isnull=True).exists()
    again = client_for("qa").post(
        _url("masterfile:version-approve", version.pk), {**signature(), "capacity": "qa"}
    )
    assert again.status_code == 302


def test_a_version_in_review_is_returned_to_draft_and_its_approval_withdrawn(client_for, persona):
    version = _in_review(persona)
    services.version_approve(
        actor=persona("qa"),
        version=version,
        capacity=ApprovalCapacity.QA,
        credentials=signing(persona("qa")),
        reason="ok",
    )
    response = client_for("qp").post(
        _url("masterfile:version-action", version.pk, "return"),
        {"return-reason": "Section 3 needs the new SOP."},
    )
    assert response.status_code == 302
    version.refresh_from_db()
    assert version.status == VersionStatus.DRAFT
    page = client_for("qa").get(_url("masterfile:version-detail", version.pk))
    assert len(page.context["withdrawn"]) == 1
    assert all(slot.approval is None for slot in page.context["slots"])
    assert "Withdrawn approvals (1)" in page.content.decode()


#
# Frozen content: no edit controls, and edits refused with the message
#

EDIT_CONTROLS = (
    "section-edit",
    "Add a section",
    "Reorder sections",
    "Edit the change summary",
)


def _edit_controls(html: str) -> list[str]:
    return [c for c in EDIT_CONTROLS if c in html] + re.findall(r"/sections/\d+/edit/", html)


def test_only_a_draft_shows_qa_the_edit_controls(client_for, persona):
    version = _draft(persona)
    html = client_for("qa").get(_url("masterfile:version-detail", version.pk)).content.decode()
    assert len(_edit_controls(html)) >= len(EDIT_CONTROLS)
    for who in ("qp", "inspector"):
        html = client_for(who).get(_url("masterfile:version-detail", version.pk)).content.decode()
        assert _edit_controls(html) == [], who


@pytest.mark.parametrize("state", ["in_review", "approved", "effective"])
def test_a_version_past_draft_has_no_edit_controls_and_refuses_edits(client_for, persona, state):
    version = {"in_review": _in_review, "approved": _approved, "effective": _effective}[state](
        persona
    )
    section = _first_section(version)
    before = (section.title, section.body, section.updated_at)
    events = AuditEvent.objects.count()
    client = client_for("qa")

    page = client.get(_url("masterfile:version-detail", version.pk))
    assert page.context["can_edit"] is False
    assert _edit_controls(page.content.decode()) == []
    assert "content is frozen" in page.content.decode().lower()

    editor = client.get(_url("masterfile:section-edit", version.pk, section.pk))
    assert editor.status_code == 409
    assert "frozen" in editor.content.decode()
    assert 'name="body"' not in editor.content.decode()

    response = client.post(
        _url("masterfile:section-edit", version.pk, section.pk),
        {"title": "Changed", "body": "Changed after approval.", **REASON},
    )
    assert response.status_code == 409
    (message,) = message_texts(response)
    assert "frozen" in message and "Start a new draft" in message
    refused = [
        client.post(
            _url("masterfile:section-add", version.pk),
            {
                "section-title": "X",
                "section-key": "x",
                "section-body": "x",
                "section-reason": "r",
            },
        ),
        client.post(
            _url("masterfile:change-summary", version.pk),
            {"summary-summary": "Changed", "summary-reason": "r"},
        ),
        client.post(
            _url("masterfile:sections-reorder", version.pk),
            {
                **{f"reorder-pos_{s.key}": "1" for s in version.sections.all()},
                "reorder-reason": "r",
            },
        ),
    ]
    assert [r.status_code for r in refused] == [409, 409, 409]
    section.refresh_from_db()
    assert (section.title, section.body, section.updated_at) == before
    assert not version.sections.filter(key="x").exists()
    version.refresh_from_db()
    assert version.change_summary != "Changed"
    assert AuditEvent.objects.count() == events


def test_an_edit_over_a_newer_change_is_refused_as_stale(client_for, persona):
    version = _draft(persona)
    section = _first_section(version)
    client = client_for("qa")
    editor = client.get(_url("masterfile:section-edit", version.pk, section.pk))
    loaded_at = editor.context["form"]["loaded_at"].value()
    # Meanwhile, someone else saves the section.
    services.section_update(
        actor=persona("qa"), section=section, body="Their newer text.", reason="theirs"
    )
    response = client.post(
        _url("masterfile:section-edit", version.pk, section.pk),
        {"title": section.title, "body": "My older text.", "loaded_at": loaded_at, **REASON},
    )
    assert response.status_code == 409
    (message,) = message_texts(response)
    assert "changed by someone else since you opened it" in message
    section.refresh_from_db()
    assert section.body == "Their newer text."
    # The form keeps what was typed, and the time it was loaded, until the page is reloaded.
    assert response.context["form"]["body"].value() == "My older text."
    assert response.context["form"]["loaded_at"].value() == loaded_at


def test_the_preview_renders_markdown_and_writes_nothing(client_for, persona):
    version = _draft(persona)
    section = _first_section(version)
    client = client_for("qa")
    partial = client.post(
        _url("masterfile:section-preview", version.pk),
        {"body": f"**Bold** and {SCRIPT}"},
        HTTP_HX_REQUEST="true",
    )
    html = partial.content.decode()
    assert "<html" not in html and "<strong>Bold</strong>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    # Without JavaScript the Preview button posts the editor itself, which only renders.
    response = client.post(
        _url("masterfile:section-edit", version.pk, section.pk),
        {"title": section.title, "body": "# Heading", "preview": "1", **REASON},
    )
    assert response.status_code == 200
    assert "<h3>Heading</h3>" in response.content.decode()
    section.refresh_from_db()
    assert section.body == ""
    assert not AuditEvent.objects.filter(event_type=MasterFileEvent.SECTION_CHANGED).exists()


def test_a_script_in_a_section_is_inert_on_the_page(client_for, persona):
    version = _draft(persona)
    section = _first_section(version)
    body = f'{SCRIPT}\n\n<img src=x onerror="alert(2)">\n\n[click](javascript:alert(3))'
    services.section_update(actor=persona("qa"), section=section, body=body, reason="test")
    for url in (
        _url("masterfile:version-detail", version.pk),
        _url("masterfile:section-edit", version.pk, section.pk),
    ):
        html = client_for("qa").get(url).content.decode()
        assert '<script>alert("mf")' not in html
        assert "&lt;script&gt;alert(" in html  # shown as text, escaped
        assert "<img" not in html
        assert 'href="javascript:' not in html


#
# Bad input
#


def test_a_duplicate_product_code_is_refused_and_nothing_is_written(client_for, persona):
    product = _product(persona)
    events = AuditEvent.objects.count()
    response = client_for("qa").post(
        _url("masterfile:product-create"),
        {
            "code": product.code,
            **_product_fields(),
            "reference_site": product.reference_site_id,
            **REASON,
        },
    )
    assert response.status_code == 400  # refused by the service, which names the clash
    assert "already exists" in message_texts(response)[0]
    assert Product.objects.count() == 1
    assert AuditEvent.objects.count() == events


def test_bad_product_fields_are_explained(client_for, persona):
    qa = persona("qa")
    reference = make_site(qa, "REF1")
    lab = make_site(qa, "LAB1", kind=SiteKind.TESTING_LAB)
    client = client_for("qa")
    base = {"code": "NK-02", **_product_fields(), "reference_site": reference.pk, **REASON}
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"code": "n k"}, "code", "upper-case"),
        ({"shelf_life": "91", "shelf_life_unit": "days"}, "shelf_life", "at most 90 days"),
        ({"reason": "  "}, "reason", "Give a reason"),
        ({"reference_site": lab.pk}, "reference_site", "valid choice"),  # a lab is not offered
    ]
    for change, field, text in cases:
        response = client.post(_url("masterfile:product-create"), {**base, **change})
        assert response.status_code == 400, change
        assert text in str(response.context["form"].errors[field]), change
    assert not Product.objects.exists()


def test_an_empty_or_enormous_section_is_refused_with_the_limit(client_for, persona, settings):
    version = _draft(persona)
    section = _first_section(version)
    client = client_for("qa")
    url = _url("masterfile:section-edit", version.pk, section.pk)
    empty = client.post(url, {"title": section.title, "body": "   ", **REASON})
    assert empty.status_code == 400
    assert "cannot be empty" in message_texts(empty)[0]
    huge = client.post(url, {"title": section.title, "body": "x" * 100_001, **REASON})
    assert huge.status_code == 400
    assert "at most 100,000 characters; this one has 100,001" in message_texts(huge)[0]
    section.refresh_from_db()
    assert section.body == ""


def test_submitting_with_empty_sections_names_them(client_for, persona):
    version = _draft(persona)
    client = client_for("qa")
    page = client.get(_url("masterfile:version-detail", version.pk))
    assert "Submission will be refused" in page.content.decode()
    response = client.post(
        _url("masterfile:version-action", version.pk, "submit"), {"submit-reason": "go"}
    )
    assert response.status_code == 409
    (message,) = message_texts(response)
    assert _first_section(version).title in message
    version.refresh_from_db()
    assert version.status == VersionStatus.DRAFT


def test_a_step_without_a_reason_is_refused(client_for, persona):
    version = _filled(persona)
    response = client_for("qa").post(
        _url("masterfile:version-action", version.pk, "submit"), {"submit-reason": ""}
    )
    assert response.status_code == 400
    assert response.context["open_form"] == "submit"
    version.refresh_from_db()
    assert version.status == VersionStatus.DRAFT


def test_a_wrong_password_refuses_the_approval_and_reopens_the_dialog(client_for, persona):
    version = _in_review(persona)
    response = client_for("qa").post(
        _url("masterfile:version-approve", version.pk),
        {**signature(), "password": "not-it", "capacity": "qa"},
    )
    assert response.status_code == 422
    assert "password" in str(response.context["signature_form"].non_field_errors()).lower()
    assert 'signature-dialog" data-signature-dialog open' in response.content.decode()
    assert not version.approvals.exists()


def test_a_qp_without_the_code_is_asked_for_it(client_for, persona):
    version = _in_review(persona)
    services.version_approve(
        actor=persona("qa"),
        version=version,
        capacity=ApprovalCapacity.QA,
        credentials=signing(persona("qa")),
        reason="ok",
    )
    response = client_for("qp").post(
        _url("masterfile:version-approve", version.pk), {**signature("qp"), "capacity": "qp"}
    )
    assert response.status_code == 400
    assert response.context["signature_form"].errors["otp"]
    assert version.approvals.count() == 1


def test_approving_out_of_order_is_refused(client_for, persona):
    version = _in_review(persona)
    persona("qp")
    response = client_for("qp").post(
        _url("masterfile:version-approve", version.pk),
        {**signature("qp"), "otp": unused_totp_code(persona("qp")), "capacity": "qp"},
    )
    assert response.status_code == 409
    assert "comes first" in message_texts(response)[0]
    assert not version.approvals.exists()


#
# Exports
#


def test_an_export_is_queued_from_the_page_and_its_row_polls_until_done(
    client_for, persona, _no_export_worker, django_capture_on_commit_callbacks
):
    version = _effective(persona)
    client = client_for("qp")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_url("masterfile:export-create", version.pk))
    assert response.status_code == 302
    assert response["Location"].endswith("#exports")
    export = MasterFileExport.objects.get(version=version)
    assert _no_export_worker == [export.pk]
    page = client.get(_url("masterfile:version-detail", version.pk))
    html = page.content.decode()
    assert 'hx-trigger="every 1s"' in html and 'role="progressbar"' in html
    assert "Export PDF</button>" not in html  # one export at a time
    again = client.post(_url("masterfile:export-create", version.pk))
    assert again.status_code == 409
    assert "already queued" in message_texts(again)[0]

    status_url = _url("masterfile:export-status", export.pk)
    running = client.get(status_url, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in running and 'hx-trigger="every 1s"' in running
    assert 'hx-swap-oob="true"' not in running
    # Without htmx the status URL leads back to the version's page.
    assert client.get(status_url)["Location"].endswith(f"#export-{export.pk}")

    # Finished (as the export service leaves it): no more polling, the file's fingerprint, the
    # download, and the "Export PDF" button offered again.
    export.status, export.progress, export.sha256 = ExportStatus.DONE, 100, "ab" * 32
    export.file.save(export.filename, ContentFile(PDF), save=False)
    export.page_count, export.size_bytes = 12, 61_440
    export.save()
    done = client.get(status_url, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in done.split('id="export-request"')[0]
    assert "ab" * 32 in done and "Download PDF" in done and "60.0" in done and ">12<" in done
    assert 'id="export-request" hx-swap-oob="true"' in done and "Export PDF" in done


def test_a_failed_export_shows_its_error_and_can_be_retried(
    client_for, persona, _no_export_worker, django_capture_on_commit_callbacks
):
    export = _export(persona, ExportStatus.FAILED)
    client = client_for("qa")
    html = client.get(_url("masterfile:version-detail", export.version_id)).content.decode()
    assert "a table was too wide" in html and "Retry" in html
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_url("masterfile:export-retry", export.pk))
    assert response.status_code == 302
    export.refresh_from_db()
    assert export.status == ExportStatus.QUEUED and export.error == ""
    assert _no_export_worker == [export.pk]
    inspector = client_for("inspector").get(_url("masterfile:version-detail", export.version_id))
    assert "Export PDF" not in inspector.content.decode()


def test_a_draft_export_is_marked_as_watermarked(client_for, persona):
    version = _draft(persona)
    client = client_for("qa")
    html = client.get(_url("masterfile:version-detail", version.pk)).content.decode()
    assert "DRAFT — not for submission" in html
    client.post(_url("masterfile:export-create", version.pk))
    export = MasterFileExport.objects.get(version=version)
    assert export.watermarked
    html = client.get(_url("masterfile:version-detail", version.pk)).content.decode()
    assert "DRAFT watermark" in html


def test_the_download_streams_the_pdf_and_is_audited(client_for, persona):
    export = _export(persona)
    client = client_for("inspector")
    response = client.get(_url("masterfile:export-download", export.pk))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert f'filename="{export.filename}"' in response["Content-Disposition"]
    assert response["Content-Disposition"].startswith("attachment")
    content = b"".join(response.streaming_content)
    assert content.startswith(b"%PDF")
    event = AuditEvent.objects.get(event_type=MasterFileEvent.EXPORT_DOWNLOADED)
    assert event.actor == persona("inspector")
    assert event.extra_data["sha256"] == export.sha256
    # Someone who may not see the version gets a 404 and no event.
    hidden = client_for("operator").get(_url("masterfile:export-download", export.pk))
    assert hidden.status_code == 404
    assert AuditEvent.objects.filter(event_type=MasterFileEvent.EXPORT_DOWNLOADED).count() == 1


def test_a_download_of_an_unfinished_or_altered_file_is_refused(client_for, persona):
    export = _export(persona, ExportStatus.RUNNING)
    client = client_for("qa")
    response = client.get(_url("masterfile:export-download", export.pk))
    assert response.status_code == 409
    assert "once it is done" in message_texts(response)[0]
    done = _altered_export(persona, export.version)
    response = client.get(_url("masterfile:export-download", done.pk))
    assert response.status_code == 409
    assert "no longer matches" in message_texts(response)[0]
    assert not AuditEvent.objects.filter(event_type=MasterFileEvent.EXPORT_DOWNLOADED).exists()


def _altered_export(p: Persona, version: MasterFileVersion) -> MasterFileExport:
    export = MasterFileExport.objects.create(
        version=version, requested_by=p("qa"), status=ExportStatus.DONE, created_by=p("qa")
    )
    export.file.save(export.filename, ContentFile(PDF + b"tampered"), save=False)
    export.sha256 = hashlib.sha256(PDF).hexdigest()
    export.save()
    return export


#
# The diff page
#


def _two_versions(p: Persona) -> tuple[MasterFileVersion, MasterFileVersion]:
    v1 = _effective(p)
    v2 = services.draft_start(actor=p("qa"), master_file=v1.master_file, reason="revision")
    first, second = v2.sections.order_by("position")[:2]
    services.section_update(
        actor=p("qa"),
        section=first,
        body=f"{first.body}\nA new closing line.",
        reason="add a line",
    )
    services.section_update(actor=p("qa"), section=second, title="Renamed title", reason="r")
    services.change_summary_set(
        actor=p("qa"), version=v2, summary="Closing line added.", reason="r"
    )
    return v1, v2


def test_the_diff_page_shows_changed_lines_and_the_change_summary(client_for, persona):
    v1, v2 = _two_versions(persona)
    first = _first_section(v2)
    client = client_for("inspector")
    page = client.get(_url("masterfile:version-diff", v2.pk))
    assert page.context["against"] == v1
    html = page.content.decode()
    assert "<ins>A new closing line.</ins>" in html
    assert 'class="diff-line diff-added"' in html
    assert f'id="diff-{first.key}"' in html
    assert "(was “" in html  # the renamed section names its old title
    assert "Closing line added." in html
    assert "unchanged sections" in html
    changes = {r.key: r.change.label for r in page.context["changed_rows"]}
    assert changes[first.key] == "Changed"
    assert len(page.context["unchanged_rows"]) == v2.sections.count() - 2
    assert "generated on submission" in html  # the draft's annex is not frozen yet

    explicit = client.get(_url("masterfile:version-diff", v2.pk), {"against": v1.pk})
    assert explicit.context["against"] == v1
    assert client.get(_url("masterfile:version-diff", v2.pk), {"against": v2.pk}).status_code == 404
    first_version = client.get(_url("masterfile:version-diff", v1.pk))
    assert "Nothing to compare" in first_version.content.decode()


def test_the_diff_page_shows_sites_added_to_the_annex(client_for, persona):
    qa, qp = persona("qa"), persona("qp")
    v1 = _effective(persona)
    product = v1.master_file.product
    lab = make_site(qa, "LAB1", kind=SiteKind.TESTING_LAB)
    services.product_site_add(
        actor=qa, product=product, site=lab, role=ProductSiteRole.TESTING, reason="tests"
    )
    v2 = make_effective_version(qa, qp, product)
    html = client_for("qa").get(_url("masterfile:version-diff", v2.pk)).content.decode()
    assert "LAB1 (testing)" in html
    assert 'class="diff-line diff-added"' in html


#
# The home panel
#


def test_the_home_panel_counts_versions_and_what_is_due(persona, client_for):
    qa, qp = persona("qa"), persona("qp")
    due = make_effective_version(qa, qp, make_product(qa, make_site(qa, "R1"), "A-01"))
    due.refresh_from_db()
    with_review = make_product(qa, make_site(qa, "R2"), "B-01").master_file.versions.get()
    fill_sections(qa, with_review)
    services.version_submit(actor=qa, version=with_review, reason="r")
    from controlsite.audit.context import audit_context

    with audit_context(reason="test: a review date that has come round"):
        due.next_review_date = timezone.localdate() + dt.timedelta(days=5)
        due.save(update_fields=["next_review_date"])

    request = RequestFactory().get("/")
    request.user = qa
    ctx = master_files_panel(request)
    assert ctx is not None
    assert ctx["products"] == 2 and ctx["total"] == 2
    assert ctx["in_review"] == 1 and ctx["due"] == 1
    assert {s["value"]: s["count"] for s in ctx["statuses"]}["effective"] == 1
    assert {v.pk for v in ctx["waiting"]} == {due.pk, with_review.pk}

    request.user = persona("outsider")
    assert master_files_panel(request) is None
    html = client_for("qa").get(reverse("home")).content.decode()
    assert "1 due for review" in html and "in review" in html
    assert 'id="panel-masterfile"' in html
    outsider = client_for("outsider").get(reverse("home")).content.decode()
    assert 'id="panel-masterfile"' not in outsider


#
# Fixed query counts (design §8)
#


def _fresh_codes(user: User) -> None:
    """Let the authenticator's codes of this minute be used again (as if the last signing were
    long ago), for tests that sign more often than a code step allows."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    for device in TOTPDevice.objects.filter(user=user):
        device.last_t = -1
        device.save(update_fields=["last_t"])


def _queries(client: Client, url: str) -> int:
    client.get(url)  # warm caches (content types, session)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_the_product_list_runs_a_fixed_number_of_queries(
    client_for, persona, django_assert_max_num_queries
):
    qa, qp = persona("qa"), persona("qp")
    site = make_site(qa, "REF1")

    def add(n: int, start: int) -> None:
        for i in range(start, start + n):
            product = make_product(qa, site, f"P-{i:02d}")
            if i % 2:
                make_effective_version(qa, qp, product)
                services.draft_start(actor=qa, master_file=product.master_file, reason="r")

    add(2, 0)
    client = client_for("qa")
    url = _url("masterfile:index")
    small = _queries(client, url)
    add(2, 2)
    assert len(client.get(url).context["rows"]) == 4
    assert _queries(client, url) == small
    with django_assert_max_num_queries(12):
        client.get(url)


def test_the_version_page_runs_a_fixed_number_of_queries(
    client_for, persona, django_assert_max_num_queries
):
    qa, qp = persona("qa"), persona("qp")

    def build(code: str, extra: int) -> tuple[str, str]:
        product = make_product(qa, make_site(qa, f"S{code}"), f"V-{code}")
        for i in range(extra):
            lab = make_site(qa, f"L{code}{i}", kind=SiteKind.TESTING_LAB)
            services.product_site_add(
                actor=qa, product=product, site=lab, role=ProductSiteRole.TESTING, reason="r"
            )
        version = product.master_file.versions.get()
        for i in range(extra):
            services.section_add(
                actor=qa,
                version=version,
                reason="r",
                key=f"extra-{i}",
                title=f"Extra {i}",
                body="x",
            )
        fill_sections(qa, version)
        for section in version.sections.all()[:extra]:
            services.comment_add(actor=qp, version=version, body="c", section=section)
        draft_url = _url("masterfile:version-detail", version.pk)
        for comment in version.comments.all():
            services.comment_resolve(actor=qa, comment=comment, resolution="done")
        services.version_submit(actor=qa, version=version, reason="r")
        approve(qa, qp, version)
        for _ in range(extra):
            MasterFileExport.objects.create(
                version=version, requested_by=qa, status=ExportStatus.FAILED, created_by=qa
            )
        return draft_url, _url("masterfile:version-diff", version.pk)

    client = client_for("qa")
    small, _ = build("A", 2)
    large, _ = build("B", 4)
    assert _queries(client, small) == _queries(client, large)
    with django_assert_max_num_queries(22):
        client.get(large)

    # A draft, with its annex preview and editing forms.
    draft_small = _product_draft(qa, "C", 2)
    draft_large = _product_draft(qa, "D", 4)
    assert _queries(client, draft_small) == _queries(client, draft_large)


def _product_draft(qa: User, code: str, extra: int) -> str:
    product = make_product(qa, make_site(qa, f"S{code}"), f"V-{code}")
    version = product.master_file.versions.get()
    for i in range(extra):
        services.section_add(
            actor=qa, version=version, reason="r", key=f"extra-{i}", title=f"Extra {i}", body="x"
        )
        lab = make_site(qa, f"L{code}{i}", kind=SiteKind.TESTING_LAB)
        services.product_site_add(
            actor=qa, product=product, site=lab, role=ProductSiteRole.TESTING, reason="r"
        )
    return _url("masterfile:version-detail", version.pk)


def test_the_product_page_runs_a_fixed_number_of_queries(client_for, persona):
    qa, qp = persona("qa"), persona("qp")

    def build(code: str, versions: int) -> str:
        product = make_product(qa, make_site(qa, f"S{code}"), f"W-{code}")
        for _ in range(versions):
            _fresh_codes(qp)
            make_effective_version(qa, qp, product)
        for i in range(versions):
            lab = make_site(qa, f"L{code}{i}", kind=SiteKind.TESTING_LAB)
            services.product_site_add(
                actor=qa, product=product, site=lab, role=ProductSiteRole.TESTING, reason="r"
            )
        return _url("masterfile:product-detail", product.pk)

    client = client_for("qa")
    assert _queries(client, build("A", 1)) == _queries(client, build("B", 2))
