"""A drifting site, end to end (issue 8, browser test; SO-07, SO-08, SO-09): MAN2's viability
drifts below the reference site's; the evaluation raises its signals and the deviations app
opens one deviation for each. Control Site QA opens the oversight dashboard, sees MAN2 flagged,
drills down to the product's comparability table and MAN2's control chart with the broken run
rule marked, and follows the signal to the deviation it opened — headless Chromium against a
live server.

Screenshots land in tests/artifacts/: e2e-comparability-dashboard.png (the oversight dashboard
with MAN2 flagged), e2e-comparability-product.png (the sites against the reference site, with
the forest plot), e2e-comparability-chart.png (MAN2's control chart) and
e2e-comparability-deviation.png (the deviation the signal opened).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from batches import services as batch_services
from batches.choices import ComparabilitySignalKind, LimitBasis
from batches.comparability import services
from batches.models import ComparabilitySignal
from controlsite.audit.context import audit_context
from deviations import services as deviation_services
from deviations.models import Deviation
from tests.batches.helpers import COI, make_plant
from tests.e2e.test_shell import sign_in
from tests.masterfile.helpers import signing

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("transactional_db")]

REFERENCE = [91.0, 93.0, 92.0, 94.0, 91.5, 92.5, 93.5, 92.0, 91.0, 93.0]
DRIFTING = [88.0, 87.5, 88.2, 87.0, 86.5, 87.8, 86.9, 86.2, 85.8, 85.5]


def test_qa_sees_the_drifting_site_its_chart_and_its_deviation(
    live_server: object, e2e_page: Page, artifacts: Path
) -> None:
    plant = make_plant()
    with audit_context(reason="e2e comparability"):
        services.reference_limit_approve(
            actor=plant.qa,
            product=plant.product,
            key="viability",
            basis=LimitBasis.SPECIFICATION,
            margin="2",
            lower="82",  # centre 92: the reference site's results straddle it
            upper="102",
            credentials=signing(plant.qa),
            reason="limits for comparability",
        )
        for site, values in ((plant.reference, REFERENCE), (plant.spoke, DRIFTING)):
            for value in values:
                batch = batch_services.batch_start(
                    actor=plant.operator, site=site, product=plant.product, coi_reference=COI
                )
                batch_services.result_record(
                    actor=plant.operator, batch=batch, specification_key="viability", value=value
                )
        services.comparability_evaluate(product_id=plant.product.pk)
        deviation_services.signals_process()
    run_rule = ComparabilitySignal.objects.get(kind=ComparabilitySignalKind.RUN_RULE)
    deviation = Deviation.objects.get(comparability_signal=run_rule)
    assert run_rule.site == plant.spoke

    base = live_server.url  # type: ignore[attr-defined]
    page = e2e_page
    sign_in(page, base, "qa")
    page.goto(f"{base}/sites/oversight/")
    spoke = page.locator("tr", has=page.locator("a.site-code", has_text="MAN2"))
    expect(spoke).to_have_class("oversight-flagged")
    expect(spoke.locator(".flag-reasons")).to_contain_text("omparability")
    reference = page.locator("tr", has=page.locator("a.site-code", has_text="LDS1"))
    expect(reference).not_to_have_class("oversight-flagged")
    page.screenshot(path=artifacts / "e2e-comparability-dashboard.png", full_page=True)

    # Drill down: the comparability cell of MAN2's row opens the product's table.
    spoke.locator(f'a[href*="/batches/comparability/{plant.product.code}/"]').first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(plant.product.code)
    row = page.locator("tr", has=page.locator("a.site-code", has_text="MAN2"))
    expect(row).to_contain_text("Not shown")
    page.screenshot(path=artifacts / "e2e-comparability-product.png", full_page=True)

    row.locator("a.site-code").click()
    chart = page.locator("svg[role='img']").first
    expect(chart).to_be_visible()
    expect(page.locator("body")).to_contain_text("Rule 2")
    page.screenshot(path=artifacts / "e2e-comparability-chart.png", full_page=True)

    # The signal opened a deviation: follow it there.
    page.locator(f"#signal-{run_rule.pk}").get_by_role("link", name="Open the deviation").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(deviation.number)
    expect(page.locator("body")).to_contain_text("comparability")
    page.screenshot(path=artifacts / "e2e-comparability-deviation.png", full_page=True)
