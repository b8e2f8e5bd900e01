"""A batch from an empty template to a confirmed administration through the API alone (issue 5
§9): Control Site QA drafts a template with steps and specifications and approves it; an
integrator starts a batch and records its steps; a second operator verifies the step that
needs it; the site lead signs the last; results go in; the QP reads the gate findings and
certifies with a TOTP code; the hand-over and the administration are recorded against the
chain-of-identity reference (BR-01, BR-02, BR-03, BR-07, BR-08, BR-12, BR-13, BR-14, BR-15,
ES-01, ES-05).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from batches.models import Batch, Certification
from controlsite.accounts.models import User
from controlsite.audit.models import AuditEvent
from controlsite.signatures.models import ElectronicSignature
from masterfile import services as masterfile_services
from masterfile.choices import ProductSiteRole
from sites import services as site_services
from sites.choices import SiteRole, SiteStatus
from tests.masterfile.helpers import make_effective_version, make_product, signing
from tests.personas import make_persona
from tests.personas import signature_fields as persona_signature_fields
from tests.sites.helpers import make_site

pytestmark = pytest.mark.django_db

COI = "PT-2026-0042"


def signature_fields(user: User, **overrides: Any) -> dict[str, Any]:
    """The persona's signature fields, with a TOTP code its device has not accepted yet (the
    fixtures sign too, and a code is accepted once)."""
    fields = persona_signature_fields(user, **overrides)
    if "otp" in fields and "otp" not in overrides:
        fields["otp"] = signing(user).otp
    return fields


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body: dict[str, Any] = response.json()
    return body


def test_a_batch_from_template_to_administration_through_the_api(
    api_client_for: Callable[[str], APIClient], persona: Callable[[str], Any]
) -> None:
    qa, qp = persona("qa"), persona("qp")
    lead, operator = persona("site_lead"), persona("operator")
    operator2 = make_persona("operator", username="operator2")
    site = make_site(qa, "LDS1", SiteStatus.ACTIVE)
    for user, role in (
        (lead, SiteRole.SITE_LEAD),
        (operator, SiteRole.SITE_OPERATOR),
        (operator2, SiteRole.SITE_OPERATOR),
    ):
        site_services.membership_add(actor=qa, site=site, user=user, role=role, reason="works")
    product = make_product(qa, site, "CART-01", shelf_life_minutes=120)
    make_effective_version(qa, qp, product)
    spoke = make_site(qa, "MAN2", SiteStatus.ACTIVE)
    masterfile_services.product_site_add(
        actor=qa, product=product, site=spoke, role=ProductSiteRole.MANUFACTURING, reason="2nd"
    )
    qa_api, qp_api = api_client_for("qa"), api_client_for("qp")
    lead_api, op_api = api_client_for("site_lead"), api_client_for("operator")
    op2_api = APIClient()
    op2_api.force_authenticate(operator2)

    # The master batch record: a draft, two steps, two specifications, QA's approval.
    template = ok(
        qa_api.post(
            reverse("api:batch-template-list"),
            {"product": "CART-01", "title": "CAR-T at the bedside", "reason": "first MBR"},
        ),
        201,
    )
    assert template["status"] == "draft"
    links = template["links"]
    ok(
        qa_api.post(
            links["steps"],
            {
                "title": "Transduce",
                "instruction": "Add the vector at the stated MOI.",
                "requires_verification": True,
                "parameters": [{"key": "moi", "name": "MOI", "low": 2, "high": "5"}],
                "reason": "step 1",
            },
        ),
        201,
    )
    ok(
        qa_api.post(
            links["steps"],
            {
                "title": "Fill and label",
                "instruction": "Fill the bag; apply the patient label.",
                "role": "site_lead",
                "reason": "step 2",
            },
        ),
        201,
    )
    ok(
        qa_api.post(
            links["specifications"],
            {"key": "viability", "name": "Viability", "unit": "%", "low": 70, "reason": "CQA"},
        ),
        201,
    )
    detail = ok(
        qa_api.post(
            links["specifications"],
            {
                "key": "sterility",
                "name": "Sterility",
                "high": 0,
                "timing": "late",
                "reason": "14-day culture",
            },
        ),
        201,
    )
    assert [s["position"] for s in detail["steps"]] == [1, 2]
    assert detail["steps"][0]["parameters"][0]["limits_label"] == "2–5"
    approved = ok(
        qa_api.post(
            links["approve"], signature_fields(qa, meaning="approved", reason="MBR approved")
        )
    )
    assert approved["status"] == "approved"
    assert approved["approval_signature"]["printed_name"] == "Quinn Adams"
    assert approved["approval_signature"]["valid"] is True

    # The integrator (the operator's own token) starts the batch, with a retry-safe key.
    start = {"site": "LDS1", "product": "CART-01", "coi_reference": COI}
    started = op_api.post(reverse("api:batch-list"), start, HTTP_IDEMPOTENCY_KEY="start-1")
    batch = ok(started, 201)
    number = batch["number"]
    assert started["Location"] == f"/api/v1/batches/{number}/"
    assert number.startswith("LDS1-") and number.endswith("-001")
    replay = op_api.post(reverse("api:batch-list"), start, HTTP_IDEMPOTENCY_KEY="start-1")
    assert ok(replay, 201)["number"] == number
    assert Batch.objects.count() == 1
    assert batch["status"] == "in_progress"
    assert batch["progress"] == {
        "done": 0,
        "total": 2,
        "percent": 0,
        "complete": False,
        "current_step": 1,
    }

    # Step 1 (out of limits), verified by a second operator; step 2 by the site lead.
    step = ok(
        op_api.post(
            batch["links"]["steps"],
            {
                "position": 1,
                "values": {"moi": 6},
                "comment": "Vector titre high.",
                **signature_fields(operator, meaning="performed", reason="done"),
            },
        ),
        201,
    )
    assert (step["state"], step["out_of_limit"], step["values"]) == (
        "awaiting_verification",
        ["moi"],
        {"moi": "6"},
    )
    verified = ok(
        op2_api.post(
            reverse("api:batch-step-verify", args=[number, 1]),
            signature_fields(operator2, meaning="verified", reason="witnessed"),
        )
    )
    assert verified["state"] == "done"
    assert verified["verified_by"]["username"] == "operator2"
    last = ok(
        lead_api.post(
            batch["links"]["steps"],
            {"position": 2, **signature_fields(lead, meaning="performed", reason="filled")},
        ),
        201,
    )
    assert last["batch_status"] == "completed"

    # Results, then the findings: the out-of-limit step warns.
    result = ok(
        op_api.post(batch["links"]["results"], {"specification": "viability", "value": "91.5"}),
        201,
    )
    assert (result["passed"], result["late"], result["value"]) == (True, False, "91.5")
    rows_response = op_api.get(batch["links"]["results"])
    assert rows_response.status_code == 200
    rows: list[dict[str, Any]] = rows_response.json()
    assert [(r["specification"]["key"], r["result"] is not None) for r in rows] == [
        ("sterility", False),
        ("viability", True),
    ]
    findings = ok(qp_api.get(batch["links"]["findings"]))
    assert findings["can_certify"] is True
    assert [f["code"] for f in findings["findings"]] == ["step_out_of_limit"]

    # The QP certifies remotely with password and TOTP; the warning needs a justification.
    certify = signature_fields(
        qp,
        meaning="qp_certified",
        reason="Batch record reviewed.",
        remote=True,
        location="Home office, York",
    )
    assert certify["otp"]
    refused = qp_api.post(batch["links"]["certify"], certify)
    assert refused.status_code == 400
    assert refused.json()["code"] == "justification_required"
    certify["otp"] = signing(qp).otp
    certify["justification"] = "MOI 6 within the validated range of the vector lot."
    certified = ok(qp_api.post(batch["links"]["certify"], certify))
    assert certified["status"] == "certified"
    decision = certified["certification"]
    assert (decision["decision"], decision["remote"], decision["location"]) == (
        "certified",
        True,
        "Home office, York",
    )
    assert [f["code"] for f in decision["gate_findings"]] == ["step_out_of_limit"]
    assert decision["signature"]["meaning"] == "qp_certified"
    assert certified["findings"] is None
    row = ElectronicSignature.objects.get(signer=qp, meaning="qp_certified")
    assert row.components == "username+password+totp"
    assert Certification.objects.get().dossier_sha256 == decision["dossier_sha256"]

    # A late result may follow; the hand-over and the administration close the chain.
    late = ok(
        op_api.post(batch["links"]["results"], {"specification": "sterility", "value": 0}), 201
    )
    assert late["late"] is True
    supply = ok(
        op_api.post(
            reverse("api:batch-supplies", args=[number]),
            {"coi_reference": COI, "supplied_to": "Ward 7", "quantity": 1, "unit": "bag"},
        ),
        201,
    )
    confirmed = ok(op_api.post(supply["links"]["confirm_administration"], {"coi_reference": COI}))
    assert confirmed["administered_at"] is not None
    listed = ok(op_api.get(reverse("api:supply-list"), {"batch": number}))["results"]
    assert [s["id"] for s in listed] == [supply["id"]]
    final = ok(op_api.get(reverse("api:batch-detail", args=[number])))
    assert final["supplies"][0]["administered_confirmed_by"]["username"] == "operator"
    assert AuditEvent.objects.filter(event_type="batches.certified").count() == 1
