"""Filters of the master-file API. Each narrows a queryset the selectors already scoped to what
the user may see; none of them widens it. A malformed value is a 400, never silently ignored."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.core.validators import RegexValidator
from django.db.models import Q, QuerySet
from drf_spectacular.utils import extend_schema_field

from masterfile.choices import (
    Designation,
    ExportStatus,
    ProductSiteRole,
    SupplyStatus,
    VersionStatus,
)
from masterfile.models import (
    AnnualReport,
    MasterFile,
    MasterFileExport,
    MasterFileVersion,
    Product,
    ProductSite,
    ReviewComment,
    Section,
)

ID_PATTERN = r"^[0-9]{1,18}$"
ID_MAX = 10**18 - 1
YES_NO = [("true", "true"), ("false", "false")]


class IdField(forms.CharField):
    """A record id in a query string: digits only and within a 64-bit integer, so an overlong
    value is a 400 rather than an overflow in the database driver."""

    default_validators = [
        RegexValidator(ID_PATTERN, "A record id: 1 to 18 digits.", code="invalid_id")
    ]

    def to_python(self, value: Any) -> Any:
        value = super().to_python(value)
        return int(value) if value and value.isdigit() and len(value) <= 18 else value


@extend_schema_field({"type": "integer", "minimum": 0, "maximum": ID_MAX})
class IdFilter(django_filters.Filter):
    field_class = IdField


class ProductFilter(django_filters.FilterSet):
    designation = django_filters.ChoiceFilter(choices=Designation.choices)
    supply_status = django_filters.ChoiceFilter(choices=SupplyStatus.choices)
    site = django_filters.CharFilter(
        method="filter_site",
        max_length=8,
        help_text="A site's code: the products made or tested there (now).",
    )
    q = django_filters.CharFilter(
        method="filter_q", max_length=200, help_text="Part of the product's code or name."
    )

    class Meta:
        model = Product
        fields: list[str] = []

    def filter_site(self, queryset: QuerySet[Product], name: str, value: str) -> QuerySet[Product]:
        linked = ProductSite.objects.filter(site__code=value, ended_at__isnull=True).values(
            "product_id"
        )
        return queryset.filter(pk__in=linked)

    def filter_q(self, queryset: QuerySet[Product], name: str, value: str) -> QuerySet[Product]:
        return queryset.filter(Q(code__icontains=value) | Q(name__icontains=value))


class ProductSiteFilter(django_filters.FilterSet):
    product = IdFilter(field_name="product_id", help_text="The product's id.")
    site = django_filters.CharFilter(
        field_name="site__code", max_length=8, help_text="The site's code."
    )
    role = django_filters.ChoiceFilter(choices=ProductSiteRole.choices)
    # A choice rather than a BooleanFilter: a malformed value is a 400, never silently ignored.
    ended = django_filters.ChoiceFilter(
        choices=YES_NO,
        method="filter_ended",
        help_text="`false`: live links only (what a list shows by default); `true`: ended "
        "links only.",
    )

    class Meta:
        model = ProductSite
        fields: list[str] = []

    def filter_ended(
        self, queryset: QuerySet[ProductSite], name: str, value: Any
    ) -> QuerySet[ProductSite]:
        return queryset.filter(ended_at__isnull=value != "true")


class MasterFileFilter(django_filters.FilterSet):
    product = IdFilter(field_name="product_id", help_text="The product's id.")
    owner = django_filters.CharFilter(
        field_name="owner__username", lookup_expr="iexact", max_length=150, help_text="A username."
    )

    class Meta:
        model = MasterFile
        fields: list[str] = []


class VersionFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=VersionStatus.choices)
    product = IdFilter(field_name="master_file__product_id", help_text="The product's id.")
    master_file = IdFilter(field_name="master_file_id", help_text="The master file's id.")

    class Meta:
        model = MasterFileVersion
        fields: list[str] = []


class SectionFilter(django_filters.FilterSet):
    version = IdFilter(field_name="version_id", help_text="The master-file version's id.")
    key = django_filters.CharFilter(max_length=64, help_text="The section's key.")

    class Meta:
        model = Section
        fields: list[str] = []


class ReviewCommentFilter(django_filters.FilterSet):
    version = IdFilter(field_name="version_id", help_text="The master-file version's id.")
    resolved = django_filters.ChoiceFilter(
        choices=YES_NO, method="filter_resolved", help_text="`false`: open comments only."
    )

    class Meta:
        model = ReviewComment
        fields: list[str] = []

    def filter_resolved(
        self, queryset: QuerySet[ReviewComment], name: str, value: Any
    ) -> QuerySet[ReviewComment]:
        return queryset.filter(resolved_at__isnull=value != "true")


class ExportFilter(django_filters.FilterSet):
    version = IdFilter(field_name="version_id", help_text="The master-file version's id.")
    status = django_filters.ChoiceFilter(choices=ExportStatus.choices)

    class Meta:
        model = MasterFileExport
        fields: list[str] = []


@extend_schema_field({"type": "integer", "minimum": 2000, "maximum": 9999})
class YearFilter(django_filters.Filter):
    """A calendar year: digits within range, else a 400."""

    field_class = forms.IntegerField


class AnnualReportFilter(django_filters.FilterSet):
    product = IdFilter(field_name="product_id", help_text="The product's id.")
    year = YearFilter(field_name="year", min_value=2000, max_value=9999)
    status = django_filters.ChoiceFilter(choices=ExportStatus.choices)
    submitted = django_filters.ChoiceFilter(
        method="filter_submitted",
        choices=YES_NO,
        help_text="true: recorded as submitted to the MHRA; false: not (yet).",
    )

    class Meta:
        model = AnnualReport
        fields: list[str] = []

    def filter_submitted(
        self, queryset: QuerySet[AnnualReport], name: str, value: Any
    ) -> QuerySet[AnnualReport]:
        return queryset.filter(submitted_on__isnull=value != "true")
