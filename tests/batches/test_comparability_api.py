"""The comparability API (issue 8 §8; SO-08, SO-09; design §6): reference limits and their signed
approval, each site's statistics against the reference site (checked against SciPy), the control
chart as SVG, the annual checks (schedule, record, signed review, cancel) and the signals.

Who may do what is a permission matrix per route; the rest checks what integrators rely on: a
site-limited token sees only its sites, an `Idempotency-Key` replays, and bad input — limits
lower above upper, a margin of zero or less, a check with unpaired results — is a 400 with a
stable code that writes nothing. The schemathesis fuzz of these operations runs with limits,
results, a signal and checks in the database, so it reaches the operations, not only their 404s.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.urls import reverse
from hypothesis import HealthCheck, settings
from rest_framework.test import APIClient
from schemathesis.checks import positive_data_acceptance

from batches.choices import CheckStatus, LimitStatus
from batches.models import CheckPair, ComparabilityCheck, ComparabilitySignal, ReferenceLimit
from controlsite.accounts.models import User
from controlsite.api.models import TokenScope
from controlsite.api.tokens import api_token_create
from controlsite.audit.models import AuditEvent
from controlsite.signatures.models import ElectronicSignature
from controlsite.signatures.services import signature_is_valid
from controlsite.wsgi import application
from tests.batches.helpers import Plant
from tests.batches.test_comparability_pages import (
    DRIFTED,
    PAIRS,
    REFERENCE,
    _drifting,
    _limits,
    _plant,
    _recorded,
    _scheduled,
    _signalled,
    made,
)
from tests.masterfile.helpers import signing
from tests.matrix import ANON, Matrix, only
from tests.personas import make_persona
from tests.personas import signature_fields as persona_signature_fields

pytestmark = pytest.mark.django_db

Persona = Callable[[str], User]
PROBLEM = "application/problem+json"


def signature_fields(user: User, **overrides: Any) -> dict[str, Any]:
    """The persona's signature fields, with a TOTP code its device has not accepted yet."""
    fields = persona_signature_fields(user, **overrides)
    if "otp" in fields and "otp" not in overrides:
        fields["otp"] = signing(user).otp
    return fields


def signed(persona: Persona, who: str, **fields: Any) -> dict[str, Any]:
    """Signature fields of the persona itself (Control Site QA's for anonymous)."""
    return signature_fields(persona("qa") if who == ANON else persona(who), **fields)


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def token_client(user: User, *, site_codes: list[str] | None = None) -> APIClient:
    suffix = "-".join(site_codes or ["all"]).lower()
    creator = make_persona("sysadmin", username=f"admin-{user.pk}-{suffix}")
    _, secret = api_token_create(
        user=user,
        name="site-limited",
        scope=TokenScope.READ_WRITE,
        created_by=creator,
        site_codes=site_codes,
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def written() -> tuple[int, ...]:
    """What a refused write must leave as it was."""
    return (
        ReferenceLimit.objects.count(),
        ComparabilityCheck.objects.count(),
        CheckPair.objects.count(),
        AuditEvent.objects.count(),
        ElectronicSignature.objects.count(),
    )


STATISTICS = reverse("api:comparability-list")
CHART = reverse("api:comparability-chart")


def _q(**params: str) -> dict[str, str]:
    return {"product": "CART-01", "key": "viability", **params}


#
# Permission matrices
#

# USE_API holders read lists (scoped to what they may see); sysadmin and outsider have no API.
EVERY_API_USER = only({"sysadmin": 403, "outsider": 403}, others=200, anonymous=401)
# QA, QPs and inspectors see every site; the site lead and the operator work at both sites; the
# trainer and the integrator at neither, so the record does not exist for them.
READERS = only(
    {"trainer": 404, "integrator": 404, "sysadmin": 403, "outsider": 403},
    others=200,
    anonymous=401,
)
# A product named in a query string or a body that the caller cannot see is 400.
QUERY_READERS = {**READERS, "trainer": 400, "integrator": 400}
QA_CREATE = only({"qa": 201, "trainer": 400, "integrator": 400}, others=403, anonymous=401)
QA_ACTION = only({"qa": 200, "trainer": 404, "integrator": 404}, others=403, anonymous=401)

LIMIT_LIST = Matrix("api:reference-limit-list", EVERY_API_USER)
LIMIT_DETAIL = Matrix("api:reference-limit-detail", READERS)
LIMIT_CREATE = Matrix("api:reference-limit-create", QA_CREATE)
STATISTICS_MATRIX = Matrix("api:comparability-list", QUERY_READERS)
CHART_MATRIX = Matrix("api:comparability-chart", QUERY_READERS)
CHECK_LIST = Matrix("api:comparability-check-list", EVERY_API_USER)
CHECK_DETAIL = Matrix("api:comparability-check-detail", READERS)
CHECK_CREATE = Matrix("api:comparability-check-create", QA_CREATE)
CHECK_RECORD = Matrix("api:comparability-check-record", QA_ACTION)
CHECK_REVIEW = Matrix("api:comparability-check-review", QA_ACTION)
CHECK_CANCEL = Matrix("api:comparability-check-cancel", QA_ACTION)
SIGNAL_LIST = Matrix("api:comparability-signal-list", EVERY_API_USER)

SEES = {"qa", "qp", "inspector", "site_lead", "operator"}


@pytest.mark.parametrize(("who", "expected"), LIMIT_LIST.cases())
def test_limit_list(as_persona, persona, who, expected):
    _limits(persona)
    response = as_persona(who).get(reverse("api:reference-limit-list"), {"status": "active"})
    assert response.status_code == expected
    if expected == 200:
        keys = [row["key"] for row in response.json()["results"]]
        assert keys == (["viability"] if who in SEES else [])


@pytest.mark.parametrize(("who", "expected"), LIMIT_DETAIL.cases())
def test_limit_detail(as_persona, persona, who, expected):
    limit = _limits(persona)
    response = as_persona(who).get(reverse("api:reference-limit-detail", args=[limit.pk]))
    assert response.status_code == expected
    if expected == 200:
        body = response.json()
        assert (body["lower"], body["centre"], body["upper"], body["margin"]) == (
            "80",
            "90",
            "100",
            "2",
        )
        assert body["basis"] == "specification" and body["status"] == "active"
        assert body["approval_signature"]["meaning"] == "approved"
        assert body["approval_signature"]["valid"] is True
        assert response["ETag"]


def _approval(persona: Persona, who: str, **fields: Any) -> dict[str, Any]:
    return {
        "product": "CART-01",
        "key": "viability",
        "basis": "specification",
        "lower": "85",
        "upper": 99,
        "margin": "2.5",
        **signed(persona, who, meaning="approved", reason="limits for comparability"),
        **fields,
    }


@pytest.mark.parametrize(("who", "expected"), LIMIT_CREATE.cases())
def test_limit_create(as_persona, persona, who, expected):
    _plant(persona)
    response = as_persona(who).post(reverse("api:reference-limit-list"), _approval(persona, who))
    assert response.status_code == expected, response.content
    assert ReferenceLimit.objects.count() == (expected == 201)
    if expected == 201:
        body = response.json()
        assert (body["lower"], body["upper"], body["centre"], body["margin"]) == (
            "85",
            "99",
            "92",
            "2.5",
        )
        assert response["Location"] == reverse("api:reference-limit-detail", args=[body["id"]])
        limit = ReferenceLimit.objects.get()
        assert limit.approval_signature is not None
        assert signature_is_valid(limit.approval_signature, limit)


@pytest.mark.parametrize(("who", "expected"), STATISTICS_MATRIX.cases())
def test_statistics(as_persona, persona, who, expected):
    _signalled(persona)
    response = as_persona(who).get(STATISTICS, _q())
    assert response.status_code == expected, response.content
    if expected == 200:
        rows = {r["site"]["code"]: r for r in response.json()["sites"]}
        assert set(rows) == {"LDS1", "MAN2"}
        assert rows["MAN2"]["verdict"] == "not_shown"
        assert rows["LDS1"]["verdict"] is None and rows["LDS1"]["is_reference"] is True


@pytest.mark.parametrize(("who", "expected"), CHART_MATRIX.cases())
def test_chart(as_persona, persona, who, expected):
    _signalled(persona)
    response = as_persona(who).get(CHART, _q(site="MAN2"))
    assert response.status_code == expected, response.content
    if expected == 200:
        assert response["Content-Type"].startswith("image/svg+xml")
        assert response["X-Content-Type-Options"] == "nosniff"
        svg = response.content.decode()
        assert svg.lstrip().startswith("<svg") and svg.rstrip().endswith("</svg>")
        assert "break a Nelson rule" in svg


@pytest.mark.parametrize(("who", "expected"), CHECK_LIST.cases())
def test_check_list(as_persona, persona, who, expected):
    check = _scheduled(persona)
    response = as_persona(who).get(reverse("api:comparability-check-list"))
    assert response.status_code == expected
    if expected == 200:
        ids = [row["id"] for row in response.json()["results"]]
        assert ids == ([check.pk] if who in SEES else [])


@pytest.mark.parametrize(("who", "expected"), CHECK_DETAIL.cases())
def test_check_detail(as_persona, persona, who, expected):
    check = _recorded(persona)
    response = as_persona(who).get(reverse("api:comparability-check-detail", args=[check.pk]))
    assert response.status_code == expected
    if expected == 200:
        body = response.json()
        assert body["status"] == "recorded" and body["verdict"] == "comparable"
        assert [(p["lot"], p["reference_value"]) for p in body["pairs"]] == [
            (lot, format(value, "g")) for lot, value in PAIRS
        ]
        assert body["statistics"][0]["n_site"] == len(PAIRS)
        assert body["review_signature"] is None


@pytest.mark.parametrize(("who", "expected"), CHECK_CREATE.cases())
def test_check_create(as_persona, persona, who, expected):
    _limits(persona)
    response = as_persona(who).post(
        reverse("api:comparability-check-list"),
        {"product": "CART-01", "site": "MAN2", "due_on": "2027-01-31", "reason": "yearly"},
    )
    assert response.status_code == expected, response.content
    assert ComparabilityCheck.objects.count() == (expected == 201)
    if expected == 201:
        body = response.json()
        assert body["status"] == "scheduled" and body["reference_site"]["code"] == "LDS1"


def _record_body(shift: float = 0.3, **fields: Any) -> dict[str, Any]:
    return {
        "material": "SM-2026-07 split",
        "pairs": [
            {"key": "viability", "lot": lot, "reference_value": value, "site_value": value + shift}
            for lot, value in PAIRS
        ],
        "reason": "results in",
        **fields,
    }


@pytest.mark.parametrize(("who", "expected"), CHECK_RECORD.cases())
def test_check_record(as_persona, persona, who, expected):
    check = _scheduled(persona)
    response = as_persona(who).post(
        reverse("api:comparability-check-record", args=[check.pk]), _record_body()
    )
    assert response.status_code == expected, response.content
    check.refresh_from_db()
    assert (check.status == CheckStatus.RECORDED) == (expected == 200)
    assert CheckPair.objects.count() == (len(PAIRS) if expected == 200 else 0)


@pytest.mark.parametrize(("who", "expected"), CHECK_REVIEW.cases())
def test_check_review(as_persona, persona, who, expected):
    check = _recorded(persona)
    response = as_persona(who).post(
        reverse("api:comparability-check-review", args=[check.pk]),
        {
            "conclusion": "Comparable within the margin.",
            **signed(persona, who, meaning="reviewed", reason="annual review"),
        },
    )
    assert response.status_code == expected, response.content
    check.refresh_from_db()
    assert (check.status == CheckStatus.REVIEWED) == (expected == 200)
    if expected == 200:
        body = response.json()
        assert body["review_signature"]["meaning"] == "reviewed"
        assert body["review_signature"]["valid"] is True
        # Next year's check is scheduled.
        assert ComparabilityCheck.objects.filter(status=CheckStatus.SCHEDULED).count() == 1


@pytest.mark.parametrize(("who", "expected"), CHECK_CANCEL.cases())
def test_check_cancel(as_persona, persona, who, expected):
    check = _scheduled(persona)
    response = as_persona(who).post(
        reverse("api:comparability-check-cancel", args=[check.pk]), {"reason": "site ceased"}
    )
    assert response.status_code == expected, response.content
    check.refresh_from_db()
    assert (check.status == CheckStatus.CANCELLED) == (expected == 200)


@pytest.mark.parametrize(("who", "expected"), SIGNAL_LIST.cases())
def test_signal_list(as_persona, persona, who, expected):
    _signalled(persona)
    response = as_persona(who).get(reverse("api:comparability-signal-list"), {"site": "MAN2"})
    assert response.status_code == expected
    if expected == 200:
        kinds = sorted(row["kind"] for row in response.json()["results"])
        assert kinds == (["equivalence", "run_rule"] if who in SEES else [])


#
# What the answers hold
#


def test_statistics_agree_with_scipy(api_client_for, persona):
    """Welch's mean difference, its 90 % CI and the TOST p, computed again with SciPy from the
    results themselves (SO-08)."""
    from scipy import stats as sps

    plant = _plant(persona)
    _limits(persona)
    made(plant, plant.reference, REFERENCE)
    spoke = [round(v - 1.1 + (0.4 if i % 2 else -0.3), 2) for i, v in enumerate(REFERENCE)]
    made(plant, plant.spoke, spoke)
    body = api_client_for("qa").get(STATISTICS, _q()).json()
    row = next(r for r in body["sites"] if r["site"]["code"] == "MAN2")
    n1, n2 = len(spoke), len(REFERENCE)
    v1, v2 = statistics.variance(spoke) / n1, statistics.variance(REFERENCE) / n2
    se = math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    difference = statistics.fmean(spoke) - statistics.fmean(REFERENCE)
    half = sps.t.ppf(0.95, df) * se
    margin = 2.0
    p_tost = max(
        sps.t.sf((difference + margin) / se, df), sps.t.cdf((difference - margin) / se, df)
    )
    assert row["n"] == n1
    assert row["mean"] == pytest.approx(statistics.fmean(spoke), rel=1e-5)
    assert row["sd"] == pytest.approx(statistics.stdev(spoke), rel=1e-5)
    assert row["difference"] == pytest.approx(difference, rel=1e-5)
    assert row["ci_low"] == pytest.approx(difference - half, rel=1e-5)
    assert row["ci_high"] == pytest.approx(difference + half, rel=1e-5)
    assert row["df"] == pytest.approx(df, rel=1e-5)
    assert row["p_tost"] == pytest.approx(p_tost, rel=1e-4)
    expected = (
        "comparable"
        if -margin < difference - half and difference + half < margin
        else ("not_shown")
    )
    assert row["verdict"] == expected
    assert body["limit"]["margin"] == "2" and body["window"]["days"] == 365


def test_a_site_limited_token_sees_only_its_sites(persona):
    _drifting(persona)
    check = _scheduled(persona)
    api = token_client(persona("qa"), site_codes=["MAN2"])
    rows = api.get(STATISTICS, _q()).json()["sites"]
    assert [r["site"]["code"] for r in rows] == ["MAN2"]
    assert_problem(api.get(CHART, _q(site="LDS1")), 400, "unknown_site")
    chart = api.get(CHART, _q(site="MAN2")).content.decode()
    assert "reference-site results shown in grey" not in chart  # LDS1 is not MAN2's to see
    assert [
        c["id"] for c in api.get(reverse("api:comparability-check-list")).json()["results"]
    ] == [check.pk]
    outside = token_client(persona("qa"), site_codes=["LDS1"])
    assert (
        outside.get(reverse("api:comparability-check-detail", args=[check.pk])).status_code == 404
    )
    assert outside.get(reverse("api:comparability-signal-list")).json()["results"] == []


def test_unknown_product_or_cqa_without_limits(api_client_for, persona):
    _limits(persona)
    api = api_client_for("qa")
    assert_problem(api.get(STATISTICS, _q(product="NOPE-1")), 400, "unknown_product")
    assert_problem(api.get(STATISTICS, _q(key="endotoxin")), 404, "no_reference_limits")
    assert_problem(api.get(STATISTICS, {"product": "CART-01"}), 400, "required")
    assert_problem(api.get(CHART, _q(site="MAN2", days="0")), 400, "min_value")


def test_scheduling_with_an_idempotency_key_replays_and_writes_once(api_client_for, persona):
    _limits(persona)
    api = api_client_for("qa")
    body = {"product": "CART-01", "site": "MAN2", "due_on": "2027-01-31", "reason": "yearly"}
    first = api.post(reverse("api:comparability-check-list"), body, HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post(reverse("api:comparability-check-list"), body, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert ComparabilityCheck.objects.count() == 1
    # Without the key a second one is refused: one open check per product and site.
    assert_problem(api.post(reverse("api:comparability-check-list"), body), 409, "check_open")
    reference = {**body, "site": "LDS1"}
    assert_problem(
        api.post(reverse("api:comparability-check-list"), reference), 409, "reference_site"
    )


def test_a_whole_check_through_the_api(api_client_for, persona):
    """Schedule, record the pairs (not comparable), review with a signature: one signal."""
    _limits(persona)
    api = api_client_for("qa")
    qa = persona("qa")
    check = api.post(
        reverse("api:comparability-check-list"),
        {"product": "CART-01", "site": "MAN2", "due_on": "2027-01-31", "reason": "yearly"},
    ).json()
    recorded = api.post(check["links"]["record"], _record_body(shift=-4)).json()
    assert recorded["status"] == "recorded" and recorded["verdict"] == "not_shown"
    stat = recorded["statistics"][0]
    assert stat["difference"] == pytest.approx(-4.0) and stat["paired"] is True
    wrong = api.post(
        check["links"]["review"],
        {"conclusion": "x", **signature_fields(qa, meaning="reviewed", password="wrong")},
    )
    assert wrong.status_code == 422
    assert ComparabilityCheck.objects.get(pk=check["id"]).status == CheckStatus.RECORDED
    reviewed = api.post(
        check["links"]["review"],
        {
            "conclusion": "Not comparable: investigate.",
            **signature_fields(qa, meaning="reviewed", reason="annual review"),
        },
    )
    assert reviewed.status_code == 200, reviewed.content
    assert reviewed.json()["status"] == "reviewed"
    signals = ComparabilitySignal.objects.filter(kind="annual_check")
    assert signals.count() == 1
    listed = api.get(reverse("api:comparability-signal-list"), {"kind": "annual_check"}).json()
    assert [s["id"] for s in listed["results"]] == [signals.get().pk]
    assert listed["results"][0]["processed"] is False
    assert_problem(
        api.post(check["links"]["cancel"], {"reason": "late"}), 409, "invalid_transition"
    )


#
# Bad input: 400 and nothing written (issue 8 "Bad input")
#


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"lower": "95", "upper": "90"}, "limits_inverted"),
        ({"lower": 90, "upper": 90}, "limits_inverted"),
        ({"margin": "0"}, "invalid_margin"),
        ({"margin": -0.5}, "invalid_margin"),
        ({"margin": "abc"}, "invalid_value"),
        ({"key": "potency"}, "unknown_cqa"),
        (
            {"basis": "verification", "lower": None, "upper": None, "batches": []},
            "verification_batches",
        ),
        ({"status": "active"}, "unknown_field"),
    ],
)
def test_bad_limits_are_refused_and_nothing_is_written(api_client_for, persona, fields, code):
    _plant(persona)
    api = api_client_for("qa")
    before = written()
    response = api.post(reverse("api:reference-limit-list"), _approval(persona, "qa", **fields))
    assert_problem(response, 400, code)
    assert written() == before
    assert not ReferenceLimit.objects.exists()


@pytest.mark.parametrize(
    "pairs",
    [
        [{"key": "viability", "lot": "L1", "reference_value": 92}],
        [{"key": "viability", "lot": "L1", "reference_value": None, "site_value": "92"}],
        [
            {"key": "viability", "lot": "L1", "reference_value": 92, "site_value": 92.5},
            {"key": "viability", "lot": "L2", "reference_value": 93, "site_value": None},
        ],
    ],
)
def test_a_check_with_unpaired_results_is_refused_and_nothing_is_written(
    api_client_for, persona, pairs
):
    check = _scheduled(persona)
    api = api_client_for("qa")
    before = written()
    response = api.post(
        reverse("api:comparability-check-record", args=[check.pk]),
        _record_body(pairs=pairs),
    )
    body = assert_problem(response, 400, "unpaired_results")
    assert body["extra"]["pair"] == len(pairs) - 1
    assert written() == before
    check.refresh_from_db()
    assert check.status == CheckStatus.SCHEDULED and check.statistics == []


def test_limits_stay_in_force_when_a_new_approval_is_refused(api_client_for, persona):
    limit = _limits(persona)
    api = api_client_for("qa")
    response = api.post(
        reverse("api:reference-limit-list"), _approval(persona, "qa", lower="99", upper="98")
    )
    assert_problem(response, 400, "limits_inverted")
    limit.refresh_from_db()
    assert limit.status == LimitStatus.ACTIVE
    assert ReferenceLimit.objects.count() == 1


#
# The fuzz (schemathesis), on these operations, with data for them to reach
#

FUZZ_PATHS = r"^/api/v1/(reference-limits|comparability)"


@pytest.fixture
def fuzz_world(persona: Persona) -> str:
    """Limits in force, a drifting site with its signals, a scheduled check (id 1 or so) and a
    recorded one; a read-write QA token."""
    plant: Plant = _plant(persona)
    _drifting(persona)
    _recorded(persona)
    made(plant, plant.spoke, DRIFTED[:1])
    qa = persona("qa")
    _, secret = api_token_create(user=qa, name="fuzz", scope=TokenScope.READ_WRITE, created_by=qa)
    return secret


@pytest.fixture
def _keep_test_connection() -> Any:
    # Calling the raw WSGI app fires request_started/finished, whose handler would close the
    # test's database connection mid-test (as in tests/controlsite/test_api_fuzz.py).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


# Loaded at collection: serving the schema needs no database.
fuzz_schema = schemathesis.openapi.from_wsgi("/api/schema/", application).include(
    path_regex=FUZZ_PATHS
)


@fuzz_schema.parametrize()
@settings(
    # A fixed, reproducible sample, as tests/controlsite/test_api_fuzz.py; `FUZZ_RANDOM=1`
    # explores with fresh seeds.
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "25")),
    derandomize=not os.environ.get("FUZZ_RANDOM"),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@pytest.mark.usefixtures("_keep_test_connection")
def test_fuzz_the_comparability_operations(case: Any, fuzz_world: str) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {fuzz_world}"},
        # Random but well-formed credentials are rightly refused (422): a signing endpoint can
        # never accept "any schema-valid body".
        excluded_checks=[positive_data_acceptance],
    )
