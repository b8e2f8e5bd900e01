"""The onboarding checklist is configuration, changed with a reason (SO-03, DV-08)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlsite.accounts.models import User
from controlsite.audit.context import audit_context
from sites.models import ChecklistItemTemplate
from tests.personas import PASSWORD, login
from tests.sites.helpers import make_site

pytestmark = pytest.mark.django_db


def test_a_renamed_checklist_item_is_used_for_new_sites_and_the_change_has_its_reason(persona):
    with audit_context(reason="test: support superuser"):
        support = User.objects.create_superuser("support", "s@example.test", PASSWORD)
    TOTPDevice.objects.create(user=support, name="test", confirmed=True)
    client = login(Client(), support)
    item = ChecklistItemTemplate.objects.get(key="premises")
    url = reverse("admin:sites_checklistitemtemplate_change", args=[item.pk])
    assert 'name="reason"' in client.get(url).content.decode()
    response = client.post(
        url,
        {
            "key": "premises",
            "title": "Premises qualification (IQ/OQ/PQ)",
            "guidance": "",
            "position": 10,
            "active": "on",
            "reason": "SOP-QA-014 v3 wording",
        },
    )
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.history.latest("history_id").history_change_reason == "SOP-QA-014 v3 wording"
    site = make_site(persona("qa"), "CFG1")
    assert site.checklist.get(key="premises").title == "Premises qualification (IQ/OQ/PQ)"
    assert (
        client.post(
            reverse("admin:sites_checklistitemtemplate_delete", args=[item.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
