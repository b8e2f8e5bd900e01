"""Refuse UPDATE and DELETE on the audit tables at the database (PostgreSQL; AT-04).

History tables of later apps get the same trigger from `post_migrate`
(controlsite.audit.immutability), so no table is ever left unprotected.
"""

from typing import Any

from django.db import migrations

from controlsite.audit.immutability import (
    DROP_FUNCTION_SQL,
    FUNCTION_SQL,
    KERNEL_APPEND_ONLY_TABLES,
    trigger_sql,
)

HISTORY_TABLES = (
    "controlsite_historicaluser",
    "controlsite_historicalrolegrant",
    "controlsite_historicalauditreview",
)


def forwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTION_SQL)
    for table in (*KERNEL_APPEND_ONLY_TABLES, *HISTORY_TABLES):
        schema_editor.execute(trigger_sql(table))


def backwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(DROP_FUNCTION_SQL)


class Migration(migrations.Migration):
    dependencies = [("controlsite", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
