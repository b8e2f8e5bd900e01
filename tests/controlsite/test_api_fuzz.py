"""Property-based fuzzing of every API operation from the OpenAPI document alone (schemathesis).

Whatever an integrator or a fuzzer sends, the API answers with a documented status and a body
that matches the document — never a server error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from pytest_django import DjangoDbBlocker
from schemathesis.checks import positive_data_acceptance

from controlsite.accounts.models import User
from controlsite.api.models import TokenScope
from controlsite.api.tokens import api_token_create
from controlsite.wsgi import application
from tests.masterfile.helpers import make_product
from tests.personas import make_persona
from tests.sites.helpers import make_site
from tests.worlds import shared_rows


@pytest.fixture(scope="module")
def _qa_and_a_product(django_db_setup: None, django_db_blocker: DjangoDbBlocker) -> Iterator[None]:
    """QA, a site and a product with its master file, first draft and sections: small ids name
    real records, so the fuzzer reaches the operations themselves and not only their 404s.
    Built once for the module (tests/worlds.py); what each test's requests write is rolled back
    when the test ends."""
    with shared_rows(django_db_blocker):
        with django_db_blocker.unblock():
            qa = make_persona("qa")
            make_product(qa, make_site(qa, "FZ1"))
        yield


@pytest.fixture
def qa_token(db: None, _qa_and_a_product: None, request: pytest.FixtureRequest) -> str:
    qa = User.objects.get(username="qa")
    if "/batch" in request.node.name or "/supplies" in request.node.name:
        # For the batches API: an active site with an operator, a product whose master file is
        # in force, its approved template (id 1), a draft of the next (id 2) and a batch.
        from batches import services as batch_services
        from sites.choices import SiteRole, SiteStatus
        from sites.services import membership_add
        from tests.batches.helpers import approved_template
        from tests.masterfile.helpers import make_effective_version

        site = make_site(qa, "FZ2", SiteStatus.ACTIVE)
        operator = make_persona("operator")
        membership_add(
            actor=qa, site=site, user=operator, role=SiteRole.SITE_OPERATOR, reason="fuzz"
        )
        product = make_product(qa, site, "FZ-02")
        make_effective_version(qa, make_persona("qp"), product)
        approved_template(qa, product)
        batch_services.template_create(actor=qa, product=product, title="v2", reason="fuzz")
        batch_services.batch_start(
            actor=operator, site=site, product=product, coi_reference="PT-FUZZ-1"
        )
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
