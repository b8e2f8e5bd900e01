"""The master-file PDF (design §7; issue 4 §7; MF-06, DI-07, ES-01).

Two halves, kept apart on purpose:

- **Rendering, for any PDF of the QMS** (`render_html`, `layout`, `write_pdfa`,
  `json_attachment`): WeasyPrint with no network and no file access, PDF/A-3b, and a guard that
  refuses to run inside a database transaction — layout of a long document takes seconds and
  must never hold a row lock or a SQLite write lock while it does. `templates/pdf/base.html`
  and its partials (running header and footer, cover, contents, signature manifest, audit
  appendix, draft watermark) are the shared layout that later PDFs extend.
- **The master-file document** (`master_file_collect`, `master_file_html`): every fact the PDF
  shows is read once, in one read-only step, into plain dataclasses; the HTML is then built from
  those alone, so nothing touches the database while WeasyPrint works.

Section bodies and the change summary go through `masterfile.markdown.render_markdown`, the same
safe renderer the pages use: raw HTML in a section (a ``<script>``) comes out as inert text.
Nothing a user typed is ever placed in CSS: the running header and footer take their text from
elements with ``string-set``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models
from django.db.models import Q
from django.template.loader import render_to_string

from controlsite.audit.events import event_label
from controlsite.audit.models import AuditEvent
from controlsite.audit.selectors import TrailEntry, record_trail
from controlsite.audit.services import record_label
from controlsite.reports import CollectedSection, ReportScope
from controlsite.reports import collect as collect_report_sections
from controlsite.reports import draw as draw_report_sections
from controlsite.signatures.models import ElectronicSignature
from controlsite.signatures.services import signatures_for
from masterfile.choices import VERSION_BADGE, ApprovalCapacity, ProductSiteRole, VersionStatus
from masterfile.markdown import render_markdown
from masterfile.models import (
    AnnexEntry,
    MasterFile,
    MasterFileExport,
    MasterFileVersion,
    Product,
    ProductSite,
    ReviewComment,
    Section,
    VersionApproval,
)
from masterfile.report import scope_site_ids
from masterfile.selectors import annex_diff, previous_version, version_annex, version_diff
from sites.selectors import control_site

if TYPE_CHECKING:
    from weasyprint import Attachment, Document

PDF_VARIANT = "pdf/a-3b"
WATERMARK_TEXT = "DRAFT — not for submission"
# Versions whose export is marked as a draft on every page: not (yet) approved content.
WATERMARKED_STATUSES = frozenset({VersionStatus.DRAFT, VersionStatus.IN_REVIEW})
AUDIT_TRAIL_FORMAT = "controlsite.masterfile.audit-trail/1"
# A cell of the audit appendix is cut here; the full text is in audit-trail.json.
APPENDIX_CELL_MAX = 90


class RenderInTransactionError(RuntimeError):
    """WeasyPrint was asked to work inside a database transaction (design §7)."""


#
# Rendering, for any PDF
#


def utc_text(moment: dt.datetime | None, *, seconds: bool = False) -> str:
    """`2026-05-01 14:03 UTC`: unambiguous for a reader in any country."""
    if moment is None:
        return "—"
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return f"{moment.astimezone(dt.UTC):{fmt}} UTC"


def utc_iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def date_text(day: dt.date | None) -> str:
    return f"{day:%d %b %Y}".lstrip("0") if day else "—"


def _refuse_in_transaction(step: str) -> None:
    # Layout and writing take seconds to minutes: inside a transaction they would hold row locks
    # (and on SQLite the database's single write lock) for all that time.
    if connection.in_atomic_block:
        raise RenderInTransactionError(
            f"PDF {step} must run outside any database transaction (design §7)."
        )


def _offline_fetcher() -> Any:
    """A URL fetcher that fetches nothing: every stylesheet and font a QMS PDF needs is inline
    or installed, so a link or image URL written into content can never reach the network or
    the file system."""
    from weasyprint.urls import URLFetcher

    return URLFetcher(allowed_protocols=frozenset(), allow_redirects=False)


def render_html(template: str, context: dict[str, Any]) -> str:
    """The document's HTML from a template under templates/pdf/ (autoescaped)."""
    return render_to_string(template, context)


def layout(html: str) -> Document:
    """Lay the HTML out into pages (WeasyPrint's `render`). Outside transactions only."""
    _refuse_in_transaction("layout")
    from weasyprint import HTML

    return HTML(string=html, url_fetcher=_offline_fetcher()).render()


def write_pdfa(document: Document, *, attachments: Sequence[Attachment] = ()) -> bytes:
    """The laid-out document as PDF/A-3b bytes, with embedded files. Outside transactions only."""
    _refuse_in_transaction("writing")
    pdf: bytes = document.write_pdf(pdf_variant=PDF_VARIANT, attachments=list(attachments))
    return pdf


def json_attachment(*, name: str, text: str, description: str) -> Attachment:
    """A JSON file embedded in the PDF/A-3 as associated data (`/AFRelationship /Data`)."""
    from weasyprint import Attachment

    return Attachment(
        string=text,
        name=name,
        description=description,
        relationship="Data",
        url_fetcher=_offline_fetcher(),
    )


def to_json(payload: Any) -> str:
    return json.dumps(payload, cls=DjangoJSONEncoder, ensure_ascii=False, indent=1)


#
# The master-file document: plain data, read once
#


@dataclasses.dataclass(frozen=True)
class Fact:
    label: str
    value: str


@dataclasses.dataclass(frozen=True)
class TocEntry:
    anchor: str
    number: str
    title: str
    level: int = 1
    css_class: str = ""


@dataclasses.dataclass(frozen=True)
class SectionPart:
    anchor: str
    number: str
    key: str
    title: str
    body: str  # Markdown, rendered when the HTML is built
    regulatory_reference: str


@dataclasses.dataclass(frozen=True)
class AnnexRow:
    code: str
    name: str
    kind: str
    location: str
    status: str
    host: str
    lead: str
    role: str
    is_reference: bool


@dataclasses.dataclass(frozen=True)
class SignatureRow:
    printed_name: str
    username: str
    capacity: str
    meaning: str
    signed_at: str  # UTC, to the second, without the zone (the column heading says UTC)
    reason: str
    components: str
    record_hash: str
    valid: bool
    withdrawn: str  # when the approval was withdrawn (UTC), or ""


@dataclasses.dataclass(frozen=True)
class SectionChange:
    title: str
    old_title: str
    change: str  # added, changed, removed, moved
    lines_added: int
    lines_removed: int

    @property
    def badge(self) -> str:
        return {"added": "ok", "removed": "block", "changed": "info"}.get(self.change, "muted")


@dataclasses.dataclass(frozen=True)
class ChangeSet:
    previous_number: int | None
    previous_status: str
    summary: str  # Markdown
    sections: tuple[SectionChange, ...]
    unchanged: int
    sites_added: tuple[str, ...]
    sites_removed: tuple[str, ...]
    sites_changed: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class TrailRow:
    when: str
    who: str
    record: str
    what: str
    change: str
    why: str


@dataclasses.dataclass(frozen=True)
class MasterFileDocument:
    """Everything the master-file PDF shows, read in one step."""

    export_id: int
    exported_at: dt.datetime
    exported_by: str
    exported_by_username: str
    product_code: str
    product_name: str
    version_number: int
    version_status: str
    version_status_label: str
    status_note: str
    watermarked: bool
    control_site_name: str
    control_site_licence: str
    control_site_address: str
    cover_facts: tuple[Fact, ...]
    sections: tuple[SectionPart, ...]
    annex: tuple[AnnexRow, ...]
    signatures: tuple[SignatureRow, ...]
    changes: ChangeSet
    trail: tuple[TrailRow, ...]
    audit_trail: dict[str, Any]
    # The comparability annex (issue 8 §7): report sections registered with `annex=True`,
    # collected for the twelve months before the export; outside the approved content.
    report_annexes: tuple[CollectedSection, ...] = ()
    report_annexes_as_at: dt.datetime | None = None

    @property
    def title(self) -> str:
        return f"{self.product_code} master file, version {self.version_number}"

    @property
    def exported_at_text(self) -> str:
        return utc_text(self.exported_at)


def _printed_names(usernames: Iterable[str]) -> dict[str, str]:
    """username → printed name, in one query, for the audit appendix."""
    from controlsite.accounts.models import User

    wanted = {u for u in usernames if u and u != "system"}
    if not wanted:
        return {}
    users = User.objects.filter(username__in=wanted).only("username", "first_name", "last_name")
    return {user.get_username(): user.printed_name for user in users}


def _who(username: str, names: dict[str, str]) -> str:
    name = names.get(username)
    return f"{name} ({username})" if name and name != username else (username or "system")


def _cut(text: str, limit: int = APPENDIX_CELL_MAX) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def trail_rows(records: Sequence[tuple[str, models.Model]]) -> tuple[TrailRow, ...]:
    """The audit appendix: the records' trails merged, oldest first, long values shortened."""
    entries: list[tuple[str, TrailEntry]] = []
    for label, record in records:
        entries.extend((label, entry) for entry in record_trail(record))
    entries.sort(key=lambda item: item[1].when)
    names = _printed_names(e.who for _, e in entries)
    rows = []
    for label, entry in entries:
        changes = "; ".join(
            f"{c.field}: {_cut(c.old, 40)} → {_cut(c.new, 40)}" for c in entry.changes
        )
        rows.append(
            TrailRow(
                when=f"{entry.when.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}",
                who=_who(entry.who, names),
                record=label,
                what=event_label(entry.what) if entry.source == "event" else f"Record {entry.what}",
                change=_cut(changes) if changes else "",
                why=_cut(entry.why),
            )
        )
    return tuple(rows)


_COMPONENT_NAMES = {"username": "user name", "password": "password", "totp": "authenticator code"}


def components_text(components: str) -> str:
    """`username+password+totp` → `user name, password and authenticator code` (ES-05)."""
    names = [_COMPONENT_NAMES.get(part, part) for part in components.split("+") if part]
    if len(names) < 2:
        return "".join(names) or "—"
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _signature_rows(
    version: MasterFileVersion, signed: Sequence[tuple[ElectronicSignature, bool]]
) -> tuple[SignatureRow, ...]:
    approvals = {a.signature_id: a for a in VersionApproval.objects.filter(version=version)}
    rows = []
    for signature, valid in signed:
        approval = approvals.get(signature.pk)
        capacity = str(ApprovalCapacity(approval.capacity).label) if approval else "—"
        rows.append(
            SignatureRow(
                printed_name=signature.printed_name,
                username=signature.signer_username,
                capacity=capacity,
                meaning=str(signature.get_meaning_display()),
                signed_at=f"{signature.signed_at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}",
                reason=signature.reason,
                components=components_text(signature.components),
                record_hash=signature.record_hash,
                valid=valid,
                withdrawn=utc_text(approval.withdrawn_at)
                if approval is not None and approval.withdrawn_at
                else "",
            )
        )
    return tuple(rows)


def _change_set(version: MasterFileVersion) -> ChangeSet:
    previous = previous_version(version)
    if previous is None:
        return ChangeSet(
            previous_number=None,
            previous_status="",
            summary=version.change_summary,
            sections=(),
            unchanged=0,
            sites_added=(),
            sites_removed=(),
            sites_changed=(),
        )
    diffs = version_diff(previous, version)
    annex = annex_diff(previous, version)
    changed = tuple(
        SectionChange(
            title=d.title,
            old_title=d.old_title if d.old_title != d.title else "",
            change=d.change,
            lines_added=sum(1 for line in d.lines if line.kind == "added"),
            lines_removed=sum(1 for line in d.lines if line.kind == "removed"),
        )
        for d in diffs
        if d.changed
    )
    return ChangeSet(
        previous_number=previous.number,
        previous_status=str(previous.get_status_display()),
        summary=version.change_summary,
        sections=changed,
        unchanged=sum(1 for d in diffs if not d.changed),
        sites_added=annex.added,
        sites_removed=annex.removed,
        sites_changed=annex.changed,
    )


#
# The embedded audit trail (DI-07): every history row and event of this master file
#

# History bookkeeping columns, reported under their own names rather than as field values.
_HISTORY_META = {
    "history_id",
    "history_date",
    "history_type",
    "history_user",
    "history_change_reason",
    "history_username",
    "request_id",
    "ip",
    "user_agent",
}
_HISTORY_VERB = {"+": "created", "~": "changed", "-": "deleted"}


def history_rows(model: type[models.Model], condition: Q) -> list[dict[str, Any]]:
    history_model = model.history.model  # type: ignore[attr-defined]
    fields = [f for f in history_model._meta.concrete_fields if f.name not in _HISTORY_META]
    label = model._meta.label_lower
    rows = []
    for row in history_model.objects.filter(condition).order_by("history_date", "history_id"):
        rows.append(
            {
                "record_type": label,
                "record_id": str(row.id),
                "history_id": row.history_id,
                "at": utc_iso(row.history_date),
                "change": _HISTORY_VERB.get(row.history_type, row.history_type),
                "by": row.history_username or "system",
                "reason": row.history_change_reason or "",
                "request_id": row.request_id,
                "ip": row.ip,
                "fields": {f.attname: _json_value(getattr(row, f.attname)) for f in fields},
            }
        )
    return rows


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return utc_iso(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        return value
    return str(value)


def event_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "occurred_at": utc_iso(event.occurred_at),
        "event_type": event.event_type,
        "label": event_label(event.event_type),
        "actor": event.actor_username or "system",
        "record_type": event.target_type,
        "record_id": event.target_id,
        "record": event.target_repr,
        "site_code": event.site_code,
        "details": event.extra_data,
        "reason": event.reason,
        "request_id": event.request_id,
        "ip": event.ip,
        "signature_id": event.signature_id,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def signature_dict(signature: ElectronicSignature, valid: bool | None) -> dict[str, Any]:
    return {
        "id": signature.pk,
        "record_type": signature.target_type,
        "record_id": signature.target_id,
        "record": signature.target_repr,
        "signer": signature.signer_username,
        "printed_name": signature.printed_name,
        "meaning": signature.meaning,
        "reason": signature.reason,
        "signed_at": utc_iso(signature.signed_at),
        "record_hash": signature.record_hash,
        "components": signature.components,
        "valid_at_export": valid,
    }


def _audit_trail(
    export: MasterFileExport,
    master_file: MasterFile,
    version: MasterFileVersion,
    signed: Sequence[tuple[ElectronicSignature, bool]],
    now: dt.datetime,
) -> dict[str, Any]:
    product = master_file.product
    version_ids = list(master_file.versions.values_list("pk", flat=True))
    ids: dict[type[models.Model], list[Any]] = {
        Product: [product.pk],
        ProductSite: list(ProductSite.objects.filter(product=product).values_list("pk", flat=True)),
        MasterFile: [master_file.pk],
        MasterFileVersion: version_ids,
        Section: list(
            Section.objects.filter(version_id__in=version_ids).values_list("pk", flat=True)
        ),
        AnnexEntry: list(
            AnnexEntry.objects.filter(version_id__in=version_ids).values_list("pk", flat=True)
        ),
        VersionApproval: list(
            VersionApproval.objects.filter(version_id__in=version_ids).values_list("pk", flat=True)
        ),
        ReviewComment: list(
            ReviewComment.objects.filter(version_id__in=version_ids).values_list("pk", flat=True)
        ),
        MasterFileExport: list(
            MasterFileExport.objects.filter(version_id__in=version_ids).values_list("pk", flat=True)
        ),
    }
    history: list[dict[str, Any]] = []
    for model, pks in ids.items():
        if pks and hasattr(model, "history"):
            history.extend(history_rows(model, Q(id__in=pks)))
    history.sort(key=lambda row: (row["at"], row["record_type"], row["history_id"]))

    targets = Q(pk__in=[])
    for model, pks in ids.items():
        if pks:
            targets |= Q(target_type=model._meta.label_lower, target_id__in=[str(pk) for pk in pks])
    events = [event_dict(e) for e in AuditEvent.objects.filter(targets).order_by("seq")]

    signatures = [signature_dict(sig, valid) for sig, valid in signed] + [
        signature_dict(sig, None)
        for sig in ElectronicSignature.objects.filter(
            target_type=record_label(version),
            target_id__in=[str(pk) for pk in version_ids if pk != version.pk],
        ).order_by("signed_at", "id")
    ]
    return {
        "format": AUDIT_TRAIL_FORMAT,
        "exported_at": utc_iso(now),
        "export_id": export.pk,
        "product": {"id": product.pk, "code": product.code, "name": product.name},
        "master_file": {"id": master_file.pk},
        "version": {"id": version.pk, "number": version.number, "status": version.status},
        "notes": (
            "Every history row (field values after each change) and every audit event of the "
            "product, its master file and each of its versions, sections, annex entries, "
            "approvals, review comments and exports, with the electronic signatures on its "
            "versions. Times are UTC (ISO 8601). Each event carries the SHA-256 chain hash of "
            "the QMS audit log; `manage.py verify_audit_chain` proves the whole chain."
        ),
        "history": history,
        "events": events,
        "signatures": signatures,
    }


def master_file_collect(export: MasterFileExport, *, now: dt.datetime) -> MasterFileDocument:
    """Read everything the PDF of `export` shows, into plain data. Reads only."""
    version = MasterFileVersion.objects.select_related(
        "master_file__product__reference_site", "master_file__owner"
    ).get(pk=export.version_id)
    master_file = version.master_file
    product = master_file.product
    requester = export.requested_by
    control = control_site()
    status = VersionStatus(version.status)
    section_rows = list(version.sections.order_by("position", "key"))
    signed = signatures_for(version)  # each with whether it is still valid (ES-03)
    sections = tuple(
        SectionPart(
            anchor=f"section-{index}",
            number=str(index),
            key=s.key,
            title=s.title,
            body=s.body,
            regulatory_reference=s.regulatory_reference,
        )
        for index, s in enumerate(section_rows, start=1)
    )
    annex = tuple(
        AnnexRow(
            code=a.site_code,
            name=a.site_name,
            kind=a.kind,
            location=a.location,
            status=a.site_status,
            host=a.host,
            lead=a.lead,
            role=str(ProductSiteRole(a.role).label),
            is_reference=a.is_reference,
        )
        for a in version_annex(version)
    )
    designation = (
        f"{product.get_designation_display()} — MHRA reference {product.designation_reference}, "
        f"designated {date_text(product.designation_date)}"
    )
    cover_facts = (
        Fact("Product", f"{product.code} — {product.name}"),
        Fact("Designation", designation),
        Fact("Dosage form", product.dosage_form),
        Fact("Shelf life", product.shelf_life_display),
        Fact("Supply status", str(product.get_supply_status_display())),
        Fact(
            "Reference site",
            f"{product.reference_site.code} — {product.reference_site.name}",
        ),
        Fact("Version", str(version.number)),
        Fact("Status", str(status.label)),
        Fact("Effective date", date_text(version.effective_date)),
        Fact("Next review", date_text(version.next_review_date)),
        Fact("Approved", utc_text(version.approved_at)),
        Fact("Master file owner", master_file.owner.printed_name),
    )
    trail_records: list[tuple[str, models.Model]] = [(f"Version {version.number}", version)]
    trail_records += [
        (f"§{part.number} {_cut(part.title, 34)}", section)
        for part, section in zip(sections, section_rows, strict=True)
    ]
    return MasterFileDocument(
        export_id=export.pk,
        exported_at=now,
        exported_by=requester.printed_name,
        exported_by_username=requester.get_username(),
        product_code=product.code,
        product_name=product.name,
        version_number=version.number,
        version_status=status.value,
        version_status_label=str(status.label),
        status_note=_status_note(version),
        # The mark follows the status of the content as read now, not as it was when the
        # export was requested: a version approved while the export waited is not a draft.
        watermarked=status in WATERMARKED_STATUSES,
        control_site_name=control.name if control else "Control Site not recorded",
        control_site_licence=control.licence_number if control else "—",
        control_site_address=control.address if control else "",
        cover_facts=cover_facts,
        sections=sections,
        annex=annex,
        signatures=_signature_rows(version, signed),
        changes=_change_set(version),
        trail=trail_rows(trail_records),
        audit_trail=_audit_trail(export, master_file, version, signed, now),
        report_annexes=_report_annexes(product, now),
        report_annexes_as_at=now,
    )


#
# The comparability annex: registered report sections, last twelve months (issue 8 §7)
#

# The annexes look back this far from the moment of the export.
REPORT_ANNEX_DAYS = 365


def _report_annexes(product: Product, now: dt.datetime) -> tuple[CollectedSection, ...]:
    """The report sections registered with `annex=True` (the comparability across sites), read
    for the twelve months up to `now` in the export's snapshot. They are not part of the
    approved master-file content: the annex says so, and when it was read."""
    end = now.astimezone(dt.UTC).date() + dt.timedelta(days=1)
    start = end - dt.timedelta(days=REPORT_ANNEX_DAYS + 1)
    start_at = dt.datetime.combine(start, dt.time.min, tzinfo=dt.UTC)
    scope = ReportScope(
        product_id=product.pk,
        start=start,
        end=end,
        site_ids=scope_site_ids(product, start_at, now),
        reference_site_id=product.reference_site_id,
        as_at=now,
        annex=True,
    )
    return tuple(collect_report_sections(scope, annex_only=True))


def _report_annex_parts(doc: MasterFileDocument) -> list[dict[str, Any]]:
    """The annexes' drawings made (outside the snapshot, no database) and their headings:
    Annex A2, A3… right after the site annex."""
    drawn = draw_report_sections(doc.report_annexes)
    return [
        {
            "number": f"Annex A{index}",
            "anchor": f"annex-report-{index}",
            "title": f"{section.title} (last 12 months)",
            "description": section.description,
            "template": section.template,
            "data": section.data,
            "name": section.name,
        }
        for index, section in enumerate(drawn, start=2)
    ]


#
# The master-file document: HTML
#


def _status_note(version: MasterFileVersion) -> str:
    status = VersionStatus(version.status)
    if status == VersionStatus.EFFECTIVE:
        return f"In force since {date_text(version.effective_date)}"
    if status == VersionStatus.SUPERSEDED:
        when = version.superseded_at.date() if version.superseded_at else None
        return f"No longer in force: superseded on {date_text(when)}"
    if status == VersionStatus.APPROVED:
        return "Approved; not yet in force"
    if status == VersionStatus.IN_REVIEW:
        return "In review: not approved, not for submission"
    return "Draft: not approved, not for submission"


def master_file_html(doc: MasterFileDocument) -> str:
    """The document's HTML, built from the collected data only (no database access)."""
    sections = [{"part": part, "html": render_markdown(part.body)} for part in doc.sections]
    annexes = [
        TocEntry("annex-sites", "Annex A", "Site annex", css_class="toc-annex toc-first-annex"),
        TocEntry("annex-signatures", "Annex B", "Signature manifest", css_class="toc-annex"),
        TocEntry(
            "annex-changes", "Annex C", "Changes from the previous version", css_class="toc-annex"
        ),
        TocEntry("annex-audit", "Annex D", "Audit trail of this version", css_class="toc-annex"),
    ]
    report_annexes = _report_annex_parts(doc)
    annexes[1:1] = [
        TocEntry(part["anchor"], part["number"], part["title"], css_class="toc-annex")
        for part in report_annexes
    ]
    toc = [TocEntry(p.anchor, p.number, p.title) for p in doc.sections] + annexes
    manufacturing = str(ProductSiteRole.MANUFACTURING.label)
    site_groups = [
        {
            "key": "manufacturing",
            "title": "Manufacturing sites",
            "rows": [row for row in doc.annex if row.role == manufacturing],
            "empty": "No manufacturing site is listed.",
        },
        {
            "key": "testing",
            "title": "Testing sites",
            "rows": [row for row in doc.annex if row.role != manufacturing],
            "empty": "No separate testing site: testing is done at the manufacturing sites.",
        },
    ]
    if not doc.annex:
        site_groups = []
    return render_html(
        "pdf/master_file.html",
        {
            "doc": doc,
            "title": doc.title,
            "cover_subtitle": f"{doc.product_code} · Version {doc.version_number}",
            "status_class": VERSION_BADGE.get(doc.version_status, "muted"),
            "status_note": doc.status_note,
            "header_left": f"{doc.product_code} — {doc.product_name}",
            "header_right": f"Master file version {doc.version_number} · "
            f"{doc.version_status_label}",
            "exported_line": f"Exported by {doc.exported_by} at "
            f"{doc.exported_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} (UTC)",
            "watermark": WATERMARK_TEXT if doc.watermarked else "",
            "meta_author": f"{doc.control_site_name} (exported by {doc.exported_by})",
            "meta_keywords": ", ".join(
                [
                    "POC/MM master file",
                    "DMMF",
                    doc.product_code,
                    f"version {doc.version_number}",
                    doc.version_status_label,
                ]
            ),
            "meta_description": f"POC/MM master file of {doc.product_code} "
            f"({doc.product_name}), version {doc.version_number}, "
            f"{doc.version_status_label.lower()}",
            "meta_created": doc.exported_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "toc": toc,
            "sections": sections,
            "site_groups": site_groups,
            "report_annexes": report_annexes,
            "report_annexes_as_at": utc_text(doc.report_annexes_as_at),
            "change_summary_html": render_markdown(doc.changes.summary)
            if doc.changes.summary.strip()
            else "",
        },
    )
