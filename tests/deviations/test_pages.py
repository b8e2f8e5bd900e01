"""Deviation and CAPA pages: who sees what, what a QA lead reads (issue 6 §8)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from controlsite.audit.context import audit_context
from deviations.choices import DeviationClass
from tests.batches.helpers import make_plant, start
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
    deviation = raise_on(plant)
    # The list flags by date alone: move the triage date back.
    with audit_context(reason="test: an old deviation"):
        deviation.triage_due_on = timezone.localdate() - dt.timedelta(days=2)
        deviation.save(update_fields=["triage_due_on"])
    listing = _get(plant.qa, "deviations:index").content.decode()
    assert "Overdue" in listing and "row-urgent" in listing


def test_signed_out_people_are_sent_to_sign_in():
    response = Client().get(reverse("deviations:index"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
