"""Database-level immutability of the audit tables on PostgreSQL (AT-04).

A trigger function refuses UPDATE and DELETE. The kernel's migration attaches it to the audit
event and signature tables; `post_migrate` attaches it to every history table of every app, so a
history table added by a later migration is protected as soon as it exists.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION controlsite_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = 'audit table ' || TG_TABLE_NAME || ' is append-only: ' || TG_OP || ' refused',
        ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""
DROP_FUNCTION_SQL = "DROP FUNCTION IF EXISTS controlsite_refuse_change() CASCADE;"
TRIGGER_NAME = "controlsite_append_only"

KERNEL_APPEND_ONLY_TABLES = ("controlsite_auditevent", "controlsite_electronicsignature")


def trigger_sql(table: str) -> str:
    return (
        f'DROP TRIGGER IF EXISTS {TRIGGER_NAME} ON "{table}"; '
        f'CREATE TRIGGER {TRIGGER_NAME} BEFORE UPDATE OR DELETE ON "{table}" '
        "FOR EACH ROW EXECUTE FUNCTION controlsite_refuse_change();"
    )


def history_tables() -> list[str]:
    """Every table that simple-history writes, across all installed apps."""
    return sorted(
        model._meta.db_table
        for model in apps.get_models()
        if hasattr(model, "instance_type") and hasattr(model, "history_id")
    )


def protected_tables() -> list[str]:
    return sorted({*KERNEL_APPEND_ONLY_TABLES, *history_tables()})


def install(connection: BaseDatabaseWrapper) -> None:
    if connection.vendor != "postgresql":
        return
    existing = set(connection.introspection.table_names())
    with connection.cursor() as cursor:
        cursor.execute(FUNCTION_SQL)
        for table in protected_tables():
            if table in existing:
                cursor.execute(trigger_sql(table))


def install_after_migrate(sender: Any, using: str = "default", **_: Any) -> None:
    install(connections[using])
