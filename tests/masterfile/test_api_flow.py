"""A master file from nothing to a downloaded PDF through the API alone (issue 4 §7 and §9):
register a site and a product, write every section, submit, approve as Control Site QA and then
as a QP (with a TOTP code), make it effective, export, poll the export to done, download it and
check it is the PDF whose SHA-256 the API states (MF-03, MF-06, ES-01, DI-07).

The export really renders: Celery runs eagerly, the task is sent when the request's transaction
commits, and rendering refuses to run inside one — so this test uses a transactional database
(the `migration_seeds` fixture puts the seeded section templates back; `serialized_rollback`
restores them only if no transactional test without it ran before, whose flush re-creates the
content types it would insert again).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from django.http import StreamingHttpResponse
from django.urls import reverse
from rest_framework.test import APIClient

from controlsite.audit.models import AuditEvent
from controlsite.signatures.models import ElectronicSignature
from masterfile.models import MasterFileVersion
from tests.personas import signature_fields

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("migration_seeds")]


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body: dict[str, Any] = response.json()
    return body


def test_a_master_file_from_registration_to_a_downloaded_pdf(
    api_client_for: Callable[[str], APIClient],
    persona: Callable[[str], Any],
    settings: Any,
    tmp_path: Path,
) -> None:
    settings.MEDIA_ROOT = tmp_path
    qa, qp = persona("qa"), persona("qp")
    qa_api, qp_api = api_client_for("qa"), api_client_for("qp")

    # The reference site and the product.
    ok(
        qa_api.post(
            reverse("api:site-list"),
            {
                "code": "LON1",
                "name": "St Elsewhere cell therapy unit",
                "kind": "poc_hospital",
                "address": "1 Hospital Road, London SE1 7EH",
                "reason": "New spoke approved by the board.",
            },
            format="json",
        ),
        201,
    )
    product = ok(
        qa_api.post(
            reverse("api:product-list"),
            {
                "code": "CART-01",
                "name": "Autologous CAR-T cells",
                "designation": "poc",
                "designation_reference": "DM-2026-0007",
                "designation_date": "2026-03-01",
                "dosage_form": "Suspension for infusion",
                "shelf_life_minutes": 180,
                "supply_status": "investigational",
                "reference_site": "LON1",
                "reason": "Designated by the MHRA.",
            },
            format="json",
        ),
        201,
    )
    master_file = ok(qa_api.get(product["links"]["master_file"]))
    version_url = master_file["open_version"]["url"]
    version = ok(qa_api.get(version_url))
    assert version["status"] == "draft"

    # Every section written, each edit guarded by the ETag read just before.
    sections = ok(
        qa_api.get(reverse("api:section-list"), {"version": version["id"], "page_size": 200})
    )["results"]
    assert [s["key"] for s in sections] == [s["key"] for s in version["sections"]]
    for section in sections:
        url = reverse("api:section-detail", args=[section["id"]])
        etag = qa_api.get(url)["ETag"]
        ok(
            qa_api.patch(
                url,
                {
                    "body": f"{section['title']}: marker-{section['key']}.\n\n- as agreed.",
                    "reason": "first edition",
                },
                format="json",
                HTTP_IF_MATCH=etag,
            )
        )

    # Review and the two approvals, by two different people.
    submitted = ok(
        qa_api.post(version["links"]["actions"]["submit"], {"reason": "ready"}, format="json")
    )
    assert submitted["status"] == "in_review"
    assert [a["site_code"] for a in submitted["annex"]] == ["LON1"]
    approve_url = submitted["links"]["actions"]["approve"]
    after_qa = ok(
        qa_api.post(
            approve_url,
            signature_fields(qa, meaning="approved", capacity="qa", reason="Content is right."),
            format="json",
        )
    )
    assert (after_qa["status"], after_qa["next_approval"]) == ("in_review", "qp")
    qp_signature = signature_fields(
        qp, meaning="approved", capacity="qp", reason="Fit for release decisions."
    )
    assert qp_signature["otp"]  # the QP's role needs the second factor
    approved = ok(qp_api.post(approve_url, qp_signature, format="json"))
    assert approved["status"] == "approved"
    assert [(a["capacity"], a["printed_name"], a["valid"]) for a in approved["approvals"]] == [
        ("qa", "Quinn Adams", True),
        ("qp", "Priya Patel", True),
    ]
    qp_row = ElectronicSignature.objects.get(signer=qp)
    assert qp_row.components == "username+password+totp"
    effective = ok(
        qa_api.post(
            approved["links"]["actions"]["make-effective"], {"reason": "in force"}, format="json"
        )
    )
    assert effective["status"] == "effective"
    assert effective["effective_date"] and effective["next_review_date"]
    assert MasterFileVersion.objects.get(pk=version["id"]).status == "effective"

    # The export: 202, then poll until it is done.
    requested = qa_api.post(
        reverse("api:master-file-version-exports", args=[version["id"]]), {}, format="json"
    )
    assert requested.status_code == 202, requested.content
    poll_url = requested["Location"]
    assert poll_url == f"/api/v1/exports/{requested.json()['id']}/"
    deadline = time.monotonic() + 120
    while True:
        export = ok(qa_api.get(poll_url))
        if export["status"] in {"done", "failed"} or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert export["status"] == "done", export["error"]
    assert export["progress"] == 100
    assert export["watermarked"] is False  # an effective version
    assert export["page_count"] >= 3
    assert len(export["sha256"]) == 64
    assert export["download_url"].startswith("http://testserver/api/v1/exports/")

    # The download: the PDF itself, its SHA-256 as stated, and an audit event.
    download = qa_api.get(export["download_url"])
    assert download.status_code == 200
    assert download["Content-Type"] == "application/pdf"
    content = cast(StreamingHttpResponse, download).getvalue()
    assert content.startswith(b"%PDF")
    digest = hashlib.sha256(content).hexdigest()
    assert digest == export["sha256"] == download["X-Content-SHA256"]
    assert len(content) == export["size_bytes"]
    event = AuditEvent.objects.get(event_type="masterfile.export_downloaded")
    assert event.actor_username == "qa"
    assert event.extra_data["sha256"] == digest
