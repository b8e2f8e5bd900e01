"""The OOS investigation pages' forms (DV-10). They only shape what was typed: who may, which
phase, what an invalidation needs — every rule is `deviations.services.oos`'s, whose refusal the
page shows as it is."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet

from deviations.choices import TEXT_MAX, OosOutcome, OosPhase
from deviations.forms import _reason, _text
from sites.models import Site

BATCH_NUMBER_MAX = 32


class OosFilterForm(forms.Form):
    """The list's filters (GET): each narrows what the user may see anyway."""

    outcome = forms.ChoiceField(
        label="Outcome", required=False, choices=[("", "Any outcome"), *OosOutcome.choices]
    )
    phase = forms.ChoiceField(
        label="Phase", required=False, choices=[("", "Any phase"), *OosPhase.choices]
    )
    site = forms.ModelChoiceField(
        label="Site",
        queryset=Site.objects.none(),
        to_field_name="code",
        required=False,
        empty_label="Every site",
    )
    batch = forms.CharField(label="Batch number", required=False, max_length=BATCH_NUMBER_MAX)

    def __init__(self, *args: Any, sites: QuerySet[Site], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["site"]
        assert isinstance(field, forms.ModelChoiceField)  # noqa: S101  (declared above)
        field.queryset = sites
        field.label_from_instance = lambda site: f"{site.code} — {site.name}"  # type: ignore[method-assign,assignment]


class OosOpenForm(forms.Form):
    """Open the investigation of a failed result (QA)."""

    reason = _reason("Why open it")


class FindingsForm(forms.Form):
    """The findings of the current phase: what was checked, what was found."""

    findings = _text("Findings of this phase", rows=5)
    reason = _reason()


class AdvanceForm(forms.Form):
    reason = _reason("Why move on")


class ConcludeForm(forms.Form):
    """The conclusion QA signs; the signature dialog beside it carries the reason."""

    outcome = forms.ChoiceField(
        label="Outcome",
        choices=[
            (OosOutcome.INVALIDATED.value, OosOutcome.INVALIDATED.label),
            (OosOutcome.CONFIRMED.value, OosOutcome.CONFIRMED.label),
        ],
        widget=forms.RadioSelect,
        help_text="Invalidated: Phase Ia or Ib found an assignable laboratory cause. Confirmed: "
        "from Phase II on, the laboratory found none and the result stands.",
    )
    conclusion = _text("Conclusion", rows=4)
    invalidation_evidence = forms.CharField(
        label="Evidence for invalidating the result",
        required=False,
        max_length=TEXT_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Only when invalidating: what shows the laboratory cause (the record, the "
        "calculation, the calibration certificate). The original result stays on the record.",
    )
