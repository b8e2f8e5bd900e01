"""Filters of the complaints API. Each narrows a queryset the selectors already scoped to what
the user may see; none widens it. A malformed value is a 400, never silently ignored."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from django.utils import timezone

from batches.api.filters import YES_NO
from deviations.choices import ComplaintKind, ComplaintStatus
from deviations.models import Complaint
from deviations.selectors.complaints import overdue_q


class ComplaintFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=ComplaintKind.choices)
    # Choices rather than BooleanFilters: a malformed value is a 400, never silently ignored.
    serious = django_filters.ChoiceFilter(
        choices=YES_NO,
        method="filter_serious",
        help_text="`true`: only those judged serious; `false`: only those not.",
    )
    status = django_filters.ChoiceFilter(choices=ComplaintStatus.choices)
    site = django_filters.CharFilter(
        field_name="site__code", max_length=8, help_text="The site's code, e.g. LDS1."
    )
    batch = django_filters.CharFilter(
        field_name="batch__number", max_length=32, help_text="The batch's number."
    )
    product = django_filters.CharFilter(
        field_name="product__code", max_length=16, help_text="The product's code."
    )
    overdue = django_filters.ChoiceFilter(
        choices=YES_NO,
        method="filter_overdue",
        help_text="`true`: only serious suspected adverse reactions past their 15-day report "
        "date and not yet reported (RP-05); `false`: every other one.",
    )

    class Meta:
        model = Complaint
        fields: list[str] = []

    def filter_serious(
        self, queryset: QuerySet[Complaint], name: str, value: Any
    ) -> QuerySet[Complaint]:
        return queryset.filter(serious=value == "true")

    def filter_overdue(
        self, queryset: QuerySet[Complaint], name: str, value: Any
    ) -> QuerySet[Complaint]:
        overdue = overdue_q(timezone.localdate())
        return queryset.filter(overdue) if value == "true" else queryset.exclude(overdue)
