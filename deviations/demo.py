"""Demo deviations and CAPAs in every state, for `manage.py demo_setup` (issue 6 §8; design §9).

Registered after the batches loader, whose batch signals it turns into deviations first (as the
beat task would: `make demo` runs no beat). Then, through `deviations.services` only and as the
demo person whose role would do each step, it records deviations raised by the operator and the
site lead at their sites and taken along by Control Site QA:

- open: a minor one raised today; a major one recorded four days after it happened, so its
  triage is overdue (the clocks start when it happened, DV-04) and has been escalated;
- triaged; investigating, with an extension asked and awaiting QA; investigating a critical audit
  finding that happened five weeks ago, overdue for closure;
- pending CAPA, its CAPA half done; closed, signed by QA, with its CAPA checked effective and
  closed; cancelled as a duplicate; a "human error" root cause with its justification;
- a CAPA from an audit finding, and one cancelled;
- complaints: a serious suspected adverse reaction to the administered NAT-CD19 batch, reported
  to the MHRA; another whose 15-day clock has three days left (RP-05); a quality complaint
  assessed by QA; a non-serious reaction closed with QA's signature;
- change control: a master-file change approved by QA and a QP, which opened the new draft; a
  site-status change QA has signed that awaits its QP; an equipment change implemented and
  closed with its signed review; a procedure change the site lead is drafting.

Idempotent: each record is keyed on its title at its site; a second run creates nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from batches.models import Batch
from controlsite import demo
from controlsite.accounts.models import User
from controlsite.signatures.services import SignatureCredentials
from deviations import services
from deviations.choices import DeviationAction, DeviationClass, Effectiveness
from deviations.models import Capa, ChangeControl, Complaint, Deviation
from deviations.services import changes as change_services
from deviations.services import complaints as complaint_services
from masterfile.choices import OPEN_STATUSES
from masterfile.demo import signer
from masterfile.models import Product
from sites import demo as site_demo
from sites.models import Site

# How far each story goes.
OPEN, TRIAGED, INVESTIGATING, PENDING_CAPA, CLOSED, CANCELLED = (
    "open",
    "triaged",
    "investigating",
    "pending_capa",
    "closed",
    "cancelled",
)


@dataclasses.dataclass(frozen=True)
class DemoDeviation:
    site: str
    raiser: str
    title: str
    description: str
    proposed: DeviationClass
    reach: str
    days_ago: int = 0
    confirmed: DeviationClass | None = None
    immediate_action: str = ""
    audit_reference: str = ""
    impact: str = ""
    cause_category: str = ""
    cause: str = ""
    human_error_justification: str = ""
    capa: str = ""  # the CAPA's title, when the story raises one
    extension_days: int = 0


OPERATOR, LEAD = site_demo.DEMO_OPERATOR, site_demo.DEMO_SITE_LEAD

DEVIATIONS: tuple[DemoDeviation, ...] = (
    DemoDeviation(
        site="MAN1",
        raiser=OPERATOR,
        title="Cleanroom differential pressure alarm during gowning",
        description="The grade B to C pressure cascade alarmed for 40 s while two operators "
        "gowned; no processing was under way.",
        proposed=DeviationClass.MINOR,
        reach=OPEN,
        immediate_action="Processing held until the cascade was back in limits for 15 min.",
    ),
    DemoDeviation(
        site="BHM1",
        raiser=OPERATOR,
        title="Apheresis starting material received above 8 °C",
        description="The shipper's logger showed 9.4 °C for 22 min on arrival. Recorded four "
        "days after receipt, when the logger was read.",
        proposed=DeviationClass.MAJOR,
        reach=OPEN,
        days_ago=4,
        immediate_action="Material quarantined; the clinical team told.",
    ),
    DemoDeviation(
        site="NCL1",
        raiser=LEAD,
        title="Cell counter daily check recorded late",
        description="The daily bead check on the cell counter was done after the first count "
        "of the day, not before it.",
        proposed=DeviationClass.MINOR,
        reach=TRIAGED,
        confirmed=DeviationClass.MINOR,
        immediate_action="Check repeated and passed; first count repeated.",
    ),
    DemoDeviation(
        site="LDS1",
        raiser=LEAD,
        title="Biosafety cabinet downflow below limit at the weekly check",
        description="Downflow read 0.23 m/s against a lower limit of 0.25 m/s. Two batches had "
        "been processed in the cabinet since the last passing check.",
        proposed=DeviationClass.MAJOR,
        reach=INVESTIGATING,
        days_ago=12,
        confirmed=DeviationClass.MAJOR,
        immediate_action="Cabinet taken out of use; the spare cabinet qualified for use.",
        impact="Both batches reviewed: environmental monitoring in limits; no impact found.",
        extension_days=21,
    ),
    DemoDeviation(
        site="MU01",
        raiser=LEAD,
        title="Audit finding: line clearance not recorded between patients",
        description="Site audit finding 3: on two days the line clearance between patients "
        "was done but not recorded.",
        proposed=DeviationClass.CRITICAL,
        reach=INVESTIGATING,
        days_ago=36,
        confirmed=DeviationClass.MAJOR,
        audit_reference="AUD-MU01-2026-02 finding 3",
        immediate_action="Line clearance now witnessed and signed by a second person.",
    ),
    DemoDeviation(
        site="MU01",
        raiser=OPERATOR,
        title="Freezer door left ajar overnight",
        description="The controlled-rate freezer's door seal was not engaged overnight; the "
        "chamber held temperature but the alarm did not sound.",
        proposed=DeviationClass.MAJOR,
        reach=PENDING_CAPA,
        days_ago=8,
        confirmed=DeviationClass.MAJOR,
        impact="No product in the freezer; no impact on any batch.",
        cause_category="equipment",
        cause="The door alarm's sensor had failed; no check of it was scheduled.",
        capa="Replace the freezer door sensor and check it weekly",
    ),
    DemoDeviation(
        site="MAN1",
        raiser=OPERATOR,
        title="Label printed with the wrong expiry format",
        description="A bag label showed the expiry as 12/11 rather than 12 Nov 2026 14:30.",
        proposed=DeviationClass.MINOR,
        reach=CLOSED,
        days_ago=3,
        confirmed=DeviationClass.MINOR,
        immediate_action="Label reprinted and checked before release.",
        impact="Caught before labelling; no bag left the site with it.",
        cause_category="human_error",
        cause="The operator picked the wrong label template.",
        human_error_justification="Retraining alone would not stop it: both templates sat "
        "side by side in the printer's menu. The CAPA removes the wrong one.",
        capa="Remove the superseded label template from the printer",
    ),
    DemoDeviation(
        site="BHM1",
        raiser=OPERATOR,
        title="Pressure alarm during gowning (raised twice)",
        description="The same alarm as MAN1's, raised here by mistake.",
        proposed=DeviationClass.MINOR,
        reach=CANCELLED,
    ),
)

AUDIT_CAPA = "Second-person check of the batch record before QA review"
AUDIT_REFERENCE = "AUD-NET-2026-01 observation 2"


@dataclasses.dataclass
class People:
    qa: User
    sign_qa: Callable[[], SignatureCredentials]
    users: dict[str, User]


def _user(username: str) -> User:
    return User.objects.get(username__iexact=username)


def _capa(story: DemoDeviation, deviation: Deviation, people: People, *, close: bool) -> None:
    today = timezone.localdate()
    owner = people.users[story.raiser if story.raiser == LEAD else LEAD]
    capa = services.capa_create(
        actor=people.qa,
        title=story.capa,
        description=f"From {deviation.number}: {story.cause}",
        kind="corrective",
        owner=owner,
        due_on=today + dt.timedelta(days=14),
        effectiveness_due_on=today + dt.timedelta(days=60),
        reason="CAPA from the investigation",
        deviation=deviation,
        actions=[
            services.ActionInput(story.capa, owner, today + dt.timedelta(days=7)),
            services.ActionInput(
                "Brief every operator at the site", owner, today + dt.timedelta(days=10)
            ),
        ],
    )
    actions = list(capa.actions.order_by("id"))
    services.capa_action_complete(
        actor=owner, action=actions[0], outcome="Done and recorded in the equipment log."
    )
    if not close:
        return
    services.capa_action_complete(actor=owner, action=actions[1], outcome="All briefed.")
    services.capa_effectiveness_check(
        actor=people.qa,
        capa=capa,
        effectiveness=Effectiveness.EFFECTIVE,
        notes="No recurrence in the checks since; the template is gone from the printer.",
        reason="effectiveness checked",
    )
    services.capa_close(
        actor=people.qa, capa=capa, credentials=people.sign_qa(), reason="found effective"
    )


def _story(story: DemoDeviation, people: People) -> None:
    qa = people.qa
    deviation = services.deviation_raise(
        actor=people.users[story.raiser],
        site=Site.objects.get(code=story.site),
        title=story.title,
        description=story.description,
        proposed_class=story.proposed,
        occurred_at=timezone.now() - dt.timedelta(days=story.days_ago),
        immediate_action=story.immediate_action,
        audit_reference=story.audit_reference,
        reason=demo.DEMO_REASON,
    )
    if story.reach == OPEN:
        return
    if story.reach == CANCELLED:
        services.deviation_transition(
            actor=qa,
            deviation=deviation,
            action=DeviationAction.CANCEL,
            reason="Duplicate: the alarm was at MAN1.",
        )
        return

    def step(
        action: DeviationAction, reason: str, credentials: SignatureCredentials | None = None
    ) -> None:
        nonlocal deviation
        deviation = services.deviation_transition(
            actor=qa, deviation=deviation, action=action, reason=reason, credentials=credentials
        )

    services.deviation_confirm_class(
        actor=qa,
        deviation=deviation,
        deviation_class=story.confirmed or story.proposed,
        reason="class confirmed against the criteria",
    )
    step(DeviationAction.TRIAGE, "triaged")
    if story.reach == TRIAGED:
        return
    step(DeviationAction.INVESTIGATE, "investigation opened")
    changes = {
        key: value
        for key, value in (
            ("impact_assessment", story.impact),
            ("root_cause_category", story.cause_category),
            ("root_cause", story.cause),
            ("human_error_justification", story.human_error_justification),
        )
        if value
    }
    if changes:
        deviation = services.deviation_update(
            actor=people.users[LEAD], deviation=deviation, reason="investigation", changes=changes
        )
    if story.extension_days:
        services.extension_request(
            actor=people.users[LEAD],
            deviation=deviation,
            requested_due_on=deviation.due_on + dt.timedelta(days=story.extension_days),
            reason="The cabinet's fan is replaced by the vendor in three weeks.",
        )
    if story.capa:
        _capa(story, deviation, people, close=story.reach == CLOSED)
    if story.reach == PENDING_CAPA:
        step(DeviationAction.AWAIT_CAPA, "CAPA raised; waiting for its actions")
    elif story.reach == CLOSED:
        step(
            DeviationAction.CLOSE,
            "investigation complete; CAPA effective",
            credentials=people.sign_qa(),
        )


def _audit_capas(people: People) -> None:
    today = timezone.localdate()
    lead = people.users[LEAD]
    if not Capa.objects.filter(title=AUDIT_CAPA).exists():
        services.capa_create(
            actor=people.qa,
            title=AUDIT_CAPA,
            description="Network audit observation: batch records reach QA with blank fields. "
            "A second person checks each record at the site first.",
            kind="preventive",
            owner=lead,
            due_on=today + dt.timedelta(days=30),
            effectiveness_due_on=today + dt.timedelta(days=90),
            reason="CAPA from the network audit",
            audit_reference=AUDIT_REFERENCE,
            actions=[
                services.ActionInput(
                    "Write the check into SOP-BR-004", lead, today + dt.timedelta(days=14)
                ),
                services.ActionInput("Train the site leads", lead, today + dt.timedelta(days=21)),
            ],
        )
    duplicate = f"{AUDIT_CAPA} (raised twice)"
    if not Capa.objects.filter(title=duplicate).exists():
        capa = services.capa_create(
            actor=people.qa,
            title=duplicate,
            description="Raised twice from the same observation.",
            kind="preventive",
            owner=lead,
            due_on=today + dt.timedelta(days=30),
            effectiveness_due_on=today + dt.timedelta(days=90),
            reason="CAPA from the network audit",
            audit_reference=AUDIT_REFERENCE,
        )
        services.capa_cancel(actor=people.qa, capa=capa, reason=f"Duplicate of {AUDIT_CAPA}.")


@dataclasses.dataclass(frozen=True)
class DemoComplaint:
    site: str
    kind: str
    description: str
    reporter: str
    days_ago: int
    serious: bool
    batch_coi: str = ""  # the demo batch it concerns, by chain-of-identity reference
    product: str = ""
    assessment: str = ""
    reported_reference: str = ""
    close: bool = False


COMPLAINTS: tuple[DemoComplaint, ...] = (
    DemoComplaint(
        site="MAN1",
        kind="adverse_reaction",
        description="Grade 3 cytokine release syndrome on day 2 after infusion; treated with "
        "tocilizumab; recovering.",
        reporter="Dr A. Shah, haematology consultant, MAN1",
        days_ago=0,
        serious=True,
        batch_coi="DEMO-CD19-1004",
        assessment="Expected reaction for the product, but serious: reported. Batch record "
        "and certification reviewed; no quality defect found.",
        reported_reference="MHRA-YC-2026-118204",
    ),
    DemoComplaint(
        site="BHM1",
        kind="adverse_reaction",
        description="Febrile neutropenia and hypotension after infusion of NAT-CD19; admitted "
        "to intensive care.",
        reporter="Ward sister, BHM1 haematology day unit",
        days_ago=12,
        serious=True,
        product="NAT-CD19",
    ),
    DemoComplaint(
        site="LDS1",
        kind="quality",
        description="Infusion bag label partly unreadable after thawing (condensation under the "
        "laminate).",
        reporter="Pharmacy, LDS1",
        days_ago=6,
        serious=False,
        product="NAT-WBC",
        assessment="Label stock not rated for -150 °C. No risk to identity (the chain-of-"
        "identity barcode scanned). CAPA to change the label stock.",
    ),
    DemoComplaint(
        site="NCL1",
        kind="adverse_reaction",
        description="Mild rigors during infusion, resolved without treatment.",
        reporter="Infusion nurse, NCL1",
        days_ago=20,
        serious=False,
        product="NAT-CMV",
        assessment="Known, non-serious infusion reaction; no quality defect.",
        close=True,
    ),
)


def _complaint(spec: DemoComplaint, people: People) -> None:
    qa = people.qa
    batch = Batch.objects.filter(coi_reference=spec.batch_coi).first() if spec.batch_coi else None
    complaint = complaint_services.complaint_record(
        actor=qa,
        site=Site.objects.get(code=spec.site),
        kind=spec.kind,
        description=spec.description,
        reporter=spec.reporter,
        aware_on=timezone.localdate() - dt.timedelta(days=spec.days_ago),
        serious=spec.serious,
        reason=demo.DEMO_REASON,
        batch=batch,
        product=Product.objects.get(code=spec.product) if spec.product else None,
    )
    if spec.assessment:
        complaint = complaint_services.complaint_assess(
            actor=qa, complaint=complaint, assessment=spec.assessment, reason="assessed"
        )
    if spec.reported_reference:
        complaint = complaint_services.complaint_mark_reported(
            actor=qa,
            complaint=complaint,
            reported_on=timezone.localdate(),
            reference=spec.reported_reference,
            reason="reported through the Yellow Card scheme",
        )
    if spec.close:
        complaint_services.complaint_close(
            actor=qa,
            complaint=complaint,
            reason="assessed; nothing further",
            credentials=people.sign_qa(),
        )


MF_CHANGE = "Tighten a registered release specification"
SITE_CHANGE = "Suspend supply from MU02 while the unit is refitted"
EQUIPMENT_CHANGE = "Replace the LDS1 biosafety cabinet's downflow fan"
PROCEDURE_CHANGE = "Second-person check of line clearance at MU01"


def _changes(people: People, sign_qp: Callable[[], SignatureCredentials]) -> None:
    qa, lead = people.qa, people.users[LEAD]
    qp = _user(site_demo.DEMO_QP)
    today = timezone.localdate()
    made = set(ChangeControl.objects.values_list("title", flat=True))
    # The first demo product whose master file has no version on its way (the master-file
    # demo leaves some in draft or review): approval opens its next draft.
    product = next(
        (
            p
            for p in Product.objects.filter(master_file__isnull=False).order_by("code")
            if not p.master_file.versions.filter(status__in=sorted(OPEN_STATUSES)).exists()
        ),
        None,
    )
    if MF_CHANGE not in made and product is not None:
        change = change_services.change_propose(
            actor=qa,
            title=MF_CHANGE,
            description=f"Three years of {product.code} batches at every site support a "
            "tighter limit; the master file's specification section changes.",
            scopes=["master_file"],
            risk_level="medium",
            risk_assessment="Tighter limit: more batches may fail; none of the last 200 would.",
            regulatory_impact="A variation to the marketing authorisation; the DMMF changes.",
            product=product,
            reason=demo.DEMO_REASON,
        )
        change = change_services.change_submit(actor=qa, change=change, reason="for approval")
        change = change_services.change_approve(
            actor=qa, change=change, credentials=people.sign_qa(), reason="risk accepted"
        )
        change_services.change_approve(
            actor=qp, change=change, credentials=sign_qp(), reason="release impact assessed"
        )
    if SITE_CHANGE not in made and Site.objects.filter(code="MU02").exists():
        change = change_services.change_propose(
            actor=qa,
            title=SITE_CHANGE,
            description="MU02 stops supplying for six weeks while its cleanroom is refitted.",
            scopes=["site_status"],
            risk_level="low",
            risk_assessment="Patients are served from MU01 meanwhile.",
            regulatory_impact="The site list changes: the MHRA is told.",
            site=Site.objects.get(code="MU02"),
            reason=demo.DEMO_REASON,
        )
        change = change_services.change_submit(actor=qa, change=change, reason="for approval")
        change_services.change_approve(
            actor=qa, change=change, credentials=people.sign_qa(), reason="agreed"
        )
    if EQUIPMENT_CHANGE not in made:
        change = change_services.change_propose(
            actor=qa,
            title=EQUIPMENT_CHANGE,
            description="The fan is replaced like for like; the cabinet is requalified.",
            scopes=["equipment"],
            risk_level="low",
            risk_assessment="Like-for-like part; requalification proves the downflow.",
            site=Site.objects.get(code="LDS1"),
            reason=demo.DEMO_REASON,
        )
        change = change_services.change_submit(actor=qa, change=change, reason="for approval")
        change = change_services.change_approve(
            actor=qa, change=change, credentials=people.sign_qa(), reason="agreed"
        )
        task = change_services.change_task_add(
            actor=qa,
            change=change,
            description="Fit the fan and requalify the cabinet",
            owner=lead,
            due_on=today + dt.timedelta(days=7),
            reason="the work",
        )
        change_services.change_task_complete(
            actor=lead, task=task, reason="Fitted; downflow 0.36 m/s at requalification."
        )
        change = change_services.change_implement(actor=qa, change=change, reason="done")
        change_services.change_close(
            actor=qa,
            change=change,
            review="Downflow in limits at three weekly checks since; no deviation.",
            credentials=people.sign_qa(),
            reason="post-implementation review",
        )
    if PROCEDURE_CHANGE not in made:
        change_services.change_propose(
            actor=lead,
            title=PROCEDURE_CHANGE,
            description="From the audit finding on MU01: line clearance is witnessed.",
            scopes=["procedure"],
            risk_level="low",
            risk_assessment="Adds a signature; no effect on the product.",
            site=Site.objects.get(code="MU01"),
            reason=demo.DEMO_REASON,
        )


def _load() -> tuple[int, int]:
    """Turn batch signals into deviations, then make the missing stories; (from signals, made)."""
    from_signals = services.signals_process()
    missing = [
        s
        for s in DEVIATIONS
        if not Deviation.objects.filter(site__code=s.site, title=s.title).exists()
    ]
    qa, qp = _user(site_demo.DEMO_QA), _user(site_demo.DEMO_QP)
    with transaction.atomic(), signer(qa) as sign_qa, signer(qp) as sign_qp:
        people = People(
            qa=qa,
            sign_qa=sign_qa,
            users={name: _user(name) for name in (OPERATOR, LEAD)},
        )
        for story in missing:
            _story(story, people)
        _audit_capas(people)
        for spec in COMPLAINTS:
            if not Complaint.objects.filter(
                site__code=spec.site, description=spec.description
            ).exists():
                _complaint(spec, people)
        _changes(people, sign_qp)
    services.deviations_escalate_overdue()
    return from_signals, len(missing)


def load_demo_deviations() -> demo.DemoSection:
    """Make what is missing, then report the demo deviations as they stand now."""
    from_signals, made = _load()
    today = timezone.localdate()
    rows = [
        (
            d.number,
            d.site.code,
            d.batch.number if d.batch else "",
            str(d.get_status_display()),
            d.deviation_class,
            "OVERDUE" if d.is_overdue(today) else "",
            d.title[:60],
        )
        for d in Deviation.objects.select_related("site", "batch").order_by("number")
    ]
    return demo.DemoSection(
        "Demo deviations",
        (
            *demo.table(("Number", "Site", "Batch", "Status", "Class", "", "Title"), rows),
            f"  This run: {from_signals} from batch signals, {made} raised by people. "
            f"{Capa.objects.count()} CAPAs, {Complaint.objects.count()} complaints and "
            f"adverse reactions, {ChangeControl.objects.count()} changes. Sign in as "
            f"{site_demo.DEMO_QA} to triage, investigate and close them.",
        ),
    )
