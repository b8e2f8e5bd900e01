"""The master-file app's audit event types, with the labels people read."""

from __future__ import annotations

from enum import StrEnum


class MasterFileEvent(StrEnum):
    PRODUCT_REGISTERED = "masterfile.product_registered"
    PRODUCT_UPDATED = "masterfile.product_updated"
    PRODUCT_SITE_ADDED = "masterfile.product_site_added"
    PRODUCT_SITE_ENDED = "masterfile.product_site_ended"
    DRAFT_STARTED = "masterfile.draft_started"
    SECTION_CHANGED = "masterfile.section_changed"
    SECTION_ADDED = "masterfile.section_added"
    SECTIONS_REORDERED = "masterfile.sections_reordered"
    SUBMITTED = "masterfile.submitted"
    RETURNED = "masterfile.returned"
    APPROVED = "masterfile.approved"
    MADE_EFFECTIVE = "masterfile.made_effective"
    SUPERSEDED = "masterfile.superseded"
    COMMENTED = "masterfile.commented"
    COMMENT_RESOLVED = "masterfile.comment_resolved"
    REVIEW_DUE = "masterfile.review_due"
    EXPORT_REQUESTED = "masterfile.export_requested"
    EXPORT_COMPLETED = "masterfile.export_completed"
    EXPORT_FAILED = "masterfile.export_failed"
    EXPORT_RETRIED = "masterfile.export_retried"
    EXPORT_DOWNLOADED = "masterfile.export_downloaded"
    ANNUAL_REPORT_REQUESTED = "masterfile.annual_report_requested"
    ANNUAL_REPORT_COMPLETED = "masterfile.annual_report_completed"
    ANNUAL_REPORT_FAILED = "masterfile.annual_report_failed"
    ANNUAL_REPORT_RETRIED = "masterfile.annual_report_retried"
    ANNUAL_REPORT_DOWNLOADED = "masterfile.annual_report_downloaded"
    ANNUAL_REPORT_SUBMITTED = "masterfile.annual_report_submitted"


LABELS: dict[str, str] = {
    MasterFileEvent.PRODUCT_REGISTERED: "Product registered",
    MasterFileEvent.PRODUCT_UPDATED: "Product details changed",
    MasterFileEvent.PRODUCT_SITE_ADDED: "Site added to a product",
    MasterFileEvent.PRODUCT_SITE_ENDED: "Site removed from a product",
    MasterFileEvent.DRAFT_STARTED: "Master file draft started",
    MasterFileEvent.SECTION_CHANGED: "Master file section changed",
    MasterFileEvent.SECTION_ADDED: "Master file section added",
    MasterFileEvent.SECTIONS_REORDERED: "Master file sections reordered",
    MasterFileEvent.SUBMITTED: "Master file submitted for review",
    MasterFileEvent.RETURNED: "Master file returned to draft",
    MasterFileEvent.APPROVED: "Master file approved",
    MasterFileEvent.MADE_EFFECTIVE: "Master file made effective",
    MasterFileEvent.SUPERSEDED: "Master file superseded",
    MasterFileEvent.COMMENTED: "Review comment added",
    MasterFileEvent.COMMENT_RESOLVED: "Review comment resolved",
    MasterFileEvent.REVIEW_DUE: "Master file review due",
    MasterFileEvent.EXPORT_REQUESTED: "Master file export requested",
    MasterFileEvent.EXPORT_COMPLETED: "Master file export completed",
    MasterFileEvent.EXPORT_FAILED: "Master file export failed",
    MasterFileEvent.EXPORT_RETRIED: "Master file export retried",
    MasterFileEvent.EXPORT_DOWNLOADED: "Master file export downloaded",
    MasterFileEvent.ANNUAL_REPORT_REQUESTED: "Annual report requested",
    MasterFileEvent.ANNUAL_REPORT_COMPLETED: "Annual report completed",
    MasterFileEvent.ANNUAL_REPORT_FAILED: "Annual report failed",
    MasterFileEvent.ANNUAL_REPORT_RETRIED: "Annual report retried",
    MasterFileEvent.ANNUAL_REPORT_DOWNLOADED: "Annual report downloaded",
    MasterFileEvent.ANNUAL_REPORT_SUBMITTED: "Annual report submission to the MHRA recorded",
}
