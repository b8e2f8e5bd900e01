"""Training API: one read serializer per record, and a strict input serializer per write.

Reads nest the shapes the other apps' APIs already use (a person, a site); writes accept plain
values — an item's code, a username, a site code, a version number, ISO dates — and leave every
rule (who may, in which state, which version) to `training.services`. `status` is read-only
everywhere: a procedure version comes into force and an assignment closes only through the
services (design §6; TR-01…TR-07, ES-01).
"""

from __future__ import annotations

import datetime as dt
import posixpath
from typing import Any

from django import forms
from django.db import models
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from controlsite.accounts.scope import token_site_limit
from controlsite.api.base import SignatureInputSerializer, StrictSerializer
from controlsite.api.fields import NamedChoiceField
from controlsite.api.filters import AwareDateTimeField
from controlsite.errors import REASON_MAX
from controlsite.signatures.models import ElectronicSignature, SignatureMeaning
from controlsite.signatures.services import signature_is_valid
from sites.api.serializers import SiteBriefSerializer, SitePersonSerializer, UsernameField
from sites.models import SITE_CODE_PATTERN, Site
from sites.selectors import sites_visible_to
from training import selectors
from training.choices import (
    AssessmentResult,
    AssignmentCause,
    AssignmentStatus,
    CellState,
    CurriculumRole,
    ItemKind,
    RecordMethod,
    VersionStatus,
)
from training.models import (
    NUMBER_MAX,
    TEXT_MAX,
    TITLE_MAX,
    Assignment,
    Curriculum,
    Procedure,
    ProcedureVersion,
    Requirement,
    TrainingItem,
    TrainingRecord,
)

REASON_HELP = "Why: kept with the change in the audit trail."


def _reason_field() -> serializers.CharField:
    return serializers.CharField(max_length=REASON_MAX, help_text=REASON_HELP)


#
# Named vocabularies: one enum per meaning, so the OpenAPI document has no collisions
#


class ProcedureVersionStatus(models.TextChoices):
    """`VersionStatus` under a name of its own (the master file has a `VersionStatus` too)."""

    ISSUED = VersionStatus.ISSUED.value, VersionStatus.ISSUED.label
    EFFECTIVE = VersionStatus.EFFECTIVE.value, VersionStatus.EFFECTIVE.label
    SUPERSEDED = VersionStatus.SUPERSEDED.value, VersionStatus.SUPERSEDED.label


class ProcedureApprovalMeaning(models.TextChoices):
    APPROVED = SignatureMeaning.APPROVED.value, SignatureMeaning.APPROVED.label


class AcknowledgementMeaning(models.TextChoices):
    ACKNOWLEDGED = SignatureMeaning.ACKNOWLEDGED.value, SignatureMeaning.ACKNOWLEDGED.label


class AssessmentMeaning(models.TextChoices):
    REVIEWED = SignatureMeaning.REVIEWED.value, SignatureMeaning.REVIEWED.label


class PaperRecordMeaning(models.TextChoices):
    VERIFIED = SignatureMeaning.VERIFIED.value, SignatureMeaning.VERIFIED.label


#
# Fields
#


class StrictIntegerField(serializers.IntegerField):
    """An integer that must be a JSON number: DRF would take "12" or 12.0 as 12."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class StrictBooleanField(serializers.BooleanField):
    """`true` or `false`: DRF would take "yes", "1" or 1 as true."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class ItemCodeField(serializers.CharField):
    """A training item named by its code; an unknown code is a 400 (`unknown_item`)."""

    default_error_messages = {"unknown_item": "No such training item."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", NUMBER_MAX)
        kwargs.setdefault("help_text", "The training item's code, e.g. GXP-REF or SOP-MFG-001.")
        super().__init__(**kwargs)

    def run_validation(self, data: Any = empty) -> Any:
        code = super().run_validation(data)
        request = self.context.get("request")
        item = (
            selectors.items_visible_to(getattr(request, "user", None))
            .filter(code=code.strip().upper())
            .first()
        )
        if item is None:
            self.fail("unknown_item")
        return item


def nameable_sites(user: Any) -> models.QuerySet[Site]:
    """Sites a person may name in a training request: every site for those who manage
    training (trainers work at no site), the sites they can see for everyone else. A token
    limited to some sites narrows either."""
    if user is None or not getattr(user, "is_authenticated", False):
        return Site.objects.none()
    qs = Site.objects.all() if selectors.manages_training(user) else sites_visible_to(user)
    limit = token_site_limit(user)
    return qs if limit is None else qs.filter(code__in=limit)


class TrainingSiteField(serializers.RegexField):
    """A site named by its code; one you may not name does not exist (400 `unknown_site`)."""

    default_error_messages = {
        "invalid": "2–8 upper-case letters and digits, e.g. LON1.",
        "unknown_site": "No such site (or not one you can see).",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "The site's code, e.g. LON1.")
        super().__init__(SITE_CODE_PATTERN, max_length=8, **kwargs)

    def run_validation(self, data: Any = empty) -> Any:
        code = super().run_validation(data)
        if code is None:
            return None
        request = self.context.get("request")
        site = nameable_sites(getattr(request, "user", None)).filter(code=code).first()
        if site is None:
            self.fail("unknown_site")
        return site


class AwareDateTimeInputField(serializers.DateTimeField):
    """An ISO 8601 moment with its UTC offset (AT-08: no ambiguous local times)."""

    def to_internal_value(self, value: Any) -> dt.datetime:
        if not isinstance(value, str):
            self.fail("invalid", format="ISO 8601 with a UTC offset")
        try:
            parsed: dt.datetime | None = AwareDateTimeField().clean(value)
        except forms.ValidationError as exc:
            raise serializers.ValidationError(exc.messages, code=exc.code or "invalid") from exc
        if parsed is None:
            self.fail("invalid", format="ISO 8601 with a UTC offset")
        return parsed


#
# Shared read pieces
#


def _person(user: Any) -> dict[str, Any] | None:
    return None if user is None else dict(SitePersonSerializer(user).data)


class TrainingSignatureSerializer(serializers.Serializer[ElectronicSignature]):
    """A signature as shown beside a training record: name, time, meaning (ES-01), and whether
    the record still has the content that was signed (ES-03)."""

    printed_name = serializers.CharField(read_only=True)
    username = serializers.CharField(source="signer_username", read_only=True)
    meaning = serializers.CharField(read_only=True)
    meaning_display = serializers.CharField(source="get_meaning_display", read_only=True)
    signed_at = serializers.DateTimeField(read_only=True, default_timezone=dt.UTC)
    reason = serializers.CharField(read_only=True)
    valid = serializers.SerializerMethodField(
        help_text="True while the record still has the content that was signed."
    )

    def get_valid(self, signature: ElectronicSignature) -> bool:
        record = self.context.get("record")
        return record is not None and signature_is_valid(signature, record)


def signature_data(
    signature: ElectronicSignature | None, record: models.Model
) -> dict[str, Any] | None:
    if signature is None:
        return None
    return dict(TrainingSignatureSerializer(signature, context={"record": record}).data)


class TrainingItemBriefSerializer(serializers.Serializer[TrainingItem]):
    id = serializers.IntegerField(read_only=True)
    code = serializers.CharField(read_only=True)
    title = serializers.CharField(read_only=True)
    kind = NamedChoiceField(ItemKind, read_only=True)
    url = serializers.SerializerMethodField(help_text="The item in the API.")

    def get_url(self, item: TrainingItem) -> str:
        return reverse("api:training-item-detail", args=[item.pk])


class ProcedureVersionBriefSerializer(serializers.Serializer[ProcedureVersion]):
    id = serializers.IntegerField(read_only=True)
    procedure = serializers.CharField(
        source="procedure.number", read_only=True, help_text="The procedure's number."
    )
    number = serializers.IntegerField(read_only=True, help_text="The version number.")
    status = NamedChoiceField(ProcedureVersionStatus, read_only=True)
    effective_on = serializers.DateField(read_only=True)
    url = serializers.SerializerMethodField(help_text="The version in the API.")

    def get_url(self, version: ProcedureVersion) -> str:
        return reverse("api:procedure-version-detail", args=[version.pk])


def _version_brief(version: ProcedureVersion | None) -> dict[str, Any] | None:
    return None if version is None else dict(ProcedureVersionBriefSerializer(version).data)


#
# Procedures (TR-03)
#


class ProcedureLinksSerializer(serializers.Serializer[Procedure]):
    self = serializers.SerializerMethodField(help_text="This procedure in the API.")
    versions = serializers.SerializerMethodField(
        help_text="POST a new version here (multipart); its versions are listed at "
        "`procedure-versions/?procedure=<number>`."
    )
    item = serializers.SerializerMethodField(help_text="Its read-and-understood training item.")

    def get_self(self, procedure: Procedure) -> str:
        return reverse("api:procedure-detail", args=[procedure.pk])

    def get_versions(self, procedure: Procedure) -> str:
        return reverse("api:procedure-versions", args=[procedure.pk])

    @extend_schema_field({"type": "string", "nullable": True})
    def get_item(self, procedure: Procedure) -> str | None:
        item = getattr(procedure, "training_item", None)
        return None if item is None else reverse("api:training-item-detail", args=[item.pk])


def _live_versions(procedure: Procedure) -> list[ProcedureVersion]:
    """The versions issued or in force, from the list's prefetch (never a query per row)."""
    prefetched: list[ProcedureVersion] | None = getattr(procedure, "live_versions", None)
    if prefetched is not None:
        return prefetched
    return list(
        procedure.versions.filter(status__in=[VersionStatus.ISSUED, VersionStatus.EFFECTIVE])
    )


class ProcedureSerializer(serializers.ModelSerializer[Procedure]):
    """A controlled procedure (SOP) with the version in force and the one coming."""

    item_code = serializers.SerializerMethodField(
        help_text="The code of its read-and-understood training item (the procedure's number)."
    )
    version_in_force = serializers.SerializerMethodField(
        help_text="The version in force now, or null before the first comes into force."
    )
    upcoming_version = serializers.SerializerMethodField(
        help_text="A version issued and not yet in force (it comes into force on its "
        "effective date), or null."
    )
    links = ProcedureLinksSerializer(source="*", read_only=True)

    class Meta:
        model = Procedure
        fields = [
            "id",
            "number",
            "title",
            "item_code",
            "version_in_force",
            "upcoming_version",
            "created_at",
            "links",
        ]
        read_only_fields = fields

    @extend_schema_field({"type": "string", "nullable": True})
    def get_item_code(self, procedure: Procedure) -> str | None:
        item = getattr(procedure, "training_item", None)
        return None if item is None else item.code

    @extend_schema_field(ProcedureVersionBriefSerializer(allow_null=True))
    def get_version_in_force(self, procedure: Procedure) -> dict[str, Any] | None:
        found = [v for v in _live_versions(procedure) if v.status == VersionStatus.EFFECTIVE]
        return _version_brief(found[0] if found else None)

    @extend_schema_field(ProcedureVersionBriefSerializer(allow_null=True))
    def get_upcoming_version(self, procedure: Procedure) -> dict[str, Any] | None:
        found = [v for v in _live_versions(procedure) if v.status == VersionStatus.ISSUED]
        return _version_brief(found[0] if found else None)


class ProcedureDetailSerializer(ProcedureSerializer):
    """A procedure with every version it has had, newest first."""

    versions = ProcedureVersionBriefSerializer(many=True, read_only=True)

    class Meta(ProcedureSerializer.Meta):
        fields = [*ProcedureSerializer.Meta.fields, "versions"]
        read_only_fields = fields


class ProcedureCreateSerializer(StrictSerializer):
    """Register a procedure; its read-and-understood item is created with it."""

    number = serializers.CharField(
        max_length=NUMBER_MAX, help_text="The procedure's number, e.g. SOP-MFG-001 (upper-cased)."
    )
    title = serializers.CharField(max_length=TITLE_MAX)
    due_days = StrictIntegerField(
        required=False,
        min_value=0,
        max_value=365,
        help_text="Days a person has to read each new version once assigned (default 30).",
    )
    reason = _reason_field()


class ProcedureVersionLinksSerializer(serializers.Serializer[ProcedureVersion]):
    self = serializers.SerializerMethodField(help_text="This version in the API.")
    procedure = serializers.SerializerMethodField(help_text="Its procedure in the API.")

    def get_self(self, version: ProcedureVersion) -> str:
        return reverse("api:procedure-version-detail", args=[version.pk])

    def get_procedure(self, version: ProcedureVersion) -> str:
        return reverse("api:procedure-detail", args=[version.procedure_id])


class ProcedureVersionSerializer(serializers.ModelSerializer[ProcedureVersion]):
    """One issued version of a procedure: when it is (or was) in force, what changed, its file
    and QA's approval signature (TR-03)."""

    procedure = serializers.CharField(
        source="procedure.number", read_only=True, help_text="The procedure's number."
    )
    procedure_title = serializers.CharField(source="procedure.title", read_only=True)
    status = NamedChoiceField(ProcedureVersionStatus, read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    file_name = serializers.SerializerMethodField(help_text="The file's name.")
    download_url = serializers.SerializerMethodField(
        help_text="Absolute URL of the file; its SHA-256 is `file_sha256`."
    )
    approval_signature = serializers.SerializerMethodField(
        help_text="Control Site QA's signature, meaning `approved`."
    )
    issued_by = SitePersonSerializer(source="created_by", read_only=True, allow_null=True)
    links = ProcedureVersionLinksSerializer(source="*", read_only=True)

    class Meta:
        model = ProcedureVersion
        fields = [
            "id",
            "procedure",
            "procedure_title",
            "number",
            "status",
            "status_display",
            "effective_on",
            "effective_at",
            "superseded_at",
            "change_summary",
            "file_name",
            "file_sha256",
            "download_url",
            "approval_signature",
            "issued_by",
            "created_at",
            "links",
        ]
        read_only_fields = fields

    def get_file_name(self, version: ProcedureVersion) -> str:
        return posixpath.basename(version.file.name or "")

    def get_download_url(self, version: ProcedureVersion) -> str:
        path = reverse("api:procedure-version-file", args=[version.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    @extend_schema_field(TrainingSignatureSerializer(allow_null=True))
    def get_approval_signature(self, version: ProcedureVersion) -> dict[str, Any] | None:
        return signature_data(version.approval_signature, version)


class ProcedureVersionIssueSerializer(SignatureInputSerializer):
    """Issue the next version (multipart): its file, its effective date and what changed,
    signed by Control Site QA with the meaning `approved`."""

    effective_on = serializers.DateField(
        help_text="The day it comes into force: today (at once) or later (400 "
        "`effective_in_past` before today)."
    )
    change_summary = serializers.CharField(max_length=TEXT_MAX, help_text="What changed.")
    file = serializers.FileField(
        help_text="The procedure's text: PDF, Word, Excel, PNG, JPEG, text or CSV, within the "
        "evidence size limit (400 `evidence_type`, `evidence_too_large`, `evidence_empty`)."
    )
    meaning = NamedChoiceField(ProcedureApprovalMeaning)


#
# Training items (TR-01, TR-04, TR-07)
#


class TrainingItemLinksSerializer(serializers.Serializer[TrainingItem]):
    self = serializers.SerializerMethodField(help_text="This item in the API.")
    records = serializers.SerializerMethodField(help_text="Its records you can see.")
    assignments = serializers.SerializerMethodField(help_text="Its assignments you can see.")

    def get_self(self, item: TrainingItem) -> str:
        return reverse("api:training-item-detail", args=[item.pk])

    def get_records(self, item: TrainingItem) -> str:
        return reverse("api:training-record-list") + f"?item={item.code}"

    def get_assignments(self, item: TrainingItem) -> str:
        return reverse("api:training-assignment-list") + f"?item={item.code}"


class TrainingItemSerializer(serializers.ModelSerializer[TrainingItem]):
    """Something a person must hold to be qualified: the GxP induction, the yearly refresher,
    the accountability item, an SOP's read-and-understood, or a practical assessment."""

    kind = NamedChoiceField(ItemKind, read_only=True)
    kind_display = serializers.CharField(source="get_kind_display", read_only=True)
    procedure = serializers.CharField(
        source="procedure.number",
        read_only=True,
        allow_null=True,
        help_text="For an SOP's item, the procedure's number; else null.",
    )
    validity_months = serializers.IntegerField(
        read_only=True,
        allow_null=True,
        help_text="Months a completion stays current; null: it never expires.",
    )
    links = TrainingItemLinksSerializer(source="*", read_only=True)

    class Meta:
        model = TrainingItem
        fields = [
            "id",
            "code",
            "title",
            "kind",
            "kind_display",
            "description",
            "procedure",
            "validity_months",
            "due_days",
            "active",
            "created_at",
            "updated_at",
            "links",
        ]
        read_only_fields = fields


class TrainingItemCreateSerializer(StrictSerializer):
    """Define an item. An SOP's item comes with its procedure (400 `sop_item_from_procedure`)."""

    code = serializers.CharField(max_length=NUMBER_MAX, help_text="Unique; upper-cased.")
    title = serializers.CharField(max_length=TITLE_MAX)
    kind = NamedChoiceField(ItemKind)
    description = serializers.CharField(max_length=TEXT_MAX, required=False, allow_blank=True)
    validity_months = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=120,
        help_text="Months a completion stays current; omit or null: never expires (a "
        "refresher defaults to the configured 12).",
    )
    due_days = StrictIntegerField(
        required=False,
        min_value=0,
        max_value=365,
        help_text="Days from assignment to the due date (default 30).",
    )
    reason = _reason_field()


class TrainingItemUpdateSerializer(StrictSerializer):
    """The fields that change, and why; the others stay as they are."""

    title = serializers.CharField(max_length=TITLE_MAX, required=False)
    description = serializers.CharField(max_length=TEXT_MAX, required=False, allow_blank=True)
    validity_months = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=120,
        help_text="Applies to completions from now on; null: never expires.",
    )
    due_days = StrictIntegerField(required=False, min_value=0, max_value=365)
    active = StrictBooleanField(
        required=False,
        help_text="`false` retires the item: it leaves every curriculum and its open "
        "assignments are withdrawn.",
    )
    reason = _reason_field()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if set(attrs) == {"reason"}:
            raise serializers.ValidationError(
                {"non_field_errors": ["Send at least one field to change."]},
                code="nothing_to_change",
            )
        return attrs


#
# Curricula (TR-05)
#


class RequirementSerializer(serializers.Serializer[Requirement]):
    item = TrainingItemBriefSerializer(read_only=True)
    added_at = serializers.DateTimeField(source="created_at", read_only=True)
    removed_at = serializers.DateTimeField(read_only=True, allow_null=True)


class CurriculumLinksSerializer(serializers.Serializer[Curriculum]):
    self = serializers.SerializerMethodField(help_text="This curriculum in the API.")
    add_requirement = serializers.SerializerMethodField(help_text="POST an item to add here.")
    remove_requirement = serializers.SerializerMethodField(help_text="POST an item to remove here.")

    def get_self(self, curriculum: Curriculum) -> str:
        return reverse("api:curriculum-detail", args=[curriculum.pk])

    def get_add_requirement(self, curriculum: Curriculum) -> str:
        return reverse("api:curriculum-add-requirement", args=[curriculum.pk])

    def get_remove_requirement(self, curriculum: Curriculum) -> str:
        return reverse("api:curriculum-remove-requirement", args=[curriculum.pk])


def _requirements(curriculum: Curriculum, *, current: bool) -> list[Requirement]:
    rows: list[Requirement] | None = getattr(curriculum, "all_requirements", None)
    if rows is None:
        rows = list(curriculum.requirements.select_related("item").order_by("item__code", "id"))
    return [r for r in rows if (r.removed_at is None) == current]


class CurriculumSerializer(serializers.ModelSerializer[Curriculum]):
    """What a role needs at one site, or at every site (`site` null) (TR-05)."""

    role = NamedChoiceField(CurriculumRole, read_only=True)
    role_display = serializers.CharField(source="get_role_display", read_only=True)
    site = SiteBriefSerializer(
        read_only=True, allow_null=True, help_text="Null: the curriculum applies at every site."
    )
    requirements = serializers.SerializerMethodField(
        help_text="The items the role needs now, by code."
    )
    links = CurriculumLinksSerializer(source="*", read_only=True)

    class Meta:
        model = Curriculum
        fields = [
            "id",
            "role",
            "role_display",
            "site",
            "title",
            "requirements",
            "created_at",
            "links",
        ]
        read_only_fields = fields

    @extend_schema_field(RequirementSerializer(many=True))
    def get_requirements(self, curriculum: Curriculum) -> list[dict[str, Any]]:
        return [
            dict(RequirementSerializer(r).data) for r in _requirements(curriculum, current=True)
        ]


class CurriculumDetailSerializer(CurriculumSerializer):
    """A curriculum with the items it required once and no longer does (TR-05: what did this
    role need on that day?)."""

    removed_requirements = serializers.SerializerMethodField(
        help_text="Items removed, with when; never deleted."
    )

    class Meta(CurriculumSerializer.Meta):
        fields = [*CurriculumSerializer.Meta.fields, "removed_requirements"]
        read_only_fields = fields

    @extend_schema_field(RequirementSerializer(many=True))
    def get_removed_requirements(self, curriculum: Curriculum) -> list[dict[str, Any]]:
        return [
            dict(RequirementSerializer(r).data) for r in _requirements(curriculum, current=False)
        ]


class CurriculumCreateSerializer(StrictSerializer):
    role = NamedChoiceField(CurriculumRole)
    site = TrainingSiteField(
        required=False,
        allow_null=True,
        help_text="The site's code; omit or null for a curriculum that applies at every site.",
    )
    title = serializers.CharField(max_length=TITLE_MAX)
    reason = _reason_field()


class RequirementChangeSerializer(StrictSerializer):
    item = ItemCodeField()
    reason = _reason_field()


#
# Assignments (TR-03)
#


class AssignmentLinksSerializer(serializers.Serializer[Assignment]):
    self = serializers.SerializerMethodField(help_text="This assignment in the API.")

    def get_self(self, assignment: Assignment) -> str:
        return reverse("api:training-assignment-detail", args=[assignment.pk])


class AssignmentSerializer(serializers.ModelSerializer[Assignment]):
    """One person asked to complete one item by a date (TR-03)."""

    user = SitePersonSerializer(read_only=True)
    item = TrainingItemBriefSerializer(read_only=True)
    procedure_version = ProcedureVersionBriefSerializer(
        read_only=True, allow_null=True, help_text="For an SOP: the version to read."
    )
    site = SiteBriefSerializer(
        read_only=True, allow_null=True, help_text="The site that asks for it, if any."
    )
    cause = NamedChoiceField(AssignmentCause, read_only=True)
    cause_display = serializers.CharField(source="get_cause_display", read_only=True)
    status = NamedChoiceField(AssignmentStatus, read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    overdue = serializers.SerializerMethodField(help_text="Open and past its due date.")
    record = serializers.PrimaryKeyRelatedField[TrainingRecord](
        read_only=True, allow_null=True, help_text="The record that completed it (its id)."
    )
    links = AssignmentLinksSerializer(source="*", read_only=True)

    class Meta:
        model = Assignment
        fields = [
            "id",
            "user",
            "item",
            "procedure_version",
            "site",
            "cause",
            "cause_display",
            "due_on",
            "status",
            "status_display",
            "overdue",
            "record",
            "closed_at",
            "reminded_at",
            "escalated_at",
            "created_at",
            "links",
        ]
        read_only_fields = fields

    def get_overdue(self, assignment: Assignment) -> bool:
        today: dt.date = self.context.get("today") or timezone.localdate()
        return assignment.status == AssignmentStatus.OPEN and assignment.due_on < today


class AssignmentCreateSerializer(StrictSerializer):
    user = UsernameField(help_text="The trainee's username (an active user).")
    item = ItemCodeField()
    due_on = serializers.DateField(help_text="Today or later (400 `due_in_past`).")
    site = TrainingSiteField(
        required=False, allow_null=True, help_text="The site that asks for it (its code), if any."
    )
    reason = _reason_field()


#
# Records (TR-01, TR-05, TR-07)
#


class TrainingRecordLinksSerializer(serializers.Serializer[TrainingRecord]):
    self = serializers.SerializerMethodField(help_text="This record in the API.")

    def get_self(self, record: TrainingRecord) -> str:
        return reverse("api:training-record-detail", args=[record.pk])


_RESULT_SCHEMA = {
    "type": "string",
    "enum": list(AssessmentResult.values),
    "nullable": True,
    "description": "An assessment's result; null for other records.",
}


class TrainingRecordSerializer(serializers.ModelSerializer[TrainingRecord]):
    """The signed proof that a person completed an item: acknowledged by the trainee, assessed
    by a trainer, or entered from paper by a trainer. Never changed (TR-01, TR-05)."""

    user = SitePersonSerializer(read_only=True, help_text="The trainee.")
    item = TrainingItemBriefSerializer(read_only=True)
    procedure_version = ProcedureVersionBriefSerializer(
        read_only=True, allow_null=True, help_text="For an SOP: the version read."
    )
    method = NamedChoiceField(RecordMethod, read_only=True)
    method_display = serializers.CharField(source="get_method_display", read_only=True)
    expires_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="Null: never expires."
    )
    result = serializers.SerializerMethodField()
    passed = serializers.BooleanField(
        read_only=True, help_text="False only for an assessment found not yet competent."
    )
    trainer = SitePersonSerializer(read_only=True, allow_null=True)
    signature = serializers.SerializerMethodField(
        help_text="The trainee's (acknowledged) or the trainer's (reviewed, verified) signature."
    )
    links = TrainingRecordLinksSerializer(source="*", read_only=True)

    class Meta:
        model = TrainingRecord
        fields = [
            "id",
            "user",
            "item",
            "procedure_version",
            "method",
            "method_display",
            "completed_at",
            "expires_at",
            "result",
            "passed",
            "trainer",
            "notes",
            "signature",
            "created_at",
            "links",
        ]
        read_only_fields = fields

    @extend_schema_field(_RESULT_SCHEMA)
    def get_result(self, record: TrainingRecord) -> str | None:
        return record.result or None

    @extend_schema_field(TrainingSignatureSerializer(allow_null=True))
    def get_signature(self, record: TrainingRecord) -> dict[str, Any] | None:
        return signature_data(record.signature, record)


class _VersionNumberMixin:
    """Resolves `version` (a number) to the version of the item's procedure."""

    def resolve_version(self, attrs: dict[str, Any]) -> dict[str, Any]:
        number = attrs.pop("version", None)
        item: TrainingItem = attrs["item"]
        version = None
        if number is not None:
            if item.procedure_id is None:
                raise serializers.ValidationError(
                    {"version": [f"{item.code} is not a procedure: give no version."]},
                    code="version_not_expected",
                )
            version = ProcedureVersion.objects.filter(
                procedure_id=item.procedure_id, number=number
            ).first()
            if version is None:
                raise serializers.ValidationError(
                    {"version": [f"{item.code} has no version {number}."]},
                    code="unknown_version",
                )
        attrs["version"] = version
        return attrs


def _version_field(help_text: str) -> StrictIntegerField:
    return StrictIntegerField(required=False, allow_null=True, min_value=1, help_text=help_text)


class AcknowledgeSerializer(_VersionNumberMixin, SignatureInputSerializer):
    """The caller signs that they have read and understood an item, with the meaning
    `acknowledged`."""

    item = ItemCodeField()
    version = _version_field(
        "For an SOP: the version number you read — issued or in force (409 "
        "`version_superseded` for one superseded). Required for an SOP, refused otherwise."
    )
    meaning = NamedChoiceField(AcknowledgementMeaning)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return self.resolve_version(attrs)


class AssessSerializer(SignatureInputSerializer):
    """A trainer signs a trainee's practical assessment with its result, meaning `reviewed`."""

    trainee = UsernameField(help_text="The trainee's username; never yourself (422).")
    item = ItemCodeField()
    result = NamedChoiceField(
        AssessmentResult,
        required=False,
        allow_blank=True,
        help_text="Required (400 `result_required` without it). `not_yet_competent` is "
        "recorded and keeps the trainee's assignment open.",
    )
    notes = serializers.CharField(max_length=TEXT_MAX, required=False, allow_blank=True)
    meaning = NamedChoiceField(AssessmentMeaning)


class RecordEnterSerializer(_VersionNumberMixin, SignatureInputSerializer):
    """A trainer enters training completed on paper, with the day it was done, meaning
    `verified`."""

    trainee = UsernameField(help_text="The trainee's username; never yourself (422).")
    item = ItemCodeField()
    completed_on = serializers.DateField(
        help_text="The day it was done; not in the future (400 `completed_in_future`). Expiry "
        "counts from that day."
    )
    version = _version_field(
        "For an SOP: the version read, which may since have been superseded (history is "
        "entered as it was)."
    )
    notes = serializers.CharField(
        max_length=TEXT_MAX, help_text="Where the paper record is kept, and what it says."
    )
    meaning = NamedChoiceField(PaperRecordMeaning)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return self.resolve_version(attrs)


#
# Qualification (TR-02) and the matrix (TR-05, TR-06)
#


class QualificationQuerySerializer(serializers.Serializer[Any]):
    """The question: is this person qualified for this role (at this site) at this moment?"""

    user = serializers.CharField(max_length=150, help_text="The person's username.")
    role = NamedChoiceField(CurriculumRole, help_text="The role the work needs.")
    site = serializers.RegexField(
        SITE_CODE_PATTERN,
        max_length=8,
        required=False,
        help_text="The site's code; required for the site roles (site lead, site operator).",
    )
    at = AwareDateTimeInputField(
        required=False,
        help_text="The moment asked about, ISO 8601 with its offset; default now. A past "
        "moment is answered as the records and curricula stood then.",
    )


class QualificationGapSerializer(serializers.Serializer[Any]):
    item = TrainingItemBriefSerializer(read_only=True)
    state = NamedChoiceField(CellState, read_only=True)
    detail = serializers.CharField(read_only=True, help_text="Why, e.g. `expired 3 Mar 2026`.")


class QualificationSerializer(serializers.Serializer[Any]):
    """The verdict of `user_is_qualified` (TR-02, TR-04, TR-07)."""

    user = SitePersonSerializer(read_only=True)
    role = NamedChoiceField(CurriculumRole, read_only=True)
    site = SiteBriefSerializer(read_only=True, allow_null=True)
    at = serializers.DateTimeField(read_only=True, default_timezone=dt.UTC)
    qualified = serializers.BooleanField(
        read_only=True, help_text="True when no required item is missing or expired."
    )
    gaps = QualificationGapSerializer(
        many=True, read_only=True, help_text="Every item missing or expired."
    )
    message = serializers.CharField(read_only=True, help_text="The refusal a signer would see.")


class MatrixCellSerializer(serializers.Serializer[Any]):
    item = serializers.CharField(read_only=True, help_text="The item's code (a column).")
    state = NamedChoiceField(CellState, read_only=True)
    detail = serializers.CharField(read_only=True)
    record = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="The record that holds it (its id), if any."
    )
    expires_at = serializers.DateTimeField(read_only=True, allow_null=True)
    assignment = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="The open assignment (its id), if any."
    )
    due_on = serializers.DateField(read_only=True, allow_null=True)


class MatrixRowSerializer(serializers.Serializer[Any]):
    user = SitePersonSerializer(read_only=True)
    roles = serializers.ListField(child=serializers.CharField(), read_only=True)
    held = serializers.IntegerField(read_only=True)
    # Named like Field.required; DRF takes declared fields off the class, so no clash at run time.
    required = serializers.IntegerField(read_only=True)  # type: ignore[assignment]
    cells = MatrixCellSerializer(many=True, read_only=True, help_text="One per item, in order.")


class TrainingMatrixSerializer(serializers.Serializer[Any]):
    """Everyone working at a site against every item any of them needs there (TR-05)."""

    site = SiteBriefSerializer(read_only=True)
    at = serializers.DateTimeField(read_only=True, default_timezone=dt.UTC)
    compliance = serializers.IntegerField(
        read_only=True, help_text="Whole percent of required items held (rounded down)."
    )
    held = serializers.IntegerField(read_only=True)
    # Named like Field.required; DRF takes declared fields off the class, so no clash at run time.
    required = serializers.IntegerField(read_only=True)  # type: ignore[assignment]
    counts = serializers.DictField(
        child=serializers.IntegerField(), read_only=True, help_text="Cells in each state."
    )
    items = TrainingItemBriefSerializer(many=True, read_only=True, help_text="The columns.")
    rows = MatrixRowSerializer(many=True, read_only=True)


class SiteComplianceSerializer(serializers.Serializer[Any]):
    """A site's training compliance now (TR-06)."""

    site = SiteBriefSerializer(read_only=True)
    compliance = serializers.IntegerField(read_only=True)
    held = serializers.IntegerField(read_only=True)
    # Named like Field.required; DRF takes declared fields off the class, so no clash at run time.
    required = serializers.IntegerField(read_only=True)  # type: ignore[assignment]
    overdue = serializers.IntegerField(read_only=True)
    matrix = serializers.CharField(read_only=True, help_text="The site's matrix in the API.")


def matrix_data(matrix: selectors.Matrix) -> dict[str, Any]:
    """The matrix as JSON, built by hand: 500 people and 50 items make 25,000 cells, too many for
    a serializer per cell. `TrainingMatrixSerializer` documents the same shape."""
    items = [dict(TrainingItemBriefSerializer(item).data) for item in matrix.items]
    rows = []
    for row in matrix.rows:
        cells = []
        for cell in row.cells:
            record, assignment = cell.record, cell.assignment
            cells.append(
                {
                    "item": cell.item.code,
                    "state": str(cell.state),
                    "detail": cell.detail,
                    "record": record.pk if record is not None else None,
                    "expires_at": _iso(record.expires_at) if record is not None else None,
                    "assignment": assignment.pk if assignment is not None else None,
                    "due_on": assignment.due_on.isoformat() if assignment is not None else None,
                }
            )
        rows.append(
            {
                "user": _person(row.user),
                "roles": list(row.roles),
                "held": row.held,
                "required": row.required,
                "cells": cells,
            }
        )
    return {
        "site": dict(SiteBriefSerializer(matrix.site).data),
        "at": _iso(matrix.at),
        "compliance": matrix.compliance,
        "held": matrix.held,
        "required": matrix.required,
        "counts": matrix.counts(),
        "items": items,
        "rows": rows,
    }


def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return serializers.DateTimeField(default_timezone=dt.UTC).to_representation(moment)


def qualification_data(verdict: selectors.Qualification) -> dict[str, Any]:
    return dict(
        QualificationSerializer(
            {
                "user": verdict.user,
                "role": verdict.role,
                "site": verdict.site,
                "at": verdict.at,
                "qualified": bool(verdict),
                "gaps": [
                    {"item": gap.item, "state": gap.state, "detail": gap.detail}
                    for gap in verdict.gaps
                ],
                "message": verdict.message(),
            }
        ).data
    )
