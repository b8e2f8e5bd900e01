"""The three items every Control Site needs from the first day (TR-01, TR-04, TR-07)."""

from typing import Any

from django.db import migrations

from training.standard import ensure_standard_items


def create(apps: Any, schema_editor: Any) -> None:
    ensure_standard_items(apps.get_model("training", "TrainingItem"))


class Migration(migrations.Migration):
    dependencies = [("training", "0001_initial")]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
