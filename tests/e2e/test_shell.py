"""The browser shell end to end: a real sign-in, the dashboard, the audit trail and the shared
signature dialog, driven through headless Chromium against a live server.

Screenshots land in tests/artifacts/ (gitignored) so a reviewer can look at what the test saw.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.personas import PASSWORD, make_persona

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("transactional_db")]


def sign_in(page: Page, base_url: str, username: str) -> None:
    """Sign in through the real login form, as a person would."""
    page.goto(f"{base_url}/accounts/login/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base_url}/")


def fill_signature(fields: Page | Locator, *, reason: str) -> None:
    """The first signature of a session asks for the username as well as the password."""
    fields.get_by_label("Username").fill("qa")
    fields.get_by_label("Password").fill(PASSWORD)
    fields.get_by_label("Reason for signing").fill(reason)


def expect_signed_review(page: Page, *, reason: str) -> None:
    expect(page.get_by_role("heading", level=1)).to_contain_text("Audit-trail review")
    expect(page.locator(".message-success")).to_contain_text("Audit trail reviewed and signed")
    signature = page.locator(".signatures .signature")
    expect(signature).to_have_count(1)
    expect(signature).to_contain_text("Quinn Adams")
    expect(signature.locator(".signature-meaning")).to_have_text("Reviewed")
    expect(signature).to_contain_text(reason)
    expect(signature.locator(".badge")).to_have_text("Valid")
    expect(signature.locator(".badge")).to_have_class("badge badge-ok")


def test_qa_signs_in_and_finds_the_login_on_the_audit_trail(
    live_server, e2e_page: Page, artifacts: Path
) -> None:
    make_persona("qa")
    page = e2e_page

    sign_in(page, live_server.url, "qa")

    expect(page.get_by_role("heading", level=1)).to_contain_text("Quinn")
    audit_panel = page.get_by_role("region", name="Audit trail")
    expect(audit_panel).to_be_visible()
    expect(audit_panel).to_contain_text("Signed in")
    whoami = page.locator(".whoami")
    expect(whoami).to_contain_text("Quinn Adams")
    expect(whoami.locator(".badge-role")).to_have_text("Control Site QA")
    expect(whoami).to_contain_text("All sites")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Home")).to_have_attribute("aria-current", "page")
    page.screenshot(path=artifacts / "e2e-dashboard.png", full_page=True)

    nav.get_by_role("link", name="Audit trail").click()

    expect(page).to_have_url(f"{live_server.url}/audit/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit trail")
    expect(nav.get_by_role("link", name="Audit trail")).to_have_attribute("aria-current", "page")
    login_row = page.locator("#event-rows tbody tr").filter(has_text="auth.login").first
    expect(login_row).to_be_visible()
    expect(login_row.locator("td").nth(3)).to_have_text("qa")
    page.screenshot(path=artifacts / "e2e-audit.png", full_page=True)


def test_qa_signs_the_audit_trail_review_through_the_signature_dialog(
    live_server, e2e_page: Page, artifacts: Path
) -> None:
    make_persona("qa")
    page = e2e_page
    sign_in(page, live_server.url, "qa")
    page.goto(f"{live_server.url}/audit/")

    review = page.get_by_role("region", name="Review")
    review.get_by_label("Review comment").fill("Logins and role grants checked; nothing unusual.")
    opener = review.get_by_role("button", name="Sign the review")
    dialog = page.get_by_role("dialog", name="Electronic signature — Reviewed")

    # With JavaScript the fields sit in a modal <dialog>: the first field takes the focus and
    # Escape closes it without signing.
    opener.click()
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Username")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(opener).to_be_focused()

    opener.click()
    fill_signature(dialog, reason="Periodic audit-trail review")
    dialog.get_by_role("button", name="Sign the review").click()

    expect_signed_review(page, reason="Periodic audit-trail review")
    page.screenshot(path=artifacts / "e2e-signed-review.png", full_page=True)


def test_the_signature_dialog_works_without_javascript(
    live_server, e2e_page_without_js: Page, artifacts: Path
) -> None:
    make_persona("qa")
    page = e2e_page_without_js
    sign_in(page, live_server.url, "qa")
    page.goto(f"{live_server.url}/audit/")

    review = page.get_by_role("region", name="Review")
    review.get_by_label("Review comment").fill("Checked without JavaScript.")
    review.locator("details[data-signature-dialog] > summary").click()
    fill_signature(review, reason="Review from a locked-down laptop")
    review.get_by_role("button", name="Sign the review").click()

    expect_signed_review(page, reason="Review from a locked-down laptop")
    page.screenshot(path=artifacts / "e2e-signed-review-nojs.png", full_page=True)


def test_shell_pages_fit_a_phone_screen(live_server, e2e_phone_page: Page, artifacts: Path) -> None:
    make_persona("qa")
    page = e2e_phone_page
    sign_in(page, live_server.url, "qa")

    too_wide = {}
    for path, name in [
        ("/", "home"),
        ("/audit/", "audit"),
        ("/sites/", "area"),
        ("/accounts/", "account"),
    ]:
        page.goto(f"{live_server.url}{path}")
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        # Wide content (the navigation, tables) scrolls inside its own box; the page never does.
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        if overflow > 0:
            too_wide[path] = overflow
        page.screenshot(path=artifacts / f"e2e-phone-{name}.png", full_page=True)

    assert not too_wide, f"pages wider than a 390px phone screen (px too wide): {too_wide}"
