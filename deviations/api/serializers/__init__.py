"""Deviations API: one read serializer per record, and a strict input serializer per write.

Reads nest the shapes the other apps' APIs already use (a site, a person, a signature); writes
accept plain values — a site code, a batch or deviation number, a step position, a
specification key, a username, ISO dates — and leave every rule (who may, in which status,
within which dates) to `deviations.services`. `status` is read-only everywhere: a deviation or
a CAPA moves only through its POST actions (design §6; DV-01…DV-05, ES-01).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django.db import models
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from batches.api.filters import BATCH_NUMBER_PATTERN
from batches.api.serializers import SignatureBriefSerializer, signature_data
from batches.choices import STEPS_MAX
from batches.models import Batch, StepRecord, TestResult
from batches.selectors import batches_visible_to
from controlsite.api.base import SignatureInputSerializer, StrictSerializer
from controlsite.api.fields import NamedChoiceField
from controlsite.signatures.models import SignatureMeaning
from deviations.choices import (
    CLASS_BADGE,
    CLASS_CRITERIA,
    DEVIATION_BADGE,
    REASON_MAX,
    TEXT_MAX,
    TITLE_MAX,
    ActionStatus,
    CapaKind,
    CapaSource,
    CapaStatus,
    DeviationClass,
    DeviationSource,
    DeviationStatus,
    Effectiveness,
    ExtensionStatus,
    RootCauseCategory,
)
from deviations.models import Capa, CapaAction, Deviation, DeviationExtension
from deviations.selectors import deviations_visible_to
from masterfile.api.serializers import StrictIntegerField
from sites.api.serializers import (
    SiteBriefSerializer,
    SiteCodeField,
    SitePersonSerializer,
    UsernameField,
)

REASON_HELP = "Why: kept with the change in the audit trail."
AUDIT_REFERENCE_MAX = 100
# A CAPA raised with more actions than this is a plan to split, not one record.
ACTIONS_MAX = 50
DEVIATION_NUMBER_PATTERN = r"^DEV-[0-9]{4}-[0-9]{4,11}$"
CAPA_NUMBER_PATTERN = r"^CAPA-[0-9]{4}-[0-9]{4,10}$"
SPECIFICATION_KEY_MAX = 40


def _reason_field(*, required: bool = True) -> serializers.CharField:
    if required:
        return serializers.CharField(max_length=REASON_MAX, help_text=REASON_HELP)
    return serializers.CharField(
        max_length=REASON_MAX,
        required=False,
        allow_blank=True,
        help_text=f"Optional. {REASON_HELP}",
    )


def _criteria_help() -> str:
    return " ".join(f"`{cls}`: {CLASS_CRITERIA[cls]}" for cls in DeviationClass.values)


#
# Fields naming records by number
#


class BatchNumberField(serializers.RegexField):
    """A batch named by its number; one you may not see does not exist (400)."""

    default_error_messages = {
        "invalid": "A batch number <SITE>-<YYMMDD>-<NNN>, e.g. LDS1-261122-001.",
        "unknown_batch": "No such batch (or not one you can see).",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "The batch's number, e.g. LDS1-261122-001.")
        super().__init__(BATCH_NUMBER_PATTERN, max_length=32, **kwargs)

    def run_validation(self, data: Any = empty) -> Any:
        number = super().run_validation(data)
        request = self.context.get("request")
        batch = batches_visible_to(getattr(request, "user", None)).filter(number=number).first()
        if batch is None:
            self.fail("unknown_batch")
        return batch


class DeviationNumberField(serializers.RegexField):
    """A deviation named by its number; one you may not see does not exist (400)."""

    default_error_messages = {
        "invalid": "A deviation number, e.g. DEV-2026-0007.",
        "unknown_deviation": "No such deviation (or not one you can see).",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "The deviation's number, e.g. DEV-2026-0007.")
        super().__init__(DEVIATION_NUMBER_PATTERN, max_length=20, **kwargs)

    def run_validation(self, data: Any = empty) -> Any:
        number = super().run_validation(data)
        request = self.context.get("request")
        deviation = (
            deviations_visible_to(getattr(request, "user", None))
            .select_related("site")
            .filter(number=number)
            .first()
        )
        if deviation is None:
            self.fail("unknown_deviation")
        return deviation


#
# Signature meanings: one named enum per action, so the OpenAPI document has no collisions
#


class ClosureMeaning(models.TextChoices):
    APPROVED = SignatureMeaning.APPROVED.value, SignatureMeaning.APPROVED.label


#
# Shared read pieces
#


def _person(user: Any) -> dict[str, Any] | None:
    return None if user is None else dict(SitePersonSerializer(user).data)


def _today(context: Mapping[str, Any]) -> dt.date:
    today: dt.date | None = context.get("today")
    return today or timezone.localdate()


#
# Deviations
#


class ExtensionLinksSerializer(serializers.Serializer[DeviationExtension]):
    self = serializers.SerializerMethodField(help_text="This extension in the API.")
    approve = serializers.SerializerMethodField(help_text="POST here to approve (QA).")
    refuse = serializers.SerializerMethodField(help_text="POST here to refuse (QA).")

    def get_self(self, extension: DeviationExtension) -> str:
        return reverse("api:deviation-extension-detail", args=[extension.pk])

    def get_approve(self, extension: DeviationExtension) -> str:
        return reverse("api:deviation-extension-approve", args=[extension.pk])

    def get_refuse(self, extension: DeviationExtension) -> str:
        return reverse("api:deviation-extension-refuse", args=[extension.pk])


class DeviationExtensionSerializer(serializers.ModelSerializer[DeviationExtension]):
    """A request to move a deviation's closure date, and QA's decision (DV-04)."""

    deviation = serializers.CharField(source="deviation.number", read_only=True)
    status = NamedChoiceField(ExtensionStatus, read_only=True)
    requested_by = SitePersonSerializer(source="created_by", read_only=True, allow_null=True)
    requested_at = serializers.DateTimeField(source="created_at", read_only=True)
    decided_by = SitePersonSerializer(read_only=True, allow_null=True)
    links = ExtensionLinksSerializer(source="*", read_only=True)

    class Meta:
        model = DeviationExtension
        fields = [
            "id",
            "deviation",
            "current_due_on",
            "requested_due_on",
            "reason",
            "status",
            "requested_by",
            "requested_at",
            "decided_by",
            "decided_at",
            "decision_reason",
            "links",
        ]
        read_only_fields = fields


class DeviationLinksSerializer(serializers.Serializer[Deviation]):
    self = serializers.SerializerMethodField(help_text="This deviation in the API.")
    html = serializers.SerializerMethodField(help_text="This deviation's page.")
    confirm_class = serializers.SerializerMethodField(help_text="POST here to confirm the class.")
    investigation = serializers.SerializerMethodField(
        help_text="POST the investigation's fields here."
    )
    extensions = serializers.SerializerMethodField(help_text="POST an extension request here.")
    capas = serializers.SerializerMethodField(help_text="Its CAPAs in the API.")

    def _url(self, name: str, deviation: Deviation) -> str:
        return reverse(f"api:deviation-{name}", args=[deviation.number])

    def get_self(self, deviation: Deviation) -> str:
        return self._url("detail", deviation)

    def get_html(self, deviation: Deviation) -> str:
        return reverse("deviations:detail", args=[deviation.number])

    def get_confirm_class(self, deviation: Deviation) -> str:
        return self._url("confirm-class", deviation)

    def get_investigation(self, deviation: Deviation) -> str:
        return self._url("investigation", deviation)

    def get_extensions(self, deviation: Deviation) -> str:
        return self._url("extensions", deviation)

    def get_capas(self, deviation: Deviation) -> str:
        return reverse("api:capa-list") + f"?deviation={deviation.number}"


def _blank_as_null(value: str) -> str | None:
    return value or None


class DeviationSerializer(serializers.ModelSerializer[Deviation]):
    """A deviation: where it comes from, its class as proposed, as confirmed and in force, its
    status and dates, the investigation, the closure signature and its CAPAs."""

    site = SiteBriefSerializer(read_only=True)
    batch = serializers.CharField(
        source="batch.number", read_only=True, allow_null=True, help_text="The batch's number."
    )
    step = serializers.IntegerField(
        source="step_record.position",
        read_only=True,
        allow_null=True,
        help_text="The position of the batch step it was raised from, or null.",
    )
    result = serializers.CharField(
        source="result.specification.key",
        read_only=True,
        allow_null=True,
        help_text="The specification key of the result it was raised from, or null.",
    )
    # A field named like Field.source (the record's origin, not the attribute path).
    source = NamedChoiceField(DeviationSource, read_only=True)  # type: ignore[assignment]
    proposed_class = NamedChoiceField(DeviationClass, read_only=True)
    confirmed_class = serializers.SerializerMethodField(
        help_text="The class Control Site QA confirmed, or null until then (DV-03)."
    )
    deviation_class = NamedChoiceField(
        DeviationClass,
        read_only=True,
        help_text="The class in force: QA's once confirmed, the raiser's proposal until then.",
    )
    class_badge = serializers.SerializerMethodField(help_text="Colour of the class in force.")
    class_confirmed_by = SitePersonSerializer(read_only=True, allow_null=True)
    status = NamedChoiceField(DeviationStatus, read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    badge = serializers.SerializerMethodField(help_text="Colour of the status.")
    overdue = serializers.SerializerMethodField(
        help_text="Open and past its triage date (while open) or its closure date (DV-04)."
    )
    raised_at = serializers.DateTimeField(source="created_at", read_only=True)
    raised_by = SitePersonSerializer(
        source="created_by",
        read_only=True,
        allow_null=True,
        help_text="Null when the system raised it from a batch signal.",
    )
    root_cause_category = serializers.SerializerMethodField(
        help_text="The root-cause category, or null until the investigation names one."
    )
    closed_by = SitePersonSerializer(read_only=True, allow_null=True)
    closure_signature = serializers.SerializerMethodField(
        help_text="Control Site QA's closure signature (meaning `approved`), or null."
    )
    capas = serializers.SerializerMethodField(help_text="The numbers of its CAPAs.")
    links = DeviationLinksSerializer(source="*", read_only=True)

    class Meta:
        model = Deviation
        fields = [
            "number",
            "site",
            "batch",
            "step",
            "result",
            "source",
            "audit_reference",
            "title",
            "description",
            "proposed_class",
            "confirmed_class",
            "deviation_class",
            "class_badge",
            "class_confirmed_by",
            "class_confirmed_at",
            "status",
            "status_display",
            "badge",
            "occurred_at",
            "raised_at",
            "raised_by",
            "triage_due_on",
            "due_on",
            "overdue",
            "triaged_at",
            "immediate_action",
            "impact_assessment",
            "root_cause_category",
            "root_cause",
            "human_error_justification",
            "closed_at",
            "closed_by",
            "closure_signature",
            "cancel_reason",
            "capas",
            "links",
        ]
        read_only_fields = fields

    @extend_schema_field(NamedChoiceField(DeviationClass, allow_null=True))
    def get_confirmed_class(self, deviation: Deviation) -> str | None:
        return _blank_as_null(deviation.confirmed_class)

    def get_class_badge(self, deviation: Deviation) -> str:
        return CLASS_BADGE[deviation.deviation_class]

    def get_badge(self, deviation: Deviation) -> str:
        return DEVIATION_BADGE[deviation.status]

    def get_overdue(self, deviation: Deviation) -> bool:
        return deviation.is_overdue(_today(self.context))

    @extend_schema_field(NamedChoiceField(RootCauseCategory, allow_null=True))
    def get_root_cause_category(self, deviation: Deviation) -> str | None:
        return _blank_as_null(deviation.root_cause_category)

    @extend_schema_field(SignatureBriefSerializer(allow_null=True))
    def get_closure_signature(self, deviation: Deviation) -> dict[str, Any] | None:
        return signature_data(deviation.closure_signature, deviation)

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_capas(self, deviation: Deviation) -> list[str]:
        # Prefetched in number order by the views; ordered here otherwise.
        cache = getattr(deviation, "_prefetched_objects_cache", {})
        rows = cache["capas"] if "capas" in cache else deviation.capas.all()
        return sorted(capa.number for capa in rows)


class DeviationDetailSerializer(DeviationSerializer):
    """One deviation with its extension requests, newest first."""

    class_criteria = serializers.SerializerMethodField(
        help_text="What the class in force means, as shown when it is confirmed (DV-03)."
    )
    extensions = serializers.SerializerMethodField(help_text="Extension requests, newest first.")

    class Meta(DeviationSerializer.Meta):
        fields = [*DeviationSerializer.Meta.fields, "class_criteria", "extensions"]
        read_only_fields = fields

    def get_class_criteria(self, deviation: Deviation) -> str:
        return CLASS_CRITERIA[deviation.deviation_class]

    @extend_schema_field(DeviationExtensionSerializer(many=True))
    def get_extensions(self, deviation: Deviation) -> list[Any]:
        rows = deviation.extensions.select_related("deviation", "created_by", "decided_by")
        return list(DeviationExtensionSerializer(rows.order_by("-id"), many=True).data)


class DeviationInputSerializer(StrictSerializer):
    """The base of every deviations API input."""


class DeviationRaiseSerializer(DeviationInputSerializer):
    """A deviation raised at a site, optionally on one of its batches, a step or a result."""

    site = SiteCodeField(help_text="The code of the site it happened at, e.g. LDS1.")
    title = serializers.CharField(max_length=TITLE_MAX)
    description = serializers.CharField(max_length=TEXT_MAX, help_text="What happened.")
    proposed_class = NamedChoiceField(
        DeviationClass, help_text="Your proposal; QA confirms it. " + _criteria_help()
    )
    batch = BatchNumberField(
        required=False, help_text="The batch it concerns, made at the site (optional)."
    )
    step = StrictIntegerField(
        min_value=1,
        max_value=STEPS_MAX,
        required=False,
        help_text="The position of the recorded step of `batch` it was seen at (optional).",
    )
    result = serializers.CharField(
        max_length=SPECIFICATION_KEY_MAX,
        required=False,
        help_text="The specification key of the recorded result of `batch` (optional).",
    )
    audit_reference = serializers.CharField(
        max_length=AUDIT_REFERENCE_MAX,
        required=False,
        allow_blank=True,
        help_text="The audit finding it comes from, if any.",
    )
    immediate_action = serializers.CharField(
        max_length=TEXT_MAX, required=False, allow_blank=True, help_text="What was done at once."
    )
    occurred_at = serializers.DateTimeField(required=False, help_text="Now, if not given.")
    reason = _reason_field(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Resolve the step and the result within the batch named (references, not rules)."""
        attrs = dict(attrs)
        batch: Batch | None = attrs.get("batch")
        position = attrs.pop("step", None)
        key = attrs.pop("result", None)
        if position is None and key is None:
            return attrs
        if batch is None:
            raise serializers.ValidationError(
                {"batch": ["Name the batch the step or result belongs to."]},
                code="batch_required",
            )
        if position is not None:
            record = StepRecord.objects.filter(batch=batch, position=position).first()
            if record is None:
                raise serializers.ValidationError(
                    {"step": [f"Step {position} of {batch.number} is not recorded."]},
                    code="unknown_step",
                )
            attrs["step_record"] = record
        if key is not None:
            result = TestResult.objects.filter(batch=batch, specification__key=key).first()
            if result is None:
                raise serializers.ValidationError(
                    {"result": [f"{batch.number} has no result for {key!r}."]},
                    code="unknown_result",
                )
            attrs["result"] = result
        return attrs


class DeviationReasonSerializer(DeviationInputSerializer):
    """A lifecycle step that needs only a reason."""

    reason = _reason_field()


class DeviationClassConfirmSerializer(DeviationInputSerializer):
    deviation_class = NamedChoiceField(DeviationClass, help_text=_criteria_help())
    reason = _reason_field()


class DeviationInvestigationSerializer(DeviationInputSerializer):
    """The investigation's fields: send those that change, with a reason."""

    immediate_action = serializers.CharField(max_length=TEXT_MAX, required=False, allow_blank=True)
    impact_assessment = serializers.CharField(max_length=TEXT_MAX, required=False, allow_blank=True)
    root_cause_category = NamedChoiceField(
        RootCauseCategory,
        required=False,
        help_text="`human_error` needs a `human_error_justification` (DV-01).",
    )
    root_cause = serializers.CharField(max_length=TEXT_MAX, required=False, allow_blank=True)
    human_error_justification = serializers.CharField(
        max_length=TEXT_MAX,
        required=False,
        allow_blank=True,
        help_text="Why procedure, training or design did not prevent the error.",
    )
    reason = _reason_field()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if len(attrs) < 2:  # the reason alone changes nothing
            raise serializers.ValidationError(
                {"non_field_errors": ["Send at least one investigation field."]},
                code="nothing_to_change",
            )
        return attrs


class DeviationCloseSerializer(SignatureInputSerializer):
    """Control Site QA closes the deviation, signed with the meaning `approved`."""

    meaning = NamedChoiceField(ClosureMeaning)


class ExtensionRequestSerializer(DeviationInputSerializer):
    requested_due_on = serializers.DateField(
        help_text="The new closure date: after the current one, at most 180 days later."
    )
    reason = _reason_field()


class ExtensionDecideSerializer(DeviationInputSerializer):
    reason = _reason_field()


#
# CAPA
#


class CapaActionLinksSerializer(serializers.Serializer[CapaAction]):
    self = serializers.SerializerMethodField(help_text="This action in the API.")
    complete = serializers.SerializerMethodField(
        help_text="POST here to record it done (its owner or QA)."
    )

    def get_self(self, action: CapaAction) -> str:
        return reverse("api:capa-action-detail", args=[action.pk])

    def get_complete(self, action: CapaAction) -> str:
        return reverse("api:capa-action-complete", args=[action.pk])


class CapaActionSerializer(serializers.ModelSerializer[CapaAction]):
    """One action of a CAPA, with its owner, due date and what was done."""

    capa = serializers.CharField(source="capa.number", read_only=True)
    owner = SitePersonSerializer(read_only=True)
    status = NamedChoiceField(ActionStatus, read_only=True)
    done_by = SitePersonSerializer(read_only=True, allow_null=True)
    links = CapaActionLinksSerializer(source="*", read_only=True)

    class Meta:
        model = CapaAction
        fields = [
            "id",
            "capa",
            "description",
            "owner",
            "due_on",
            "status",
            "done_at",
            "done_by",
            "outcome",
            "links",
        ]
        read_only_fields = fields


class CapaLinksSerializer(serializers.Serializer[Capa]):
    self = serializers.SerializerMethodField(help_text="This CAPA in the API.")
    html = serializers.SerializerMethodField(help_text="This CAPA's page.")
    actions = serializers.SerializerMethodField(help_text="POST an action here (QA).")
    effectiveness = serializers.SerializerMethodField(
        help_text="POST the effectiveness check here (QA)."
    )
    close = serializers.SerializerMethodField(help_text="POST here to close, signed (QA).")

    def _url(self, name: str, capa: Capa) -> str:
        return reverse(f"api:capa-{name}", args=[capa.number])

    def get_self(self, capa: Capa) -> str:
        return self._url("detail", capa)

    def get_html(self, capa: Capa) -> str:
        return reverse("deviations:capa-detail", args=[capa.number])

    def get_actions(self, capa: Capa) -> str:
        return self._url("actions", capa)

    def get_effectiveness(self, capa: Capa) -> str:
        return self._url("effectiveness", capa)

    def get_close(self, capa: Capa) -> str:
        return self._url("close", capa)


class CapaSerializer(serializers.ModelSerializer[Capa]):
    """A CAPA: its source, owner, due dates, status, effectiveness check, closure signature and
    actions (DV-02)."""

    # A field named like Field.source (the record's origin, not the attribute path).
    source = NamedChoiceField(CapaSource, read_only=True)  # type: ignore[assignment]
    deviation = serializers.CharField(
        source="deviation.number",
        read_only=True,
        allow_null=True,
        help_text="The deviation it was raised from, or null.",
    )
    site = SiteBriefSerializer(
        read_only=True, allow_null=True, help_text="Null for a Control Site audit finding."
    )
    kind = NamedChoiceField(CapaKind, read_only=True)
    owner = SitePersonSerializer(read_only=True)
    status = NamedChoiceField(CapaStatus, read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    effectiveness = serializers.SerializerMethodField(
        help_text="The effectiveness check's finding, or null until it is recorded."
    )
    effectiveness_checked_by = SitePersonSerializer(read_only=True, allow_null=True)
    raised_at = serializers.DateTimeField(source="created_at", read_only=True)
    raised_by = SitePersonSerializer(source="created_by", read_only=True, allow_null=True)
    closure_signature = serializers.SerializerMethodField(
        help_text="Control Site QA's closure signature (meaning `approved`), or null."
    )
    actions = serializers.SerializerMethodField(help_text="By due date.")
    links = CapaLinksSerializer(source="*", read_only=True)

    class Meta:
        model = Capa
        fields = [
            "number",
            "source",
            "deviation",
            "audit_reference",
            "site",
            "kind",
            "title",
            "description",
            "owner",
            "due_on",
            "effectiveness_due_on",
            "status",
            "status_display",
            "effectiveness",
            "effectiveness_notes",
            "effectiveness_checked_by",
            "effectiveness_checked_at",
            "raised_at",
            "raised_by",
            "closed_at",
            "closure_signature",
            "cancel_reason",
            "actions",
            "links",
        ]
        read_only_fields = fields

    @extend_schema_field(NamedChoiceField(Effectiveness, allow_null=True))
    def get_effectiveness(self, capa: Capa) -> str | None:
        return _blank_as_null(capa.effectiveness)

    @extend_schema_field(SignatureBriefSerializer(allow_null=True))
    def get_closure_signature(self, capa: Capa) -> dict[str, Any] | None:
        return signature_data(capa.closure_signature, capa)

    @extend_schema_field(CapaActionSerializer(many=True))
    def get_actions(self, capa: Capa) -> list[Any]:
        # Prefetched (with their people) by the views; read here otherwise.
        cache = getattr(capa, "_prefetched_objects_cache", {})
        if "actions" in cache:
            rows = sorted(cache["actions"], key=lambda a: (a.due_on, a.pk))
        else:
            rows = list(capa.actions.select_related("capa", "owner", "done_by"))
        return list(CapaActionSerializer(rows, many=True).data)


class CapaActionInputSerializer(DeviationInputSerializer):
    """One action: what, who and by when."""

    description = serializers.CharField(max_length=TEXT_MAX)
    owner = UsernameField(help_text="The username of the person who does it.")
    due_on = serializers.DateField(help_text="Today or later.")


class CapaCreateSerializer(DeviationInputSerializer):
    """A CAPA raised from a deviation or an audit finding (exactly one), with its actions."""

    title = serializers.CharField(max_length=TITLE_MAX)
    description = serializers.CharField(max_length=TEXT_MAX)
    kind = NamedChoiceField(CapaKind)
    owner = UsernameField(help_text="The username of the person who owns the CAPA.")
    due_on = serializers.DateField(help_text="Today or later (400 `date_in_past`).")
    effectiveness_due_on = serializers.DateField(
        help_text="When the effectiveness check is due: on or after `due_on`."
    )
    deviation = DeviationNumberField(
        required=False, help_text="The open deviation it is raised from, e.g. DEV-2026-0007."
    )
    audit_reference = serializers.CharField(
        max_length=AUDIT_REFERENCE_MAX,
        required=False,
        allow_blank=True,
        help_text="The audit finding it is raised from, instead of a deviation.",
    )
    actions = serializers.ListField(
        child=CapaActionInputSerializer(),
        required=False,
        max_length=ACTIONS_MAX,
        help_text=f"Its first actions, at most {ACTIONS_MAX}; more may be added later.",
    )
    reason = _reason_field()


class CapaActionAddSerializer(CapaActionInputSerializer):
    reason = _reason_field()


class CapaEffectivenessSerializer(DeviationInputSerializer):
    effectiveness = NamedChoiceField(
        Effectiveness,
        help_text="`effective` readies the CAPA to close; `not_effective` keeps it open for "
        "more actions.",
    )
    notes = serializers.CharField(max_length=TEXT_MAX, help_text="What the check found.")
    reason = _reason_field()


class CapaCloseSerializer(SignatureInputSerializer):
    """Control Site QA closes the CAPA, signed with the meaning `approved`."""

    meaning = NamedChoiceField(ClosureMeaning)


class CapaActionCompleteSerializer(DeviationInputSerializer):
    outcome = serializers.CharField(max_length=TEXT_MAX, help_text="What was done.")
    reason = _reason_field(required=False)
