"""Change-control API shapes: one read serializer for a change (with its approvals, the
master-file draft and MHRA notification its approval set off, and its tasks), one for a task,
and a strict input serializer per write (issue 6 §4; design §6; DV-07…DV-09, MF-09).

`status` and `regulatory` are read-only: a change moves only through its POST actions, and it
is regulatory because of what it touches, never because someone says so. Writes accept plain
values — a product or site code, a username, ISO dates — and leave every rule to
`deviations.services.changes`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import models
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from batches.api.serializers import ProductCodeField, SignatureBriefSerializer, signature_data
from controlsite.api.base import SignatureInputSerializer, StrictSerializer
from controlsite.api.fields import NamedChoiceField
from controlsite.signatures.models import SignatureMeaning
from deviations.api.serializers import _reason_field, _today
from deviations.choices import (
    CHANGE_BADGE,
    TEXT_MAX,
    TITLE_MAX,
    ActionStatus,
    ChangeScope,
    ChangeStatus,
    RiskLevel,
)
from deviations.models import ChangeControl, ChangeTask
from deviations.selectors.changes import change_review_signature
from deviations.services import changes as services
from masterfile.api.serializers import ProductBriefSerializer, VersionBriefSerializer
from sites.api.serializers import (
    RegulatoryNotificationSerializer,
    SiteBriefSerializer,
    SiteCodeField,
    SitePersonSerializer,
    UsernameField,
)

# CC-<year>-<NNNN>: the number field holds 20 characters.
CHANGE_NUMBER_PATTERN = r"^CC-[0-9]{4}-[0-9]{4,12}$"

SCOPES_HELP = (
    "What the change touches, at least one (400 `scope_required`). `master_file` needs a "
    "`product` with a master file (400 `product_required`), `site_status` a `site` (400 "
    "`site_required`). `master_file`, `site_status` and `release_process` make the change "
    "regulatory (DV-09): it then needs a `regulatory_impact` (400 "
    "`regulatory_impact_required`) and a QP's approval as well as QA's."
)


class NullableSiteCodeField(SiteCodeField):
    """A site by code, or null for none (a network-wide change)."""

    def run_validation(self, data: Any = empty) -> Any:
        if data is None:
            return None
        return super().run_validation(data)


class NullableProductCodeField(ProductCodeField):
    """A product by code, or null for none."""

    def run_validation(self, data: Any = empty) -> Any:
        if data is None:
            return None
        return super().run_validation(data)


class ChangeApprovalMeaning(models.TextChoices):
    APPROVED = SignatureMeaning.APPROVED.value, SignatureMeaning.APPROVED.label


class ChangeReviewMeaning(models.TextChoices):
    REVIEWED = SignatureMeaning.REVIEWED.value, SignatureMeaning.REVIEWED.label


class ChangeApprovalCapacity(models.TextChoices):
    """Whose approval a change needs: QA's always, a QP's when it is regulatory."""

    QA = services.QA, "Control Site QA"
    QP = services.QP, "QP"


#
# Tasks
#


class ChangeTaskLinksSerializer(serializers.Serializer[ChangeTask]):
    self = serializers.SerializerMethodField(help_text="This task in the API.")
    complete = serializers.SerializerMethodField(
        help_text="POST here to record it done (its owner or QA)."
    )

    def get_self(self, task: ChangeTask) -> str:
        return reverse("api:change-task-detail", args=[task.pk])

    def get_complete(self, task: ChangeTask) -> str:
        return reverse("api:change-task-complete", args=[task.pk])


class ChangeTaskSerializer(serializers.ModelSerializer[ChangeTask]):
    """One implementation task of a change, with its owner and due date."""

    change = serializers.CharField(source="change.number", read_only=True)
    owner = SitePersonSerializer(read_only=True)
    status = NamedChoiceField(ActionStatus, read_only=True)
    overdue = serializers.SerializerMethodField(help_text="Open and past its due date.")
    done_by = SitePersonSerializer(read_only=True, allow_null=True)
    links = ChangeTaskLinksSerializer(source="*", read_only=True)

    class Meta:
        model = ChangeTask
        fields = [
            "id",
            "change",
            "description",
            "owner",
            "due_on",
            "overdue",
            "status",
            "done_at",
            "done_by",
            "links",
        ]
        read_only_fields = fields

    def get_overdue(self, task: ChangeTask) -> bool:
        today: dt.date = _today(self.context)
        return task.status == ActionStatus.OPEN and task.due_on < today


#
# Changes
#


class ChangeLinksSerializer(serializers.Serializer[ChangeControl]):
    self = serializers.SerializerMethodField(help_text="This change in the API.")
    html = serializers.SerializerMethodField(help_text="This change's page.")
    submit = serializers.SerializerMethodField(help_text="POST here to submit the draft.")
    approve = serializers.SerializerMethodField(help_text="POST here to sign an approval.")
    reject = serializers.SerializerMethodField(help_text="POST here to reject it (QA or a QP).")
    tasks = serializers.SerializerMethodField(help_text="POST an implementation task here (QA).")
    implement = serializers.SerializerMethodField(
        help_text="POST here to record it implemented (QA)."
    )
    close = serializers.SerializerMethodField(
        help_text="POST the post-implementation review here, signed (QA)."
    )

    def _url(self, name: str, change: ChangeControl) -> str:
        return reverse(f"api:change-control-{name}", args=[change.number])

    def get_self(self, change: ChangeControl) -> str:
        return self._url("detail", change)

    def get_html(self, change: ChangeControl) -> str:
        return reverse("deviations:change-detail", args=[change.number])

    def get_submit(self, change: ChangeControl) -> str:
        return self._url("submit", change)

    def get_approve(self, change: ChangeControl) -> str:
        return self._url("approve", change)

    def get_reject(self, change: ChangeControl) -> str:
        return self._url("reject", change)

    def get_tasks(self, change: ChangeControl) -> str:
        return self._url("tasks", change)

    def get_implement(self, change: ChangeControl) -> str:
        return self._url("implement", change)

    def get_close(self, change: ChangeControl) -> str:
        return self._url("close", change)


class ChangeControlSerializer(serializers.ModelSerializer[ChangeControl]):
    """A change: what changes and why, what it touches, its risk and regulatory impact, its
    status, the approvals given and still due, what its approval set off (a master-file draft,
    an MHRA notification), its tasks and the post-implementation review."""

    scopes = serializers.ListField(
        child=NamedChoiceField(ChangeScope), read_only=True, help_text="What it touches."
    )
    regulatory = serializers.BooleanField(
        read_only=True,
        help_text="Derived from the scopes: it touches the master file, a site's status or the "
        "release process (DV-09). Never set directly.",
    )
    product = ProductBriefSerializer(read_only=True, allow_null=True)
    site = SiteBriefSerializer(
        read_only=True, allow_null=True, help_text="Null for a network-wide change."
    )
    risk_level = NamedChoiceField(RiskLevel, read_only=True)
    status = NamedChoiceField(ChangeStatus, read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    badge = serializers.SerializerMethodField(help_text="Colour of the status.")
    proposed_by = SitePersonSerializer(source="created_by", read_only=True, allow_null=True)
    proposed_at = serializers.DateTimeField(source="created_at", read_only=True)
    qa_signature = serializers.SerializerMethodField(
        help_text="Control Site QA's approval (meaning `approved`), or null."
    )
    qp_signature = serializers.SerializerMethodField(
        help_text="A QP's approval (meaning `approved`), or null; needed only when regulatory."
    )
    approvals_due = serializers.SerializerMethodField(
        help_text="Whose approval is still needed: `qa`, and `qp` for a regulatory change."
    )
    master_file_draft = VersionBriefSerializer(
        read_only=True,
        allow_null=True,
        help_text="The master-file version its approval opened, or null.",
    )
    regulatory_notification = RegulatoryNotificationSerializer(
        read_only=True,
        allow_null=True,
        help_text="The MHRA notification record its approval opened, or null.",
    )
    tasks = serializers.SerializerMethodField(help_text="Implementation tasks, by due date.")
    links = ChangeLinksSerializer(source="*", read_only=True)

    class Meta:
        model = ChangeControl
        fields = [
            "number",
            "title",
            "description",
            "scopes",
            "regulatory",
            "product",
            "site",
            "risk_level",
            "risk_assessment",
            "regulatory_impact",
            "status",
            "status_display",
            "badge",
            "proposed_by",
            "proposed_at",
            "qa_signature",
            "qp_signature",
            "approvals_due",
            "master_file_draft",
            "regulatory_notification",
            "implemented_at",
            "review",
            "closed_at",
            "rejection_reason",
            "tasks",
            "links",
        ]
        read_only_fields = fields

    def get_badge(self, change: ChangeControl) -> str:
        return CHANGE_BADGE[change.status]

    @extend_schema_field(SignatureBriefSerializer(allow_null=True))
    def get_qa_signature(self, change: ChangeControl) -> dict[str, Any] | None:
        return signature_data(change.qa_signature, change)

    @extend_schema_field(SignatureBriefSerializer(allow_null=True))
    def get_qp_signature(self, change: ChangeControl) -> dict[str, Any] | None:
        return signature_data(change.qp_signature, change)

    @extend_schema_field(serializers.ListField(child=NamedChoiceField(ChangeApprovalCapacity)))
    def get_approvals_due(self, change: ChangeControl) -> list[str]:
        if change.status != ChangeStatus.IN_REVIEW:
            return []
        return services.approvals_due(change)

    @extend_schema_field(ChangeTaskSerializer(many=True))
    def get_tasks(self, change: ChangeControl) -> list[Any]:
        # Prefetched (with their people) by the views; read here otherwise.
        cache = getattr(change, "_prefetched_objects_cache", {})
        if "tasks" in cache:
            rows = sorted(cache["tasks"], key=lambda t: (t.due_on, t.pk))
        else:
            rows = list(change.tasks.select_related("change", "owner", "done_by"))
        return list(ChangeTaskSerializer(rows, many=True, context=self.context).data)


class ChangeControlDetailSerializer(ChangeControlSerializer):
    """One change, with QA's signature on its post-implementation review."""

    review_signature = serializers.SerializerMethodField(
        help_text="QA's signature on the post-implementation review (meaning `reviewed`), or "
        "null until the change is closed."
    )

    class Meta(ChangeControlSerializer.Meta):
        fields = [*ChangeControlSerializer.Meta.fields, "review_signature"]
        read_only_fields = fields

    @extend_schema_field(SignatureBriefSerializer(allow_null=True))
    def get_review_signature(self, change: ChangeControl) -> dict[str, Any] | None:
        if change.status != ChangeStatus.CLOSED:
            return None
        return signature_data(change_review_signature(change), change)


#
# Input
#


class ChangeInputSerializer(StrictSerializer):
    """The base of every change-control API input."""


class ChangeProposeSerializer(ChangeInputSerializer):
    """A change proposed as a draft. Send no `regulatory`: it follows from `scopes`."""

    title = serializers.CharField(max_length=TITLE_MAX)
    description = serializers.CharField(max_length=TEXT_MAX, help_text="What changes and why.")
    scopes = serializers.ListField(
        child=NamedChoiceField(ChangeScope), max_length=len(ChangeScope), help_text=SCOPES_HELP
    )
    product = NullableProductCodeField(
        required=False,
        allow_null=True,
        help_text="The product whose master file it changes, by code, e.g. CART-01.",
    )
    site = NullableSiteCodeField(
        required=False,
        allow_null=True,
        help_text="The site it concerns, by code, e.g. LDS1; leave out for a network-wide "
        "change. A site lead proposes only for a site they lead.",
    )
    risk_level = NamedChoiceField(RiskLevel)
    risk_assessment = serializers.CharField(
        max_length=TEXT_MAX,
        help_text="The quality-risk assessment, commensurate with the risk (DV-07).",
    )
    regulatory_impact = serializers.CharField(
        max_length=TEXT_MAX,
        required=False,
        allow_blank=True,
        help_text="Is a variation or an MHRA notification needed? Required when regulatory.",
    )
    reason = _reason_field()


class ChangeUpdateSerializer(ChangeInputSerializer):
    """The draft's fields: send those that change, with a reason. `regulatory` follows."""

    title = serializers.CharField(max_length=TITLE_MAX, required=False)
    description = serializers.CharField(max_length=TEXT_MAX, required=False)
    scopes = serializers.ListField(
        child=NamedChoiceField(ChangeScope),
        max_length=len(ChangeScope),
        required=False,
        help_text=SCOPES_HELP,
    )
    product = NullableProductCodeField(
        required=False, allow_null=True, help_text="A code, or null."
    )
    site = NullableSiteCodeField(required=False, allow_null=True, help_text="A code, or null.")
    risk_level = NamedChoiceField(RiskLevel, required=False)
    risk_assessment = serializers.CharField(max_length=TEXT_MAX, required=False)
    regulatory_impact = serializers.CharField(max_length=TEXT_MAX, required=False, allow_blank=True)
    reason = _reason_field()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if len(attrs) < 2:  # the reason alone changes nothing
            raise serializers.ValidationError(
                {"non_field_errors": ["Send at least one field to change."]},
                code="nothing_to_change",
            )
        return attrs


class ChangeReasonSerializer(ChangeInputSerializer):
    """A lifecycle step that needs only a reason."""

    reason = _reason_field()


class ChangeApproveSerializer(SignatureInputSerializer):
    """Control Site QA's approval, or a QP's for a regulatory change, signed `approved`."""

    meaning = NamedChoiceField(ChangeApprovalMeaning)


class ChangeCloseSerializer(SignatureInputSerializer):
    """The post-implementation review, signed `reviewed` by Control Site QA."""

    review = serializers.CharField(
        max_length=TEXT_MAX,
        allow_blank=True,
        help_text="Did the change do what was intended, without unintended effects? Required "
        "(400 `review_required` when blank).",
    )
    meaning = NamedChoiceField(ChangeReviewMeaning)


class ChangeTaskAddSerializer(ChangeInputSerializer):
    description = serializers.CharField(max_length=TEXT_MAX)
    owner = UsernameField(help_text="The username of the person who does it.")
    due_on = serializers.DateField(help_text="Today or later (400 `date_in_past`).")
    reason = _reason_field()


class ChangeTaskCompleteSerializer(ChangeInputSerializer):
    reason = _reason_field()
