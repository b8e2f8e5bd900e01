"""Onboarding through the API: evidence by reference and signed sign-off (SO-03)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from controlsite.signatures.models import ElectronicSignature
from sites.choices import SiteRole, SiteStatus
from sites.models import Site
from sites.services import membership_add
from tests.matrix import ANON, Matrix, only
from tests.personas import signature_fields
from tests.sites.helpers import make_site

pytestmark = pytest.mark.django_db

# QA writes; everyone who may see every site but is not QA is refused (403); site-scoped roles
# and the integrator see no site here, so the site is not found for them (404).
WRITERS = only(
    {
        "qa": 200,
        "qp": 403,
        "inspector": 403,
        "site_lead": 404,
        "operator": 404,
        "trainer": 404,
        "integrator": 404,
    },
    others=403,
    anonymous=401,
)
EVIDENCE = Matrix("api:site-checklist-evidence", WRITERS)
SIGN_OFF = Matrix("api:site-checklist-sign-off", WRITERS)


def evidence_url(code: str, key: str) -> str:
    return reverse("api:site-checklist-evidence", kwargs={"code": code, "key": key})


def sign_off_url(code: str, key: str) -> str:
    return reverse("api:site-checklist-sign-off", kwargs={"code": code, "key": key})


@pytest.mark.parametrize(("who", "expected"), EVIDENCE.cases())
def test_attach_evidence_permissions(as_persona, persona, who, expected):
    site = make_site(persona("qa"), "API1", SiteStatus.ONBOARDING)
    response = as_persona(who).post(
        evidence_url(site.code, "premises"),
        {"reference": "PQ-1", "reason": "filed"},
        format="json",
    )
    assert response.status_code == expected
    assert site.checklist.get(key="premises").evidence_reference == (
        "PQ-1" if expected == 200 else ""
    )


@pytest.mark.parametrize(("who", "expected"), SIGN_OFF.cases())
def test_sign_off_permissions(as_persona, persona, who, expected):
    qa = persona("qa")
    site = make_site(qa, "API2", SiteStatus.ONBOARDING)
    as_persona("qa").post(
        evidence_url(site.code, "premises"), {"reference": "PQ-1", "reason": "filed"}, format="json"
    )
    user = persona(who) if who != ANON else qa
    response = as_persona(who).post(
        sign_off_url(site.code, "premises"),
        signature_fields(user, meaning="verified"),
        format="json",
    )
    assert response.status_code == expected
    assert ElectronicSignature.objects.filter(meaning="verified").count() == (
        1 if expected == 200 else 0
    )


def test_an_integrator_walks_a_site_through_onboarding_by_api(api_client_for, persona):
    qa = persona("qa")
    site = make_site(qa, "API3", SiteStatus.ONBOARDING)
    client = api_client_for("qa")
    for item in site.checklist.all():
        assert (
            client.post(
                evidence_url(site.code, item.key),
                {"reference": f"DOC-{item.key}", "reason": "filed"},
                format="json",
            ).status_code
            == 200
        )
        body = client.post(
            sign_off_url(site.code, item.key),
            signature_fields(qa, meaning="verified"),
            format="json",
        ).json()
        assert body["status"] == "done"
    response = client.post(
        reverse("api:site-qualify", args=[site.code]), {"reason": "all signed off"}, format="json"
    )
    assert response.status_code == 200
    assert Site.objects.get(pk=site.pk).status == SiteStatus.QUALIFIED


def test_sign_off_without_evidence_and_unknown_items(api_client_for, persona):
    qa = persona("qa")
    site = make_site(qa, "API4", SiteStatus.ONBOARDING)
    client = api_client_for("qa")
    response = client.post(
        sign_off_url(site.code, "premises"), signature_fields(qa, meaning="verified"), format="json"
    )
    assert (response.status_code, response.json()["code"]) == (409, "evidence_required")
    missing = client.post(
        evidence_url(site.code, "no-such-item"), {"reference": "x", "reason": "x"}, format="json"
    )
    assert missing.status_code == 404
    wrong_meaning = client.post(
        sign_off_url(site.code, "premises"), signature_fields(qa, meaning="approved"), format="json"
    )
    assert wrong_meaning.status_code == 400


def test_an_operator_of_another_site_cannot_find_the_item(api_client_for, persona):
    qa, operator = persona("qa"), persona("operator")
    a = make_site(qa, "APIA", SiteStatus.ONBOARDING)
    b = make_site(qa, "APIB", SiteStatus.ONBOARDING)
    membership_add(actor=qa, site=b, user=operator, role=SiteRole.SITE_OPERATOR, reason="B")
    response = api_client_for("operator").post(
        evidence_url(a.code, "premises"), {"reference": "x", "reason": "x"}, format="json"
    )
    assert response.status_code == 404
