from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from controlsite.audit.edges import ReasonForChangeForm


class LoginForm(forms.Form):
    username = forms.CharField(
        label=_("Username"),
        max_length=150,
        widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True}),
    )
    password = forms.CharField(
        label=_("Password"),
        strip=False,
        max_length=256,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class OtpForm(forms.Form):
    otp = forms.CharField(
        label=_("6-digit code from your authenticator"),
        max_length=8,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )


class PasswordChangeForm(forms.Form):
    current_password = forms.CharField(
        label=_("Current password"), strip=False, widget=forms.PasswordInput
    )
    new_password = forms.CharField(
        label=_("New password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_("At least 12 characters, not a common or all-numeric password."),
    )
    repeat_password = forms.CharField(
        label=_("Repeat the new password"), strip=False, widget=forms.PasswordInput
    )

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if data.get("new_password") != data.get("repeat_password"):
            self.add_error("repeat_password", _("The two passwords differ."))
        return data


class ReasonForm(ReasonForChangeForm):
    """Every change an administrator makes carries a reason (AT-03)."""


class UserCreateForm(ReasonForm):
    username = forms.RegexField(
        label=_("Username"),
        max_length=150,
        regex=r"^[A-Za-z0-9.@+_-]+$",
        help_text=_("One account per person; never shared (DI-02)."),
    )
    first_name = forms.CharField(label=_("First name"), max_length=150)
    last_name = forms.CharField(label=_("Last name"), max_length=150)
    email = forms.EmailField(label=_("E-mail"))
    temporary_password = forms.CharField(
        label=_("Temporary password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_("The person must change it when they first sign in (ES-07)."),
    )
    field_order = ["username", "first_name", "last_name", "email", "temporary_password", "reason"]


class RoleGrantForm(ReasonForm):
    role = forms.ChoiceField(label=_("Role"), choices=[])
    expires_at = forms.DateTimeField(
        label=_("Expires"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text=_("Optional: for time-limited access such as an inspector's."),
    )
    field_order = ["role", "expires_at", "reason"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from controlsite.accounts.roles import Role

        super().__init__(*args, **kwargs)
        self.fields["role"].choices = Role.choices  # type: ignore[attr-defined]


class PasswordResetForm(ReasonForm):
    temporary_password = forms.CharField(
        label=_("Temporary password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    field_order = ["temporary_password", "reason"]


class TokenCreateForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100, help_text=_("What uses it."))
    scope = forms.ChoiceField(label=_("Scope"), choices=[])
    expires_in_days = forms.IntegerField(
        label=_("Expires in (days)"), min_value=1, max_value=730, required=False, initial=90
    )
    site_codes = forms.CharField(
        label=_("Limit to sites"),
        required=False,
        max_length=500,
        help_text=_("Comma-separated site codes; empty means every site you can see."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from controlsite.api.models import TokenScope

        super().__init__(*args, **kwargs)
        self.fields["scope"].choices = TokenScope.choices  # type: ignore[attr-defined]
