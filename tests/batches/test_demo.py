"""The batches demo data (issue 5 §10, design §9): an approved template per demo product and
batches in every state across sites and products, made through the services and signed by the
people whose roles do each step; a second run of `demo_setup` creates nothing (BR-01…BR-15,
ES-01, ES-09)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from batches.choices import BatchStatus, Decision, SignalKind, TemplateStatus
from batches.demo import BATCHES, TEMPLATES, load_demo_batches
from batches.models import (
    Batch,
    BatchSignal,
    BatchTemplate,
    Certification,
    StepRecord,
    SupplyRecord,
    TestResult,
)
from batches.selectors import QueueFilters, batch_gate_report, batch_progress, qp_queue
from controlsite import demo
from controlsite.accounts.models import User
from controlsite.audit.models import AuditEvent
from controlsite.signatures.models import ElectronicSignature, SignatureMeaning
from controlsite.signatures.services import signature_is_valid

# Until the lead adds this line to BatchesConfig.ready(), the test registers the loader itself
# (registering the same loader twice is allowed).
demo.register(demo.DemoLoader("batches", load_demo_batches, order=30))


def run() -> str:
    out, err = StringIO(), StringIO()
    call_command("demo_setup", stdout=out, stderr=err)
    return out.getvalue()


@pytest.fixture(scope="module")
def _demo_once(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    """`demo_setup` run once for the module, inside a transaction rolled back at its end; each
    test then works in a savepoint of it (the `db` fixture)."""
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            yield run()
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture
def demo_output(_demo_once: str, db: None) -> str:
    return _demo_once


def by_coi(coi: str) -> Batch:
    return Batch.objects.select_related("site", "product", "template").get(coi_reference=coi)


def counts() -> dict[str, int]:
    return {
        "templates": BatchTemplate.objects.count(),
        "batches": Batch.objects.count(),
        "batch_history": Batch.history.count(),
        "steps": StepRecord.objects.count(),
        "results": TestResult.objects.count(),
        "certifications": Certification.objects.count(),
        "supplies": SupplyRecord.objects.count(),
        "signatures": ElectronicSignature.objects.count(),
        "events": AuditEvent.objects.count(),
    }


def test_each_demo_product_has_an_approved_template_signed_by_qa(demo_output):
    for spec in TEMPLATES:
        template = BatchTemplate.objects.get(product__code=spec.product)
        assert template.status == TemplateStatus.APPROVED
        assert template.approval_signature is not None
        assert template.approval_signature.signer_username == "qa"
        assert signature_is_valid(template.approval_signature, template)
        assert template.steps.count() == 3
        assert template.steps.filter(requires_verification=True).count() == 1
        assert {s.registered for s in template.specifications.all()} == {True, False}


def test_batches_are_in_every_state_across_sites_and_products(demo_output):
    batches = list(Batch.objects.filter(coi_reference__in=[b.coi for b in BATCHES]))
    assert len(batches) == len(BATCHES)
    assert {b.status for b in batches} == set(BatchStatus.values)
    assert {b.site.code for b in batches} >= {"NCL1", "MAN1", "LDS1", "BHM1", "MU01"}
    assert {b.product.code for b in batches} == {"NAT-CD19", "NAT-CMV", "NAT-WBC"}
    for batch in batches:
        assert batch.number.startswith(f"{batch.site.code}-")


def test_in_progress_batches_show_each_situation(demo_output):
    started = by_coi("DEMO-CD19-1001")
    assert started.status == BatchStatus.IN_PROGRESS
    assert batch_progress(started).done_count == 0

    awaiting = by_coi("DEMO-CD19-1002")
    current = batch_progress(awaiting).current
    assert current is not None and current.step.position == 2
    assert current.record is not None and current.record.awaiting_verification

    flagged = by_coi("DEMO-WBC-2001")
    record = flagged.step_records.get(position=1)
    assert record.out_of_limit == ["volume"]
    assert BatchSignal.objects.filter(batch=flagged, kind=SignalKind.OUT_OF_LIMIT).exists()


def test_the_qp_queue_has_short_shelf_life_batches_a_warning_and_a_concession_candidate(
    demo_output,
):
    qp = User.objects.get(username="qp")
    queue = list(qp_queue(user=qp, filters=QueueFilters()))
    cois = [b.coi_reference for b in queue]
    assert set(cois) == {"DEMO-WBC-2002", "DEMO-WBC-2003", "DEMO-CMV-3001", "DEMO-CD19-1003"}
    # Soonest expiry first: the 45-minute NAT-WBC batches, expiring within the hour.
    assert queue[0].product.code == "NAT-WBC"
    assert queue[0].expires_at is not None
    assert queue[0].expires_at - timezone.now() < dt.timedelta(minutes=46)

    # Other apps' gates (the deviations the failures opened) add their own findings.
    warn = batch_gate_report(by_coi("DEMO-CMV-3001"))
    assert warn.can_certify
    assert "unregistered_specification_failed" in [f.code for f in warn.warnings]
    blocked = batch_gate_report(by_coi("DEMO-CD19-1003"))
    assert "specification_failed" in [f.code for f in blocked.blocks]
    for coi in ("DEMO-WBC-2002", "DEMO-WBC-2003"):
        assert not batch_gate_report(by_coi(coi)).findings


def test_decided_batches_carry_the_qps_signed_decision(demo_output):
    expected = {
        "DEMO-CD19-1004": Decision.CERTIFIED,
        "DEMO-CD19-1005": Decision.CERTIFIED,
        "DEMO-CMV-3002": Decision.CERTIFIED_UNDER_CONCESSION,
        "DEMO-WBC-2004": Decision.REJECTED,
    }
    for coi, decision in expected.items():
        certification = Certification.objects.select_related("signature").get(
            batch__coi_reference=coi
        )
        assert certification.decision == decision
        assert certification.signature is not None
        assert certification.signature.signer_username == "qp"
        assert "totp" in certification.signature.components  # ES-09
        meaning = (
            SignatureMeaning.REJECTED
            if decision == Decision.REJECTED
            else SignatureMeaning.QP_CERTIFIED
        )
        assert certification.signature.meaning == meaning
    concession = Certification.objects.get(batch__coi_reference="DEMO-CMV-3002")
    assert concession.clinician_request and concession.justification
    assert concession.remote and concession.location


def test_a_failing_late_result_and_a_supply_with_administration(demo_output):
    late = by_coi("DEMO-CD19-1005")
    result = late.results.get(late=True)
    assert not result.passed
    assert BatchSignal.objects.filter(batch=late, kind=SignalKind.LATE_RESULT_FAILED).exists()
    assert AuditEvent.objects.filter(
        event_type="batches.late_result_failed", target_id=str(late.pk)
    ).exists()

    supplied = by_coi("DEMO-CD19-1004")
    supply = supplied.supplies.get()
    assert supply.administered_at is not None
    assert supply.administered_confirmed_by is not None


def test_every_write_is_attributed_to_the_person_whose_role_does_it(demo_output):
    demo_batches = Batch.objects.filter(coi_reference__startswith="DEMO-")
    steps = StepRecord.objects.filter(batch__in=demo_batches)
    assert set(steps.values_list("performed_by__username", flat=True)) == {"operator", "sitelead"}
    assert set(steps.exclude(verified_by=None).values_list("verified_by__username", flat=True)) == {
        "sitelead"
    }
    assert set(demo_batches.values_list("created_by__username", flat=True)) == {"operator"}
    assert "" not in set(
        Batch.history.filter(id__in=demo_batches.values("pk")).values_list(
            "history_change_reason", flat=True
        )
    )


def test_a_second_run_creates_nothing(demo_output):
    before = counts()
    second = run()
    assert counts() == before
    section = second.split("Demo batches")[1].split("\n\n")[0]
    assert "existing" in section and "created" not in section
    assert "created" in demo_output.split("Demo batches")[1].split("\n\n")[0]


def test_the_qps_authenticator_works_straight_after_the_demo(demo_output):
    qp = User.objects.get(username="qp")
    device = TOTPDevice.objects.get(user=qp, confirmed=True)
    now_step = int((time.time() - device.t0) // device.step)
    assert (device.tolerance, device.drift) == (1, 0)
    assert device.last_t < now_step
