"""PDF/A exports of master files (issue 4 §7-8 and Tests; design §7; MF-06, DI-07, ES-01, ES-03).

Exports run through the real services and the real task: eager Celery in-process here, a real
worker on Redis in `test_a_real_worker_on_redis_makes_the_pdf` when CELERY_BROKER_URL is set.
Rendering refuses to run inside a database transaction, so the tests that make a PDF use
transactional databases (`@renders`), which put back the rows the data migrations seed.

The end-to-end export is saved as tests/artifacts/export-effective.pdf (gitignored) and its
pages rendered to PNG there with `pdftoppm -r 70`, for a person to look at: export-cover.png,
export-contents.png, export-signatures.png, export-annex.png, export-changes.png,
export-audit.png; the draft's cover is export-draft-cover.png.
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
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject

from controlsite.accounts.models import User
from controlsite.audit.models import AuditEvent
from controlsite.errors import ConflictError, PermissionRefusedError
from masterfile import exports, pdf, services
from masterfile.choices import ExportStatus, ProductSiteRole, VersionStatus
from masterfile.events import MasterFileEvent
from masterfile.models import MasterFileExport, MasterFileVersion
from masterfile.tasks import export_master_file
from sites import services as site_services
from sites.choices import SiteKind, SiteRole, SiteStatus
from tests.masterfile.helpers import approve, make_effective_version, make_product
from tests.sites.helpers import make_site

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
HAS_PDFTOPPM = shutil.which("pdftoppm") is not None
SCRIPT = "<script>alert(1)</script>"


#
# Building a master file worth exporting, through the real services
#


def renders(test: Callable[..., None]) -> Callable[..., None]:
    """For a test that makes a PDF: outside any transaction, as in production."""
    marked: Callable[..., None] = pytest.mark.django_db(transaction=True)(
        pytest.mark.usefixtures("migration_seeds")(test)
    )
    return marked


def _section_body(title: str, version: int, key: str, *, rich: bool) -> str:
    if not rich:  # one short paragraph: a small PDF, quick to make
        return f"Marker {key}-v{version}: {title}."
    return (
        f"This section sets out **{title.lower()}** for version {version}.\n\n"
        f"- Marker {key}-v{version}: every site follows the same procedure.\n"
        "- Records are kept in the Control Site QMS and reviewed by Control Site QA.\n\n"
        "| Step | Owner |\n|---|---|\n| Review | QA |\n| Approval | QP |\n"
    )


def _write_sections(
    qa: User,
    version: MasterFileVersion,
    *,
    skip: frozenset[str] = frozenset(),
    rich: bool = False,
) -> None:
    for section in version.sections.order_by("position"):
        if section.key in skip:
            continue
        services.section_update(
            actor=qa,
            section=section,
            body=_section_body(section.title, version.number, section.key, rich=rich),
            reason="write the section",
        )


@pytest.fixture
def network(persona: Callable[[str], User]) -> dict[str, Any]:
    """The Control Site, a reference site, a second spoke and a testing laboratory, and a
    product made at the first two and tested at the third."""
    qa, qp = persona("qa"), persona("qp")
    site_services.control_site_save(
        actor=qa,
        name="Northern Cell Therapy Control Site",
        address="1 Infirmary Street\nLeeds LS1 3EX",
        licence_number="MIA(POC) 12345/0001",
        scope_poc=True,
        scope_mm=False,
        regulator_contacts="",
        reason="licence granted",
    )
    reference = make_site(
        qa,
        "LDS1",
        SiteStatus.ACTIVE,
        host_organisation="Leeds Teaching Hospitals NHS Trust",
        address="St James's University Hospital, Beckett Street, Leeds LS9 7TF",
    )
    spoke = make_site(
        qa,
        "MAN2",
        SiteStatus.ACTIVE,
        host_organisation="Manchester University NHS Foundation Trust",
        address="Oxford Road, Manchester M13 9WL",
    )
    lab = make_site(
        qa,
        "LAB9",
        SiteStatus.ACTIVE,
        kind=SiteKind.TESTING_LAB,
        host_organisation="Northern Testing Ltd",
        address="Unit 4, Science Park, York YO10 5DG",
    )
    product = make_product(qa, reference, "CART-01", name="Autologous CAR-T cells (CART-01)")
    for site, role in ((spoke, ProductSiteRole.MANUFACTURING), (lab, ProductSiteRole.TESTING)):
        services.product_site_add(
            actor=qa, product=product, site=site, role=role, reason="in the network"
        )
    return {"qa": qa, "qp": qp, "product": product, "sites": [reference, spoke, lab]}


def _effective_v2(network: dict[str, Any]) -> MasterFileVersion:
    """Version 1 effective, then version 2 with changed sections, effective too."""
    qa, qp, product = network["qa"], network["qp"], network["product"]
    make_effective_version(qa, qp, product)
    draft = services.draft_start(actor=qa, master_file=product.master_file, reason="review")
    _write_sections(qa, draft, rich=True)
    services.change_summary_set(
        actor=qa,
        version=draft,
        summary="Annual review: every section rewritten for the **2026** network.",
        reason="summary",
    )
    services.version_submit(actor=qa, version=draft, reason="ready for review")
    approve(qa, qp, draft)
    services.version_make_effective(actor=qa, version=draft, reason="approved; in force")
    draft.refresh_from_db()
    assert draft.status == VersionStatus.EFFECTIVE
    return draft


def _draft(network: dict[str, Any], **bodies: str) -> MasterFileVersion:
    qa, product = network["qa"], network["product"]
    version: MasterFileVersion = product.master_file.versions.get(number=1)
    _write_sections(qa, version, skip=frozenset(bodies))
    for key, body in bodies.items():
        services.section_update(
            actor=qa, section=version.sections.get(key=key), body=body, reason="write"
        )
    return version


def _done(export: MasterFileExport) -> MasterFileExport:
    export.refresh_from_db()
    assert export.status == ExportStatus.DONE, export.error
    return export


#
# Reading the PDF back
#


def _pdf_bytes(export: MasterFileExport) -> bytes:
    with default_storage.open(export.file.name or "", "rb") as stored:
        content: bytes = stored.read()
    return content


def _outline_titles(reader: PdfReader) -> list[str]:
    titles: list[str] = []

    def walk(items: list[Any]) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item)
            else:
                titles.append(str(item.title))

    walk(reader.outline)
    return titles


def _outline_page(reader: PdfReader, title_part: str) -> int:
    def walk(items: list[Any]) -> int | None:
        for item in items:
            if isinstance(item, list):
                found = walk(item)
                if found is not None:
                    return found
            elif title_part in str(item.title):
                page: int | None = reader.get_destination_page_number(item)
                return page
        return None

    page = walk(reader.outline)
    assert page is not None, f"no bookmark with {title_part!r}"
    return page


def _page_texts(reader: PdfReader) -> list[str]:
    return [page.extract_text() or "" for page in reader.pages]


def _flat(text: str) -> str:
    return " ".join(text.split())


def _all_keys_and_names(reader: PdfReader) -> set[str]:
    """Every dictionary key and name value reachable from the trailer."""
    seen: set[int] = set()
    found: set[str] = set()
    stack: list[Any] = [reader.trailer]
    while stack:
        obj = stack.pop()
        if isinstance(obj, IndirectObject):
            if obj.idnum in seen:
                continue
            seen.add(obj.idnum)
            stack.append(obj.get_object())
        elif isinstance(obj, DictionaryObject):
            for key, value in obj.items():
                found.add(str(key))
                stack.append(value)
        elif isinstance(obj, ArrayObject):
            stack.extend(obj)
        elif isinstance(obj, str) and obj.startswith("/"):
            found.add(obj)
    return found


def _save(content: bytes, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.pdf"
    path.write_bytes(content)
    return path


def _to_png(source: Path, page: int, name: str) -> None:
    """Page `page` (1-based) of `source` as tests/artifacts/<name>.png, at 70 dpi."""
    if not HAS_PDFTOPPM:
        return
    subprocess.run(  # noqa: S603  (a fixed tool on a file this test wrote)
        [  # noqa: S607  (poppler-utils, installed by .ci/run)
            "pdftoppm",
            "-png",
            "-r",
            "70",
            "-f",
            str(page),
            "-l",
            str(page),
            "-singlefile",
            str(source),
            str(ARTIFACTS / name),
        ],
        check=True,
    )


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


#
# End to end
#


@renders
def test_an_export_is_a_pdfa_with_every_part_the_mhra_needs(network, media):
    qa = network["qa"]
    version = _effective_v2(network)
    started = time.perf_counter()
    export = exports.export_request(actor=qa, version=version)
    export = _done(export)
    elapsed = time.perf_counter() - started
    content = _pdf_bytes(export)
    reader = PdfReader(io.BytesIO(content))

    # The stored facts match the file.
    assert export.sha256 == hashlib.sha256(content).hexdigest()
    assert export.size_bytes == len(content)
    assert export.page_count == len(reader.pages)
    assert export.progress == 100 and export.attempts == 1
    assert export.watermarked is False
    assert (export.file.name or "").startswith("exports/masterfile/")

    # PDF/A-3b, with the document's metadata.
    xmp = reader.xmp_metadata
    assert xmp is not None
    xml = xmp.stream.get_data().decode()
    assert re.search(r'pdfaid:part(="|>)3', xml), xml
    assert re.search(r'pdfaid:conformance(="|>)B', xml), xml
    info = reader.metadata
    assert info is not None
    assert info.title == "CART-01 master file, version 2"
    assert "Northern Cell Therapy Control Site" in (info.author or "")
    assert "CART-01" in str(info.get("/Keywords"))

    texts = _page_texts(reader)
    whole = _flat(" ".join(texts))
    # The cover: product, version, status, effective date, Control Site and licence.
    cover = _flat(texts[0])
    for expected in (
        "Autologous CAR-T cells (CART-01)",
        "CART-01 · Version 2",
        "Effective",
        "Northern Cell Therapy Control Site",
        "MIA(POC) 12345/0001",
        f"{version.effective_date:%d %b %Y}".lstrip("0"),
    ):
        assert expected in cover, expected

    # Bookmarks and contents name every section; every section's text is there.
    outline = _outline_titles(reader)
    sections = list(version.sections.order_by("position"))
    for number, section in enumerate(sections, start=1):
        assert f"{number} {section.title}" in outline, section.title
        assert f"Marker {section.key}-v2" in whole, section.key
    for title in (
        "Contents",
        "Annex A Site annex",
        "Manufacturing sites (2)",
        "Testing sites (1)",
        "Annex B Signature manifest",
        "Annex C Changes from the previous version",
        "Annex D Audit trail of this version",
    ):
        assert title in outline, title
    assert outline[0] == "Autologous CAR-T cells (CART-01)"  # the cover
    # The contents page gives each section's real page number.
    contents = _flat(texts[1])
    assert contents.startswith(("CART-01", "Contents")) and "Contents" in contents
    for number, section in enumerate(sections, start=1):
        page = _outline_page(reader, f"{number} {section.title}") + 1
        assert re.search(rf"{number} {re.escape(section.title)} {page}\b", contents), section.title
    annex_page = _outline_page(reader, "Annex A Site annex") + 1
    assert re.search(rf"Annex A Site annex {annex_page}\b", contents)

    # The site annex, every signer, the change summary.
    for entry in version.annex_entries.all():
        assert entry.site_code in whole
    assert {e.site_code for e in version.annex_entries.all()} == {"LDS1", "MAN2", "LAB9"}
    for approval in version.approvals.select_related("signature"):
        assert approval.signature.printed_name in whole
    assert "Quinn Adams" in whole and "Priya Patel" in whole
    assert "Annual review: every section rewritten for the 2026 network." in whole
    assert "Version 2 against version 1" in whole

    # Every page has the header and footer; the count in the footer is the real one.
    pages = len(texts)
    assert f"Page 1 of {pages}" in texts[0]
    assert f"Page {pages} of {pages}" in texts[-1]
    for number, text in enumerate(texts, start=1):
        flat = _flat(text)
        assert f"Page {number} of {pages}" in flat
        assert "CART-01 — Autologous CAR-T cells (CART-01)" in flat
        assert "Master file version 2 · Effective" in flat
        assert "Exported by Quinn Adams at " in flat and "(UTC)" in flat
        assert pdf.WATERMARK_TEXT not in flat

    # The full audit trail, embedded.
    attachments = reader.attachments
    assert list(attachments) == ["audit-trail.json"]
    trail = json.loads(attachments["audit-trail.json"][0])
    assert trail["version"] == {"id": version.pk, "number": 2, "status": "effective"}
    version_events = {
        e["event_type"]
        for e in trail["events"]
        if e["record_type"] == "masterfile.masterfileversion" and e["record_id"] == str(version.pk)
    }
    assert {
        MasterFileEvent.DRAFT_STARTED,
        MasterFileEvent.SUBMITTED,
        MasterFileEvent.APPROVED,
        MasterFileEvent.MADE_EFFECTIVE,
    } <= version_events
    assert any(
        e["event_type"] == MasterFileEvent.EXPORT_REQUESTED and e["record_id"] == str(export.pk)
        for e in trail["events"]
    )
    history_types = {row["record_type"] for row in trail["history"]}
    assert {
        "masterfile.product",
        "masterfile.masterfile",
        "masterfile.masterfileversion",
        "masterfile.section",
        "masterfile.annexentry",
        "masterfile.versionapproval",
    } <= history_types
    assert {s["printed_name"] for s in trail["signatures"]} >= {"Quinn Adams", "Priya Patel"}
    assert all(s["signed_at"].endswith("Z") for s in trail["signatures"])
    assert all(row["at"].endswith("Z") for row in trail["history"])

    # The completion is audited with the file's hash.
    completed = AuditEvent.objects.get(
        event_type=MasterFileEvent.EXPORT_COMPLETED, target_id=str(export.pk)
    )
    assert completed.extra_data["sha256"] == export.sha256
    assert completed.extra_data["pages"] == pages

    # For a person to look at.
    source = _save(content, "export-effective")
    _to_png(source, 1, "export-cover")
    _to_png(source, 2, "export-contents")
    _to_png(source, _outline_page(reader, "Signature manifest") + 1, "export-signatures")
    _to_png(source, _outline_page(reader, "Site annex") + 1, "export-annex")
    _to_png(source, _outline_page(reader, "Changes from") + 1, "export-changes")
    _to_png(source, _outline_page(reader, "Audit trail") + 1, "export-audit")
    assert elapsed < 60


@renders
@pytest.mark.parametrize("status", [VersionStatus.DRAFT, VersionStatus.IN_REVIEW])
def test_a_draft_or_in_review_export_says_draft_on_every_page(network, media, status):
    """(The effective export in the test above carries no such mark.)"""
    qa = network["qa"]
    version = _draft(network)
    if status == VersionStatus.IN_REVIEW:
        services.version_submit(actor=qa, version=version, reason="ready for review")
    export = _done(exports.export_request(actor=qa, version=version))
    assert export.watermarked is True
    content = _pdf_bytes(export)
    reader = PdfReader(io.BytesIO(content))
    texts = _page_texts(reader)
    assert all(pdf.WATERMARK_TEXT in _flat(text) for text in texts)
    assert "Not approved: this version has no signatures." in _flat(texts[0])
    if status == VersionStatus.DRAFT:
        _to_png(_save(content, "export-draft"), 1, "export-draft-cover")


#
# Task behaviour (issue 4 §8)
#


@renders
def test_rerunning_a_finished_export_changes_nothing(network, media):
    qa = network["qa"]
    export = _done(exports.export_request(actor=qa, version=_draft(network)))
    before = (export.sha256, export.updated_at, export.file.name, export.attempts)
    events = AuditEvent.objects.count()
    files = sorted(p.name for p in media.rglob("*.pdf"))

    exports.export_run(export.pk)
    export_master_file.apply(args=(export.pk,))

    export.refresh_from_db()
    assert (export.sha256, export.updated_at, export.file.name, export.attempts) == before
    assert AuditEvent.objects.count() == events
    assert sorted(p.name for p in media.rglob("*.pdf")) == files


@renders
def test_a_failed_render_shows_its_error_and_a_retry_makes_the_pdf(network, media, monkeypatch):
    qa = network["qa"]
    draft = _draft(network)

    def broken_layout(html: str) -> Any:
        raise ValueError("the layout engine ran out of paper")

    monkeypatch.setattr(pdf, "layout", broken_layout)
    export = exports.export_request(actor=qa, version=draft)
    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED
    assert "ValueError" in export.error and "ran out of paper" in export.error
    assert not export.file and not export.sha256
    failed = AuditEvent.objects.get(
        event_type=MasterFileEvent.EXPORT_FAILED, target_id=str(export.pk)
    )
    assert "ran out of paper" in failed.extra_data["error"]

    monkeypatch.undo()
    exports.export_retry(actor=qa, export=export)
    export = _done(export)
    assert export.attempts == 2 and export.error == ""
    assert AuditEvent.objects.filter(
        event_type=MasterFileEvent.EXPORT_RETRIED, target_id=str(export.pk), actor=qa
    ).exists()
    assert export.sha256 == hashlib.sha256(_pdf_bytes(export)).hexdigest()


@renders
@pytest.mark.parametrize("where", ["layout", "storage"])
def test_a_transient_failure_leaves_the_export_queued_for_a_retry(
    network, media, monkeypatch, where
):
    qa = network["qa"]
    draft = _draft(network)
    sent: list[int] = []
    monkeypatch.setattr(exports, "enqueue_on_commit", lambda task, pk: sent.append(pk))
    export = exports.export_request(actor=qa, version=draft)
    assert sent == [export.pk]

    with monkeypatch.context() as patch:
        if where == "layout":
            error: BaseException = OperationalError("server closed the connection unexpectedly")
            patch.setattr(pdf, "layout", lambda html: (_ for _ in ()).throw(error))
            expected: type[BaseException] = OperationalError
        else:
            patch.setattr(
                default_storage, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("full"))
            )
            expected = OSError
        with pytest.raises(expected):
            exports.export_run(export.pk)
    export.refresh_from_db()
    assert export.status == ExportStatus.QUEUED
    assert export.attempts == 1 and export.error == ""
    assert not AuditEvent.objects.filter(event_type=MasterFileEvent.EXPORT_FAILED).exists()

    exports.export_run(export.pk)  # the retry
    export = _done(export)
    assert export.attempts == 2
    assert len(list(media.rglob("*.pdf"))) == 1


@pytest.mark.django_db
def test_the_renderer_refuses_to_run_inside_a_transaction(network, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    qa = network["qa"]
    draft = _draft(network)
    # This test's database wraps everything in a transaction, as a careless caller would.
    export = exports.export_request(actor=qa, version=draft)
    exports.export_run(export.pk)
    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED
    assert "outside any database transaction" in export.error
    assert not list(tmp_path.rglob("*.pdf"))


def test_the_export_task_acknowledges_late_and_retries_transient_failures(settings):
    assert export_master_file.name == "masterfile.export_master_file"
    assert export_master_file.acks_late is True
    assert export_master_file.reject_on_worker_lost is True
    assert OperationalError in export_master_file.autoretry_for
    assert OSError in export_master_file.autoretry_for
    assert settings.CELERY_WORKER_MAX_MEMORY_PER_CHILD > 0
    from controlsite.celery import app

    assert app.conf.worker_max_memory_per_child == settings.CELERY_WORKER_MAX_MEMORY_PER_CHILD


#
# Markdown cannot inject markup
#


@renders
def test_a_script_in_a_section_is_inert_text_in_the_pdf(network, media):
    qa = network["qa"]
    body = f"Before {SCRIPT} after.\n\n<img src=x onerror=alert(2)>\n\n[link](javascript:alert(3))"
    draft = _draft(network, designation=body)
    export = _done(exports.export_request(actor=qa, version=draft))
    content = _pdf_bytes(export)
    reader = PdfReader(io.BytesIO(content))
    whole = _flat(" ".join(_page_texts(reader)))
    assert f"Before {SCRIPT} after." in whole
    assert "<img src=x onerror=alert(2)>" in whole
    names = _all_keys_and_names(reader)
    assert "/JS" not in names and "/JavaScript" not in names
    assert "/AA" not in names and "/OpenAction" not in names
    assert b"javascript:" not in content.lower()


#
# Requests, retries and downloads: who, when, and what is recorded
#


@pytest.mark.django_db
def test_requesting_an_export_queues_it_on_commit_with_an_audit_event(
    network, django_capture_on_commit_callbacks
):
    qa = network["qa"]
    version = network["product"].master_file.versions.get(number=1)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        export = exports.export_request(actor=qa, version=version)
    assert len(callbacks) == 1
    assert export.status == ExportStatus.QUEUED and export.watermarked is True
    assert export.requested_by == qa and export.stage == "Queued"
    event = AuditEvent.objects.get(event_type=MasterFileEvent.EXPORT_REQUESTED)
    assert event.actor == qa and event.target_id == str(export.pk)
    assert event.extra_data["version"] == version.pk


@pytest.mark.django_db
def test_a_qp_may_export_too(network, django_capture_on_commit_callbacks):
    version = network["product"].master_file.versions.get(number=1)
    with django_capture_on_commit_callbacks(execute=False):
        export = exports.export_request(actor=network["qp"], version=version)
    assert export.requested_by == network["qp"]


@pytest.mark.django_db
def test_a_second_export_while_one_is_in_flight_is_refused(
    network, django_capture_on_commit_callbacks
):
    qa = network["qa"]
    version = network["product"].master_file.versions.get(number=1)
    with django_capture_on_commit_callbacks(execute=False):
        first = exports.export_request(actor=qa, version=version)
    with pytest.raises(ConflictError) as refused:
        exports.export_request(actor=network["qp"], version=version)
    assert refused.value.code == "export_in_flight" and refused.value.status_code == 409
    assert refused.value.extra == {"export": first.pk}
    assert MasterFileExport.objects.count() == 1


@pytest.mark.django_db
def test_an_export_whose_worker_died_long_ago_does_not_block_a_new_one(
    network, django_capture_on_commit_callbacks, settings
):
    import datetime as dt

    from django.utils import timezone

    qa = network["qa"]
    version = network["product"].master_file.versions.get(number=1)
    with django_capture_on_commit_callbacks(execute=False):
        stuck = exports.export_request(actor=qa, version=version)
    # A worker claimed it, then died; the message is gone. (The row has no history: a plain
    # update stands in for the worker's last tick, long ago.)
    silent_since = timezone.now() - dt.timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 600)
    MasterFileExport.objects.filter(pk=stuck.pk).update(
        status=ExportStatus.RUNNING, updated_at=silent_since
    )
    with django_capture_on_commit_callbacks(execute=False):
        fresh = exports.export_request(actor=qa, version=version)
    stuck.refresh_from_db()
    assert stuck.status == ExportStatus.FAILED and "abandoned" in stuck.error
    assert fresh.status == ExportStatus.QUEUED and fresh.pk != stuck.pk
    assert AuditEvent.objects.filter(
        event_type=MasterFileEvent.EXPORT_FAILED, target_id=str(stuck.pk)
    ).exists()


@pytest.mark.django_db
def test_a_running_export_that_is_alive_still_blocks_a_second_one(
    network, django_capture_on_commit_callbacks
):
    qa = network["qa"]
    version = network["product"].master_file.versions.get(number=1)
    with django_capture_on_commit_callbacks(execute=False):
        running = exports.export_request(actor=qa, version=version)
    MasterFileExport.objects.filter(pk=running.pk).update(status=ExportStatus.RUNNING)
    with pytest.raises(ConflictError) as refused:
        exports.export_request(actor=qa, version=version)
    assert refused.value.code == "export_in_flight"


@pytest.mark.django_db
def test_only_a_failed_export_can_be_retried(network, django_capture_on_commit_callbacks):
    qa = network["qa"]
    version = network["product"].master_file.versions.get(number=1)
    with django_capture_on_commit_callbacks(execute=False):
        export = exports.export_request(actor=qa, version=version)
    with pytest.raises(ConflictError) as refused:
        exports.export_retry(actor=qa, export=export)
    assert refused.value.code == "export_not_failed"
    assert not AuditEvent.objects.filter(event_type=MasterFileEvent.EXPORT_RETRIED).exists()


@pytest.mark.django_db
def test_an_export_of_a_version_the_user_may_not_see_is_not_found(
    network, persona, django_capture_on_commit_callbacks
):
    version = network["product"].master_file.versions.get(number=1)
    for who in ("operator", "site_lead", "outsider"):
        with pytest.raises(MasterFileVersion.DoesNotExist):
            exports.export_request(actor=persona(who), version=version)
    assert not MasterFileExport.objects.exists()
    with django_capture_on_commit_callbacks(execute=False):
        export = exports.export_request(actor=network["qa"], version=version)
    with pytest.raises(MasterFileExport.DoesNotExist):
        exports.export_download_record(actor=persona("outsider"), export=export)
    with pytest.raises(MasterFileExport.DoesNotExist):
        exports.export_retry(actor=persona("operator"), export=export)


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["operator", "site_lead", "inspector"])
def test_a_person_who_may_see_the_version_but_not_export_it_is_refused(network, persona, who):
    qa, reference = network["qa"], network["sites"][0]
    user = persona(who)
    if who != "inspector":
        role = SiteRole.SITE_OPERATOR if who == "operator" else SiteRole.SITE_LEAD
        site_services.membership_add(
            actor=qa, site=reference, user=user, role=role, reason="works here"
        )
    version = network["product"].master_file.versions.get(number=1)
    with pytest.raises(PermissionRefusedError) as refused:
        exports.export_request(actor=user, version=version)
    assert refused.value.status_code == 403
    assert not MasterFileExport.objects.exists()
    assert not AuditEvent.objects.filter(event_type=MasterFileEvent.EXPORT_REQUESTED).exists()


@pytest.mark.django_db
def test_a_download_before_the_file_is_ready_is_refused(
    network, django_capture_on_commit_callbacks
):
    qa = network["qa"]
    version = network["product"].master_file.versions.get(number=1)
    with django_capture_on_commit_callbacks(execute=False):
        export = exports.export_request(actor=qa, version=version)
    with pytest.raises(ConflictError) as refused:
        exports.export_download_record(actor=qa, export=export)
    assert refused.value.code == "export_not_ready"
    assert not AuditEvent.objects.filter(event_type=MasterFileEvent.EXPORT_DOWNLOADED).exists()


@renders
def test_each_download_is_an_audit_event_with_the_files_hash(network, media, persona):
    qa = network["qa"]
    export = _done(exports.export_request(actor=qa, version=_draft(network)))
    inspector = persona("inspector")
    exports.export_download_record(actor=inspector, export=export)
    exports.export_download_record(actor=qa, export=export)
    downloads = AuditEvent.objects.filter(
        event_type=MasterFileEvent.EXPORT_DOWNLOADED, target_id=str(export.pk)
    ).order_by("seq")
    assert [e.actor for e in downloads] == [inspector, qa]
    assert all(e.extra_data["sha256"] == export.sha256 for e in downloads)

    # A stored file that no longer matches its hash is not handed out.
    with default_storage.open(export.file.name or "", "wb") as stored:
        stored.write(b"%PDF-1.7 not the file that was exported")
    with pytest.raises(ConflictError) as refused:
        exports.export_download_record(actor=qa, export=export)
    assert refused.value.code == "export_file_mismatch"
    assert downloads.count() == 2


#
# A real worker (CI)
#


@pytest.mark.celery_worker
@renders
def test_a_real_worker_on_redis_makes_the_pdf(network, media, real_worker):
    qa = network["qa"]
    export = exports.export_request(actor=qa, version=_draft(network))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        export.refresh_from_db()
        if export.status in (ExportStatus.DONE, ExportStatus.FAILED):
            break
        time.sleep(0.2)
    assert export.status == ExportStatus.DONE, export.error or export.stage
    assert len(export.sha256) == 64
    assert export.sha256 == hashlib.sha256(_pdf_bytes(export)).hexdigest()
    assert AuditEvent.objects.filter(
        event_type=MasterFileEvent.EXPORT_COMPLETED, target_id=str(export.pk)
    ).exists()
