"""The batch pages' forms. They only shape what was typed: every rule (roles, order, limits,
gates, the chain of identity) is the services' (batches/services.py), whose refusal the page
shows as it is."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from batches.choices import (
    COI_MAX,
    INSTRUCTION_MAX,
    JUSTIFICATION_MAX,
    LOCATION_MAX,
    NAME_MAX,
    REASON_MAX,
    UNIT_MAX,
    BatchStatus,
    SpecificationTiming,
    StepRole,
)
from batches.models import Specification, TemplateStep
from masterfile.models import Product
from sites.models import Site

# How many parameter rows the "add a step" form offers (the service takes up to PARAMETERS_MAX;
# a step with more is added through the API).
PARAMETER_ROWS = 5
VALUE_MAX_LENGTH = 40


def _reason(label: str = "Reason for change") -> forms.CharField:
    return forms.CharField(
        label=label, max_length=REASON_MAX, widget=forms.Textarea(attrs={"rows": 2})
    )


class BatchFilterForm(forms.Form):
    """The batches index filters (GET). Unknown values simply match nothing."""

    site = forms.CharField(label=_("Site"), required=False, max_length=16)
    product = forms.CharField(label=_("Product"), required=False, max_length=32)
    status = forms.ChoiceField(
        label=_("Status"),
        required=False,
        choices=[("", _("Any status")), *BatchStatus.choices],
    )


class QueueFilterForm(forms.Form):
    """The QP queue filters (GET): a site code and a product code, from the lists offered."""

    site = forms.ChoiceField(label=_("Site"), required=False)
    product = forms.ChoiceField(label=_("Product"), required=False)

    def __init__(
        self, *args: Any, sites: list[tuple[str, str]], products: list[tuple[str, str]], **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self.fields["site"].choices = [("", _("Every site")), *sites]  # type: ignore[attr-defined]
        self.fields["product"].choices = [  # type: ignore[attr-defined]
            ("", _("Every product")),
            *products,
        ]


class BatchStartForm(forms.Form):
    """Start a batch (BR-01, BR-12, BR-14): the sites the user records at, the products they
    see, and the patient's pseudonymised chain-of-identity reference."""

    site = forms.ModelChoiceField(label=_("Site"), queryset=Site.objects.none())
    product = forms.ModelChoiceField(label=_("Product"), queryset=Product.objects.none())
    coi_reference = forms.CharField(
        label=_("Chain-of-identity reference"),
        max_length=COI_MAX,
        help_text=_("The pseudonymised patient identifier: never a name."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    def __init__(
        self, *args: Any, sites: QuerySet[Site], products: QuerySet[Product], **kw: Any
    ) -> None:
        kw.setdefault("prefix", "start")
        super().__init__(*args, **kw)
        self.fields["site"].queryset = sites  # type: ignore[attr-defined]
        self.fields["product"].queryset = products  # type: ignore[attr-defined]


class StepRecordForm(forms.Form):
    """One value per parameter of the step, as typed (the service parses and checks limits)."""

    comment = forms.CharField(
        label=_("Comment"),
        required=False,
        max_length=INSTRUCTION_MAX,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args: Any, step: TemplateStep, **kw: Any) -> None:
        kw.setdefault("prefix", "step")
        super().__init__(*args, **kw)
        self.step = step
        fields: dict[str, forms.Field] = {}
        for parameter in step.parameters.all():
            unit = f" ({parameter.unit})" if parameter.unit else ""
            fields[f"value_{parameter.key}"] = forms.CharField(
                label=f"{parameter.name}{unit}",
                max_length=VALUE_MAX_LENGTH,
                help_text=_("Limits: %(limits)s") % {"limits": parameter.limits_label},
                widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
            )
        fields["comment"] = self.fields.pop("comment")
        self.fields = fields

    def values(self) -> dict[str, str]:
        return {
            name.removeprefix("value_"): value
            for name, value in self.cleaned_data.items()
            if name.startswith("value_")
        }


class ResultForm(forms.Form):
    """A result against one of the template's specifications; pass or fail is computed."""

    specification = forms.ChoiceField(label=_("Specification"))
    value = forms.CharField(
        label=_("Value"),
        max_length=VALUE_MAX_LENGTH,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )
    comment = forms.CharField(
        label=_("Comment"),
        required=False,
        max_length=INSTRUCTION_MAX,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args: Any, specifications: list[Specification], **kw: Any) -> None:
        kw.setdefault("prefix", "result")
        super().__init__(*args, **kw)
        self.fields["specification"].choices = [  # type: ignore[attr-defined]
            (s.key, f"{s.name} ({s.limits_label})") for s in specifications
        ]


class CertifyForm(forms.Form):
    """The QP's certification beside the signature (BR-03, BR-07): a justification when a
    finding warns, and where they are when certifying remotely."""

    justification = forms.CharField(
        label=_("Justification"),
        required=False,
        max_length=JUSTIFICATION_MAX,
        help_text=_("Required when a finding warns: why the batch may still be certified."),
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    remote = forms.BooleanField(label=_("Certified remotely"), required=False)
    location = forms.CharField(
        label=_("Location"),
        required=False,
        max_length=LOCATION_MAX,
        help_text=_("Where you are, when certifying remotely (BR-07)."),
    )

    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("prefix", "certify")
        super().__init__(*args, **kw)


class ConcessionForm(forms.Form):
    """Certification under concession over a failed registered specification (BR-08): the
    treating clinician's recorded request and the QP's justification, both required."""

    clinician_request = forms.CharField(
        label=_("Clinician's request"),
        max_length=JUSTIFICATION_MAX,
        help_text=_("Who asked, when, and the reference of their written request."),
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    justification = forms.CharField(
        label=_("Justification"),
        max_length=JUSTIFICATION_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    remote = forms.BooleanField(label=_("Certified remotely"), required=False)
    location = forms.CharField(label=_("Location"), required=False, max_length=LOCATION_MAX)

    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("prefix", "concession")
        super().__init__(*args, **kw)


class SupplyForm(forms.Form):
    """Hand-over of a certified batch: the chain-of-identity reference is typed again (BR-13)."""

    coi_reference = forms.CharField(
        label=_("Chain-of-identity reference (type it again)"),
        max_length=COI_MAX,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    supplied_to = forms.CharField(label=_("Supplied to"), max_length=200)
    quantity = forms.CharField(
        label=_("Quantity"),
        max_length=VALUE_MAX_LENGTH,
        widget=forms.TextInput(attrs={"inputmode": "decimal"}),
    )
    unit = forms.CharField(label=_("Unit"), max_length=UNIT_MAX)

    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("prefix", "supply")
        super().__init__(*args, **kw)


class AdministrationForm(forms.Form):
    """Confirmation of administration against the chain-of-identity reference (BR-13)."""

    coi_reference = forms.CharField(
        label=_("Chain-of-identity reference (type it again)"),
        max_length=COI_MAX,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    adverse_reaction = forms.CharField(
        label=_("Suspected adverse reaction"),
        required=False,
        max_length=INSTRUCTION_MAX,
        help_text=_("Leave empty if none was observed."),
        widget=forms.Textarea(attrs={"rows": 2}),
    )


#
# Templates (QA)
#


class TemplateCreateForm(forms.Form):
    product = forms.ModelChoiceField(label=_("Product"), queryset=Product.objects.none())
    title = forms.CharField(label=_("Title"), max_length=NAME_MAX * 2)
    reason = _reason()

    def __init__(self, *args: Any, products: QuerySet[Product], **kw: Any) -> None:
        kw.setdefault("prefix", "template")
        super().__init__(*args, **kw)
        self.fields["product"].queryset = products  # type: ignore[attr-defined]


class StepAddForm(forms.Form):
    """A step and up to PARAMETER_ROWS parameters (empty rows are ignored)."""

    title = forms.CharField(label=_("Title"), max_length=NAME_MAX)
    instruction = forms.CharField(
        label=_("Instruction"), max_length=INSTRUCTION_MAX, widget=forms.Textarea(attrs={"rows": 3})
    )
    role = forms.ChoiceField(label=_("Performed by"), choices=StepRole.choices)
    requires_verification = forms.BooleanField(label=_("A second person verifies"), required=False)
    reason = _reason()

    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("prefix", "step")
        super().__init__(*args, **kw)
        self.parameter_rows: list[list[forms.BoundField]] = []
        for n in range(PARAMETER_ROWS):
            names = []
            for part, label, size in (
                ("key", _("Key"), 40),
                ("name", _("Name"), NAME_MAX),
                ("unit", _("Unit"), UNIT_MAX),
                ("low", _("Low"), VALUE_MAX_LENGTH),
                ("high", _("High"), VALUE_MAX_LENGTH),
            ):
                name = f"p{n}_{part}"
                self.fields[name] = forms.CharField(
                    label=f"{label} (parameter {n + 1})", required=False, max_length=size
                )
                names.append(name)
            self.parameter_rows.append([self[name] for name in names])

    @property
    def main_fields(self) -> list[forms.BoundField]:
        return [self[n] for n in ("title", "instruction", "role", "requires_verification")]

    def parameters(self) -> list[dict[str, Any]]:
        rows = []
        for n in range(PARAMETER_ROWS):
            row = {
                part: self.cleaned_data.get(f"p{n}_{part}", "").strip()
                for part in ("key", "name", "unit", "low", "high")
            }
            if not any(row.values()):
                continue
            rows.append(
                {k: (v if v != "" else None) if k in ("low", "high") else v for k, v in row.items()}
            )
        return rows


class SpecificationAddForm(forms.Form):
    key = forms.CharField(label=_("Key"), max_length=40)
    name = forms.CharField(label=_("Name"), max_length=NAME_MAX)
    unit = forms.CharField(label=_("Unit"), max_length=UNIT_MAX, required=False)
    low = forms.CharField(label=_("Lower limit"), max_length=VALUE_MAX_LENGTH, required=False)
    high = forms.CharField(label=_("Upper limit"), max_length=VALUE_MAX_LENGTH, required=False)
    registered = forms.BooleanField(
        label=_("Registered specification"),
        required=False,
        initial=True,
        help_text=_("A failed registered specification blocks certification (BR-08)."),
    )
    timing = forms.ChoiceField(label=_("Tested"), choices=SpecificationTiming.choices)
    reason = _reason()

    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("prefix", "spec")
        super().__init__(*args, **kw)
