"""Complaints API: one read serializer (with the 15-day reporting clock of a serious suspected
adverse reaction, read-only) and a strict input serializer per write.

Writes accept plain values — a site code, a batch number, a product code, ISO dates, a
username — and leave every rule (who may, which dates, what closure needs) to
`deviations.services.complaints`. `status` and the clock are read-only: a complaint moves only
through its POST actions (design §6; DV-11, RP-05, RP-06, ES-01).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from batches.api.serializers import SignatureBriefSerializer, StrictBooleanField, signature_data
from controlsite.api.base import SignatureInputSerializer
from controlsite.api.fields import NamedChoiceField
from controlsite.audit.services import record_label
from controlsite.signatures.models import ElectronicSignature, SignatureMeaning
from deviations.api.serializers import (
    ACTIONS_MAX,
    BatchNumberField,
    CapaActionInputSerializer,
    ClosureMeaning,
    DeviationInputSerializer,
    _reason_field,
)
from deviations.choices import (
    COMPLAINT_BADGE,
    SERIOUS_ADR_REPORT_DAYS,
    TEXT_MAX,
    TITLE_MAX,
    CapaKind,
    ComplaintKind,
    ComplaintStatus,
)
from deviations.models import Complaint
from deviations.selectors.complaints import ReportClock, report_clock
from deviations.services.complaints import REFERENCE_MAX, REPORTER_MAX
from masterfile.api.serializers import ProductBriefSerializer
from masterfile.models import PRODUCT_CODE_PATTERN
from masterfile.selectors import products_visible_to
from sites.api.serializers import (
    SiteBriefSerializer,
    SiteCodeField,
    SitePersonSerializer,
    UsernameField,
)

COMPLAINT_NUMBER_PATTERN = r"^CMP-[0-9]{4}-[0-9]{4,11}$"


class ProductCodeField(serializers.RegexField):
    """A product named by its code; one you may not see does not exist (400)."""

    default_error_messages = {
        "invalid": "A product code: 2–16 upper-case letters, digits and hyphens, e.g. CART-01.",
        "unknown_product": "No such product (or not one you can see).",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "The product's code, e.g. CART-01.")
        super().__init__(PRODUCT_CODE_PATTERN, max_length=16, **kwargs)

    def run_validation(self, data: Any = empty) -> Any:
        code = super().run_validation(data)
        request = self.context.get("request")
        product = products_visible_to(getattr(request, "user", None)).filter(code=code).first()
        if product is None:
            self.fail("unknown_product")
        return product


#
# Reads
#


class ComplaintLinksSerializer(serializers.Serializer[Complaint]):
    self = serializers.SerializerMethodField(help_text="This complaint in the API.")
    html = serializers.SerializerMethodField(help_text="This complaint's page.")
    assess = serializers.SerializerMethodField(help_text="POST QA's assessment here.")
    reported = serializers.SerializerMethodField(
        help_text="POST the report to the MHRA here (QA or a QP)."
    )
    capas = serializers.SerializerMethodField(help_text="POST here to raise a CAPA from it (QA).")
    close = serializers.SerializerMethodField(help_text="POST here to close, signed (QA).")

    def _url(self, name: str, complaint: Complaint) -> str:
        return reverse(f"api:complaint-{name}", args=[complaint.number])

    def get_self(self, complaint: Complaint) -> str:
        return self._url("detail", complaint)

    def get_html(self, complaint: Complaint) -> str:
        return reverse("deviations:complaint-detail", args=[complaint.number])

    def get_assess(self, complaint: Complaint) -> str:
        return self._url("assess", complaint)

    def get_reported(self, complaint: Complaint) -> str:
        return self._url("reported", complaint)

    def get_capas(self, complaint: Complaint) -> str:
        return self._url("capas", complaint)

    def get_close(self, complaint: Complaint) -> str:
        return self._url("close", complaint)


def _today(context: Mapping[str, Any]) -> dt.date:
    today: dt.date | None = context.get("today")
    return today or timezone.localdate()


class ComplaintSerializer(serializers.ModelSerializer[Complaint]):
    """A complaint or suspected adverse reaction: its site, batch and product (RP-06), who told
    us and when it was first known, its seriousness and — for a serious suspected adverse
    reaction — the 15-day reporting clock (RP-05), who reported it to the MHRA when, QA's
    assessment, its status and its CAPAs."""

    kind = NamedChoiceField(ComplaintKind, read_only=True)
    site = SiteBriefSerializer(read_only=True)
    batch = serializers.CharField(
        source="batch.number",
        read_only=True,
        allow_null=True,
        help_text="The batch's number, or null when not known.",
    )
    product = ProductBriefSerializer(read_only=True)
    report_due_on = serializers.DateField(
        read_only=True,
        allow_null=True,
        help_text=f"The last day to report a serious suspected adverse reaction to the MHRA: "
        f"{SERIOUS_ADR_REPORT_DAYS} days after `aware_on` (RP-05). Null for any other complaint.",
    )
    days_left = serializers.SerializerMethodField(
        help_text="Days until `report_due_on` (0 on the day, negative once past); null once "
        "reported or without a clock."
    )
    overdue = serializers.SerializerMethodField(
        help_text="A serious suspected adverse reaction past `report_due_on`, not yet reported."
    )
    report_on_time = serializers.SerializerMethodField(
        help_text="Whether it was reported by `report_due_on`; null until reported or without "
        "a clock."
    )
    clock_state = serializers.SerializerMethodField(
        help_text="The clock's colour: `ok`, `warn` (last 3 days) or `block` (overdue or "
        "reported late); null without a clock."
    )
    reported_by = SitePersonSerializer(
        read_only=True, allow_null=True, help_text="Who recorded the report to the MHRA."
    )
    status = NamedChoiceField(ComplaintStatus, read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    badge = serializers.SerializerMethodField(help_text="Colour of the status.")
    recorded_at = serializers.DateTimeField(source="created_at", read_only=True)
    recorded_by = SitePersonSerializer(source="created_by", read_only=True, allow_null=True)
    capas = serializers.SerializerMethodField(help_text="The numbers of the CAPAs raised from it.")
    links = ComplaintLinksSerializer(source="*", read_only=True)

    class Meta:
        model = Complaint
        fields = [
            "number",
            "kind",
            "site",
            "batch",
            "product",
            "description",
            "reporter",
            "aware_on",
            "serious",
            "report_due_on",
            "days_left",
            "overdue",
            "report_on_time",
            "clock_state",
            "reported_on",
            "reported_by",
            "report_reference",
            "assessment",
            "status",
            "status_display",
            "badge",
            "recorded_at",
            "recorded_by",
            "closed_at",
            "capas",
            "links",
        ]
        read_only_fields = fields

    def _clock(self, complaint: Complaint) -> ReportClock | None:
        return report_clock(complaint, _today(self.context))

    def get_days_left(self, complaint: Complaint) -> int | None:
        clock = self._clock(complaint)
        return None if clock is None else clock.days_left

    def get_overdue(self, complaint: Complaint) -> bool:
        clock = self._clock(complaint)
        return clock is not None and clock.overdue

    def get_report_on_time(self, complaint: Complaint) -> bool | None:
        clock = self._clock(complaint)
        return None if clock is None else clock.on_time

    @extend_schema_field(serializers.ChoiceField(choices=["ok", "warn", "block"], allow_null=True))
    def get_clock_state(self, complaint: Complaint) -> str | None:
        clock = self._clock(complaint)
        return None if clock is None else clock.state

    def get_badge(self, complaint: Complaint) -> str:
        return COMPLAINT_BADGE[complaint.status]

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_capas(self, complaint: Complaint) -> list[str]:
        # Prefetched by the views; read here otherwise.
        cache = getattr(complaint, "_prefetched_objects_cache", {})
        rows = cache["capas"] if "capas" in cache else complaint.capas.all()
        return sorted(capa.number for capa in rows)


class ComplaintDetailSerializer(ComplaintSerializer):
    """One complaint, with Control Site QA's closure signature."""

    closure_signature = serializers.SerializerMethodField(
        help_text="Control Site QA's closure signature (meaning `approved`), or null while open."
    )

    class Meta(ComplaintSerializer.Meta):
        fields = [*ComplaintSerializer.Meta.fields, "closure_signature"]
        read_only_fields = fields

    @extend_schema_field(SignatureBriefSerializer(allow_null=True))
    def get_closure_signature(self, complaint: Complaint) -> dict[str, Any] | None:
        if complaint.status != ComplaintStatus.CLOSED:
            return None
        signature = (
            ElectronicSignature.objects.filter(
                target_type=record_label(complaint),
                target_id=str(complaint.pk),
                meaning=SignatureMeaning.APPROVED,
            )
            .order_by("-signed_at", "-id")
            .first()
        )
        return signature_data(signature, complaint)


#
# Writes
#


class ComplaintRecordSerializer(DeviationInputSerializer):
    """A complaint or suspected adverse reaction recorded at a site, on one of its batches or
    on a product."""

    site = SiteCodeField(help_text="The code of the site it concerns, e.g. LDS1.")
    kind = NamedChoiceField(ComplaintKind)
    batch = BatchNumberField(
        required=False,
        help_text="The batch it concerns, made at the site; the product is taken from it.",
    )
    product = ProductCodeField(
        required=False,
        help_text="The product's code, when no batch is known (with a batch: it must match).",
    )
    description = serializers.CharField(max_length=TEXT_MAX, help_text="What was reported.")
    reporter = serializers.CharField(
        max_length=REPORTER_MAX,
        help_text="Who told us: the clinician, the ward, a pharmacist (no patient identifiers).",
    )
    aware_on = serializers.DateField(
        help_text="The day it was first known: today or earlier. The 15-day clock of a serious "
        "suspected adverse reaction runs from it."
    )
    serious = StrictBooleanField(
        help_text="For a suspected adverse reaction: fatal, life-threatening, hospitalisation, "
        "lasting disability, congenital anomaly or otherwise medically important (RP-05)."
    )
    reason = _reason_field()


class ComplaintAssessSerializer(DeviationInputSerializer):
    """Control Site QA's risk assessment and investigation, and its judgement of seriousness."""

    assessment = serializers.CharField(
        max_length=TEXT_MAX, help_text="The risk assessment and investigation, in full."
    )
    serious = StrictBooleanField(
        required=False,
        help_text="Send to change the seriousness: `true` starts the 15-day clock of an "
        "adverse reaction, `false` stops it. Left out, it stays as it is.",
    )
    reason = _reason_field()


class ComplaintReportedSerializer(DeviationInputSerializer):
    """The report to the MHRA: when, and the MHRA's reference."""

    reported_on = serializers.DateField(
        help_text="The day it was reported: not in the future, not before `aware_on`."
    )
    reference = serializers.CharField(
        max_length=REFERENCE_MAX, help_text="The Yellow Card or defect report reference."
    )
    reason = _reason_field()


class ComplaintCloseSerializer(SignatureInputSerializer):
    """Control Site QA closes the complaint, signed with the meaning `approved`."""

    meaning = NamedChoiceField(ClosureMeaning)


class ComplaintCapaSerializer(DeviationInputSerializer):
    """A CAPA raised from the complaint, with its first actions (DV-02)."""

    title = serializers.CharField(max_length=TITLE_MAX)
    description = serializers.CharField(max_length=TEXT_MAX)
    kind = NamedChoiceField(CapaKind)
    owner = UsernameField(help_text="The username of the person who owns the CAPA.")
    due_on = serializers.DateField(help_text="Today or later (400 `date_in_past`).")
    effectiveness_due_on = serializers.DateField(
        help_text="When the effectiveness check is due: on or after `due_on`."
    )
    actions = serializers.ListField(
        child=CapaActionInputSerializer(),
        required=False,
        max_length=ACTIONS_MAX,
        help_text=f"Its first actions, at most {ACTIONS_MAX}; more may be added later.",
    )
    reason = _reason_field()
