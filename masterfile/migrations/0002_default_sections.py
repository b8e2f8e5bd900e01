"""The default contents of a master file (design §3; MF-04 a–f, MF-05, MF-08, MF-10, MF-07).

What the law asks a POC/MM master file to describe (HMR Sch 3 para 1A(2)(a)–(f)), then the
chapters of a PIC/S site master file, then designation, control strategy, comparability and
annual reporting. The list is data: a Control Site adds, renames and reorders sections.
"""

from typing import Any

from django.db import migrations

# (key, title, regulatory reference, what to write)
DEFAULT_SECTIONS = [
    ("designation", "Product and designation", "MF-08",
     "The product, dosage form, indication and population; the MHRA designation (POC or MM), "
     "its reference and date, and the legal test it meets."),
    ("control-site", "Control Site and testing locations", "MF-05",
     "The Control Site's name, address and licence; where testing linked to manufacture "
     "happens."),
    ("site-identification", "Identification of each manufacturing site", "MF-04(a)",
     "How each unit or site is described and identified (codes, kinds, equipment fingerprint). "
     "The site annex lists every site."),
    ("site-locations", "Location of each manufacturing site", "MF-04(b)",
     "Where each site is, and for a modular unit how its current location is recorded."),
    ("testing-sites", "Sites doing related operations, such as testing", "MF-04(c)",
     "Each site that tests or does other operations related to manufacture, and what it does."),
    ("site-approval", "Approving new sites", "MF-04(d)",
     "The process by which a new unit or site is proposed, onboarded, qualified and approved."),
    ("site-start-suspend-cease", "Starting, suspending and ceasing manufacture at a site",
     "MF-04(e)",
     "How manufacture is initiated, suspended and ceased at a unit or site, and who decides."),
    ("manufacture-and-release", "Manufacture, assembly and release at each site", "MF-04(f)",
     "The manufacturing and assembly process, in-process controls and the product-release "
     "process (QP certification) at each site."),
    ("quality-system", "Pharmaceutical quality system", "PIC/S SMF 2",
     "The quality system that covers every site, and how the Control Site oversees it."),
    ("personnel", "Personnel and training", "PIC/S SMF 3",
     "Organisation, key personnel, and how staff at every site are trained and qualified."),
    ("premises-equipment", "Premises and equipment", "PIC/S SMF 4",
     "Premises, utilities and equipment at each site, and their qualification."),
    ("documentation", "Documentation", "PIC/S SMF 5",
     "The documentation system: master batch records, procedures, records and their control."),
    ("production", "Production", "PIC/S SMF 6",
     "Production operations, process validation and the handling of starting materials."),
    ("quality-control", "Quality control", "PIC/S SMF 7",
     "Testing, specifications, release testing and results that arrive after administration."),
    ("complaints-recalls", "Complaints, product defects and recalls", "PIC/S SMF 8",
     "How complaints, suspected adverse reactions, defects and recalls are handled."),
    ("self-inspection", "Self-inspection", "PIC/S SMF 9",
     "The self-inspection and site-audit programme across the network."),
    ("control-strategy", "Decentralised manufacture control strategy", "MF-10",
     "The control strategy that keeps every site making a comparable product, and its version."),
    ("comparability", "Comparability across sites", "SO-08, SO-09",
     "How comparability with the reference site is shown and checked every year."),
    ("annual-reporting", "Annual reporting", "MF-07, RP-01",
     "The annual report: what it covers, when it is due, who compiles and submits it."),
]


def forwards(apps: Any, schema_editor: Any) -> None:
    template = apps.get_model("masterfile", "SectionTemplate")
    for position, (key, title, reference, guidance) in enumerate(DEFAULT_SECTIONS, start=1):
        template.objects.get_or_create(
            key=key,
            defaults={
                "title": title,
                "guidance": guidance,
                "regulatory_reference": reference,
                "position": position * 10,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("masterfile", "0001_initial")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
