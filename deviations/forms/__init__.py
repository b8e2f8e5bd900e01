"""The deviation and CAPA pages' forms. They only shape what was typed: every rule (who may,
transitions, due dates, the human-error justification) is the services' (deviations/services.py),
whose refusal the page shows as it is."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils.safestring import mark_safe

from controlsite.accounts.models import User
from deviations.choices import (
    CLASS_CRITERIA,
    REASON_MAX,
    TEXT_MAX,
    TITLE_MAX,
    CapaKind,
    DeviationClass,
    Effectiveness,
    RootCauseCategory,
)
from deviations.services import ActionInput
from masterfile.models import Product
from sites.models import Site


def _reason(label: str = "Reason for change") -> forms.CharField:
    return forms.CharField(
        label=label, max_length=REASON_MAX, widget=forms.Textarea(attrs={"rows": 2})
    )


def _text(label: str, *, required: bool = True, rows: int = 3) -> forms.CharField:
    return forms.CharField(
        label=label,
        max_length=TEXT_MAX,
        required=required,
        widget=forms.Textarea(attrs={"rows": rows}),
    )


def _date(label: str) -> forms.DateField:
    return forms.DateField(label=label, widget=forms.DateInput(attrs={"type": "date"}))


CLASS_HELP = mark_safe(  # noqa: S308  (constant text)
    "<br>".join(
        f"<strong>{DeviationClass(value).label}</strong>: {text}"
        for value, text in CLASS_CRITERIA.items()
    )
)


class _Scoped(forms.Form):
    """A form that shares its page with others gets ids of its own (`id_<scope>_<field>`), so
    each label points at its own field (every form here has a `reason`)."""

    scope = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if self.scope:
            kwargs.setdefault("auto_id", f"id_{self.scope}_%s")
        super().__init__(*args, **kwargs)


class RaiseForm(forms.Form):
    """Raise a deviation: where, what, how bad it looks to the raiser (QA confirms)."""

    site = forms.ModelChoiceField(
        label="Site", queryset=Site.objects.none(), to_field_name="code", empty_label=None
    )
    batch = forms.CharField(
        label="Batch number (if it concerns a batch)", required=False, max_length=24
    )
    title = forms.CharField(label="Title", max_length=TITLE_MAX)
    description = _text("What happened")
    proposed_class = forms.ChoiceField(
        label="Class (your proposal; QA confirms it)",
        choices=DeviationClass.choices,
        widget=forms.RadioSelect,
        help_text=CLASS_HELP,
    )
    immediate_action = _text("Immediate action taken", required=False, rows=2)

    def __init__(self, *args: Any, sites: QuerySet[Site], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        site_field = self.fields["site"]
        assert isinstance(site_field, forms.ModelChoiceField)  # noqa: S101  (declared above)
        site_field.queryset = sites
        site_field.label_from_instance = lambda site: f"{site.code} — {site.name}"  # type: ignore[method-assign,assignment]


class ConfirmClassForm(_Scoped):
    scope = "class"
    deviation_class = forms.ChoiceField(label="Class", choices=DeviationClass.choices)
    reason = _reason("Why this class")


class TransitionForm(_Scoped):
    scope = "transition"
    reason = _reason()


class InvestigationForm(_Scoped):
    scope = "investigation"
    immediate_action = _text("Immediate action", required=False, rows=2)
    impact_assessment = _text("Impact assessment", required=False)
    root_cause_category = forms.ChoiceField(
        label="Root-cause category",
        required=False,
        choices=[("", "Not yet known"), *RootCauseCategory.choices],
    )
    root_cause = _text("Root cause", required=False)
    human_error_justification = _text(
        "If human error: why procedure, training or design did not prevent it",
        required=False,
        rows=2,
    )
    reason = _reason()


class ExtensionForm(_Scoped):
    scope = "extension"
    requested_due_on = _date("New closure date")
    reason = _reason("Why more time is needed")


class _WithOwner(_Scoped):
    """A form naming an owner among `people` (the people the page offers)."""

    owner = forms.ModelChoiceField(
        label="Owner", queryset=User.objects.none(), to_field_name="username"
    )

    def __init__(self, *args: Any, people: QuerySet[User], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["owner"]
        assert isinstance(field, forms.ModelChoiceField)  # noqa: S101  (declared above)
        field.queryset = people
        field.label_from_instance = lambda user: str(user.printed_name)  # type: ignore[method-assign,assignment]


class CapaForm(_WithOwner):
    scope = "capa"
    field_order = ["title", "description", "kind", "owner", "due_on", "effectiveness_due_on"]

    title = forms.CharField(label="Title", max_length=TITLE_MAX)
    description = _text("The plan")
    kind = forms.ChoiceField(label="Kind", choices=CapaKind.choices)
    due_on = _date("Due on")
    effectiveness_due_on = _date("Effectiveness check on")
    first_action = _text("First action", rows=2)
    first_action_due_on = _date("First action due on")
    reason = _reason()

    def plan(self) -> dict[str, Any]:
        """The valid form as `services.capa_create` keywords, less the actor and the source."""
        data = self.cleaned_data
        first = ActionInput(data["first_action"], data["owner"], data["first_action_due_on"])
        keys = ("title", "description", "kind", "owner", "due_on", "effectiveness_due_on")
        return {**{key: data[key] for key in keys}, "reason": data["reason"], "actions": [first]}


class ActionForm(_WithOwner):
    scope = "action"
    field_order = ["description", "owner", "due_on", "reason"]

    description = _text("Action", rows=2)
    due_on = _date("Due on")
    reason = _reason()


class ActionDoneForm(_Scoped):
    scope = "done"
    outcome = _text("What was done", rows=2)


class EffectivenessForm(_Scoped):
    scope = "effectiveness"
    effectiveness = forms.ChoiceField(label="Finding", choices=Effectiveness.choices)
    notes = _text("Evidence")
    reason = _reason()


class TrendForm(forms.Form):
    months = forms.TypedChoiceField(
        label="Period",
        coerce=int,
        choices=[(6, "6 months"), (12, "12 months"), (24, "24 months")],
        initial=12,
        required=False,
    )
    product = forms.ModelChoiceField(
        label="Product",
        queryset=Product.objects.none(),
        to_field_name="code",
        required=False,
        empty_label="Every product",
    )

    def __init__(self, *args: Any, products: QuerySet[Product], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["product"]
        assert isinstance(field, forms.ModelChoiceField)  # noqa: S101  (declared above)
        field.queryset = products
