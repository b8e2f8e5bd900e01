"""Batch certificates: a PDF/A-3b for every decided batch, made by Celery with the master-file
export's conventions (issue 5 §7; design §7; BR-03, BR-04, BR-06, BR-08, ES-01, ES-03, DI-07).

The decision services queue the certificate in their transaction; `queue()` here fetches that
row (`certificates.certificate_queue` is idempotent). Rendering refuses to run inside a database
transaction, so the tests that make a PDF use transactional databases (`@renders`).

The certified, concession and rejected certificates are saved under tests/artifacts/ (gitignored)
as certificate-*.pdf, their first pages as certificate-*.png (`pdftoppm -r 60`), for a person to
look at.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.db import OperationalError
from pypdf import PdfReader

from batches import certificates, services
from batches import pdf as batch_pdf
from batches.choices import BatchStatus, Decision
from batches.events import BatchEvent, CertificateEvent
from batches.models import Batch, BatchCertificate, Certification, StepRecord
from batches.tasks import certificate_make
from controlsite.audit.models import AuditEvent
from controlsite.errors import ConflictError, PermissionRefusedError
from masterfile import pdf as mf_pdf
from masterfile.choices import ExportStatus
from sites import services as site_services
from tests.batches.helpers import (
    COI,
    Plant,
    do_steps,
    make_plant,
    ready_batch,
    start,
)
from tests.masterfile.helpers import signing

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
HAS_PDFTOPPM = shutil.which("pdftoppm") is not None
CONTROL_SITE = "Northern Cell Therapy Control Site"
LICENCE = "MIA(POC) 12345/0001"


def renders(test: Callable[..., None]) -> Callable[..., None]:
    """For a test that makes a PDF: outside any transaction, as in production."""
    marked: Callable[..., None] = pytest.mark.django_db(transaction=True)(
        pytest.mark.usefixtures("migration_seeds")(test)
    )
    return marked


@pytest.fixture
def plant(db: None) -> Plant:
    made = make_plant()
    site_services.control_site_save(
        actor=made.qa,
        name=CONTROL_SITE,
        address="1 Infirmary Street\nLeeds LS1 3EX",
        licence_number=LICENCE,
        scope_poc=True,
        scope_mm=False,
        regulator_contacts="",
        reason="licence granted",
    )
    return made


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def certify(plant: Plant, batch: Batch, **options: Any) -> Certification:
    return services.batch_certify(
        actor=plant.qp,
        batch=batch,
        credentials=signing(plant.qp),
        reason="batch record reviewed; certified",
        **options,
    )


def queue(certification: Certification) -> BatchCertificate:
    """What the decision will do (services._decide): queue the certificate."""
    certificate = certificates.certificate_queue(certification=certification)
    certificate.refresh_from_db()
    return certificate


def concession_batch(plant: Plant) -> Batch:
    """A completed batch whose registered viability failed: a concession candidate (BR-08)."""
    batch = do_steps(plant, start(plant))
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="viability", value="61"
    )
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="endotoxin", value=1
    )
    batch.refresh_from_db()
    return batch


def _bytes(certificate: BatchCertificate) -> bytes:
    with default_storage.open(certificate.file.name or "", "rb") as stored:
        content: bytes = stored.read()
    return content


def _texts(reader: PdfReader) -> list[str]:
    return [" ".join((page.extract_text() or "").split()) for page in reader.pages]


def _save(content: bytes, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.pdf"
    path.write_bytes(content)
    if HAS_PDFTOPPM:
        subprocess.run(  # noqa: S603  (a fixed tool on a file this test wrote)
            [  # noqa: S607  (poppler-utils, installed by .ci/run)
                "pdftoppm",
                "-png",
                "-r",
                "60",
                "-f",
                "1",
                "-l",
                "1",
                "-singlefile",
                str(path),
                str(ARTIFACTS / name),
            ],
            check=True,
        )
    return path


def _done(certificate: BatchCertificate) -> tuple[BatchCertificate, PdfReader, list[str], bytes]:
    certificate.refresh_from_db()
    assert certificate.status == ExportStatus.DONE, certificate.error
    content = _bytes(certificate)
    reader = PdfReader(io.BytesIO(content))
    return certificate, reader, _texts(reader), content


#
# End to end: one certificate per decision
#


@renders
def test_a_certified_batch_gets_a_pdfa_certificate_with_every_part(plant, media):
    batch = ready_batch(plant)
    certification = certify(plant, batch, remote=True, location="Home office, Harrogate")
    started = time.perf_counter()
    certificate, reader, texts, content = _done(queue(certification))
    elapsed = time.perf_counter() - started
    _save(content, "certificate-certified")

    # The stored facts match the file.
    assert certificate.sha256 == hashlib.sha256(content).hexdigest()
    assert certificate.size_bytes == len(content)
    assert certificate.page_count == len(reader.pages)
    assert certificate.attempts == 1 and certificate.error == ""
    assert (certificate.file.name or "").startswith("certificates/")

    # PDF/A-3b, with the document's metadata.
    xmp = reader.xmp_metadata
    assert xmp is not None
    xml = xmp.stream.get_data().decode()
    assert re.search(r'pdfaid:part(="|>)3', xml), xml
    assert re.search(r'pdfaid:conformance(="|>)B', xml), xml
    info = reader.metadata
    assert info is not None
    assert info.title == f"Batch certificate {batch.number}"
    assert CONTROL_SITE in (info.author or "")

    cover = texts[0]
    for expected in (
        CONTROL_SITE,
        LICENCE,
        batch.number,
        "CART-01",
        "LDS1",
        "Version 1 — CAR-T manufacture at the bedside",  # the template
        "Master file version Version 1",
        COI,
        "CERTIFIED",
        "Priya Patel",
        "remotely, from Home office, Harrogate",
        "Batch record unchanged since the decision",
        certification.dossier_sha256,
    ):
        assert expected in cover, expected
    assert "UNDER CONCESSION" not in cover and "REJECTED" not in cover
    for label in ("Started", "Completed", "Expiry", "Decided"):
        assert label in cover

    whole = " ".join(texts)
    # Every step with its values, limits and signatures.
    for expected in (
        "Thaw and wash",
        "Bath temperature",
        "37.0 °C",
        "36–38 °C",
        "45–55 mL",
        "Transduce",
        "Fill and label",
        "second-person verification required",
        "Verified by",
        "Performed by",
    ):
        assert expected in whole, expected
    assert "OUT OF LIMIT" not in whole
    # Results with pass/fail; the late sterility result still pending.
    assert "Viability" in whole and "92.5 %" in whole and "PASS" in whole
    assert "Sterility (days to growth)" in whole and "Pending" in whole
    # Gate findings: none stored, so it says so.
    assert "No findings: every release gate was clear at the decision." in whole
    # The signature manifest: template approval, every step, the QP — each still valid.
    manifest = whole[whole.index("Signature manifest") :]
    assert "QP certified" in manifest and "Performed" in manifest and "Verified" in manifest
    assert "Template v1" in manifest and "QP decision" in manifest
    assert "Not valid" not in manifest

    # A footer on every page: batch number, page N of M, generated at … UTC.
    pages = len(texts)
    for number, text in enumerate(texts, start=1):
        assert f"Page {number} of {pages}" in text
        assert f"Batch {batch.number} · generated at " in text and "UTC" in text
        assert f"Batch certificate — {batch.number}" in text

    # The audit trail of the batch, embedded as JSON.
    assert list(reader.attachments) == ["audit-trail.json"]
    trail = json.loads(reader.attachments["audit-trail.json"][0])
    assert trail["batch"]["number"] == batch.number
    assert trail["certification"]["dossier_sha256"] == certification.dossier_sha256
    events = {e["event_type"] for e in trail["events"]}
    assert {
        BatchEvent.STARTED,
        BatchEvent.STEP_PERFORMED,
        BatchEvent.STEP_VERIFIED,
        BatchEvent.COMPLETED,
        BatchEvent.RESULT_RECORDED,
        BatchEvent.CERTIFIED,
        CertificateEvent.QUEUED,
    } <= events
    assert {row["record_type"] for row in trail["history"]} >= {
        "batches.batch",
        "batches.steprecord",
        "batches.testresult",
        "batches.certification",
    }
    meanings = {s["meaning"] for s in trail["signatures"]}
    assert {"approved", "performed", "verified", "qp_certified"} <= meanings

    # The completion is audited with the file's hash.
    completed = AuditEvent.objects.get(
        event_type=CertificateEvent.COMPLETED, target_id=str(certificate.pk)
    )
    assert completed.extra_data["sha256"] == certificate.sha256
    assert completed.extra_data["pages"] == pages
    assert elapsed < 60


@renders
def test_a_concession_is_shown_distinctly_with_the_request_and_justification(plant, media):
    batch = concession_batch(plant)
    certification = certify(
        plant,
        batch,
        concession=True,
        clinician_request="Dr Ward (haematology) asks for infusion today: no alternative.",
        justification="Viability 61 % is above the 50 % clinical threshold; benefit outweighs "
        "risk.",
    )
    assert certification.decision == Decision.CERTIFIED_UNDER_CONCESSION
    _certificate, _reader, texts, content = _done(queue(certification))
    cover = texts[0]
    assert "CERTIFIED UNDER CONCESSION" in cover
    assert "Clinician's request" in cover and "Dr Ward (haematology)" in cover
    assert "QP's justification" in cover and "clinical threshold" in cover
    whole = " ".join(texts)
    assert "FAIL" in whole  # the failed registered viability, against its specification
    assert "specification_failed" in whole  # the stored block the concession passed
    _save(content, "certificate-concession")


@renders
def test_a_rejected_batch_gets_a_certificate_that_says_rejected(plant, media):
    batch = do_steps(plant, start(plant), upto=1)
    certification = services.batch_reject(
        actor=plant.qp,
        batch=batch,
        credentials=signing(plant.qp),
        reason="Apheresis bag damaged in transit; batch abandoned.",
    )
    _certificate, _reader, texts, content = _done(queue(certification))
    cover = texts[0]
    assert "REJECTED" in cover and "CERTIFIED" not in cover
    assert "Apheresis bag damaged in transit" in cover
    whole = " ".join(texts)
    assert "Not performed" in whole  # steps 2 and 3 were never done
    manifest = whole[whole.index("Signature manifest") :]
    assert "Rejected" in manifest
    _save(content, "certificate-rejected")


@renders
def test_data_changed_after_certification_is_shown_br06(plant, media, monkeypatch):
    batch = ready_batch(plant)
    sent: list[int] = []
    monkeypatch.setattr(certificates, "enqueue_on_commit", lambda task, pk: sent.append(pk))
    certification = certify(plant, batch)
    certificate = queue(certification)
    assert sent == [certificate.pk]  # queued by the decision itself
    # A change that went round the services (history bypassed on purpose: this is tampering).
    StepRecord.objects.filter(batch=batch, position=1).update(
        values={"bath-temp": "39.5", "volume": "50"}
    )
    certificates.certificate_run(certificate.pk)
    _certificate, _reader, texts, _content = _done(certificate)
    cover = texts[0]
    assert "Batch record CHANGED after the decision" in cover
    assert certification.dossier_sha256 in cover
    whole = " ".join(texts)
    assert "Not valid" in whole  # the step's signatures no longer match (ES-03)


#
# Task behaviour
#


@renders
def test_rerunning_a_finished_certificate_changes_nothing(plant, media):
    certificate = queue(certify(plant, ready_batch(plant)))
    certificate, *_ = _done(certificate)
    before = (certificate.sha256, certificate.updated_at, certificate.file.name, 1)
    events = AuditEvent.objects.count()
    certificates.certificate_run(certificate.pk)
    certificate_make.apply(args=(certificate.pk,))
    certificate.refresh_from_db()
    assert (certificate.sha256, certificate.updated_at, certificate.file.name, 1) == before
    assert certificate.attempts == 1
    assert AuditEvent.objects.count() == events
    assert len(list(media.rglob("*.pdf"))) == 1


@renders
def test_a_failed_render_is_recorded_and_a_retry_makes_the_certificate(
    plant, media, monkeypatch, persona
):
    batch = ready_batch(plant)

    def broken(html: str) -> Any:
        raise ValueError("the layout engine ran out of paper")

    monkeypatch.setattr(mf_pdf, "layout", broken)
    certificate = queue(certify(plant, batch))  # made on commit of the decision: it fails
    assert certificate.status == ExportStatus.FAILED
    assert "ValueError" in certificate.error and "ran out of paper" in certificate.error
    assert not certificate.file and not certificate.sha256
    failed = AuditEvent.objects.get(
        event_type=CertificateEvent.FAILED, target_id=str(certificate.pk)
    )
    assert "ran out of paper" in failed.extra_data["error"]
    monkeypatch.undo()

    # Site staff may see the batch but not retry (403); an outsider does not see it (404).
    with pytest.raises(PermissionRefusedError):
        certificates.certificate_retry(actor=plant.operator, certificate=certificate)
    with pytest.raises(BatchCertificate.DoesNotExist):
        certificates.certificate_retry(actor=persona("outsider"), certificate=certificate)

    certificates.certificate_retry(actor=plant.qa, certificate=certificate)
    certificate, *_ = _done(certificate)
    assert certificate.attempts == 2 and certificate.error == ""
    assert AuditEvent.objects.filter(
        event_type=CertificateEvent.RETRIED, target_id=str(certificate.pk), actor=plant.qa
    ).exists()
    with pytest.raises(ConflictError) as refused:
        certificates.certificate_retry(actor=plant.qa, certificate=certificate)
    assert refused.value.code == "certificate_not_failed"


@renders
@pytest.mark.parametrize("where", ["layout", "storage"])
def test_a_transient_failure_leaves_the_certificate_queued_for_a_retry(
    plant, media, monkeypatch, where
):
    batch = ready_batch(plant)
    sent: list[int] = []
    monkeypatch.setattr(certificates, "enqueue_on_commit", lambda task, pk: sent.append(pk))
    certificate = queue(certify(plant, batch))
    assert sent == [certificate.pk] and certificate.status == ExportStatus.QUEUED
    with monkeypatch.context() as patch:
        if where == "layout":
            error: BaseException = OperationalError("server closed the connection unexpectedly")
            patch.setattr(mf_pdf, "layout", lambda html: (_ for _ in ()).throw(error))
            expected: type[BaseException] = OperationalError
        else:
            patch.setattr(
                default_storage, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("full"))
            )
            expected = OSError
        with pytest.raises(expected):
            certificates.certificate_run(certificate.pk)
    certificate.refresh_from_db()
    assert certificate.status == ExportStatus.QUEUED and certificate.attempts == 1
    assert not AuditEvent.objects.filter(event_type=CertificateEvent.FAILED).exists()
    certificates.certificate_run(certificate.pk)  # the retry
    certificate, *_ = _done(certificate)
    assert certificate.attempts == 2
    assert len(list(media.rglob("*.pdf"))) == 1


@pytest.mark.django_db
def test_the_renderer_refuses_to_run_inside_a_transaction(plant, media, monkeypatch):
    certification = certify(plant, ready_batch(plant))
    monkeypatch.setattr(certificates, "enqueue_on_commit", lambda task, pk: None)
    certificate = queue(certification)
    certificates.certificate_run(certificate.pk)  # this test's database is one transaction
    certificate.refresh_from_db()
    assert certificate.status == ExportStatus.FAILED
    assert "outside any database transaction" in certificate.error
    assert not list(media.rglob("*.pdf"))


def test_the_certificate_task_acknowledges_late_and_retries_transient_failures():
    assert certificate_make.name == "batches.certificate_make"
    assert certificate_make.acks_late is True
    assert certificate_make.reject_on_worker_lost is True
    assert OperationalError in certificate_make.autoretry_for
    assert OSError in certificate_make.autoretry_for


#
# Queueing and downloads
#


@pytest.mark.django_db
def test_queueing_sends_the_task_on_commit_once_per_decision(plant, monkeypatch):
    batch = ready_batch(plant)
    sent: list[int] = []
    monkeypatch.setattr(certificates, "enqueue_on_commit", lambda task, pk: sent.append(pk))
    certification = certify(plant, batch)  # the decision queues its certificate
    first = certificates.certificate_queue(certification=certification)
    again = certificates.certificate_queue(certification=certification)
    assert sent == [first.pk] and first.pk == again.pk
    assert first.status == ExportStatus.QUEUED
    event = AuditEvent.objects.get(event_type=CertificateEvent.QUEUED)
    assert event.target_id == str(first.pk) and event.site_code == "LDS1"
    assert event.extra_data["decision"] == Decision.CERTIFIED


@pytest.mark.django_db
def test_a_download_before_the_file_is_ready_is_refused(plant, django_capture_on_commit_callbacks):
    certification = certify(plant, ready_batch(plant))
    with django_capture_on_commit_callbacks(execute=False):
        certificate = certificates.certificate_queue(certification=certification)
    with pytest.raises(ConflictError) as refused:
        certificates.certificate_download_record(actor=plant.qp, certificate=certificate)
    assert refused.value.code == "certificate_not_ready"
    assert not AuditEvent.objects.filter(event_type=CertificateEvent.DOWNLOADED).exists()


@renders
def test_each_download_is_an_audit_event_and_a_tampered_file_is_refused(plant, media, persona):
    batch = ready_batch(plant)
    certificate, *_ = _done(queue(certify(plant, batch)))
    services.supply_record(
        actor=plant.operator,
        batch=batch,
        coi_reference=COI,
        supplied_to="Ward 12, bed 4",
        quantity=1,
        unit="bag",
    )
    inspector = persona("inspector")
    certificates.certificate_download_record(actor=inspector, certificate=certificate)
    certificates.certificate_download_record(actor=plant.lead, certificate=certificate)
    downloads = AuditEvent.objects.filter(
        event_type=CertificateEvent.DOWNLOADED, target_id=str(certificate.pk)
    ).order_by("seq")
    assert [e.actor for e in downloads] == [inspector, plant.lead]
    assert all(e.extra_data["sha256"] == certificate.sha256 for e in downloads)
    with pytest.raises(BatchCertificate.DoesNotExist):
        certificates.certificate_download_record(actor=persona("outsider"), certificate=certificate)

    with default_storage.open(certificate.file.name or "", "wb") as stored:
        stored.write(b"%PDF-1.7 not the certificate that was made")
    with pytest.raises(ConflictError) as refused:
        certificates.certificate_download_record(actor=plant.qa, certificate=certificate)
    assert refused.value.code == "certificate_file_mismatch"
    assert downloads.count() == 2


@pytest.mark.django_db
def test_the_document_reads_a_late_failure_and_supply(plant, media, monkeypatch):
    """The collected data (no PDF): a failing late result and the supply are on the record."""
    batch = ready_batch(plant)
    certification = certify(plant, batch)
    monkeypatch.setattr(certificates, "enqueue_on_commit", lambda task, pk: None)
    certificate = queue(certification)
    services.result_record(
        actor=plant.operator, batch=batch, specification_key="sterility", value=3
    )
    from django.utils import timezone

    doc = batch_pdf.certificate_collect(certificate, now=timezone.now())
    sterility = next(r for r in doc.results if r.key == "sterility")
    assert sterility.outcome == "fail" and sterility.late
    assert doc.unchanged  # a late result is not part of what was certified (BR-09)
    assert doc.decision_words == "CERTIFIED"
    batch.refresh_from_db()
    assert batch.status == BatchStatus.CERTIFIED


#
# A real worker (CI)
#


@pytest.mark.celery_worker
@renders
def test_a_real_worker_on_redis_makes_the_certificate(plant, media, real_worker):
    certificate = certificates.certificate_queue(certification=certify(plant, ready_batch(plant)))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        certificate.refresh_from_db()
        if certificate.status in (ExportStatus.DONE, ExportStatus.FAILED):
            break
        time.sleep(0.2)
    assert certificate.status == ExportStatus.DONE, certificate.error
    assert certificate.sha256 == hashlib.sha256(_bytes(certificate)).hexdigest()
    assert AuditEvent.objects.filter(
        event_type=CertificateEvent.COMPLETED, target_id=str(certificate.pk)
    ).exists()
