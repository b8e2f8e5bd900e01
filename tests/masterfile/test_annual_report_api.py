"""The annual-report API and pages (issue 8 §7-8; MF-07, RP-01; design §6).

Who may do what is a permission matrix per route; the rest checks what integrators and QA rely
on: 202 for a new report and 200 with the one in flight, `Idempotency-Key` replay, 400 for a
year in the future or before the designation and for a product you cannot see, strict input,
the download's SHA-256 headers and audit event, the submission record — and, for every refusal,
that nothing is written. The PDF itself is made in test_annual_report.py; here the rendering
step is replaced by a stub, so every row still moves through `masterfile.annual`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from controlsite.accounts.models import User
from controlsite.audit.models import AuditEvent
from masterfile import annual
from masterfile.choices import ExportStatus
from masterfile.events import MasterFileEvent
from masterfile.models import AnnualReport, Product
from sites.choices import SiteRole
from sites.models import Site
from sites.services import membership_add
from tests.masterfile.helpers import make_product
from tests.matrix import ANON, Matrix, only
from tests.sites.helpers import make_site

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"
FAKE_PDF = b"%PDF-1.7\n% a stand-in for the rendered annual report\n%%EOF\n"
YEAR = timezone.localdate().year


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["code"] == code, body
    return body


#
# The world every test starts from
#


@pytest.fixture
def qa(persona: Callable[[str], User]) -> User:
    return persona("qa")


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
    """CART-01, made at A1, designated 1 March 2026."""
    return make_product(qa, site_a)


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def run(report: AnnualReport, monkeypatch: Any, *, fail: bool = False) -> AnnualReport:
    """Run the real task body with the rendering step stubbed: a tiny file, or a failure."""

    def render(_report: AnnualReport) -> Any:
        if fail:
            raise ValueError("the layout engine ran out of paper")
        return annual.made(FAKE_PDF, 1, as_at=timezone.now(), whole_year=False)

    monkeypatch.setattr(annual, "_render", render)
    annual.annual_report_run(report.pk)
    report.refresh_from_db()
    return report


def queued(qa: User, product: Product, year: int = YEAR) -> AnnualReport:
    report, _ = annual.annual_report_request(actor=qa, product=product, year=year)
    return report


@pytest.fixture
def done_report(qa: User, product: Product, media: Path, monkeypatch: Any) -> AnnualReport:
    report = run(queued(qa, product), monkeypatch)
    assert report.status == ExportStatus.DONE, report.error
    return report


@pytest.fixture
def failed_report(qa: User, product: Product, media: Path, monkeypatch: Any) -> AnnualReport:
    report = run(queued(qa, product), monkeypatch, fail=True)
    assert report.status == ExportStatus.FAILED
    return report


#
# Permission matrices
#

# USE_API holders list (only QA, QPs and inspectors see any report); sysadmin and outsider have
# no API.
EVERY_API_USER = only({"sysadmin": 403, "outsider": 403}, others=200, anonymous=401)
# One report: those who see every site; for anyone else it does not exist.
REPORT_READERS = only(
    {"qa": 200, "qp": 200, "inspector": 200, "sysadmin": 403, "outsider": 403},
    others=404,
    anonymous=401,
)
# A write on a report: Control Site QA; QPs and inspectors see it but may not (403).
QA_ON_REPORT = {**REPORT_READERS, "qp": 403, "inspector": 403}
# Asking for a report names the product in the body: one you cannot see is a 400.
QA_REQUEST = only({"qa": 202, "trainer": 400, "integrator": 400}, others=403, anonymous=401)

ANNUAL_LIST = Matrix("api:annual-report-list", EVERY_API_USER)
ANNUAL_DETAIL = Matrix("api:annual-report-detail", REPORT_READERS)
ANNUAL_CREATE = Matrix("api:annual-report-create", QA_REQUEST)
ANNUAL_DOWNLOAD = Matrix("api:annual-report-download", REPORT_READERS)
ANNUAL_RETRY = Matrix("api:annual-report-retry", {**QA_ON_REPORT, "qa": 202})
ANNUAL_SUBMISSION = Matrix("api:annual-report-submission", {**QA_ON_REPORT, "qa": 200})
# The product page's card and the page routes.
ANNUAL_CARD = Matrix(
    "page:masterfile-annual-report-card",
    {
        "qa": True,
        "qp": True,
        "inspector": True,
        "site_lead": False,
        "operator": False,
        "trainer": False,
        "integrator": False,
        "sysadmin": False,
        "outsider": False,
        ANON: False,
    },
)


@pytest.mark.parametrize(("who", "expected"), ANNUAL_LIST.cases())
def test_annual_report_list(
    as_persona, qa, product, who, expected, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        queued(qa, product)
    response = as_persona(who).get(reverse("api:annual-report-list"))
    assert response.status_code == expected
    if expected == 200:
        sees = who in {"qa", "qp", "inspector"}
        assert len(response.json()["results"]) == (1 if sees else 0)


@pytest.mark.parametrize(("who", "expected"), ANNUAL_DETAIL.cases())
def test_annual_report_detail(
    as_persona, qa, product, who, expected, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        report = queued(qa, product)
    response = as_persona(who).get(reverse("api:annual-report-detail", args=[report.pk]))
    assert response.status_code == expected
    if expected == 200:
        body = response.json()
        assert body["year"] == YEAR and body["status"] == "queued"
        assert body["due_on"] == f"{YEAR + 1}-03-31"
        assert body["download_url"] is None


@pytest.mark.parametrize(("who", "expected"), ANNUAL_CREATE.cases())
def test_annual_report_create(
    as_persona, product, who, expected, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        response = as_persona(who).post(
            reverse("api:annual-report-list"),
            {"product": product.pk, "year": YEAR},
            format="json",
        )
    assert response.status_code == expected, response.content
    assert AnnualReport.objects.exists() == (expected == 202)


@pytest.mark.parametrize(("who", "expected"), ANNUAL_DOWNLOAD.cases())
def test_annual_report_download(as_persona, done_report, who, expected):
    response = as_persona(who).get(reverse("api:annual-report-download", args=[done_report.pk]))
    assert response.status_code == expected
    downloads = AuditEvent.objects.filter(event_type=MasterFileEvent.ANNUAL_REPORT_DOWNLOADED)
    assert downloads.count() == (1 if expected == 200 else 0)
    if expected == 200:
        assert b"".join(response.streaming_content) == FAKE_PDF
        digest = hashlib.sha256(FAKE_PDF).hexdigest()
        assert response["X-Content-SHA256"] == digest == done_report.sha256
        assert response["Repr-Digest"] == (
            f"sha-256=:{base64.b64encode(bytes.fromhex(digest)).decode()}:"
        )
        assert response["Content-Type"] == "application/pdf"


@pytest.mark.parametrize(("who", "expected"), ANNUAL_RETRY.cases())
def test_annual_report_retry(
    as_persona, failed_report, who, expected, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        response = as_persona(who).post(
            reverse("api:annual-report-retry", args=[failed_report.pk]), {}, format="json"
        )
    assert response.status_code == expected, response.content
    failed_report.refresh_from_db()
    assert (failed_report.status == ExportStatus.QUEUED) == (expected == 202)


@pytest.mark.parametrize(("who", "expected"), ANNUAL_SUBMISSION.cases())
def test_annual_report_submission(as_persona, done_report, who, expected):
    response = as_persona(who).post(
        reverse("api:annual-report-submission", args=[done_report.pk]),
        {
            "submitted_on": timezone.localdate().isoformat(),
            "reference": "MHRA-DMMF-2026-0042",
            "reason": "Submitted through the MHRA portal.",
        },
        format="json",
    )
    assert response.status_code == expected, response.content
    done_report.refresh_from_db()
    assert (done_report.submitted_on is not None) == (expected == 200)
    if expected == 200:
        body = response.json()
        assert body["submission_reference"] == "MHRA-DMMF-2026-0042"
        assert body["submitted_by"]["username"] == "qa"


#
# Requests: in flight, idempotency, bad input
#


def test_a_second_request_while_one_is_in_flight_answers_200_with_it(
    api_client_for, product, django_capture_on_commit_callbacks
):
    api = api_client_for("qa")
    url = reverse("api:annual-report-list")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = api.post(url, {"product": product.pk, "year": YEAR}, format="json")
        second = api.post(url, {"product": product.pk, "year": YEAR}, format="json")
    assert first.status_code == 202 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert (
        first["Location"]
        == second["Location"]
        == reverse("api:annual-report-detail", args=[first.json()["id"]])
    )
    assert len(callbacks) == 1
    assert AnnualReport.objects.count() == 1


def test_an_idempotency_key_replays_the_first_answer(
    api_client_for, product, django_capture_on_commit_callbacks
):
    api = api_client_for("qa")
    url = reverse("api:annual-report-list")
    with django_capture_on_commit_callbacks(execute=False):
        first = api.post(
            url, {"product": product.pk, "year": YEAR}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
        )
        again = api.post(
            url, {"product": product.pk, "year": YEAR}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
        )
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert AnnualReport.objects.count() == 1
    assert (
        AuditEvent.objects.filter(event_type=MasterFileEvent.ANNUAL_REPORT_REQUESTED).count() == 1
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"year": YEAR + 1}, "year_in_future"),
        ({"year": 2025}, "year_before_designation"),
        ({"year": 1999}, "invalid"),
        ({"year": "2026"}, "invalid"),
        ({"year": 2026.5}, "invalid"),
        ({"product": 999999}, "invalid"),
        ({"product": "1"}, "invalid"),
        ({"status": "done"}, "invalid"),
        ({"year": None}, "invalid"),
    ],
)
def test_bad_requests_are_400_and_write_nothing(api_client_for, product, body, code):
    payload: dict[str, Any] = {"product": product.pk, "year": YEAR, **body}
    response = api_client_for("qa").post(reverse("api:annual-report-list"), payload, format="json")
    problem = assert_problem(response, 400, code) if code != "invalid" else response.json()
    assert response.status_code == 400, problem
    assert not AnnualReport.objects.exists()
    assert not AuditEvent.objects.filter(
        event_type=MasterFileEvent.ANNUAL_REPORT_REQUESTED
    ).exists()


def test_a_download_before_the_report_is_done_is_409(
    api_client_for, qa, product, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        report = queued(qa, product)
    response = api_client_for("qa").get(reverse("api:annual-report-download", args=[report.pk]))
    assert_problem(response, 409, "report_not_ready")


def test_a_bad_submission_is_refused_and_writes_nothing(api_client_for, done_report):
    api = api_client_for("qa")
    url = reverse("api:annual-report-submission", args=[done_report.pk])
    tomorrow = (timezone.localdate() + dt.timedelta(days=1)).isoformat()
    for body, status, code in (
        ({"submitted_on": tomorrow}, 400, "date_in_future"),
        ({"submitted_on": "2026-13-01"}, 400, "invalid"),
        ({"reference": ""}, 400, "invalid"),
        ({"reason": ""}, 400, "invalid"),
        ({"extra": "x"}, 400, "unknown_field"),
    ):
        payload = {
            "submitted_on": timezone.localdate().isoformat(),
            "reference": "MHRA-1",
            "reason": "sent",
            **body,
        }
        response = api.post(url, payload, format="json")
        assert response.status_code == status, (body, response.content)
        if code != "invalid":
            assert response.json()["code"] == code, response.json()
    done_report.refresh_from_db()
    assert done_report.submitted_on is None
    ok = api.post(
        url,
        {"submitted_on": timezone.localdate().isoformat(), "reference": "MHRA-1", "reason": "s"},
        format="json",
    )
    assert ok.status_code == 200
    again = api.post(
        url,
        {"submitted_on": timezone.localdate().isoformat(), "reference": "MHRA-2", "reason": "s"},
        format="json",
    )
    assert_problem(again, 409, "already_submitted")


def test_the_list_filters_by_product_year_status_and_submission(
    api_client_for, qa, product, done_report, failed_report
):
    api = api_client_for("qa")
    url = reverse("api:annual-report-list")

    def ids(**params: Any) -> list[int]:
        response = api.get(url, params)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids() == [failed_report.pk, done_report.pk]
    assert ids(status="done") == [done_report.pk]
    assert ids(year=YEAR, product=product.pk) == [failed_report.pk, done_report.pk]
    assert ids(year=2030) == []
    assert ids(submitted="false") == [failed_report.pk, done_report.pk]
    assert api.get(url, {"year": "twenty"}).status_code == 400
    assert api.get(url, {"year": "99999"}).status_code == 400


#
# Pages
#


def _product_url(product: Product) -> str:
    return reverse("masterfile:product-detail", args=[product.pk])


@pytest.mark.parametrize(("who", "shown"), ANNUAL_CARD.cases())
def test_the_product_page_shows_the_annual_reports_card_to_those_who_see_every_site(
    browser_as, product, who, shown
):
    response = browser_as(who).get(_product_url(product))
    if response.status_code != 200:
        assert not shown
        return
    body = response.content.decode()
    assert ('id="annual-reports"' in body) == shown
    if shown:
        assert f"{YEAR + 1}" in body  # the due date of this year's report
        assert ("Make the annual report" in body) == (who == "qa")


def test_qa_asks_for_a_report_on_the_page_and_sees_its_progress_then_the_download(
    client_for, product, media, monkeypatch, django_capture_on_commit_callbacks
):
    client = client_for("qa")
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            reverse("masterfile:annual-report-create", args=[product.pk]),
            {"annual-year": str(YEAR)},
        )
    report = AnnualReport.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{_product_url(product)}#annual-report-{report.pk}"
    page = client.get(_product_url(product)).content.decode()
    assert f'id="annual-report-{report.pk}"' in page
    assert 'hx-trigger="every 1s"' in page and "Waiting for a worker" in page

    # htmx polls the row; without htmx the status URL sends the browser to the product page.
    status_url = reverse("masterfile:annual-report-status", args=[report.pk])
    assert client.get(status_url).status_code == 302
    partial = client.get(status_url, HTTP_HX_REQUEST="true").content.decode()
    assert partial.startswith("<li") and 'role="progressbar"' in partial

    run(report, monkeypatch)
    partial = client.get(status_url, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in partial and "Download PDF" in partial
    assert report.sha256 in partial
    assert "Record submission to the MHRA" in partial

    download = client.get(reverse("masterfile:annual-report-download", args=[report.pk]))
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == FAKE_PDF
    assert AuditEvent.objects.filter(
        event_type=MasterFileEvent.ANNUAL_REPORT_DOWNLOADED, target_id=str(report.pk)
    ).exists()


def test_a_bad_year_on_the_page_is_400_and_writes_nothing(client_for, product):
    response = client_for("qa").post(
        reverse("masterfile:annual-report-create", args=[product.pk]),
        {"annual-year": str(YEAR + 1)},
    )
    assert response.status_code == 400
    assert not AnnualReport.objects.exists()


def test_qa_records_the_submission_on_the_page(client_for, done_report):
    client = client_for("qa")
    url = reverse("masterfile:annual-report-submission", args=[done_report.pk])
    prefix = f"submit-{done_report.pk}"
    bad = client.post(
        url,
        {
            f"{prefix}-submitted_on": (timezone.localdate() + dt.timedelta(days=2)).isoformat(),
            f"{prefix}-reference": "MHRA-7",
            f"{prefix}-reason": "sent",
        },
    )
    assert bad.status_code == 400
    assert "cannot be in the future" in bad.content.decode()
    done_report.refresh_from_db()
    assert done_report.submitted_on is None
    good = client.post(
        url,
        {
            f"{prefix}-submitted_on": timezone.localdate().isoformat(),
            f"{prefix}-reference": "MHRA-7",
            f"{prefix}-reason": "Submitted through the portal",
        },
    )
    assert good.status_code == 302
    done_report.refresh_from_db()
    assert done_report.submission_reference == "MHRA-7"
    page = client.get(_product_url(done_report.product)).content.decode()
    assert "MHRA-7" in page and "Submitted" in page


@pytest.mark.parametrize("who", ["qp", "inspector"])
def test_only_qa_asks_for_reports_and_records_submissions_on_the_page(
    client_for, product, done_report, who
):
    client: Client = client_for(who)
    asked = client.post(
        reverse("masterfile:annual-report-create", args=[product.pk]), {"annual-year": str(YEAR)}
    )
    assert asked.status_code == 403
    prefix = f"submit-{done_report.pk}"
    recorded = client.post(
        reverse("masterfile:annual-report-submission", args=[done_report.pk]),
        {
            f"{prefix}-submitted_on": timezone.localdate().isoformat(),
            f"{prefix}-reference": "R",
            f"{prefix}-reason": "r",
        },
    )
    assert recorded.status_code == 403
    assert AnnualReport.objects.count() == 1
    done_report.refresh_from_db()
    assert done_report.submitted_on is None


def test_site_staff_get_404_for_a_report_page_route(client_for, done_report):
    for route in ("annual-report-status", "annual-report-download"):
        response = client_for("site_lead").get(
            reverse(f"masterfile:{route}", args=[done_report.pk])
        )
        assert response.status_code == 404
