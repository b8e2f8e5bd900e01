"""The oversight dashboard (SO-07, TR-06; issue 8 §6): each registered column's values on a small
network built through the real services, the flags, the page (filters, sorting, the htmx
partial, who sees which sites, read-only), its fixed query count and the home panel.

The network: LDS1 is CART-01's reference site, MAN2 a spoke whose viability runs 6 % low (so
its comparability is "not shown" and a signal was raised), BRS3 an active site that has made
nothing and where nobody works, OLD9 a ceased site.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from batches import services as batch_services
from batches.choices import ComparabilitySignalKind, LimitBasis
from batches.comparability import services as comparability_services
from batches.models import Batch, ComparabilitySignal
from batches.oversight import batch_cells, certification_cells, comparability_cells
from controlsite import dashboard
from controlsite.accounts.models import User
from controlsite.dashboard import Cell, Chip, OversightColumn, OversightRow
from deviations import services as deviation_services
from deviations.choices import DeviationAction
from deviations.models import Capa, Deviation
from deviations.oversight import capa_cells, deviation_cells
from sites import services as site_services
from sites.choices import SiteRole, SiteStatus
from sites.models import Site
from sites.oversight import (
    OversightQuery,
    audit_cells,
    oversight_table,
    status_cells,
)
from tests.batches.helpers import COI, Plant, make_plant, ready_batch, start
from tests.masterfile.helpers import signing
from tests.personas import give_accountability, login, make_persona
from tests.sites.helpers import make_site
from training import selectors as training_selectors
from training.models import SiteComplianceSnapshot
from training.oversight import compliance_snapshots_refresh, training_cells

pytestmark = pytest.mark.django_db

CLEAN = [91.0, 93.0, 92.0, 94.0, 91.5, 92.5, 93.5, 92.0, 91.0, 93.0]


@dataclasses.dataclass
class Network:
    plant: Plant
    quiet: Site
    ceased: Site
    critical: Deviation
    capa: Capa
    newcomer: User

    @property
    def ids(self) -> list[int]:
        return [self.plant.reference.pk, self.plant.spoke.pk, self.quiet.pk]


def results(plant: Plant, site: Site, values: Sequence[float]) -> list[Batch]:
    """One batch per value at `site`, each with its viability result."""
    made = []
    for value in values:
        batch = batch_services.batch_start(
            actor=plant.operator, site=site, product=plant.product, coi_reference=COI
        )
        batch_services.result_record(
            actor=plant.operator, batch=batch, specification_key="viability", value=value
        )
        made.append(batch)
    return made


def approve_limits(plant: Plant, *, margin: str) -> None:
    """Viability limits 82 to 102 (centre 92, where the reference site's results straddle it)."""
    comparability_services.reference_limit_approve(
        actor=plant.qa,
        product=plant.product,
        key="viability",
        basis=LimitBasis.SPECIFICATION,
        margin=margin,
        lower="82",
        upper="102",
        credentials=signing(plant.qa),
        reason="limits for comparability",
    )


def build_network() -> Network:
    plant = make_plant()
    qa, today = plant.qa, timezone.localdate()
    quiet = make_site(qa, "BRS3", SiteStatus.ACTIVE)
    ceased = make_site(qa, "OLD9", SiteStatus.CEASED)
    # Two decisions at the reference site: one certified, one rejected.
    batch_services.batch_certify(
        actor=plant.qp, batch=ready_batch(plant), credentials=signing(plant.qp), reason="clear"
    )
    batch_services.batch_reject(
        actor=plant.qp, batch=start(plant), credentials=signing(plant.qp), reason="bag leaked"
    )
    # Comparability: MAN2 runs 6 % below the reference site, far outside a margin of 2.
    approve_limits(plant, margin="2")
    results(plant, plant.reference, CLEAN)
    results(plant, plant.spoke, [v - 6 for v in CLEAN])
    comparability_services.comparability_evaluate(product_id=plant.product.pk)
    # Deviations: a critical one at LDS1; a minor and a major at MAN2, the major with a CAPA.
    critical = deviation_services.deviation_raise(
        actor=qa,
        site=plant.reference,
        title="Wrong patient label applied",
        description="Label of another patient found on the infusion bag.",
        proposed_class="critical",
    )
    deviation_services.deviation_raise(
        actor=qa,
        site=plant.spoke,
        title="Logbook entry late",
        description="Cleaning logbook signed the next morning.",
        proposed_class="minor",
    )
    major = deviation_services.deviation_raise(
        actor=qa,
        site=plant.spoke,
        title="Incubator excursion",
        description="Incubator at 39 °C for 40 minutes.",
        proposed_class="major",
    )
    capa = deviation_services.capa_create(
        actor=qa,
        title="Incubator alarm",
        description="Fit an audible high-temperature alarm.",
        kind="corrective",
        owner=qa,
        due_on=today + dt.timedelta(days=5),
        effectiveness_due_on=today + dt.timedelta(days=60),
        reason="from the excursion",
        deviation=major,
    )
    # Audits: LDS1 audited ten days ago, another planned for three days ago and not done.
    done = site_services.site_audit_plan(
        actor=qa,
        site=plant.reference,
        title="Annual GMP self-inspection",
        planned_for=today - dt.timedelta(days=10),
        reason="yearly",
    )
    site_services.site_audit_complete(
        actor=qa,
        audit=done,
        done_on=today - dt.timedelta(days=10),
        summary="Compliant.",
        reason="done",
    )
    site_services.site_audit_plan(
        actor=qa,
        site=plant.reference,
        title="QA visit",
        planned_for=today - dt.timedelta(days=3),
        reason="follow-up",
    )
    # Training: someone new at MAN2 who has not acknowledged the accountability item yet.
    newcomer = make_persona("operator", username="newcomer", accountable=False)
    site_services.membership_add(
        actor=qa, site=plant.spoke, user=newcomer, role=SiteRole.SITE_OPERATOR, reason="joined"
    )
    return Network(plant, quiet, ceased, critical, capa, newcomer)


@pytest.fixture
def net() -> Network:
    return build_network()


def qa_client(net: Network) -> Client:
    return login(Client(), net.plant.qa)


#
# The registry (design §2: the kernel renders what the apps register)
#


def test_every_app_registers_its_columns_in_order() -> None:
    assert [c.name for c in dashboard.oversight_columns()] == [
        "status",
        "batches",
        "certification",
        "deviations",
        "capas",
        "comparability",
        "training",
        "audit",
    ]
    assert [c.name for c in dashboard.oversight_columns(flagging_only=True)] == [
        "deviations",
        "capas",
        "comparability",
    ]


def test_sorting_keeps_empty_cells_last_either_way_and_flagged_sites_first() -> None:
    @dataclasses.dataclass
    class FakeSite:
        pk: int
        code: str

    column = OversightColumn("n", "N", 1, lambda ids, now: {})
    rows = [
        OversightRow(FakeSite(1, "AA1"), (Cell("2", 2),)),
        OversightRow(FakeSite(2, "BB2"), (Cell("—", None),)),
        OversightRow(FakeSite(3, "CC3"), (Cell("1", 1, flag="why"),)),
        OversightRow(FakeSite(4, "DD4"), (Cell("3", 3),)),
    ]

    def codes(**kwargs: object) -> list[str]:
        return [r.site.code for r in dashboard.oversight_sort(rows, [column], **kwargs)]  # type: ignore[arg-type]

    assert codes(by="n", flagged_first=False) == ["CC3", "AA1", "DD4", "BB2"]
    assert codes(by="n", descending=True, flagged_first=False) == ["DD4", "AA1", "CC3", "BB2"]
    assert codes(by="n", descending=True) == ["CC3", "DD4", "AA1", "BB2"]
    assert codes() == ["CC3", "AA1", "BB2", "DD4"]
    assert codes(by="unknown", flagged_first=False) == ["AA1", "BB2", "CC3", "DD4"]


#
# Each column on the network (answers for all sites at once)
#


def test_status_column_is_the_lifecycle_badge_linked_to_the_site(net: Network) -> None:
    cells = status_cells([*net.ids, net.ceased.pk], timezone.now())
    assert cells[net.quiet.pk].text == "Active"
    assert cells[net.quiet.pk].colour == "ok"
    assert cells[net.quiet.pk].link == reverse("sites:detail", args=["BRS3"])
    assert cells[net.ceased.pk].text == "Ceased"
    assert cells[net.ceased.pk].colour == "muted"
    assert cells[net.quiet.pk].sort_value < cells[net.ceased.pk].sort_value  # type: ignore[operator]
    assert cells[net.quiet.pk].detail.startswith("since ")


def test_batches_column_counts_the_last_30_days(net: Network) -> None:
    now = timezone.now()
    cells = batch_cells(net.ids, now)
    # LDS1: ten with results, one certified, one rejected; MAN2: ten; BRS3: none.
    assert (cells[net.plant.reference.pk].text, cells[net.plant.spoke.pk].text) == ("12", "10")
    assert cells[net.plant.reference.pk].link == reverse("batches:index") + "?site=LDS1"
    assert cells[net.quiet.pk] == Cell("0", 0)
    # A month later they are all older than 30 days.
    later = batch_cells(net.ids, now + dt.timedelta(days=31))
    assert {c.text for c in later.values()} == {"0"}


def test_certification_rate_is_certified_over_decided(net: Network) -> None:
    cells = certification_cells(net.ids, timezone.now())
    rate = cells[net.plant.reference.pk]
    assert (rate.text, rate.sort_value, rate.bar, rate.colour) == ("50 %", 50, 50, "block")
    assert rate.detail == "1 of 2 decided · 1 rejected"
    # Nothing decided at MAN2 or BRS3: no rate rather than 0 % or 100 %.
    assert net.plant.spoke.pk not in cells
    assert net.quiet.pk not in cells


def test_deviations_column_shows_open_deviations_by_class_as_chips(net: Network) -> None:
    cells = deviation_cells(net.ids, timezone.now())
    lds1, man2, brs3 = (cells[i] for i in net.ids)
    assert lds1.chips == (
        Chip("minor", 0, "info"),
        Chip("major", 0, "warn"),
        Chip("critical", 1, "block"),
    )
    assert lds1.flag == "1 critical deviation open"
    assert lds1.link == reverse("deviations:index") + "?show=open&site=LDS1"
    assert [c.count for c in man2.chips] == [1, 1, 0]
    assert (man2.text, man2.flag) == ("2 open", "")
    assert (brs3.text, brs3.flag, brs3.link) == ("0 open", "", "")
    # Sorted descending, a critical deviation outweighs any number of minor ones.
    assert lds1.sort_value > man2.sort_value > brs3.sort_value  # type: ignore[operator]


def test_a_deviation_no_longer_open_leaves_the_column(net: Network) -> None:
    deviation_services.deviation_transition(
        actor=net.plant.qa,
        deviation=net.critical,
        action=DeviationAction.CANCEL,
        reason="raised in error",
    )
    cells = deviation_cells(net.ids, timezone.now())
    assert cells[net.plant.reference.pk].flag == ""
    assert cells[net.plant.reference.pk].text == "0 open"


def test_capa_column_flags_a_capa_past_its_due_date(net: Network) -> None:
    now = timezone.now()
    man2 = net.plant.spoke.pk
    assert capa_cells(net.ids, now)[man2] == Cell("0", 1, detail="of 1 open")
    late = capa_cells(net.ids, now + dt.timedelta(days=6))[man2]
    assert (late.text, late.colour, late.flag) == ("1", "block", "1 overdue CAPA")
    assert late.link == reverse("deviations:capa-index") + "?show=overdue"


def test_comparability_column_is_the_worst_verdict_with_signals(net: Network) -> None:
    now = timezone.now()
    cells = comparability_cells(net.ids, now)
    man2 = cells[net.plant.spoke.pk]
    assert (man2.text, man2.colour) == ("Not shown", "danger")
    assert "comparability not shown: CART-01 Viability" in man2.flag
    # Nine results in a row below the centre line (rule 2) and the failed equivalence.
    kinds = set(ComparabilitySignal.objects.filter(site=net.plant.spoke).values_list("kind"))
    assert kinds == {(ComparabilitySignalKind.RUN_RULE,), (ComparabilitySignalKind.EQUIVALENCE,)}
    assert "2 comparability signals in 90 days" in man2.flag
    assert man2.link == reverse("batches:comparability-product", args=["CART-01"])
    reference = cells[net.plant.reference.pk]
    assert (reference.text, reference.colour, reference.flag) == ("Reference site", "info", "")
    assert net.quiet.pk not in cells  # makes no product: nothing to say
    # The signal ages out of the 90 days; the verdict stays until the data change.
    later = comparability_cells(net.ids, now + dt.timedelta(days=91))[net.plant.spoke.pk]
    assert "signal" not in later.flag
    assert "not shown" in later.flag


def test_an_overdue_comparability_check_flags_the_site(net: Network) -> None:
    plant = net.plant
    comparability_services.check_schedule(
        actor=plant.qa,
        product=plant.product,
        site=plant.spoke,
        due_on=timezone.localdate() + dt.timedelta(days=2),
        reason="yearly check",
    )
    now = timezone.now()
    assert "check overdue" not in comparability_cells(net.ids, now)[plant.spoke.pk].flag
    later = comparability_cells(net.ids, now + dt.timedelta(days=3))[plant.spoke.pk]
    assert "annual comparability check overdue since" in later.flag
    assert "check overdue since" in later.detail


def test_a_comparable_site_is_not_flagged() -> None:
    """Only a verdict "not shown", a signal or an overdue check flag a site: a spoke whose
    results match the reference site's is "Comparable" and unflagged."""
    plant = make_plant()
    approve_limits(plant, margin="3")
    results(plant, plant.reference, CLEAN)
    results(plant, plant.spoke, list(reversed(CLEAN)))
    comparability_services.comparability_evaluate(product_id=plant.product.pk)
    cells = comparability_cells([plant.reference.pk, plant.spoke.pk], timezone.now())
    assert cells[plant.spoke.pk] == Cell(
        "Comparable", 1, colour="ok", link=cells[plant.spoke.pk].link
    )
    assert cells[plant.reference.pk].flag == ""


def test_training_column_is_the_compliance_of_each_site(net: Network) -> None:
    cells = training_cells(net.ids, timezone.now())
    figures = training_selectors.site_compliance(net.ids)
    lds1, man2 = cells[net.plant.reference.pk], cells[net.plant.spoke.pk]
    assert (lds1.text, lds1.bar, lds1.colour) == ("100 %", 100, "ok")
    # Four people at MAN2, one without the accountability item: 3 of 4 held.
    assert figures[net.plant.spoke.pk].required == 4
    assert (man2.text, man2.bar, man2.colour) == ("75 %", 75, "block")
    assert man2.link == reverse("training:site-compliance", args=["MAN2"])
    assert cells[net.quiet.pk] == Cell("nobody yet", None)


def test_training_figures_are_stored_and_recomputed_when_an_hour_old(net: Network) -> None:
    """The column reads stored figures (one query for every site) and recomputes those missing
    or older than an hour; the hourly round recomputes them all."""
    man2 = net.plant.spoke.pk
    assert training_cells(net.ids, timezone.now())[man2].text == "75 %"
    assert SiteComplianceSnapshot.objects.filter(site_id__in=net.ids).count() == 3
    give_accountability(net.newcomer)
    with CaptureQueriesContext(connection) as fresh:
        assert training_cells(net.ids, timezone.now())[man2].text == "75 %"  # as stored
    assert len(fresh.captured_queries) == 2  # the figures and the site codes
    assert compliance_snapshots_refresh() == 3  # every site not ceased
    assert training_cells(net.ids, timezone.now())[man2].text == "100 %"
    # An hour-old figure is recomputed before it is shown.
    site_services.membership_end(
        actor=net.plant.qa, membership=net.newcomer.site_memberships.get(), reason="left"
    )
    SiteComplianceSnapshot.objects.filter(site_id=man2).update(
        computed_at=timezone.now() - dt.timedelta(minutes=61)
    )
    assert training_cells(net.ids, timezone.now())[man2].text == "100 %"
    snapshot = SiteComplianceSnapshot.objects.get(site_id=man2)
    assert (snapshot.held, snapshot.required) == (3, 3)


def test_audit_column_shows_the_last_audit_and_a_late_plan(net: Network) -> None:
    today = timezone.localdate()
    cells = audit_cells(net.ids, timezone.now())
    lds1 = cells[net.plant.reference.pk]
    done_on = today - dt.timedelta(days=10)
    assert lds1.text == f"{done_on.day} {done_on:%b %Y}"
    assert lds1.detail.startswith("Annual GMP self-inspection · planned audit overdue since")
    assert lds1.colour == "warn"
    assert lds1.link == reverse("sites:detail", args=["LDS1"]) + "#audits"
    man2 = cells[net.plant.spoke.pk]
    assert (man2.text, man2.colour, man2.sort_value) == ("never", "warn", 0)
    # Never audited sorts before any date (the oldest first).
    assert man2.sort_value < lds1.sort_value  # type: ignore[operator]


#
# Flags (issue 8 §6)
#


def flags_by_code(table_rows: Sequence[OversightRow]) -> dict[str, list[str]]:
    return {row.site.code: row.flags for row in table_rows}


def test_sites_are_flagged_for_what_the_issue_names_and_nothing_else(net: Network) -> None:
    qa = net.plant.qa
    table = oversight_table(user=qa, query=OversightQuery())
    flags = flags_by_code(table.rows)
    assert flags["LDS1"] == ["1 critical deviation open"]
    assert flags["MAN2"] == [
        "comparability not shown: CART-01 Viability; 2 comparability signals in 90 days"
    ]
    assert flags["BRS3"] == []  # never audited, nobody trained: amber, but not flagged
    assert table.flagged == 2
    # Six days on, MAN2's CAPA is overdue too.
    later = oversight_table(
        user=qa, query=OversightQuery(), now=timezone.now() + dt.timedelta(days=6)
    )
    assert "1 overdue CAPA" in flags_by_code(later.rows)["MAN2"]


#
# The page
#


ROW_CODE = re.compile(r'<a class="site-code" href="/sites/([A-Z0-9]+)/">')


def codes_on(response: Any) -> list[str]:
    """The site codes of the table's rows, in order."""
    return ROW_CODE.findall(response.content.decode())


def test_qa_sees_every_site_not_ceased_flagged_first(net: Network) -> None:
    response = qa_client(net).get(reverse("sites:oversight"))
    assert response.status_code == 200
    assert codes_on(response) == ["LDS1", "MAN2", "BRS3"]
    body = response.content.decode()
    assert body.count('class="oversight-flagged"') == 2
    assert "1 critical deviation open" in body
    assert 'hx-trigger="every 60s' in body
    assert "Not shown" in body and "/comparability/CART-01/" in body
    assert 'method="post" action="/sites/' not in body  # read-only: nothing here writes


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=all", ["LDS1", "MAN2", "BRS3", "OLD9"]),
        ("status=ceased", ["OLD9"]),
        ("flagged=only", ["LDS1", "MAN2"]),
        ("flagged=off", ["BRS3", "LDS1", "MAN2"]),
        ("flagged=off&sort=batches", ["BRS3", "MAN2", "LDS1"]),
        ("flagged=off&sort=batches&dir=desc", ["LDS1", "MAN2", "BRS3"]),
        ("flagged=off&sort=training", ["MAN2", "LDS1", "BRS3"]),  # "nobody yet" is last
        ("sort=deviations&dir=desc", ["LDS1", "MAN2", "BRS3"]),
        ("status=bogus&sort=nope&flagged=x", ["LDS1", "MAN2", "BRS3"]),  # defaults
    ],
)
def test_filters_and_sorting(net: Network, query: str, expected: list[str]) -> None:
    response = qa_client(net).get(reverse("sites:oversight") + "?" + query)
    assert response.status_code == 200
    assert codes_on(response) == expected


def test_header_links_sort_and_toggle_the_direction(net: Network) -> None:
    body = qa_client(net).get(reverse("sites:oversight") + "?sort=batches").content.decode()
    # Sorted by batches, ascending: its header says so and links to the other direction.
    assert body.count('aria-sort="ascending"') == 1
    assert 'aria-sort="ascending" title="Batches started in the last 30 days.">' in body
    assert '<a class="sort-link" href="/sites/oversight/?sort=batches&amp;dir=desc">' in body
    assert 'href="/sites/oversight/?sort=training"' in body


def test_the_htmx_partial_is_the_table_alone(net: Network) -> None:
    url = reverse("sites:oversight") + "?flagged=only"
    response = qa_client(net).get(url, headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.content.decode()
    assert body.startswith('<div id="oversight-table"')
    assert "<html" not in body and "<form" not in body
    # It polls the same view it shows, with the same choices.
    assert 'hx-get="/sites/oversight/?flagged=only"' in body
    assert codes_on(response) == ["LDS1", "MAN2"]


def test_site_staff_see_only_their_sites(net: Network) -> None:
    response = login(Client(), net.plant.operator).get(reverse("sites:oversight"))
    assert response.status_code == 200
    assert codes_on(response) == ["LDS1", "MAN2"]
    outsider = make_persona("outsider")
    response = login(Client(), outsider).get(reverse("sites:oversight"))
    assert codes_on(response) == []
    assert "No site to show" in response.content.decode()


def test_the_inspector_reads_every_site_and_changes_nothing(net: Network) -> None:
    client = login(Client(), make_persona("inspector"))
    response = client.get(reverse("sites:oversight"))
    assert response.status_code == 200
    assert codes_on(response) == ["LDS1", "MAN2", "BRS3"]
    assert client.post(reverse("sites:oversight")).status_code == 405


def test_signed_out_people_are_sent_to_sign_in(net: Network) -> None:
    response = Client().get(reverse("sites:oversight"))
    assert response.status_code == 302
    assert "login" in response["Location"]


@pytest.mark.parametrize("partial", [False, True])
def test_the_page_asks_a_fixed_number_of_queries_for_3_and_12_sites(
    net: Network, partial: bool
) -> None:
    client = qa_client(net)
    headers = {"HX-Request": "true"} if partial else {}
    url = reverse("sites:oversight")
    client.get(url, headers=headers)  # warm: the session's first touches
    with CaptureQueriesContext(connection) as small:
        assert len(codes_on(client.get(url, headers=headers))) == 3
    qa = net.plant.qa
    for n in range(9):
        site = make_site(qa, f"ZZ{n}", SiteStatus.ACTIVE if n < 2 else SiteStatus.PROPOSED)
        if n < 2:
            site_services.membership_add(
                actor=qa,
                site=site,
                user=net.plant.operator,
                role=SiteRole.SITE_OPERATOR,
                reason="works here",
            )
            deviation_services.deviation_raise(
                actor=qa,
                site=site,
                title="Spill",
                description="Spill in the room.",
                proposed_class="critical",
            )
    assert Site.objects.exclude(status=SiteStatus.CEASED).count() == 12
    client.get(url, headers=headers)  # warm: the new sites' training figures are stored
    with CaptureQueriesContext(connection) as large:
        response = client.get(url, headers=headers)
    assert len(codes_on(response)) == 12
    assert len(large.captured_queries) == len(small.captured_queries)


#
# The way in: the home panel
#


def test_the_home_panel_names_the_flagged_sites_for_qa(net: Network) -> None:
    body = qa_client(net).get(reverse("home")).content.decode()
    assert "Site oversight" in body
    assert "3</strong> sites under oversight" in body
    assert "2 flagged" in body
    assert reverse("sites:oversight") in body
    assert "1 critical deviation open" in body


def test_site_staff_have_no_oversight_panel(net: Network) -> None:
    body = login(Client(), net.plant.operator).get(reverse("home")).content.decode()
    assert "Site oversight" not in body
