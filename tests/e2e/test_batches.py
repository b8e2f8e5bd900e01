"""The batch pages end to end: an operator starts a batch and records it step by step (a second
operator verifies step 2, the site lead signs step 3) and the results; meanwhile a QP watches the
queue, sees the batch appear and its gate summary clear without reloading, opens the
certification page, reviews the findings and certifies with password and authenticator code —
headless Chromium against a live server (issue 5, browser test; BR-03, BR-15, ES-01, ES-05).

Screenshots land in tests/artifacts/: e2e-batches-detail.png (operator, mid-record),
e2e-batches-queue.png and e2e-batches-certify.png (the QP), e2e-batches-certified.png.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from batches.choices import BatchStatus
from batches.models import Batch, Certification
from tests.batches.helpers import make_plant
from tests.e2e.test_masterfile import sign_dialog
from tests.e2e.test_shell import sign_in
from tests.personas import PASSWORD, unused_totp_code

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("transactional_db")]


def _sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()


def _qp_sign_in(page: Page, base: str, qp: object) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill("qp")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Second factor")
    page.get_by_label("6-digit code from your authenticator").fill(unused_totp_code(qp))  # type: ignore[arg-type]
    page.get_by_role("button", name="Verify").click()
    expect(page).to_have_url(f"{base}/")


def test_an_operator_records_a_batch_and_the_qp_certifies_it_from_the_live_queue(
    live_server, e2e_page: Page, e2e_browser: Browser, artifacts: Path
) -> None:
    plant = make_plant()
    base = live_server.url
    page = e2e_page

    # The QP opens the queue first, in a browser of their own: nothing awaits yet.
    qp_context = e2e_browser.new_context(
        locale="en-GB", timezone_id="UTC", viewport={"width": 1280, "height": 800}
    )
    qp_context.set_default_timeout(10_000)
    qp_page = qp_context.new_page()
    errors: list[str] = []
    qp_page.on("pageerror", lambda exc: errors.append(str(exc)))
    _qp_sign_in(qp_page, base, plant.qp)
    qp_page.goto(f"{base}/batches/")
    qp_page.get_by_role("navigation", name="Main").get_by_role("link", name="QP queue").click()
    expect(qp_page.get_by_role("heading", level=1)).to_have_text("QP queue")
    expect(qp_page.locator("#queue-rows")).to_contain_text("Nothing awaits certification")

    # The operator starts a batch at LDS1.
    sign_in(page, base, "operator")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Batches").click()
    start = page.get_by_role("region", name="Start a batch")
    start.get_by_label("Site").select_option(label=str(plant.reference))
    start.get_by_label("Product").select_option(label=str(plant.product))
    start.get_by_label("Chain-of-identity reference").fill("PT-2026-0042")
    start.get_by_role("button", name="Start the batch").click()
    expect(page.locator(".message-success")).to_contain_text("started")
    batch = Batch.objects.get()
    expect(page.get_by_role("heading", level=1)).to_contain_text(batch.number)
    expect(page.locator(".site-title .badge")).to_have_text("In progress")

    # Step 1: two parameters, signed "performed" (first signing of the session: username too).
    step1 = page.locator("#step-1")
    step1.get_by_label("Bath temperature (°C)").fill("37.2")
    step1.get_by_label("Final volume (mL)").fill("50")
    sign_dialog(page, opener="Sign the step", reason="Thawed and washed.", username="operator")
    expect(page.locator(".message-success")).to_contain_text("Step 1 recorded and signed")
    expect(page.locator("#step-1")).to_contain_text("Performed by Omar Okafor")

    # Step 2 needs a second person: the operator records it, operator2 verifies it.
    page.locator("#step-2").get_by_label("MOI").fill("3")
    sign_dialog(page, opener="Sign the step", reason="Vector added.")
    expect(page.locator("#step-2 .badge")).to_have_text("Awaiting verification")
    expect(page.get_by_role("button", name="Verify the step")).to_have_count(0)
    page.screenshot(path=artifacts / "e2e-batches-detail.png", full_page=True)
    _sign_out(page)
    sign_in(page, base, "operator2")
    page.goto(f"{base}/batches/{batch.number}/")
    sign_dialog(page, opener="Verify the step", reason="MOI checked.", username="operator2")
    expect(page.locator(".message-success")).to_contain_text("Step 2 verified")
    _sign_out(page)

    # Step 3 is the site lead's; it completes the batch.
    sign_in(page, base, "site_lead")
    page.goto(f"{base}/batches/{batch.number}/")
    expect(page.locator("#step-3 .badge")).to_have_text("Next")
    sign_dialog(page, opener="Sign the step", reason="Filled and labelled.", username="site_lead")
    expect(page.locator(".site-title .badge")).to_have_text("Awaiting certification")

    # Without reloading, the QP's queue shows the batch within a few seconds.
    row = qp_page.locator(f"#queue-{batch.number}")
    expect(row).to_be_visible(timeout=5_000)
    expect(row).to_contain_text("LDS1")
    expect(row).to_contain_text("CART-01")
    expect(row.locator(".gate-summary")).to_contain_text("2 blocks")  # two results awaited
    countdown = row.locator("time.countdown")
    expect(countdown).to_have_text(re.compile(r"^1 h (59|58) min \d\d s$"))
    first = countdown.text_content() or ""
    # It ticks every second; a loaded machine may take a little longer to show the next one.
    expect(countdown).not_to_have_text(first, timeout=2_500)

    # The lead records the results; the queue's summary clears by itself.
    results = page.get_by_role("region", name="Results")
    for key, value in (("viability", "92.5"), ("endotoxin", "1")):
        results.locator("summary", has_text="Record a result").click()
        results.get_by_label("Specification").select_option(value=key)
        results.get_by_label("Value").fill(value)
        results.get_by_role("button", name="Record the result").click()
        expect(page.locator(".message-success")).to_contain_text("passes")
        results = page.get_by_role("region", name="Results")
    expect(page.locator("#result-viability .badge-ok")).to_have_text("Pass")
    expect(row.locator(".gate-summary")).to_have_text("Clear", timeout=5_000)
    qp_page.screenshot(path=artifacts / "e2e-batches-queue.png", full_page=True)

    # The QP reviews every finding on the certification page and certifies remotely.
    row.get_by_role("link", name=re.compile("^Review")).click()
    expect(qp_page.get_by_role("heading", level=1)).to_contain_text(batch.number)
    expect(qp_page.locator("#findings")).to_contain_text("No finding: every gate is clear.")
    expect(qp_page.locator(".batch-step")).to_have_count(3)
    expect(qp_page.locator("#result-viability")).to_contain_text("92.5")
    qp_page.get_by_label("Certified remotely").check()
    qp_page.get_by_label("Location").fill("On call, Leeds")
    qp_page.screenshot(path=artifacts / "e2e-batches-certify.png", full_page=True)
    sign_dialog(
        qp_page,
        opener="Certify the batch",
        reason="Record complete; every gate clear.",
        username="qp",
        otp=unused_totp_code(plant.qp),
    )
    expect(qp_page.locator(".message-success")).to_contain_text("certified")
    expect(qp_page.locator(".site-title .badge")).to_have_text("Certified")
    expect(qp_page.locator("#certification")).to_contain_text("Remotely, from On call, Leeds")
    expect(qp_page.locator("#certification .signature-meaning")).to_have_text("QP certified")
    qp_page.screenshot(path=artifacts / "e2e-batches-certified.png", full_page=True)
    batch.refresh_from_db()
    assert batch.status == BatchStatus.CERTIFIED
    assert Certification.objects.get(batch=batch).remote
    qp_context.close()
    assert not errors, f"JavaScript errors on the QP's page: {errors}"
