"""A deviation end to end (issue 6, browser test; DV-01…DV-05, ES-01): an operator raises a
deviation from the batch page; the QP sees it block the batch; Control Site QA confirms its
class, triages, investigates, raises a CAPA whose action the site lead completes, and closes the
deviation with a signature; the QP's certification page then shows every gate clear — headless
Chromium against a live server.

Screenshots land in tests/artifacts/: e2e-deviations-detail.png (QA, before closure),
e2e-deviations-blocked.png and e2e-deviations-clear.png (the QP's certification page).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from deviations.choices import DeviationStatus
from deviations.models import Capa, Deviation
from tests.batches.helpers import make_plant, ready_batch
from tests.e2e.test_batches import _qp_sign_in, _sign_out
from tests.e2e.test_masterfile import sign_dialog
from tests.e2e.test_shell import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("transactional_db")]


def _in(days: int) -> str:
    return (timezone.localdate() + dt.timedelta(days=days)).isoformat()


def _step(page: Page, button: str, reason: str) -> None:
    qa = page.locator("#qa")
    qa.get_by_label("Reason for change").fill(reason)
    qa.get_by_role("button", name=button, exact=True).click()
    expect(page.locator(".message-success")).to_be_visible()


def test_an_operator_raises_a_deviation_qa_closes_it_and_the_qps_gate_clears(
    live_server, e2e_page: Page, e2e_browser: Browser, artifacts: Path
) -> None:
    plant = make_plant()
    batch = ready_batch(plant)
    base = live_server.url
    page = e2e_page

    # The operator raises a deviation from the batch page.
    sign_in(page, base, "operator")
    page.goto(f"{base}/batches/{batch.number}/")
    page.get_by_role("link", name="Raise a deviation").click()
    form = page.locator("#raise")
    expect(form.get_by_label("Batch number (if it concerns a batch)")).to_have_value(batch.number)
    form.get_by_label("Title").fill("Bag clamp found open after fill")
    form.get_by_label("What happened").fill("The outlet clamp was open at the final check.")
    form.locator("input[name=proposed_class][value=major]").check()
    form.get_by_label("Immediate action taken").fill("Bag held; integrity test started.")
    form.get_by_role("button", name="Raise the deviation").click()
    expect(page.locator(".message-success")).to_contain_text("QA is told")
    deviation = Deviation.objects.get()
    expect(page.get_by_role("heading", level=1)).to_contain_text(deviation.number)
    _sign_out(page)

    # The QP, in a browser of their own, sees it block certification.
    qp_context = e2e_browser.new_context(
        locale="en-GB", timezone_id="UTC", viewport={"width": 1280, "height": 800}
    )
    qp_context.set_default_timeout(10_000)
    qp_page = qp_context.new_page()
    _qp_sign_in(qp_page, base, plant.qp)
    qp_page.goto(f"{base}/batches/{batch.number}/certify/")
    findings = qp_page.locator("#findings")
    expect(findings).to_contain_text(deviation.number)
    expect(qp_page.get_by_role("button", name="Certify the batch")).to_have_count(0)
    qp_page.screenshot(path=artifacts / "e2e-deviations-blocked.png", full_page=True)

    # QA confirms the class, triages and investigates.
    sign_in(page, base, "qa")
    page.goto(f"{base}/deviations/{deviation.number}/")
    qa = page.locator("#qa")
    qa.get_by_label("Class", exact=True).select_option("major")
    qa.get_by_label("Why this class").fill("Sterility assurance of the bag in doubt.")
    qa.get_by_role("button", name="Confirm the class").click()
    expect(page.locator(".message-success")).to_be_visible()
    _step(page, "Triage", "Class confirmed; triaged.")
    _step(page, "Start the investigation", "Investigation opened.")
    investigation = page.locator("#investigation")
    investigation.get_by_label("Impact assessment").fill("Integrity test passed; no impact.")
    investigation.get_by_label("Root-cause category").select_option("equipment")
    investigation.get_by_label("Root cause", exact=True).fill("The clamp's latch was worn.")
    investigation.get_by_label("Reason for change").fill("Investigation written.")
    investigation.get_by_role("button", name="Save the investigation").click()
    expect(page.locator(".message-success")).to_be_visible()

    # A CAPA with one action for the site lead.
    capa_panel = page.locator("#capa")
    capa_panel.locator("summary", has_text="Raise a CAPA").click()
    capa_panel.get_by_label("Title").fill("Replace worn clamps; check latches at fill")
    capa_panel.get_by_label("The plan").fill("Replace the clamp stock; add a latch check.")
    capa_panel.get_by_label("Owner").select_option(plant.lead.username)
    capa_panel.get_by_label("Due on", exact=True).fill(_in(14))
    capa_panel.get_by_label("Effectiveness check on").fill(_in(60))
    capa_panel.get_by_label("First action", exact=True).fill("Replace the clamp stock")
    capa_panel.get_by_label("First action due on").fill(_in(7))
    capa_panel.get_by_label("Reason for change").fill("CAPA from the investigation")
    capa_panel.get_by_role("button", name="Raise the CAPA").click()
    capa = Capa.objects.get()
    expect(page.get_by_role("heading", level=1)).to_contain_text(capa.number)
    _sign_out(page)

    # The site lead completes the action from the CAPA page.
    sign_in(page, base, "site_lead")
    page.goto(f"{base}/deviations/capa/{capa.number}/")
    page.get_by_label("What was done").fill("Stock replaced; old clamps quarantined.")
    page.get_by_role("button", name="Mark done").click()
    expect(page.locator(".message-success")).to_contain_text("done")
    _sign_out(page)

    # QA closes the deviation with a signature.
    sign_in(page, base, "qa")
    page.goto(f"{base}/deviations/{deviation.number}/")
    page.screenshot(path=artifacts / "e2e-deviations-detail.png", full_page=True)
    sign_dialog(page, opener="Close and sign", reason="Investigated; CAPA done.", username="qa")
    expect(page.locator(".message-success")).to_contain_text("closed")
    deviation.refresh_from_db()
    assert deviation.status == DeviationStatus.CLOSED
    assert deviation.closure_signature is not None
    assert deviation.closure_signature.signer_username == "qa"

    # The QP's page, reloaded, shows the gate clear.
    qp_page.reload()
    expect(qp_page.locator("#findings")).to_contain_text("No finding: every gate is clear.")
    expect(qp_page.get_by_role("button", name="Certify the batch")).to_have_count(1)
    qp_page.screenshot(path=artifacts / "e2e-deviations-clear.png", full_page=True)
    qp_context.close()
