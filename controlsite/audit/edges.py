"""How each edge sets the reason for change (AT-03; style "Electronic signatures and audit trail").

- Forms: subclass `ReasonForChangeForm` (or mix it in); the service gets `form.reason`.
- Admin: subclass `ReasonForChangeAdminMixin`; the reason the user typed goes on the history row.
- API: `controlsite.api.base.BaseViewSet` puts `origin=api view=… action=…` in the audit context;
  signing and GMP actions take an explicit `reason` field.
- Services and commands: `with audit_context(reason=...)`.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from controlsite.audit.context import audit_context


class ReasonForChangeForm(forms.Form):
    """A form whose submission changes GMP data: the reason is required."""

    reason = forms.CharField(
        label=_("Reason for change"),
        max_length=500,
        widget=forms.TextInput(),
        help_text=_("Recorded in the audit trail."),
    )

    @property
    def reason_text(self) -> str:
        return str(self.cleaned_data["reason"]).strip()


class ReasonForChangeModelForm(forms.ModelForm):  # type: ignore[type-arg]
    """The admin's change form, with the reason for change it must carry."""

    reason = forms.CharField(
        label=_("Reason for change"),
        max_length=500,
        help_text=_("Recorded in the audit trail."),
    )


class ReasonForChangeAdminMixin:
    """Admin: adds a required reason to the change form and records it on the history row."""

    reason_field_name = "reason"
    form = ReasonForChangeModelForm

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_fields(request, obj))  # type: ignore[misc]
        if self.reason_field_name not in fields:
            fields.append(self.reason_field_name)
        return fields

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        reason = form.cleaned_data[self.reason_field_name]
        with audit_context(reason=reason, origin=f"admin {type(self).__name__}"):
            obj._change_reason = reason
            changed = [f for f in form.changed_data if f != self.reason_field_name]
            if change:
                obj.save(update_fields=changed or None)
            else:
                obj.save()
