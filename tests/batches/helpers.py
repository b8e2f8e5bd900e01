"""Building a manufacturing network, templates and batches for tests through the real services."""

from __future__ import annotations

import dataclasses
from typing import Any

from batches import services
from batches.choices import SpecificationTiming, StepRole
from batches.models import Batch, BatchTemplate
from controlsite.accounts.models import User
from masterfile import services as masterfile_services
from masterfile.choices import ProductSiteRole
from masterfile.models import Product
from sites import services as site_services
from sites.choices import SiteRole, SiteStatus
from sites.models import Site
from tests.masterfile.helpers import make_effective_version, make_product, signing
from tests.personas import make_persona
from tests.sites.helpers import make_site

COI = "PT-2026-0042"


@dataclasses.dataclass
class Plant:
    """A reference site LDS1 and a spoke MAN2, both active and listed; a product with an
    effective master file and an approved three-step template; the people who work there."""

    qa: User
    qp: User
    lead: User
    operator: User
    operator2: User
    reference: Site
    spoke: Site
    product: Product
    template: BatchTemplate


def approved_template(qa: User, product: Product) -> BatchTemplate:
    template = services.template_create(
        actor=qa, product=product, title="CAR-T manufacture at the bedside", reason="first MBR"
    )
    services.template_step_add(
        actor=qa,
        template=template,
        title="Thaw and wash",
        instruction="Thaw the apheresis bag in the 37 °C bath; wash twice.",
        parameters=[
            {"key": "bath-temp", "name": "Bath temperature", "unit": "°C", "low": 36, "high": 38},
            {"key": "volume", "name": "Final volume", "unit": "mL", "low": "45", "high": "55"},
        ],
        reason="step 1",
    )
    services.template_step_add(
        actor=qa,
        template=template,
        title="Transduce",
        instruction="Add the vector at the stated MOI.",
        requires_verification=True,
        parameters=[{"key": "moi", "name": "MOI", "low": 2, "high": 5}],
        reason="step 2",
    )
    services.template_step_add(
        actor=qa,
        template=template,
        title="Fill and label",
        instruction="Fill the infusion bag and apply the patient label.",
        role=StepRole.SITE_LEAD,
        reason="step 3",
    )
    services.template_specification_add(
        actor=qa,
        template=template,
        key="viability",
        name="Viability",
        unit="%",
        low=70,
        reason="registered CQA",
    )
    services.template_specification_add(
        actor=qa,
        template=template,
        key="endotoxin",
        name="Endotoxin",
        unit="EU/mL",
        high="5",
        registered=False,
        reason="in-house CQA",
    )
    services.template_specification_add(
        actor=qa,
        template=template,
        key="sterility",
        name="Sterility (days to growth)",
        unit="growth",
        high=0,
        timing=SpecificationTiming.LATE,
        reason="14-day culture follows release",
    )
    return services.template_approve(
        actor=qa, template=template, credentials=signing(qa), reason="MBR approved"
    )


def make_plant() -> Plant:
    qa, qp = make_persona("qa"), make_persona("qp")
    lead, operator = make_persona("site_lead"), make_persona("operator")
    operator2 = make_persona("operator", username="operator2")
    reference = make_site(qa, "LDS1", SiteStatus.ACTIVE)
    spoke = make_site(qa, "MAN2", SiteStatus.ACTIVE)
    for site in (reference, spoke):
        for user, role in (
            (lead, SiteRole.SITE_LEAD),
            (operator, SiteRole.SITE_OPERATOR),
            (operator2, SiteRole.SITE_OPERATOR),
        ):
            site_services.membership_add(
                actor=qa, site=site, user=user, role=role, reason="works here"
            )
    product = make_product(qa, reference, "CART-01", shelf_life_minutes=120)
    masterfile_services.product_site_add(
        actor=qa,
        product=product,
        site=spoke,
        role=ProductSiteRole.MANUFACTURING,
        reason="second site",
    )
    make_effective_version(qa, qp, product)
    template = approved_template(qa, product)
    return Plant(qa, qp, lead, operator, operator2, reference, spoke, product, template)


def start(plant: Plant, site: Site | None = None) -> Batch:
    return services.batch_start(
        actor=plant.operator, site=site or plant.reference, product=plant.product, coi_reference=COI
    )


GOOD_STEP_VALUES: dict[int, dict[str, Any]] = {
    1: {"bath-temp": "37.0", "volume": 50},
    2: {"moi": 3},
    3: {},
}


def do_steps(plant: Plant, batch: Batch, upto: int = 3) -> Batch:
    """Perform (and verify where needed) steps 1…`upto` with values inside their limits."""
    for position in range(1, upto + 1):
        performer = plant.lead if position == 3 else plant.operator
        record = services.step_record(
            actor=performer,
            batch=batch,
            position=position,
            values=GOOD_STEP_VALUES[position],
            credentials=signing(performer),
        )
        if position == 2:
            services.step_verify(
                actor=plant.operator2, record=record, credentials=signing(plant.operator2)
            )
    batch.refresh_from_db()
    return batch


def passing_results(plant: Plant, batch: Batch) -> None:
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="viability", value="92.5"
    )
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="endotoxin", value=1
    )


def ready_batch(plant: Plant) -> Batch:
    """A completed batch with passing results: every gate clear."""
    batch = do_steps(plant, start(plant))
    passing_results(plant, batch)
    batch.refresh_from_db()
    return batch
