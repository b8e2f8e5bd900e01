"""Filters of the batches API. Each narrows a queryset the selectors already scoped to what the
user may see; none of them widens it. A malformed value is a 400, never silently ignored."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet

from batches.choices import AWAITING_CERTIFICATION, BatchStatus, TemplateStatus
from batches.models import Batch, BatchTemplate, SupplyRecord

YES_NO = [("true", "true"), ("false", "false")]
BATCH_NUMBER_PATTERN = r"^[A-Z0-9]{2,8}-[0-9]{6}-[0-9]{3}$"


class BatchTemplateFilter(django_filters.FilterSet):
    product = django_filters.CharFilter(
        field_name="product__code", max_length=16, help_text="The product's code, e.g. CART-01."
    )
    status = django_filters.ChoiceFilter(choices=TemplateStatus.choices)

    class Meta:
        model = BatchTemplate
        fields: list[str] = []


class BatchFilter(django_filters.FilterSet):
    site = django_filters.CharFilter(
        field_name="site__code", max_length=8, help_text="The site's code, e.g. LDS1."
    )
    product = django_filters.CharFilter(
        field_name="product__code", max_length=16, help_text="The product's code, e.g. CART-01."
    )
    status = django_filters.ChoiceFilter(choices=BatchStatus.choices)
    # A choice rather than a BooleanFilter: a malformed value is a 400, never silently ignored.
    awaiting_certification = django_filters.ChoiceFilter(
        choices=YES_NO,
        method="filter_awaiting",
        help_text="`true`: only batches awaiting the QP's decision (the QP queue); `false`: "
        "every other batch.",
    )

    class Meta:
        model = Batch
        fields: list[str] = []

    def filter_awaiting(self, queryset: QuerySet[Batch], name: str, value: Any) -> QuerySet[Batch]:
        if value == "true":
            return queryset.filter(status=AWAITING_CERTIFICATION)
        return queryset.exclude(status=AWAITING_CERTIFICATION)


class SupplyFilter(django_filters.FilterSet):
    batch = django_filters.CharFilter(
        field_name="batch__number", max_length=32, help_text="The batch number."
    )

    class Meta:
        model = SupplyRecord
        fields: list[str] = []
