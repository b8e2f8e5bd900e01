"""The complaint pages' forms. They only shape what was typed: every rule (who may, dates, the
reporting clock, what closure needs) is `deviations.services.complaints`', whose refusal the
page shows as it is."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet

from deviations.choices import ComplaintKind, ComplaintStatus
from deviations.forms import _reason, _text
from deviations.services.complaints import REFERENCE_MAX, REPORTER_MAX
from masterfile.models import Product
from sites.models import Site

SERIOUS_HELP = (
    "For a suspected adverse reaction: fatal, life-threatening, needing or prolonging "
    "hospitalisation, causing lasting disability, a congenital anomaly, or otherwise medically "
    "important. A serious one must be reported to the MHRA within 15 days of the day it was "
    "first known."
)
YES_NO = [("yes", "Yes"), ("no", "No")]


def _date(label: str) -> forms.DateField:
    # A date input takes ISO dates only: the initial value (today) is rendered that way.
    return forms.DateField(
        label=label, widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )


def _yes_no(value: str) -> bool:
    return value == "yes"


def _site_field(required: bool = True) -> forms.ModelChoiceField:  # type: ignore[type-arg]
    return forms.ModelChoiceField(
        label="Site",
        queryset=Site.objects.none(),
        to_field_name="code",
        required=required,
        empty_label=None if required else "Every site",
    )


def _set_sites(form: forms.Form, sites: QuerySet[Site]) -> None:
    field = form.fields["site"]
    assert isinstance(field, forms.ModelChoiceField)  # noqa: S101  (declared above)
    field.queryset = sites
    field.label_from_instance = lambda site: f"{site.code} — {site.name}"  # type: ignore[method-assign,assignment]


class ComplaintRecordForm(forms.Form):
    """Record a complaint or a suspected adverse reaction: where, on what, what, who told us,
    when it was first known, and whether it is serious."""

    site = _site_field()
    kind = forms.ChoiceField(label="Kind", choices=ComplaintKind.choices, widget=forms.RadioSelect)
    batch = forms.CharField(
        label="Batch number (if known)",
        required=False,
        max_length=32,
        help_text="The product is taken from the batch.",
    )
    product = forms.ModelChoiceField(
        label="Product (if no batch is known)",
        queryset=Product.objects.none(),
        to_field_name="code",
        required=False,
        empty_label="—",
    )
    description = _text("What was reported")
    reporter = forms.CharField(
        label="Who told us",
        max_length=REPORTER_MAX,
        help_text="The patient's clinician, the ward, a pharmacist… (no patient identifiers).",
    )
    aware_on = _date("First known on")
    serious = forms.TypedChoiceField(
        label="Serious",
        choices=YES_NO,
        coerce=_yes_no,
        initial="no",
        widget=forms.RadioSelect,
        help_text=SERIOUS_HELP,
    )
    reason = _reason()

    def __init__(
        self, *args: Any, sites: QuerySet[Site], products: QuerySet[Product], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        _set_sites(self, sites)
        field = self.fields["product"]
        assert isinstance(field, forms.ModelChoiceField)  # noqa: S101  (declared above)
        field.queryset = products
        field.label_from_instance = lambda product: f"{product.code} — {product.name}"  # type: ignore[method-assign,assignment]


class ComplaintFilterForm(forms.Form):
    """The list's filters; each narrows what the user may see already."""

    kind = forms.ChoiceField(
        label="Kind", required=False, choices=[("", "Every kind"), *ComplaintKind.choices]
    )
    serious = forms.ChoiceField(label="Serious", required=False, choices=[("", "Either"), *YES_NO])
    overdue = forms.ChoiceField(
        label="Report overdue",
        required=False,
        choices=[("", "Either"), ("yes", "Overdue only"), ("no", "Not overdue")],
    )
    status = forms.ChoiceField(
        label="Status", required=False, choices=[("", "Any"), *ComplaintStatus.choices]
    )
    site = _site_field(required=False)
    batch = forms.CharField(label="Batch", required=False, max_length=32)

    def __init__(self, *args: Any, sites: QuerySet[Site], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _set_sites(self, sites)


class ComplaintAssessForm(forms.Form):
    """QA's risk assessment and investigation, and the seriousness it concludes."""

    assessment = _text("Risk assessment and investigation", rows=5)
    serious = forms.TypedChoiceField(
        label="Serious",
        choices=YES_NO,
        coerce=_yes_no,
        widget=forms.RadioSelect,
        help_text=SERIOUS_HELP,
    )
    reason = _reason()


class ComplaintReportedForm(forms.Form):
    """The report to the MHRA: when, and its reference."""

    reported_on = _date("Reported to the MHRA on")
    reference = forms.CharField(
        label="MHRA reference",
        max_length=REFERENCE_MAX,
        help_text="The Yellow Card or defect report reference the MHRA gave.",
    )
    reason = _reason()
