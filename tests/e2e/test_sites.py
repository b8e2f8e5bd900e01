"""The sites pages end to end: a QA registers a site, completes its checklist with evidence and
signed sign-offs, qualifies it, activates it with a signature and then suspends it — through
headless Chromium against a live server, with the shared signature dialog.

Screenshots land in tests/artifacts/: e2e-sites-list.png, e2e-site-page.png (active) and
e2e-site-suspended.png, plus phone-sized ones of every sites page.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import FilePayload, Page, expect

from controlsite.signatures.services import SignatureCredentials
from sites import services
from sites.choices import SiteAction, SiteKind, SiteRole
from tests.e2e.test_shell import sign_in
from tests.personas import PASSWORD, make_persona

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("transactional_db")]

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture(autouse=True)
def _media_in_tmp(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


def sign_in_dialog(page: Page, *, opener: str, reason: str, first: bool) -> None:
    """Open the signature dialog, sign, and submit. The first signing of a session asks for the
    username as well as the password."""
    page.get_by_role("button", name=opener).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    if first:
        expect(dialog.get_by_label("Username")).to_be_focused()
        dialog.get_by_label("Username").fill("qa")
    else:
        expect(dialog.get_by_label("Username")).to_have_count(0)
    dialog.get_by_label("Password").fill(PASSWORD)
    dialog.get_by_label("Reason for signing").fill(reason)
    dialog.get_by_role("button", name=opener).click()


def lifecycle_step(page: Page, action: str, *, reason: str) -> None:
    page.get_by_role("region", name="Lifecycle actions").get_by_role("link", name=action).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{action} LON1")
    page.get_by_label("Reason", exact=True).fill(reason)
    page.get_by_role("button", name=action, exact=True).click()


def status_badge(page: Page) -> Any:
    return page.locator(".site-title .badge")


def test_qa_registers_completes_qualifies_activates_and_suspends_a_site(
    live_server, e2e_page: Page, artifacts: Path
) -> None:
    make_persona("qa")
    page = e2e_page
    base = live_server.url
    sign_in(page, base, "qa")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Sites").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sites")
    expect(page.locator(".empty-state")).to_contain_text("No sites yet")
    page.get_by_role("link", name="Register a site").first.click()

    # Register: the code is typed in lower case and stored upper case.
    page.get_by_label("Code", exact=True).fill("lon1")
    page.get_by_label("Name", exact=True).fill("London Bridge Cell Therapy Unit")
    page.get_by_label("Kind", exact=True).select_option("poc_hospital")
    page.get_by_label("Host organisation").fill("Guy's and St Thomas' NHS Foundation Trust")
    page.get_by_label("Address").fill("Great Maze Pond, London SE1 9RT")
    page.get_by_label("Reason for registering").fill("Proposed by the trust's ATMP board.")
    page.get_by_role("button", name="Register the site").click()

    expect(page).to_have_url(f"{base}/sites/LON1/")
    expect(page.locator(".message-success")).to_contain_text("LON1 registered")
    expect(status_badge(page)).to_have_text("Proposed")
    expect(page.locator(".stepper [aria-current=step]")).to_contain_text("Proposed")

    lifecycle_step(page, "Start onboarding", reason="Technical agreement TA-LON1 signed.")
    expect(status_badge(page)).to_have_text("Onboarding")
    checklist = page.get_by_role("region", name="Onboarding checklist")
    total = checklist.locator("tbody tr").count()
    assert total >= 2
    expect(checklist).to_contain_text(f"0 of {total} signed off")

    # Every item: evidence (a real PDF upload), then a signed sign-off; each sign-off leads on
    # to the next open item, and the last back to the site page.
    checklist.locator("tbody tr").first.get_by_role("link").first.click()
    for n in range(total):
        expect(page.locator(".eyebrow")).to_contain_text(f"item {n + 1} of {total}")
        upload: FilePayload = {
            "name": f"evidence-{n}.pdf",
            "mimeType": "application/pdf",
            "buffer": PDF,
        }
        page.get_by_label("Evidence file").set_input_files(files=[upload])
        page.get_by_label("Reason", exact=True).fill("Evidence on file.")
        page.get_by_role("button", name="Attach evidence").click()
        expect(page.locator(".message-success")).to_contain_text("Evidence attached")
        expect(page.get_by_role("region", name="Evidence")).to_contain_text(f"evidence-{n}")
        sign_in_dialog(page, opener="Sign off", reason="Evidence verified.", first=n == 0)
        expect(page.locator(".message-success")).to_contain_text("Signed off")

    expect(page).to_have_url(re.compile(r"/sites/LON1/#checklist$"))
    expect(checklist).to_contain_text(f"{total} of {total} signed off")

    lifecycle_step(page, "Qualify", reason="Every onboarding item signed off.")
    expect(status_badge(page)).to_have_text("Qualified")

    page.get_by_role("region", name="Lifecycle actions").get_by_role(
        "link", name="Activate"
    ).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Activate LON1")
    expect(page.locator(".consequences")).to_contain_text("Site added")
    sign_in_dialog(
        page, opener="Activate and sign", reason="Comparability batch passed.", first=False
    )
    expect(page).to_have_url(f"{base}/sites/LON1/")
    expect(status_badge(page)).to_have_text("Active")
    expect(status_badge(page)).to_have_class("badge badge-ok")
    newest = page.locator(".timeline .tl-status").first
    expect(newest).to_contain_text("Qualified")
    expect(newest).to_contain_text("Comparability batch passed.")
    expect(newest.locator(".tl-signature")).to_contain_text("Quinn Adams")
    expect(newest.locator(".tl-signature")).to_contain_text("Approved")
    expect(newest.locator(".tl-signature .badge")).to_have_text("Valid")
    page.screenshot(path=artifacts / "e2e-site-page.png", full_page=True)

    page.get_by_role("region", name="Lifecycle actions").get_by_role("link", name="Suspend").click()
    expect(page.locator(".consequences")).to_contain_text("every Qualified Person")
    sign_in_dialog(
        page, opener="Suspend and sign", reason="Sterility failure on LON1-0004.", first=False
    )
    expect(status_badge(page)).to_have_text("Suspended")
    expect(status_badge(page)).to_have_class("badge badge-block")
    expect(page.locator(".status-notice")).to_contain_text("no batch may start")
    newest = page.locator(".timeline .tl-status").first
    expect(newest.locator(".tl-signature .badge")).to_have_text("Valid")
    earlier = page.locator(".timeline .tl-status").nth(1)
    # The activation's signature binds to its own step: still valid after the suspension.
    expect(earlier.locator(".tl-signature .badge")).to_have_text("Valid")
    page.screenshot(path=artifacts / "e2e-site-suspended.png", full_page=True)

    page.get_by_role("link", name="Sites", exact=True).first.click()
    row = page.locator(".sites-table tbody tr").filter(has_text="LON1")
    expect(row.locator(".badge")).to_have_text("Suspended")
    page.screenshot(path=artifacts / "e2e-sites-list.png", full_page=True)

    page.get_by_role("link", name="MHRA log").click()
    expect(page.locator(".mhra-table")).to_contain_text("Site suspended: LON1")
    expect(page.locator(".mhra-table")).to_contain_text("Site added: LON1")


def test_sites_pages_fit_a_phone_screen(live_server, e2e_phone_page: Page, artifacts: Path) -> None:
    qa = make_persona("qa")
    make_persona("qp")
    creds = SignatureCredentials(username="qa", password=PASSWORD)
    site = services.site_register(
        actor=qa,
        code="MU1",
        name="Modular cleanroom unit MU-1",
        kind=SiteKind.MODULAR_UNIT,
        host_organisation="Northern Advanced Therapies",
        current_location="Car park C, Royal Victoria Infirmary, Newcastle",
        reason="new unit",
    )
    services.site_transition(
        actor=qa, site=site, action=SiteAction.START_ONBOARDING, reason="agreement signed"
    )
    item = site.checklist.order_by("position").first()
    assert item is not None
    services.checklist_item_attach_evidence(actor=qa, item=item, reference="PQR-1", reason="r")
    services.checklist_item_sign_off(actor=qa, item=item, credentials=creds, reason="verified")
    services.equipment_add(
        actor=qa, site=site, kind="Closed-system processor", serial_number="PRD-1", reason="r"
    )
    services.membership_add(
        actor=qa, site=site, user=make_persona("operator"), role=SiteRole.SITE_OPERATOR, reason="r"
    )
    audit = services.site_audit_plan(
        actor=qa, site=site, title="Annual audit", planned_for=timezone.localdate(), reason="r"
    )
    services.control_site_save(
        actor=qa,
        name="Northern Advanced Therapies Control Site",
        address="Freeman Road, Newcastle upon Tyne NE7 7DN",
        licence_number="MIA 12345/0001",
        scope_poc=True,
        scope_mm=True,
        regulator_contacts="MHRA GMP Inspectorate",
        reason="licence",
    )
    page = e2e_phone_page
    sign_in(page, live_server.url, "qa")

    too_wide = {}
    for path, name in [
        ("/sites/", "sites-list"),
        ("/sites/MU1/", "site-page"),
        ("/sites/MU1/lifecycle/qualify/", "site-transition"),
        (f"/sites/MU1/checklist/{item.key}/", "site-checklist-item"),
        (f"/sites/MU1/audits/{audit.pk}/", "site-audit"),
        ("/sites/control-site/", "control-site"),
        ("/sites/mhra/", "mhra-log"),
        ("/notifications/", "notifications"),
    ]:
        page.goto(f"{live_server.url}{path}")
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        if overflow > 0:
            too_wide[path] = overflow
        page.screenshot(path=artifacts / f"e2e-phone-{name}.png", full_page=True)

    assert not too_wide, f"pages wider than a 390px phone screen (px too wide): {too_wide}"
