"""The onboarding checklist a new site starts with (SO-03). A Control Site edits the list."""

from typing import Any

from django.db import migrations

DEFAULT_ITEMS = [
    ("premises", "Premises qualification", "Premises qualification report (or its reference)."),
    ("equipment-iq-oq", "Equipment IQ/OQ", "IQ/OQ reports for every item of GMP equipment."),
    ("technical-agreement", "Technical agreement signed",
     "The technical agreement with the host organisation, signed by both parties."),
    ("staff-trained", "Staff trained", "Training records of every member of the site's staff."),
    ("batches", "Verification or comparability batches done",
     "Reference site: three verification batches. Any other site: at least one "
     "comparability batch against the reference site."),
]


def forwards(apps: Any, schema_editor: Any) -> None:
    template = apps.get_model("sites", "ChecklistItemTemplate")
    for position, (key, title, guidance) in enumerate(DEFAULT_ITEMS, start=1):
        template.objects.get_or_create(
            key=key, defaults={"title": title, "guidance": guidance, "position": position * 10}
        )


class Migration(migrations.Migration):
    dependencies = [("sites", "0001_initial")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
