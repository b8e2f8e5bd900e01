"""Filtering that says no: a malformed or empty filter is a 400, never silently ignored."""

from __future__ import annotations

import datetime as dt
from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request


class AwareDateTimeField(forms.DateTimeField):
    """ISO 8601 with an explicit offset (AT-08: no ambiguous local times)."""

    def to_python(self, value: Any) -> dt.datetime | None:
        if value in self.empty_values:
            return None
        try:
            parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise forms.ValidationError(
                "An ISO 8601 date-time with a UTC offset, e.g. 2026-01-31T09:00:00Z.",
                code="invalid",
            ) from exc
        if parsed.tzinfo is None:
            raise forms.ValidationError(
                "Give the UTC offset, e.g. 2026-01-31T09:00:00Z.", code="naive_datetime"
            )
        try:
            # Stored and compared in UTC; PostgreSQL refuses offsets beyond ±15:59.
            return parsed.astimezone(dt.UTC)
        except OverflowError as exc:
            raise forms.ValidationError("The date-time is out of range.", code="invalid") from exc


class AwareDateTimeFilter(django_filters.Filter):
    field_class = AwareDateTimeField


class StrictFilterBackend(DjangoFilterBackend):
    """Refuses filter parameters that are present but empty."""

    def filter_queryset(self, request: Request, queryset: QuerySet[Any], view: Any) -> Any:
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is not None:
            empty = sorted(
                name
                for name in filterset_class.base_filters
                if name in request.query_params and not request.query_params[name].strip()
            )
            if empty:
                raise ValidationError(
                    {name: ["A filter value may not be empty."] for name in empty}, code="invalid"
                )
        return super().filter_queryset(request, queryset, view)
