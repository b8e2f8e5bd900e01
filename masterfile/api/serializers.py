"""Master-file API: one read serializer per model, and a strict input serializer per write.

Reads nest small "brief" serializers (a product, a version, a person); writes accept plain
values (ids, site codes, usernames, section keys) and leave every rule — who may, which status,
how long a section may be — to `masterfile.services`. `status` is read-only everywhere: a version
moves only through its POST actions, an export only through its worker.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.db import models
from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from controlsite.api.base import SignatureInputSerializer, StrictSerializer
from controlsite.api.fields import NamedChoiceField
from controlsite.signatures.models import SignatureMeaning
from masterfile import selectors
from masterfile.choices import (
    ACTION_TRANSITIONS,
    CHANGE_SUMMARY_MAX,
    COMMENT_MAX,
    SECTION_BODY_MAX,
    SECTION_TITLE_MAX,
    SECTIONS_MAX,
    SHELF_LIFE_MAX_MINUTES,
    ApprovalCapacity,
    Designation,
    ExportStatus,
    ProductSiteRole,
    SupplyStatus,
    VersionStatus,
)
from masterfile.markdown import render_markdown
from masterfile.models import (
    ANNUAL_REPORT_FIRST_YEAR,
    PRODUCT_CODE_PATTERN,
    SECTION_KEY_PATTERN,
    SUBMISSION_REFERENCE_MAX,
    AnnexEntry,
    AnnualReport,
    MasterFile,
    MasterFileExport,
    MasterFileVersion,
    Product,
    ProductSite,
    ReviewComment,
    Section,
    VersionApproval,
)
from sites.api.serializers import (
    SiteBriefSerializer,
    SiteCodeField,
    SitePersonSerializer,
    UsernameField,
)

REASON_HELP = "Why: kept with the change in the audit trail."
ID_MAX = 10**18 - 1


def _reason_field() -> serializers.CharField:
    return serializers.CharField(max_length=2000, help_text=REASON_HELP)


#
# Strict fields: JSON types only, as the OpenAPI document says
#


class StrictIntegerField(serializers.IntegerField):
    """An integer that must be a JSON number: DRF would take "12" or 12.0 as 12."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class StrictCharField(serializers.CharField):
    """Text that must be a JSON string (for list items, which the strict mixin does not see)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class VisibleRecordField(StrictIntegerField):
    """A record named by id in a request body; one you may not see does not exist (400)."""

    default_error_messages = {"unknown": "No such record (or not one you can see)."}

    def __init__(self, visible: Callable[[Any], QuerySet[Any]], **kwargs: Any) -> None:
        self.visible = visible
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", ID_MAX)
        super().__init__(**kwargs)

    def run_validation(self, data: Any = empty) -> Any:
        pk = super().run_validation(data)
        if pk is None:
            return None
        request = self.context.get("request")
        record = self.visible(getattr(request, "user", None)).filter(pk=pk).first()
        if record is None:
            self.fail("unknown")
        return record


class MasterFileInputSerializer(StrictSerializer):
    """The base of every master-file API input."""


class ReasonSerializer(MasterFileInputSerializer):
    """A step that needs only a reason."""

    reason = _reason_field()


#
# Brief shapes
#


class ProductBriefSerializer(serializers.Serializer[Product]):
    id = serializers.IntegerField(read_only=True)
    code = serializers.CharField(read_only=True)
    name = serializers.CharField(read_only=True)


class VersionBriefSerializer(serializers.Serializer[MasterFileVersion]):
    id = serializers.IntegerField(read_only=True)
    number = serializers.IntegerField(read_only=True)
    status = NamedChoiceField(VersionStatus, read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    effective_date = serializers.DateField(read_only=True, allow_null=True)
    url = serializers.SerializerMethodField(help_text="The version in the API.")

    def get_url(self, version: MasterFileVersion) -> str:
        return reverse("api:master-file-version-detail", args=[version.pk])


def _brief_version(version: MasterFileVersion | None) -> dict[str, Any] | None:
    return None if version is None else dict(VersionBriefSerializer(version).data)


#
# Products
#


class ProductLinksSerializer(serializers.Serializer[Product]):
    self = serializers.SerializerMethodField(help_text="This product in the API.")
    html = serializers.SerializerMethodField(help_text="This product's page.")
    master_file = serializers.SerializerMethodField(help_text="Its master file in the API.")
    sites = serializers.SerializerMethodField(help_text="Its sites in the API.")

    def get_self(self, product: Product) -> str:
        return reverse("api:product-detail", args=[product.pk])

    def get_html(self, product: Product) -> str:
        return reverse("masterfile:product-detail", args=[product.pk])

    def get_master_file(self, product: Product) -> str:
        return reverse("api:master-file-detail", args=[product.master_file.pk])

    def get_sites(self, product: Product) -> str:
        return reverse("api:product-site-list") + f"?product={product.pk}"


class ProductSerializer(serializers.ModelSerializer[Product]):
    designation = NamedChoiceField(Designation, read_only=True)
    designation_display = serializers.CharField(source="get_designation_display", read_only=True)
    supply_status = NamedChoiceField(SupplyStatus, read_only=True)
    supply_status_display = serializers.CharField(
        source="get_supply_status_display", read_only=True
    )
    shelf_life_display = serializers.CharField(read_only=True)
    reference_site = SiteBriefSerializer(read_only=True)
    master_file = serializers.IntegerField(
        source="master_file.pk", read_only=True, help_text="The id of the product's master file."
    )
    effective_version = serializers.SerializerMethodField(
        help_text="The master-file version in force, or null if none is yet."
    )
    links = ProductLinksSerializer(source="*", read_only=True)

    class Meta:
        model = Product
        fields = [
            "id",
            "code",
            "name",
            "designation",
            "designation_display",
            "designation_reference",
            "designation_date",
            "dosage_form",
            "shelf_life_minutes",
            "shelf_life_display",
            "supply_status",
            "supply_status_display",
            "reference_site",
            "master_file",
            "effective_version",
            "created_at",
            "updated_at",
            "links",
        ]
        read_only_fields = fields

    @extend_schema_field(VersionBriefSerializer(allow_null=True))
    def get_effective_version(self, product: Product) -> dict[str, Any] | None:
        prefetched = getattr(product.master_file, "effective_versions", None)
        if prefetched is None:
            return _brief_version(selectors.effective_version(product))
        return _brief_version(prefetched[0] if prefetched else None)


class ProductSiteSerializer(serializers.ModelSerializer[ProductSite]):
    product = ProductBriefSerializer(read_only=True)
    site = SiteBriefSerializer(read_only=True)
    role = NamedChoiceField(ProductSiteRole, read_only=True)
    role_display = serializers.CharField(source="get_role_display", read_only=True)
    is_reference = serializers.SerializerMethodField(
        help_text="The product's reference site (manufacturing link only)."
    )
    started_at = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = ProductSite
        fields = [
            "id",
            "product",
            "site",
            "role",
            "role_display",
            "is_reference",
            "started_at",
            "ended_at",
        ]
        read_only_fields = fields

    def get_is_reference(self, link: ProductSite) -> bool:
        return (
            link.role == ProductSiteRole.MANUFACTURING
            and link.site_id == link.product.reference_site_id
        )


class ProductDetailSerializer(ProductSerializer):
    """One product with the sites that make or test it now."""

    sites = ProductSiteSerializer(
        source="live_site_links",
        many=True,
        read_only=True,
        help_text="Live links only; the annex of the next version is built from these.",
    )

    class Meta(ProductSerializer.Meta):
        fields = [*ProductSerializer.Meta.fields, "sites"]
        read_only_fields = fields


class ProductCreateSerializer(MasterFileInputSerializer):
    code = serializers.RegexField(
        PRODUCT_CODE_PATTERN,
        max_length=16,
        help_text="2–16 upper-case letters, digits and hyphens, e.g. CAR-T-01. Final: never "
        "changed.",
        error_messages={"invalid": "2–16 upper-case letters, digits and hyphens, e.g. CAR-T-01."},
    )
    name = serializers.CharField(max_length=200)
    designation = NamedChoiceField(Designation)
    designation_reference = serializers.CharField(
        max_length=64, help_text="The MHRA's designation reference."
    )
    designation_date = serializers.DateField()
    dosage_form = serializers.CharField(max_length=120)
    shelf_life_minutes = StrictIntegerField(
        min_value=1,
        max_value=SHELF_LIFE_MAX_MINUTES,
        help_text=f"From completion of manufacture: 1 to {SHELF_LIFE_MAX_MINUTES} minutes "
        "(90 days).",
    )
    supply_status = NamedChoiceField(SupplyStatus)
    reference_site = SiteCodeField(
        help_text="The code of the reference site; it becomes the first manufacturing site."
    )
    owner = UsernameField(
        required=False,
        allow_null=True,
        help_text="Username of the master file's owner (reminded before each review); you, if "
        "not given.",
    )
    reason = _reason_field()


class ProductUpdateSerializer(MasterFileInputSerializer):
    """Only the fields given change. The code never changes."""

    name = serializers.CharField(max_length=200, required=False)
    designation = NamedChoiceField(Designation, required=False)
    designation_reference = serializers.CharField(max_length=64, required=False)
    designation_date = serializers.DateField(required=False)
    dosage_form = serializers.CharField(max_length=120, required=False)
    shelf_life_minutes = StrictIntegerField(
        min_value=1, max_value=SHELF_LIFE_MAX_MINUTES, required=False
    )
    supply_status = NamedChoiceField(SupplyStatus, required=False)
    reference_site = SiteCodeField(required=False)
    reason = serializers.CharField(max_length=2000, help_text=f"Required. {REASON_HELP}")

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and "code" in data:
            raise serializers.ValidationError(
                {"code": ["A product's code never changes."]}, code="product_code_immutable"
            )
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if set(attrs) == {"reason"}:
            raise serializers.ValidationError(
                {"non_field_errors": ["Give at least one field to change."]},
                code="nothing_to_change",
            )
        return attrs


class ProductSiteCreateSerializer(MasterFileInputSerializer):
    product = VisibleRecordField(selectors.products_visible_to, help_text="The product's id.")
    site = SiteCodeField()
    role = NamedChoiceField(ProductSiteRole)
    reason = _reason_field()


#
# Master files
#


class MasterFileLinksSerializer(serializers.Serializer[MasterFile]):
    self = serializers.SerializerMethodField(help_text="This master file in the API.")
    html = serializers.SerializerMethodField(help_text="The product's page.")
    versions = serializers.SerializerMethodField(help_text="Its versions in the API.")
    drafts = serializers.SerializerMethodField(help_text="POST here to start a new draft.")

    def get_self(self, master_file: MasterFile) -> str:
        return reverse("api:master-file-detail", args=[master_file.pk])

    def get_html(self, master_file: MasterFile) -> str:
        return reverse("masterfile:product-detail", args=[master_file.product_id])

    def get_versions(self, master_file: MasterFile) -> str:
        return reverse("api:master-file-version-list") + f"?master_file={master_file.pk}"

    def get_drafts(self, master_file: MasterFile) -> str:
        return reverse("api:master-file-drafts", args=[master_file.pk])


class MasterFileSerializer(serializers.ModelSerializer[MasterFile]):
    product = ProductBriefSerializer(read_only=True)
    owner = SitePersonSerializer(read_only=True)
    effective_version = serializers.SerializerMethodField(
        help_text="The version in force, or null."
    )
    open_version = serializers.SerializerMethodField(
        help_text="The version on its way to effect (draft, in review or approved), or null."
    )
    versions = VersionBriefSerializer(
        source="all_versions", many=True, read_only=True, help_text="Newest first."
    )
    links = MasterFileLinksSerializer(source="*", read_only=True)

    class Meta:
        model = MasterFile
        fields = [
            "id",
            "product",
            "owner",
            "review_interval_months",
            "effective_version",
            "open_version",
            "versions",
            "created_at",
            "updated_at",
            "links",
        ]
        read_only_fields = fields

    def _first(self, master_file: MasterFile, statuses: set[str]) -> dict[str, Any] | None:
        versions: list[MasterFileVersion] = getattr(master_file, "all_versions", [])
        return _brief_version(next((v for v in versions if v.status in statuses), None))

    @extend_schema_field(VersionBriefSerializer(allow_null=True))
    def get_effective_version(self, master_file: MasterFile) -> dict[str, Any] | None:
        return self._first(master_file, {VersionStatus.EFFECTIVE})

    @extend_schema_field(VersionBriefSerializer(allow_null=True))
    def get_open_version(self, master_file: MasterFile) -> dict[str, Any] | None:
        return self._first(
            master_file, {VersionStatus.DRAFT, VersionStatus.IN_REVIEW, VersionStatus.APPROVED}
        )


class MasterFileUpdateSerializer(MasterFileInputSerializer):
    owner = UsernameField(required=False, help_text="Username of the new owner.")
    review_interval_months = StrictIntegerField(
        min_value=1, max_value=60, required=False, help_text="1 to 60 months."
    )
    reason = serializers.CharField(max_length=2000, help_text=f"Required. {REASON_HELP}")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if set(attrs) == {"reason"}:
            raise serializers.ValidationError(
                {"non_field_errors": ["Give owner or review_interval_months to change."]},
                code="nothing_to_change",
            )
        return attrs


#
# Versions
#


class VersionLinksSerializer(serializers.Serializer[MasterFileVersion]):
    self = serializers.SerializerMethodField(help_text="This version in the API.")
    html = serializers.SerializerMethodField(help_text="This version's page.")
    sections = serializers.SerializerMethodField(help_text="Its sections in the API.")
    comments = serializers.SerializerMethodField(help_text="Its review comments in the API.")
    exports = serializers.SerializerMethodField(help_text="Its PDF exports in the API.")
    diff = serializers.SerializerMethodField(help_text="What changed from an earlier version.")
    actions = serializers.SerializerMethodField(
        help_text="The lifecycle actions the version's status allows now, each with its URL. "
        "Whether you may take them depends on your roles."
    )

    def get_self(self, version: MasterFileVersion) -> str:
        return reverse("api:master-file-version-detail", args=[version.pk])

    def get_html(self, version: MasterFileVersion) -> str:
        return reverse("masterfile:version-detail", args=[version.pk])

    def get_sections(self, version: MasterFileVersion) -> str:
        return reverse("api:section-list") + f"?version={version.pk}"

    def get_comments(self, version: MasterFileVersion) -> str:
        return reverse("api:review-comment-list") + f"?version={version.pk}"

    def get_exports(self, version: MasterFileVersion) -> str:
        return reverse("api:export-list") + f"?version={version.pk}"

    def get_diff(self, version: MasterFileVersion) -> str:
        return reverse("api:master-file-version-diff", args=[version.pk])

    def get_actions(self, version: MasterFileVersion) -> dict[str, str]:
        return {
            action.value: reverse(f"api:master-file-version-{action.value}", args=[version.pk])
            for action, (source, _target) in ACTION_TRANSITIONS.items()
            if version.status == source
        }


class VersionSerializer(serializers.ModelSerializer[MasterFileVersion]):
    product = ProductBriefSerializer(source="master_file.product", read_only=True)
    master_file = serializers.IntegerField(source="master_file_id", read_only=True)
    # A field named like Field.label: the version's "v3". The metaclass takes it as a field.
    label = serializers.CharField(read_only=True)  # type: ignore[assignment]
    status = NamedChoiceField(VersionStatus, read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    based_on = serializers.IntegerField(
        source="based_on_id",
        read_only=True,
        allow_null=True,
        help_text="The id of the effective version this draft was copied from.",
    )
    links = VersionLinksSerializer(source="*", read_only=True)

    class Meta:
        model = MasterFileVersion
        fields = [
            "id",
            "product",
            "master_file",
            "number",
            "label",
            "status",
            "status_display",
            "change_summary",
            "based_on",
            "submitted_at",
            "approved_at",
            "effective_date",
            "superseded_at",
            "next_review_date",
            "status_changed_at",
            "created_at",
            "updated_at",
            "links",
        ]
        read_only_fields = fields


class SectionSummarySerializer(serializers.ModelSerializer[Section]):
    characters = serializers.SerializerMethodField(help_text="Length of the Markdown body.")
    empty = serializers.SerializerMethodField(help_text="True while the body is blank.")
    url = serializers.SerializerMethodField(help_text="The section, with its body, in the API.")

    class Meta:
        model = Section
        fields = ["id", "key", "title", "position", "characters", "empty", "updated_at", "url"]
        read_only_fields = fields

    def get_characters(self, section: Section) -> int:
        return len(section.body)

    def get_empty(self, section: Section) -> bool:
        return not section.body.strip()

    def get_url(self, section: Section) -> str:
        return reverse("api:section-detail", args=[section.pk])


class AnnexEntrySerializer(serializers.ModelSerializer[AnnexEntry]):
    role = NamedChoiceField(ProductSiteRole, read_only=True)
    role_display = serializers.CharField(source="get_role_display", read_only=True)

    class Meta:
        model = AnnexEntry
        fields = [
            "site_code",
            "site_name",
            "role",
            "role_display",
            "is_reference",
            "kind",
            "location",
            "site_status",
            "host",
            "lead",
        ]
        read_only_fields = fields


class ApprovalSerializer(serializers.ModelSerializer[VersionApproval]):
    """One approval with its e-signature: who, the printed name, when (UTC), what it means,
    and whether it still binds the version's content (ES-01, ES-03)."""

    capacity = NamedChoiceField(ApprovalCapacity, read_only=True)
    capacity_display = serializers.CharField(source="get_capacity_display", read_only=True)
    signer = SitePersonSerializer(read_only=True)
    printed_name = serializers.CharField(source="signature.printed_name", read_only=True)
    signed_at = serializers.DateTimeField(
        source="signature.signed_at", read_only=True, default_timezone=dt.UTC
    )
    meaning = serializers.CharField(source="signature.meaning", read_only=True)
    meaning_display = serializers.CharField(source="signature.get_meaning_display", read_only=True)
    reason = serializers.CharField(source="signature.reason", read_only=True)
    valid = serializers.SerializerMethodField(
        help_text="True while the version still has the content that was signed."
    )
    withdrawn_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="When the version went back to draft after this approval, or null.",
    )

    class Meta:
        model = VersionApproval
        fields = [
            "capacity",
            "capacity_display",
            "signer",
            "printed_name",
            "signed_at",
            "meaning",
            "meaning_display",
            "reason",
            "valid",
            "withdrawn_at",
        ]
        read_only_fields = fields

    def get_valid(self, approval: VersionApproval) -> bool:
        current = self.context.get("content_hash")
        return current is not None and approval.signature.record_hash == current


class VersionDetailSerializer(VersionSerializer):
    """One version with its sections (summarised), frozen site annex, approvals and review
    state."""

    sections = SectionSummarySerializer(
        source="ordered_sections", many=True, read_only=True, help_text="In document order."
    )
    annex = AnnexEntrySerializer(
        source="ordered_annex",
        many=True,
        read_only=True,
        help_text="The sites frozen into the version when it was submitted (empty in draft).",
    )
    approvals = ApprovalSerializer(
        source="all_approvals",
        many=True,
        read_only=True,
        help_text="Every approval given, oldest first, withdrawn ones included.",
    )
    next_approval = serializers.SerializerMethodField(
        help_text="The capacity whose approval is due next while in review (qa, then qp), or null."
    )
    open_comments = serializers.IntegerField(read_only=True)
    previous_version = serializers.SerializerMethodField(
        help_text="The version this one changes, or null for the first."
    )

    class Meta(VersionSerializer.Meta):
        fields = [
            *VersionSerializer.Meta.fields,
            "sections",
            "annex",
            "approvals",
            "next_approval",
            "open_comments",
            "previous_version",
        ]
        read_only_fields = fields

    @extend_schema_field(NamedChoiceField(ApprovalCapacity, allow_null=True))
    def get_next_approval(self, version: MasterFileVersion) -> str | None:
        if version.status != VersionStatus.IN_REVIEW:
            return None
        capacity = selectors.approval_state(version).next_capacity
        return None if capacity is None else capacity.value

    @extend_schema_field(VersionBriefSerializer(allow_null=True))
    def get_previous_version(self, version: MasterFileVersion) -> dict[str, Any] | None:
        return _brief_version(selectors.previous_version(version))


class VersionUpdateSerializer(MasterFileInputSerializer):
    change_summary = serializers.CharField(
        allow_blank=True,
        help_text=f"What changed from the previous version; at most {CHANGE_SUMMARY_MAX:,} "
        "characters. Only while the version is a draft (409 `version_not_editable`).",
    )
    reason = serializers.CharField(max_length=2000, help_text=f"Required. {REASON_HELP}")


class VersionApprovalMeaning(models.TextChoices):
    """The one meaning a master-file approval signs with. A named enum of its own, so the
    OpenAPI document does not collide with other actions that sign "approved"."""

    APPROVED = SignatureMeaning.APPROVED.value, SignatureMeaning.APPROVED.label


class VersionApproveSerializer(SignatureInputSerializer):
    """Control Site QA, then a QP, each signs with the meaning `approved`."""

    meaning = NamedChoiceField(VersionApprovalMeaning)
    capacity = NamedChoiceField(
        ApprovalCapacity,
        help_text="`qa` (Control Site QA, first) or `qp` (Qualified Person, second); two "
        "different people.",
    )


class DiffLineSerializer(serializers.Serializer[Any]):
    kind = serializers.ChoiceField(
        choices=[("same", "same"), ("added", "added"), ("removed", "removed")], read_only=True
    )
    text = serializers.CharField(read_only=True)


class SectionDiffSerializer(serializers.Serializer[Any]):
    key = serializers.CharField(read_only=True)
    title = serializers.CharField(read_only=True)
    old_title = serializers.CharField(read_only=True)
    change = serializers.ChoiceField(
        choices=[
            ("added", "added"),
            ("removed", "removed"),
            ("changed", "changed"),
            ("moved", "moved"),
            ("unchanged", "unchanged"),
        ],
        read_only=True,
    )
    lines = DiffLineSerializer(many=True, read_only=True, help_text="Line by line, if changed.")


class AnnexDiffSerializer(serializers.Serializer[Any]):
    added = serializers.ListField(child=serializers.CharField(), read_only=True)
    removed = serializers.ListField(child=serializers.CharField(), read_only=True)
    changed = serializers.ListField(child=serializers.CharField(), read_only=True)


class VersionDiffSerializer(serializers.Serializer[Any]):
    version = VersionBriefSerializer(read_only=True)
    against = VersionBriefSerializer(read_only=True)
    sections = SectionDiffSerializer(
        many=True, read_only=True, help_text="In the version's order; removed sections last."
    )
    annex = AnnexDiffSerializer(read_only=True, help_text="Sites added, removed or changed.")


#
# Sections
#


class SectionSerializer(serializers.ModelSerializer[Section]):
    version = VersionBriefSerializer(read_only=True)
    product = ProductBriefSerializer(source="version.master_file.product", read_only=True)
    editable = serializers.SerializerMethodField(
        help_text="True while the version is a draft; afterwards the content is frozen."
    )

    class Meta:
        model = Section
        fields = [
            "id",
            "version",
            "product",
            "key",
            "title",
            "position",
            "body",
            "guidance",
            "regulatory_reference",
            "editable",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_editable(self, section: Section) -> bool:
        return section.version.is_editable


class SectionDetailSerializer(SectionSerializer):
    body_html = serializers.SerializerMethodField(
        help_text="The body rendered as it appears on the page and in the PDF (safe HTML)."
    )

    class Meta(SectionSerializer.Meta):
        fields = [*SectionSerializer.Meta.fields, "body_html"]
        read_only_fields = fields

    def get_body_html(self, section: Section) -> str:
        return str(render_markdown(section.body))


_BODY_HELP = (
    f"Markdown; not empty (400 `section_empty`) and at most {SECTION_BODY_MAX:,} characters "
    "(400 `section_too_long`)."
)
_TITLE_HELP = f"Not empty; at most {SECTION_TITLE_MAX} characters."


class SectionUpdateSerializer(MasterFileInputSerializer):
    """Only the fields given change; only while the version is a draft."""

    title = serializers.CharField(required=False, allow_blank=True, help_text=_TITLE_HELP)
    body = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, help_text=_BODY_HELP
    )
    reason = serializers.CharField(max_length=2000, help_text=f"Required. {REASON_HELP}")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if set(attrs) == {"reason"}:
            raise serializers.ValidationError(
                {"non_field_errors": ["Give title or body to change."]}, code="nothing_to_change"
            )
        return attrs


class SectionAddSerializer(MasterFileInputSerializer):
    key = serializers.RegexField(
        SECTION_KEY_PATTERN,
        max_length=64,
        help_text="Lower-case letters, digits and hyphens, unique in the version, e.g. cold-chain.",
        error_messages={"invalid": "Lower-case letters, digits and hyphens, e.g. cold-chain."},
    )
    title = serializers.CharField(allow_blank=True, help_text=_TITLE_HELP)
    body = serializers.CharField(allow_blank=True, trim_whitespace=False, help_text=_BODY_HELP)
    after_key = serializers.CharField(
        max_length=64,
        required=False,
        allow_null=True,
        help_text="The key of the section it follows; at the end if not given.",
    )
    reason = _reason_field()


class SectionsReorderSerializer(MasterFileInputSerializer):
    keys = serializers.ListField(
        child=StrictCharField(max_length=64),
        allow_empty=False,
        max_length=SECTIONS_MAX,
        help_text="Every section key of the version exactly once, in the new order.",
    )
    reason = _reason_field()


#
# Review comments
#


class ReviewCommentSerializer(serializers.ModelSerializer[ReviewComment]):
    version = serializers.IntegerField(source="version_id", read_only=True)
    section = serializers.CharField(
        source="section.key",
        read_only=True,
        allow_null=True,
        help_text="The key of the section commented on, or null for the whole version.",
    )
    author = SitePersonSerializer(read_only=True)
    resolved_by = SitePersonSerializer(read_only=True, allow_null=True)

    class Meta:
        model = ReviewComment
        fields = [
            "id",
            "version",
            "section",
            "author",
            "body",
            "created_at",
            "resolved_at",
            "resolved_by",
            "resolution",
        ]
        read_only_fields = fields


class ReviewCommentCreateSerializer(MasterFileInputSerializer):
    version = VisibleRecordField(
        selectors.versions_visible_to, help_text="The id of the version commented on."
    )
    section = serializers.CharField(
        max_length=64,
        required=False,
        allow_null=True,
        help_text="The key of a section of that version, or null for the whole version.",
    )
    body = serializers.CharField(
        allow_blank=True, help_text=f"The comment; at most {COMMENT_MAX:,} characters."
    )


class ReviewCommentResolveSerializer(MasterFileInputSerializer):
    resolution = serializers.CharField(
        allow_blank=True,
        help_text=f"How it was resolved; at most {COMMENT_MAX:,} characters. Kept in the "
        "audit trail.",
    )


#
# Exports
#


class ExportSerializer(serializers.ModelSerializer[MasterFileExport]):
    version = VersionBriefSerializer(read_only=True)
    product = ProductBriefSerializer(source="version.master_file.product", read_only=True)
    status = NamedChoiceField(ExportStatus, read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    requested_by = SitePersonSerializer(read_only=True)
    requested_at = serializers.DateTimeField(source="created_at", read_only=True)
    filename = serializers.CharField(read_only=True)
    download_url = serializers.SerializerMethodField(
        help_text="Absolute URL of the PDF once the export is done, else null. Each download "
        "is an audit event."
    )
    url = serializers.SerializerMethodField(help_text="This export in the API (poll it).")

    class Meta:
        model = MasterFileExport
        fields = [
            "id",
            "version",
            "product",
            "status",
            "status_display",
            "progress",
            "stage",
            "watermarked",
            "sha256",
            "page_count",
            "size_bytes",
            "error",
            "attempts",
            "filename",
            "requested_by",
            "requested_at",
            "started_at",
            "finished_at",
            "download_url",
            "url",
        ]
        read_only_fields = fields

    def get_download_url(self, export: MasterFileExport) -> str | None:
        if export.status != ExportStatus.DONE or not export.file:
            return None
        path = reverse("api:export-download", args=[export.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    def get_url(self, export: MasterFileExport) -> str:
        return reverse("api:export-detail", args=[export.pk])


#
# Annual reports (issue 8 §7; MF-07, RP-01)
#


class AnnualReportSerializer(serializers.ModelSerializer[AnnualReport]):
    product = ProductBriefSerializer(read_only=True)
    status = NamedChoiceField(ExportStatus, read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    requested_by = SitePersonSerializer(read_only=True)
    requested_at = serializers.DateTimeField(source="created_at", read_only=True)
    due_on = serializers.DateField(
        read_only=True, help_text="When the report on this year is due with the MHRA (MF-07)."
    )
    year_complete = serializers.BooleanField(
        read_only=True,
        help_text="False when the report was made before the year ended (year to date).",
    )
    submitted_by = SitePersonSerializer(read_only=True, allow_null=True)
    filename = serializers.CharField(read_only=True)
    download_url = serializers.SerializerMethodField(
        help_text="Absolute URL of the PDF once the report is done, else null. Each download "
        "is an audit event."
    )
    url = serializers.SerializerMethodField(help_text="This report in the API (poll it).")

    class Meta:
        model = AnnualReport
        fields = [
            "id",
            "product",
            "year",
            "status",
            "status_display",
            "progress",
            "stage",
            "due_on",
            "data_as_at",
            "year_complete",
            "sha256",
            "page_count",
            "size_bytes",
            "error",
            "attempts",
            "filename",
            "requested_by",
            "requested_at",
            "started_at",
            "finished_at",
            "submitted_on",
            "submission_reference",
            "submitted_by",
            "submission_recorded_at",
            "download_url",
            "url",
        ]
        read_only_fields = fields

    def get_download_url(self, report: AnnualReport) -> str | None:
        if report.status != ExportStatus.DONE or not report.file:
            return None
        path = reverse("api:annual-report-download", args=[report.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    def get_url(self, report: AnnualReport) -> str:
        return reverse("api:annual-report-detail", args=[report.pk])


class AnnualReportRequestSerializer(MasterFileInputSerializer):
    product = VisibleRecordField(selectors.products_visible_to, help_text="The product's id.")
    year = StrictIntegerField(
        min_value=ANNUAL_REPORT_FIRST_YEAR,
        max_value=9999,
        help_text="The calendar year: from the year of the product's designation to this one "
        "(400 `year_before_designation`, `year_in_future`).",
    )


class AnnualReportSubmissionSerializer(MasterFileInputSerializer):
    submitted_on = serializers.DateField(
        help_text="The day the report was submitted to the MHRA: not in the future, not before "
        "the report was made."
    )
    reference = serializers.CharField(
        max_length=SUBMISSION_REFERENCE_MAX, help_text="The MHRA's reference for the submission."
    )
    reason = _reason_field()
