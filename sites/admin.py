"""Admin for support staff. Sites and their records change through the pages and services; the
onboarding checklist template is configuration, edited here with a reason for change."""

from __future__ import annotations

from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from controlsite.admin import ReadOnlyAdmin
from controlsite.audit.edges import ReasonForChangeAdminMixin
from sites.models import ChecklistItemTemplate, RegulatoryNotification, Site, SiteStatusChange


@admin.register(ChecklistItemTemplate)
class ChecklistItemTemplateAdmin(ReasonForChangeAdminMixin, SimpleHistoryAdmin):
    """The items every newly registered site's onboarding checklist starts with."""

    list_display = ["position", "key", "title", "active"]
    list_editable: list[str] = []
    ordering = ["position"]

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False  # retire an item with `active`; history keeps what it was


@admin.register(Site)
class SiteAdmin(ReadOnlyAdmin):
    list_display = ["code", "name", "kind", "status", "host_organisation"]
    list_filter = ["status", "kind"]
    search_fields = ["code", "name", "host_organisation"]


@admin.register(SiteStatusChange)
class SiteStatusChangeAdmin(ReadOnlyAdmin):
    list_display = ["site", "from_status", "to_status", "changed_at", "changed_by"]


@admin.register(RegulatoryNotification)
class RegulatoryNotificationAdmin(ReadOnlyAdmin):
    list_display = ["subject", "kind", "due_on", "sent_on", "reference"]
