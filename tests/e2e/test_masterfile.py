"""The master-file pages end to end: QA edits a section of a draft and submits it, approves it
with the signature dialog, a QP signs in and approves (password and authenticator code), QA
makes it effective, exports the PDF, watches the progress bar and downloads the file — through
headless Chromium against a live server (issue 4, browser test).

Screenshots land in tests/artifacts/: e2e-masterfile-list.png, e2e-masterfile-section-edit.png,
e2e-masterfile-version-draft.png, e2e-masterfile-version-qp.png, e2e-masterfile-version.png
(effective, with the export) and e2e-masterfile-diff.png.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from playwright.sync_api import Page, expect

from controlsite.accounts.models import User
from masterfile import services
from masterfile.choices import ProductSiteRole, VersionStatus
from masterfile.models import MasterFileExport, MasterFileVersion, Product
from sites.choices import SiteKind
from tests.e2e.test_shell import sign_in
from tests.masterfile.helpers import make_effective_version, make_product
from tests.personas import PASSWORD, make_persona, unused_totp_code
from tests.sites.helpers import make_site

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("transactional_db")]


@pytest.fixture(autouse=True)
def _media_in_tmp(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


def _setup() -> tuple[User, User, Product, MasterFileVersion]:
    """CART-01 with v1 in force and v2 started as a draft (a copy of v1)."""
    qa, qp = make_persona("qa"), make_persona("qp")
    reference = make_site(qa, "LON1", host_organisation="Guy's and St Thomas' NHS FT")
    lab = make_site(qa, "LAB1", kind=SiteKind.TESTING_LAB)
    product = make_product(qa, reference, "CART-01", name="Autologous CAR-T cells")
    services.product_site_add(
        actor=qa, product=product, site=lab, role=ProductSiteRole.TESTING, reason="release tests"
    )
    make_effective_version(qa, qp, product)
    draft = services.draft_start(actor=qa, master_file=product.master_file, reason="revision")
    return qa, qp, product, draft


def sign_dialog(page: Page, *, opener: str, reason: str, username: str = "", otp: str = "") -> None:
    page.get_by_role("button", name=opener).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    if username:
        dialog.get_by_label("Username").fill(username)
    else:
        expect(dialog.get_by_label("Username")).to_have_count(0)
    dialog.get_by_label("Password").fill(PASSWORD)
    if otp:
        dialog.get_by_label("Authenticator code").fill(otp)
    dialog.get_by_label("Reason for signing").fill(reason)
    dialog.get_by_role("button", name=opener).click()


def lifecycle(page: Page, button: str, reason: str) -> None:
    panel = page.get_by_role("region", name="Lifecycle actions")
    panel.locator("summary", has_text=button).click()
    panel.get_by_label("Reason for change").fill(reason)
    panel.get_by_role("button", name=button, exact=True).click()


@pytest.fixture
def slow_export_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Tasks are eager in tests, so an export would be finished before its page loads. Here each
    queued export is run by a background thread a moment later, as a worker would, with a pause
    at every progress tick, so the page's progress bar can be watched moving."""
    from masterfile import exports

    started: list[int] = []
    threads: list[threading.Thread] = []
    real_tick = exports._tick

    def run(export_id: int) -> None:
        try:
            time.sleep(1.5)
            exports.export_run(export_id)
        finally:
            connections.close_all()

    class Worker:
        @staticmethod
        def delay(export_id: int) -> None:
            started.append(export_id)
            thread = threading.Thread(target=run, args=(export_id,), daemon=True)
            threads.append(thread)
            thread.start()

    def slow_tick(export: MasterFileExport, milestone: tuple[int, str]) -> None:
        time.sleep(0.5)
        real_tick(export, milestone)

    monkeypatch.setattr(exports, "_task", lambda: Worker)
    monkeypatch.setattr(exports, "_tick", slow_tick)
    yield started
    for thread in threads:
        thread.join(timeout=60)


def test_qa_edits_submits_both_approve_and_qa_exports_the_pdf(
    live_server, e2e_page: Page, artifacts: Path, slow_export_worker: list[int]
) -> None:
    _qa, qp, product, draft = _setup()
    page = e2e_page
    base = live_server.url
    sign_in(page, base, "qa")

    # The product list: v1 in force, v2 a draft on its way.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Master files").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Master files")
    row = page.locator(".products-table tbody tr").filter(has_text="CART-01")
    expect(row).to_contain_text("Autologous CAR-T cells")
    expect(row).to_contain_text("v1")
    expect(row.locator(".badge").last).to_have_text("Draft")
    page.screenshot(path=artifacts / "e2e-masterfile-list.png", full_page=True)

    row.get_by_role("link", name="CART-01").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Autologous CAR-T cells")
    page.get_by_role("link", name="v2: draft").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("CART-01 master file v2")
    expect(page.locator(".site-title .badge")).to_have_text("Draft")
    expect(page.locator(".stepper [aria-current=step]")).to_contain_text("Draft")

    # Edit a section: preview first (nothing saved), then save with a reason.
    section = page.locator("#section-control-strategy")
    section.get_by_role("link", name=re.compile("^Edit")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Decentralised manufacture control strategy"
    )
    body = page.get_by_label("Content (Markdown)")
    body.fill(
        "The control strategy is **DMCS-004 v2**.\n\n"
        "- Every site runs the same closed-system process.\n"
        "- Release testing at LAB1 within 2 hours.\n"
    )
    # With JavaScript the preview is an htmx POST that swaps in the rendered Markdown only.
    with page.expect_response(re.compile(r"/sections/preview/$")):
        page.get_by_role("button", name="Preview").click()
    preview = page.locator("#preview")
    expect(preview.locator("strong")).to_have_text("DMCS-004 v2")
    expect(preview.locator("li")).to_have_count(2)
    page.get_by_label("Reason for change").fill("Control strategy revised to DMCS-004 v2.")
    page.screenshot(path=artifacts / "e2e-masterfile-section-edit.png", full_page=True)
    page.get_by_role("button", name="Save the section").click()
    expect(page).to_have_url(re.compile(r"/master-files/versions/\d+/#section-control-strategy$"))
    expect(page.locator(".message-success")).to_contain_text("Saved")
    expect(page.locator("#section-control-strategy .markdown strong")).to_have_text("DMCS-004 v2")

    # The change summary, then submit: the annex is frozen from the register.
    summary = page.get_by_role("region", name="Change summary")
    summary.locator("summary", has_text="Edit the change summary").click()
    summary.get_by_label("Change summary").fill("Control strategy updated to DMCS-004 v2.")
    summary.get_by_label("Reason for change").fill("Summary of the revision.")
    summary.get_by_role("button", name="Save the summary").click()
    expect(page.locator(".message-success")).to_contain_text("change summary is saved")
    expect(page.locator("#annex")).to_contain_text("Generated on submission")
    page.screenshot(path=artifacts / "e2e-masterfile-version-draft.png", full_page=True)

    lifecycle(page, "Submit for review", "Ready for QA and QP review.")
    expect(page.locator(".message-success")).to_contain_text("submitted for review")
    expect(page.locator(".site-title .badge")).to_have_text("In review")
    expect(page.locator(".section-edit")).to_have_count(0)  # frozen: no edit controls
    annex = page.locator(".annex-table")
    expect(annex).to_contain_text("LON1")
    expect(annex).to_contain_text("LAB1")

    # QA approves first, through the signature dialog (first signing: username too).
    sign_dialog(page, opener="Approve as Control Site QA", reason="Content checked.", username="qa")
    expect(page.locator(".message-success")).to_contain_text("Approved as Control Site QA")
    slots = page.locator(".approval-slot")
    expect(slots.nth(0)).to_contain_text("Quinn Adams")
    expect(slots.nth(0).locator(".badge")).to_have_text("Valid")
    expect(page.get_by_role("button", name=re.compile("^Approve as"))).to_have_count(0)

    # A QP signs in with the second factor and approves with password and a fresh code.
    page.get_by_role("button", name="Sign out").click()
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill("qp")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Second factor")
    page.get_by_label("6-digit code from your authenticator").fill(unused_totp_code(qp))
    page.get_by_role("button", name="Verify").click()
    expect(page).to_have_url(f"{base}/")
    page.goto(f"{base}/master-files/versions/{draft.pk}/")
    sign_dialog(
        page,
        opener="Approve as Qualified Person",
        reason="Fit for release decisions.",
        username="qp",
        otp=unused_totp_code(qp),
    )
    expect(page.locator(".message-success")).to_contain_text("Both approvals are in")
    expect(page.locator(".site-title .badge")).to_have_text("Approved")
    expect(slots.nth(1)).to_contain_text("Priya Patel")
    expect(slots.nth(1)).to_contain_text("UTC")
    expect(slots.nth(1).locator(".badge")).to_have_text("Valid")
    page.screenshot(path=artifacts / "e2e-masterfile-version-qp.png", full_page=True)

    # QA makes it effective: v1 is superseded at the same moment.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, base, "qa")
    page.goto(f"{base}/master-files/versions/{draft.pk}/")
    lifecycle(page, "Make effective", "Both approvals in; in force from today.")
    expect(page.locator(".site-title .badge")).to_have_text("Effective")
    draft.refresh_from_db()
    assert draft.status == VersionStatus.EFFECTIVE
    assert product.master_file.versions.get(number=1).status == VersionStatus.SUPERSEDED

    # Export the PDF and watch it: queued, a progress bar, then the download.
    exports = page.get_by_role("region", name="PDF exports")
    exports.get_by_role("button", name="Export PDF").click()
    expect(page.locator(".message-success")).to_contain_text("Export queued")
    row = exports.locator(".export-row").first
    bar = row.get_by_role("progressbar")
    expect(bar).to_be_visible()
    expect(exports.get_by_role("button", name="Export PDF")).to_have_count(0)
    expect(row.locator(".export-stage")).not_to_contain_text("Waiting for a worker", timeout=15_000)
    exports.screenshot(path=artifacts / "e2e-masterfile-export-progress.png")
    download_link = row.get_by_role("link", name=re.compile("^Download PDF"))
    expect(download_link).to_be_visible(timeout=60_000)
    expect(bar).to_have_count(0)
    expect(exports.get_by_role("button", name="Export PDF")).to_be_visible()  # offered again
    export = MasterFileExport.objects.get(pk=slow_export_worker[0])
    assert export.sha256
    expect(row.locator(".export-sha")).to_have_text(export.sha256)
    page.screenshot(path=artifacts / "e2e-masterfile-version.png", full_page=True)

    with page.expect_download() as info:
        download_link.click()
    download = info.value
    assert download.suggested_filename == export.filename
    saved = download.path()
    assert saved is not None
    assert Path(saved).read_bytes()[:5] == b"%PDF-"

    # What changed from v1: the edited section's new line shows as added.
    page.goto(f"{base}/master-files/versions/{draft.pk}/")
    page.get_by_role("link", name="Compare with v1").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("v2 against v1")
    changed = page.locator("#diff-control-strategy")
    expect(changed.locator(".badge").first).to_have_text("Changed")
    expect(changed.locator(".diff-added").first).to_contain_text("DMCS-004 v2")
    expect(changed.locator(".diff-removed").first).to_contain_text("v1:")
    page.screenshot(path=artifacts / "e2e-masterfile-diff.png", full_page=True)


def test_qa_submits_and_approves_without_javascript(
    live_server, e2e_page_without_js: Page, artifacts: Path
) -> None:
    """Every form works without JavaScript: the folded forms open as <details>, the signature
    dialog's fields sit inline, and the preview posts the editor itself."""
    qa, _qp, _product, draft = _setup()
    for section in draft.sections.all():
        services.section_update(actor=qa, section=section, body=f"{section.title}.", reason="r")
    services.change_summary_set(actor=qa, version=draft, summary="Reviewed.", reason="r")
    page = e2e_page_without_js
    base = live_server.url
    sign_in(page, base, "qa")
    page.goto(f"{base}/master-files/versions/{draft.pk}/")

    page.locator("#section-designation").get_by_role("link", name=re.compile("^Edit")).click()
    page.get_by_label("Content (Markdown)").fill("A *POC* product.")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview em")).to_have_text("POC")
    page.get_by_label("Reason for change").fill("Designation wording.")
    page.get_by_role("button", name="Save the section").click()
    expect(page.locator("#section-designation .markdown em")).to_have_text("POC")

    lifecycle(page, "Submit for review", "Ready.")
    expect(page.locator(".site-title .badge")).to_have_text("In review")
    approvals = page.get_by_role("region", name="Approval")
    approvals.locator("details[data-signature-dialog] > summary").click()
    approvals.get_by_label("Username").fill("qa")
    approvals.get_by_label("Password").fill(PASSWORD)
    approvals.get_by_label("Reason for signing").fill("Checked without JavaScript.")
    approvals.get_by_role("button", name="Approve as Control Site QA").click()
    expect(page.locator(".message-success")).to_contain_text("Approved as Control Site QA")
    expect(page.locator(".approval-slot").first.locator(".badge")).to_have_text("Valid")
    page.screenshot(path=artifacts / "e2e-masterfile-version-nojs.png", full_page=True)


def test_master_file_pages_fit_a_phone_screen(
    live_server, e2e_phone_page: Page, artifacts: Path
) -> None:
    qa, _qp, product, draft = _setup()
    section = draft.sections.get(key="control-strategy")
    services.section_update(
        actor=qa,
        section=section,
        body="A long line: "
        + "closed-system-processing " * 12
        + "\n\n| a | b |\n|---|---|\n| 1 | 2 |",
        reason="r",
    )
    page = e2e_phone_page
    sign_in(page, live_server.url, "qa")
    too_wide = {}
    for path, name in [
        ("/master-files/", "list"),
        (f"/master-files/products/{product.pk}/", "product"),
        (f"/master-files/versions/{draft.pk}/", "version"),
        (f"/master-files/versions/{draft.pk}/diff/", "diff"),
        (f"/master-files/versions/{draft.pk}/sections/{section.pk}/edit/", "section-edit"),
        ("/master-files/products/new/", "product-form"),
    ]:
        page.goto(f"{live_server.url}{path}")
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        if overflow > 0:
            too_wide[path] = overflow
        page.screenshot(path=artifacts / f"e2e-phone-masterfile-{name}.png", full_page=True)
    assert not too_wide, f"pages wider than a 390px phone screen (px too wide): {too_wide}"
