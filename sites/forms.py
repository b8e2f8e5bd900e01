"""The sites pages' forms: they parse and check input; the services decide what is allowed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from controlsite.accounts import permissions
from controlsite.accounts.models import RoleGrant, User
from controlsite.accounts.roles import Role
from sites.choices import EquipmentStatus, FindingGrade, SiteKind, SiteRole, SiteStatus
from sites.models import SITE_CODE_PATTERN, site_code_validator

REASON_REQUIRED = _("Give a reason: it is recorded with the change in the audit trail.")


def reason_field(label: str = "Reason for the change") -> forms.CharField:
    return forms.CharField(
        label=_(label),
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": REASON_REQUIRED},
    )


def _people() -> QuerySet[User]:
    return User.objects.filter(is_active=True).order_by("last_name", "first_name", "username")


def _qps() -> QuerySet[User]:
    live_qp = RoleGrant.objects.filter(permissions.live_grants_q(), role=Role.QP).values("user_id")
    return _people().filter(pk__in=live_qp)


if TYPE_CHECKING:
    _UserChoiceField = forms.ModelChoiceField[User]
else:  # django-stubs makes the field generic; Django itself does not subscript it
    _UserChoiceField = forms.ModelChoiceField


class PersonChoiceField(_UserChoiceField):
    def label_from_instance(self, obj: User) -> str:
        return f"{obj.printed_name} ({obj.get_username()})"


def _blank(label: str, choices: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    return [("", label), *[(str(v), str(lbl)) for v, lbl in choices]]


#
# The register
#


class SiteFilterForm(forms.Form):
    """The list's filters (GET). `after` is the keyset cursor: the last code of the page."""

    q = forms.CharField(label=_("Code or name"), required=False, max_length=200)
    status = forms.ChoiceField(
        label=_("Status"), required=False, choices=_blank("Any status", SiteStatus.choices)
    )
    kind = forms.ChoiceField(
        label=_("Kind"), required=False, choices=_blank("Any kind", SiteKind.choices)
    )
    host = forms.CharField(label=_("Host organisation"), required=False, max_length=200)
    after = forms.CharField(required=False, max_length=8, widget=forms.HiddenInput)


class _SiteParticularsForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=200)
    kind = forms.ChoiceField(label=_("Kind"), choices=SiteKind.choices)
    host_organisation = forms.CharField(
        label=_("Host organisation"),
        max_length=200,
        required=False,
        help_text=_("e.g. the NHS trust that hosts the site."),
    )
    address = forms.CharField(
        label=_("Address"), required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    nominated_person = PersonChoiceField(
        label=_("Nominated person (site lead)"),
        queryset=User.objects.none(),
        required=False,
        empty_label=_("Not named yet"),
        help_text=_("They become the site's lead and see its records."),
    )
    technical_agreement_ref = forms.CharField(
        label=_("Technical agreement reference"), max_length=100, required=False
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["nominated_person"]
        assert isinstance(field, PersonChoiceField)  # noqa: S101  (narrows the type)
        field.queryset = _people()


class SiteRegisterForm(_SiteParticularsForm):
    code = forms.CharField(
        label=_("Code"),
        max_length=8,
        help_text=_(
            "2–8 upper-case letters and digits, e.g. LON1. It goes into every batch number "
            "made there and can never be changed or reused."
        ),
        widget=forms.TextInput(
            attrs={"autocapitalize": "characters", "spellcheck": "false", "class": "input-code"}
        ),
    )
    current_location = forms.CharField(
        label=_("Current location"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("For a modular unit: where it stands now. Later moves are recorded."),
    )
    reason = reason_field("Reason for registering")

    field_order = [
        "code",
        "name",
        "kind",
        "host_organisation",
        "address",
        "current_location",
        "nominated_person",
        "technical_agreement_ref",
        "reason",
    ]

    def clean_code(self) -> str:
        code: str = self.cleaned_data["code"].strip().upper()
        try:
            site_code_validator(code)
        except forms.ValidationError as exc:
            raise forms.ValidationError(
                _("Use 2–8 upper-case letters and digits, e.g. LON1 (%(pattern)s)."),
                params={"pattern": SITE_CODE_PATTERN},
                code="invalid",
            ) from exc
        return code


class SiteEditForm(_SiteParticularsForm):
    reason = reason_field()


#
# The lifecycle and moves
#


class ReasonForm(forms.Form):
    reason = reason_field()


class TransitionForm(forms.Form):
    reason = reason_field("Reason")


class MoveForm(forms.Form):
    location = forms.CharField(
        label=_("New location"),
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Where the unit now stands: hospital, building, bay."),
    )
    reason = reason_field("Reason for the move")


#
# Onboarding
#


class EvidenceForm(forms.Form):
    file = forms.FileField(
        label=_("Evidence file"),
        required=False,
        help_text=_("PDF, PNG, JPEG, Word, Excel, text or CSV. Its SHA-256 is recorded."),
        widget=forms.ClearableFileInput(
            attrs={"accept": ".pdf,.png,.jpg,.jpeg,.docx,.xlsx,.txt,.csv"}
        ),
    )
    reference = forms.CharField(
        label=_("Or a document reference"),
        required=False,
        max_length=300,
        help_text=_("A document number or where the evidence is kept, e.g. QMS-DOC-0042 v3."),
    )
    reason = reason_field("Reason")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not cleaned.get("file") and not (cleaned.get("reference") or "").strip():
            raise forms.ValidationError(
                _("Upload a file or give a document reference."), code="evidence_required"
            )
        return cleaned


#
# Memberships
#


class MemberAddForm(forms.Form):
    user = PersonChoiceField(
        label=_("Person"), queryset=User.objects.none(), empty_label=_("Choose a person")
    )
    role = forms.ChoiceField(label=_("Role at the site"), choices=SiteRole.choices)
    reason = reason_field()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["user"]
        assert isinstance(field, PersonChoiceField)  # noqa: S101  (narrows the type)
        field.queryset = _people()


#
# Equipment
#


class EquipmentAddForm(forms.Form):
    kind = forms.CharField(
        label=_("Kind"), max_length=100, help_text=_("e.g. closed-system processor")
    )
    name = forms.CharField(label=_("Name"), max_length=200, required=False)
    serial_number = forms.CharField(label=_("Serial number"), max_length=100)
    qualification_status = forms.ChoiceField(
        label=_("Qualification status"),
        choices=EquipmentStatus.choices,
        initial=EquipmentStatus.NOT_QUALIFIED,
    )
    next_due = forms.DateField(
        label=_("Next qualification due"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    reason = reason_field()


class EquipmentEditForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=200, required=False)
    qualification_status = forms.ChoiceField(
        label=_("Qualification status"), choices=EquipmentStatus.choices
    )
    next_due = forms.DateField(
        label=_("Next qualification due"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    reason = reason_field()

    def changes(self) -> dict[str, Any]:
        """Only what differs from the record: unchanged fields are not written or audited."""
        return {k: self.cleaned_data[k] for k in self.changed_data if k != "reason"}


#
# Site audits
#


class AuditPlanForm(forms.Form):
    title = forms.CharField(
        label=_("Title"), max_length=200, help_text=_("e.g. Annual GMP audit 2026")
    )
    planned_for = forms.DateField(
        label=_("Planned for"), widget=forms.DateInput(attrs={"type": "date"})
    )
    lead_auditor = forms.CharField(label=_("Lead auditor"), max_length=200, required=False)
    reason = reason_field()


class AuditCompleteForm(forms.Form):
    done_on = forms.DateField(
        label=_("Done on"),
        widget=forms.DateInput(attrs={"type": "date"}),
        initial=timezone.localdate,
    )
    summary = forms.CharField(
        label=_("Summary"), required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    reason = reason_field()


class FindingForm(forms.Form):
    grade = forms.ChoiceField(label=_("Grade"), choices=FindingGrade.choices)
    description = forms.CharField(
        label=_("Description"), widget=forms.Textarea(attrs={"rows": 3}), max_length=5000
    )
    reason = reason_field()


#
# The Control Site and the MHRA log
#


class ControlSiteForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=200)
    address = forms.CharField(label=_("Address"), widget=forms.Textarea(attrs={"rows": 3}))
    licence_number = forms.CharField(
        label=_("Manufacturer's licence number"),
        max_length=64,
        help_text=_("As printed on the licence, e.g. MIA 12345/0001."),
    )
    scope_poc = forms.BooleanField(label=_("Point-of-care manufacture (POC)"), required=False)
    scope_mm = forms.BooleanField(label=_("Modular manufacture (MM)"), required=False)
    regulator_contacts = forms.CharField(
        label=_("Regulator contacts"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("MHRA inspectorate and case contacts."),
    )
    reason = reason_field()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not (cleaned.get("scope_poc") or cleaned.get("scope_mm")):
            raise forms.ValidationError(
                _("The licence covers POC, MM or both: tick at least one."), code="scope_required"
            )
        return cleaned


class NamedQPForm(forms.Form):
    user = PersonChoiceField(
        label=_("Qualified Person"),
        queryset=User.objects.none(),
        empty_label=_("Choose a QP"),
        help_text=_("Only people who hold the QP role are listed."),
    )
    reason = reason_field()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["user"]
        assert isinstance(field, PersonChoiceField)  # noqa: S101  (narrows the type)
        field.queryset = _qps()


class NotificationSentForm(forms.Form):
    sent_on = forms.DateField(
        label=_("Sent on"),
        widget=forms.DateInput(attrs={"type": "date"}),
        initial=timezone.localdate,
    )
    reference = forms.CharField(
        label=_("MHRA reference"), max_length=100, help_text=_("The MHRA's acknowledgement number.")
    )
    reason = reason_field()
