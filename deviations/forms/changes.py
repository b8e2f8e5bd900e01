"""The change-control pages' forms. They only shape what was typed: who may, the lifecycle, the
derived regulatory flag and every check on scopes, product, site and impact are the services'
(deviations/services/changes.py), whose refusal the page shows as it is (DV-07…DV-09)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet

from deviations.choices import TEXT_MAX, TITLE_MAX, ChangeScope, RiskLevel
from deviations.forms import _date, _reason, _text, _WithOwner
from masterfile.models import Product
from sites.models import Site

SCOPE_HELP = (
    "A change touching the product master file, a site's status or the site list, or the "
    "release process is regulatory: it needs a regulatory-impact assessment and a QP's "
    "approval as well as QA's (DV-09)."
)


class ChangeForm(forms.Form):
    """Propose a change, or edit its draft: what, what it touches, its risk and its regulatory
    impact. Whether it is regulatory follows from the scopes; nobody types it."""

    title = forms.CharField(label="Title", max_length=TITLE_MAX)
    description = _text("What changes and why")
    scopes = forms.MultipleChoiceField(
        label="What it touches",
        choices=ChangeScope.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text=SCOPE_HELP,
    )
    product = forms.ModelChoiceField(
        label="Product (needed for a master-file change)",
        queryset=Product.objects.none(),
        to_field_name="code",
        required=False,
        empty_label="No product",
    )
    site = forms.ModelChoiceField(
        label="Site (needed for a change to a site's status)",
        queryset=Site.objects.none(),
        to_field_name="code",
        required=False,
        empty_label="No one site (network-wide)",
    )
    risk_level = forms.ChoiceField(label="Risk", choices=RiskLevel.choices)
    risk_assessment = _text(
        "Risk assessment (what could go wrong, how likely, how it is controlled)"
    )
    regulatory_impact = forms.CharField(
        label="Regulatory impact (is a variation or an MHRA notification needed?)",
        max_length=TEXT_MAX,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Required when the change is regulatory.",
    )
    reason = _reason()

    def __init__(
        self,
        *args: Any,
        sites: QuerySet[Site],
        products: QuerySet[Product],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        site_field = self.fields["site"]
        product_field = self.fields["product"]
        assert isinstance(site_field, forms.ModelChoiceField)  # noqa: S101  (declared above)
        assert isinstance(product_field, forms.ModelChoiceField)  # noqa: S101  (declared above)
        site_field.queryset = sites
        site_field.label_from_instance = lambda site: f"{site.code} — {site.name}"  # type: ignore[method-assign,assignment]
        product_field.queryset = products
        product_field.label_from_instance = lambda p: f"{p.code} — {p.name}"  # type: ignore[method-assign,assignment]


class ChangeTaskForm(_WithOwner):
    field_order = ["description", "owner", "due_on", "reason"]

    description = _text("Task", rows=2)
    due_on = _date("Due on")
    reason = _reason()


class ChangeTaskDoneForm(forms.Form):
    reason = _reason("What was done")


class ChangeReviewForm(forms.Form):
    """The post-implementation review; QA's signature (a separate dialog) closes the change."""

    review = _text(
        "Post-implementation review: did the change do what was intended, without unintended "
        "effects?",
        rows=4,
    )
