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


class ReasonForChangeAdminMixin:
    """Admin: adds a required reason to the change form and records it on the history row."""

    reason_field_name = "reason"

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):  # type: ignore[no-untyped-def]
        form = super().get_form(request, obj, change=change, **kwargs)  # type: ignore[misc]
        form.base_fields[self.reason_field_name] = forms.CharField(
            label=_("Reason for change"),
            max_length=500,
            help_text=_("Recorded in the audit trail."),
        )
        return form

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        reason = form.cleaned_data[self.reason_field_name]
        with audit_context(reason=reason, origin=f"admin {type(self).__name__}"):
            obj._change_reason = reason
            changed = [f for f in form.changed_data if f != self.reason_field_name]
            if change:
                obj.save(update_fields=changed or None)
            else:
                obj.save()
