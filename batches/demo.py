"""Demo batch templates and batches in every state, for `manage.py demo_setup` (issue 5 §10;
design §9).

Registered with the kernel's demo registry after the master-file loader (whose products,
effective master files and sites it uses). Acting only through `batches.services` (and
`sites.services` to put the demo operator and site lead to work at the sites that make batches),
as the demo person whose role would do each step — Control Site QA writes and approves each
product's batch template (BR-01), the operator performs steps, the site lead verifies and fills
(BR-05, BR-15), the QP certifies, certifies under concession or rejects with password and
authenticator code (BR-03, BR-04, BR-08, ES-09) — it records:

- in progress: NCL1 NAT-CD19 at step 1; MAN1 NAT-CD19 with step 2 awaiting verification; LDS1
  NAT-WBC with an out-of-limit labelling efficiency at step 1 (flagged and signalled);
- awaiting certification: two NAT-WBC batches (45-minute shelf life: they expire within
  minutes), a NAT-CMV batch with a failed in-house endotoxin result (a warning the QP must
  justify) and a NAT-CD19 batch with a failed registered viability (blocked: a concession
  candidate);
- decided: a NAT-CD19 batch certified, supplied and administered; a NAT-CD19 batch certified
  whose late sterility result then failed (escalated at once); a NAT-CMV batch certified under
  concession with the clinician's request; a NAT-WBC batch rejected.

Idempotent: templates are made only for products without an approved one, batches are keyed
on their chain-of-identity references (DEMO-…), memberships only where missing; a second run
creates nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from django.db import transaction

from batches import services
from batches.choices import BatchStatus, SpecificationTiming, StepRole
from batches.models import Batch, BatchTemplate
from batches.selectors import approved_template
from controlsite import demo
from controlsite.accounts.models import User
from controlsite.audit.context import audit_context
from controlsite.signatures.services import SignatureCredentials
from masterfile.demo import signer
from masterfile.models import Product
from sites import demo as site_demo
from sites import services as site_services
from sites.choices import SiteRole
from sites.models import Site
from sites.selectors import live_memberships

# Where the demo operator and site lead must work for the demo batches (added where missing).
STAFFING: tuple[tuple[str, str, SiteRole], ...] = (
    ("MAN1", site_demo.DEMO_OPERATOR, SiteRole.SITE_OPERATOR),
    ("BHM1", site_demo.DEMO_OPERATOR, SiteRole.SITE_OPERATOR),
    ("BHM1", site_demo.DEMO_SITE_LEAD, SiteRole.SITE_LEAD),
    ("MU01", site_demo.DEMO_OPERATOR, SiteRole.SITE_OPERATOR),
    ("MU01", site_demo.DEMO_SITE_LEAD, SiteRole.SITE_LEAD),
    ("NCL1", site_demo.DEMO_SITE_LEAD, SiteRole.SITE_LEAD),
    ("LDS1", site_demo.DEMO_SITE_LEAD, SiteRole.SITE_LEAD),
    ("MAN1", site_demo.DEMO_SITE_LEAD, SiteRole.SITE_LEAD),
)


#
# The templates: three steps (the second verified by a second person, the third by the site
# lead) and three CQAs (registered, in-house, late) per product
#


@dataclasses.dataclass(frozen=True)
class DemoStep:
    title: str
    instruction: str
    parameters: tuple[dict[str, Any], ...]
    role: StepRole = StepRole.SITE_OPERATOR
    requires_verification: bool = False
    good: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class DemoSpec:
    key: str
    name: str
    unit: str
    low: str | None
    high: str | None
    registered: bool = True
    timing: SpecificationTiming = SpecificationTiming.BEFORE_RELEASE
    good: str = ""
    bad: str = ""


@dataclasses.dataclass(frozen=True)
class DemoTemplate:
    product: str
    title: str
    steps: tuple[DemoStep, ...]
    specs: tuple[DemoSpec, ...]


TEMPLATES: tuple[DemoTemplate, ...] = (
    DemoTemplate(
        product="NAT-CD19",
        title="MBR-CD19 bedside CAR-T manufacture (CliniMACS Prodigy)",
        steps=(
            DemoStep(
                "Receive and thaw the apheresis",
                "Check the chain-of-identity label against the order; thaw in the 37 °C bath.",
                (
                    {
                        "key": "bath-temp",
                        "name": "Bath temperature",
                        "unit": "°C",
                        "low": "36",
                        "high": "38",
                    },
                    {
                        "key": "wbc",
                        "name": "WBC count",
                        "unit": "×10⁹/L",
                        "low": "5",
                        "high": "200",
                    },
                ),
                good={"bath-temp": "37.1", "wbc": "48"},
            ),
            DemoStep(
                "Transduce and expand",
                "Add the CD19 CAR vector at the stated MOI; expand for 8 days at 37 °C.",
                ({"key": "moi", "name": "MOI", "unit": "", "low": "2", "high": "5"},),
                requires_verification=True,
                good={"moi": "3"},
            ),
            DemoStep(
                "Formulate, fill and label",
                "Formulate in the infusion bag; apply the patient label; check it twice.",
                (
                    {
                        "key": "volume",
                        "name": "Fill volume",
                        "unit": "mL",
                        "low": "45",
                        "high": "55",
                    },
                ),
                role=StepRole.SITE_LEAD,
                good={"volume": "50"},
            ),
        ),
        specs=(
            DemoSpec("viability", "Viability", "%", "70", None, good="91.4", bad="58.2"),
            DemoSpec(
                "endotoxin",
                "Endotoxin",
                "EU/mL",
                None,
                "5",
                registered=False,
                good="0.8",
                bad="7.5",
            ),
            DemoSpec(
                "sterility",
                "Sterility (BacT/ALERT, 7 days)",
                "positive bottles",
                None,
                "0",
                timing=SpecificationTiming.LATE,
                good="0",
                bad="1",
            ),
        ),
    ),
    DemoTemplate(
        product="NAT-CMV",
        title="MBR-CMV CMV-specific T-cell selection in modular unit",
        steps=(
            DemoStep(
                "Receive the donor leukapheresis",
                "Check the donor and recipient identifiers; record the transit temperature.",
                (
                    {
                        "key": "transit-temp",
                        "name": "Transit temperature",
                        "unit": "°C",
                        "low": "2",
                        "high": "8",
                    },
                ),
                good={"transit-temp": "4.6"},
            ),
            DemoStep(
                "Stimulate and select (CliniMACS Cytokine Capture)",
                "Stimulate with CMV pp65 peptides; select IFN-γ secreting cells.",
                (
                    {
                        "key": "purity",
                        "name": "IFN-γ+ purity",
                        "unit": "%",
                        "low": "60",
                        "high": "100",
                    },
                ),
                requires_verification=True,
                good={"purity": "78"},
            ),
            DemoStep(
                "Dose, fill and label",
                "Dose to the prescribed CD3+ cells/kg; fill; apply the patient label.",
                (
                    {
                        "key": "dose",
                        "name": "CD3+ dose",
                        "unit": "×10⁴/kg",
                        "low": "1",
                        "high": "2.5",
                    },
                ),
                role=StepRole.SITE_LEAD,
                good={"dose": "2"},
            ),
        ),
        specs=(
            DemoSpec("viability", "Viability", "%", "80", None, good="94", bad="71"),
            DemoSpec(
                "endotoxin",
                "Endotoxin",
                "EU/mL",
                None,
                "2",
                registered=False,
                good="0.3",
                bad="3.1",
            ),
            DemoSpec(
                "mycoplasma",
                "Mycoplasma (PCR)",
                "detected",
                None,
                "0",
                timing=SpecificationTiming.LATE,
                good="0",
                bad="1",
            ),
        ),
    ),
    DemoTemplate(
        product="NAT-WBC",
        title="MBR-WBC 99mTc-exametazime leucocyte labelling",
        steps=(
            DemoStep(
                "Separate the leucocytes",
                "Sediment the blood with HES; separate the leucocyte-rich plasma.",
                (
                    {
                        "key": "volume",
                        "name": "Blood volume",
                        "unit": "mL",
                        "low": "40",
                        "high": "60",
                    },
                ),
                good={"volume": "51"},
            ),
            DemoStep(
                "Label with 99mTc-exametazime",
                "Reconstitute the kit; incubate 10 minutes; wash twice.",
                (
                    {
                        "key": "activity",
                        "name": "Activity",
                        "unit": "MBq",
                        "low": "185",
                        "high": "370",
                    },
                    {
                        "key": "efficiency",
                        "name": "Labelling efficiency",
                        "unit": "%",
                        "low": "50",
                        "high": "100",
                    },
                ),
                requires_verification=True,
                good={"activity": "260", "efficiency": "72"},
            ),
            DemoStep(
                "Dispense and label the syringe",
                "Dispense into the shielded syringe; apply the patient label.",
                (
                    {
                        "key": "dose",
                        "name": "Dispensed activity",
                        "unit": "MBq",
                        "low": "185",
                        "high": "250",
                    },
                ),
                role=StepRole.SITE_LEAD,
                good={"dose": "214"},
            ),
        ),
        specs=(
            DemoSpec("rcp", "Radiochemical purity", "%", "80", None, good="93", bad="74"),
            DemoSpec(
                "appearance",
                "Clumping (visual)",
                "clumps",
                None,
                "0",
                registered=False,
                good="0",
                bad="2",
            ),
            DemoSpec(
                "sterility",
                "Sterility of residues",
                "growth",
                None,
                "0",
                timing=SpecificationTiming.LATE,
                good="0",
                bad="1",
            ),
        ),
    ),
)
TEMPLATE_BY_PRODUCT = {t.product: t for t in TEMPLATES}


#
# The batches and how far each goes
#


@dataclasses.dataclass(frozen=True)
class DemoBatch:
    coi: str  # the chain-of-identity reference: the demo's key for the batch
    site: str
    product: str
    steps: int = 3  # steps performed (the last of them unverified if `verify_last` is False)
    verify_last: bool = True
    out_of_limit: Mapping[str, str] = dataclasses.field(default_factory=dict)  # at step 1
    results: str = "good"  # "good", "none", "warn" (in-house fails), "block" (registered fails)
    decision: str = ""  # "", "certify", "concession", "reject"
    justification: str = ""
    late: str = ""  # "", "good", "bad": the late result after certification
    supplied: bool = False
    story: str = ""


BATCHES: tuple[DemoBatch, ...] = (
    DemoBatch(
        "DEMO-CD19-1001",
        "NCL1",
        "NAT-CD19",
        steps=0,
        results="none",
        story="in progress: started, step 1 next",
    ),
    DemoBatch(
        "DEMO-CD19-1002",
        "MAN1",
        "NAT-CD19",
        steps=2,
        verify_last=False,
        results="none",
        story="in progress: step 2 awaits the second person's verification",
    ),
    DemoBatch(
        "DEMO-WBC-2001",
        "LDS1",
        "NAT-WBC",
        steps=1,
        results="none",
        out_of_limit={"volume": "38"},
        story="in progress: step 1 out of limits (flagged, deviation signalled)",
    ),
    DemoBatch(
        "DEMO-WBC-2002",
        "BHM1",
        "NAT-WBC",
        story="awaiting certification: 45-minute shelf life, expiring within minutes",
    ),
    DemoBatch(
        "DEMO-WBC-2003",
        "LDS1",
        "NAT-WBC",
        story="awaiting certification: 45-minute shelf life, expiring within minutes",
    ),
    DemoBatch(
        "DEMO-CMV-3001",
        "MU01",
        "NAT-CMV",
        results="warn",
        story="awaiting certification: in-house endotoxin failed (a warning to justify)",
    ),
    DemoBatch(
        "DEMO-CD19-1003",
        "NCL1",
        "NAT-CD19",
        results="block",
        story="awaiting certification: registered viability failed (concession candidate)",
    ),
    DemoBatch(
        "DEMO-CD19-1004",
        "MAN1",
        "NAT-CD19",
        decision="certify",
        late="good",
        supplied=True,
        story="certified, supplied and administered",
    ),
    DemoBatch(
        "DEMO-CD19-1005",
        "NCL1",
        "NAT-CD19",
        decision="certify",
        late="bad",
        story="certified; the late sterility result then failed (escalated)",
    ),
    DemoBatch(
        "DEMO-CMV-3002",
        "MU01",
        "NAT-CMV",
        results="block",
        decision="concession",
        story="certified under concession at the clinician's request",
    ),
    DemoBatch(
        "DEMO-WBC-2004",
        "BHM1",
        "NAT-WBC",
        steps=2,
        results="none",
        decision="reject",
        story="rejected: labelling vial cracked during incubation",
    ),
)


@dataclasses.dataclass(frozen=True)
class People:
    qa: User
    qp: User
    lead: User
    operator: User
    sign_qa: Callable[[], SignatureCredentials]
    sign_qp: Callable[[], SignatureCredentials]

    def sign(self, user: User) -> SignatureCredentials:
        if user == self.qp:
            return self.sign_qp()
        if user == self.qa:
            return self.sign_qa()
        return demo.credentials(user.get_username())


def _user(username: str) -> User:
    return User.objects.get(username__iexact=username)


def _staff(qa: User) -> None:
    for code, username, role in STAFFING:
        site = Site.objects.get(code=code)
        user = _user(username)
        if live_memberships().filter(site=site, user=user, role=role).exists():
            continue
        site_services.membership_add(
            actor=qa,
            site=site,
            user=user,
            role=role,
            reason=f"Works at {code} on the demo batches ({SiteRole(role).label.lower()}).",
        )


def _template(spec: DemoTemplate, people: People) -> BatchTemplate:
    product = Product.objects.get(code=spec.product)
    existing = approved_template(product)
    if existing is not None:
        return existing
    qa = people.qa
    with audit_context(user=qa):
        template = services.template_create(
            actor=qa, product=product, title=spec.title, reason=f"{spec.title}: first issue."
        )
        for step in spec.steps:
            services.template_step_add(
                actor=qa,
                template=template,
                title=step.title,
                instruction=step.instruction,
                role=step.role,
                requires_verification=step.requires_verification,
                parameters=[dict(p) for p in step.parameters],
                reason=f"Step “{step.title}” as validated (process validation report).",
            )
        for cqa in spec.specs:
            services.template_specification_add(
                actor=qa,
                template=template,
                key=cqa.key,
                name=cqa.name,
                unit=cqa.unit,
                low=cqa.low,
                high=cqa.high,
                registered=cqa.registered,
                timing=cqa.timing,
                reason=f"CQA {cqa.name} from the product specification.",
            )
        return services.template_approve(
            actor=qa,
            template=template,
            credentials=people.sign_qa(),
            reason=f"{spec.title} reviewed against the effective master file; approved.",
        )


def _steps(batch: Batch, spec: DemoBatch, people: People) -> None:
    template = TEMPLATE_BY_PRODUCT[spec.product]
    for position, step in enumerate(template.steps[: spec.steps], start=1):
        performer = people.lead if step.role == StepRole.SITE_LEAD else people.operator
        values = dict(step.good)
        if position == 1:
            values.update(spec.out_of_limit)
        with audit_context(user=performer):
            record = services.step_record(
                actor=performer,
                batch=batch,
                position=position,
                values=values,
                credentials=people.sign(performer),
                comment="Value outside limits: reported to the site lead."
                if position == 1 and spec.out_of_limit
                else "",
            )
        last = position == spec.steps
        if step.requires_verification and (spec.verify_last or not last):
            with audit_context(user=people.lead):
                services.step_verify(
                    actor=people.lead, record=record, credentials=people.sign(people.lead)
                )


def _results(batch: Batch, spec: DemoBatch, people: People, *, late: bool = False) -> None:
    template = TEMPLATE_BY_PRODUCT[spec.product]
    for cqa in template.specs:
        if (cqa.timing == SpecificationTiming.LATE) != late:
            continue
        if late:
            value = cqa.bad if spec.late == "bad" else cqa.good
        elif spec.results == ("block" if cqa.registered else "warn"):
            value = cqa.bad
        else:
            value = cqa.good
        with audit_context(user=people.operator):
            services.result_record(
                actor=people.operator,
                batch=batch,
                specification_key=cqa.key,
                value=value,
                reason="late result from the QC laboratory" if late else "",
            )


def _decide(batch: Batch, spec: DemoBatch, people: People) -> None:
    qp = people.qp
    with audit_context(user=qp):
        if spec.decision == "reject":
            services.batch_reject(
                actor=qp,
                batch=batch,
                credentials=people.sign_qp(),
                reason="Labelling vial cracked during incubation: sterility cannot be assured.",
            )
        elif spec.decision == "concession":
            services.batch_certify(
                actor=qp,
                batch=batch,
                credentials=people.sign_qp(),
                reason="Certified under concession at the treating clinician's request.",
                concession=True,
                clinician_request="Dr R. Ahmed (transplant haematology, RVI) requests infusion "
                "today: CMV viraemia rising on ganciclovir, no alternative donor product.",
                justification="Viability 71 % against ≥ 80 %: dose adjusted for viable cells; "
                "all other CQAs met; the clinical benefit outweighs the risk.",
                remote=True,
                location="On call from home, Hexham",
            )
        else:
            services.batch_certify(
                actor=qp,
                batch=batch,
                credentials=people.sign_qp(),
                reason="Batch record reviewed: every gate clear; certified.",
            )


def _batch(spec: DemoBatch, people: People) -> Batch:
    site = Site.objects.get(code=spec.site)
    product = Product.objects.get(code=spec.product)
    with audit_context(user=people.operator):
        batch = services.batch_start(
            actor=people.operator,
            site=site,
            product=product,
            coi_reference=spec.coi,
            reason=f"Demo batch: {spec.story}.",
        )
    _steps(batch, spec, people)
    batch.refresh_from_db()
    if spec.results != "none" and batch.status == BatchStatus.COMPLETED:
        _results(batch, spec, people)
    if spec.decision:
        batch.refresh_from_db()
        _decide(batch, spec, people)
    batch.refresh_from_db()
    if spec.late and batch.status in (
        BatchStatus.CERTIFIED,
        BatchStatus.CERTIFIED_UNDER_CONCESSION,
    ):
        _results(batch, spec, people, late=True)
    if spec.supplied:
        with audit_context(user=people.lead):
            supply = services.supply_record(
                actor=people.lead,
                batch=batch,
                coi_reference=spec.coi,
                supplied_to="Ward 33 (haematology), Manchester Royal Infirmary",
                quantity="1",
                unit="bag",
                reason="Handed over to the ward; chain of identity checked.",
            )
            services.administration_confirm(
                actor=people.lead,
                supply=supply,
                coi_reference=spec.coi,
                reason="Infusion completed; identity checked at the bedside.",
            )
    batch.refresh_from_db()
    return batch


def _load() -> set[str]:
    """The missing templates and batches; the chain-of-identity references made."""
    created: set[str] = set()
    missing = [b for b in BATCHES if not Batch.objects.filter(coi_reference=b.coi).exists()]
    templates_missing = [
        t for t in TEMPLATES if approved_template(Product.objects.get(code=t.product)) is None
    ]
    if not missing and not templates_missing:
        return created
    qa, qp = _user(site_demo.DEMO_QA), _user(site_demo.DEMO_QP)
    with transaction.atomic(), signer(qa) as sign_qa, signer(qp) as sign_qp:
        people = People(
            qa=qa,
            qp=qp,
            lead=_user(site_demo.DEMO_SITE_LEAD),
            operator=_user(site_demo.DEMO_OPERATOR),
            sign_qa=sign_qa,
            sign_qp=sign_qp,
        )
        with audit_context(user=qa):
            _staff(qa)
        for template in TEMPLATES:
            _template(template, people)
        for spec in missing:
            _batch(spec, people)
            created.add(spec.coi)
    return created


def load_demo_batches() -> demo.DemoSection:
    """Make what is missing, then report every demo batch as it stands now."""
    created = _load()
    by_coi = {
        b.coi_reference: b
        for b in Batch.objects.filter(coi_reference__in=[s.coi for s in BATCHES]).select_related(
            "site", "product"
        )
    }
    rows = []
    for spec in BATCHES:
        batch = by_coi.get(spec.coi)
        if batch is None:
            continue
        rows.append(
            (
                batch.number,
                batch.product.code,
                str(batch.get_status_display()),
                spec.story,
                "created" if spec.coi in created else "existing",
            )
        )
    return demo.DemoSection(
        "Demo batches",
        (
            *demo.table(("Batch", "Product", "Status", "Story", "This run"), rows),
            f"  Sign in as {site_demo.DEMO_QP} to see the QP queue: the NAT-WBC batches expire "
            "45 minutes after completion.",
            f"  For these batches {site_demo.DEMO_SITE_LEAD} also leads, and "
            f"{site_demo.DEMO_OPERATOR} also works at: "
            + ", ".join(sorted({code for code, _user, _role in STAFFING}))
            + ".",
        ),
    )
