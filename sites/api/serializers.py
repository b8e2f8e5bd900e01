"""Sites API: one read serializer per model, and a strict input serializer per write.

Reads nest small "brief" serializers (a person, a checklist item); writes accept plain values
(site codes, usernames) and leave every rule to `sites.services`. `status` is read-only
everywhere: a site moves only through its transition actions.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from controlsite.accounts.models import User
from controlsite.api.base import SignatureInputSerializer, StrictSerializer
from controlsite.api.fields import NamedChoiceField
from controlsite.signatures.models import SignatureMeaning
from sites.choices import (
    ACTION_TRANSITIONS,
    ChecklistItemStatus,
    EquipmentStatus,
    FindingGrade,
    NotificationKind,
    SiteAuditStatus,
    SiteKind,
    SiteRole,
    SiteStatus,
)
from sites.models import (
    SITE_CODE_PATTERN,
    AuditFinding,
    ControlSite,
    Equipment,
    NamedQP,
    OnboardingItem,
    RegulatoryNotification,
    Site,
    SiteAudit,
    SiteMembership,
    SiteMove,
)
from sites.selectors import sites_visible_to

REASON_HELP = "Why: kept with the change in the audit trail."

#
# Fields
#


class SiteCodeField(serializers.RegexField):
    """A site named by its code in a request body; a site you may not see does not exist."""

    default_error_messages = {
        "invalid": "2–8 upper-case letters and digits, e.g. LON1.",
        "unknown_site": "No such site (or not one you can see).",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "The site's code, e.g. LON1.")
        super().__init__(SITE_CODE_PATTERN, max_length=8, **kwargs)

    def run_validation(self, data: Any = empty) -> Any:
        code = super().run_validation(data)
        request = self.context.get("request")
        site = sites_visible_to(getattr(request, "user", None)).filter(code=code).first()
        if site is None:
            self.fail("unknown_site")
        return site


class UsernameField(serializers.CharField):
    """A person named by username; resolves to an active user or refuses."""

    default_error_messages = {"unknown_user": "No active user with this username."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 150)
        super().__init__(**kwargs)

    def run_validation(self, data: Any = empty) -> Any:
        username = super().run_validation(data)
        if username is None:
            return None
        user = User.objects.filter(username=username, is_active=True).first()
        if user is None:
            self.fail("unknown_user")
        return user


class SiteInputSerializer(StrictSerializer):
    """The base of every sites API input: strict fields, strings only where text is due."""


def _reason_field() -> serializers.CharField:
    return serializers.CharField(max_length=2000, help_text=REASON_HELP)


#
# Shared pieces
#


class SitePersonSerializer(serializers.Serializer[User]):
    """A person, briefly: who they are and the name printed beside their signature."""

    username = serializers.CharField(read_only=True)
    printed_name = serializers.CharField(read_only=True)


class SiteBriefSerializer(serializers.Serializer[Site]):
    code = serializers.CharField(read_only=True)
    name = serializers.CharField(read_only=True)


class SiteReasonSerializer(SiteInputSerializer):
    """A lifecycle step that needs only a reason."""

    reason = _reason_field()


class SiteSignedActionSerializer(SignatureInputSerializer):
    """A lifecycle step Control Site QA signs with the meaning `approved`."""

    meaning = SignatureInputSerializer.meaning_field(SignatureMeaning.APPROVED)


class SiteEvidenceSerializer(SiteInputSerializer):
    """Evidence for an onboarding checklist item, by reference (a document number or location)."""

    reference = serializers.CharField(max_length=300)
    reason = _reason_field()


class SiteSignOffSerializer(SignatureInputSerializer):
    """Control Site QA signs a checklist item off with the meaning `verified`."""

    meaning = SignatureInputSerializer.meaning_field(SignatureMeaning.VERIFIED)


#
# Sites
#


class SiteChecklistSummarySerializer(serializers.Serializer[Site]):
    done = serializers.IntegerField(source="checklist_done", read_only=True)
    total = serializers.IntegerField(source="checklist_total", read_only=True)


class SiteLinksSerializer(serializers.Serializer[Site]):
    self = serializers.SerializerMethodField(help_text="This site in the API.")
    html = serializers.SerializerMethodField(help_text="This site's page.")
    actions = serializers.SerializerMethodField(
        help_text="The lifecycle actions the site's status allows now, each with its URL. "
        "Whether you may take them depends on your roles."
    )

    def get_self(self, site: Site) -> str:
        return reverse("api:site-detail", args=[site.code])

    def get_html(self, site: Site) -> str:
        return reverse("sites:detail", args=[site.code])

    def get_actions(self, site: Site) -> dict[str, str]:
        return {
            action.value: reverse(f"api:site-{action.value}", args=[site.code])
            for action, (sources, _) in ACTION_TRANSITIONS.items()
            if site.status in sources
        }


class SiteSerializer(serializers.ModelSerializer[Site]):
    kind = NamedChoiceField(SiteKind, read_only=True)
    kind_display = serializers.CharField(source="get_kind_display", read_only=True)
    status = NamedChoiceField(SiteStatus, read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    nominated_person = SitePersonSerializer(read_only=True, allow_null=True)
    checklist = SiteChecklistSummarySerializer(
        source="*", read_only=True, help_text="Onboarding checklist items signed off / in all."
    )
    links = SiteLinksSerializer(source="*", read_only=True)

    class Meta:
        model = Site
        fields = [
            "code",
            "name",
            "kind",
            "kind_display",
            "status",
            "status_display",
            "status_changed_at",
            "host_organisation",
            "address",
            "current_location",
            "nominated_person",
            "technical_agreement_ref",
            "checklist",
            "created_at",
            "updated_at",
            "links",
        ]
        read_only_fields = fields


class SiteChecklistItemSerializer(serializers.ModelSerializer[OnboardingItem]):
    status = NamedChoiceField(ChecklistItemStatus, read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    evidence_file = serializers.SerializerMethodField(
        help_text="The stored evidence file's name, or an empty string."
    )
    signed_off_by = SitePersonSerializer(read_only=True, allow_null=True)

    class Meta:
        model = OnboardingItem
        fields = [
            "key",
            "title",
            "position",
            "status",
            "status_display",
            "evidence_reference",
            "evidence_file",
            "evidence_sha256",
            "signed_off_by",
            "signed_off_at",
        ]
        read_only_fields = fields

    def get_evidence_file(self, item: OnboardingItem) -> str:
        return item.evidence_file.name or ""


class SiteMoveRecordSerializer(serializers.ModelSerializer[SiteMove]):
    class Meta:
        model = SiteMove
        fields = ["location", "moved_at", "reason"]
        read_only_fields = fields


class SiteDetailSerializer(SiteSerializer):
    """One site with its onboarding checklist and (for a modular unit) where it has been."""

    checklist_items = SiteChecklistItemSerializer(source="checklist", many=True, read_only=True)
    moves = SiteMoveRecordSerializer(many=True, read_only=True)

    class Meta(SiteSerializer.Meta):
        fields = [*SiteSerializer.Meta.fields, "checklist_items", "moves"]
        read_only_fields = fields


class SiteCreateSerializer(SiteInputSerializer):
    code = serializers.RegexField(
        SITE_CODE_PATTERN,
        max_length=8,
        help_text="2–8 upper-case letters and digits. Final: it goes into every batch number "
        "and is never changed or reused.",
        error_messages={"invalid": "2–8 upper-case letters and digits, e.g. LON1."},
    )
    name = serializers.CharField(max_length=200)
    kind = NamedChoiceField(SiteKind)
    host_organisation = serializers.CharField(max_length=200, required=False, allow_blank=True)
    address = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    current_location = serializers.CharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        help_text="For a modular unit: where it is now (recorded as its first move).",
    )
    nominated_person = UsernameField(
        required=False,
        allow_null=True,
        help_text="Username of the site lead; they become a member of the site as its lead.",
    )
    technical_agreement_ref = serializers.CharField(
        max_length=100, required=False, allow_blank=True
    )
    reason = _reason_field()


class SiteUpdateSerializer(SiteInputSerializer):
    """Only the fields given change. The code never changes; the status moves only through
    the lifecycle actions."""

    name = serializers.CharField(max_length=200, required=False)
    kind = NamedChoiceField(SiteKind, required=False)
    host_organisation = serializers.CharField(max_length=200, required=False, allow_blank=True)
    address = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    nominated_person = UsernameField(
        required=False, allow_null=True, help_text="Username of the site lead, or null."
    )
    technical_agreement_ref = serializers.CharField(
        max_length=100, required=False, allow_blank=True
    )
    reason = serializers.CharField(max_length=2000, help_text=f"Required. {REASON_HELP}")

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and "code" in data:
            raise serializers.ValidationError(
                {"code": ["A site's code never changes: it is part of every batch number."]},
                code="site_code_immutable",
            )
        return super().to_internal_value(data)


class SiteMoveSerializer(SiteInputSerializer):
    location = serializers.CharField(max_length=2000, help_text="Where the unit is now.")
    reason = _reason_field()


#
# Memberships
#


class SiteMembershipSerializer(serializers.ModelSerializer[SiteMembership]):
    site = SiteBriefSerializer(read_only=True)
    user = SitePersonSerializer(read_only=True)
    role = NamedChoiceField(SiteRole, read_only=True)
    role_display = serializers.CharField(source="get_role_display", read_only=True)
    started_at = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = SiteMembership
        fields = ["id", "site", "user", "role", "role_display", "started_at", "ended_at"]
        read_only_fields = fields


class SiteMembershipCreateSerializer(SiteInputSerializer):
    site = SiteCodeField()
    user = UsernameField(help_text="Username of the person who joins the site.")
    role = NamedChoiceField(SiteRole)
    reason = _reason_field()


#
# Equipment
#


class SiteEquipmentSerializer(serializers.ModelSerializer[Equipment]):
    site = SiteBriefSerializer(read_only=True)
    qualification_status = NamedChoiceField(EquipmentStatus, read_only=True)
    qualification_status_display = serializers.CharField(
        source="get_qualification_status_display", read_only=True
    )

    class Meta:
        model = Equipment
        fields = [
            "id",
            "site",
            "kind",
            "name",
            "serial_number",
            "qualification_status",
            "qualification_status_display",
            "next_due",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SiteEquipmentCreateSerializer(SiteInputSerializer):
    site = SiteCodeField()
    kind = serializers.CharField(max_length=100, help_text="e.g. closed-system processor")
    serial_number = serializers.CharField(max_length=100)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    qualification_status = NamedChoiceField(EquipmentStatus, required=False)
    next_due = serializers.DateField(required=False, allow_null=True)
    reason = _reason_field()


class SiteEquipmentUpdateSerializer(SiteInputSerializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    qualification_status = NamedChoiceField(EquipmentStatus, required=False)
    next_due = serializers.DateField(required=False, allow_null=True)
    reason = serializers.CharField(max_length=2000, help_text=f"Required. {REASON_HELP}")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if set(attrs) == {"reason"}:
            raise serializers.ValidationError(
                {"non_field_errors": ["Give name, qualification_status or next_due to change."]},
                code="nothing_to_change",
            )
        return attrs


#
# Site audits
#


class SiteAuditFindingSerializer(serializers.ModelSerializer[AuditFinding]):
    grade = NamedChoiceField(FindingGrade, read_only=True)
    grade_display = serializers.CharField(source="get_grade_display", read_only=True)
    audit = serializers.IntegerField(source="audit_id", read_only=True)

    class Meta:
        model = AuditFinding
        fields = ["id", "audit", "grade", "grade_display", "description", "closed_at", "created_at"]
        read_only_fields = fields


class SiteAuditSerializer(serializers.ModelSerializer[SiteAudit]):
    site = SiteBriefSerializer(read_only=True)
    status = NamedChoiceField(SiteAuditStatus, read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    findings = SiteAuditFindingSerializer(many=True, read_only=True)

    class Meta:
        model = SiteAudit
        fields = [
            "id",
            "site",
            "title",
            "planned_for",
            "done_on",
            "lead_auditor",
            "summary",
            "status",
            "status_display",
            "findings",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SiteAuditCreateSerializer(SiteInputSerializer):
    site = SiteCodeField()
    title = serializers.CharField(max_length=200)
    planned_for = serializers.DateField()
    lead_auditor = serializers.CharField(max_length=200, required=False, allow_blank=True)
    reason = _reason_field()


class SiteAuditCompleteSerializer(SiteInputSerializer):
    done_on = serializers.DateField(help_text="The day the audit was done; not in the future.")
    summary = serializers.CharField(max_length=10000, allow_blank=True)
    reason = _reason_field()


class SiteAuditFindingCreateSerializer(SiteInputSerializer):
    grade = NamedChoiceField(FindingGrade)
    description = serializers.CharField(max_length=10000)
    reason = _reason_field()


#
# The MHRA log
#


class RegulatoryNotificationSerializer(serializers.ModelSerializer[RegulatoryNotification]):
    kind = NamedChoiceField(NotificationKind, read_only=True)
    kind_display = serializers.CharField(source="get_kind_display", read_only=True)
    site = SiteBriefSerializer(read_only=True, allow_null=True)
    sent_by = SitePersonSerializer(read_only=True, allow_null=True)

    class Meta:
        model = RegulatoryNotification
        fields = [
            "id",
            "kind",
            "kind_display",
            "site",
            "subject",
            "event_at",
            "due_on",
            "sent_on",
            "reference",
            "sent_by",
            "created_at",
        ]
        read_only_fields = fields


class RegulatoryNotificationMarkSentSerializer(SiteInputSerializer):
    sent_on = serializers.DateField(help_text="The day it was sent; not in the future.")
    reference = serializers.CharField(max_length=100, help_text="The MHRA's reference.")
    reason = _reason_field()


#
# The Control Site
#


class ControlSiteNamedQPSerializer(serializers.ModelSerializer[NamedQP]):
    username = serializers.CharField(source="user.username", read_only=True)
    printed_name = serializers.CharField(source="user.printed_name", read_only=True)

    class Meta:
        model = NamedQP
        fields = ["username", "printed_name", "named_from"]
        read_only_fields = fields


class ControlSiteSerializer(serializers.ModelSerializer[ControlSite]):
    scope_label = serializers.CharField(read_only=True)
    named_qps = serializers.SerializerMethodField(
        help_text="The QPs named on the licence now (RP-08)."
    )

    class Meta:
        model = ControlSite
        fields = [
            "name",
            "address",
            "licence_number",
            "scope_poc",
            "scope_mm",
            "scope_label",
            "regulator_contacts",
            "named_qps",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(ControlSiteNamedQPSerializer(many=True))
    def get_named_qps(self, control: ControlSite) -> list[dict[str, Any]]:
        qps = self.context.get("named_qps", [])
        return list(ControlSiteNamedQPSerializer(qps, many=True).data)
