from __future__ import annotations

from typing import Any

from rest_framework import serializers

from controlsite.api.base import SignatureInputSerializer
from controlsite.audit.models import AuditEvent, AuditReview
from controlsite.signatures.models import ElectronicSignature, SignatureMeaning


class SignatureSerializer(serializers.ModelSerializer[ElectronicSignature]):
    meaning_display = serializers.CharField(source="get_meaning_display", read_only=True)

    class Meta:
        model = ElectronicSignature
        fields = [
            "id",
            "printed_name",
            "signer_username",
            "meaning",
            "meaning_display",
            "reason",
            "signed_at",
            "target_type",
            "target_id",
            "record_hash",
            "components",
        ]
        read_only_fields = fields


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    class Meta:
        model = AuditEvent
        fields = [
            "seq",
            "occurred_at",
            "event_type",
            "actor_username",
            "target_type",
            "target_id",
            "target_repr",
            "site_code",
            "extra_data",
            "reason",
            "request_id",
            "ip",
            "signature",
            "prev_hash",
            "hash",
        ]
        read_only_fields = fields


class AuditReviewSerializer(serializers.ModelSerializer[AuditReview]):
    signatures = serializers.SerializerMethodField()

    class Meta:
        model = AuditReview
        fields = [
            "id",
            "from_seq",
            "to_seq",
            "events_reviewed",
            "chain_intact",
            "comment",
            "created_at",
            "signatures",
        ]
        read_only_fields = fields

    def get_signatures(self, obj: AuditReview) -> list[dict[str, Any]]:
        from controlsite.signatures.services import signatures_for

        return [
            {**SignatureSerializer(sig).data, "valid": valid} for sig, valid in signatures_for(obj)
        ]


class AuditReviewCreateSerializer(SignatureInputSerializer):
    meaning = SignatureInputSerializer.meaning_field(SignatureMeaning.REVIEWED)
    comment = serializers.CharField(max_length=5000, required=False, allow_blank=True)


class MeSerializer(serializers.Serializer[Any]):
    """Who the API sees: the user, their roles and what the presented token allows."""

    username = serializers.CharField(read_only=True)
    printed_name = serializers.CharField(read_only=True)
    roles = serializers.ListField(child=serializers.CharField(), read_only=True)
    capabilities = serializers.ListField(child=serializers.CharField(), read_only=True)
    mfa_required = serializers.BooleanField(read_only=True)
    token = serializers.DictField(
        read_only=True,
        allow_null=True,
        help_text="The token used for this request (name, prefix, scope, sites, expiry), "
        "or null for a browser session.",
    )
