"""Demo comparability data, for `manage.py demo_setup` (issue 8 §8): batches at two products'
reference sites and the sites that make them, one of which drifts.

Registered after the batches loader (whose templates and staffing it uses) and before the
deviations loader, which turns the comparability signals raised here into deviations. Acting
only through the services, as the person whose role would do each step:

- NAT-CD19 batches made, tested and certified at its reference site NCL1 and at MAN1, where
  viability drifts down batch after batch: MAN1's control chart breaks Nelson rule 2 and its
  equivalence with NCL1 is not shown — two signals, two deviations;
- NAT-WBC batches at its reference site BHM1 and at LDS1, comparable;
- reference limits approved by QA with a signature: viability and radiochemical purity from
  three verification batches of the reference site (mean ± 3 SD);
- annual checks: LDS1's reviewed (comparable), MAN1's recorded and awaiting QA's review (not
  shown), SHF1's overdue.

Idempotent: keyed on the batches' chain-of-identity references (DEMO-CMP-…); a second run
creates nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence

from django.db import transaction
from django.utils import timezone

from batches import services
from batches.choices import BatchStatus, LimitBasis
from batches.comparability import services as comparability
from batches.comparability.selectors import active_limit
from batches.demo import DemoBatch, People, _steps, _user
from batches.models import Batch, ComparabilityCheck
from controlsite import demo
from controlsite.audit.context import audit_context
from masterfile.demo import signer
from masterfile.models import Product
from sites import demo as site_demo
from sites.models import Site

COI_PREFIX = "DEMO-CMP"
DRIFTING = "MAN1"


@dataclasses.dataclass(frozen=True)
class DemoComparability:
    """One product's demo history: the CQA compared, each site's values in the order its
    batches were made (the reference site first; its first three are verification batches),
    the other results every batch needs, and the limits approved."""

    product: str
    key: str
    margin: str
    series: Mapping[str, Sequence[float]]
    also: Mapping[str, str]  # other CQAs: a passing value for each batch


PRODUCTS: tuple[DemoComparability, ...] = (
    DemoComparability(
        product="NAT-CD19",
        key="viability",
        margin="2.5",
        series={
            "NCL1": (91.8, 92.6, 90.9, 92.1, 91.4, 92.9, 91.1, 92.3, 91.7, 92.0),
            # Drifts down: nine and more in a row below the centre line, the mean 2.9 % low.
            DRIFTING: (91.3, 90.6, 91.0, 89.9, 89.4, 89.7, 88.8, 88.5, 88.9, 87.9, 87.6, 87.2),
        },
        also={"endotoxin": "0.7"},
    ),
    DemoComparability(
        product="NAT-WBC",
        key="rcp",
        margin="2",
        series={
            "BHM1": (93.2, 94.1, 92.6, 93.8, 93.0, 94.4, 92.9, 93.5),
            "LDS1": (93.6, 92.8, 93.9, 93.1, 94.0, 92.7, 93.4, 93.3),
        },
        also={"appearance": "0"},
    ),
)

# The annual checks: (product, site, how: "reviewed" | "recorded" | "overdue", paired shift).
CHECKS: tuple[tuple[str, str, str, float], ...] = (
    ("NAT-WBC", "LDS1", "reviewed", 0.2),
    ("NAT-CD19", DRIFTING, "recorded", -3.1),
    ("NAT-CD19", "SHF1", "overdue", 0.0),
)
SPLIT = ((92.1, 0.1), (91.4, -0.2), (92.8, 0.3), (91.9, -0.1), (92.4, 0.0))


def _batch(spec: DemoComparability, site: Site, index: int, value: float, people: People) -> Batch:
    coi = f"{COI_PREFIX}-{site.code}-{index:03d}"
    product = Product.objects.get(code=spec.product)
    with audit_context(user=people.operator):
        batch = services.batch_start(
            actor=people.operator,
            site=site,
            product=product,
            coi_reference=coi,
            reason="Demo comparability history.",
        )
    _steps(batch, DemoBatch(coi, site.code, spec.product), people)
    with audit_context(user=people.operator):
        services.results_record(
            actor=people.operator,
            batch=batch,
            entries=[
                services.ResultEntry(spec.key, f"{value:.1f}"),
                *(services.ResultEntry(key, other) for key, other in spec.also.items()),
            ],
            reason="QC results from the site laboratory",
        )
    batch.refresh_from_db()
    if batch.status == BatchStatus.COMPLETED:
        with audit_context(user=people.qp):
            services.batch_certify(
                actor=people.qp,
                batch=batch,
                credentials=people.sign_qp(),
                reason="Batch record reviewed: every gate clear; certified.",
            )
    return batch


def _history(people: People) -> None:
    for spec in PRODUCTS:
        for code, values in spec.series.items():
            site = Site.objects.get(code=code)
            for index, value in enumerate(values, start=1):
                _batch(spec, site, index, value, people)


def _limits(people: People) -> None:
    for spec in PRODUCTS:
        product = Product.objects.select_related("reference_site").get(code=spec.product)
        code = product.reference_site.code
        reference = Batch.objects.filter(
            coi_reference__in=[f"{COI_PREFIX}-{code}-{i:03d}" for i in (1, 2, 3)]
        )
        if active_limit(product, spec.key) is None:
            comparability.reference_limit_approve(
                actor=people.qa,
                product=product,
                key=spec.key,
                basis=LimitBasis.VERIFICATION,
                margin=spec.margin,
                batches=[b.number for b in reference[:3]],
                credentials=people.sign_qa(),
                reason=f"Reference limits from {product.reference_site.code}'s three "
                "verification batches (process validation report).",
            )


def _checks(people: People) -> None:
    today = timezone.localdate()
    for code, site_code, how, shift in CHECKS:
        product = Product.objects.get(code=code)
        site = Site.objects.get(code=site_code)
        if ComparabilityCheck.objects.filter(product=product, site=site).exists():
            continue
        key = next(spec.key for spec in PRODUCTS if spec.product == code)
        overdue = how == "overdue"
        # The overdue check is the yearly schedule's: it finds the site's last check reviewed
        # 377 days ago (a person may not schedule a check already late).
        check = comparability.check_schedule(
            actor=None if overdue else people.qa,
            product=product,
            site=site,
            due_on=today + dt.timedelta(days=-12 if overdue else 30),
            reason="Yearly comparability check (SOP-QA-014).",
        )
        if overdue:
            continue
        comparability.check_record(
            actor=people.qa,
            check=check,
            material=f"Starting material split SM-2026-{site_code}: half made at "
            f"{product.reference_site.code}, half at {site_code}",
            pairs=[
                comparability.PairEntry(
                    key, f"SM-{site_code}-{lot}", ref, round(ref + shift + d, 2)
                )
                for lot, (ref, d) in enumerate(SPLIT, start=1)
            ],
            reason="Paired results from the QC laboratory",
        )
        if how == "reviewed":
            comparability.check_review(
                actor=people.qa,
                check=check,
                conclusion="Equivalent to the reference site within the margin; no action.",
                credentials=people.sign_qa(),
                reason="Annual comparability check reviewed.",
            )
    # The overdue check's reminder to QA and the site's leads, as the daily beat sends it.
    comparability.checks_overdue_remind()


def load_demo_comparability() -> demo.DemoSection:
    qa, qp = _user(site_demo.DEMO_QA), _user(site_demo.DEMO_QP)
    # The results commit first, so the evaluation each one asks for finds no limits yet;
    # approving the limits then evaluates every site once. Each part makes only what is missing.
    with transaction.atomic(), signer(qa) as sign_qa, signer(qp) as sign_qp:
        people = People(
            qa=qa,
            qp=qp,
            lead=_user(site_demo.DEMO_SITE_LEAD),
            operator=_user(site_demo.DEMO_OPERATOR),
            sign_qa=sign_qa,
            sign_qp=sign_qp,
        )
        if not Batch.objects.filter(coi_reference__startswith=COI_PREFIX).exists():
            _history(people)
    with transaction.atomic(), signer(qa) as sign_qa, audit_context(user=qa):
        people = dataclasses.replace(people, sign_qa=sign_qa)
        _limits(people)
        _checks(people)
    for spec in PRODUCTS:
        comparability.comparability_evaluate(product_id=Product.objects.get(code=spec.product).pk)
    rows = [
        (spec.product, code, str(len(values)), "drifts" if code == DRIFTING else "")
        for spec in PRODUCTS
        for code, values in spec.series.items()
    ]
    return demo.DemoSection(
        "Demo comparability",
        (
            *demo.table(("Product", "Site", "Batches", "Story"), rows),
            f"  {DRIFTING}'s viability drifts down: its control chart breaks rule 2 and "
            "equivalence with the reference site is not shown (see the oversight dashboard).",
        ),
    )
