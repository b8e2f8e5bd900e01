"""Filters of the deviations API. Each narrows a queryset the selectors already scoped to what
the user may see; none of them widens it. A malformed value is a 400, never silently ignored."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from django.utils import timezone

from batches.api.filters import YES_NO
from deviations import selectors
from deviations.choices import (
    ActionStatus,
    CapaKind,
    CapaStatus,
    DeviationClass,
    DeviationStatus,
    ExtensionStatus,
)
from deviations.models import Capa, CapaAction, Deviation, DeviationExtension


class DeviationFilter(django_filters.FilterSet):
    site = django_filters.CharFilter(
        field_name="site__code", max_length=8, help_text="The site's code, e.g. LDS1."
    )
    status = django_filters.ChoiceFilter(choices=DeviationStatus.choices)
    deviation_class = django_filters.ChoiceFilter(
        choices=DeviationClass.choices,
        method="filter_class",
        help_text="The class in force: QA's once confirmed, the proposal until then.",
    )
    batch = django_filters.CharFilter(
        field_name="batch__number", max_length=32, help_text="The batch's number."
    )
    # A choice rather than a BooleanFilter: a malformed value is a 400, never silently ignored.
    overdue = django_filters.ChoiceFilter(
        choices=YES_NO,
        method="filter_overdue",
        help_text="`true`: only open deviations past their triage or closure date; `false`: "
        "every other one.",
    )

    class Meta:
        model = Deviation
        fields: list[str] = []

    def filter_class(
        self, queryset: QuerySet[Deviation], name: str, value: Any
    ) -> QuerySet[Deviation]:
        return queryset.filter(selectors.class_in_force_q(value))

    def filter_overdue(
        self, queryset: QuerySet[Deviation], name: str, value: Any
    ) -> QuerySet[Deviation]:
        overdue = selectors.overdue_q(timezone.localdate())
        return queryset.filter(overdue) if value == "true" else queryset.exclude(overdue)


class ExtensionFilter(django_filters.FilterSet):
    deviation = django_filters.CharFilter(
        field_name="deviation__number", max_length=20, help_text="The deviation's number."
    )
    status = django_filters.ChoiceFilter(choices=ExtensionStatus.choices)

    class Meta:
        model = DeviationExtension
        fields: list[str] = []


class CapaFilter(django_filters.FilterSet):
    site = django_filters.CharFilter(
        field_name="site__code", max_length=8, help_text="The site's code, e.g. LDS1."
    )
    status = django_filters.ChoiceFilter(choices=CapaStatus.choices)
    kind = django_filters.ChoiceFilter(choices=CapaKind.choices)
    deviation = django_filters.CharFilter(
        field_name="deviation__number", max_length=20, help_text="The deviation's number."
    )
    owner = django_filters.CharFilter(
        field_name="owner__username", max_length=150, help_text="The owner's username."
    )

    class Meta:
        model = Capa
        fields: list[str] = []


class CapaActionFilter(django_filters.FilterSet):
    capa = django_filters.CharFilter(
        field_name="capa__number", max_length=20, help_text="The CAPA's number."
    )
    status = django_filters.ChoiceFilter(choices=ActionStatus.choices)
    owner = django_filters.CharFilter(
        field_name="owner__username", max_length=150, help_text="The owner's username."
    )

    class Meta:
        model = CapaAction
        fields: list[str] = []
