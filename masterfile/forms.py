"""The master-file pages' forms: they parse and check input; the services decide what is allowed.

Every form that changes GMP data carries a reason (`ReasonForChangeForm`, AT-03); review comments
and their resolutions are their own record of why.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from django import forms
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from controlsite.accounts.models import User
from controlsite.audit.edges import ReasonForChangeForm
from masterfile.choices import (
    CHANGE_SUMMARY_MAX,
    COMMENT_MAX,
    SECTION_BODY_MAX,
    SECTION_TITLE_MAX,
    SHELF_LIFE_MAX_MINUTES,
    Designation,
    ProductSiteRole,
    SupplyStatus,
)
from masterfile.models import (
    PRODUCT_CODE_PATTERN,
    SUBMISSION_REFERENCE_MAX,
    Product,
    Section,
    product_code_validator,
)
from sites.choices import SiteKind, SiteStatus
from sites.forms import PersonChoiceField
from sites.models import Site

REASON_REQUIRED = _("Give a reason: it is recorded with the change in the audit trail.")


class ReasonForm(ReasonForChangeForm):
    """A reason alone: the lifecycle steps, drafts, removing a site."""

    def __init__(self, *args: Any, reason_label: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["reason"]
        field.error_messages["required"] = REASON_REQUIRED
        if reason_label:
            field.label = reason_label

    def clean_reason(self) -> str:
        reason = str(self.cleaned_data.get("reason") or "").strip()
        if not reason:
            raise forms.ValidationError(REASON_REQUIRED, code="required")
        return reason


if TYPE_CHECKING:
    _SiteChoiceField = forms.ModelChoiceField[Site]
else:  # django-stubs makes the field generic; Django itself does not subscript it
    _SiteChoiceField = forms.ModelChoiceField


class SiteChoiceField(_SiteChoiceField):
    def label_from_instance(self, obj: Site) -> str:
        return f"{obj.code} — {obj.name} ({obj.get_status_display().lower()})"


def _people() -> QuerySet[User]:
    return User.objects.filter(is_active=True).order_by("last_name", "first_name", "username")


def _live_sites() -> QuerySet[Site]:
    return Site.objects.exclude(status=SiteStatus.CEASED).order_by("code")


def _manufacturing_sites() -> QuerySet[Site]:
    return _live_sites().exclude(kind=SiteKind.TESTING_LAB)


#
# Products
#

SHELF_LIFE_UNITS: dict[str, int] = {"minutes": 1, "hours": 60, "days": 24 * 60}


def shelf_life_initial(minutes: int) -> tuple[int, str]:
    """The largest unit that states the shelf life exactly: 180 → (3, "hours")."""
    for unit in ("days", "hours"):
        size = SHELF_LIFE_UNITS[unit]
        if minutes % size == 0:
            return minutes // size, unit
    return minutes, "minutes"


class _ProductParticularsForm(ReasonForm):
    name = forms.CharField(label=_("Name"), max_length=200)
    designation = forms.ChoiceField(label=_("Designation"), choices=Designation.choices)
    designation_reference = forms.CharField(
        label=_("MHRA designation reference"),
        max_length=64,
        help_text=_("As given in the MHRA's designation letter."),
    )
    designation_date = forms.DateField(
        label=_("Designation date"), widget=forms.DateInput(attrs={"type": "date"})
    )
    dosage_form = forms.CharField(
        label=_("Dosage form"), max_length=120, help_text=_("e.g. Suspension for infusion")
    )
    shelf_life = forms.IntegerField(
        label=_("Shelf life"),
        min_value=1,
        help_text=_("From completion of manufacture: minutes to days (at most 90 days)."),
    )
    shelf_life_unit = forms.ChoiceField(
        label=_("Shelf life unit"),
        choices=[("minutes", _("minutes")), ("hours", _("hours")), ("days", _("days"))],
        initial="hours",
    )
    supply_status = forms.ChoiceField(label=_("Supply status"), choices=SupplyStatus.choices)
    reference_site = SiteChoiceField(
        label=_("Reference site"),
        queryset=Site.objects.none(),
        empty_label=_("Choose the reference site"),
        help_text=_("Exactly one per product; a manufacturing site that has not ceased."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["reference_site"]
        assert isinstance(field, SiteChoiceField)  # noqa: S101  (narrows the type)
        field.queryset = _manufacturing_sites()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        amount, unit = cleaned.get("shelf_life"), cleaned.get("shelf_life_unit")
        if amount is not None and unit in SHELF_LIFE_UNITS:
            minutes = int(amount) * SHELF_LIFE_UNITS[unit]
            if minutes > SHELF_LIFE_MAX_MINUTES:
                self.add_error(
                    "shelf_life",
                    _("A shelf life is at most 90 days (%(max)s minutes).")
                    % {"max": f"{SHELF_LIFE_MAX_MINUTES:,}"},
                )
            else:
                cleaned["shelf_life_minutes"] = minutes
        return cleaned


class ProductRegisterForm(_ProductParticularsForm):
    code = forms.CharField(
        label=_("Code"),
        max_length=16,
        help_text=_("2–16 upper-case letters, digits and hyphens, e.g. CART-01. It never changes."),
        widget=forms.TextInput(
            attrs={"autocapitalize": "characters", "spellcheck": "false", "class": "input-code"}
        ),
    )
    owner = PersonChoiceField(
        label=_("Master file owner"),
        queryset=_people().none(),
        required=False,
        empty_label=_("Me"),
        help_text=_("Reminded before each review date."),
    )

    field_order = [
        "code",
        "name",
        "designation",
        "designation_reference",
        "designation_date",
        "dosage_form",
        "shelf_life",
        "shelf_life_unit",
        "supply_status",
        "reference_site",
        "owner",
        "reason",
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["owner"]
        assert isinstance(field, PersonChoiceField)  # noqa: S101  (narrows the type)
        field.queryset = _people()

    def clean_code(self) -> str:
        code: str = self.cleaned_data["code"].strip().upper()
        try:
            product_code_validator(code)
        except forms.ValidationError as exc:
            raise forms.ValidationError(
                _("Use 2–16 upper-case letters, digits and hyphens, e.g. CART-01 (%(p)s)."),
                params={"p": PRODUCT_CODE_PATTERN},
                code="invalid",
            ) from exc
        return code


class ProductEditForm(_ProductParticularsForm):
    """A product's particulars; its code never changes."""

    @classmethod
    def initial_for(cls, product: Product) -> dict[str, Any]:
        amount, unit = shelf_life_initial(product.shelf_life_minutes)
        return {
            "name": product.name,
            "designation": product.designation,
            "designation_reference": product.designation_reference,
            "designation_date": product.designation_date,
            "dosage_form": product.dosage_form,
            "shelf_life": amount,
            "shelf_life_unit": unit,
            "supply_status": product.supply_status,
            "reference_site": product.reference_site_id,
        }

    def changes(self, product: Product) -> dict[str, Any]:
        """Only what differs from the record: unchanged fields are not written or audited."""
        data = self.cleaned_data
        wanted: dict[str, Any] = {
            "name": data["name"],
            "designation": data["designation"],
            "designation_reference": data["designation_reference"],
            "designation_date": data["designation_date"],
            "dosage_form": data["dosage_form"],
            "shelf_life_minutes": data["shelf_life_minutes"],
            "supply_status": data["supply_status"],
            "reference_site": data["reference_site"],
        }
        current: dict[str, Any] = {
            **{f: getattr(product, f) for f in wanted if f != "reference_site"},
            "reference_site": product.reference_site,
        }
        return {f: v for f, v in wanted.items() if current[f] != v}


class ProductSiteAddForm(ReasonForm):
    site = SiteChoiceField(
        label=_("Site"), queryset=Site.objects.none(), empty_label=_("Choose a site")
    )
    role = forms.ChoiceField(label=_("Role for this product"), choices=ProductSiteRole.choices)

    field_order = ["site", "role", "reason"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["site"]
        assert isinstance(field, SiteChoiceField)  # noqa: S101  (narrows the type)
        field.queryset = _live_sites()


class MasterFileForm(ReasonForm):
    owner = PersonChoiceField(label=_("Owner"), queryset=_people().none())
    review_interval_months = forms.IntegerField(
        label=_("Review interval (months)"),
        min_value=1,
        max_value=60,
        help_text=_("The next review date is set this long after a version becomes effective."),
    )

    field_order = ["owner", "review_interval_months", "reason"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["owner"]
        assert isinstance(field, PersonChoiceField)  # noqa: S101  (narrows the type)
        field.queryset = _people()


#
# Sections and the change summary
#


class SectionEditForm(ReasonForm):
    title = forms.CharField(label=_("Title"), max_length=SECTION_TITLE_MAX)
    # No max_length here: the service refuses an enormous section and states the limit.
    body = forms.CharField(
        label=_("Content (Markdown)"),
        strip=False,
        widget=forms.Textarea(attrs={"rows": 18, "class": "markdown-input", "spellcheck": "true"}),
        help_text=_(
            "Markdown: # headings, **bold**, lists, tables. Raw HTML is shown as text, never run. "
            "At most %(max)s characters."
        )
        % {"max": f"{SECTION_BODY_MAX:,}"},
        error_messages={"required": _("A section cannot be empty: write its content.")},
    )
    loaded_at = forms.CharField(widget=forms.HiddenInput, required=False)

    field_order = ["title", "body", "reason", "loaded_at"]

    def clean_loaded_at(self) -> dt.datetime | None:
        value = (self.cleaned_data.get("loaded_at") or "").strip()
        if not value:
            return None
        try:
            loaded = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise forms.ValidationError(_("Reload the section and edit it again.")) from exc
        return loaded


class SectionPreviewForm(forms.Form):
    """What the preview renders: the body as typed (nothing is written)."""

    body = forms.CharField(required=False, strip=False, max_length=SECTION_BODY_MAX * 2)


class SectionAddForm(ReasonForm):
    title = forms.CharField(label=_("Title"), max_length=SECTION_TITLE_MAX)
    key = forms.SlugField(
        label=_("Key"),
        max_length=64,
        help_text=_("Lower-case letters, digits and hyphens, e.g. cold-chain. Never changes."),
        widget=forms.TextInput(attrs={"spellcheck": "false"}),
    )
    body = forms.CharField(
        label=_("Content (Markdown)"), strip=False, widget=forms.Textarea(attrs={"rows": 6})
    )
    after_key = forms.ChoiceField(label=_("Place it after"), required=False)

    field_order = ["title", "key", "after_key", "body", "reason"]

    def __init__(self, *args: Any, sections: list[Section], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["after_key"]
        assert isinstance(field, forms.ChoiceField)  # noqa: S101  (narrows the type)
        field.choices = [("", _("The last section")), *[(s.key, s.title) for s in sections]]

    def clean_key(self) -> str:
        return str(self.cleaned_data["key"]).strip().lower()


class ReorderForm(ReasonForm):
    """One number per section; the sections are put in the order of their numbers (ties keep
    the current order), so it works without JavaScript."""

    def __init__(self, *args: Any, sections: list[Section], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sections = sections
        for index, section in enumerate(sections, start=1):
            self.fields[f"pos_{section.key}"] = forms.IntegerField(
                label=section.title,
                min_value=1,
                max_value=999,
                initial=index,
                widget=forms.NumberInput(attrs={"class": "input-position"}),
            )
        self.order_fields([f"pos_{s.key}" for s in sections] + ["reason"])

    def keys(self) -> list[str]:
        ranked = [
            (self.cleaned_data[f"pos_{s.key}"], index, s.key)
            for index, s in enumerate(self.sections)
        ]
        return [key for _pos, _index, key in sorted(ranked)]


class ChangeSummaryForm(ReasonForm):
    summary = forms.CharField(
        label=_("Change summary"),
        required=False,
        max_length=CHANGE_SUMMARY_MAX,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("What changed from the previous version, and why. Needed to submit v2 on."),
    )

    field_order = ["summary", "reason"]


#
# Review
#


class CommentForm(forms.Form):
    section = forms.ChoiceField(label=_("On"), required=False)
    body = forms.CharField(
        label=_("Comment"), max_length=COMMENT_MAX, widget=forms.Textarea(attrs={"rows": 3})
    )

    def __init__(self, *args: Any, sections: list[Section], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["section"]
        assert isinstance(field, forms.ChoiceField)  # noqa: S101  (narrows the type)
        field.choices = [("", _("The whole version")), *[(str(s.pk), s.title) for s in sections]]


class ResolveForm(forms.Form):
    resolution = forms.CharField(
        label=_("How it was resolved"),
        max_length=COMMENT_MAX,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Recorded in the audit trail."),
    )


class DiffForm(forms.Form):
    against = forms.ChoiceField(label=_("Compare with"))

    def __init__(self, *args: Any, choices: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["against"]
        assert isinstance(field, forms.ChoiceField)  # noqa: S101  (narrows the type)
        field.choices = choices


#
# Annual reports (issue 8 §7; MF-07, RP-01)
#


class AnnualReportRequestForm(forms.Form):
    """The year to report on: from the year of the product's designation to this one."""

    year = forms.TypedChoiceField(label=_("Year"), coerce=int)

    def __init__(self, *args: Any, years: list[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["year"]
        assert isinstance(field, forms.TypedChoiceField)  # noqa: S101  (declared above)
        field.choices = [(y, str(y)) for y in years]
        if years and "year" not in self.initial:
            # The year just ended is the one usually reported on; this year is year to date.
            self.initial["year"] = years[1] if len(years) > 1 else years[0]


class AnnualReportSubmissionForm(ReasonForm):
    """The submission of a finished report to the MHRA: the day and the MHRA's reference."""

    submitted_on = forms.DateField(
        label=_("Submitted on"),
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    reference = forms.CharField(
        label=_("MHRA reference"), max_length=SUBMISSION_REFERENCE_MAX, strip=True
    )

    field_order = ["submitted_on", "reference", "reason"]
