"""Deviation and CAPA pages: who sees what, what a QA lead reads (issue 6 §8)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from deviations import services
from deviations.choices import DeviationAction, DeviationClass
from deviations.models import Capa, Deviation
from deviations.selectors import capa_owner_choices
from deviations.selectors import deviation_trends as trend_selector
from tests.batches.helpers import make_plant, start
from tests.batches.test_pages import sig
from tests.deviations.test_services import make_capa, raise_on
from tests.personas import login, make_persona

pytestmark = pytest.mark.django_db


def _get(user, name, *args):
    return login(Client(), user).get(reverse(name, args=args))


def test_qa_reads_the_list_and_the_record_with_its_class_criteria_and_capa():
    plant = make_plant()
    batch = start(plant)
    deviation = raise_on(plant, batch, cls=DeviationClass.CRITICAL)
    capa = make_capa(plant, deviation)
    listing = _get(plant.qa, "deviations:index").content.decode()
    assert deviation.number in listing and batch.number in listing
    assert "badge-block" in listing and "proposed" in listing
    page = _get(plant.qa, "deviations:detail", deviation.number).content.decode()
    assert "Likely to harm the patient" in page
    assert capa.number in page
    capa_page = _get(plant.qa, "deviations:capa-detail", capa.number).content.decode()
    assert "Replace the thermostat" in capa_page


def test_site_staff_see_their_sites_deviations_only():
    plant = make_plant()
    deviation = raise_on(plant)
    elsewhere = make_persona("operator", username="elsewhere")
    assert _get(plant.operator, "deviations:detail", deviation.number).status_code == 200
    assert _get(elsewhere, "deviations:detail", deviation.number).status_code == 404
    assert deviation.number not in _get(elsewhere, "deviations:index").content.decode()
    assert _get(plant.qa, "deviations:detail", "DEV-1999-0001").status_code == 404


def test_an_overdue_deviation_is_flagged_in_the_list():
    plant = make_plant()
    # Recorded four days after it happened: its triage is already late (DV-04).
    raise_on(plant, occurred_at=timezone.now() - dt.timedelta(days=4))
    listing = _get(plant.qa, "deviations:index").content.decode()
    assert "Overdue" in listing and "row-urgent" in listing


def test_signed_out_people_are_sent_to_sign_in():
    response = Client().get(reverse("deviations:index"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_deviation_goes_from_raised_to_closed_through_the_pages():
    plant = make_plant()
    batch = start(plant)
    operator, lead, qa = (login(Client(), u) for u in (plant.operator, plant.lead, plant.qa))
    # The batch page's link prefills the site and the batch.
    form = operator.get(reverse("deviations:index"), {"batch": batch.number}).content.decode()
    assert f'value="{batch.number}"' in form and "Likely to harm the patient" in form
    raised = operator.post(
        reverse("deviations:raise"),
        {
            "site": "LDS1",
            "batch": batch.number,
            "title": "Bath over temperature",
            "description": "39.5 °C during thaw.",
            "proposed_class": "major",
            "immediate_action": "Spare bath used.",
        },
    )
    assert raised.status_code == 302
    deviation = Deviation.objects.get()
    url = reverse("deviations:detail", args=[deviation.number])
    assert raised["Location"] == url

    def post(client: Client, name: str, data: dict[str, str], *args: object) -> Any:
        return client.post(reverse(name, args=[deviation.number, *args]), data)

    # Triage before the class is confirmed: refused on the page, nothing changes.
    refused = post(qa, "deviations:transition", {"reason": "go"}, "triage")
    assert refused.status_code == 409
    assert "Confirm" in refused.content.decode()
    post(qa, "deviations:confirm-class", {"deviation_class": "major", "reason": "criteria"})
    post(qa, "deviations:transition", {"reason": "triaged"}, "triage")
    post(qa, "deviations:transition", {"reason": "start"}, "investigate")
    saved = post(
        lead,
        "deviations:investigation",
        {
            "impact_assessment": "No impact on cells.",
            "root_cause_category": "human_error",
            "root_cause": "Misread dial.",
            "reason": "written",
        },
    )
    assert saved.status_code == 400 and "justification" in saved.content.decode()
    post(
        lead,
        "deviations:investigation",
        {
            "impact_assessment": "No impact on cells.",
            "root_cause_category": "equipment",
            "root_cause": "Thermostat drift.",
            "reason": "written",
        },
    )
    soon = (timezone.localdate() + dt.timedelta(days=7)).isoformat()
    later = (timezone.localdate() + dt.timedelta(days=60)).isoformat()
    made = post(
        qa,
        "deviations:capa-create",
        {
            "title": "Replace the thermostat",
            "description": "Replace and requalify.",
            "kind": "corrective",
            "owner": "site_lead",
            "due_on": soon,
            "effectiveness_due_on": later,
            "first_action": "Replace it",
            "first_action_due_on": soon,
            "reason": "CAPA",
        },
    )
    capa = Capa.objects.get()
    assert made["Location"] == reverse("deviations:capa-detail", args=[capa.number])
    action = capa.actions.get()
    lead.post(
        reverse("deviations:capa-action-done", args=[capa.number, action.pk]),
        {"outcome": "Replaced; IQ/OQ passed."},
    )
    post(qa, "deviations:transition", {"reason": "CAPA in place"}, "await-capa")
    closed = qa.post(
        reverse("deviations:transition", args=[deviation.number, "close"]),
        sig(plant.qa, "close", "approved", "Investigation complete."),
    )
    assert closed.status_code == 302, closed.content.decode()[:2000]
    deviation.refresh_from_db()
    assert deviation.status == "closed" and deviation.closure_signature is not None
    page = qa.get(url).content.decode()
    assert "signed by Quinn Adams" in page


def test_people_without_the_role_cannot_post_qa_actions():
    plant = make_plant()
    deviation = raise_on(plant)
    operator = login(Client(), plant.operator)
    response = operator.post(
        reverse("deviations:confirm-class", args=[deviation.number]),
        {"deviation_class": "minor", "reason": "mine"},
    )
    assert response.status_code == 403
    deviation.refresh_from_db()
    assert deviation.confirmed_class == ""
    inspector = login(Client(), make_persona("inspector"))
    assert inspector.post(reverse("deviations:raise"), {}).status_code == 403


def test_trends_compare_each_site_with_the_network_and_the_reference_site():
    plant = make_plant()
    batches = [start(plant) for _ in range(2)] + [start(plant, plant.spoke) for _ in range(2)]
    raise_on(plant, batches[0], cls=DeviationClass.MINOR)
    raise_on(plant, batches[1], cls=DeviationClass.MAJOR)
    services.deviation_raise(
        actor=plant.operator,
        site=plant.spoke,
        batch=batches[2],
        title="Label misprint",
        description="Printer smudge.",
        proposed_class="minor",
    )
    data = trend_selector(user=plant.qa, months=12)
    by_code = {s.code: s for s in data.sites}
    assert (by_code["LDS1"].deviations, by_code["LDS1"].batches) == (2, 2)
    assert by_code["LDS1"].is_reference and not by_code["MAN2"].is_reference
    assert by_code["MAN2"].per_100_batches == 50.0
    assert data.network_per_100_batches == 75.0 and data.reference_per_100_batches == 100.0
    assert data.months[-1].by_class == {"minor": 2, "major": 1}
    assert len(data.months) == 12
    page = _get(plant.qa, "deviations:trends").content.decode()
    assert "Per site against the network" in page and "Reference" in page
    assert "75.0 deviations per 100 batches" in page


def test_the_trend_page_reads_a_fixed_number_of_queries():
    plant = make_plant()
    client = login(Client(), plant.qa)
    url = reverse("deviations:trends")

    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    raise_on(plant)
    few = count()
    for _ in range(5):
        raise_on(plant, start(plant), cls=DeviationClass.CRITICAL)
    assert count() == few


def test_the_capa_form_offers_only_people_who_may_own_it():
    plant = make_plant()
    deviation = raise_on(plant)
    for who in ("sysadmin", "inspector"):
        make_persona(who)
    make_persona("operator", username="elsewhere")
    offered = set(capa_owner_choices(deviation.site).values_list("username", flat=True))
    assert {"qa", "qp", "site_lead", "operator", "operator2"} <= offered
    assert not offered & {"sysadmin", "inspector", "elsewhere"}
    page = _get(plant.qa, "deviations:detail", deviation.number).content.decode()
    assert 'value="site_lead"' in page and 'value="sysadmin"' not in page


def test_qa_cancels_a_capa_from_its_page_with_a_reason():
    plant = make_plant()
    capa = make_capa(plant, raise_on(plant))
    page = _get(plant.qa, "deviations:capa-detail", capa.number).content.decode()
    assert reverse("deviations:capa-cancel", args=[capa.number]) in page
    assert (
        "Cancel this CAPA"
        not in _get(plant.lead, "deviations:capa-detail", capa.number).content.decode()
    )
    client = login(Client(), plant.qa)
    url = reverse("deviations:capa-cancel", args=[capa.number])
    assert client.post(url, {"cancel-reason": ""}).status_code == 400
    capa.refresh_from_db()
    assert capa.status == "open"
    response = client.post(url, {"cancel-reason": "Raised twice."})
    assert response.status_code == 302
    capa.refresh_from_db()
    assert (capa.status, capa.cancel_reason) == ("cancelled", "Raised twice.")
    assert "Raised twice." in _get(plant.qa, "deviations:capa-detail", capa.number).content.decode()
    denied = login(Client(), plant.lead).post(url, {"cancel-reason": "x"})
    assert denied.status_code == 403


def test_the_batch_page_offers_raise_a_deviation_to_those_who_raise_them():
    """The link comes from the record-action registry: `batches` never imports deviations."""
    plant = make_plant()
    batch = start(plant)
    link = f"{reverse('deviations:index')}?batch={batch.number}#raise"
    page = _get(plant.operator, "batches:detail", batch.number).content.decode()
    assert "Raise a deviation" in page and link in page
    inspector = make_persona("inspector", username="insp")
    assert (
        "Raise a deviation" not in _get(inspector, "batches:detail", batch.number).content.decode()
    )
    form = login(Client(), plant.operator).get(link.split("#")[0]).content.decode()
    assert f'value="{batch.number}"' in form


def test_the_deviation_list_shows_open_or_overdue_ones_and_filters_by_site():
    plant = make_plant()
    late = raise_on(plant, occurred_at=timezone.now() - dt.timedelta(days=4))
    fresh = services.deviation_raise(
        actor=plant.operator,
        site=plant.spoke,
        title="Label printer jammed",
        description="Reprinted.",
        proposed_class=DeviationClass.MINOR,
    )
    services.deviation_transition(
        actor=plant.qa, deviation=fresh, action=DeviationAction.CANCEL, reason="Raised twice."
    )

    def listing(query: str) -> str:
        return (
            login(Client(), plant.qa).get(f"{reverse('deviations:index')}?{query}").content.decode()
        )

    assert late.number in listing("") and fresh.number in listing("")
    assert late.number in listing("show=open") and fresh.number not in listing("show=open")
    assert late.number in listing("show=overdue")
    assert fresh.number not in listing("show=overdue")
    assert late.number not in listing(f"site={plant.spoke.code}")
    assert fresh.number in listing(f"site={plant.spoke.code.lower()}")


def test_the_capa_list_shows_open_overdue_and_all_with_actions_done():
    plant = make_plant()
    capa = make_capa(plant, raise_on(plant))
    cancelled = make_capa(plant, raise_on(plant), title="Raised twice")
    services.capa_cancel(actor=plant.qa, capa=cancelled, reason="duplicate")
    services.capa_action_complete(actor=plant.lead, action=capa.actions.get(), outcome="done")
    page = _get(plant.qa, "deviations:capa-index").content.decode()
    assert capa.number in page and cancelled.number not in page
    assert "1 of 1" in page and 'aria-valuenow="100"' in page
    client = login(Client(), plant.qa)
    everything = client.get(reverse("deviations:capa-index") + "?show=all").content.decode()
    assert cancelled.number in everything
    overdue = client.get(reverse("deviations:capa-index") + "?show=overdue").content.decode()
    assert capa.number not in overdue  # due in 14 days
    elsewhere = make_persona("operator", username="elsewhere")
    assert capa.number not in _get(elsewhere, "deviations:capa-index").content.decode()
    with CaptureQueriesContext(connection) as few:
        _get(plant.qa, "deviations:capa-index")
    for i in range(3):
        make_capa(plant, raise_on(plant), title=f"More {i}")
    with CaptureQueriesContext(connection) as many:
        _get(plant.qa, "deviations:capa-index")
    assert len(many) == len(few)
