"""The fields of the shared signature dialog (templates/includes/signature_dialog.html)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from controlsite.accounts import mfa, permissions
from controlsite.accounts.middleware import SIGNED_IN_SESSION_KEY
from controlsite.accounts.models import User
from controlsite.signatures.models import SignatureMeaning
from controlsite.signatures.services import SignatureCredentials


class SignatureForm(forms.Form):
    """Username (first signing of a session only, ES-06), password, TOTP where needed, the
    fixed meaning the page signs with, and a reason."""

    username = forms.CharField(
        label=_("Username"),
        max_length=150,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "username"}),
    )
    password = forms.CharField(
        label=_("Password"),
        strip=False,
        max_length=256,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    otp = forms.CharField(
        label=_("Authenticator code"),
        max_length=8,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )
    meaning = forms.ChoiceField(
        label=_("Meaning"), choices=SignatureMeaning.choices, widget=forms.HiddenInput
    )
    reason = forms.CharField(
        label=_("Reason for signing"),
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args: Any, request: HttpRequest, meaning: SignatureMeaning, **kwargs: Any):
        kwargs.setdefault("initial", {})["meaning"] = meaning.value
        # Its own element ids, so a page's other form with a `reason` field never shares one.
        kwargs.setdefault("auto_id", "signature_%s")
        super().__init__(*args, **kwargs)
        self.request = request
        self.signing_meaning = meaning
        # Template-friendly names (a form's fields shadow its attributes, so not `meaning`).
        self.meaning_label = meaning.label
        self.meaning_value = meaning.value
        self.needs_username = not request.session.get(SIGNED_IN_SESSION_KEY, False)
        user = request.user
        self.needs_otp = permissions.mfa_required(user) or (
            isinstance(user, User) and mfa.confirmed_device(user) is not None
        )
        if self.needs_username:
            self.fields["username"].required = True
        else:
            del self.fields["username"]
        if self.needs_otp:
            self.fields["otp"].required = True
        else:
            del self.fields["otp"]

    def clean_meaning(self) -> str:
        value: str = self.cleaned_data["meaning"]
        if value != self.signing_meaning.value:
            raise forms.ValidationError(_("This page signs with a fixed meaning."))
        return value

    def credentials(self) -> SignatureCredentials:
        return SignatureCredentials(
            username=self.cleaned_data.get("username", ""),
            password=self.cleaned_data["password"],
            otp=self.cleaned_data.get("otp", ""),
            continuous_session=not self.needs_username,
        )

    def mark_signed(self) -> None:
        """After a successful signing, later ones in this session need only the password."""
        self.request.session[SIGNED_IN_SESSION_KEY] = True
