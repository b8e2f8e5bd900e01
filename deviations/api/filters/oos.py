"""Filters of the OOS investigations API. Each narrows what the selectors already scoped to
what the user may see; a malformed value is a 400, never silently ignored."""

from __future__ import annotations

import django_filters

from deviations.choices import OosOutcome, OosPhase
from deviations.models import OosInvestigation


class OosFilter(django_filters.FilterSet):
    outcome = django_filters.ChoiceFilter(
        choices=OosOutcome.choices, help_text="`open` lists what still blocks certification."
    )
    phase = django_filters.ChoiceFilter(choices=OosPhase.choices)
    site = django_filters.CharFilter(
        field_name="result__batch__site__code", max_length=8, help_text="The site's code."
    )
    batch = django_filters.CharFilter(
        field_name="result__batch__number", max_length=32, help_text="The batch's number."
    )
    deviation = django_filters.CharFilter(
        field_name="deviation__number", max_length=20, help_text="The deviation's number."
    )

    class Meta:
        model = OosInvestigation
        fields: list[str] = []
