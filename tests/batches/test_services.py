"""Batch templates, batches, steps, results, certification, concession, rejection and supply,
through the services (issue 5; BR-01…BR-15, ES-01…ES-09, TR-02)."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from batches import selectors, services
from batches.choices import BatchStatus, Decision, SignalKind, TemplateStatus
from batches.events import BatchEvent
from batches.models import Batch, BatchSignal, Certification, StepRecord, TestResult
from controlsite.audit.models import AuditEvent
from controlsite.audit.services import audit_chain_verify
from controlsite.errors import ApplicationError
from controlsite.notifications.models import Notification
from controlsite.signatures.models import ElectronicSignature, SignatureMeaning
from controlsite.signatures.services import (
    SignatureCredentials,
    SignatureRefusedError,
    signature_is_valid,
)
from masterfile import services as masterfile_services
from sites import services as site_services
from sites.choices import SiteAction, SiteRole, SiteStatus
from tests.batches.helpers import (
    COI,
    Plant,
    do_steps,
    make_plant,
    passing_results,
    ready_batch,
    start,
)
from tests.masterfile.helpers import make_effective_version, signing
from tests.personas import PASSWORD, make_persona
from tests.sites.helpers import creds, make_site

pytestmark = pytest.mark.django_db


@pytest.fixture
def plant() -> Plant:
    return make_plant()


def _refused(call: Any, status: int, code: str) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        call()
    assert (caught.value.status_code, caught.value.code) == (status, code), caught.value.message
    return caught.value


#
# Templates (BR-01)
#


def test_an_approved_template_is_signed_by_qa_and_frozen(plant):
    template = plant.template
    assert template.status == TemplateStatus.APPROVED
    assert template.approval_signature.meaning == SignatureMeaning.APPROVED
    assert template.approval_signature.signer == plant.qa
    assert signature_is_valid(template.approval_signature, template)
    assert [s.title for s in template.steps.order_by("position")] == [
        "Thaw and wash",
        "Transduce",
        "Fill and label",
    ]
    _refused(
        lambda: services.template_step_add(
            actor=plant.qa, template=template, title="X", instruction="Y", reason="late idea"
        ),
        409,
        "template_not_editable",
    )


def test_a_new_template_version_copies_the_approved_one_and_retires_it_on_approval(plant):
    draft = services.template_create(
        actor=plant.qa, product=plant.product, title="MBR v2", reason="process change"
    )
    assert draft.number == 2
    assert draft.steps.count() == 3 and draft.specifications.count() == 3
    assert draft.steps.get(position=1).parameters.count() == 2
    _refused(
        lambda: services.template_create(
            actor=plant.qa, product=plant.product, title="another", reason="r"
        ),
        409,
        "template_draft_exists",
    )
    services.template_approve(
        actor=plant.qa, template=draft, credentials=signing(plant.qa), reason="v2 approved"
    )
    plant.template.refresh_from_db()
    assert plant.template.status == TemplateStatus.RETIRED
    draft.refresh_from_db()
    assert draft.status == TemplateStatus.APPROVED


@pytest.mark.parametrize("who", ["qp", "operator", "site_lead", "inspector"])
def test_only_control_site_qa_writes_templates(plant, who):
    user = make_persona(who, username=f"{who}-x")
    _refused(
        lambda: services.template_create(actor=user, product=plant.product, title="t", reason="r"),
        403,
        "permission_denied",
    )


@pytest.mark.parametrize(
    ("parameters", "code"),
    [
        ([{"key": "Bad Key", "low": 1}], "invalid_key"),
        ([{"key": "t", "low": 5, "high": 1}], "invalid_limits"),
        ([{"key": "t", "low": "abc"}], "invalid_value"),
        ([{"key": "t", "low": "NaN"}], "invalid_value"),
        ([{"key": "t", "low": "1e40"}], "invalid_value"),
        ([{"key": "t"}, {"key": "t"}], "duplicate_key"),
    ],
)
def test_bad_parameters_are_refused_and_change_nothing(plant, parameters, code):
    draft = services.template_create(
        actor=plant.qa, product=plant.product, title="MBR v2", reason="process change"
    )
    _refused(
        lambda: services.template_step_add(
            actor=plant.qa,
            template=draft,
            title="New",
            instruction="Do it",
            parameters=parameters,
            reason="r",
        ),
        400,
        code,
    )
    assert draft.steps.count() == 3


#
# Starting a batch (BR-12, BR-14)
#


def test_a_batch_number_is_site_date_and_a_daily_sequence_never_reused(plant):
    first, second = start(plant), start(plant)
    other = start(plant, plant.spoke)
    today = timezone.localdate().strftime("%y%m%d")
    assert first.number == f"LDS1-{today}-001"
    assert second.number == f"LDS1-{today}-002"
    assert other.number == f"MAN2-{today}-001"
    assert first.template == plant.template
    assert first.master_file_version.status == "effective"
    assert first.coi_reference == COI
    assert AuditEvent.objects.filter(
        event_type=BatchEvent.STARTED, target_id=str(first.pk)
    ).exists()


@pytest.mark.parametrize("status", [SiteStatus.PAUSED, SiteStatus.SUSPENDED, SiteStatus.QUALIFIED])
def test_a_batch_cannot_start_at_a_site_that_cannot_manufacture(plant, status):
    site = make_site(plant.qa, "BRS3", status)
    site_services.membership_add(
        actor=plant.qa, site=site, user=plant.operator, role=SiteRole.SITE_OPERATOR, reason="r"
    )
    error = _refused(
        lambda: services.batch_start(
            actor=plant.operator, site=site, product=plant.product, coi_reference=COI
        ),
        409,
        "site_not_active",
    )
    assert "BRS3" in error.message
    assert not Batch.objects.filter(site=site).exists()


def test_a_batch_cannot_start_at_an_active_site_not_in_the_master_file(plant):
    site = make_site(plant.qa, "BRS3", SiteStatus.ACTIVE)
    site_services.membership_add(
        actor=plant.qa, site=site, user=plant.operator, role=SiteRole.SITE_OPERATOR, reason="r"
    )
    _refused(
        lambda: services.batch_start(
            actor=plant.operator, site=site, product=plant.product, coi_reference=COI
        ),
        409,
        "site_not_listed",
    )


def test_a_suspended_site_stops_steps_at_once(plant):
    batch = start(plant)
    site_services.site_transition(
        actor=plant.qa,
        site=plant.reference,
        action=SiteAction.SUSPEND,
        reason="sterility failure",
        credentials=creds(plant.qa),
    )
    _refused(
        lambda: services.step_record(
            actor=plant.operator,
            batch=batch,
            position=1,
            values={"bath-temp": 37, "volume": 50},
            credentials=signing(plant.operator),
        ),
        409,
        "site_not_active",
    )
    assert not StepRecord.objects.exists()


@pytest.mark.parametrize("coi", ["", "a", "Jane Smith", "x" * 65, "PT\u00002026"])
def test_a_chain_of_identity_reference_must_be_pseudonymised(plant, coi):
    _refused(
        lambda: services.batch_start(
            actor=plant.operator, site=plant.reference, product=plant.product, coi_reference=coi
        ),
        400,
        "invalid_coi_reference",
    )


def test_only_people_recording_at_the_site_start_batches(plant):
    stranger = make_persona("operator", username="elsewhere")
    _refused(
        lambda: services.batch_start(
            actor=stranger, site=plant.reference, product=plant.product, coi_reference=COI
        ),
        403,
        "not_a_site_member",
    )
    _refused(
        lambda: services.batch_start(
            actor=plant.qp, site=plant.reference, product=plant.product, coi_reference=COI
        ),
        403,
        "permission_denied",
    )


#
# Steps (BR-15, ES-01, TR-02)
#


def test_steps_are_signed_in_order(plant):
    batch = start(plant)
    _refused(
        lambda: services.step_record(
            actor=plant.operator,
            batch=batch,
            position=2,
            values={"moi": 3},
            credentials=signing(plant.operator),
        ),
        409,
        "step_out_of_order",
    )
    record = services.step_record(
        actor=plant.operator,
        batch=batch,
        position=1,
        values={"bath-temp": "37.0", "volume": 50},
        credentials=signing(plant.operator),
    )
    assert record.values == {"bath-temp": "37.0", "volume": "50"}
    assert record.out_of_limit == []
    assert record.performed_signature is not None
    assert record.performed_signature.meaning == SignatureMeaning.PERFORMED
    assert signature_is_valid(record.performed_signature, record)
    _refused(
        lambda: services.step_record(
            actor=plant.operator,
            batch=batch,
            position=1,
            values={"bath-temp": 37, "volume": 50},
            credentials=signing(plant.operator),
        ),
        409,
        "step_out_of_order",
    )


def test_a_step_needing_verification_holds_the_next_until_another_person_verifies(plant):
    batch = do_steps(plant, start(plant), upto=1)
    record = services.step_record(
        actor=plant.operator,
        batch=batch,
        position=2,
        values={"moi": 4},
        credentials=signing(plant.operator),
    )
    _refused(
        lambda: services.step_record(
            actor=plant.lead,
            batch=batch,
            position=3,
            values={},
            credentials=signing(plant.lead),
        ),
        409,
        "step_out_of_order",
    )
    with pytest.raises(SignatureRefusedError) as same:
        services.step_verify(
            actor=plant.operator, record=record, credentials=signing(plant.operator)
        )
    assert same.value.code == "same_signer"
    assert AuditEvent.objects.filter(event_type="signature.refused").exists()
    verified = services.step_verify(
        actor=plant.operator2, record=record, credentials=signing(plant.operator2)
    )
    assert verified.verified_by == plant.operator2
    assert verified.verified_signature is not None
    assert verified.verified_signature.meaning == SignatureMeaning.VERIFIED
    _refused(
        lambda: services.step_verify(
            actor=plant.lead, record=record, credentials=signing(plant.lead)
        ),
        409,
        "already_verified",
    )


def test_a_step_needs_its_role_at_the_site(plant):
    batch = do_steps(plant, start(plant), upto=2)
    _refused(
        lambda: services.step_record(
            actor=plant.operator,
            batch=batch,
            position=3,
            values={},
            credentials=signing(plant.operator),
        ),
        403,
        "role_not_held_at_site",
    )


def test_an_out_of_limit_value_is_kept_flagged_and_signalled(plant):
    batch = start(plant)
    record = services.step_record(
        actor=plant.operator,
        batch=batch,
        position=1,
        values={"bath-temp": "39.5", "volume": 50},
        credentials=signing(plant.operator),
    )
    assert record.values["bath-temp"] == "39.5"
    assert record.out_of_limit == ["bath-temp"]
    signal = BatchSignal.objects.get(batch=batch)
    assert signal.kind == SignalKind.OUT_OF_LIMIT and signal.processed_at is None
    assert AuditEvent.objects.filter(event_type=BatchEvent.OUT_OF_LIMIT).exists()
    assert Notification.objects.filter(recipient=plant.lead, severity="warn").exists()


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({"bath-temp": 37}, "value_missing"),
        ({"bath-temp": 37, "volume": 50, "ph": 7}, "unknown_parameter"),
        ({"bath-temp": "warm", "volume": 50}, "invalid_value"),
        ({"bath-temp": True, "volume": 50}, "invalid_value"),
        ({"bath-temp": "Infinity", "volume": 50}, "invalid_value"),
        ({"bath-temp": "37.1234567", "volume": 50}, "invalid_value"),
    ],
)
def test_bad_step_values_are_refused_and_nothing_is_written(plant, values, code):
    batch = start(plant)
    _refused(
        lambda: services.step_record(
            actor=plant.operator,
            batch=batch,
            position=1,
            values=values,
            credentials=signing(plant.operator),
        ),
        400,
        code,
    )
    assert not StepRecord.objects.exists()
    assert not ElectronicSignature.objects.filter(meaning=SignatureMeaning.PERFORMED).exists()


def test_a_wrong_password_refuses_the_step(plant):
    batch = start(plant)
    with pytest.raises(SignatureRefusedError):
        services.step_record(
            actor=plant.operator,
            batch=batch,
            position=1,
            values={"bath-temp": 37, "volume": 50},
            credentials=SignatureCredentials(username=plant.operator.username, password="not-it"),
        )
    assert not StepRecord.objects.exists()


def test_the_last_step_completes_the_batch_and_starts_its_shelf_life(plant):
    batch = do_steps(plant, start(plant))
    assert batch.status == BatchStatus.COMPLETED
    assert batch.expires_at is not None and batch.completed_at is not None
    assert batch.expires_at - batch.completed_at == dt.timedelta(minutes=120)
    _refused(
        lambda: services.step_record(
            actor=plant.operator,
            batch=batch,
            position=1,
            values={},
            credentials=signing(plant.operator),
        ),
        409,
        "batch_not_in_progress",
    )


#
# Results (BR-08, BR-09)
#


def test_pass_or_fail_is_computed_and_a_result_is_never_overwritten(plant):
    batch = do_steps(plant, start(plant))
    passed = services.result_record(
        actor=plant.operator, batch=batch, specification_key="viability", value="70"
    )
    assert passed.passed is True and passed.late is False
    failed = services.result_record(
        actor=plant.operator, batch=batch, specification_key="endotoxin", value="5.01"
    )
    assert failed.passed is False
    assert BatchSignal.objects.get(batch=batch).kind == SignalKind.RESULT_FAILED
    _refused(
        lambda: services.result_record(
            actor=plant.operator, batch=batch, specification_key="viability", value="99"
        ),
        409,
        "result_exists",
    )
    assert TestResult.objects.get(pk=passed.pk).value == Decimal("70")


def test_a_result_for_an_unknown_cqa_is_a_400_and_writes_nothing(plant):
    batch = start(plant)
    _refused(
        lambda: services.result_record(
            actor=plant.operator, batch=batch, specification_key="potency", value=1
        ),
        400,
        "unknown_specification",
    )
    assert not TestResult.objects.exists()


def test_results_sent_together_each_get_a_history_row_and_an_audit_event_on_one_chain(plant):
    """AT-01: one call, one lock and one chain append, yet every result is its own record."""
    batch = do_steps(plant, start(plant))
    before = AuditEvent.objects.count()
    with CaptureQueriesContext(connection) as one:
        services.result_record(
            actor=plant.operator, batch=batch, specification_key="viability", value="91"
        )
    second = do_steps(plant, start(plant))
    with CaptureQueriesContext(connection) as two:
        results = services.results_record(
            actor=plant.operator,
            batch=second,
            entries=[
                services.ResultEntry("viability", "92.5", "Flow assay."),
                services.ResultEntry("endotoxin", 6),
            ],
            reason="LIMS upload",
        )
    assert [(r.specification.key, r.passed) for r in results] == [
        ("viability", True),
        ("endotoxin", False),
    ]
    assert results[0].comment == "Flow assay."
    # The second result costs its insert and history row (and a signal, as it fails), not
    # another lock or chain append.
    assert len(two) <= len(one) + 3
    events = list(
        AuditEvent.objects.filter(event_type=BatchEvent.RESULT_RECORDED, seq__gt=before)
        .order_by("seq")
        .values_list("extra_data", "reason")
    )
    assert [(extra["batch"], extra["specification"]) for extra, _ in events] == [
        (batch.number, "viability"),
        (second.number, "viability"),
        (second.number, "endotoxin"),
    ]
    assert events[-1][1] == "LIMS upload"
    assert audit_chain_verify().intact
    for result in results:
        history = TestResult.history.get(id=result.pk)
        assert history.history_change_reason == "LIMS upload"
        assert history.history_username == plant.operator.username
    assert BatchSignal.objects.get(batch=second).kind == SignalKind.RESULT_FAILED


@pytest.mark.parametrize(
    ("entries", "status", "code"),
    [
        ([("viability", "92"), ("potency", "1")], 400, "unknown_specification"),
        ([("viability", "92"), ("viability", "93")], 400, "duplicate_specification"),
        ([("viability", "92"), ("endotoxin", "NaN")], 400, "invalid_value"),
        ([("endotoxin", "0.5"), ("sterility", "0")], 409, "batch_decided"),
        ([], 400, "no_results"),
        ([(f"cqa-{i}", "1") for i in range(51)], 400, "too_many_results"),
    ],
)
def test_results_sent_together_are_all_recorded_or_none(plant, entries, status, code):
    if code == "batch_decided":  # certified: only the late sterility result may still come
        batch = ready_batch(plant)
        services.batch_certify(
            actor=plant.qp, batch=batch, credentials=signing(plant.qp), reason="clear"
        )
    else:
        batch = do_steps(plant, start(plant))
    events = AuditEvent.objects.count()
    results = TestResult.objects.count()
    _refused(
        lambda: services.results_record(
            actor=plant.operator,
            batch=batch,
            entries=[services.ResultEntry(key, value) for key, value in entries],
        ),
        status,
        code,
    )
    assert (AuditEvent.objects.count(), TestResult.objects.count()) == (events, results)


def test_a_result_already_recorded_refuses_the_whole_set(plant):
    batch = do_steps(plant, start(plant))
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="endotoxin", value="0.5"
    )
    _refused(
        lambda: services.results_record(
            actor=plant.operator,
            batch=batch,
            entries=[
                services.ResultEntry("viability", "92"),
                services.ResultEntry("endotoxin", "0.4"),
            ],
        ),
        409,
        "result_exists",
    )
    assert list(batch.results.values_list("specification__key", "value")) == [
        ("endotoxin", Decimal("0.5"))
    ]


#
# Certification (BR-02…BR-08, ES-*)
#


def test_the_qp_certifies_a_clear_batch_with_password_and_totp(plant):
    batch = ready_batch(plant)
    assert selectors.batch_gate_report(batch).findings == ()
    certification = services.batch_certify(
        actor=plant.qp,
        batch=batch,
        credentials=signing(plant.qp),
        reason="batch record and results reviewed",
        remote=True,
        location="At home, Harrogate (on call)",
    )
    batch.refresh_from_db()
    assert batch.status == BatchStatus.CERTIFIED and batch.decided_at is not None
    assert certification.decision == Decision.CERTIFIED
    assert certification.signature is not None
    assert certification.signature.meaning == SignatureMeaning.QP_CERTIFIED
    assert certification.signature.signer == plant.qp
    assert signature_is_valid(certification.signature, certification)
    assert certification.remote and certification.location.startswith("At home")
    assert len(certification.dossier_sha256) == 64
    assert certification.gate_findings == []
    event = AuditEvent.objects.get(event_type=BatchEvent.CERTIFIED, target_id=str(batch.pk))
    assert event.signature == certification.signature


def test_certification_without_the_totp_code_is_refused(plant):
    batch = ready_batch(plant)
    with pytest.raises(SignatureRefusedError) as refused:
        services.batch_certify(
            actor=plant.qp,
            batch=batch,
            credentials=SignatureCredentials(username=plant.qp.username, password=PASSWORD),
            reason="reviewed",
        )
    assert refused.value.code == "otp_required"
    batch.refresh_from_db()
    assert batch.status == BatchStatus.COMPLETED
    assert not Certification.objects.exists()


@pytest.mark.parametrize("who", ["qa", "operator", "site_lead", "inspector", "integrator"])
def test_only_a_qp_certifies(plant, who):
    batch = ready_batch(plant)
    user = make_persona(who, username=f"{who}-y")
    _refused(
        lambda: services.batch_certify(
            actor=user, batch=batch, credentials=signing(user), reason="r"
        ),
        403,
        "permission_denied",
    )


def _blocked(plant: Plant, batch: Batch, code: str) -> None:
    error = _refused(
        lambda: services.batch_certify(
            actor=plant.qp, batch=batch, credentials=signing(plant.qp), reason="reviewed"
        ),
        409,
        "gates_blocking",
    )
    assert code in {f["code"] for f in error.extra["findings"] if f["severity"] == "block"}
    batch.refresh_from_db()
    assert batch.status == BatchStatus.COMPLETED
    assert not Certification.objects.exists()


def test_a_missing_before_release_result_blocks(plant):
    batch = do_steps(plant, start(plant))
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="endotoxin", value=1
    )
    _blocked(plant, batch, "result_missing")


def test_a_failed_registered_specification_blocks(plant):
    batch = do_steps(plant, start(plant))
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="viability", value="61"
    )
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="endotoxin", value=1
    )
    _blocked(plant, batch, "specification_failed")


def test_an_expired_batch_is_blocked(plant):
    batch = ready_batch(plant)
    past = timezone.now() - dt.timedelta(minutes=1)
    Batch.objects.filter(pk=batch.pk).update(expires_at=past)  # the clock moved on
    _blocked(plant, batch, "batch_expired")


def test_a_site_suspended_after_manufacture_blocks_release(plant):
    batch = ready_batch(plant)
    site_services.site_transition(
        actor=plant.qa,
        site=plant.reference,
        action=SiteAction.SUSPEND,
        reason="inspection finding",
        credentials=creds(plant.qa),
    )
    _blocked(plant, batch, "site_not_active")


def test_a_site_dropped_from_the_effective_master_file_blocks_release(plant):
    batch = do_steps(plant, start(plant, plant.spoke))
    passing_results(plant, batch)
    link = plant.product.site_links.get(site=plant.spoke, ended_at__isnull=True)
    masterfile_services.product_site_end(actor=plant.qa, link=link, reason="site leaves")
    make_effective_version(plant.qa, plant.qp, plant.product)
    _blocked(plant, batch, "site_not_listed")


def test_a_step_changed_after_signing_blocks_release(plant):
    batch = ready_batch(plant)
    StepRecord.objects.filter(batch=batch, position=1).update(values={"bath-temp": "37.5"})
    _blocked(plant, batch, "step_signature_invalid")


def test_a_warning_needs_a_written_justification(plant):
    batch = do_steps(plant, start(plant))
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="viability", value=80
    )
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="endotoxin", value=7
    )
    error = _refused(
        lambda: services.batch_certify(
            actor=plant.qp, batch=batch, credentials=signing(plant.qp), reason="reviewed"
        ),
        400,
        "justification_required",
    )
    assert "Endotoxin" in error.message
    certification = services.batch_certify(
        actor=plant.qp,
        batch=batch,
        credentials=signing(plant.qp),
        reason="reviewed",
        justification="In-house limit only; registered release tests all met.",
    )
    assert [f["code"] for f in certification.gate_findings] == ["unregistered_specification_failed"]


def test_remote_certification_says_where(plant):
    batch = ready_batch(plant)
    _refused(
        lambda: services.batch_certify(
            actor=plant.qp, batch=batch, credentials=signing(plant.qp), reason="r", remote=True
        ),
        400,
        "location_required",
    )


def test_a_concession_needs_the_clinicians_request_and_is_shown_as_such(plant):
    batch = do_steps(plant, start(plant))
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="viability", value="65"
    )
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="endotoxin", value=1
    )
    _refused(
        lambda: services.batch_certify(
            actor=plant.qp,
            batch=batch,
            credentials=signing(plant.qp),
            reason="r",
            concession=True,
            justification="Only option for the patient.",
        ),
        400,
        "concession_incomplete",
    )
    certification = services.batch_certify(
        actor=plant.qp,
        batch=batch,
        credentials=signing(plant.qp),
        reason="out-of-specification release",
        concession=True,
        clinician_request="Dr A. Khan, 22 Nov 2026 09:10: no alternative therapy (ref CR-17).",
        justification="Viability 65 % against 70 %: dose adjusted by the clinician.",
    )
    batch.refresh_from_db()
    assert batch.status == BatchStatus.CERTIFIED_UNDER_CONCESSION
    assert certification.decision == Decision.CERTIFIED_UNDER_CONCESSION
    assert AuditEvent.objects.filter(event_type=BatchEvent.CERTIFIED_UNDER_CONCESSION).exists()


def test_a_concession_is_only_for_a_failed_registered_specification(plant):
    batch = ready_batch(plant)
    _refused(
        lambda: services.batch_certify(
            actor=plant.qp,
            batch=batch,
            credentials=signing(plant.qp),
            reason="r",
            concession=True,
            clinician_request="asked",
            justification="because",
        ),
        409,
        "concession_not_applicable",
    )


def test_a_concession_never_covers_a_missing_result(plant):
    batch = do_steps(plant, start(plant))
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="viability", value="65"
    )
    error = _refused(
        lambda: services.batch_certify(
            actor=plant.qp,
            batch=batch,
            credentials=signing(plant.qp),
            reason="r",
            concession=True,
            clinician_request="asked",
            justification="because",
        ),
        409,
        "gates_blocking",
    )
    assert "Endotoxin" in error.message


def test_the_qp_rejects_with_a_reason_and_the_decision_is_final(plant):
    batch = do_steps(plant, start(plant), upto=1)
    rejection = services.batch_reject(
        actor=plant.qp,
        batch=batch,
        credentials=signing(plant.qp),
        reason="bag leaked during thaw",
    )
    batch.refresh_from_db()
    assert batch.status == BatchStatus.REJECTED
    assert rejection.decision == Decision.REJECTED
    assert rejection.signature is not None
    assert rejection.signature.meaning == SignatureMeaning.REJECTED
    assert rejection.justification == "bag leaked during thaw"
    _refused(
        lambda: services.batch_certify(
            actor=plant.qp, batch=batch, credentials=signing(plant.qp), reason="r"
        ),
        409,
        "batch_already_decided",
    )
    _refused(
        lambda: services.batch_reject(
            actor=plant.qp, batch=batch, credentials=signing(plant.qp), reason="again"
        ),
        409,
        "batch_already_decided",
    )


def test_a_batch_in_progress_cannot_be_certified(plant):
    batch = do_steps(plant, start(plant), upto=1)
    _refused(
        lambda: services.batch_certify(
            actor=plant.qp, batch=batch, credentials=signing(plant.qp), reason="r"
        ),
        409,
        "batch_not_completed",
    )


def test_a_failing_late_result_escalates_to_the_qps_and_the_site_lead_at_once(plant):
    batch = ready_batch(plant)
    services.batch_certify(
        actor=plant.qp, batch=batch, credentials=signing(plant.qp), reason="reviewed"
    )
    _refused(
        lambda: services.result_record(
            actor=plant.operator, batch=batch, specification_key="viability", value=90
        ),
        409,
        "batch_decided",
    )
    late = services.result_record(
        actor=plant.operator, batch=batch, specification_key="sterility", value=1
    )
    assert late.late is True and late.passed is False
    assert BatchSignal.objects.filter(batch=batch, kind=SignalKind.LATE_RESULT_FAILED).exists()
    assert AuditEvent.objects.filter(
        event_type=BatchEvent.LATE_RESULT_FAILED, target_id=str(batch.pk)
    ).exists()
    urgent = Notification.objects.filter(severity="block", subject__startswith="URGENT")
    assert {n.recipient for n in urgent} == {plant.qp, plant.lead}
    # The certification signature still holds: late results are outside what was certified.
    certification = Certification.objects.get(batch=batch)
    assert certification.signature is not None
    assert signature_is_valid(certification.signature, certification)


#
# Supply (BR-13, BR-14)
#


def test_supply_checks_the_chain_of_identity_again(plant):
    batch = ready_batch(plant)
    _refused(
        lambda: services.supply_record(
            actor=plant.operator,
            batch=batch,
            coi_reference=COI,
            supplied_to="Ward 12",
            quantity=1,
            unit="bag",
        ),
        409,
        "batch_not_certified",
    )
    services.batch_certify(
        actor=plant.qp, batch=batch, credentials=signing(plant.qp), reason="reviewed"
    )
    _refused(
        lambda: services.supply_record(
            actor=plant.operator,
            batch=batch,
            coi_reference="PT-2026-0043",
            supplied_to="Ward 12",
            quantity=1,
            unit="bag",
        ),
        409,
        "coi_mismatch",
    )
    # The refusal wrote no supply, but the mismatch itself is on record.
    assert not batch.supplies.exists()
    assert AuditEvent.objects.filter(event_type=BatchEvent.COI_MISMATCH).count() == 1
    assert BatchSignal.objects.filter(kind=SignalKind.COI_MISMATCH).count() == 1
    supply = services.supply_record(
        actor=plant.operator,
        batch=batch,
        coi_reference=COI,
        supplied_to="Ward 12, Dr A. Khan",
        quantity="1",
        unit="bag",
    )
    confirmed = services.administration_confirm(actor=plant.lead, supply=supply, coi_reference=COI)
    assert confirmed.administered_confirmed_by == plant.lead
    _refused(
        lambda: services.administration_confirm(actor=plant.lead, supply=supply, coi_reference=COI),
        409,
        "already_confirmed",
    )


#
# Two QPs at the same moment (PostgreSQL, threads)
#


@pytest.mark.django_db(transaction=True)
def test_two_qps_certifying_at_the_same_moment_make_exactly_one_certification():
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    plant = make_plant()
    second_qp = make_persona("qp", username="qp2")
    batch = ready_batch(plant)
    credentials = {plant.qp.pk: signing(plant.qp), second_qp.pk: signing(second_qp)}
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def certify(qp: Any) -> None:
        try:
            barrier.wait(timeout=10)
            services.batch_certify(
                actor=qp, batch=batch, credentials=credentials[qp.pk], reason="reviewed"
            )
            outcomes.append("certified")
        except ApplicationError as error:
            outcomes.append(f"{error.status_code} {error.code}")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=certify, args=(qp,)) for qp in (plant.qp, second_qp)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["409 batch_already_decided", "certified"]
    assert Certification.objects.filter(batch=batch).count() == 1
    assert ElectronicSignature.objects.filter(meaning=SignatureMeaning.QP_CERTIFIED).count() == 1


#
# The QP queue (issue 5 §6)
#


def test_the_queue_is_soonest_expiry_first_and_its_summary_agrees_with_the_gates(
    plant, django_assert_num_queries
):
    clear = ready_batch(plant)
    missing = do_steps(plant, start(plant))
    services.result_record(
        actor=plant.operator, batch=missing, specification_key="viability", value=90
    )
    warned = do_steps(plant, start(plant))
    services.result_record(
        actor=plant.operator, batch=warned, specification_key="viability", value=90
    )
    services.result_record(
        actor=plant.operator, batch=warned, specification_key="endotoxin", value=9
    )
    failed = do_steps(plant, start(plant, plant.spoke))
    services.result_record(
        actor=plant.operator, batch=failed, specification_key="viability", value=50
    )
    services.result_record(
        actor=plant.operator, batch=failed, specification_key="endotoxin", value=9
    )
    expired = ready_batch(plant)
    Batch.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    start(plant)  # in progress: not in the queue
    site_services.site_transition(
        actor=plant.qa,
        site=plant.spoke,
        action=SiteAction.SUSPEND,
        reason="audit finding",
        credentials=creds(plant.qa),
    )

    queue = list(selectors.qp_queue(user=plant.qp, filters=selectors.QueueFilters()))
    assert queue[0] == expired
    assert {b.pk for b in queue} == {clear.pk, missing.pk, warned.pk, failed.pk, expired.pk}
    expiries = [b.expires_at for b in queue if b.expires_at is not None]
    assert len(expiries) == len(queue) and expiries == sorted(expiries)

    with django_assert_num_queries(1):
        rows = list(
            selectors.queue_gate_summaries(
                selectors.qp_queue(user=plant.qp, filters=selectors.QueueFilters())
            )
        )
    summary = {}
    for row in rows:
        counted = selectors.gate_summary(row)
        report = selectors.batch_gate_report(row)
        assert (counted.blocks, counted.warnings) == (len(report.blocks), len(report.warnings)), (
            row.number,
            report.snapshot(),
        )
        summary[row.pk] = (counted.blocks, counted.warnings)
    assert summary[clear.pk] == (0, 0)
    assert summary[missing.pk] == (1, 0)
    assert summary[warned.pk] == (0, 1)
    assert summary[failed.pk] == (2, 1)  # failed registered spec and the suspended site
    assert summary[expired.pk] == (1, 0)

    only_spoke = selectors.qp_queue(user=plant.qp, filters=selectors.QueueFilters(site="MAN2"))
    assert list(only_spoke) == [failed]


def test_site_staff_see_only_their_sites_batches(plant):
    outsider_site = make_site(plant.qa, "YRK4", SiteStatus.ACTIVE)
    stranger = make_persona("operator", username="york-operator")
    site_services.membership_add(
        actor=plant.qa, site=outsider_site, user=stranger, role=SiteRole.SITE_OPERATOR, reason="r"
    )
    batch = start(plant)
    assert selectors.batches_visible_to(plant.operator).filter(pk=batch.pk).exists()
    assert not selectors.batches_visible_to(stranger).filter(pk=batch.pk).exists()
    assert selectors.batches_visible_to(plant.qp).filter(pk=batch.pk).exists()


#
# Webhooks (issue 5 §9): written to the outbox in the transaction of the change
#


def test_batch_events_are_written_to_the_webhook_outbox_with_the_change(plant):
    from controlsite.webhooks.models import WebhookDelivery, WebhookEvent
    from controlsite.webhooks.services import webhook_subscription_create

    webhook_subscription_create(
        actor=plant.qa,
        name="Hospital MES",
        url="https://mes.example.org/hooks",
        event_types=[
            "batches.batch_completed",
            "batches.batch_certified",
            "batches.batch_rejected",
            "batches.late_result_failed",
        ],
        site_codes=["LDS1"],
        reason="integration",
    )
    batch = ready_batch(plant)
    do_steps(plant, start(plant, plant.spoke))  # another site: not sent to this subscriber
    completed = WebhookEvent.objects.get(event_type="batches.batch_completed")
    assert completed.payload["batch"] == batch.number and completed.site_code == "LDS1"
    assert completed.payload["status"] == "completed" and completed.payload["expires_at"]

    # A refused certification writes no event.
    with pytest.raises(SignatureRefusedError):
        services.batch_certify(
            actor=plant.qp,
            batch=batch,
            credentials=SignatureCredentials(username=plant.qp.username, password="wrong"),
            reason="reviewed",
        )
    assert not WebhookEvent.objects.filter(event_type="batches.batch_certified").exists()

    services.batch_certify(
        actor=plant.qp, batch=batch, credentials=signing(plant.qp), reason="reviewed"
    )
    certified = WebhookEvent.objects.get(event_type="batches.batch_certified")
    assert certified.payload["decision"] == "certified"
    assert certified.payload["qp"] == "Priya Patel"
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="sterility", value=3
    )
    late = WebhookEvent.objects.get(event_type="batches.late_result_failed")
    assert late.payload["specification"] == "sterility" and late.payload["value"] == "3"
    rejected = do_steps(plant, start(plant), upto=1)
    services.batch_reject(
        actor=plant.qp, batch=rejected, credentials=signing(plant.qp), reason="bag torn"
    )
    assert WebhookEvent.objects.get(event_type="batches.batch_rejected").payload["reason"] == (
        "bag torn"
    )
    assert WebhookDelivery.objects.count() == 4
