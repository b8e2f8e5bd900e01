"""The comparability pages (issue 8 §1-4, §8; SO-07, SO-08, SO-09): who may open and post what
(permission matrices), what each page shows — the limits with QA's signature, each site's
statistics and the forest plot, the control chart with its flagged points and signals, the
annual checks — the fixed number of queries of the product page however many sites make the
product, and bad input refused with nothing written (limits lower above upper, a margin of zero
or less, a check with unpaired results).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from batches import services as batch_services
from batches.choices import CheckStatus, LimitBasis, LimitStatus
from batches.comparability import services
from batches.comparability.services import PairEntry
from batches.models import (
    Batch,
    CheckPair,
    ComparabilityCheck,
    ComparabilitySignal,
    ReferenceLimit,
)
from batches.stats import Verdict
from controlsite.accounts.models import User
from controlsite.audit.models import AuditEvent
from controlsite.signatures.models import ElectronicSignature
from deviations.models import Deviation
from masterfile import services as masterfile_services
from masterfile.choices import ProductSiteRole
from sites import services as site_services
from sites.choices import SiteRole, SiteStatus
from sites.models import Site
from tests.batches.helpers import COI, Plant, approved_template
from tests.masterfile.helpers import make_effective_version, make_product, signing
from tests.matrix import ANON, Matrix, only
from tests.personas import PASSWORD, login, make_persona
from tests.sites.helpers import make_site

pytestmark = pytest.mark.django_db

Persona = Callable[[str], User]

# Ten results at the reference site, well inside 80-100 and straddling the centre 90.
REFERENCE = [89.0, 91.0, 90.5, 89.5, 90.0, 91.5, 88.5, 90.2, 89.8, 90.6]
# A spoke 6 % lower: far outside a margin of 2, and nine in a row below the centre (rule 2).
DRIFTED = [round(v - 6, 2) for v in REFERENCE]


#
# A plant built from the test's personas (the matrices sign in as them)
#


def plant_of(p: Persona) -> Plant:
    """LDS1 (reference) and MAN2 active and listed for CART-01, with its approved template; the
    site lead and the operators work at both; QA, QPs and inspectors see every site."""
    qa, qp, lead, operator = p("qa"), p("qp"), p("site_lead"), p("operator")
    operator2 = make_persona("operator", username="operator2")
    reference = make_site(qa, "LDS1", SiteStatus.ACTIVE)
    spoke = make_site(qa, "MAN2", SiteStatus.ACTIVE)
    for site in (reference, spoke):
        for user, role in (
            (lead, SiteRole.SITE_LEAD),
            (operator, SiteRole.SITE_OPERATOR),
            (operator2, SiteRole.SITE_OPERATOR),
        ):
            site_services.membership_add(
                actor=qa, site=site, user=user, role=role, reason="works here"
            )
    product = make_product(qa, reference, "CART-01", shelf_life_minutes=120)
    masterfile_services.product_site_add(
        actor=qa, product=product, site=spoke, role=ProductSiteRole.MANUFACTURING, reason="spoke"
    )
    make_effective_version(qa, qp, product)
    template = approved_template(qa, product)
    return Plant(qa, qp, lead, operator, operator2, reference, spoke, product, template)


def _plant(p: Persona) -> Plant:
    """One plant per test, kept on the test's own persona function."""
    plant: Plant | None = getattr(p, "plant", None)
    if plant is None:
        plant = plant_of(p)
        p.plant = plant  # type: ignore[attr-defined]
    return plant


def made(plant: Plant, site: Site, values: Sequence[float], key: str = "viability") -> list[Batch]:
    """One batch per value at `site`, each with its result, in this order."""
    batches = []
    for value in values:
        batch = batch_services.batch_start(
            actor=plant.operator, site=site, product=plant.product, coi_reference=COI
        )
        batch_services.result_record(
            actor=plant.operator, batch=batch, specification_key=key, value=value
        )
        batches.append(batch)
    return batches


def approve(plant: Plant, **kwargs: Any) -> ReferenceLimit:
    options: dict[str, Any] = {
        "key": "viability",
        "basis": LimitBasis.SPECIFICATION,
        "margin": "2",
        "lower": "80",
        "upper": "100",
    }
    options.update(kwargs)
    return services.reference_limit_approve(
        actor=plant.qa,
        product=plant.product,
        credentials=signing(plant.qa),
        reason="limits for comparability",
        **options,
    )


def _limits(p: Persona) -> ReferenceLimit:
    """Viability limits 80-100 (centre 90) with a margin of 2, once per test."""
    plant = _plant(p)
    limit: ReferenceLimit | None = getattr(p, "limit", None)
    if limit is None:
        limit = approve(plant)
        p.limit = limit  # type: ignore[attr-defined]
    return limit


def _drifting(p: Persona) -> ReferenceLimit:
    """The reference site's clean results and MAN2's drifted ones, evaluated: MAN2 is not
    shown comparable and breaks rule 2 — two signals."""
    plant = _plant(p)
    limit = _limits(p)
    made(plant, plant.reference, REFERENCE)
    made(plant, plant.spoke, DRIFTED)
    services.comparability_evaluate(product_id=plant.product.pk)
    return limit


def _signalled(p: Persona) -> ReferenceLimit:
    """The least data with both signals at MAN2: three results each side, MAN2's far lower
    (equivalence not shown) and one of them beyond 3 SD of the limits (rule 1)."""
    plant = _plant(p)
    limit = _limits(p)
    made(plant, plant.reference, [89.0, 90.0, 91.0])
    made(plant, plant.spoke, [84.0, 83.0, 75.0])
    services.comparability_evaluate(product_id=plant.product.pk)
    return limit


def _scheduled(p: Persona) -> ComparabilityCheck:
    plant = _plant(p)
    _limits(p)
    return services.check_schedule(
        actor=plant.qa,
        product=plant.product,
        site=plant.spoke,
        due_on=timezone.localdate() + dt.timedelta(days=30),
        reason="yearly check",
    )


PAIRS = [("LOT-1", 92.0), ("LOT-2", 93.5), ("LOT-3", 91.0), ("LOT-4", 94.0), ("LOT-5", 92.5)]


def _recorded(p: Persona, shift: float = 0.3) -> ComparabilityCheck:
    plant = _plant(p)
    return services.check_record(
        actor=plant.qa,
        check=_scheduled(p),
        material="SM-2026-07 split",
        pairs=[PairEntry("viability", lot, value, value + shift) for lot, value in PAIRS],
        reason="results in",
    )


def _url(name: str, *args: Any) -> str:
    return reverse(name, args=args)


def sig(
    user: User, prefix: str, meaning: str, reason: str = "signed in the test"
) -> dict[str, str]:
    """The signature dialog's fields (first signing of a session: username too; TOTP for QPs)."""
    fields = {
        f"{prefix}-username": user.get_username(),
        f"{prefix}-password": PASSWORD,
        f"{prefix}-meaning": meaning,
        f"{prefix}-reason": reason,
    }
    credentials = signing(user)
    if credentials.otp:
        fields[f"{prefix}-otp"] = credentials.otp
    return fields


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def text_of(response: Any) -> str:
    """The page's text without tags or repeated spaces, to assert what a reader sees."""
    html = response.content.decode()
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def written() -> tuple[int, ...]:
    """What a refused write must leave as it was."""
    return (
        ReferenceLimit.objects.count(),
        ComparabilityCheck.objects.count(),
        CheckPair.objects.count(),
        AuditEvent.objects.count(),
        ElectronicSignature.objects.count(),
    )


#
# Who may open and post what
#

ALL_OK = only({}, others=200, anonymous=302)
# QA, QPs and inspectors see every product and site; the site lead and the operator work at
# both sites; for the trainer, the integrator, the administrator and the outsider the product
# does not exist.
SEES = only(
    {"qa": 200, "qp": 200, "inspector": 200, "site_lead": 200, "operator": 200},
    others=404,
    anonymous=302,
)


def _posted(table: dict[str, int]) -> dict[str, int]:
    return {who: 302 if status == 200 else status for who, status in table.items()}


# Control Site QA writes; who sees without being QA is refused (403).
QA_WRITES = _posted({**SEES, "qp": 403, "inspector": 403, "site_lead": 403, "operator": 403})
QA_ONLY = _posted(only({"qa": 200}, others=403, anonymous=302))


@dataclasses.dataclass(frozen=True)
class Endpoint:
    matrix: Matrix
    method: str
    build: Callable[[Persona, str], tuple[str, dict[str, Any]]]


def _approve_post(p: Persona, who: str) -> tuple[str, dict[str, Any]]:
    _plant(p)
    user = p(who) if who != ANON else p("qa")
    return _url("batches:comparability-limit-approve", "CART-01"), {
        "limit-key": "viability",
        "limit-basis": "specification",
        "limit-margin": "2",
        "limit-lower": "82",
        "limit-upper": "98",
        **sig(user, "lsig", "approved"),
    }


def _schedule_post(p: Persona, who: str) -> tuple[str, dict[str, Any]]:
    _limits(p)
    return _url("batches:comparability-check-schedule"), {
        "schedule-product": "CART-01",
        "schedule-site": "MAN2",
        "schedule-due_on": "2027-01-31",
        "schedule-reason": "yearly check",
    }


def _record_post(p: Persona, who: str) -> tuple[str, dict[str, Any]]:
    check = _scheduled(p)
    data: dict[str, Any] = {
        "record-material": "SM-2026-07 split",
        "record-rows": str(len(PAIRS)),
        "record-reason": "results in",
    }
    for i, (lot, value) in enumerate(PAIRS):
        data |= {
            f"record-key_{i}": "viability",
            f"record-lot_{i}": lot,
            f"record-reference_{i}": str(value),
            f"record-site_{i}": str(value + 0.5),
        }
    return _url("batches:comparability-check-record", check.pk), data


def _review_post(p: Persona, who: str) -> tuple[str, dict[str, Any]]:
    check = _recorded(p)
    user = p(who) if who != ANON else p("qa")
    return _url("batches:comparability-check-review", check.pk), {
        "review-conclusion": "Comparable.",
        **sig(user, "rsig", "reviewed"),
    }


def _cancel_post(p: Persona, who: str) -> tuple[str, dict[str, Any]]:
    check = _scheduled(p)
    return _url("batches:comparability-check-cancel", check.pk), {"cancel-reason": "ceased"}


def _get(name: str, *args: Any, data: Callable[[Persona], Any] = _plant) -> Any:
    def build(p: Persona, who: str) -> tuple[str, dict[str, Any]]:
        made_ = data(p)
        resolved = [a(made_) if callable(a) else a for a in args]
        return _url(name, *resolved), {}

    return build


ENDPOINTS: list[Endpoint] = [
    Endpoint(Matrix("page:comparability", ALL_OK), "get", _get("batches:comparability")),
    Endpoint(
        Matrix("page:comparability-product", SEES),
        "get",
        _get("batches:comparability-product", "CART-01", data=_signalled),
    ),
    Endpoint(
        Matrix("page:comparability-site", SEES),
        "get",
        _get("batches:comparability-site", "CART-01", "viability", "MAN2", data=_signalled),
    ),
    Endpoint(
        Matrix("page:comparability-chart-svg", SEES),
        "get",
        _get("batches:comparability-chart-svg", "CART-01", "viability", "MAN2", data=_limits),
    ),
    Endpoint(
        Matrix("page:comparability-limits", SEES),
        "get",
        _get("batches:comparability-limits", "CART-01", data=_limits),
    ),
    Endpoint(Matrix("page:comparability-limit-approve-post", QA_WRITES), "post", _approve_post),
    Endpoint(
        Matrix("page:comparability-checks", ALL_OK), "get", _get("batches:comparability-checks")
    ),
    Endpoint(Matrix("page:comparability-check-schedule-post", QA_ONLY), "post", _schedule_post),
    Endpoint(
        Matrix("page:comparability-check", SEES),
        "get",
        _get("batches:comparability-check", lambda c: c.pk, data=_recorded),
    ),
    Endpoint(Matrix("page:comparability-check-record-post", QA_WRITES), "post", _record_post),
    Endpoint(Matrix("page:comparability-check-review-post", QA_WRITES), "post", _review_post),
    Endpoint(Matrix("page:comparability-check-cancel-post", QA_WRITES), "post", _cancel_post),
]
ENDPOINT_CASES = [
    pytest.param(endpoint, who, status, id=f"{endpoint.matrix.name}-{who}-{status}")
    for endpoint in ENDPOINTS
    for who, status in endpoint.matrix.expected.items()
]


@pytest.mark.parametrize(("endpoint", "who", "expected"), ENDPOINT_CASES)
def test_who_may_open_and_post_each_comparability_page(
    persona, browser_as, endpoint, who, expected
):
    url, data = endpoint.build(persona, who)
    client = browser_as(who)
    before = written()
    response = client.get(url) if endpoint.method == "get" else client.post(url, data)
    assert response.status_code == expected, messages_of(response)
    if endpoint.method == "post" and expected != 302:
        assert written()[:3] == before[:3]  # a refused write leaves the records as they were


@pytest.mark.parametrize(
    "name",
    [
        "batches:comparability-check-schedule",
    ],
)
def test_writes_refuse_get(client_for, name):
    assert client_for("qa").get(_url(name)).status_code == 405


#
# What the pages show
#


def _qa(p: Persona) -> Client:
    return login(Client(), _plant(p).qa)


def test_the_product_page_shows_the_limits_each_site_and_the_forest_plot(persona):
    """Issue 8 §1, §3: the limits in force with QA's signature; n, mean, SD, difference, 90 % CI
    and verdict per site; the forest plot with a link per site to its chart (SO-08, SO-09)."""
    _drifting(persona)
    response = _qa(persona).get(_url("batches:comparability-product", "CART-01"))
    assert response.status_code == 200
    text = text_of(response)
    assert "Specification" in text and "80 %" in text and "100 %" in text and "± 2 %" in text
    assert "Signature valid" in text and "Quinn Adams" in text
    panel = response.context["panels"][0]
    rows = {r.site.code: r for r in panel.rows}
    assert list(rows) == ["LDS1", "MAN2"]  # the reference site first
    assert rows["MAN2"].n == len(DRIFTED) and rows["MAN2"].difference == "−6"
    assert rows["MAN2"].badge["label"] == Verdict.NOT_SHOWN.label and rows["MAN2"].flagged
    assert rows["MAN2"].signals == 2
    assert panel.counts == {"comparable": 0, "not_shown": 1, "too_little_data": 0}
    html = response.content.decode()
    chart = _url("batches:comparability-site", "CART-01", "viability", "MAN2")
    start = html.index('<svg class="cmp-forest"')
    forest = html[start : html.index("</svg>", start)]
    assert f'<a href="{chart}">' in forest and "not shown" in forest
    # The dot sits left of the zone: a 6 % lower mean against a margin of 2.
    row = panel.forest.rows[0]
    assert row.point < panel.forest.zone_left < panel.forest.zero
    assert row.low < row.high < panel.forest.zone_left
    # The CQAs without limits are listed, and QA is offered to approve them.
    assert "Endotoxin" in text and "Approve limits" in text


def test_the_overview_counts_verdicts_and_flags_overdue_checks(persona):
    plant = _plant(persona)
    _drifting(persona)
    services.check_schedule(  # the yearly schedule finding the check already late
        actor=None,
        product=plant.product,
        site=plant.spoke,
        due_on=timezone.localdate() - dt.timedelta(days=3),
        reason="late",
    )
    response = _qa(persona).get(_url("batches:comparability"))
    text = text_of(response)
    assert "1 annual comparability check overdue" in text
    summary = response.context["summaries"][0]
    assert summary.product == plant.product and summary.flagged
    assert summary.overdue_checks == 1
    limit = summary.limits[0]
    assert (limit.comparable, limit.not_shown, limit.too_little) == (0, 1, 0)
    assert limit.with_breaks == 1  # MAN2's rule 2
    checks = _qa(persona).get(_url("batches:comparability-checks"), {"overdue": "on"})
    assert [c.site.code for c, *_ in checks.context["rows"]] == ["MAN2"]
    assert "cmp-overdue" in checks.content.decode()


def test_the_site_page_draws_the_chart_with_its_flagged_points_and_signals(persona):
    """Issue 8 §2, §5: the chart against the limits in force, the points breaking rule 2
    flagged, and the signals with whether their deviation is opened."""
    from deviations import services as deviation_services

    _drifting(persona)
    url = _url("batches:comparability-site", "CART-01", "viability", "MAN2")
    response = _qa(persona).get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<svg" in html and "break a Nelson rule" in html
    assert response.context["reference_points"] == len(REFERENCE)
    # Nine below the centre complete rule 2 at the ninth; the tenth continues the run.
    assert response.context["flagged_total"] == 2
    assert [e.rule for e in response.context["episodes"]] == [
        "Rule 2: nine points in a row on one side of the centre line"
    ]
    signals = response.context["signals"]
    assert sorted(r.signal.kind for r in signals) == ["equivalence", "run_rule"]
    assert "Pending" in text_of(response)
    pending = _qa(persona).get(reverse("deviations:of-signal", args=[signals[0].signal.pk]))
    assert pending.status_code == 404  # no deviation yet
    deviation_services.signals_process()
    after = _qa(persona).get(url)
    assert "Pending" not in text_of(after) and "Opened" in text_of(after)
    # Each signal links to the deviation it opened (issue 8 §5).
    for row in signals:
        link = reverse("deviations:of-signal", args=[row.signal.pk])
        assert link in after.content.decode()
        opened = Deviation.objects.get(comparability_signal=row.signal)
        followed = _qa(persona).get(link)
        assert followed.status_code == 302
        assert followed["Location"] == reverse("deviations:detail", args=[opened.number])
    # Someone who may not see MAN2 does not learn the deviation exists.
    elsewhere = make_persona("operator", username="elsewhere")
    hidden = login(Client(), elsewhere).get(
        reverse("deviations:of-signal", args=[signals[0].signal.pk])
    )
    assert hidden.status_code == 404


def test_the_chart_downloads_as_a_standalone_svg(persona):
    _drifting(persona)
    response = _qa(persona).get(
        _url("batches:comparability-chart-svg", "CART-01", "viability", "MAN2")
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/svg+xml")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert 'filename="CART-01-viability-MAN2.svg"' in response["Content-Disposition"]
    body = response.content.decode()
    assert body.lstrip().startswith("<svg") and "break a Nelson rule" in body
    unknown = _qa(persona).get(
        _url("batches:comparability-chart-svg", "CART-01", "endotoxin", "MAN2")
    )
    assert unknown.status_code == 404  # no limits in force for endotoxin


def test_site_staff_see_only_their_sites(persona):
    """A member of MAN2 alone: MAN2's row and chart, without the reference site's results;
    LDS1's chart does not exist for them."""
    plant = _plant(persona)
    _drifting(persona)
    member = make_persona("operator", username="man2-only")
    site_services.membership_add(
        actor=plant.qa, site=plant.spoke, user=member, role=SiteRole.SITE_OPERATOR, reason="x"
    )
    client = login(Client(), member)
    page = client.get(_url("batches:comparability-product", "CART-01"))
    assert [r.site.code for r in page.context["panels"][0].rows] == ["MAN2"]
    assert "Approve limits" not in text_of(page)
    chart = client.get(_url("batches:comparability-site", "CART-01", "viability", "MAN2"))
    assert chart.status_code == 200 and chart.context["reference_points"] == 0
    lds1 = client.get(_url("batches:comparability-site", "CART-01", "viability", "LDS1"))
    assert lds1.status_code == 404


def _add_sites(plant: Plant, first: int, count: int) -> None:
    """Proposed sites listed as making the product: rows without results."""
    for i in range(first, first + count):
        site = make_site(plant.qa, f"XS{i:02d}")
        masterfile_services.product_site_add(
            actor=plant.qa,
            product=plant.product,
            site=site,
            role=ProductSiteRole.MANUFACTURING,
            reason="more sites",
        )


def test_the_product_page_asks_a_fixed_number_of_queries_whatever_the_sites(
    persona, django_assert_max_num_queries
):
    """Design §8: the same queries for 3 sites as for 12."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    plant = _plant(persona)
    _drifting(persona)
    client = _qa(persona)
    url = _url("batches:comparability-product", "CART-01")
    _add_sites(plant, 0, 1)
    client.get(url)  # warm the session
    with CaptureQueriesContext(connection) as three:
        assert len(client.get(url).context["panels"][0].rows) == 3
    _add_sites(plant, 1, 9)
    services.check_schedule(
        actor=plant.qa,
        product=plant.product,
        site=plant.spoke,
        due_on=timezone.localdate(),
        reason="yearly check",
    )
    with django_assert_max_num_queries(len(three)):
        response = client.get(url)
    assert len(response.context["panels"][0].rows) == 12
    assert len(three) <= 20


#
# Reference limits: QA approves them with a signature
#


def _approve_form(plant: Plant, **fields: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "limit-key": "viability",
        "limit-basis": "specification",
        "limit-margin": "2",
        "limit-lower": "",
        "limit-upper": "",
        **sig(plant.qa, "lsig", "approved", "limits for comparability"),
    }
    data.update({f"limit-{k}": v for k, v in fields.items()})
    return data


def test_qa_approves_limits_from_verification_batches_on_the_page(persona):
    plant = _plant(persona)
    verification = made(plant, plant.reference, [92.0, 94.0, 93.0, 95.5])
    client = _qa(persona)
    page = client.get(_url("batches:comparability-limits", "CART-01"), {"key": "viability"})
    choices = dict(page.context["form"].fields["batches"].choices)
    assert set(choices) == {b.number for b in verification}
    data = _approve_form(plant, basis="verification", margin="3")
    data["limit-batches"] = [b.number for b in verification[:3]]
    response = client.post(_url("batches:comparability-limit-approve", "CART-01"), data)
    assert response.status_code == 302, messages_of(response)
    limit = ReferenceLimit.objects.get(status=LimitStatus.ACTIVE)
    values = [92.0, 94.0, 93.0]
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    assert float(limit.centre) == pytest.approx(mean, abs=1e-5)
    assert float(limit.lower) == pytest.approx(mean - 3 * sd, abs=1e-5)
    assert limit.source_batches == sorted(b.number for b in verification[:3])
    assert limit.approval_signature is not None
    assert limit.approval_signature.meaning == "approved"
    history = client.get(_url("batches:comparability-limits", "CART-01"), {"key": "viability"})
    assert "In force" in text_of(history) and "Valid" in text_of(history)


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"lower": "95", "upper": "90"}, "limits_inverted", "upper"),
        ({"lower": "90", "upper": "90"}, "limits_inverted", "upper"),
        ({"margin": "0"}, "invalid_margin", "margin"),
        ({"margin": "-1.5"}, "invalid_margin", "margin"),
    ],
)
def test_bad_limits_on_the_page_are_refused_and_nothing_is_written(persona, fields, code, field):
    """Issue 8 "Bad input": 400, the message under the field, nothing written."""
    plant = _plant(persona)
    client = _qa(persona)
    before = written()
    response = client.post(
        _url("batches:comparability-limit-approve", "CART-01"), _approve_form(plant, **fields)
    )
    assert response.status_code == 400
    form = response.context["form"]
    assert form.errors[field], form.errors
    assert written() == before
    assert not ReferenceLimit.objects.exists()


def test_a_wrong_password_refuses_the_approval_in_the_dialog(persona):
    plant = _plant(persona)
    data = _approve_form(plant, lower="82", upper="98")
    data["lsig-password"] = "not-the-password"
    response = _qa(persona).post(_url("batches:comparability-limit-approve", "CART-01"), data)
    assert response.status_code == 422
    assert response.context["sig"].non_field_errors()
    assert not ReferenceLimit.objects.exists()


def test_only_qa_may_approve(persona):
    _plant(persona)
    response = login(Client(), persona("qp")).post(
        _url("batches:comparability-limit-approve", "CART-01"), {}
    )
    assert response.status_code == 403


#
# Annual checks
#


def test_qa_schedules_a_check_and_a_second_open_one_is_refused(persona):
    _limits(persona)
    client = _qa(persona)
    url, data = _schedule_post(persona, "qa")
    response = client.post(url, data)
    assert response.status_code == 302, messages_of(response)
    check = ComparabilityCheck.objects.get()
    assert response["Location"] == _url("batches:comparability-check", check.pk)
    assert (check.site.code, check.due_on) == ("MAN2", dt.date(2027, 1, 31))
    again = client.post(url, data)
    assert again.status_code == 409
    assert "already has an open comparability check" in " ".join(messages_of(again))
    assert ComparabilityCheck.objects.count() == 1


def test_qa_records_paired_results_adding_rows_as_needed(persona):
    url, data = _record_post(persona, "qa")
    check = ComparabilityCheck.objects.get()
    client = _qa(persona)
    page = client.get(_url("batches:comparability-check", check.pk))
    assert page.context["record_form"].row_count == 6
    # "Add rows" keeps what was typed and writes nothing.
    more = client.post(url, {**data, "more": "1"})
    assert more.status_code == 200
    form = more.context["record_form"]
    assert form.row_count == len(PAIRS) + 6
    assert form["lot_0"].value() == "LOT-1" and not form.is_bound
    assert not CheckPair.objects.exists()
    response = client.post(url, data)
    assert response.status_code == 302, messages_of(response)
    check.refresh_from_db()
    assert check.status == CheckStatus.RECORDED and check.verdict == Verdict.COMPARABLE
    assert CheckPair.objects.filter(comparability_check=check).count() == len(PAIRS)
    detail = client.get(_url("batches:comparability-check", check.pk))
    stat = detail.context["statistics"][0]
    assert stat.n == len(PAIRS) and stat.difference == "+0.5"
    assert '<svg class="cmp-forest"' in detail.content.decode()
    assert detail.context["review_form"] is not None and detail.context["record_form"] is None


@pytest.mark.parametrize(
    "rows",
    [
        [("LOT-1", "92", "")],
        [("LOT-1", "", "92")],
        [("LOT-1", "92", "92.5"), ("LOT-2", "93", "")],
    ],
)
def test_a_check_with_unpaired_results_on_the_page_is_refused_and_nothing_is_written(persona, rows):
    check = _scheduled(persona)
    data: dict[str, Any] = {
        "record-material": "SM-1",
        "record-rows": "6",
        "record-reason": "results in",
    }
    for i, (lot, reference, site) in enumerate(rows):
        data |= {
            f"record-key_{i}": "viability",
            f"record-lot_{i}": lot,
            f"record-reference_{i}": reference,
            f"record-site_{i}": site,
        }
    before = written()
    response = _qa(persona).post(_url("batches:comparability-check-record", check.pk), data)
    assert response.status_code == 400
    assert "without its pair" in " ".join(messages_of(response))
    assert written() == before
    check.refresh_from_db()
    assert check.status == CheckStatus.SCHEDULED


def test_qa_reviews_a_check_with_a_signature_and_the_next_is_scheduled(persona):
    check = _recorded(persona, shift=-4)
    plant = _plant(persona)
    client = _qa(persona)
    response = client.post(
        _url("batches:comparability-check-review", check.pk),
        {
            "review-conclusion": "Not comparable: investigate.",
            **sig(plant.qa, "rsig", "reviewed"),
        },
    )
    assert response.status_code == 302, messages_of(response)
    check.refresh_from_db()
    assert check.status == CheckStatus.REVIEWED and check.review_signature is not None
    assert ComparabilitySignal.objects.filter(kind="annual_check", site=plant.spoke).count() == 1
    page = client.get(_url("batches:comparability-check", check.pk))
    assert "Reviewed" in text_of(page) and "Valid" in text_of(page)
    assert page.context["review_form"] is None and page.context["cancel_form"] is None
    assert ComparabilityCheck.objects.filter(status=CheckStatus.SCHEDULED).count() == 1


def test_qa_cancels_an_open_check_with_a_reason(persona):
    check = _scheduled(persona)
    client = _qa(persona)
    empty = client.post(_url("batches:comparability-check-cancel", check.pk), {})
    assert empty.status_code == 400
    check.refresh_from_db()
    assert check.status == CheckStatus.SCHEDULED
    response = client.post(
        _url("batches:comparability-check-cancel", check.pk), {"cancel-reason": "site ceased"}
    )
    assert response.status_code == 302
    check.refresh_from_db()
    assert check.status == CheckStatus.CANCELLED
    assert AuditEvent.objects.filter(event_type="batches.comparability_check_cancelled").exists()
