"""The demo Control Site and its twelve spoke sites, for `manage.py demo_setup` (design §9).

Registered with the kernel's demo registry in `SitesConfig.ready()`. Acting as the demo QA user
and only through `sites.services`, it records the Control Site (with the demo QP named on the
licence) and twelve sites in every status of the lifecycle: each is driven through the real
transitions — onboarding evidence and signed sign-offs, qualification, signed activation, then
pause, suspension or cessation — with members, equipment, site audits and graded findings, a
modular unit's moves and the MHRA notifications the services open (one recorded as sent). Every
write carries a reason and every signature is a real one (QA's password: with argon2 the first
run spends most of its time there, 55 signatures).

Idempotent: sites are keyed on their codes, the Control Site and the QP's naming are made only if
absent, so a second run creates nothing and leaves what people changed in the demo alone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from django.utils import timezone

from controlsite import demo
from controlsite.accounts.models import User
from controlsite.audit.context import audit_context
from controlsite.signatures.services import SignatureCredentials
from sites import services as site_services
from sites.choices import (
    SIGNED_ACTIONS,
    EquipmentStatus,
    FindingGrade,
    NotificationKind,
    SiteAction,
    SiteKind,
    SiteRole,
    SiteStatus,
)
from sites.models import NamedQP, Site
from sites.selectors import control_site

DEMO_QA = "qa"
DEMO_QP = "qp"
DEMO_SITE_LEAD = "sitelead"
DEMO_OPERATOR = "operator"
REFERENCE_SITE = "NCL1"

CONTROL_SITE_NAME = "Northern Advanced Therapies Control Site"
CONTROL_SITE_ADDRESS = (
    "Advanced Therapies Manufacturing Unit, Freeman Hospital, Freeman Road, High Heaton,\n"
    "Newcastle upon Tyne NE7 7DN\n"
    "(hosted by The Newcastle upon Tyne Hospitals NHS Foundation Trust)"
)
LICENCE_NUMBER = "MIA 12345/0001"  # fictitious
REGULATOR_CONTACTS = (
    "MHRA GMP Inspectorate, 10 South Colonnade, Canary Wharf, London E14 4PU\n"
    "Lead GMP inspector (demo): Dr Helen Marsh, helen.marsh@mhra.example\n"
    "POC/MM designation and master file case officer (demo): poc-mm@mhra.example"
)


@dataclasses.dataclass(frozen=True)
class DemoEquipment:
    kind: str
    name: str
    serial: str
    status: EquipmentStatus
    due_in_days: int | None  # next qualification due, from today; negative is overdue


@dataclasses.dataclass(frozen=True)
class DemoAudit:
    title: str
    lead_auditor: str
    planned_in_days: int  # from today; negative is in the past
    done_summary: str = ""  # given: the audit was done on the day planned
    findings: tuple[tuple[FindingGrade, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class DemoSite:
    """A spoke site and the story the demo tells about it, in the order it happened."""

    code: str
    name: str
    kind: SiteKind
    host: str
    address: str  # for a modular unit: where it stands when registered
    reach: SiteStatus  # how far along proposed → onboarding → qualified → active it is driven
    agreement: str = ""
    led_by_sitelead: bool = False  # "sitelead" is the nominated person (site lead)
    with_operator: bool = False  # "operator" works here
    signed_off: int | None = None  # staying in onboarding: checklist items signed off so far
    equipment: tuple[DemoEquipment, ...] = ()
    moves: tuple[tuple[str, str], ...] = ()  # (new location, reason), after activation
    audits: tuple[DemoAudit, ...] = ()
    then: tuple[tuple[SiteAction, str], ...] = ()  # later lifecycle steps, with their reasons
    mhra_reference: str = ""  # the "site added" notification is recorded as sent under it


PROCESSOR = "Closed-system processor"
CABINET = "Biosafety cabinet (Class II)"
COUNTER = "Cell counter"
FREEZER = "Controlled-rate freezer"
QA_AUDITOR = "Quinn Adams (Control Site QA)"

DEMO_SITES: tuple[DemoSite, ...] = (
    DemoSite(
        code="NCL1",
        name="Freeman Hospital Cell Therapy Unit",
        kind=SiteKind.POC_HOSPITAL,
        host="The Newcastle upon Tyne Hospitals NHS Foundation Trust",
        address="Freeman Hospital, Freeman Road, High Heaton, Newcastle upon Tyne NE7 7DN",
        reach=SiteStatus.ACTIVE,
        agreement="TA-NUTH-2025-01",
        led_by_sitelead=True,
        with_operator=True,
        equipment=(
            DemoEquipment(
                PROCESSOR, "CliniMACS Prodigy", "PRD-0412", EquipmentStatus.QUALIFIED, 210
            ),
            DemoEquipment(CABINET, "Herasafe 2030i", "BSC-NCL-01", EquipmentStatus.QUALIFIED, 18),
            DemoEquipment(
                COUNTER, "NucleoCounter NC-202", "NC202-3391", EquipmentStatus.QUALIFIED, -12
            ),
        ),
        audits=(
            DemoAudit(
                "Annual GMP self-inspection",
                QA_AUDITOR,
                -150,
                "Self-inspection against EU GMP Part I chapter 9 and Annex 1: compliant, "
                "two findings.",
                (
                    (
                        FindingGrade.MAJOR,
                        "Monthly trend review of environmental monitoring not done for "
                        "three months.",
                    ),
                    (FindingGrade.MINOR, "Two logbook corrections made without a reason."),
                ),
            ),
            DemoAudit("Annual GMP self-inspection", QA_AUDITOR, 45),
        ),
        mhra_reference="MHRA-DM-2026-0142",
    ),
    DemoSite(
        code="LDS1",
        name="St James's University Hospital Aseptic Unit",
        kind=SiteKind.POC_HOSPITAL,
        host="Leeds Teaching Hospitals NHS Trust",
        address="St James's University Hospital, Beckett Street, Leeds LS9 7TF",
        reach=SiteStatus.ACTIVE,
        agreement="TA-LTHT-2025-02",
        led_by_sitelead=True,
        with_operator=True,
        equipment=(
            DemoEquipment(PROCESSOR, "Lonza Cocoon", "CCN-1187", EquipmentStatus.QUALIFIED, 150),
            DemoEquipment(CABINET, "Herasafe 2030i", "BSC-LDS-02", EquipmentStatus.OQ_DONE, 9),
        ),
        audits=(
            DemoAudit(
                "Post-activation audit",
                QA_AUDITOR,
                -90,
                "First audit after activation: batch records and gowning reviewed; one finding.",
                ((FindingGrade.MINOR, "Gowning qualification of one operator expired by 4 days."),),
            ),
            DemoAudit("Technical agreement review audit", QA_AUDITOR, 20),
        ),
    ),
    DemoSite(
        code="MAN1",
        name="Manchester Royal Infirmary CAR-T Suite",
        kind=SiteKind.POC_HOSPITAL,
        host="Manchester University NHS Foundation Trust",
        address="Manchester Royal Infirmary, Oxford Road, Manchester M13 9WL",
        reach=SiteStatus.ACTIVE,
        agreement="TA-MFT-2025-03",
        led_by_sitelead=True,
        equipment=(
            DemoEquipment(
                PROCESSOR, "CliniMACS Prodigy", "PRD-0530", EquipmentStatus.QUALIFIED, 300
            ),
            DemoEquipment(
                COUNTER, "NucleoCounter NC-202", "NC202-4102", EquipmentStatus.QUALIFIED, 45
            ),
        ),
        audits=(DemoAudit("Annual GMP self-inspection", QA_AUDITOR, 75),),
    ),
    DemoSite(
        code="BHM1",
        name="Queen Elizabeth Hospital Pharmacy Manufacturing Unit",
        kind=SiteKind.POC_HOSPITAL,
        host="University Hospitals Birmingham NHS Foundation Trust",
        address="Queen Elizabeth Hospital, Mindelsohn Way, Edgbaston, Birmingham B15 2GW",
        reach=SiteStatus.ACTIVE,
        agreement="TA-UHB-2025-04",
        equipment=(
            DemoEquipment(CABINET, "Herasafe 2030i", "BSC-BHM-04", EquipmentStatus.QUALIFIED, 90),
            DemoEquipment(
                PROCESSOR, "Sepax C-Pro", "SPX-2290", EquipmentStatus.OUT_OF_SERVICE, None
            ),
            DemoEquipment(FREEZER, "CryoMed 7456", "CRF-7711", EquipmentStatus.IQ_DONE, 30),
        ),
        audits=(
            DemoAudit(
                "Aseptic process simulation review",
                QA_AUDITOR,
                -40,
                "Media fills of the last 6 months reviewed: all passed; one finding.",
                ((FindingGrade.MINOR, "Media fill report signed before the final read-out."),),
            ),
        ),
        then=(
            (
                SiteAction.PAUSE,
                "Planned HVAC filter change in the grade B room; manufacture paused until "
                "the room is requalified.",
            ),
            (
                SiteAction.RESUME,
                "Grade B room requalified after the filter change (report EM-BHM1-2026-03).",
            ),
        ),
    ),
    DemoSite(
        code="MU01",
        name="Modular cleanroom unit MU-01",
        kind=SiteKind.MODULAR_UNIT,
        host="Northern Advanced Therapies (Control Site)",
        address="Car park B, Freeman Hospital, Freeman Road, Newcastle upon Tyne NE7 7DN",
        reach=SiteStatus.ACTIVE,
        agreement="TA-NAT-MU01",
        equipment=(
            DemoEquipment(
                PROCESSOR, "CliniMACS Prodigy", "PRD-0611", EquipmentStatus.QUALIFIED, 25
            ),
            DemoEquipment(CABINET, "Herasafe 2030i", "BSC-MU01-1", EquipmentStatus.QUALIFIED, 180),
        ),
        moves=(
            (
                "Service yard, Royal Victoria Infirmary, Queen Victoria Road, Newcastle upon "
                "Tyne NE1 4LP",
                "Moved to the RVI for the paediatric CAR-T programme (move plan MP-MU01-01).",
            ),
            (
                "Estates compound, Sunderland Royal Hospital, Kayll Road, Sunderland SR4 7TP",
                "Moved to Sunderland to serve South Tyneside and Sunderland NHS Foundation "
                "Trust (move plan MP-MU01-02).",
            ),
        ),
        audits=(DemoAudit("Post-relocation audit, Sunderland", QA_AUDITOR, 10),),
    ),
    DemoSite(
        code="QCL1",
        name="Newcastle Cellular Therapies QC Laboratory",
        kind=SiteKind.TESTING_LAB,
        host="Newcastle University",
        address="International Centre for Life, Times Square, Newcastle upon Tyne NE1 4EP",
        reach=SiteStatus.QUALIFIED,
        agreement="TA-NU-QC-2025",
        audits=(DemoAudit("Pre-activation audit (testing laboratory)", QA_AUDITOR, 14),),
    ),
    DemoSite(
        code="SHF1",
        name="Royal Hallamshire Cell Therapy Suite",
        kind=SiteKind.POC_HOSPITAL,
        host="Sheffield Teaching Hospitals NHS Foundation Trust",
        address="Royal Hallamshire Hospital, Glossop Road, Sheffield S10 2JF",
        reach=SiteStatus.ACTIVE,
        agreement="TA-STH-2025-05",
        equipment=(
            DemoEquipment(
                PROCESSOR, "CliniMACS Prodigy", "PRD-0377", EquipmentStatus.QUALIFIED, 120
            ),
            DemoEquipment(
                CABINET, "Herasafe 2030i", "BSC-SHF-01", EquipmentStatus.OUT_OF_SERVICE, None
            ),
        ),
        audits=(DemoAudit("Readiness audit before resuming manufacture", QA_AUDITOR, 25),),
        then=(
            (
                SiteAction.PAUSE,
                "Planned three-week cleanroom refurbishment; no batches are scheduled.",
            ),
        ),
    ),
    DemoSite(
        code="LIV1",
        name="Clatterbridge Cell Therapy Unit",
        kind=SiteKind.POC_HOSPITAL,
        host="The Clatterbridge Cancer Centre NHS Foundation Trust",
        address="Clatterbridge Cancer Centre, 65 Pembroke Place, Liverpool L7 8YA",
        reach=SiteStatus.ACTIVE,
        agreement="TA-CCC-2025-06",
        audits=(
            DemoAudit(
                "For-cause audit: environmental monitoring excursions",
                QA_AUDITOR,
                -3,
                "Called after repeated grade A alerts; one critical and one major finding.",
                (
                    (
                        FindingGrade.CRITICAL,
                        "Grade A settle-plate excursions in three consecutive sessions were not "
                        "investigated and manufacture continued.",
                    ),
                    (
                        FindingGrade.MAJOR,
                        "Cleaning validation not repeated after the change of sporicidal agent.",
                    ),
                ),
            ),
        ),
        then=(
            (
                SiteAction.SUSPEND,
                "Critical finding of the for-cause audit (grade A excursions not investigated): "
                "manufacture stopped until the CAPA is closed.",
            ),
        ),
    ),
    DemoSite(
        code="NOT1",
        name="Nottingham City Hospital Advanced Therapies Unit",
        kind=SiteKind.POC_HOSPITAL,
        host="Nottingham University Hospitals NHS Trust",
        address="Nottingham City Hospital, Hucknall Road, Nottingham NG5 1PB",
        reach=SiteStatus.ONBOARDING,
        agreement="TA-NUH-2026-01",
        signed_off=3,
    ),
    DemoSite(
        code="MU02",
        name="Modular cleanroom unit MU-02",
        kind=SiteKind.MODULAR_UNIT,
        host="Northern Advanced Therapies (Control Site)",
        address="Car park C, Royal Victoria Infirmary, Queen Victoria Road, Newcastle upon "
        "Tyne NE1 4LP",
        reach=SiteStatus.ONBOARDING,
        agreement="TA-NAT-MU02",
        signed_off=1,
    ),
    DemoSite(
        code="BRS1",
        name="Bristol Royal Infirmary Haematology Cell Therapy Unit",
        kind=SiteKind.POC_HOSPITAL,
        host="University Hospitals Bristol and Weston NHS Foundation Trust",
        address="Bristol Royal Infirmary, Marlborough Street, Bristol BS2 8HW",
        reach=SiteStatus.PROPOSED,
    ),
    DemoSite(
        code="CAM1",
        name="Addenbrooke's Hospital Cell Therapy Suite",
        kind=SiteKind.POC_HOSPITAL,
        host="Cambridge University Hospitals NHS Foundation Trust",
        address="Addenbrooke's Hospital, Hills Road, Cambridge CB2 0QQ",
        reach=SiteStatus.ONBOARDING,
        agreement="TA-CUH-2025-07",
        signed_off=2,
        then=(
            (
                SiteAction.CEASE,
                "The host trust withdrew from the point-of-care programme before "
                "qualification; onboarding stopped and the site closed in the register.",
            ),
        ),
    ),
)

# The actions that take a newly registered site as far as `reach`.
PATH_TO: dict[SiteStatus, tuple[SiteAction, ...]] = {
    SiteStatus.PROPOSED: (),
    SiteStatus.ONBOARDING: (SiteAction.START_ONBOARDING,),
    SiteStatus.QUALIFIED: (SiteAction.START_ONBOARDING, SiteAction.QUALIFY),
    SiteStatus.ACTIVE: (SiteAction.START_ONBOARDING, SiteAction.QUALIFY, SiteAction.ACTIVATE),
}


def evidence_reference(site: DemoSite, key: str) -> str:
    """A plausible document reference for a checklist item's evidence."""
    if key == "premises":
        return f"PQR-{site.code}-01 premises qualification report"
    if key == "equipment-iq-oq":
        return f"IQOQ-{site.code}-2025 equipment IQ/OQ report pack"
    if key == "technical-agreement":
        return f"{site.agreement or 'TA-' + site.code} signed by both parties"
    if key == "staff-trained":
        return f"TRN-{site.code} training matrix, all staff current"
    if key == "batches":
        if site.code == REFERENCE_SITE:
            return f"VB-{site.code}-001 to 003: three verification batches, all in specification"
        return f"CB-{site.code}-001: comparability batch against reference site {REFERENCE_SITE}"
    return f"DOC-{site.code}-{key}"


def path_reason(site: DemoSite, action: SiteAction) -> str:
    if action == SiteAction.START_ONBOARDING:
        return (
            f"Technical agreement {site.agreement} agreed with {site.host}; onboarding approved "
            "by the Control Site quality committee."
        )
    if action == SiteAction.QUALIFY:
        return (
            f"Every onboarding item evidenced and signed off (qualification report QR-{site.code})."
        )
    if site.code == REFERENCE_SITE:
        return (
            "Reference site: three verification batches met every specification; manufacture "
            "approved."
        )
    return (
        f"Comparability batch CB-{site.code}-001 comparable with reference site "
        f"{REFERENCE_SITE}; manufacture approved."
    )


def _load() -> set[str]:
    """The Control Site, its QP and the demo sites, as QA would record them; the codes made."""
    qa = User.objects.get(username__iexact=DEMO_QA)
    credentials = demo.credentials(qa.get_username())
    created: set[str] = set()
    with audit_context(user=qa):
        if control_site() is None:
            site_services.control_site_save(
                actor=qa,
                name=CONTROL_SITE_NAME,
                address=CONTROL_SITE_ADDRESS,
                licence_number=LICENCE_NUMBER,
                scope_poc=True,
                scope_mm=True,
                regulator_contacts=REGULATOR_CONTACTS,
                reason="The Control Site named on the demo licence.",
            )
        qp = User.objects.get(username__iexact=DEMO_QP)
        if not NamedQP.objects.filter(user=qp).exists():
            site_services.named_qp_add(
                actor=qa,
                user=qp,
                reason=f"{qp.printed_name} named as QP on {LICENCE_NUMBER}.",
            )
        for spec in DEMO_SITES:
            if Site.objects.filter(code=spec.code).exists():
                continue
            _site(spec, qa, credentials)
            created.add(spec.code)
    return created


def _site(spec: DemoSite, qa: User, credentials: SignatureCredentials) -> None:
    """Register one site and tell its story through the services, in order."""
    today = timezone.localdate()
    modular = spec.kind == SiteKind.MODULAR_UNIT
    site = site_services.site_register(
        actor=qa,
        code=spec.code,
        name=spec.name,
        kind=spec.kind,
        host_organisation=spec.host,
        address="" if modular else spec.address,
        current_location=spec.address if modular else "",
        nominated_person=(
            User.objects.get(username__iexact=DEMO_SITE_LEAD) if spec.led_by_sitelead else None
        ),
        technical_agreement_ref=spec.agreement,
        reason=f"Proposed by {spec.host}; entered in the site register.",
    )
    if spec.with_operator:
        site_services.membership_add(
            actor=qa,
            site=site,
            user=User.objects.get(username__iexact=DEMO_OPERATOR),
            role=SiteRole.SITE_OPERATOR,
            reason=f"Trained operator joins the {spec.code} manufacturing team.",
        )
    for action in PATH_TO[spec.reach]:
        if action == SiteAction.QUALIFY:
            _checklist(spec, site, qa, credentials, sign_off=None)
        _transition(site, action, path_reason(spec, action), qa, credentials)
        if action == SiteAction.START_ONBOARDING and spec.reach == SiteStatus.ONBOARDING:
            _checklist(spec, site, qa, credentials, sign_off=spec.signed_off or 0)
    for item in spec.equipment:
        site_services.equipment_add(
            actor=qa,
            site=site,
            kind=item.kind,
            name=item.name,
            serial_number=item.serial,
            qualification_status=item.status,
            next_due=None if item.due_in_days is None else today + dt.timedelta(item.due_in_days),
            reason=f"{item.kind} {item.serial} entered in the {spec.code} equipment register.",
        )
    for location, why in spec.moves:
        site_services.site_move(actor=qa, site=site, location=location, reason=why)
    for audit in spec.audits:
        _audit(site, audit, qa, today)
    for action, why in spec.then:
        _transition(site, action, why, qa, credentials)
    if spec.mhra_reference:
        notification = site.regulatory_notifications.get(kind=NotificationKind.SITE_ADDED)
        site_services.regulatory_notification_mark_sent(
            actor=qa,
            notification=notification,
            sent_on=today,
            reference=spec.mhra_reference,
            reason="Site-added notification submitted to the MHRA.",
        )


def _transition(
    site: Site, action: SiteAction, reason: str, qa: User, credentials: SignatureCredentials
) -> None:
    site_services.site_transition(
        actor=qa,
        site=site,
        action=action,
        reason=reason,
        credentials=credentials if action in SIGNED_ACTIONS else None,
    )


def _checklist(
    spec: DemoSite,
    site: Site,
    qa: User,
    credentials: SignatureCredentials,
    *,
    sign_off: int | None,
) -> None:
    """Evidence and a signed sign-off for the first `sign_off` items (every one if None);
    an unfinished checklist also has evidence waiting on the next item."""
    items = list(site.checklist.order_by("position", "key"))
    done = len(items) if sign_off is None else min(sign_off, len(items))
    # A checklist still under way has the next item's evidence waiting for review.
    waiting = 1 if sign_off is not None and not spec.then else 0
    for index, item in enumerate(items[: done + waiting]):
        evidenced = site_services.checklist_item_attach_evidence(
            actor=qa,
            item=item,
            reference=evidence_reference(spec, item.key),
            reason=f"Evidence on file for: {item.title}.",
        )
        if index < done:
            site_services.checklist_item_sign_off(
                actor=qa,
                item=evidenced,
                credentials=credentials,
                reason=f"Evidence reviewed and verified: {item.title}.",
            )


def _audit(site: Site, spec: DemoAudit, qa: User, today: dt.date) -> None:
    day = today + dt.timedelta(spec.planned_in_days)
    audit = site_services.site_audit_plan(
        actor=qa,
        site=site,
        title=spec.title,
        planned_for=day,
        lead_auditor=spec.lead_auditor,
        reason=f"Audit programme {day.year}: {spec.title}.",
    )
    if not spec.done_summary:
        return
    site_services.site_audit_complete(
        actor=qa,
        audit=audit,
        done_on=day,
        summary=spec.done_summary,
        reason="Audit report issued.",
    )
    for grade, description in spec.findings:
        site_services.audit_finding_add(
            actor=qa,
            audit=audit,
            grade=grade,
            description=description,
            reason=f"{FindingGrade(grade).label} finding from the audit report.",
        )


def load_demo_sites() -> demo.DemoSection:
    """Make what is missing, then report every demo site as it stands now."""
    created = _load()
    sites = Site.objects.filter(code__in=[spec.code for spec in DEMO_SITES])
    order = list(SiteStatus)
    rows = [
        (
            site.code,
            site.name,
            str(site.get_status_display()),
            "created" if site.code in created else "existing",
        )
        for site in sorted(sites, key=lambda s: order.index(SiteStatus(s.status)))
    ]
    control = control_site()
    heading = (
        [f"  Control Site: {control.name} ({control.licence_number}, {control.scope_label})"]
        if control is not None
        else []
    )
    lead = [spec.code for spec in DEMO_SITES if spec.led_by_sitelead]
    works = [spec.code for spec in DEMO_SITES if spec.with_operator]
    return demo.DemoSection(
        "Demo sites",
        (
            *heading,
            *demo.table(("Code", "Name", "Status", "This run"), rows),
            f"  {DEMO_SITE_LEAD} leads {', '.join(lead)} and {DEMO_OPERATOR} works at "
            f"{', '.join(works)}: they see only those sites.",
        ),
    )
