"""The training pages' forms. They only shape what was typed: every rule (who may, which kinds
a trainer assesses, superseded versions, self-assessment, due dates) belongs to the services
(training/services.py), whose refusal the page shows as it is.

Forms that sign subclass the shared `SignatureForm`: the meaning is fixed by the action
(acknowledged, reviewed, verified, approved), the reason for signing is the reason for the
change, and each gets a prefix of its own so several can share a page.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet

from controlsite.accounts.models import User
from controlsite.errors import REASON_MAX
from controlsite.signatures.forms import SignatureForm
from controlsite.signatures.models import SignatureMeaning
from sites.models import Site
from training.choices import AssessmentResult, CurriculumRole, ItemKind
from training.models import NUMBER_MAX, TEXT_MAX, TITLE_MAX, TrainingItem


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


def _choose(
    form: forms.Form, name: str, queryset: QuerySet[Any], label: Any = None
) -> forms.ModelChoiceField[Any]:
    field = form.fields[name]
    assert isinstance(field, forms.ModelChoiceField)  # noqa: S101  (declared so)
    field.queryset = queryset
    if label is not None:
        field.label_from_instance = label  # type: ignore[method-assign]
    return field


def _person(user: User) -> str:
    return f"{user.printed_name} ({user.get_username()})"


def _site(site: Site) -> str:
    return f"{site.code} — {site.name}"


def _item(item: TrainingItem) -> str:
    return f"{item.code} — {item.title}"


class _Scoped(forms.Form):
    """A form sharing its page with others gets names and ids of its own (`<scope>-<field>`,
    `id_<scope>-<field>`): several forms of a page have a `reason`, a `user` or an `item`."""

    scope = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if self.scope:
            kwargs.setdefault("prefix", self.scope)
        super().__init__(*args, **kwargs)


#
# Signing forms
#


class AcknowledgeForm(SignatureForm):
    """The trainee signs "read and understood" (TR-03, TR-07). `version` is the procedure
    version the page showed: if a newer one has come into force since, the service refuses the
    signature (409) rather than record reading a superseded text."""

    version = forms.IntegerField(min_value=1, required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, request: Any, item: TrainingItem, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", f"ack{item.pk}")
        super().__init__(*args, request=request, meaning=SignatureMeaning.ACKNOWLEDGED, **kwargs)
        # The dialog's heading id is built from this: unique per item on the page.
        self.meaning_value = f"acknowledged-{item.pk}"
        self.fields["reason"].initial = "Read and understood"


def signing_form(
    request: Any, meaning: SignatureMeaning, prefix: str, data: Any = None
) -> SignatureForm:
    """A plain signature form with its own prefix and dialog heading id."""
    form = SignatureForm(data, request=request, meaning=meaning, prefix=prefix)
    form.meaning_value = f"{meaning.value}-{prefix}"
    return form


class VersionIssueForm(_Scoped):
    """QA issues the next version of a procedure (signed "approved" in the dialog below it)."""

    scope = "version"
    effective_on = _date("Effective on")
    change_summary = _text("What changed")
    file = forms.FileField(
        label="The procedure's file",
        help_text="PDF, Word or text; it is stored with its SHA-256 and read by every trainee.",
    )


#
# Procedures, items, curricula
#


class ProcedureForm(_Scoped):
    scope = "procedure"
    number = forms.CharField(label="Number", max_length=NUMBER_MAX)
    title = forms.CharField(label="Title", max_length=TITLE_MAX)
    due_days = forms.IntegerField(
        label="Days allowed to read each version",
        min_value=0,
        max_value=365,
        initial=30,
    )
    reason = _reason()


ASSIGNABLE_KINDS = [(value, label) for value, label in ItemKind.choices if value != ItemKind.SOP]


class ItemForm(_Scoped):
    """A new training item. An SOP's item comes with its procedure, so SOP is not offered."""

    scope = "item"
    code = forms.CharField(label="Code", max_length=NUMBER_MAX)
    title = forms.CharField(label="Title", max_length=TITLE_MAX)
    kind = forms.ChoiceField(label="Kind", choices=ASSIGNABLE_KINDS)
    description = _text("Description", required=False)
    validity_months = forms.IntegerField(
        label="Valid for (months)",
        min_value=1,
        max_value=120,
        required=False,
        help_text="Empty: never expires. The GxP refresher defaults to 12 months.",
    )
    due_days = forms.IntegerField(label="Days allowed", min_value=0, max_value=365, initial=30)
    reason = _reason()


class ItemEditForm(_Scoped):
    scope = "edit"
    title = forms.CharField(label="Title", max_length=TITLE_MAX)
    description = _text("Description", required=False)
    validity_months = forms.IntegerField(
        label="Valid for (months)",
        min_value=1,
        max_value=120,
        required=False,
        help_text="Empty: never expires. A new validity applies to records completed from now.",
    )
    due_days = forms.IntegerField(label="Days allowed", min_value=0, max_value=365)
    active = forms.BooleanField(
        label="Active",
        required=False,
        help_text="Retiring an item removes it from every curriculum and withdraws open "
        "assignments.",
    )
    reason = _reason()


class CurriculumForm(_Scoped):
    scope = "curriculum"
    role = forms.ChoiceField(label="Role", choices=CurriculumRole.choices)
    site = forms.ModelChoiceField(
        label="Site",
        queryset=Site.objects.none(),
        to_field_name="code",
        required=False,
        empty_label="Every site",
    )
    title = forms.CharField(label="Title", max_length=TITLE_MAX)
    reason = _reason()

    def __init__(self, *args: Any, sites: QuerySet[Site], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choose(self, "site", sites, _site)


class RequirementAddForm(_Scoped):
    scope = "add"
    item = forms.ModelChoiceField(
        label="Item", queryset=TrainingItem.objects.none(), to_field_name="code"
    )
    reason = _reason()

    def __init__(self, *args: Any, items: QuerySet[TrainingItem], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choose(self, "item", items, _item)


class ReasonForm(forms.Form):
    """A reason alone (removing an item from a curriculum); prefixed per row."""

    reason = _reason()


#
# Assignments and records
#


class _ForPerson(_Scoped):
    """A form naming a trainee and an item among those the page offers."""

    user = forms.ModelChoiceField(
        label="Trainee", queryset=User.objects.none(), to_field_name="username"
    )
    item = forms.ModelChoiceField(
        label="Item", queryset=TrainingItem.objects.none(), to_field_name="code"
    )

    def __init__(
        self,
        *args: Any,
        people: QuerySet[User],
        items: QuerySet[TrainingItem],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        _choose(self, "user", people, _person)
        _choose(self, "item", items, _item)


class AssignForm(_ForPerson):
    scope = "assign"
    field_order = ["user", "item", "due_on", "site", "reason"]
    due_on = _date("Due on")
    site = forms.ModelChoiceField(
        label="Site (for escalation to its lead)",
        queryset=Site.objects.none(),
        to_field_name="code",
        required=False,
        empty_label="No particular site",
    )
    reason = _reason("Why (retraining after a deviation, say)")

    def __init__(self, *args: Any, sites: QuerySet[Site], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choose(self, "site", sites, _site)


class AssessmentForm(_ForPerson):
    """A trainer's practical assessment; the signature ("reviewed") is the dialog below it."""

    scope = "assess"
    field_order = ["user", "item", "result", "notes"]
    result = forms.ChoiceField(
        label="Result",
        choices=[("", "Choose the result"), *AssessmentResult.choices],
        required=False,
        help_text="Required: the trainer signs the result they observed.",
    )
    notes = _text("Notes", required=False, rows=2)


class PaperRecordForm(_ForPerson):
    """Training completed on paper, entered by a trainer (signed "verified")."""

    scope = "enter"
    field_order = ["user", "item", "version", "completed_on", "notes"]
    version = forms.IntegerField(
        label="Procedure version read",
        min_value=1,
        required=False,
        help_text="For an SOP only: the version number on the paper record.",
    )
    completed_on = _date("Completed on")
    notes = _text("Where the paper record is kept, and what it says", rows=2)


class RecordFilterForm(forms.Form):
    person = forms.CharField(label="Person (username)", required=False, max_length=150)
    item = forms.CharField(label="Item code", required=False, max_length=NUMBER_MAX)


class AssignmentFilterForm(forms.Form):
    show = forms.ChoiceField(
        label="Show",
        required=False,
        choices=[("open", "Open"), ("overdue", "Overdue"), ("all", "All")],
    )
    site = forms.CharField(label="Site code", required=False, max_length=12)
    person = forms.CharField(label="Person (username)", required=False, max_length=150)
