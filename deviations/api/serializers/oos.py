"""OOS investigations API serializers (DV-10): one read shape with the ORIGINAL result in full,
and a strict input per write. `phase` and `outcome` are read-only: an investigation moves only
through its POST actions (`findings`, `advance`, `conclude`)."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from batches.api.serializers import (
    ResultBriefSerializer,
    SignatureBriefSerializer,
    SpecificationSerializer,
    signature_data,
)
from batches.models import TestResult
from batches.selectors import batches_visible_to
from controlsite.api.base import SignatureInputSerializer, StrictSerializer
from controlsite.api.fields import NamedChoiceField
from controlsite.signatures.models import SignatureMeaning
from deviations.api.serializers import (
    SPECIFICATION_KEY_MAX,
    BatchNumberField,
    DeviationNumberField,
    _reason_field,
)
from deviations.choices import OOS_BADGE, OOS_NEXT_PHASE, TEXT_MAX, OosOutcome, OosPhase
from deviations.models import OosInvestigation
from masterfile.api.serializers import ID_MAX, StrictIntegerField
from sites.api.serializers import SiteBriefSerializer, SitePersonSerializer

OOS_NUMBER_PATTERN = r"^OOS-[0-9]{4}-[0-9]{4,11}$"


class OosConclusionMeaning(models.TextChoices):
    """The one meaning a conclusion is signed with (its own enum in the OpenAPI document)."""

    APPROVED = SignatureMeaning.APPROVED.value, SignatureMeaning.APPROVED.label


class OosConclusionOutcome(models.TextChoices):
    """The outcomes an investigation concludes with."""

    CONFIRMED = OosOutcome.CONFIRMED.value, OosOutcome.CONFIRMED.label
    INVALIDATED = OosOutcome.INVALIDATED.value, OosOutcome.INVALIDATED.label


#
# Reads
#


class OosResultSerializer(ResultBriefSerializer):
    """The original result, exactly as recorded on the batch: an investigation never changes
    it, whatever its outcome."""

    id = serializers.IntegerField(read_only=True, help_text="The result's id.")
    batch = serializers.CharField(source="batch.number", read_only=True)
    site = SiteBriefSerializer(source="batch.site", read_only=True)
    specification = SpecificationSerializer(read_only=True)
    unit = serializers.CharField(source="specification.unit", read_only=True)

    class Meta(ResultBriefSerializer.Meta):
        fields = [
            "id",
            "batch",
            "site",
            "specification",
            *ResultBriefSerializer.Meta.fields[:2],
            "unit",
            *ResultBriefSerializer.Meta.fields[2:],
        ]
        read_only_fields = fields


class OosLinksSerializer(serializers.Serializer[OosInvestigation]):
    self = serializers.SerializerMethodField(help_text="This investigation in the API.")
    html = serializers.SerializerMethodField(help_text="This investigation's page.")
    findings = serializers.SerializerMethodField(
        help_text="POST the current phase's findings here (QA or the site lead)."
    )
    advance = serializers.SerializerMethodField(help_text="POST here for the next phase (QA).")
    conclude = serializers.SerializerMethodField(help_text="POST here to conclude, signed (QA).")

    def _url(self, name: str, oos: OosInvestigation) -> str:
        return reverse(f"api:oos-investigation-{name}", args=[oos.number])

    def get_self(self, oos: OosInvestigation) -> str:
        return self._url("detail", oos)

    def get_html(self, oos: OosInvestigation) -> str:
        return reverse("deviations:oos-detail", args=[oos.number])

    def get_findings(self, oos: OosInvestigation) -> str:
        return self._url("findings", oos)

    def get_advance(self, oos: OosInvestigation) -> str:
        return self._url("advance", oos)

    def get_conclude(self, oos: OosInvestigation) -> str:
        return self._url("conclude", oos)


class OosInvestigationSerializer(serializers.ModelSerializer[OosInvestigation]):
    """An OOS investigation: the original result, the phase it is in, the findings of each
    phase, and — once concluded — the outcome, the conclusion, the evidence of an invalidation
    and Control Site QA's signature (DV-10)."""

    result = OosResultSerializer(read_only=True)
    deviation = serializers.CharField(
        source="deviation.number",
        read_only=True,
        allow_null=True,
        help_text="The deviation it belongs to, or null.",
    )
    phase = NamedChoiceField(OosPhase, read_only=True)
    phase_display = serializers.CharField(source="get_phase_display", read_only=True)
    next_phase = serializers.SerializerMethodField(
        help_text="The phase `advance/` moves to, or null in Phase III or once concluded."
    )
    outcome = NamedChoiceField(OosOutcome, read_only=True)
    outcome_display = serializers.CharField(source="get_outcome_display", read_only=True)
    badge = serializers.SerializerMethodField(help_text="Colour of the outcome.")
    is_open = serializers.BooleanField(
        read_only=True, help_text="Open: it blocks the batch's certification (DV-05)."
    )
    opened_at = serializers.DateTimeField(source="created_at", read_only=True)
    opened_by = SitePersonSerializer(
        source="created_by",
        read_only=True,
        allow_null=True,
        help_text="Null when the system opened it from a failed registered specification.",
    )
    closure_signature = serializers.SerializerMethodField(
        help_text="Control Site QA's signature of the conclusion (meaning `approved`), or null."
    )
    capas = serializers.SerializerMethodField(help_text="The numbers of the CAPAs raised from it.")
    links = OosLinksSerializer(source="*", read_only=True)

    class Meta:
        model = OosInvestigation
        fields = [
            "number",
            "result",
            "deviation",
            "phase",
            "phase_display",
            "next_phase",
            "outcome",
            "outcome_display",
            "badge",
            "is_open",
            "phase_ia_findings",
            "phase_ib_findings",
            "phase_ii_findings",
            "phase_iii_findings",
            "conclusion",
            "invalidation_evidence",
            "opened_at",
            "opened_by",
            "closed_at",
            "closure_signature",
            "capas",
            "links",
        ]
        read_only_fields = fields

    @extend_schema_field(NamedChoiceField(OosPhase, allow_null=True))
    def get_next_phase(self, oos: OosInvestigation) -> str | None:
        return OOS_NEXT_PHASE.get(oos.phase) if oos.is_open else None

    def get_badge(self, oos: OosInvestigation) -> str:
        return OOS_BADGE[oos.outcome]

    @extend_schema_field(SignatureBriefSerializer(allow_null=True))
    def get_closure_signature(self, oos: OosInvestigation) -> dict[str, Any] | None:
        return signature_data(oos.closure_signature, oos)

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_capas(self, oos: OosInvestigation) -> list[str]:
        # Prefetched by the views; read here otherwise.
        cache = getattr(oos, "_prefetched_objects_cache", {})
        rows = cache["capas"] if "capas" in cache else oos.capas.all()
        return sorted(capa.number for capa in rows)


#
# Writes
#


class ResultIdField(StrictIntegerField):
    """A test result named by its id; one of a batch you may not see does not exist (400)."""

    default_error_messages = {"unknown_result": "No such result (or not one you can see)."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", ID_MAX)
        super().__init__(**kwargs)

    def run_validation(self, data: Any = empty) -> Any:
        pk = super().run_validation(data)
        if pk is None:
            return None
        request = self.context.get("request")
        result = (
            TestResult.objects.filter(
                pk=pk, batch__in=batches_visible_to(getattr(request, "user", None))
            )
            .select_related("batch__site", "specification")
            .first()
        )
        if result is None:
            self.fail("unknown_result")
        return result


class OosInputSerializer(StrictSerializer):
    """The base of every OOS API input."""


class OosOpenSerializer(OosInputSerializer):
    """The failed result to investigate — by `result` id, or by `batch` number and
    `specification` key as the batches API shows them (one way or the other)."""

    result = ResultIdField(
        required=False, help_text="The failed result's id (as `result.id` of an investigation)."
    )
    batch = BatchNumberField(
        required=False, help_text="With `specification`: the batch of the failed result."
    )
    specification = serializers.CharField(
        max_length=SPECIFICATION_KEY_MAX,
        required=False,
        help_text="With `batch`: the key of the failed result's specification, e.g. viability.",
    )
    deviation = DeviationNumberField(
        required=False,
        help_text="The open deviation of the same batch it belongs to (optional; by default the "
        "batch's open deviation about this result, if any).",
    )
    reason = _reason_field()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Resolve the result named (a reference, not a rule)."""
        attrs = dict(attrs)
        result = attrs.pop("result", None)
        batch = attrs.pop("batch", None)
        key = attrs.pop("specification", None)
        by_key = batch is not None or key is not None
        if (result is None) == (not by_key) or (by_key and (batch is None or key is None)):
            raise serializers.ValidationError(
                {
                    "non_field_errors": [
                        "Name the failed result by `result` id, or by `batch` and "
                        "`specification` — one way, not both."
                    ]
                },
                code="result_required",
            )
        if result is None:
            result = (
                TestResult.objects.filter(batch=batch, specification__key=key)
                .select_related("batch__site", "specification")
                .first()
            )
            if result is None:
                raise serializers.ValidationError(
                    {"specification": [f"{batch.number} has no result for {key!r}."]},
                    code="unknown_result",
                )
        attrs["result"] = result
        return attrs


class OosFindingsSerializer(OosInputSerializer):
    findings = serializers.CharField(
        max_length=TEXT_MAX,
        help_text="The findings of the current phase: what was checked and what was found. They "
        "replace what was written for this phase before; earlier phases' stay as written.",
    )
    reason = _reason_field()


class OosReasonSerializer(OosInputSerializer):
    """A step that needs only a reason."""

    reason = _reason_field()


class OosConcludeSerializer(SignatureInputSerializer):
    """Control Site QA concludes the investigation, signed with the meaning `approved`."""

    meaning = NamedChoiceField(OosConclusionMeaning)
    outcome = NamedChoiceField(
        OosConclusionOutcome,
        help_text="`invalidated` in Phase Ia or Ib, on the evidence of an assignable laboratory "
        "cause; `confirmed` from Phase II on, when the laboratory found none.",
    )
    conclusion = serializers.CharField(
        max_length=TEXT_MAX, help_text="What the investigation found and why the outcome."
    )
    invalidation_evidence = serializers.CharField(
        max_length=TEXT_MAX,
        required=False,
        allow_blank=True,
        help_text="Required to invalidate (400 `evidence_required`); empty when confirming "
        "(400 `evidence_not_applicable`).",
    )
