"""The training demo for `manage.py demo_setup` (design §9; issue 7 §7; TR-01…TR-07).

Three loaders, registered from `TrainingConfig.ready()`:

- **accountability** (order 5, before every other app's demo): each demo person who may sign —
  QA, the QP, the site lead, the operator and the trainer — acknowledges the data-integrity and
  e-signature accountability item (DI-ESIG) themselves, with their own demo credentials (the QP
  with a one-time code), before their first signature of any kind (TR-07; 21 CFR 11.10(j)).
- **training** (order 15: after the sites, before the master files and batches): a Control
  Site's training as it stands on the day its QMS went live. QA registers seven controlled
  procedures and issues each one's first version (a small PDF) with an "approved" signature, two
  of them already revised (v2 in force) and one revision issued but not in force for another
  week; the trainer defines the two practical assessments and the curricula (operator and site
  lead at every site, the modular unit MU01's own procedure for its operators, QA and the QP)
  and enters the paper history (induction, refreshers, assessments, first editions read) with
  a "verified" signature; the demo people then read the revised versions and sign "read and
  understood" themselves. With it, `operator` and `sitelead` are qualified at every site where
  the batches demo makes them sign steps and the QP for certification (TR-02), while the mix
  has something to show: an operator whose yearly refresher lapsed (cannot sign a step), a new
  starter whose induction is overdue and escalated and who was assessed "not yet competent" at
  gowning, a site lead whose refresher expires in two weeks (due soon), and an issued gowning
  revision that `operator` has still to read (their to-do list) while staying qualified.
  Ends with the daily round (`training_round`): reminders, escalation, renewals.
- **training-compliance** (order 90, after every app's demo has staffed its sites): each demo
  site's compliance as the matrix computes it.

Everything goes through `training.services`, `sites.services` and the accounts services, as the
person whose role does it. One thing the services cannot write is an assignment already overdue
(they refuse a due date in the past, rightly, for a live system): the new starter's induction,
booked five weeks before the QMS went live, is opened with the services' own assignment helper
and its past due date — see `_overdue_assignment`.

Idempotent: procedures, versions, items and curricula are keyed on their numbers and codes,
records on (person, item, version), the two extra people on their usernames; a second run
creates nothing.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
from collections import Counter

from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join

from controlsite import demo
from controlsite.accounts import permissions
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability, Role
from controlsite.accounts.services import role_grant, user_create
from controlsite.audit.context import audit_context
from controlsite.signatures.services import SignatureCredentials
from sites import demo as site_demo
from sites import services as site_services
from sites.choices import SiteRole
from sites.models import Site
from sites.selectors import live_memberships
from training import selectors
from training import services as training_services
from training.choices import (
    AssessmentResult,
    AssignmentCause,
    AssignmentStatus,
    CurriculumRole,
    ItemKind,
    RecordMethod,
    VersionStatus,
)
from training.models import (
    Assignment,
    Curriculum,
    Procedure,
    ProcedureVersion,
    TrainingItem,
    TrainingRecord,
)
from training.standard import ensure_standard_items

DEMO_QA = site_demo.DEMO_QA
DEMO_QP = site_demo.DEMO_QP
DEMO_SITE_LEAD = site_demo.DEMO_SITE_LEAD
DEMO_OPERATOR = site_demo.DEMO_OPERATOR
DEMO_TRAINER = "trainer"
DEMO_ADMIN = "admin"
LAPSED_OPERATOR = "operator2"
NEW_STARTER = "newstarter"

# The demo people who may sign, in the order they acknowledge the accountability item.
ACCOUNTABLE = (DEMO_QA, DEMO_QP, DEMO_TRAINER, DEMO_SITE_LEAD, DEMO_OPERATOR)

ACCOUNTABILITY = "DI-ESIG"
INDUCTION = "GXP-IND"
REFRESHER = "GXP-REF"
ASEPTIC = "SOP-CS-101"
GOWNING = "SOP-CS-102"
CLEANING = "SOP-CS-103"
BATCH_RECORDS = "SOP-CS-021"
DEVIATIONS = "SOP-CS-040"
CERTIFICATION = "SOP-CS-070"
MODULAR_UNIT = "SOP-MU01-001"
ASEPTIC_ASSESSMENT = "ASSESS-ASEPTIC"
GOWNING_ASSESSMENT = "ASSESS-GOWN"

GOWNING_V2_IN_DAYS = 7  # the issued revision `operator` still has to read
DUE_SOON_IN_DAYS = 14  # when the site lead's refresher expires
INDUCTION_OVERDUE_DAYS = 21  # how long ago the new starter's induction was due


#
# What the demo records
#


@dataclasses.dataclass(frozen=True)
class DemoRevision:
    """A version after the first: what changed, the steps it adds and when it comes into force."""

    change_summary: str
    steps_added: tuple[str, ...]
    effective_in_days: int = 0


@dataclasses.dataclass(frozen=True)
class DemoProcedure:
    number: str
    title: str
    purpose: str
    steps: tuple[str, ...]
    revisions: tuple[DemoRevision, ...] = ()
    site: str = ""  # a site's own procedure


PROCEDURES: tuple[DemoProcedure, ...] = (
    DemoProcedure(
        ASEPTIC,
        "Aseptic processing in the grade A biosafety cabinet",
        "How operators keep the product sterile while it is open in the grade A cabinet.",
        (
            "Disinfect every item with sterile 70 % IPA and let it dry before it passes in.",
            "Keep first air: nothing passes between the HEPA filter and an open container.",
            "Record every intervention on the batch record step as it happens.",
            "Stop, close the product and tell the site lead if the airflow alarm sounds.",
        ),
        revisions=(
            DemoRevision(
                "Annex A lists the interventions permitted on the CliniMACS Prodigy tubing "
                "set; outer gloves are changed after every sterile weld (CAPA from the LIV1 "
                "for-cause audit).",
                (
                    "Only the interventions of annex A are permitted; any other is a deviation.",
                    "Change the outer gloves after every sterile tubing weld.",
                ),
            ),
        ),
    ),
    DemoProcedure(
        GOWNING,
        "Gowning for grade B cleanrooms",
        "How to put on and check the cleanroom garments for work in grade B.",
        (
            "Change into site scrubs and overshoes at the grade D/C boundary.",
            "Put on the sterile coverall, hood, mask, goggles and boots in the order of the "
            "gowning poster, touching only their inner faces.",
            "Put on two pairs of sterile gloves and disinfect the outer pair.",
            "Check the gown in the mirror; a colleague checks the back.",
        ),
        revisions=(
            DemoRevision(
                "Single-use sterile goggles replace the reusable ones; outer gloves are "
                "changed every 30 minutes in grade B (environmental monitoring trend review).",
                (
                    "Use single-use sterile goggles; never reuse a pair.",
                    "Change the outer gloves every 30 minutes and after touching any surface "
                    "outside grade A.",
                ),
                effective_in_days=GOWNING_V2_IN_DAYS,
            ),
        ),
    ),
    DemoProcedure(
        CLEANING,
        "Cleaning and disinfection of cleanrooms",
        "Which agents clean which surfaces, how often, and how the cleaning is recorded.",
        (
            "Clean grade A and B surfaces daily with the neutral detergent, then the "
            "disinfectant, working from clean to dirty.",
            "Apply the sporicidal agent weekly and after any shutdown or maintenance.",
            "Rotate the disinfectant as the cleaning validation report lists.",
            "Record each clean, agent and lot number in the cleaning log.",
        ),
    ),
    DemoProcedure(
        BATCH_RECORDS,
        "Completing electronic batch records",
        "How each step of a batch is recorded and signed in the QMS at the time it is done.",
        (
            "Record each step in the QMS when it is done, never afterwards from notes.",
            "Enter each value as read on the instrument, with its unit.",
            "Sign the step yourself; a signature is never shared or made for someone else.",
        ),
        revisions=(
            DemoRevision(
                "The second person verifies a step in the QMS at the step, not afterwards; a "
                "value outside its limits needs a comment when it is recorded.",
                (
                    "The second person signs the verification at the step, watching it done.",
                    "Comment every value outside its limits when you record it.",
                ),
            ),
        ),
    ),
    DemoProcedure(
        DEVIATIONS,
        "Handling deviations",
        "What to do when something does not go as the procedure or the batch record says.",
        (
            "Make the product and the people safe; stop if in doubt.",
            "Raise the deviation in the QMS the same working day, with the batch number.",
            "Propose a class; QA confirms it within one working day.",
            "Take part in the investigation and the CAPA the QA owner assigns.",
        ),
    ),
    DemoProcedure(
        CERTIFICATION,
        "QP certification and batch release",
        "How a Qualified Person reviews the batch record and its gates and certifies.",
        (
            "Open the batch from the QP queue; check every gate and the signatures on it.",
            "Justify in writing any warning certified over.",
            "Certify under concession only at the treating clinician's recorded request.",
            "Sign with your password and authenticator code; never delegate a certification.",
        ),
    ),
    DemoProcedure(
        MODULAR_UNIT,
        "Modular unit MU-01: start-up and requalification after a move",
        "How MU-01's operators bring the unit back into use where it now stands.",
        (
            "Connect power and the HVAC; run the unit at rest for 12 hours.",
            "Check the pressure cascade and the particle counts against the limits of the "
            "requalification protocol.",
            "Do not start a batch until QA has signed the requalification report.",
        ),
        site="MU01",
    ),
)


@dataclasses.dataclass(frozen=True)
class DemoItem:
    code: str
    title: str
    description: str
    validity_months: int | None


ASSESSMENTS: tuple[DemoItem, ...] = (
    DemoItem(
        ASEPTIC_ASSESSMENT,
        "Aseptic technique (observed practical)",
        "A trainer watches a full simulated process in the grade A cabinet, with finger dabs "
        "at the end; no growth is competent.",
        12,
    ),
    DemoItem(
        GOWNING_ASSESSMENT,
        "Gowning qualification",
        "Three consecutive gownings with contact plates on the hood, mask, sleeves and "
        "gloves; every plate within the grade B limit is competent.",
        12,
    ),
)


@dataclasses.dataclass(frozen=True)
class DemoCurriculum:
    role: CurriculumRole
    site: str  # "" for every site
    title: str
    items: tuple[str, ...]


CURRICULA: tuple[DemoCurriculum, ...] = (
    DemoCurriculum(
        CurriculumRole.SITE_OPERATOR,
        "",
        "Manufacturing operator, every site",
        (
            INDUCTION,
            REFRESHER,
            ASEPTIC,
            GOWNING,
            CLEANING,
            BATCH_RECORDS,
            DEVIATIONS,
            ASEPTIC_ASSESSMENT,
            GOWNING_ASSESSMENT,
        ),
    ),
    DemoCurriculum(
        CurriculumRole.SITE_LEAD,
        "",
        "Site lead, every site",
        (INDUCTION, REFRESHER, GOWNING, CLEANING, BATCH_RECORDS, DEVIATIONS, GOWNING_ASSESSMENT),
    ),
    DemoCurriculum(
        CurriculumRole.SITE_OPERATOR,
        "MU01",
        "Manufacturing operator, modular unit MU-01",
        (MODULAR_UNIT,),
    ),
    DemoCurriculum(
        CurriculumRole.CONTROL_SITE_QA,
        "",
        "Control Site QA",
        (INDUCTION, REFRESHER, BATCH_RECORDS, DEVIATIONS, CERTIFICATION),
    ),
    DemoCurriculum(
        CurriculumRole.QP,
        "",
        "Qualified Person",
        (INDUCTION, REFRESHER, BATCH_RECORDS, DEVIATIONS, CERTIFICATION),
    ),
)

# (months, days) before today. A negative number of days is after today: (12, -14) is twelve
# months before the day two weeks from now, so a 12-month item completed then expires in two
# weeks.
Ago = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class PaperRecord:
    """Training done before the QMS, entered from the paper record by the trainer."""

    username: str
    item: str
    ago: Ago
    version: int = 0  # for an SOP: the version read
    notes: str = ""


def _paper(username: str, history: dict[str, Ago], *, sops: Ago) -> tuple[PaperRecord, ...]:
    """A person's paper history: the items in `history`, and the first edition of each of
    their procedures read `sops` ago."""
    records = [PaperRecord(username, code, ago) for code, ago in history.items()]
    for code in (ASEPTIC, GOWNING, CLEANING, BATCH_RECORDS, DEVIATIONS, CERTIFICATION):
        if code in _needs(username):
            records.append(PaperRecord(username, code, sops, version=1))
    return tuple(records)


def _needs(username: str) -> set[str]:
    roles = {
        DEMO_OPERATOR: (CurriculumRole.SITE_OPERATOR,),
        LAPSED_OPERATOR: (CurriculumRole.SITE_OPERATOR,),
        DEMO_SITE_LEAD: (CurriculumRole.SITE_LEAD, CurriculumRole.SITE_OPERATOR),
        DEMO_QA: (CurriculumRole.CONTROL_SITE_QA,),
        DEMO_QP: (CurriculumRole.QP,),
    }[username]
    return {code for c in CURRICULA if c.role in roles for code in c.items}


def paper_history() -> tuple[PaperRecord, ...]:
    """Every paper record the demo enters. The site lead also holds the operator's items:
    they verify the operators' steps. The lapsed operator's refresher is 13 months old."""
    return (
        *_paper(
            DEMO_OPERATOR,
            {INDUCTION: (26, 0), REFRESHER: (4, 0), ASEPTIC_ASSESSMENT: (3, 0)},
            sops=(0, 40),
        ),
        PaperRecord(DEMO_OPERATOR, GOWNING_ASSESSMENT, (5, 0)),
        *_paper(
            DEMO_SITE_LEAD,
            {
                INDUCTION: (40, 0),
                REFRESHER: (12, -DUE_SOON_IN_DAYS),
                ASEPTIC_ASSESSMENT: (6, 0),
                GOWNING_ASSESSMENT: (6, 0),
            },
            sops=(0, 41),
        ),
        *_paper(DEMO_QA, {INDUCTION: (50, 0), REFRESHER: (2, 0)}, sops=(0, 30)),
        *_paper(DEMO_QP, {INDUCTION: (60, 0), REFRESHER: (1, 0)}, sops=(0, 30)),
        PaperRecord(
            DEMO_QP,
            BATCH_RECORDS,
            (0, 0),
            version=2,
            notes="Briefing on version 2 with the QP team; attendance sheet signed.",
        ),
        *_paper(
            LAPSED_OPERATOR,
            {
                INDUCTION: (38, 0),
                REFRESHER: (13, 0),
                ASEPTIC_ASSESSMENT: (7, 0),
                GOWNING_ASSESSMENT: (7, 0),
            },
            sops=(0, 40),
        ),
    )


# Versions the demo people read in the QMS and sign "read and understood" themselves.
ACKNOWLEDGEMENTS: tuple[tuple[str, str, int], ...] = (
    (DEMO_OPERATOR, ASEPTIC, 2),
    (DEMO_OPERATOR, BATCH_RECORDS, 2),
    (DEMO_OPERATOR, MODULAR_UNIT, 1),
    (DEMO_SITE_LEAD, ASEPTIC, 2),
    (DEMO_SITE_LEAD, BATCH_RECORDS, 2),
    (DEMO_SITE_LEAD, GOWNING, 2),  # read before it is in force
    (DEMO_SITE_LEAD, MODULAR_UNIT, 1),
    (DEMO_QA, BATCH_RECORDS, 2),
    (LAPSED_OPERATOR, ASEPTIC, 2),
    (LAPSED_OPERATOR, BATCH_RECORDS, 2),
    (NEW_STARTER, BATCH_RECORDS, 2),
)


@dataclasses.dataclass(frozen=True)
class Newcomer:
    """An operator the administrator gives an account and QA puts to work at a site."""

    username: str
    first_name: str
    last_name: str
    site: str
    story: str


NEWCOMERS: tuple[Newcomer, ...] = (
    Newcomer(
        LAPSED_OPERATOR,
        "Leo",
        "Lambert",
        "NCL1",
        "NCL1 operator whose yearly GxP refresher lapsed a month ago: cannot sign a step",
    ),
    Newcomer(
        NEW_STARTER,
        "Nina",
        "Novak",
        "LDS1",
        "LDS1 new starter: GxP induction overdue (escalated), gowning not yet competent",
    ),
)


#
# Helpers
#


def _user(username: str) -> User:
    return User.objects.get(username__iexact=username)


def _months_before(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    return day.replace(
        year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1])
    )


def _day(ago: Ago) -> dt.date:
    months, days = ago
    return _months_before(timezone.localdate() - dt.timedelta(days=days), months)


def _item(code: str) -> TrainingItem:
    return TrainingItem.objects.get(code=code)


def _version(code: str, number: int) -> ProcedureVersion:
    return ProcedureVersion.objects.get(procedure__number=code, number=number)


def _sign(user: User) -> SignatureCredentials:
    return demo.credentials(user.get_username())


def _pdf(spec: DemoProcedure, number: int, effective_on: dt.date, summary: str) -> bytes:
    """The procedure's text as a one-page PDF (WeasyPrint, no external resources)."""
    from weasyprint import HTML

    steps = list(spec.steps)
    for revision in spec.revisions[: number - 1]:
        steps.extend(revision.steps_added)
    html = format_html(
        "<html><head><style>"
        "body {{ font-family: sans-serif; font-size: 10pt; }} "
        "h1 {{ font-size: 14pt; }} .meta {{ color: #555; }}"
        "</style></head><body>"
        "<p class='meta'>Northern Advanced Therapies Control Site — controlled procedure</p>"
        "<h1>{} {}</h1>"
        "<p class='meta'>Version {} · effective {} · approved by Control Site QA</p>"
        "<h2>Purpose</h2><p>{}</p>"
        "<h2>Procedure</h2><ol>{}</ol>"
        "<h2>Changes in this version</h2><p>{}</p>"
        "</body></html>",
        spec.number,
        spec.title,
        number,
        date_format(effective_on, "j F Y"),
        spec.purpose,
        format_html_join("", "<li>{}</li>", ((step,) for step in steps)),
        summary,
    )
    return bytes(HTML(string=str(html)).write_pdf())


@dataclasses.dataclass
class Made:
    """What this run created, for the report."""

    procedures: set[str] = dataclasses.field(default_factory=set)
    versions: int = 0
    items: set[str] = dataclasses.field(default_factory=set)
    curricula: int = 0
    records: Counter[str] = dataclasses.field(default_factory=Counter)
    people: set[str] = dataclasses.field(default_factory=set)


#
# Order 5: the accountability item, acknowledged by each demo person who may sign (TR-07)
#


def load_demo_accountability() -> demo.DemoSection:
    """Each demo person who may sign acknowledges DI-ESIG themselves, before any other demo
    signature (21 CFR 11.10(j))."""
    with audit_context(reason="the standard items of a database that started empty"):
        ensure_standard_items(TrainingItem)
    item = TrainingItem.objects.get(kind=ItemKind.ACCOUNTABILITY, active=True)
    rows = []
    with transaction.atomic():
        for username in ACCOUNTABLE:
            user = _user(username)
            if not permissions.user_can(user, Capability.SIGN):
                continue
            state = "existing"
            if selectors.accountability_gap(user) is not None:
                with demo.signer(user) as credentials, audit_context(user=user):
                    training_services.acknowledge(
                        actor=user,
                        item=item,
                        credentials=credentials(),
                        reason="Accountability policy read before my first signature.",
                    )
                state = "created"
            rows.append((username, user.printed_name, state))
    return demo.DemoSection(
        "Demo accountability (before any signature)",
        (
            f"  {item.code} {item.title}: acknowledged by each demo person who signs, with their "
            "own signature.",
            *demo.table(("Username", "Name", "This run"), rows),
        ),
    )


#
# Order 15: procedures, items, curricula, records, the people who show each state
#


def _procedures(qa: User, made: Made) -> None:
    """QA registers each procedure and issues its first version, in force today."""
    today = timezone.localdate()
    with audit_context(user=qa):
        for spec in PROCEDURES:
            if Procedure.objects.filter(number=spec.number).exists():
                continue
            where = f" at {spec.site}" if spec.site else ""
            procedure = training_services.procedure_create(
                actor=qa,
                number=spec.number,
                title=spec.title,
                reason=f"Controlled procedure{where} registered when the QMS went live.",
            )
            _issue(qa, procedure, spec, 1, today, "First issue in the QMS.")
            made.procedures.add(spec.number)
            made.versions += 1


def _issue(
    qa: User,
    procedure: Procedure,
    spec: DemoProcedure,
    number: int,
    effective_on: dt.date,
    summary: str,
) -> None:
    content = _pdf(spec, number, effective_on, summary)
    training_services.procedure_version_issue(
        actor=qa,
        procedure=procedure,
        effective_on=effective_on,
        change_summary=summary,
        upload=SimpleUploadedFile(
            f"{spec.number}-v{number}.pdf", content, content_type="application/pdf"
        ),
        credentials=_sign(qa),
        reason=f"{spec.number} v{number} approved for issue.",
    )


def _revisions(qa: User, made: Made) -> None:
    """QA issues the revisions: in force today, or (the gowning one) in a week."""
    today = timezone.localdate()
    with audit_context(user=qa):
        for spec in PROCEDURES:
            procedure = Procedure.objects.get(number=spec.number)
            for number, revision in enumerate(spec.revisions, start=2):
                if procedure.versions.filter(number=number).exists():
                    continue
                effective_on = today + dt.timedelta(days=revision.effective_in_days)
                _issue(qa, procedure, spec, number, effective_on, revision.change_summary)
                made.versions += 1


def _items(trainer: User, made: Made) -> None:
    with audit_context(user=trainer):
        for spec in ASSESSMENTS:
            if TrainingItem.objects.filter(code=spec.code).exists():
                continue
            training_services.item_create(
                actor=trainer,
                code=spec.code,
                title=spec.title,
                kind=ItemKind.ASSESSMENT,
                description=spec.description,
                validity_months=spec.validity_months,
                due_days=60,
                reason="Practical assessment of the training programme (TR-01).",
            )
            made.items.add(spec.code)


def _curricula(trainer: User, made: Made) -> None:
    """The trainer writes each curriculum and adds its items; everyone holding the role there
    is assigned what they do not hold (TR-03, TR-05)."""
    with audit_context(user=trainer):
        for spec in CURRICULA:
            site = Site.objects.get(code=spec.site) if spec.site else None
            curriculum = Curriculum.objects.filter(role=spec.role, site=site).first()
            if curriculum is None:
                curriculum = training_services.curriculum_create(
                    actor=trainer,
                    role=spec.role,
                    site=site,
                    title=spec.title,
                    reason="Training programme approved by the head of production (TR-01).",
                )
                made.curricula += 1
            required = set(
                curriculum.requirements.filter(removed_at__isnull=True).values_list(
                    "item__code", flat=True
                )
            )
            for code in spec.items:
                if code in required:
                    continue
                training_services.requirement_add(
                    actor=trainer,
                    curriculum=curriculum,
                    item=_item(code),
                    reason=f"{code} is part of the {spec.title.lower()} programme.",
                )


def _has_record(user: User, item: TrainingItem, version: int) -> bool:
    records = TrainingRecord.objects.filter(user=user, item=item)
    if version:
        records = records.filter(procedure_version__number=version)
    return records.exists()


def _enter(trainer: User, record: PaperRecord, made: Made) -> None:
    """The trainer enters one paper record, signed "verified", unless it is there already."""
    trainee = _user(record.username)
    item = _item(record.item)
    if _has_record(trainee, item, record.version):
        return
    day = _day(record.ago)
    version = _version(record.item, record.version) if record.version else None
    what = f"{item.code} v{record.version}" if version is not None else item.code
    with audit_context(user=trainer):
        training_services.record_enter(
            actor=trainer,
            trainee=trainee,
            item=item,
            completed_on=day,
            version=version,
            credentials=_sign(trainer),
            notes=record.notes
            or f"Paper training record of {date_format(day, 'j M Y')}, signed by the trainee "
            "and the trainer; filed in the training file.",
            reason=f"{what} for {trainee.printed_name} entered from the paper record.",
        )
    made.records[RecordMethod.ENTERED] += 1


def _acknowledge(username: str, code: str, number: int, made: Made) -> None:
    """The person reads the version in the QMS and signs "read and understood"."""
    user = _user(username)
    item = _item(code)
    if _has_record(user, item, number):
        return
    with demo.signer(user) as credentials, audit_context(user=user):
        training_services.acknowledge(
            actor=user,
            item=item,
            version=_version(code, number),
            credentials=credentials(),
            reason=f"Read and understood {code} v{number}.",
        )
    made.records[RecordMethod.ACKNOWLEDGED] += 1


def _overdue_assignment(
    trainer: User, user: User, item: TrainingItem, site: Site, due_on: dt.date
) -> None:
    """An assignment made before the QMS went live, due on a day that has passed.

    `assignment_create` refuses a due date in the past, as it must for a live system; the
    demo opens this one with the services' own helper, which writes the assignment, its
    history row and the "assigned" audit event exactly as an assignment made on time would
    be, under a reason that says where it came from (TR-03)."""
    with audit_context(
        user=trainer, reason=f"induction booked on paper before the QMS; due {due_on:%d %b %Y}"
    ):
        training_services._assignment_open(  # the services' own helper: see the docstring
            user=user,
            item=item,
            version=None,
            site=site,
            cause=AssignmentCause.MANUAL,
            due_on=due_on,
            actor=trainer,
        )


def _newcomer(spec: Newcomer, admin: User, qa: User, trainer: User, made: Made) -> None:
    """The administrator makes the account and grants the role, the person acknowledges the
    accountability item, QA puts them to work at the site; then their training story."""
    if User.objects.filter(username__iexact=spec.username).exists():
        return
    user = user_create(
        username=spec.username,
        first_name=spec.first_name,
        last_name=spec.last_name,
        email=f"{spec.username}@controlsite.example",
        password=demo.DEMO_PASSWORD,
        created_by=admin,
        reason=f"Account for {spec.first_name} {spec.last_name}, operator at {spec.site}.",
        must_change_password=False,
        validate=False,
    )
    role_grant(
        user=user,
        role=Role.SITE_OPERATOR,
        granted_by=admin,
        reason=f"Manufacturing operator at {spec.site} (request from the site lead).",
    )
    with audit_context(user=user):
        training_services.acknowledge(
            actor=user,
            item=_item(ACCOUNTABILITY),
            credentials=_sign(user),
            reason="Accountability policy read before my first signature.",
        )
    made.records[RecordMethod.ACKNOWLEDGED] += 1
    site = Site.objects.get(code=spec.site)
    if spec.username == NEW_STARTER:
        due_on = timezone.localdate() - dt.timedelta(days=INDUCTION_OVERDUE_DAYS)
        _overdue_assignment(trainer, user, _item(INDUCTION), site, due_on)
    with audit_context(user=qa):
        site_services.membership_add(
            actor=qa,
            site=site,
            user=user,
            role=SiteRole.SITE_OPERATOR,
            reason=f"Joins the {spec.site} manufacturing team.",
        )
    made.people.add(spec.username)


def _new_starter_assessed(trainer: User, made: Made) -> None:
    """The new starter's first gowning qualification: not yet competent (TR-05)."""
    user = _user(NEW_STARTER)
    item = _item(GOWNING_ASSESSMENT)
    if TrainingRecord.objects.filter(user=user, item=item).exists():
        return
    with audit_context(user=trainer):
        training_services.assessment_record(
            actor=trainer,
            trainee=user,
            item=item,
            result=AssessmentResult.NOT_YET_COMPETENT,
            notes="Glove plate 7 cfu on the second gowning (limit 5). Retrain and repeat.",
            credentials=_sign(trainer),
            reason="Gowning qualification, first attempt.",
        )
    made.records[RecordMethod.ASSESSED] += 1


def load_demo_training() -> demo.DemoSection:
    """Make what is missing, then report the training as it stands now."""
    qa, trainer, admin = _user(DEMO_QA), _user(DEMO_TRAINER), _user(DEMO_ADMIN)
    made = Made()
    with transaction.atomic():
        _procedures(qa, made)
        _items(trainer, made)
        _curricula(trainer, made)
        for spec in NEWCOMERS:
            _newcomer(spec, admin, qa, trainer, made)
        history = paper_history()
        for record in history:
            if record.version < 2:
                _enter(trainer, record, made)
        _revisions(qa, made)
        for record in history:  # briefings on the revisions, on paper
            if record.version >= 2:
                _enter(trainer, record, made)
        for username, code, number in ACKNOWLEDGEMENTS:
            _acknowledge(username, code, number, made)
        _new_starter_assessed(trainer, made)
        training_services.training_round()
    return demo.DemoSection("Demo training", tuple(_report(made)))


def _versions_text(procedure: Procedure) -> str:
    parts = []
    for version in procedure.versions.order_by("number"):
        if version.status == VersionStatus.ISSUED:
            parts.append(f"v{version.number} in force {date_format(version.effective_on, 'j M')}")
        else:
            parts.append(f"v{version.number} {version.get_status_display().lower()}")
    return ", ".join(parts)


def _report(made: Made) -> list[str]:
    procedures = Procedure.objects.filter(number__in=[p.number for p in PROCEDURES])
    rows = [
        (
            p.number,
            p.title,
            _versions_text(p),
            "created" if p.number in made.procedures else "existing",
        )
        for p in procedures.order_by("number")
    ]
    lines = [
        '  Procedures, issued by qa ("approved" signature, a PDF per version):',
        *demo.table(("Number", "Title", "Versions", "This run"), rows),
        "  Curricula, written by trainer:",
    ]
    curricula = Curriculum.objects.select_related("site").order_by("role", "site__code")
    lines += demo.table(
        ("Role", "Where", "Items"),
        [
            (
                str(c.get_role_display()),
                c.site.code if c.site else "every site",
                ", ".join(
                    c.requirements.filter(removed_at__isnull=True)
                    .order_by("item__code")
                    .values_list("item__code", flat=True)
                ),
            )
            for c in curricula
        ],
    )
    methods = Counter(TrainingRecord.objects.values_list("method", flat=True))
    open_ = Assignment.objects.filter(status=AssignmentStatus.OPEN)
    overdue = open_.filter(due_on__lt=timezone.localdate()).count()
    lines += [
        f"  {TrainingItem.objects.count()} training items; {sum(methods.values())} records "
        f"({methods[RecordMethod.ENTERED]} entered from paper by trainer, "
        f"{methods[RecordMethod.ACKNOWLEDGED]} read and understood, "
        f"{methods[RecordMethod.ASSESSED]} assessed); {open_.count()} open assignments, "
        f"{overdue} overdue.",
        f"  This run: {_made_text(made)}.",
        "  People to sign in as (the demo password):",
    ]
    lines += demo.table(("Username", "Name", "Training", "This run"), _people_rows(made))
    return lines


def _made_text(made: Made) -> str:
    parts = [
        (len(made.procedures), "procedures"),
        (made.versions, "versions"),
        (len(made.items), "items"),
        (made.curricula, "curricula"),
        (sum(made.records.values()), "records"),
        (len(made.people), "people"),
    ]
    made_now = [f"{count} {what}" for count, what in parts if count]
    return ", ".join(made_now) + " made" if made_now else "nothing new, everything existing"


def _people_rows(made: Made) -> list[tuple[str, str, str, str]]:
    rows = []
    for spec in NEWCOMERS:
        user = User.objects.filter(username__iexact=spec.username).first()
        if user is not None:
            state = "created" if spec.username in made.people else "existing"
            rows.append((spec.username, user.printed_name, spec.story, state))
    lead = _user(DEMO_SITE_LEAD)
    refresher = (
        TrainingRecord.objects.filter(user=lead, item__code=REFRESHER)
        .order_by("-completed_at")
        .first()
    )
    if refresher is not None and refresher.expires_at is not None:
        rows.append(
            (
                DEMO_SITE_LEAD,
                lead.printed_name,
                "GxP refresher expires "
                f"{date_format(timezone.localtime(refresher.expires_at), 'j M Y')} (due soon)",
                "existing",
            )
        )
    operator = _user(DEMO_OPERATOR)
    todo = selectors.todo_for(operator)
    if todo:
        first = todo[0]
        version = f" v{first.procedure_version.number}" if first.procedure_version else ""
        rows.append(
            (
                DEMO_OPERATOR,
                operator.printed_name,
                f"qualified; to do: {first.item.code}{version} by "
                f"{date_format(first.due_on, 'j M Y')} (home page)",
                "existing",
            )
        )
    return rows


#
# Order 90: each site's compliance, once every app's demo has staffed its sites (TR-06)
#


def load_demo_compliance() -> demo.DemoSection:
    codes = [spec.code for spec in site_demo.DEMO_SITES]
    sites = {s.pk: s for s in Site.objects.filter(code__in=codes)}
    compliance = selectors.site_compliance(list(sites))
    staff = dict(
        live_memberships()
        .filter(site_id__in=list(sites))
        .values("site_id")
        .annotate(people=Count("user_id", distinct=True))
        .values_list("site_id", "people")
    )
    rows = []
    for site_id, site in sorted(sites.items(), key=lambda pair: pair[1].code):
        figures = compliance[site_id]
        if not figures.required:
            continue
        rows.append(
            (
                site.code,
                str(staff.get(site_id, 0)),
                f"{figures.held} / {figures.required}",
                f"{figures.pct} %",
                str(figures.overdue),
            )
        )
    return demo.DemoSection(
        "Demo training compliance",
        (
            *demo.table(("Site", "Staff", "Held / required", "Compliance", "Overdue"), rows),
            "  Other demo sites have nobody working there. Sign in as qa, trainer or "
            "sitelead for each site's matrix, every cell current, due soon, overdue or missing.",
        ),
    )


def register_demo() -> None:
    """Called from `TrainingConfig.ready()`."""
    demo.register(demo.DemoLoader("training-accountability", load_demo_accountability, order=5))
    demo.register(demo.DemoLoader("training", load_demo_training, order=15))
    demo.register(demo.DemoLoader("training-compliance", load_demo_compliance, order=90))
