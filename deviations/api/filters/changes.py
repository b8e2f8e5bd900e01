"""Filters of the change-control API. Each narrows a queryset the selectors already scoped to
what the user may see; none widens it. A malformed value is a 400, never silently ignored."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from batches.api.filters import YES_NO
from deviations.choices import ActionStatus, ChangeScope, ChangeStatus
from deviations.models import ChangeControl, ChangeTask


class ChangeControlFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=ChangeStatus.choices)
    scope = django_filters.ChoiceFilter(
        choices=ChangeScope.choices,
        method="filter_scope",
        help_text="Only changes touching this.",
    )
    site = django_filters.CharFilter(
        field_name="site__code", max_length=8, help_text="The site's code, e.g. LDS1."
    )
    product = django_filters.CharFilter(
        field_name="product__code", max_length=16, help_text="The product's code, e.g. CART-01."
    )
    # A choice rather than a BooleanFilter: a malformed value is a 400, never silently ignored.
    regulatory = django_filters.ChoiceFilter(
        choices=YES_NO,
        method="filter_regulatory",
        help_text="`true`: only regulatory changes (QA and a QP approve them); `false`: the "
        "others.",
    )

    class Meta:
        model = ChangeControl
        fields: list[str] = []

    def filter_scope(
        self, queryset: QuerySet[ChangeControl], name: str, value: Any
    ) -> QuerySet[ChangeControl]:
        if connection.vendor == "postgresql":
            return queryset.filter(scopes__contains=[value])
        # Elsewhere JSON containment is not supported: match the quoted value in the list.
        return queryset.filter(scopes__icontains=f'"{value}"')

    def filter_regulatory(
        self, queryset: QuerySet[ChangeControl], name: str, value: Any
    ) -> QuerySet[ChangeControl]:
        return queryset.filter(regulatory=value == "true")


class ChangeTaskFilter(django_filters.FilterSet):
    change = django_filters.CharFilter(
        field_name="change__number", max_length=20, help_text="The change's number."
    )
    status = django_filters.ChoiceFilter(choices=ActionStatus.choices)
    owner = django_filters.CharFilter(
        field_name="owner__username", max_length=150, help_text="The owner's username."
    )
    overdue = django_filters.ChoiceFilter(
        choices=YES_NO,
        method="filter_overdue",
        help_text="`true`: only open tasks past their due date; `false`: every other one.",
    )

    class Meta:
        model = ChangeTask
        fields: list[str] = []

    def filter_overdue(
        self, queryset: QuerySet[ChangeTask], name: str, value: Any
    ) -> QuerySet[ChangeTask]:
        overdue = {"status": ActionStatus.OPEN, "due_on__lt": timezone.localdate()}
        return queryset.filter(**overdue) if value == "true" else queryset.exclude(**overdue)
