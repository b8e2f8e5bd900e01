"""Read and understood, end to end (issue 7, browser test; TR-03, TR-05, TR-07, ES-01): an
operator at LDS1 whose curriculum needs SOP-MFG-001 has read v1; QA issues v2; the matrix shows
the operator's cell missing; the operator opens My training, reads v2 (its file and what
changed) and signs "read and understood" in the signature dialog; QA's matrix, reloaded, shows
the cell current — headless Chromium against a live server.

Screenshots land in tests/artifacts/: e2e-training-home-panel.png (the operator's "Your
training" panel), e2e-training-my.png (their to-do list), e2e-training-read.png (the
read-and-sign page with the signature dialog open), e2e-training-matrix.png (QA's matrix after
the signature, with a colleague overdue and another due for the refresher) and
e2e-training-site-panel.png (the site page's training panel).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Locator, Page, expect

from controlsite.accounts.models import User
from controlsite.accounts.roles import Role
from controlsite.accounts.services import role_grant, user_create
from controlsite.audit.context import audit_context
from sites import services as site_services
from sites.choices import SiteRole, SiteStatus
from sites.models import Site
from tests.e2e.test_batches import _sign_out
from tests.e2e.test_shell import sign_in
from tests.masterfile.helpers import signing
from tests.personas import PASSWORD, give_accountability, make_persona
from tests.sites.helpers import make_site
from tests.training.helpers import curriculum, issue, item, make_procedure
from training import services
from training.choices import AssignmentStatus, CellState
from training.models import Assignment, TrainingRecord

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("transactional_db")]


def _colleague(qa: User, site: Site, username: str, first: str, last: str) -> User:
    """Another operator at the site, with a name of their own."""
    user = user_create(
        username=username,
        first_name=first,
        last_name=last,
        email=f"{username}@example.test",
        password=PASSWORD,
        created_by=None,
        reason="e2e colleague",
        must_change_password=False,
        validate=False,
    )
    give_accountability(user)
    role_grant(user=user, role=Role.SITE_OPERATOR, granted_by=None, reason="e2e colleague")
    site_services.membership_add(
        actor=qa, site=site, user=user, role=SiteRole.SITE_OPERATOR, reason="joins"
    )
    return user


def _cell(page: Page, person: str, code: str) -> Locator:
    row = page.locator("table.matrix tbody tr", has=page.locator("th", has_text=person))
    return row.locator(f'td[title^="{code}:"]')


def test_an_operator_reads_a_new_sop_version_and_the_matrix_turns_current(
    live_server, e2e_page: Page, e2e_browser: Browser, artifacts: Path
) -> None:
    qa, trainer = make_persona("qa"), make_persona("trainer")
    lead, operator = make_persona("site_lead"), make_persona("operator")
    site = make_site(qa, "LDS1", SiteStatus.ACTIVE)
    for user, role in ((lead, SiteRole.SITE_LEAD), (operator, SiteRole.SITE_OPERATOR)):
        site_services.membership_add(actor=qa, site=site, user=user, role=role, reason="joins")
    late = _colleague(qa, site, "nadia", "Nadia", "Noor")
    refresher_due = _colleague(qa, site, "ravi", "Ravi", "Rao")
    procedure = make_procedure(qa)
    v1 = issue(qa, procedure, summary="First issue.")
    sop = procedure.training_item
    curriculum(trainer, "site_operator", site, sop, item("GXP-IND"), item("GXP-REF"))
    today = timezone.localdate()
    # Everyone has the induction and the refresher; Ravi's refresher runs out in a fortnight.
    for user in (operator, late, refresher_due):
        services.record_enter(
            actor=trainer,
            trainee=user,
            item=item("GXP-IND"),
            completed_on=today - dt.timedelta(days=200),
            notes="Induction day, attendance sheet QF-12.",
            credentials=signing(trainer),
        )
        days = 351 if user == refresher_due else 40
        refreshed = today - dt.timedelta(days=days)
        services.record_enter(
            actor=trainer,
            trainee=user,
            item=item("GXP-REF"),
            completed_on=refreshed,
            notes="Refresher session.",
            credentials=signing(trainer),
        )
    # The operator and Ravi read v1; Nadia never did.
    for user in (operator, refresher_due):
        services.acknowledge(actor=user, item=sop, version=v1, credentials=signing(user))

    # QA issues v2 (through the service): the operator must read it.
    v2 = issue(qa, procedure, summary="Hold time before filling shortened from 60 to 30 minutes.")
    assert Assignment.objects.filter(
        user=operator, item=sop, procedure_version=v2, status=AssignmentStatus.OPEN
    ).exists()
    # Nadia's deadline has passed.
    overdue = Assignment.objects.get(user=late, item=sop, status=AssignmentStatus.OPEN)
    overdue.due_on = today - dt.timedelta(days=5)
    with audit_context(reason="e2e: the deadline has passed"):
        overdue.save(update_fields=["due_on", "updated_at"])
    base = live_server.url

    # QA, in a browser of their own, sees the operator's cell missing.
    qa_context = e2e_browser.new_context(
        locale="en-GB", timezone_id="UTC", viewport={"width": 1280, "height": 800}
    )
    qa_context.set_default_timeout(10_000)
    qa_page = qa_context.new_page()
    sign_in(qa_page, base, "qa")
    qa_page.goto(f"{base}/training/matrix/LDS1/")
    expect(_cell(qa_page, "Omar Okafor", "SOP-MFG-001")).to_have_attribute(
        "data-state", CellState.MISSING
    )

    # The operator opens My training from the home page and reads v2.
    page = e2e_page
    sign_in(page, base, "operator")
    mine = page.get_by_role("region", name="Your training")
    expect(mine).to_contain_text("SOP-MFG-001 v2")
    mine.screenshot(path=artifacts / "e2e-training-home-panel.png")
    page.get_by_role("link", name="Open my training").click()
    todo = page.get_by_role("region", name="To do")
    expect(todo).to_contain_text("New procedure version")
    page.screenshot(path=artifacts / "e2e-training-my.png", full_page=True)
    todo.get_by_role("link", name="Read and sign SOP-MFG-001").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("SOP-MFG-001 v2")
    reading = page.get_by_role("region", name="The procedure to read")
    expect(reading).to_contain_text("shortened from 60 to 30 minutes")
    file_link = reading.get_by_role("link", name="Open v2 of SOP-MFG-001")
    expect(file_link).to_have_attribute("href", "/training/procedures/SOP-MFG-001/v2/file/")
    download = page.request.get(f"{base}/training/procedures/SOP-MFG-001/v2/file/")
    assert download.ok and download.body().startswith(b"%PDF")
    # The signature dialog: the first signing of the session asks for the username too.
    page.get_by_role("button", name="Sign as read and understood").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Electronic signature — Acknowledged")
    dialog.get_by_label("Username").fill("operator")
    dialog.get_by_label("Password").fill(PASSWORD)
    dialog.get_by_label("Reason for signing").fill("Read v2; the new hold time is understood.")
    page.screenshot(path=artifacts / "e2e-training-read.png", full_page=True)
    dialog.get_by_role("button", name="Sign as read and understood").click()
    expect(page.locator(".message-success")).to_contain_text(
        "SOP-MFG-001 v2 signed as read and understood."
    )
    expect(page.get_by_role("region", name="To do")).to_contain_text("Nothing to do")
    history = page.get_by_role("region", name="My records")
    expect(history).to_contain_text("Omar Okafor, Acknowledged")
    record = TrainingRecord.objects.get(user=operator, item=sop, procedure_version=v2)
    assert record.signature is not None and record.signature.meaning == "acknowledged"
    _sign_out(page)

    # QA's matrix, reloaded: the operator's cell is current; Nadia is overdue, Ravi due soon.
    qa_page.reload()
    cell = _cell(qa_page, "Omar Okafor", "SOP-MFG-001")
    expect(cell).to_have_attribute("data-state", CellState.CURRENT)
    expect(cell).to_contain_text("Current")
    expect(_cell(qa_page, "Nadia Noor", "SOP-MFG-001")).to_have_attribute(
        "data-state", CellState.OVERDUE
    )
    expect(_cell(qa_page, "Ravi Rao", "GXP-REF")).to_have_attribute(
        "data-state", CellState.DUE_SOON
    )
    qa_page.screenshot(path=artifacts / "e2e-training-matrix.png", full_page=True)

    # The site page shows the compliance the matrix shows, loaded into its training panel.
    figure = qa_page.locator(".compliance-figure").inner_text()
    qa_page.goto(f"{base}/sites/LDS1/")
    panel = qa_page.get_by_role("region", name="Training", exact=True)
    expect(panel.locator(".compliance-figure")).to_have_text(figure)
    expect(panel.get_by_role("link", name="Open the training matrix")).to_be_visible()
    panel.screenshot(path=artifacts / "e2e-training-site-panel.png")
    qa_context.close()
