"""The architecture keeps its shape (design §2, style "Tests" 6).

- imports run only down the app graph;
- every regulated model has history (exemptions need a written reason);
- no serializer lets `status` be written;
- no `QuerySet.update()` or bulk write on a model with history outside migrations;
- every API route has a permission matrix.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest
from django.apps import apps
from django.db.models import Model
from rest_framework import serializers

ROOT = Path(__file__).resolve().parent.parent
APPS = ("controlsite", "sites", "training", "masterfile", "batches", "deviations")

# Which apps each app may import (design §2). The kernel imports none of them.
ALLOWED: dict[str, set[str]] = {
    "controlsite": set(),
    "sites": {"controlsite"},
    "training": {"sites", "controlsite"},
    "masterfile": {"sites", "controlsite"},
    "batches": {"masterfile", "training", "sites", "controlsite"},
    "deviations": {"batches", "masterfile", "training", "sites", "controlsite"},
}
# The composition root may name every app.
COMPOSITION_ROOT = {
    ROOT / "controlsite" / "urls.py",
    ROOT / "controlsite" / "celery.py",
    *(ROOT / "controlsite" / "settings").glob("*.py"),
}

# Models that are not given row history, each with the reason.
HISTORY_EXEMPT: dict[str, str] = {
    "controlsite.auditevent": "is itself the append-only, hash-chained audit log",
    "controlsite.electronicsignature": "append-only; its creation is an audit event",
    "controlsite.apitoken": "creation and revocation are audit events; last_used_at is "
    "operational and would flood history",
    "controlsite.idempotencyrecord": "a transport-level replay cache, not GMP data",
    "controlsite.workerheartbeat": "operational liveness data, not GMP data",
    "controlsite.notification": "a message to a person; the GMP event that caused it is audited",
    "controlsite.webhooksubscription": "integration configuration, not GMP data; its creation, "
    "every change (old and new values) and its deactivation are audit events",
    "controlsite.webhookevent": "an outbox row copying what an app reports; the change itself is "
    "audited by the app that made it",
    "controlsite.webhookdelivery": "a job row whose attempts and retries would flood history; "
    "every attempt is its own WebhookAttempt row and a manual retry is an audit event",
    "controlsite.webhookattempt": "append-only delivery log of HTTP requests, written once per "
    "attempt, not GMP data",
    "masterfile.masterfileexport": "a job row whose progress ticks would flood history; its "
    "request, completion, failure and every download are audit events",
    "batches.batchsequence": "a counter behind batch numbers; each number it gives is in the "
    "batch's own history and its start event",
    "batches.batchcertificate": "a job row like the master-file export; its request, "
    "completion, failure and every download are audit events",
    "batches.batchsignal": "an outbox row for the deviations app; what caused it (an "
    "out-of-limit value, a failed result, a mismatch) is audited where it happened",
    "batches.comparabilitysnapshot": "a cache of the latest evaluation of a site against the "
    "reference limits, recomputed from the results (which keep their history) at every run",
    "batches.comparabilitysignal": "an outbox row for the deviations app; raising it is an audit "
    "event and the deviation it opens keeps its own history",
    "training.sitecompliancesnapshot": "a cache of each site's training compliance for the "
    "oversight dashboard, recomputed from the training records (which keep their history) hourly "
    "and whenever it is an hour old",
    "deviations.recordsequence": "a counter behind record numbers; each number it gives is in "
    "its record's own history and creation event",
}

BULK_WRITES = {"update", "bulk_create", "bulk_update"}


def python_files(app: str) -> list[Path]:
    return [p for p in (ROOT / app).rglob("*.py") if "migrations" not in p.parts]


def imported_apps(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names if name.split(".")[0] in APPS}
    return found


@pytest.mark.parametrize("app", APPS)
def test_imports_run_only_down_the_app_graph(app):
    wrong = []
    for path in python_files(app):
        if path in COMPOSITION_ROOT:
            continue
        for other in imported_apps(path) - {app}:
            if other not in ALLOWED[app]:
                wrong.append(f"{path.relative_to(ROOT)} imports {other}")
    assert not wrong, "\n".join(wrong)


def test_the_allowed_graph_has_no_cycles():
    def reaches(src: str, dst: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(
            n == dst or (n not in seen and reaches(n, dst, seen | {n})) for n in ALLOWED[src]
        )

    assert not any(reaches(app, app) for app in APPS)
    assert "training" not in ALLOWED["masterfile"] and "masterfile" not in ALLOWED["training"]


def _our_models() -> list[type[Model]]:
    return [
        m
        for m in apps.get_models()
        if m._meta.app_label in APPS and not hasattr(m, "instance_type")
    ]


def test_every_regulated_model_has_history():
    missing = [
        m._meta.label_lower
        for m in _our_models()
        if not hasattr(m._meta, "simple_history_manager_attribute")
        and m._meta.label_lower not in HISTORY_EXEMPT
    ]
    assert not missing, f"give these models `history = RegulatedHistory()`: {missing}"


def test_history_exemptions_name_real_models_and_give_reasons():
    labels = {m._meta.label_lower for m in _our_models()}
    for label, reason in HISTORY_EXEMPT.items():
        assert label in labels, f"stale exemption {label}"
        assert len(reason) > 20


def _serializer_classes() -> list[type[serializers.BaseSerializer]]:  # type: ignore[type-arg]
    found = []
    for app in APPS:
        package = importlib.import_module(app)
        for module_info in pkgutil.walk_packages(package.__path__, prefix=f"{app}."):
            if ".migrations" in module_info.name or "management" in module_info.name:
                continue
            module = importlib.import_module(module_info.name)
            for value in vars(module).values():
                if (
                    isinstance(value, type)
                    and issubclass(value, serializers.BaseSerializer)
                    and value.__module__ == module.__name__
                ):
                    found.append(value)
    return found


def test_no_serializer_lets_status_be_written():
    classes = _serializer_classes()
    assert classes, "no serializers found"
    writable = []
    for cls in classes:
        try:
            fields = cls().fields  # type: ignore[attr-defined]
        except (TypeError, AssertionError, AttributeError):
            continue
        field = fields.get("status")
        if field is not None and not field.read_only:
            writable.append(cls.__qualname__)
    assert not writable, f"`status` is writable in {writable}"


def _history_model_names() -> set[str]:
    return {
        m.__name__ for m in _our_models() if hasattr(m._meta, "simple_history_manager_attribute")
    }


def _receiver_names(node: ast.AST) -> set[str]:
    names = set()
    while isinstance(node, ast.Attribute | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    if isinstance(node, ast.Name):
        names.add(node.id)
    return names


def test_no_bulk_write_on_a_model_with_history_outside_migrations():
    history_models = _history_model_names()
    offences = []
    for app in APPS:
        for path in python_files(app):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in BULK_WRITES
                    and _receiver_names(node.func.value) & history_models
                ):
                    offences.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offences, "bulk writes bypass history; use a service: " + ", ".join(offences)


def test_the_bulk_write_scan_would_catch_one():
    sample = ast.parse("User.objects.filter(pk=1).update(first_name='x')")
    call = next(
        n
        for n in ast.walk(sample)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "update"
    )
    assert isinstance(call.func, ast.Attribute)
    assert _receiver_names(call.func.value) == {"User"}


def _load_matrices() -> dict[str, object]:
    for path in (ROOT / "tests").rglob("test_*.py"):
        if {"e2e", "bench"} & set(path.parts) or "Matrix(" not in path.read_text():
            continue
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        importlib.import_module(module)
    from tests.matrix import REGISTRY

    return dict(REGISTRY)


def test_every_api_route_has_a_permission_matrix():
    from controlsite.urls import api_router

    matrices = _load_matrices()
    missing = [
        basename
        for _, _, basename in api_router.registry
        if not any(name.startswith(f"api:{basename}-") for name in matrices)
    ]
    assert not missing, f"add a tests.matrix.Matrix for {missing}"
