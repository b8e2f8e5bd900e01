"""Filters of the sites API. Each narrows a queryset the selectors already scoped to what the
user may see; none of them widens it."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import Q, QuerySet

from sites.choices import EquipmentStatus, NotificationKind, SiteAuditStatus, SiteKind, SiteStatus
from sites.models import Equipment, RegulatoryNotification, Site, SiteAudit, SiteMembership

YES_NO = [("true", "true"), ("false", "false")]


class SiteFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=SiteStatus.choices)
    kind = django_filters.ChoiceFilter(choices=SiteKind.choices)
    host = django_filters.CharFilter(
        field_name="host_organisation",
        lookup_expr="icontains",
        max_length=200,
        help_text="Part of the host organisation's name.",
    )
    q = django_filters.CharFilter(
        method="filter_q", max_length=200, help_text="Part of the site's code or name."
    )

    class Meta:
        model = Site
        fields: list[str] = []

    def filter_q(self, queryset: QuerySet[Site], name: str, value: str) -> QuerySet[Site]:
        return queryset.filter(Q(code__icontains=value) | Q(name__icontains=value))


class SiteMembershipFilter(django_filters.FilterSet):
    site = django_filters.CharFilter(
        field_name="site__code", max_length=8, help_text="The site's code."
    )
    user = django_filters.CharFilter(
        field_name="user__username", lookup_expr="iexact", max_length=150, help_text="A username."
    )

    class Meta:
        model = SiteMembership
        fields: list[str] = []


class EquipmentFilter(django_filters.FilterSet):
    site = django_filters.CharFilter(
        field_name="site__code", max_length=8, help_text="The site's code."
    )
    qualification_status = django_filters.ChoiceFilter(choices=EquipmentStatus.choices)

    class Meta:
        model = Equipment
        fields: list[str] = []


class SiteAuditFilter(django_filters.FilterSet):
    site = django_filters.CharFilter(
        field_name="site__code", max_length=8, help_text="The site's code."
    )
    status = django_filters.ChoiceFilter(choices=SiteAuditStatus.choices)

    class Meta:
        model = SiteAudit
        fields: list[str] = []


class RegulatoryNotificationFilter(django_filters.FilterSet):
    site = django_filters.CharFilter(
        field_name="site__code", max_length=8, help_text="The site's code."
    )
    kind = django_filters.ChoiceFilter(choices=NotificationKind.choices)
    # A choice rather than a BooleanFilter: a malformed value is a 400, never silently ignored.
    pending = django_filters.ChoiceFilter(
        choices=YES_NO, method="filter_pending", help_text="`true`: not yet sent to the MHRA."
    )

    class Meta:
        model = RegulatoryNotification
        fields: list[str] = []

    def filter_pending(
        self, queryset: QuerySet[RegulatoryNotification], name: str, value: Any
    ) -> QuerySet[RegulatoryNotification]:
        return queryset.filter(sent_on__isnull=value == "true")
