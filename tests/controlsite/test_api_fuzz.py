"""Property-based fuzzing of every API operation from the OpenAPI document alone (schemathesis).

Whatever an integrator or a fuzzer sends, the API answers with a documented status and a body
that matches the document — never a server error.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from controlsite.api.models import TokenScope
from controlsite.api.tokens import api_token_create
from controlsite.wsgi import application
from tests.personas import make_persona


@pytest.fixture
def qa_token(db: None) -> str:
    qa = make_persona("qa")
    _, secret = api_token_create(user=qa, name="fuzz", scope=TokenScope.READ_WRITE, created_by=qa)
    return secret


@pytest.fixture(autouse=True)
def _keep_test_connection() -> Any:
    # Calling the raw WSGI app fires request_started/finished, whose handler would close the
    # test's database connection mid-test (Django's test client disconnects it the same way).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


# Loaded at collection: serving the schema needs no database.
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@schema.parametrize()
@settings(
    # The suite runs a fixed, reproducible sample; `make fuzz` explores with fresh random seeds.
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "25")),
    derandomize=not os.environ.get("FUZZ_RANDOM"),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_operation_answers_as_documented(case: Any, qa_token: str) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {qa_token}"},
        # Random but well-formed credentials are rightly refused (422): a signing endpoint can
        # never accept "any schema-valid body". Every other check stays on, including that
        # schema-violating input is rejected and that nothing answers 5xx.
        excluded_checks=[positive_data_acceptance],
    )
