from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from controlsite.audit.selectors import AuditFilters


class AuditFilterForm(forms.Form):
    actor = forms.CharField(label=_("Actor"), required=False, max_length=150)
    record_type = forms.CharField(
        label=_("Record type"),
        required=False,
        max_length=100,
        help_text=_("e.g. controlsite.user"),
    )
    record_id = forms.CharField(label=_("Record id"), required=False, max_length=64)
    event_type = forms.CharField(label=_("Event type"), required=False, max_length=64)
    date_from = forms.DateField(
        label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def filters(self) -> AuditFilters:
        data = self.cleaned_data if self.is_valid() else {}
        return AuditFilters(
            actor=data.get("actor", "") or "",
            record_type=data.get("record_type", "") or "",
            record_id=data.get("record_id", "") or "",
            event_type=data.get("event_type", "") or "",
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
        )


class AuditReviewForm(forms.Form):
    comment = forms.CharField(
        label=_("Review comment"),
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
