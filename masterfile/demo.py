"""Three demo products and their master files, for `manage.py demo_setup` (design §9; issue 4 §9).

Registered with the kernel's demo registry in `MasterfileConfig.ready()`, after the sites loader
(whose Control Site, QP and sites it uses). Acting only through `masterfile.services`, as the demo
person whose role would do each step — Control Site QA writes, submits and makes effective, QA and
the QP each approve with a real e-signature (MF-03, ES-01) — it records:

- NAT-CD19, a point-of-care CAR-T product (3 days): v1 superseded, v2 effective (two sites added
  after comparability batches), v3 in review with two review comments (one resolved) and QA's
  approval given, so the QP's approval is the one outstanding;
- NAT-CMV, a modular-unit virus-specific T-cell product (4 h, then 6 h): v1 superseded, v2
  effective (a second unit added, the shelf life extended);
- NAT-WBC, a hospital radiopharmacy aseptic product (45 minutes): v1 effective and a v2 draft with
  edited sections, for the diff page.

Every version after the first starts as a copy of the one in force and rewrites some sections,
with a change summary; the site annex is frozen from the register at each submission (MF-04).

Idempotent: products are keyed on their codes and a product that exists is left as it is, so a
second run creates nothing and leaves what people did in the demo alone. Eleven signatures in all
(six by QA, five by the QP): with argon2 they are most of this loader's time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from django.db import transaction

from controlsite import demo
from controlsite.accounts.models import User
from controlsite.audit.context import audit_context
from controlsite.demo import signer as signer  # batches and deviations import it from here
from controlsite.signatures.services import SignatureCredentials
from masterfile import services
from masterfile.choices import (
    ApprovalCapacity,
    Designation,
    ProductSiteRole,
    SupplyStatus,
    VersionStatus,
)
from masterfile.models import MasterFileVersion, Product
from masterfile.selectors import approval_state, open_comment_count
from sites import demo as site_demo
from sites.models import Site
from sites.selectors import control_site

DEMO_QA = site_demo.DEMO_QA
DEMO_QP = site_demo.DEMO_QP
TESTING_LAB = "QCL1"
MANUFACTURING = ProductSiteRole.MANUFACTURING
TESTING = ProductSiteRole.TESTING


@dataclasses.dataclass(frozen=True)
class DemoComment:
    """A review comment on a version in review, by `author` (a demo username)."""

    author: str
    body: str
    section: str | None = None  # a section key, or None for the version as a whole
    resolution: str = ""  # given: resolved by QA before QA approves
    after_qa_approval: bool = False  # written once QA has approved: it stays open for the QP


@dataclasses.dataclass(frozen=True)
class DemoVersion:
    """One version of a master file, and how far along the lifecycle the demo takes it."""

    reach: VersionStatus  # DRAFT, IN_REVIEW (QA approved, QP outstanding) or EFFECTIVE
    why: str  # the reason recorded on every section edit of this version
    sections: Mapping[str, str]  # key → Markdown: every section for v1, the rewritten ones after
    change_summary: str = ""
    product_changes: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    product_change_reason: str = ""
    sites_added: tuple[tuple[str, ProductSiteRole, str], ...] = ()  # (code, role, reason)
    comments: tuple[DemoComment, ...] = ()


@dataclasses.dataclass(frozen=True)
class DemoProduct:
    code: str
    name: str
    designation: Designation
    designation_reference: str
    designation_date: dt.date
    dosage_form: str
    shelf_life_minutes: int
    supply_status: SupplyStatus
    reference_site: str
    sites: tuple[tuple[str, ProductSiteRole, str], ...]  # linked at registration, after the ref.
    versions: tuple[DemoVersion, ...]


#
# Text every product's master file shares: the Control Site's network procedures. `{code}`,
# `{mbr}`, `{control_site}`, `{address}` and `{licence}` are filled in when the demo runs.
#

CONTROL_SITE_TEXT = """\
**Control Site.** {control_site}, {address}. Manufacturer's licence {licence} (POC and MM). \
The Control Site is the only location named on the licence. It keeps this master file, approves \
and supervises every site that makes {code}, releases the critical starting materials, and \
provides the Qualified Persons who certify every batch.

**Testing linked to manufacture.** Tests not done at the manufacturing site are done at the \
Newcastle Cellular Therapies QC Laboratory (site code QCL1), International Centre for Life, Times \
Square, Newcastle upon Tyne NE1 4EP (Newcastle University), under technical agreement \
TA-NU-QC-2025. What each site tests itself and what QCL1 tests are listed under "Sites doing \
related operations, such as testing".
"""

SITE_APPROVAL_TEXT = """\
A new site is proposed by its host organisation and entered in the site register as *proposed*. \
It is onboarded under SOP-CS-010 against a checklist; each item is evidenced and signed off \
electronically by Control Site QA:

1. Premises qualification: room classification, HVAC and pressure cascade, environmental \
monitoring at rest and in operation.
2. IQ/OQ of every item of the site's equipment fingerprint.
3. Technical agreement signed by the host organisation and the Control Site.
4. Staff trained and assessed: GxP induction, the {code} process, gowning and aseptic process \
simulation where the process has an open step.
5. Batches: at the reference site, three verification batches; at any other site, at least one \
comparability batch made under protocol and compared with the reference site (see \
"Comparability across sites").

When every item is signed off, QA qualifies the site; activation needs QA's electronic \
signature on the qualification report. A site enters this master file through a new version \
whose site annex lists it, and may make {code} only when that version is effective **and** the \
site is active: the batch record system refuses a batch anywhere else. The MHRA is notified of \
every site added.
"""

START_SUSPEND_CEASE_TEXT = """\
- **Start.** Manufacture starts at a site when it is active and listed in the effective version \
of this master file.
- **Pause.** QA pauses a site, with a reason, for a planned interruption (maintenance, \
refurbishment, staff absence). No batch starts; a batch in progress is completed only with QA's \
agreement. QA resumes the site once the reason is closed and, after work on the premises, the \
room is requalified.
- **Suspend.** QA suspends a site at once, with an electronic signature, for a critical audit \
finding, a failed environmental or media-fill result, a sterility failure attributed to the site \
or at the MHRA's request. New batches, step sign-offs and certification at the site are blocked \
from that moment, a reportable-event record is opened and the MHRA is notified. The site is \
reactivated only when the CAPA is verified, with QA's signature and the QP's agreement.
- **Cease.** A site ceases when its host withdraws, its technical agreement ends or the Control \
Site decides so. Its records stay in the QMS for their retention period; it leaves this master \
file with the next version.

Every change of status is recorded in the site register with who made it, when and why \
(SOP-CS-011).
"""

QUALITY_SYSTEM_TEXT = """\
One pharmaceutical quality system, owned by the Control Site, covers {code} at every site. The \
quality manual QM-CS-001 and the Control Site procedures apply at each site through its \
technical agreement; no site keeps a local procedure that conflicts with them. The Control Site \
QMS holds the site register, this master file, the batch records, deviations, CAPA, change \
control, training records and audits of every site, with an audit trail and electronic \
signatures (EU GMP Annex 11).

Control Site QA reviews each site monthly (batches, deviations, environmental monitoring, \
training compliance). The management review meets quarterly with the QPs, the Head of Production \
and the site leads. Quality risk management follows ICH Q9(R1); the network risk register is \
reviewed at each management review. Every change to the process, the sites or this master file \
goes through change control (SOP-CS-042), which decides whether a regulatory submission is \
needed.
"""

DOCUMENTATION_TEXT = """\
Documents are controlled under SOP-CS-020: each has a number, an edition, an owner, QA's \
approval and an effective date. A superseded edition is withdrawn at every site on the day the \
new one takes effect. The master batch record {mbr} is issued electronically from the QMS for \
each batch and tied to the master-file version in force when the batch starts.

Records are made in the QMS at the time of the action by the person who did it; a correction \
keeps the original entry and records a reason. Batch documentation is kept for at least five \
years after QP certification and at least one year after expiry, whichever is longer; \
traceability data that link the patient to the batch are kept for 30 years.
"""

COMPLAINTS_TEXT = """\
Complaints, suspected quality defects and suspected adverse reactions from any site or treating \
team reach Control Site QA through the QMS within one working day, always with the batch number \
and site code (SOP-CS-050). QA assesses each with the QP; a defect that may need action is \
reported to the MHRA Defective Medicines Report Centre. Each {code} batch is made for one patient \
and used within its shelf life, so a recall is in practice the quarantine of an unused product \
and the follow-up of the patient with the treating clinician; a mock recall tests the procedure \
every year. Suspected adverse reactions are reported through the Yellow Card scheme and broken \
down by site in every safety review, so that a signal at one site is seen early.
"""

SELF_INSPECTION_TEXT = """\
Control Site QA audits every active site at least once a year, and each site before activation, \
after a relocation and for cause (SOP-CS-060). The Control Site inspects itself every year \
against EU GMP Part I chapter 9 and Part IV. Findings are graded critical, major or minor; each \
has a CAPA with an owner and a due date, and a critical finding suspends the site until its CAPA \
is verified. The audit programme, reports and findings of every site are kept in the site \
register of the QMS.
"""

ANNUAL_REPORTING_TEXT = """\
The Control Site compiles an annual report on this master file for the MHRA, due each year on \
the anniversary of the designation (SOP-CS-080). For each site it covers: changes to the site \
list and to site statuses; batches started, certified and rejected; deviations and CAPA; OOS \
results and results received after administration; complaints and suspected adverse reactions; \
the yearly comparability result; and the master-file versions made effective in the year.

Control Site QA compiles the report; the Head of QA and a QP approve it; its submission and the \
MHRA's acknowledgement are recorded in the QMS.
"""


def network_sections(**overrides: str) -> dict[str, str]:
    """The sections every product shares, with product-specific ones laid over them."""
    shared = {
        "control-site": CONTROL_SITE_TEXT,
        "site-approval": SITE_APPROVAL_TEXT,
        "site-start-suspend-cease": START_SUSPEND_CEASE_TEXT,
        "quality-system": QUALITY_SYSTEM_TEXT,
        "documentation": DOCUMENTATION_TEXT,
        "complaints-recalls": COMPLAINTS_TEXT,
        "self-inspection": SELF_INSPECTION_TEXT,
        "annual-reporting": ANNUAL_REPORTING_TEXT,
    }
    return {**shared, **{key.replace("_", "-"): text for key, text in overrides.items()}}


#
# NAT-CD19: point-of-care CAR-T (licensed, 3 days)
#

CD19_SITE_ROWS_V1 = """\
| Code | Site | Host organisation | Role |
| --- | --- | --- | --- |
| NCL1 | Freeman Hospital Cell Therapy Unit | The Newcastle upon Tyne Hospitals NHS FT | \
Reference site |
"""

CD19_SITE_ROWS_V2 = (
    CD19_SITE_ROWS_V1
    + """\
| MAN1 | Manchester Royal Infirmary CAR-T Suite | Manchester University NHS FT | Manufacture |
| SHF1 | Royal Hallamshire Cell Therapy Suite | Sheffield Teaching Hospitals NHS FT | \
Manufacture |
"""
)

CD19_IDENTIFICATION = """\
Each site is registered by the Control Site under a four-character site code that never changes \
and is never reused. The code begins every batch number made there (e.g. NCL1-0042), is printed \
on every label and appears on every deviation, complaint and adverse-reaction report, so a batch \
and its site are always told apart.

The site register describes each site by its kind (point-of-care hospital unit), host \
organisation, address, site lead, technical agreement, status and **equipment fingerprint**: \
the serial numbers of the CliniMACS Prodigy, biosafety cabinet and cell counter qualified for \
the process. Only fingerprint equipment may be used for a NAT-CD19 batch; the batch record \
captures each serial number.

{rows}
The site annex of this version, generated from the register when the version was submitted, is \
the authoritative list.
"""

CD19_LOCATIONS_V1 = """\
- **NCL1**: Cell Therapy Unit, Freeman Hospital, Freeman Road, High Heaton, Newcastle upon Tyne \
NE7 7DN. The apheresis unit and the haematology day unit where the product is infused are in \
the same hospital; cells never leave the site.

The address of every site is held in the site register and copied into the annex of each \
version. A site that moves is onboarded again at its new address (SOP-CS-010).
"""

CD19_LOCATIONS_V2 = """\
- **NCL1**: Cell Therapy Unit, Freeman Hospital, Freeman Road, High Heaton, Newcastle upon Tyne \
NE7 7DN. The apheresis unit and the haematology day unit where the product is infused are in \
the same hospital; cells never leave the site.
- **MAN1**: CAR-T Suite, Manchester Royal Infirmary, Oxford Road, Manchester M13 9WL. The \
product is carried by porter, in a validated 2–8 °C shipper, to the haematology ward of the \
same hospital.
- **SHF1**: Cell Therapy Suite, Royal Hallamshire Hospital, Glossop Road, Sheffield S10 2JF. \
Apheresis and infusion take place in the same hospital.

The address of every site is held in the site register and copied into the annex of each \
version. A site that moves is onboarded again at its new address (SOP-CS-010).
"""

CD19_TESTING = """\
| Where | Operations for NAT-CD19 |
| --- | --- |
| QCL1, Newcastle Cellular Therapies QC Laboratory | Flow cytometry (CAR expression, T-cell \
identity), mycoplasma by qPCR, endotoxin, vector copy number by ddPCR, potency, sterility, \
replication-competent lentivirus on retained samples |
| Each manufacturing site | At-line cell count and viability (NucleoCounter NC-202), Gram \
stain, appearance |

Samples travel to QCL1 by the Control Site's courier at 2–8 °C in validated shippers (transport \
validation TV-QCL1-01: at most 4 hours from any site). QCL1 enters its results against the batch \
in the QMS. The lentiviral vector is made and released by its supplier (certificate of analysis \
and QP declaration for each lot) and is not tested at the sites.
"""

CD19_MANUFACTURE_V1 = """\
NAT-CD19 is made by the same process at every site, from master batch record MBR-CD19, on the \
site's qualified CliniMACS Prodigy (T Cell Transduction process):

1. Leukapheresis at the host trust's apheresis unit. The bag carries the patient's \
chain-of-identity (COI) number and reaches the unit within 24 hours at 2–8 °C.
2. Day 0: CD4/CD8 selection, activation with TransAct, culture in TexMACS with IL-7 and IL-15.
3. Day 1: transduction with the lentiviral vector LV-CD19-BBz (MOI 5).
4. Days 2–8: expansion in the closed tubing set; in-process counts on days 5 and 7.
5. Day 8: harvest, wash and formulation; fill into the infusion bag; release and retained \
samples.

Every manipulation is closed; connections are sterile welds and sampling is done in the grade A \
cabinet. The batch record is completed electronically at the site and reviewed by the site lead.

**Release.** A QP of the Control Site certifies each batch remotely in the QMS, on the batch \
record, the environmental monitoring of the sessions, the Gram stain and the release results in \
"Quality control" (SOP-CS-070). The product leaves the unit only after certification, with the \
certificate number on its label. Sterility and replication-competent lentivirus results arrive \
after infusion; they are linked to the batch, and a failing result opens a deviation and alerts \
the QP and the treating clinician at once (SOP-CS-043).
"""

CD19_MANUFACTURE_V3 = """\
NAT-CD19 is made by the same process at every site, from master batch record MBR-CD19, on the \
site's qualified CliniMACS Prodigy (T Cell Transduction process):

1. Leukapheresis at the host trust's apheresis unit. The bag carries the patient's \
chain-of-identity (COI) number and reaches the unit within 24 hours at 2–8 °C.
2. Day 0: CD4/CD8 selection, activation with TransAct, culture in TexMACS with IL-7 and IL-15.
3. Day 1: transduction with the lentiviral vector LV-CD19-BBz (MOI 5).
4. Days 2–8: expansion in the closed tubing set; in-process counts on days 5 and 7; on day 7 a \
sample goes to QCL1 for the potency assay.
5. Day 8: harvest, wash and formulation; fill into the infusion bag; release and retained \
samples.

Every manipulation is closed; connections are sterile welds and sampling is done in the grade A \
cabinet. The batch record is completed electronically at the site and reviewed by the site lead.

**Release.** A QP of the Control Site certifies each batch remotely in the QMS, on the batch \
record, the environmental monitoring of the sessions, the Gram stain and the release results in \
"Quality control", **including the potency result of the day-7 sample** (SOP-CS-070). The \
product leaves the unit only after certification, with the certificate number on its label. \
The sterility result (automated culture, 7 days) and the replication-competent lentivirus \
result arrive after infusion; they are linked to the batch, and a positive flag or failing \
result opens a deviation and alerts the QP and the treating clinician at once (SOP-CS-043).
"""

CD19_PERSONNEL_V1 = """\
**Control Site.** The Head of Quality Assurance (Quinn Adams), the Qualified Persons named on \
licence {licence} (Dr Priya Patel), the Head of Production and the training lead. QA and the QPs \
are independent of production.

**Each site.** A site lead, responsible under the technical agreement for manufacture at the \
site, and at least two operators qualified on the process, so that every critical step is done \
by one and verified by another.

**Training.** Everyone working on NAT-CD19 completes GxP induction, the yearly GxP refresher, \
read-and-understood training on each procedure of their role, and process training on the \
CliniMACS Prodigy assessed by a Control Site trainer. Operators pass gowning qualification and \
an aseptic process simulation twice a year. The QMS refuses a step sign-off by a person whose \
training for that step at that site is not current (SOP-CS-030).
"""

CD19_PERSONNEL_V2 = (
    CD19_PERSONNEL_V1
    + """
**New sites.** The MAN1 and SHF1 teams (site lead and three operators each) were trained at NCL1 \
and made their comparability batches under the supervision of a Control Site trainer.
"""
)

CD19_PREMISES_INTRO = """\
At each site NAT-CD19 is made in a grade C room; the grade A biosafety cabinet is used for \
sterile welding and sampling, and the closed Prodigy process runs in the grade C room. Room \
classification, HVAC and environmental monitoring are qualified at onboarding and every year; \
each session is monitored (settle and contact plates, continuous non-viable particle counts in \
the cabinet).

"""

CD19_PREMISES_OUTRO = """
Equipment is qualified (IQ/OQ/PQ) before use and on the Control Site's requalification \
schedule; an item past its requalification date cannot be selected in a batch record.
"""

CD19_FINGERPRINT_V1 = """\
| Site | Closed-system processor | Biosafety cabinet | Cell counter |
| --- | --- | --- | --- |
| NCL1 | CliniMACS Prodigy PRD-0412 | Herasafe 2030i BSC-NCL-01 | NC-202 NC202-3391 |
"""

CD19_FINGERPRINT_V2 = (
    CD19_FINGERPRINT_V1
    + """\
| MAN1 | CliniMACS Prodigy PRD-0530 | Herasafe 2030i BSC-MAN-01 | NC-202 NC202-4102 |
| SHF1 | CliniMACS Prodigy PRD-0377 | Herasafe 2030i BSC-SHF-01 (out of service during the \
refurbishment; requalified before SHF1 resumes) | NC-202 NC202-3920 |
"""
)

CD19_PRODUCTION = """\
**Starting materials.** The apheresis material is collected by the host trust's apheresis unit \
under its HTA licence, with the mandatory donor tests (HIV, HBV, HCV, HTLV, syphilis) done within \
30 days before collection. The lentiviral vector LV-CD19-BBz comes from one qualified supplier \
under a quality agreement, each lot with its certificate of analysis and QP declaration. \
TransAct, TexMACS, IL-7, IL-15, the CD4 and CD8 reagents and the tubing sets are GMP grade, \
bought centrally and released by Control Site QA before they are sent to the sites; no site buys \
its own critical materials.

**Chain of identity.** The COI number is assigned when the treating centre books the \
manufacturing slot. Every label, bag, sample and record carries it with the patient's initials \
and date of birth; two people verify it at collection, receipt, formulation and infusion.

**Process validation.** Three verification batches at NCL1 (VB-NCL1-001 to 003), made from \
healthy-donor apheresis, met every specification. Continued process verification trends fold \
expansion, viability and CAR expression for every site.
"""

CD19_QC_V1 = """\
| Test | Method | Where | Limit | Known before release |
| --- | --- | --- | --- | --- |
| Appearance | Visual | Site | Slightly opalescent, no visible clumps | Yes |
| Viable cells and viability | NC-202 | Site | Viability ≥ 70 % | Yes |
| Identity and CAR expression | Flow cytometry (CD3, CD19-Fc) | QCL1 | CD3+ ≥ 90 %; \
CAR+ ≥ 15 % of CD3+ | Yes |
| Dose | Calculated | Site | 0.5–2.0 × 10⁶ CAR+ viable cells/kg | Yes |
| Gram stain | Microscopy | Site | No organisms seen | Yes |
| Endotoxin | Kinetic chromogenic, Ph. Eur. 2.6.14 | QCL1 | ≤ 0.5 EU/mL | Yes |
| Mycoplasma | qPCR, Ph. Eur. 2.6.7 | QCL1 | Not detected | Yes |
| Vector copy number | ddPCR | QCL1 | ≤ 5 copies per transduced cell | Yes |
| Potency | IFN-γ release on co-culture with CD19+ cells | QCL1 | Reported | No |
| Sterility | Ph. Eur. 2.6.1, 14 days | QCL1 | No growth | No: after infusion |
| Replication-competent lentivirus | qPCR on retained cells | QCL1 | Not detected | No: \
after infusion |

Results that arrive after infusion are handled under SOP-CS-043: a failing result opens a \
deviation and an OOS investigation, and the QP and the treating clinician are told the same day. \
Two 1 mL retained samples of each batch are stored below −150 °C for the retention period.
"""

CD19_QC_V3 = """\
| Test | Method | Where | Limit | Known before release |
| --- | --- | --- | --- | --- |
| Appearance | Visual | Site | Slightly opalescent, no visible clumps | Yes |
| Viable cells and viability | NC-202 | Site | Viability ≥ 70 % | Yes |
| Identity and CAR expression | Flow cytometry (CD3, CD19-Fc) | QCL1 | CD3+ ≥ 90 %; \
CAR+ ≥ 15 % of CD3+ | Yes |
| Dose | Calculated | Site | 0.5–2.0 × 10⁶ CAR+ viable cells/kg | Yes |
| Gram stain | Microscopy | Site | No organisms seen | Yes |
| Endotoxin | Kinetic chromogenic, Ph. Eur. 2.6.14 | QCL1 | ≤ 0.5 EU/mL | Yes |
| Mycoplasma | qPCR, Ph. Eur. 2.6.7 | QCL1 | Not detected | Yes |
| Vector copy number | ddPCR | QCL1 | ≤ 5 copies per transduced cell | Yes |
| Potency | IFN-γ release after 24 h co-culture of the day-7 sample with CD19+ cells | QCL1 | \
≥ 5 × the untransduced control | **Yes** |
| Sterility | Automated culture, Ph. Eur. 2.6.27 (BacT/ALERT 3D), 7 days | QCL1 | No growth \
| No: after infusion |
| Replication-competent lentivirus | qPCR on retained cells | QCL1 | Not detected | No: \
after infusion |

The automated culture method was validated for the NAT-CD19 matrix against Ph. Eur. 2.6.1 \
(VAL-QCL1-BA-02: method suitability and limit of detection for the Ph. Eur. panel). Results that \
arrive after infusion are handled under SOP-CS-043: a positive flag or failing result opens a \
deviation and an OOS investigation, and the QP and the treating clinician are told the same day. \
Two 1 mL retained samples of each batch are stored below −150 °C for the retention period.
"""

CD19_CONTROL_STRATEGY_V1 = """\
Control strategy CS-CD19, edition 1, approved with this master file and revised with it.

- **Critical quality attributes:** viability, identity (CD3+), CAR expression, vector copy \
number, dose, sterility, endotoxin, mycoplasma.
- **Critical process parameters, identical at every site and locked in the Prodigy program:** \
activation at 1 × 10⁶ cells/mL, transduction at MOI 5 on day 1, culture at 37 °C, harvest on \
day 8.
- **The same inputs everywhere:** vector, reagents and tubing sets are bought and released \
centrally.
- **The same people standard:** training and qualification are set and assessed by the Control \
Site.
- **Release by exception:** the product is infused before its sterility result is known, so \
release rests on closed processing, each site's aseptic process simulation, the environmental \
monitoring of the sessions, the Gram stain and the rapid tests in "Quality control".
"""

CD19_CONTROL_STRATEGY_V3 = """\
Control strategy CS-CD19, **edition 2**, approved with this master file and revised with it.

- **Critical quality attributes:** viability, identity (CD3+), CAR expression, vector copy \
number, dose, **potency**, sterility, endotoxin, mycoplasma.
- **Critical process parameters, identical at every site and locked in the Prodigy program:** \
activation at 1 × 10⁶ cells/mL, transduction at MOI 5 on day 1, culture at 37 °C, harvest on \
day 8.
- **The same inputs everywhere:** vector, reagents and tubing sets are bought and released \
centrally.
- **The same people standard:** training and qualification are set and assessed by the Control \
Site.
- **Release by exception:** the product is infused before its sterility result is known, so \
release rests on closed processing, each site's aseptic process simulation, the environmental \
monitoring of the sessions, the Gram stain, the rapid tests and the potency result in "Quality \
control". The 7-day automated culture flags a contaminated batch a week earlier than the \
compendial test it replaces.
"""

CD19_COMPARABILITY_V1 = """\
NCL1 is the reference site. Its three verification batches (VB-NCL1-001 to 003) set the \
reference ranges: viability, CAR expression, CD4:CD8 ratio, fold expansion, vector copy number \
and memory phenotype (CD45RA, CCR7).

A new site is comparable when its comparability batch, made from a split healthy-donor \
apheresis alongside a reference-site batch, is within the reference ranges for every attribute \
and within ±15 percentage points of the reference-site batch for CAR expression (protocol \
CP-CD19-01, SOP-CS-090). Every year each site is compared again on its batches of the year; \
the result and QA's sign-off go into the annual report.
"""

CD19_COMPARABILITY_V2 = (
    CD19_COMPARABILITY_V1
    + """
| Site | Batch | Viability | CAR+ of CD3+ | Fold expansion | VCN | Outcome |
| --- | --- | --- | --- | --- | --- | --- |
| NCL1 (reference, mean of 3) | VB-NCL1-001 to 003 | 91 % | 38 % | 42 | 2.1 | Reference |
| MAN1 | CB-MAN1-001 | 89 % | 35 % | 39 | 2.4 | Comparable |
| SHF1 | CB-SHF1-001 | 92 % | 41 % | 46 | 1.9 | Comparable |
"""
)

CD19_V1 = DemoVersion(
    reach=VersionStatus.EFFECTIVE,
    why="First edition of the NAT-CD19 master file, for the designation and the licence.",
    sections=network_sections(
        designation="""\
**Product.** NAT-CD19 is an autologous T-cell product, genetically modified ex vivo with a \
self-inactivating lentiviral vector that encodes an anti-CD19 chimeric antigen receptor (FMC63 \
single-chain variable fragment, CD8 hinge and transmembrane domain, 4-1BB and CD3ζ signalling \
domains). It is supplied fresh and never cryopreserved.

**Dosage form and presentation.** Dispersion for infusion, 50–100 mL in one ethylene-vinyl \
acetate infusion bag, in 0.9 % sodium chloride with 2.5 % human albumin. Target dose 1 × 10⁶ \
CAR-positive viable T cells per kg (0.5–2.0 × 10⁶/kg; at most 1 × 10⁸ CAR-positive cells).

**Indication and population.** Adults with relapsed or refractory large B-cell lymphoma after \
two or more lines of systemic therapy, treated at NHS centres accredited for immune effector \
cell therapy.

**Shelf life.** 3 days (72 hours) at 2–8 °C from the end of formulation (stability study \
ST-CD19-01).

**Designation.** Point of care (POC): MHRA designation MHRA-DES-POC-2025-0031 of 18 September \
2025. The product can only be made at or near the place where it is administered: it is made \
from the patient's own cells collected in the treating hospital, it is supplied fresh, and its \
shelf life leaves no time for central manufacture and distribution. The Control Site reviews the \
designation whenever the dosage form, shelf life, process or indication changes (SOP-CS-080 §4).

**Supply status.** Licensed: GB marketing authorisation PLGB 54021/0001 (conditional; demo \
reference), holder Northern Advanced Therapies Ltd.
""",
        site_identification=CD19_IDENTIFICATION.replace("{rows}", CD19_SITE_ROWS_V1),
        site_locations=CD19_LOCATIONS_V1,
        testing_sites=CD19_TESTING,
        manufacture_and_release=CD19_MANUFACTURE_V1,
        personnel=CD19_PERSONNEL_V1,
        premises_equipment=CD19_PREMISES_INTRO + CD19_FINGERPRINT_V1 + CD19_PREMISES_OUTRO,
        production=CD19_PRODUCTION,
        quality_control=CD19_QC_V1,
        control_strategy=CD19_CONTROL_STRATEGY_V1,
        comparability=CD19_COMPARABILITY_V1,
    ),
)

CD19_V2 = DemoVersion(
    reach=VersionStatus.EFFECTIVE,
    why="CC-2026-003: MAN1 and SHF1 added after their comparability batches.",
    sites_added=(
        (
            "MAN1",
            MANUFACTURING,
            "Comparability batch CB-MAN1-001 comparable with NCL1 (CP-CD19-01); change control "
            "CC-2026-003.",
        ),
        (
            "SHF1",
            MANUFACTURING,
            "Comparability batch CB-SHF1-001 comparable with NCL1 (CP-CD19-01); change control "
            "CC-2026-003.",
        ),
    ),
    sections={
        "site-identification": CD19_IDENTIFICATION.replace("{rows}", CD19_SITE_ROWS_V2),
        "site-locations": CD19_LOCATIONS_V2,
        "personnel": CD19_PERSONNEL_V2,
        "premises-equipment": CD19_PREMISES_INTRO + CD19_FINGERPRINT_V2 + CD19_PREMISES_OUTRO,
        "comparability": CD19_COMPARABILITY_V2,
    },
    change_summary="""\
Change control CC-2026-003. Adds two point-of-care sites after their comparability batches:

- **MAN1**, Manchester Royal Infirmary CAR-T Suite: CB-MAN1-001 comparable with NCL1 on every \
attribute;
- **SHF1**, Royal Hallamshire Cell Therapy Suite: CB-SHF1-001 comparable with NCL1. The site is \
paused for a planned cleanroom refurbishment and makes NAT-CD19 again only once QA resumes it \
(SOP-CS-011).

Sections changed: Identification and Location of each manufacturing site; Personnel and \
training (the new site teams); Premises and equipment (their fingerprints); Comparability \
across sites (the results). No change to the process, the specifications or release.
""",
)

CD19_V3 = DemoVersion(
    reach=VersionStatus.IN_REVIEW,
    why="CC-2026-011: automated sterility culture and potency as a release test.",
    sections={
        "manufacture-and-release": CD19_MANUFACTURE_V3,
        "quality-control": CD19_QC_V3,
        "control-strategy": CD19_CONTROL_STRATEGY_V3,
    },
    change_summary="""\
Change control CC-2026-011 (annual review of the release tests).

- **Sterility**: the compendial test (Ph. Eur. 2.6.1, 14 days) is replaced by the validated \
automated culture method (Ph. Eur. 2.6.27, BacT/ALERT 3D, 7 days; validation VAL-QCL1-BA-02), \
so a contaminated batch is flagged a week earlier.
- **Potency**: IFN-γ release on co-culture with CD19+ cells, on a day-7 in-process sample, \
becomes a release test with a limit (≥ 5 × the untransduced control) instead of a reported \
result.
- Control strategy CS-CD19 edition 2 is issued with this version.

Sections changed: Manufacture, assembly and release at each site; Quality control; \
Decentralised manufacture control strategy. The designation is unaffected: no change to the \
dosage form, shelf life, process or indication.
""",
    comments=(
        DemoComment(
            author=DEMO_QP,
            section="quality-control",
            body=(
                "The 7-day automated culture still reads out after infusion. Where is the "
                "out-of-hours route for a positive flag written down: who at QCL1 phones whom, "
                "and within what time?"
            ),
            resolution=(
                "SOP-CS-043 edition 4, §5.3: QCL1 phones the Control Site QP on call within one "
                "hour of a positive flag, and the QP tells the treating clinician within the "
                "same hour. The master file refers to SOP-CS-043; no change needed."
            ),
        ),
        DemoComment(
            author=DEMO_QP,
            section="comparability",
            body=(
                "Potency becomes a release test, but the comparability reference ranges were set "
                "without it. Before I sign: will the annual comparability of MAN1 and SHF1 "
                "include the IFN-γ potency result from now on (CP-CD19-01 revision)?"
            ),
            after_qa_approval=True,
        ),
    ),
)

#
# NAT-CMV: modular-unit virus-specific T cells (investigational, 4 h then 6 h)
#

CMV_DESIGNATION_V1 = """\
**Product.** NAT-CMV is a donor-derived T-cell product enriched for cytomegalovirus \
(CMV)-specific T cells by interferon-γ capture after stimulation with CMV pp65 and IE-1 peptide \
pools. It is supplied fresh.

**Dosage form and presentation.** Dispersion for infusion, 10–50 mL in one transfer bag, in \
0.9 % sodium chloride with 0.5 % human albumin. Dose 2.5 × 10⁴ CD3+ T cells per kg of the \
recipient's body weight, counting every CD3+ cell whether it secretes IFN-γ or not, to limit the \
risk of graft-versus-host disease.

**Indication and population.** Children and adults with CMV infection or disease refractory to \
antiviral treatment after allogeneic haematopoietic stem-cell transplantation. The product is \
made from the stem-cell donor or, when that donor is CMV-seronegative or unavailable, from a \
CMV-seropositive, partially HLA-matched family donor.

**Shelf life.** {shelf_life} at 15–25 °C from the end of the enrichment ({stability}).

**Designation.** Modular manufacture (MM): MHRA designation MHRA-DES-MM-2025-0007 of 4 November \
2025. The product must be made within hours of the donor's collection and given within hours of \
manufacture, at transplant centres without a cell-therapy cleanroom of their own; it is made in \
transportable modular units placed at the transplant centre while its patients need them.

**Supply status.** Investigational medicinal product in the phase II trial NAT-CMV-02 (demo \
reference), under a clinical trial authorisation that names this master file.
"""

CMV_SITE_ROWS_V1 = """\
| Code | Unit | Role |
| --- | --- | --- |
| MU01 | Modular cleanroom unit MU-01 | Reference unit |
"""

CMV_SITE_ROWS_V2 = (
    CMV_SITE_ROWS_V1
    + """\
| MU02 | Modular cleanroom unit MU-02 | Manufacture, once qualified, active and comparable |
"""
)

CMV_IDENTIFICATION = """\
Each modular unit is identified by its site code (MU01, MU02 …), which stays the same when the \
unit moves, and by the chassis and cleanroom serial numbers on its data plate. Its equipment \
fingerprint is recorded in the site register; for MU01 it is the CliniMACS Prodigy PRD-0611 and \
the Herasafe 2030i cabinet BSC-MU01-1. The site code begins every batch number made in the unit \
and is printed on every label.

{rows}
The site annex of this version, generated from the register when the version was submitted, is \
the authoritative list with each unit's location at that time.
"""

CMV_LOCATIONS_V1 = """\
A modular unit has no fixed address: the site register holds its current location, and every \
move is a dated entry with the move plan that authorised it. A unit is placed only where a \
technical agreement with the host trust provides level hard standing within 200 m of the \
transplant ward, a three-phase power supply with a standby generator, a network connection and \
24-hour security.

- **MU01** stands in the estates compound of Sunderland Royal Hospital, Kayll Road, Sunderland \
SR4 7TP, for South Tyneside and Sunderland NHS Foundation Trust.
"""

CMV_LOCATIONS_V2 = (
    CMV_LOCATIONS_V1
    + """\
- **MU02** stands in car park C of the Royal Victoria Infirmary, Queen Victoria Road, Newcastle \
upon Tyne NE1 4LP, where it is being onboarded.
"""
)

CMV_MOVES_V1 = """
**Moving a modular unit.** A unit moves only under a move plan approved by QA (SOP-CS-012). \
Manufacture is paused; the unit is cleaned, sealed and moved; at the new location it is \
reconnected and requalified (pressure cascade and air changes, non-viable particles, \
environmental monitoring at rest and in operation, function checks of the fingerprint \
equipment) before QA resumes it. The new location is recorded in the site register and the \
MHRA is told.
"""

CMV_MOVES_V2 = """
**Moving a modular unit.** A unit moves only under a move plan approved by QA (SOP-CS-012). \
Manufacture is paused; the unit is cleaned, sealed and moved **with shock and temperature \
loggers on the processor and the cabinet**; at the new location it is reconnected and \
requalified (pressure cascade and air changes, non-viable particles, environmental monitoring at \
rest and in operation, function checks of the fingerprint equipment, and an OQ of any item whose \
logger recorded a shock above 5 g) before QA resumes it. The new location is recorded in the \
site register and the MHRA is told. MU01's two moves (to the Royal Victoria Infirmary, then to \
Sunderland) were requalified in four and three working days.
"""

CMV_TESTING = """\
| Where | Operations for NAT-CMV |
| --- | --- |
| The modular unit | Cell count and viability, IFN-γ+ fraction and CD3+ dose by flow \
cytometry (MACSQuant Analyzer 10), endotoxin by rapid cartridge (Endosafe nexgen-PTS), Gram \
stain, appearance |
| QCL1, Newcastle Cellular Therapies QC Laboratory | Sterility (Ph. Eur. 2.6.27, BacT/ALERT \
3D), mycoplasma by qPCR, confirmatory flow cytometry on a retained sample |

Every release test is done in the unit, because the shelf life does not allow samples to travel \
first. QCL1 tests arrive after infusion and are linked to the batch in the QMS.
"""

CMV_MANUFACTURE = """\
1. Non-mobilised leukapheresis of the donor at the transplant centre, at most 24 hours before \
manufacture, kept at 15–25 °C. The bag carries the chain-of-identity number of the recipient.
2. CliniMACS Prodigy, Cytokine Capture System (IFN-γ) process, master batch record MBR-CMV: \
stimulation with MACS GMP PepTivator CMV pp65 and IE-1 for 4 hours at 37 °C, IFN-γ catch \
reagent, magnetic enrichment of the IFN-γ-secreting cells, elution in 0.9 % sodium chloride with \
0.5 % albumin. The run takes about 12 hours and is closed throughout.
3. Release tests in the unit; the dose is calculated from the CD3+ count and drawn into the \
final bag in the grade A cabinet.

**Release.** The QP on call certifies each batch remotely in the QMS as soon as the batch record \
and the in-unit results are complete, with a target of 30 minutes (SOP-CS-070). The unit's staff \
hand the product to the ward nurse against the chain-of-identity check. Sterility and mycoplasma \
results arrive after infusion; a failing result opens a deviation and alerts the QP and the \
transplant physician at once (SOP-CS-043).
"""

CMV_PERSONNEL = """\
**Control Site.** The Head of Quality Assurance (Quinn Adams), the Qualified Persons named on \
licence {licence} (Dr Priya Patel), the Head of Production and the modular-unit logistics lead.

**Each unit.** A unit lead and three operators from the Control Site's own staff travel with the \
unit; the host trust provides the apheresis and the ward. The process needs two operators on \
every run: one operates, one verifies.

**Training.** GxP induction, yearly GxP refresher, read-and-understood training on each procedure \
of the role, process training on the Cytokine Capture System assessed by a Control Site \
trainer, gowning qualification, and an aseptic process simulation in the unit twice a year and \
after every move. The QMS refuses a step sign-off by a person whose training is not current.
"""

CMV_PREMISES = """\
Each unit is a transportable cleanroom: a grade C processing room with a grade A cabinet, a \
grade D changing room and a material airlock, with its own HVAC (H14 terminal filters, pressure \
cascade 45/30/15 Pa) monitored continuously. Environmental monitoring covers every session \
(settle and contact plates, non-viable particles in the cabinet) and follows the requalification \
rules of SOP-CS-012 after each move.

| Unit | Closed-system processor | Biosafety cabinet | Flow cytometer |
| --- | --- | --- | --- |
| MU01 | CliniMACS Prodigy PRD-0611 | Herasafe 2030i BSC-MU01-1 | MACSQuant Analyzer 10 \
MQ-0118 |
"""

CMV_PRODUCTION = """\
**Starting materials.** The apheresis is collected by the transplant centre's apheresis unit \
under its HTA licence, with the mandatory donor tests within 30 days. Peptide pools, catch and \
detection reagents and tubing sets are GMP grade, bought centrally and released by Control Site \
QA; each unit holds stock for four runs.

**Chain of identity.** The recipient's COI number is assigned when the transplant physician \
requests a batch; donor and recipient identities are checked by two people at collection, at \
receipt in the unit and at the bedside.

**Process validation.** Three verification runs in MU01 from healthy CMV-seropositive donors \
(VB-MU01-001 to 003) met every specification. Continued process verification trends the IFN-γ+ \
fraction, the recovery of CD3+ IFN-γ+ cells and viability for every unit.
"""

CMV_QC = """\
| Test | Method | Where | Limit | Known before release |
| --- | --- | --- | --- | --- |
| Appearance | Visual | Unit | Clear to slightly opalescent, no clumps | Yes |
| Viability | Flow cytometry (7-AAD) | Unit | ≥ 70 % | Yes |
| Purity | Flow cytometry, IFN-γ+ of CD3+ | Unit | ≥ 10 % (reported) | Yes |
| Dose | CD3+ count | Unit | 2.5 × 10⁴ CD3+ cells/kg (± 20 %) | Yes |
| Endotoxin | Rapid cartridge (Endosafe nexgen-PTS) | Unit | ≤ 0.5 EU/mL | Yes |
| Gram stain | Microscopy | Unit | No organisms seen | Yes |
| Sterility | Ph. Eur. 2.6.27, BacT/ALERT 3D | QCL1 | No growth | No: after infusion |
| Mycoplasma | qPCR, Ph. Eur. 2.6.7 | QCL1 | Not detected | No: after infusion |

**Stability.** {stability_text}
"""

CMV_STABILITY_V1 = (
    "ST-CMV-01 (three runs at MU01): viability and the IFN-γ+ fraction stayed within limits for "
    "4 hours at 15–25 °C; the shelf life is 4 hours."
)
CMV_STABILITY_V2 = (
    "ST-CMV-01 supported 4 hours. ST-CMV-02 (three further runs at MU01, sampled at 0, 4, 6 and "
    "8 hours) showed viability ≥ 85 % and no fall in the IFN-γ+ fraction at 8 hours at 15–25 °C; "
    "the shelf life is **6 hours**, leaving a 2-hour margin."
)

CMV_CONTROL_STRATEGY = """\
Control strategy CS-CMV, edition {edition}, approved with this master file.

- **Critical quality attributes:** viability, IFN-γ+ fraction, CD3+ dose, sterility, endotoxin, \
mycoplasma.
- **Critical process parameters, locked in the Prodigy program:** stimulation 4 hours at 37 °C, \
peptide concentration 0.6 nmol per peptide per mL, cell input at most 1 × 10⁹ white cells.
- **The unit, not the host, is the site:** each unit carries its equipment, HVAC and \
environmental monitoring with it, so a move changes the location but not the process.
- **Release by exception in real time:** every release test is done in the unit; sterility and \
mycoplasma follow the infusion. The shelf life ({shelf_life}) is set from stability data with \
a 2-hour margin.
"""

CMV_COMPARABILITY_V1 = """\
MU01 is the reference unit; its three verification runs set the reference ranges for viability, \
the IFN-γ+ fraction, the recovery of CD3+ IFN-γ+ cells and the CD4:CD8 ratio. Every year MU01 is \
compared with its own verification runs and after every move with its last three runs before the \
move (SOP-CS-090).
"""

CMV_COMPARABILITY_V2 = """\
MU01 is the reference unit; its three verification runs set the reference ranges for viability, \
the IFN-γ+ fraction, the recovery of CD3+ IFN-γ+ cells and the CD4:CD8 ratio. Every year each \
unit is compared with the reference ranges, and after every move with its last three runs before \
the move (SOP-CS-090).

**MU02** makes one comparability run from a split healthy-donor apheresis alongside MU01 \
(protocol CP-CMV-01): it is comparable when viability, the IFN-γ+ fraction and the recovery are \
within the reference ranges and the IFN-γ+ fraction is within ±10 percentage points of MU01's \
run. It manufactures for patients only after that, once QA has activated it.
"""

CMV_V1 = DemoVersion(
    reach=VersionStatus.EFFECTIVE,
    why="First edition of the NAT-CMV master file, for the designation and the trial.",
    sections=network_sections(
        designation=CMV_DESIGNATION_V1.replace("{shelf_life}", "4 hours").replace(
            "{stability}", "stability study ST-CMV-01"
        ),
        site_identification=CMV_IDENTIFICATION.replace("{rows}", CMV_SITE_ROWS_V1),
        site_locations=CMV_LOCATIONS_V1,
        site_start_suspend_cease=START_SUSPEND_CEASE_TEXT + CMV_MOVES_V1,
        testing_sites=CMV_TESTING,
        manufacture_and_release=CMV_MANUFACTURE,
        personnel=CMV_PERSONNEL,
        premises_equipment=CMV_PREMISES,
        production=CMV_PRODUCTION,
        quality_control=CMV_QC.replace("{stability_text}", CMV_STABILITY_V1),
        control_strategy=CMV_CONTROL_STRATEGY.replace("{edition}", "1").replace(
            "{shelf_life}", "4 hours"
        ),
        comparability=CMV_COMPARABILITY_V1,
    ),
)

CMV_V2 = DemoVersion(
    reach=VersionStatus.EFFECTIVE,
    why="CC-2026-007: 6-hour shelf life, MU02 added, moves logged.",
    product_changes={"shelf_life_minutes": 6 * 60},
    product_change_reason=(
        "CC-2026-007: shelf life 6 hours on stability study ST-CMV-02; designation reviewed "
        "under SOP-CS-080 §4."
    ),
    sites_added=(
        (
            "MU02",
            MANUFACTURING,
            "Second modular unit for NAT-CMV (CC-2026-007); manufactures only once qualified, "
            "activated and comparable with MU01.",
        ),
    ),
    sections={
        "designation": CMV_DESIGNATION_V1.replace("{shelf_life}", "6 hours").replace(
            "{stability}", "stability studies ST-CMV-01 and ST-CMV-02"
        ),
        "site-identification": CMV_IDENTIFICATION.replace("{rows}", CMV_SITE_ROWS_V2),
        "site-locations": CMV_LOCATIONS_V2,
        "site-start-suspend-cease": START_SUSPEND_CEASE_TEXT + CMV_MOVES_V2,
        "quality-control": CMV_QC.replace("{stability_text}", CMV_STABILITY_V2),
        "control-strategy": CMV_CONTROL_STRATEGY.replace("{edition}", "2").replace(
            "{shelf_life}", "6 hours"
        ),
        "comparability": CMV_COMPARABILITY_V2,
    },
    change_summary="""\
Change control CC-2026-007.

- **Shelf life** extended from 4 to 6 hours at 15–25 °C on stability study ST-CMV-02 (viability \
and IFN-γ+ fraction within limits at 8 hours). The designation was reviewed under SOP-CS-080 §4: \
the product still has to be made beside the transplant ward, so the MM designation stands; the \
MHRA is told with this version.
- **MU02**, a second modular unit now being onboarded at the Royal Victoria Infirmary, is added. \
It manufactures only once qualified, activated and shown comparable with MU01 (CP-CMV-01).
- **Moves**: shock and temperature loggers on every move, and an OQ of any item that took a \
shock, after MU01's two relocations.

Sections changed: Product and designation; Identification and Location of each manufacturing \
site; Starting, suspending and ceasing manufacture; Quality control; Decentralised \
manufacture control strategy (edition 2); Comparability across sites.
""",
)

#
# NAT-WBC: radiolabelled autologous leucocytes from hospital radiopharmacies (unlicensed, 45 min)
#

WBC_MANUFACTURE_V1 = """\
NAT-WBC is made for one patient at a time, from master batch record MBR-WBC, in the grade A \
cabinet of the site's radiopharmacy:

1. 51 mL of the patient's blood is drawn on the ward into a syringe holding 9 mL of ACD-A, \
labelled with the patient's identity and the request number, and reaches the radiopharmacy \
within 30 minutes.
2. Sedimentation with 6 % hydroxyethyl starch for 30–45 minutes; the leucocyte-rich plasma is \
centrifuged (150 g, 5 minutes) to a leucocyte pellet, and part of the plasma is spun again \
(2000 g, 10 minutes) to cell-free plasma.
3. An exametazime kit is reconstituted with 1000 MBq of sodium pertechnetate (⁹⁹ᵐTc) from a \
generator eluted within the previous 24 hours (eluate at most 2 hours old) and added to the \
cells within 5 minutes; incubation 10 minutes.
4. The cells are washed, resuspended in 3–5 mL of cell-free plasma and the activity of cells and \
washings is measured in the dose calibrator.
5. The dose is drawn into a shielded syringe, inspected for clumps and labelled.

Only one patient's blood is in the cabinet at a time, with a documented line clearance between \
patients.

**Release.** The electronic batch record captures the labelling efficiency, activity, \
appearance, line clearance and the session's environmental monitoring as they happen. The QP on \
call certifies the batch remotely in the QMS from that record, with a target of 10 minutes \
(SOP-CS-070); the radiopharmacist hands the syringe to the nuclear medicine team against the \
request. Sterility on the residue arrives after administration; a failing result opens a \
deviation and alerts the QP and the ARSAC licence holder (SOP-CS-043).
"""

WBC_MANUFACTURE_V2 = """\
NAT-WBC is made for one patient at a time, from master batch record MBR-WBC, in a **closed, \
sterile, single-use leucocyte-labelling set**; the grade A cabinet of the site's radiopharmacy \
is used only for the two connections to the set:

1. 51 mL of the patient's blood is drawn on the ward directly into the set's blood bag holding \
9 mL of ACD-A, labelled with the patient's identity and the request number, and reaches the \
radiopharmacy within 30 minutes.
2. Sedimentation with 6 % hydroxyethyl starch inside the set for 30–45 minutes; the \
leucocyte-rich plasma is moved to the set's centrifuge chamber and spun (150 g, 5 minutes); \
cell-free plasma is made in the set's second chamber (2000 g, 10 minutes).
3. The exametazime kit, reconstituted with 1000 MBq of sodium pertechnetate (⁹⁹ᵐTc) (eluate at \
most 2 hours old), is added through the set's sterile filter port within 5 minutes; incubation \
10 minutes.
4. Washes and resuspension in 3–5 mL of cell-free plasma inside the set; the activity of cells \
and washings is measured in the dose calibrator.
5. The dose is drawn through the set's outlet into a shielded syringe, inspected for clumps and \
labelled.

Only one patient's set is in the cabinet at a time, with a documented line clearance between \
patients.

**Release.** The electronic batch record captures the labelling efficiency, activity, \
appearance, line clearance and the session's environmental monitoring as they happen. The QP on \
call certifies the batch remotely in the QMS from that record, with a target of 10 minutes \
(SOP-CS-070); the radiopharmacist hands the syringe to the nuclear medicine team against the \
request. Sterility on the residue arrives after administration; a failing result opens a \
deviation and alerts the QP and the ARSAC licence holder (SOP-CS-043).
"""

WBC_PREMISES_V1 = """\
Each site's radiopharmacy has a grade B room holding a Class II cabinet (grade A) fitted with a \
lead L-block shield and a shielded dose-calibrator well, a grade C preparation room and a grade \
D changing room. The rooms are qualified at onboarding and every year; every labelling session \
is monitored (settle plates and finger dabs in the cabinet, contact plates at the end of the \
session). Radioactive waste is handled under the host trust's environmental permit.

| Site | Cabinet | Dose calibrator |
| --- | --- | --- |
| BHM1 | Herasafe 2030i BSC-BHM-04, shielded | Capintec CRC-55tR DC-BHM-02 |
| LDS1 | Herasafe 2030i BSC-LDS-02, shielded (PQ completed before the first batch) | Capintec \
CRC-55tR DC-LDS-01 |
"""

WBC_PREMISES_V2 = (
    WBC_PREMISES_V1
    + """
With the closed set, the only open steps are the two aseptic connections made in the cabinet; \
the grade B background is kept, and the session monitoring is unchanged.
"""
)

WBC_PRODUCTION_V1 = """\
**Starting materials.** The patient's own blood; exametazime kits (licensed, each batch \
released by its manufacturer) and sodium pertechnetate from a licensed generator; ACD-A, 6 % \
hydroxyethyl starch and sterile single-use syringes and tubes, bought centrally and released by \
Control Site QA.

**Identity.** The request from the ARSAC licence holder carries the patient's name, date of \
birth and NHS number. Two people check them against the blood syringe at receipt, at every \
transfer and against the final syringe label.

**Process validation.** Ten labellings at BHM1 from volunteer blood (VB-BHM1-001 to 010) gave \
labelling efficiencies of 62–81 % with no clumping; each operator then passes three broth \
simulations of the complete process before labelling a patient's cells.
"""

WBC_PRODUCTION_V2 = """\
**Starting materials.** The patient's own blood; exametazime kits (licensed, each batch \
released by its manufacturer) and sodium pertechnetate from a licensed generator; ACD-A, 6 % \
hydroxyethyl starch and the **closed leucocyte-labelling sets** (CE-marked, sterile, single \
use; supplier audited by the Control Site), bought centrally and released by Control Site QA.

**Identity.** The request from the ARSAC licence holder carries the patient's name, date of \
birth and NHS number. Two people check them against the blood bag at receipt, at every transfer \
and against the final syringe label.

**Process validation.** Ten labellings at BHM1 from volunteer blood (VB-BHM1-001 to 010) gave \
labelling efficiencies of 62–81 % with no clumping. **Six further labellings in the closed set \
(VB-BHM1-011 to 016) gave 64–79 %**; each operator passes three broth simulations of the \
closed-set process before labelling a patient's cells.
"""

WBC_QC_V1 = """\
| Test | Method | Where | Limit | Known before release |
| --- | --- | --- | --- | --- |
| Labelling efficiency | Activity of cells / (cells + washings) | Site | ≥ 50 % | Yes |
| Activity | Dose calibrator, decay-corrected to the administration time | Site | Prescribed \
activity (adult 200 MBq) ± 10 % | Yes |
| Appearance | Visual, against light and dark backgrounds | Site | No clumps or aggregates | \
Yes |
| Identity | Two-person check of request, blood and syringe labels | Site | All match | Yes |
| Sterility | Ph. Eur. 2.6.27 on the residue after 48 hours' decay | QCL1 | No growth | No: \
after administration |

**Aseptic process simulation.** Each operator does a broth simulation of the whole process every \
three months; a growth fails the operator until investigated and repeated.
"""

WBC_QC_V2 = """\
| Test | Method | Where | Limit | Known before release |
| --- | --- | --- | --- | --- |
| Labelling efficiency | Activity of cells / (cells + washings) | Site | ≥ 50 % | Yes |
| Activity | Dose calibrator, decay-corrected to the administration time | Site | Prescribed \
activity (adult 200 MBq) ± 10 % | Yes |
| Appearance | Visual, against light and dark backgrounds | Site | No clumps or aggregates | \
Yes |
| Identity | Two-person check of request, blood and syringe labels | Site | All match | Yes |
| Sterility | Ph. Eur. 2.6.27 on the residue after 48 hours' decay | QCL1 | No growth | No: \
after administration |

**Aseptic process simulation.** Redesigned for the closed set: each operator fills a set with \
tryptone soya broth through every port and runs the whole process every three months; three \
runs per site before the closed set is used for patients. A growth fails the operator until \
investigated and repeated.
"""

WBC_CONTROL_STRATEGY_V1 = """\
Control strategy CS-WBC, edition 1, approved with this master file.

- **Critical quality attributes:** labelling efficiency, activity, absence of clumps, identity, \
sterility.
- **Critical process parameters:** age of the eluate (≤ 2 hours) and of the generator elution \
(≤ 24 hours), time from reconstitution to labelling (≤ 5 minutes), incubation 10 minutes, \
centrifugation forces and times.
- **One patient at a time** in the cabinet, with line clearance: the main risk is a mix-up of \
autologous cells.
- **Release in real time** on the electronic batch record; sterility follows administration. The \
45-minute shelf life is set from the Control Site's labelling-stability data (elution of the \
label and cell clumping), shorter than the one hour commonly applied.
"""

WBC_CONTROL_STRATEGY_V2 = """\
Control strategy CS-WBC, edition 2, issued with this master file.

- **Critical quality attributes:** labelling efficiency, activity, absence of clumps, identity, \
sterility.
- **Critical process parameters:** age of the eluate (≤ 2 hours) and of the generator elution \
(≤ 24 hours), time from reconstitution to labelling (≤ 5 minutes), incubation 10 minutes, \
centrifugation forces and times.
- **Closed processing:** the labelling happens inside a sterile single-use set; the open steps \
are reduced to two connections in the cabinet.
- **One patient at a time** in the cabinet, with line clearance: the main risk is a mix-up of \
autologous cells.
- **Release in real time** on the electronic batch record; sterility follows administration. The \
45-minute shelf life is unchanged.
"""

WBC_COMPARABILITY = """\
BHM1 is the reference site; its ten validation labellings set the reference range for labelling \
efficiency. Another site is comparable when its first twenty patient labellings have a mean \
labelling efficiency within ±10 percentage points of BHM1's and no clumped preparation \
(protocol CP-WBC-01). Every year each site's labelling efficiencies, broth simulations and \
sterility results are compared with the reference site's and go into the annual report \
(SOP-CS-090).
"""

WBC_V1 = DemoVersion(
    reach=VersionStatus.EFFECTIVE,
    why="First edition of the NAT-WBC master file, for the designation.",
    sections=network_sections(
        designation="""\
**Product.** NAT-WBC is the patient's own leucocytes, separated from a 51 mL sample of their \
blood and labelled with technetium (⁹⁹ᵐTc) exametazime, for scintigraphy of infection and \
inflammation (for example osteomyelitis, vascular graft infection and inflammatory bowel \
disease).

**Dosage form and presentation.** Suspension for injection in autologous cell-free plasma, 3–5 \
mL in a shielded syringe; activity at administration 200 MBq for an adult, scaled by body weight \
for a child.

**Shelf life.** 45 minutes from the end of labelling, at room temperature in the shielded \
syringe.

**Designation.** Point of care (POC): MHRA designation MHRA-DES-POC-2025-0044 of 2 December \
2025. The product is made from each patient's blood in the radiopharmacy of the hospital where \
they are scanned; a 45-minute shelf life and the 6-hour half-life of technetium-99m rule out \
making it anywhere else.

**Supply status.** Unlicensed: prepared for an individual patient at the request of the \
practitioner who holds the ARSAC licence for the examination.
""",
        site_identification="""\
Each radiopharmacy making NAT-WBC is registered under a four-character site code that never \
changes; the code begins every batch number and is printed on the syringe label. The register \
describes each site by its kind (hospital pharmacy aseptic unit), host trust, address, site lead, \
technical agreement, status and equipment fingerprint (the shielded cabinet and the dose \
calibrator).

| Code | Site | Role |
| --- | --- | --- |
| BHM1 | Queen Elizabeth Hospital Pharmacy Manufacturing Unit | Reference site |
| LDS1 | St James's University Hospital Aseptic Unit | Manufacture |

The site annex of this version, generated from the register when the version was submitted, is \
the authoritative list.
""",
        site_locations="""\
- **BHM1**: Pharmacy Manufacturing Unit, Queen Elizabeth Hospital, Mindelsohn Way, Edgbaston, \
Birmingham B15 2GW; the nuclear medicine department is in the same building.
- **LDS1**: Aseptic Unit, St James's University Hospital, Beckett Street, Leeds LS9 7TF; \
labelled cells are carried by hand, in a shielded carrier, to nuclear medicine on the same site.

The labelled cells never leave the hospital where they were made.
""",
        testing_sites="""\
| Where | Operations for NAT-WBC |
| --- | --- |
| Each manufacturing site | Labelling efficiency, activity, appearance, identity checks, \
environmental monitoring of the session |
| QCL1, Newcastle Cellular Therapies QC Laboratory | Sterility (Ph. Eur. 2.6.27) on the \
preparation residue, sent after at least 48 hours' decay |

Residues are kept shielded at the site until their activity is below the transport exemption \
limit, then sent to QCL1 by courier. QCL1 enters its results against the batch in the QMS.
""",
        manufacture_and_release=WBC_MANUFACTURE_V1,
        personnel="""\
**Control Site.** The Head of Quality Assurance (Quinn Adams) and the Qualified Persons named on \
licence {licence} (Dr Priya Patel), on call for remote certification during labelling hours.

**Each site.** A principal radiopharmacist as site lead, at least two operators trained in cell \
labelling, and a radiation protection supervisor appointed under the Ionising Radiations \
Regulations 2017. Administration is authorised under IR(ME)R by the ARSAC licence holder.

**Training.** GxP induction and yearly refresher, read-and-understood training on each \
procedure, cell-labelling training assessed by a Control Site trainer, gowning qualification and \
a broth simulation every three months. The QMS refuses a step sign-off by a person whose \
training is not current.
""",
        premises_equipment=WBC_PREMISES_V1,
        production=WBC_PRODUCTION_V1,
        quality_control=WBC_QC_V1,
        control_strategy=WBC_CONTROL_STRATEGY_V1,
        comparability=WBC_COMPARABILITY,
    ),
)

WBC_V2 = DemoVersion(
    reach=VersionStatus.DRAFT,
    why="CC-2026-018 (draft): labelling in a closed single-use set.",
    sections={
        "manufacture-and-release": WBC_MANUFACTURE_V2,
        "premises-equipment": WBC_PREMISES_V2,
        "production": WBC_PRODUCTION_V2,
        "quality-control": WBC_QC_V2,
        "control-strategy": WBC_CONTROL_STRATEGY_V2,
    },
    change_summary="""\
Draft for change control CC-2026-018: labelling in a closed, sterile, single-use \
leucocyte-labelling set instead of open tubes.

- Blood collection, sedimentation, washes and labelling happen inside the set; the cabinet is \
used for the two connections only, so the open manipulations fall from about twenty to two.
- Six validation labellings in the closed set at BHM1 (64–79 % labelling efficiency).
- Broth simulation redesigned for the closed set; three runs per site before it is used for \
patients.
- Control strategy CS-WBC edition 2. No change to the labelling-efficiency limit or the \
45-minute shelf life, so the designation is unaffected.

Sections changed: Manufacture, assembly and release at each site; Premises and equipment; \
Production; Quality control; Decentralised manufacture control strategy.
""",
)

DEMO_PRODUCTS: tuple[DemoProduct, ...] = (
    DemoProduct(
        code="NAT-CD19",
        name="NAT-CD19 autologous anti-CD19 CAR-T cells",
        designation=Designation.POC,
        designation_reference="MHRA-DES-POC-2025-0031",
        designation_date=dt.date(2025, 9, 18),
        dosage_form="Dispersion for infusion",
        shelf_life_minutes=3 * 24 * 60,
        supply_status=SupplyStatus.LICENSED,
        reference_site="NCL1",
        sites=(
            (
                TESTING_LAB,
                TESTING,
                "QCL1 tests NAT-CD19 for release and after infusion (TA-NU-QC-2025).",
            ),
        ),
        versions=(CD19_V1, CD19_V2, CD19_V3),
    ),
    DemoProduct(
        code="NAT-CMV",
        name="NAT-CMV donor-derived CMV-specific T cells",
        designation=Designation.MM,
        designation_reference="MHRA-DES-MM-2025-0007",
        designation_date=dt.date(2025, 11, 4),
        dosage_form="Dispersion for infusion",
        shelf_life_minutes=4 * 60,
        supply_status=SupplyStatus.INVESTIGATIONAL,
        reference_site="MU01",
        sites=(
            (
                TESTING_LAB,
                TESTING,
                "QCL1 tests sterility and mycoplasma of NAT-CMV (TA-NU-QC-2025).",
            ),
        ),
        versions=(CMV_V1, CMV_V2),
    ),
    DemoProduct(
        code="NAT-WBC",
        name="NAT-WBC technetium (99mTc) exametazime-labelled autologous leucocytes",
        designation=Designation.POC,
        designation_reference="MHRA-DES-POC-2025-0044",
        designation_date=dt.date(2025, 12, 2),
        dosage_form="Suspension for injection",
        shelf_life_minutes=45,
        supply_status=SupplyStatus.UNLICENSED,
        reference_site="BHM1",
        sites=(
            (
                "LDS1",
                MANUFACTURING,
                "St James's radiopharmacy labels leucocytes for Leeds patients (TA-LTHT-2025-02).",
            ),
            (
                TESTING_LAB,
                TESTING,
                "QCL1 tests sterility of NAT-WBC residues after decay (TA-NU-QC-2025).",
            ),
        ),
        versions=(WBC_V1, WBC_V2),
    ),
)


#
# The loader
#


@dataclasses.dataclass(frozen=True)
class People:
    qa: User
    qp: User
    sign_qa: Callable[[], SignatureCredentials]
    sign_qp: Callable[[], SignatureCredentials]

    def get(self, username: str) -> User:
        return self.qp if username == DEMO_QP else self.qa


def fill(text: str, tokens: Mapping[str, str]) -> str:
    for name, value in tokens.items():
        text = text.replace("{" + name + "}", value)
    return text


def _one_line(address: str) -> str:
    """A register address (one part per line, a note in brackets last) as running text."""
    parts = [line.strip().rstrip(",") for line in address.splitlines() if line.strip()]
    notes = [p for p in parts if p.startswith("(")]
    return ", ".join(p for p in parts if p not in notes) + "".join(f" {n}" for n in notes)


def _tokens(spec: DemoProduct) -> dict[str, str]:
    control = control_site()
    name = control.name if control else site_demo.CONTROL_SITE_NAME
    address = control.address if control else site_demo.CONTROL_SITE_ADDRESS
    licence = control.licence_number if control else site_demo.LICENCE_NUMBER
    return {
        "code": spec.code,
        "mbr": "MBR-" + spec.code.removeprefix("NAT-"),
        "control_site": name,
        "address": _one_line(address),
        "licence": licence,
    }


def _load() -> set[str]:
    """The demo products that are missing, with their master-file histories; the codes made."""
    qa = User.objects.get(username__iexact=DEMO_QA)
    qp = User.objects.get(username__iexact=DEMO_QP)
    created: set[str] = set()
    missing = [s for s in DEMO_PRODUCTS if not Product.objects.filter(code=s.code).exists()]
    if not missing:
        return created
    with transaction.atomic(), signer(qa) as sign_qa, signer(qp) as sign_qp:
        people = People(qa=qa, qp=qp, sign_qa=sign_qa, sign_qp=sign_qp)
        for spec in missing:
            _product(spec, people)
            created.add(spec.code)
    return created


def _site(code: str) -> Site:
    return Site.objects.get(code=code)


def _product(spec: DemoProduct, people: People) -> None:
    qa = people.qa
    with audit_context(user=qa):
        product = services.product_register(
            actor=qa,
            reason=f"{spec.code} designated by the MHRA ({spec.designation_reference}); "
            "registered with its reference site.",
            code=spec.code,
            name=spec.name,
            designation=spec.designation,
            designation_reference=spec.designation_reference,
            designation_date=spec.designation_date,
            dosage_form=spec.dosage_form,
            shelf_life_minutes=spec.shelf_life_minutes,
            supply_status=spec.supply_status,
            reference_site=_site(spec.reference_site),
        )
        for code, role, reason in spec.sites:
            services.product_site_add(
                actor=qa, product=product, site=_site(code), role=role, reason=reason
            )
    tokens = _tokens(spec)
    for number, version_spec in enumerate(spec.versions, start=1):
        product = _version(product, number, version_spec, people, tokens)


def _version(
    product: Product,
    number: int,
    spec: DemoVersion,
    people: People,
    tokens: Mapping[str, str],
) -> Product:
    """Write one version and take it as far as `spec.reach`; the product as it now stands."""
    qa, qp = people.qa, people.qp
    label = f"{product.code} v{number}"
    with audit_context(user=qa):
        if spec.product_changes:
            product = services.product_update(
                actor=qa,
                product=product,
                changes=dict(spec.product_changes),
                reason=spec.product_change_reason,
            )
        for code, role, reason in spec.sites_added:
            services.product_site_add(
                actor=qa, product=product, site=_site(code), role=role, reason=reason
            )
        master_file = product.master_file
        if number == 1:
            version = master_file.versions.get(number=1)
        else:
            version = services.draft_start(actor=qa, master_file=master_file, reason=spec.why)
        for section in version.sections.filter(key__in=list(spec.sections)):
            services.section_update(
                actor=qa,
                section=section,
                body=fill(spec.sections[section.key], tokens),
                reason=spec.why,
            )
        if spec.change_summary:
            services.change_summary_set(
                actor=qa,
                version=version,
                summary=spec.change_summary,
                reason=f"Change summary of {label}.",
            )
        if spec.reach == VersionStatus.DRAFT:
            return product
        services.version_submit(
            actor=qa,
            version=version,
            reason=f"{label} written and checked against the change control; ready for review.",
        )
    for comment in spec.comments:
        if not comment.after_qa_approval:
            _comment(version, comment, people)
    with audit_context(user=qa):
        services.version_approve(
            actor=qa,
            version=version,
            capacity=ApprovalCapacity.QA,
            credentials=people.sign_qa(),
            reason=f"{label} reviewed against the site register and the change control; "
            "content approved.",
        )
    for comment in spec.comments:
        if comment.after_qa_approval:
            _comment(version, comment, people)
    if spec.reach == VersionStatus.IN_REVIEW:
        return product
    with audit_context(user=qp):
        services.version_approve(
            actor=qp,
            version=version,
            capacity=ApprovalCapacity.QP,
            credentials=people.sign_qp(),
            reason=f"{label} reviewed as QP: it describes how each batch is made, tested and "
            "certified at every listed site.",
        )
    with audit_context(user=qa):
        services.version_make_effective(
            actor=qa,
            version=version,
            reason=f"{label} approved by QA and the QP; in force from today and issued to every "
            "listed site.",
        )
    return product


def _comment(version: MasterFileVersion, spec: DemoComment, people: People) -> None:
    author = people.get(spec.author)
    section = version.sections.get(key=spec.section) if spec.section else None
    with audit_context(user=author):
        comment = services.comment_add(
            actor=author, version=version, body=spec.body, section=section
        )
    if spec.resolution:
        with audit_context(user=people.qa):
            services.comment_resolve(actor=people.qa, comment=comment, resolution=spec.resolution)


#
# The report demo_setup prints
#


def _history(product: Product) -> str:
    versions = product.master_file.versions.order_by("-number")
    return ", ".join(f"v{v.number} {v.get_status_display().lower()}" for v in versions)


def _hints(products: list[Product]) -> list[str]:
    lines = []
    for product in products:
        for version in product.master_file.versions.filter(
            status__in=[VersionStatus.IN_REVIEW, VersionStatus.DRAFT]
        ):
            label = f"{product.code} v{version.number}"
            if version.status == VersionStatus.DRAFT:
                lines.append(
                    f"  {label} is a draft with edited sections: compare it with the version in "
                    "force on its page."
                )
                continue
            state = approval_state(version)
            if state.next_capacity == ApprovalCapacity.QP:
                comments = open_comment_count(version)
                todo = {0: "", 1: "resolve the open review comment and "}.get(
                    comments, f"resolve the {comments} open review comments and "
                )
                lines += [
                    f"  {label} is in review: QA has approved, the QP's approval is outstanding.",
                    f"  Sign in as {DEMO_QP} to {todo}approve it.",
                ]
    return lines


def load_demo_master_files() -> demo.DemoSection:
    """Make what is missing, then report every demo product as it stands now."""
    created = _load()
    products = list(
        Product.objects.filter(code__in=[spec.code for spec in DEMO_PRODUCTS])
        .select_related("master_file")
        .order_by("code")
    )
    rows = [
        (
            product.code,
            product.designation.upper(),
            product.shelf_life_display,
            _history(product),
            "created" if product.code in created else "existing",
        )
        for product in products
    ]
    return demo.DemoSection(
        "Demo products and master files",
        (
            *demo.table(("Product", "Kind", "Shelf life", "Master file", "This run"), rows),
            *_hints(products),
        ),
    )
