"""The comparability pages' forms (issue 8 §1, §4, §8). They only shape what was typed: every
rule — who may, which limits, which margin, which batches, whether a result has its pair — is
`batches.comparability.services`', whose refusal the page shows as it is (SO-08, SO-09)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from batches.choices import JUSTIFICATION_MAX, NAME_MAX, REASON_MAX, CheckStatus, LimitBasis
from batches.comparability.selectors import Cqa
from batches.comparability.services import PairEntry
from masterfile.models import Product
from sites.models import Site

VALUE_MAX_LENGTH = 40
LOT_MAX = 64
# The paired-results table starts with this many rows; "Add rows" adds ROWS_STEP more, up to
# ROWS_MAX (a check with more pairs is recorded through the API, which takes CHECK_PAIRS_MAX).
ROWS_START = 6
ROWS_STEP = 6
ROWS_MAX = 60
WINDOW_CHOICES = (90, 180, 365, 730)


def _reason(label: str = "Reason for change") -> forms.CharField:
    return forms.CharField(
        label=label, max_length=REASON_MAX, widget=forms.Textarea(attrs={"rows": 2})
    )


def _decimal_text(label: str, *, required: bool = False, help_text: str = "") -> forms.CharField:
    """A number as typed: the service parses it and says what is wrong with it."""
    return forms.CharField(
        label=label,
        required=required,
        max_length=VALUE_MAX_LENGTH,
        help_text=help_text,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )


class WindowForm(forms.Form):
    """How far back the statistics and charts look (GET)."""

    days = forms.TypedChoiceField(
        label=_("Results from the last"),
        required=False,
        coerce=int,
        choices=[(d, f"{d} days") for d in WINDOW_CHOICES],
    )

    def window_days(self, default: int = 365) -> int:
        if self.is_valid() and self.cleaned_data["days"]:
            return int(self.cleaned_data["days"])
        return default


class LimitApproveForm(forms.Form):
    """QA approves one CQA's reference limits (SO-09): from the reference site's verification
    batches (mean ± 3 SD, computed) or from the specification (optionally tighter limits), with
    the equivalence margin. The signature and its reason come from the signature dialog."""

    key = forms.ChoiceField(label=_("Critical quality attribute"))
    basis = forms.ChoiceField(
        label=_("Basis"),
        choices=LimitBasis.choices,
        widget=forms.RadioSelect,
        initial=LimitBasis.VERIFICATION,
    )
    margin = _decimal_text(
        str(_("Equivalence margin")),
        required=True,
        help_text=str(
            _(
                "The largest mean difference from the reference site that still counts as "
                "comparable, in the CQA's unit; above zero."
            )
        ),
    )
    batches = forms.MultipleChoiceField(
        label=_("Verification batches (reference site)"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("For the verification basis: at least three; limits are mean ± 3 SD."),
    )
    lower = _decimal_text(
        str(_("Lower limit")),
        help_text=str(_("For the specification basis: empty takes the specification's.")),
    )
    upper = _decimal_text(
        str(_("Upper limit")),
        help_text=str(_("For the specification basis: empty takes the specification's.")),
    )

    def __init__(
        self,
        *args: Any,
        cqas: Sequence[Cqa],
        batches: Sequence[tuple[str, str]],
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("prefix", "limit")
        super().__init__(*args, **kwargs)
        self.fields["key"].choices = [  # type: ignore[attr-defined]
            (c.key, f"{c.name} ({c.key})") for c in cqas
        ]
        self.fields["batches"].choices = list(batches)  # type: ignore[attr-defined]


class CheckFilterForm(forms.Form):
    """The checks list's filters (GET); each narrows what the user may see already."""

    status = forms.ChoiceField(
        label=_("Status"), required=False, choices=[("", _("Any status")), *CheckStatus.choices]
    )
    product = forms.ChoiceField(label=_("Product"), required=False)
    overdue = forms.BooleanField(label=_("Overdue only"), required=False)

    def __init__(self, *args: Any, products: Sequence[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["product"].choices = [  # type: ignore[attr-defined]
            ("", _("Every product")),
            *products,
        ]


class CheckScheduleForm(forms.Form):
    """Schedule a site's annual comparability check (SO-09)."""

    product = forms.ModelChoiceField(
        label=_("Product"), queryset=Product.objects.none(), to_field_name="code"
    )
    site = forms.ModelChoiceField(
        label=_("Site"), queryset=Site.objects.none(), to_field_name="code"
    )
    due_on = forms.DateField(
        label=_("Due on"), widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )
    reason = _reason()

    def __init__(
        self, *args: Any, products: QuerySet[Product], sites: QuerySet[Site], **kwargs: Any
    ) -> None:
        kwargs.setdefault("prefix", "schedule")
        kwargs.setdefault("initial", {"due_on": timezone.localdate() + dt.timedelta(days=30)})
        super().__init__(*args, **kwargs)
        self.fields["due_on"].widget.attrs["min"] = f"{timezone.localdate():%Y-%m-%d}"
        self.fields["product"].queryset = products  # type: ignore[attr-defined]
        self.fields["site"].queryset = sites  # type: ignore[attr-defined]
        self.fields["product"].label_from_instance = (  # type: ignore[attr-defined]
            lambda p: f"{p.code} — {p.name}"
        )
        self.fields["site"].label_from_instance = (  # type: ignore[attr-defined]
            lambda s: f"{s.code} — {s.name}"
        )


class CheckRecordForm(forms.Form):
    """The paired results of split starting material: rows of CQA, lot, the reference site's
    value and the site's value. A row left wholly empty is skipped; a row with one value and
    not the other goes to the service, which refuses it (400 `unpaired_results`)."""

    material = forms.CharField(
        label=_("Split starting material"),
        max_length=NAME_MAX,
        help_text=_("What was split between the reference site and the site, e.g. its lot."),
    )
    rows = forms.IntegerField(widget=forms.HiddenInput, min_value=1, max_value=ROWS_MAX)
    reason = _reason()

    def __init__(self, *args: Any, cqas: Sequence[Cqa], rows: int = ROWS_START, **kwargs: Any):
        kwargs.setdefault("prefix", "record")
        super().__init__(*args, **kwargs)
        if self.is_bound:
            raw = self.data.get(self.add_prefix("rows"), "")
            rows = int(raw) if str(raw).isdigit() else rows
        self.row_count = max(1, min(int(rows), ROWS_MAX))
        self.fields["rows"].initial = self.row_count
        choices = [("", "—"), *((c.key, f"{c.name} ({c.key})") for c in cqas)]
        for i in range(self.row_count):
            self.fields[f"key_{i}"] = forms.ChoiceField(
                label=_("CQA, row %(n)d") % {"n": i + 1}, required=False, choices=choices
            )
            self.fields[f"lot_{i}"] = forms.CharField(
                label=_("Lot, row %(n)d") % {"n": i + 1}, required=False, max_length=LOT_MAX
            )
            self.fields[f"reference_{i}"] = _decimal_text(
                str(_("Reference site value, row %(n)d") % {"n": i + 1})
            )
            self.fields[f"site_{i}"] = _decimal_text(str(_("Site value, row %(n)d") % {"n": i + 1}))

    def pair_rows(self) -> list[list[forms.BoundField]]:
        return [
            [self[f"{name}_{i}"] for name in ("key", "lot", "reference", "site")]
            for i in range(self.row_count)
        ]

    def entries(self) -> list[PairEntry]:
        """The rows that hold anything, as typed (a value left empty stays empty)."""
        data = self.cleaned_data
        out = []
        for i in range(self.row_count):
            key = data.get(f"key_{i}") or ""
            lot = (data.get(f"lot_{i}") or "").strip()
            reference = (data.get(f"reference_{i}") or "").strip()
            site = (data.get(f"site_{i}") or "").strip()
            if key or lot or reference or site:
                out.append(PairEntry(key=key, lot=lot, reference_value=reference, site_value=site))
        return out


class CheckReviewForm(forms.Form):
    """QA's conclusion on the check's statistics; signed "reviewed" in the signature dialog."""

    conclusion = forms.CharField(
        label=_("Conclusion"),
        max_length=JUSTIFICATION_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", "review")
        super().__init__(*args, **kwargs)


class CheckCancelForm(forms.Form):
    reason = _reason("Why is the check cancelled?")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", "cancel")
        super().__init__(*args, **kwargs)
