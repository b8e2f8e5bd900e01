"""Filters of the training API. Each narrows a queryset the selectors already scoped to what the
user may see; none of them widens it. A malformed value is a 400, never silently ignored."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import Q, QuerySet
from django.utils import timezone

from controlsite.api.filters import AwareDateTimeFilter
from sites.api.filters import YES_NO
from training.choices import (
    AssignmentCause,
    AssignmentStatus,
    CurriculumRole,
    ItemKind,
    RecordMethod,
    VersionStatus,
)
from training.models import (
    NUMBER_MAX,
    Assignment,
    Curriculum,
    Procedure,
    ProcedureVersion,
    TrainingItem,
    TrainingRecord,
)

USERNAME_MAX = 150
SITE_CODE_MAX = 8


def _username(**kwargs: Any) -> django_filters.CharFilter:
    return django_filters.CharFilter(
        lookup_expr="iexact", max_length=USERNAME_MAX, help_text="A username.", **kwargs
    )


def _item_code() -> django_filters.CharFilter:
    return django_filters.CharFilter(
        field_name="item__code",
        lookup_expr="iexact",
        max_length=NUMBER_MAX,
        help_text="The training item's code, e.g. GXP-REF or SOP-MFG-001.",
    )


class ProcedureFilter(django_filters.FilterSet):
    number = django_filters.CharFilter(
        lookup_expr="iexact", max_length=NUMBER_MAX, help_text="The procedure's number."
    )
    q = django_filters.CharFilter(
        method="filter_q", max_length=200, help_text="Part of the procedure's number or title."
    )

    class Meta:
        model = Procedure
        fields: list[str] = []

    def filter_q(self, queryset: QuerySet[Procedure], name: str, value: str) -> QuerySet[Procedure]:
        return queryset.filter(Q(number__icontains=value) | Q(title__icontains=value))


class ProcedureVersionFilter(django_filters.FilterSet):
    procedure = django_filters.CharFilter(
        field_name="procedure__number",
        lookup_expr="iexact",
        max_length=NUMBER_MAX,
        help_text="The procedure's number.",
    )
    status = django_filters.ChoiceFilter(choices=VersionStatus.choices)

    class Meta:
        model = ProcedureVersion
        fields: list[str] = []


class TrainingItemFilter(django_filters.FilterSet):
    code = django_filters.CharFilter(
        lookup_expr="iexact", max_length=NUMBER_MAX, help_text="The item's code."
    )
    kind = django_filters.ChoiceFilter(choices=ItemKind.choices)
    # A choice rather than a BooleanFilter: a malformed value is a 400, never silently ignored.
    active = django_filters.ChoiceFilter(
        choices=YES_NO, method="filter_active", help_text="`true`: in use; `false`: retired."
    )

    class Meta:
        model = TrainingItem
        fields: list[str] = []

    def filter_active(
        self, queryset: QuerySet[TrainingItem], name: str, value: str
    ) -> QuerySet[TrainingItem]:
        return queryset.filter(active=value == "true")


class CurriculumFilter(django_filters.FilterSet):
    role = django_filters.ChoiceFilter(choices=CurriculumRole.choices)
    site = django_filters.CharFilter(
        field_name="site__code",
        max_length=SITE_CODE_MAX,
        help_text="The site's code; curricula for every site are found with `everywhere=true`.",
    )
    everywhere = django_filters.ChoiceFilter(
        choices=YES_NO,
        method="filter_everywhere",
        help_text="`true`: only curricula that apply at every site; `false`: only site ones.",
    )
    item = django_filters.CharFilter(
        method="filter_item",
        max_length=NUMBER_MAX,
        help_text="Only curricula that require this item now (its code).",
    )

    class Meta:
        model = Curriculum
        fields: list[str] = []

    def filter_everywhere(
        self, queryset: QuerySet[Curriculum], name: str, value: str
    ) -> QuerySet[Curriculum]:
        return queryset.filter(site__isnull=value == "true")

    def filter_item(
        self, queryset: QuerySet[Curriculum], name: str, value: str
    ) -> QuerySet[Curriculum]:
        return queryset.filter(
            requirements__item__code__iexact=value, requirements__removed_at__isnull=True
        ).distinct()


class AssignmentFilter(django_filters.FilterSet):
    user = _username(field_name="user__username")
    item = _item_code()
    site = django_filters.CharFilter(
        field_name="site__code", max_length=SITE_CODE_MAX, help_text="The site's code."
    )
    status = django_filters.ChoiceFilter(choices=AssignmentStatus.choices)
    cause = django_filters.ChoiceFilter(choices=AssignmentCause.choices)
    overdue = django_filters.ChoiceFilter(
        choices=YES_NO,
        method="filter_overdue",
        help_text="`true`: only open assignments past their due date; `false`: every other one.",
    )

    class Meta:
        model = Assignment
        fields: list[str] = []

    def filter_overdue(
        self, queryset: QuerySet[Assignment], name: str, value: str
    ) -> QuerySet[Assignment]:
        overdue = Q(status=AssignmentStatus.OPEN, due_on__lt=timezone.localdate())
        return queryset.filter(overdue) if value == "true" else queryset.exclude(overdue)


class TrainingRecordFilter(django_filters.FilterSet):
    user = _username(field_name="user__username")
    item = _item_code()
    trainer = _username(field_name="trainer__username")
    method = django_filters.ChoiceFilter(choices=RecordMethod.choices)
    completed_after = AwareDateTimeFilter(
        field_name="completed_at",
        lookup_expr="gte",
        help_text="Completed at or after this moment (ISO 8601 with its offset).",
    )
    completed_before = AwareDateTimeFilter(
        field_name="completed_at",
        lookup_expr="lt",
        help_text="Completed before this moment (ISO 8601 with its offset).",
    )

    class Meta:
        model = TrainingRecord
        fields: list[str] = []
