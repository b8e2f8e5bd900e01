"""The base every API viewset builds on (design §6).

It scopes nothing by itself — each viewset's `get_queryset()` calls its app's `visible_to`
selector — but it gives every endpoint the same edges: problem+json errors, strict input
(unknown or read-only fields are refused), `Idempotency-Key` replay on POST, the audit context's
origin and reason, and a signature input shared by every signing action.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model
from rest_framework import exceptions, serializers, viewsets
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response

from controlsite.api import idempotency
from controlsite.api.models import IdempotencyRecord
from controlsite.audit import context
from controlsite.signatures.models import SignatureMeaning
from controlsite.signatures.services import SignatureCredentials, content_hash


class StrictSerializerMixin:
    """Refuse fields the serializer does not accept, including read-only ones like `status`."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {"non_field_errors": ["Expected a JSON object."]}, code="invalid_body"
            )
        fields = self.fields  # type: ignore[attr-defined]  # the serializer this mixes into
        writable = {name for name, field in fields.items() if not field.read_only}
        unknown = sorted(set(data) - writable)
        if unknown:
            raise serializers.ValidationError(
                {name: ["Unknown or read-only field."] for name in unknown}, code="unknown_field"
            )
        # Text fields take JSON strings only: DRF would turn 123 into "123", but the OpenAPI
        # document says string, so a number is refused like any other wrong type.
        not_text = sorted(
            name
            for name, field in fields.items()
            if isinstance(field, serializers.CharField)
            and not field.read_only
            and data.get(name) is not None
            and not isinstance(data[name], str)
        )
        if not_text:
            raise serializers.ValidationError(
                {name: ["Must be a string."] for name in not_text}, code="invalid"
            )
        return super().to_internal_value(data)  # type: ignore[misc]


def validated_input(
    serializer_class: type[serializers.BaseSerializer[Any]], request: Request
) -> Any:
    """The validated body. Writes parse it before fetching the record, so a malformed body is
    a 400 whatever the record or the `If-Match` header says."""
    data = serializer_class(data=request.data, context={"request": request})
    data.is_valid(raise_exception=True)
    return data


def split_reason(data: Any) -> tuple[dict[str, Any], str]:
    """The validated fields without `reason`, and the reason for the audit trail."""
    fields = dict(data.validated_data)
    return fields, fields.pop("reason")


class StrictSerializer(StrictSerializerMixin, serializers.Serializer[Any]):
    pass


class SignatureInputSerializer(StrictSerializer):
    """The fields every signing action takes (ES-01, ES-05, ES-06, ES-09)."""

    username = serializers.CharField(
        max_length=150,
        help_text="Your username. Every API signing is outside a continuous session, so it is "
        "always required (21 CFR 11.200(a)(1)(ii)).",
    )
    password = serializers.CharField(max_length=256, trim_whitespace=False, write_only=True)
    otp = serializers.CharField(
        max_length=8,
        required=False,
        allow_blank=True,
        write_only=True,
        help_text="6-digit TOTP code, required where your role needs a second factor.",
    )
    meaning = serializers.ChoiceField(choices=SignatureMeaning.choices)
    reason = serializers.CharField(max_length=2000)

    @staticmethod
    def meaning_field(*meanings: SignatureMeaning) -> serializers.ChoiceField:
        """The meanings one action signs with, so the OpenAPI document lists exactly those."""
        return serializers.ChoiceField(choices=[(m.value, m.label) for m in meanings])

    def credentials(self) -> SignatureCredentials:
        data = self.validated_data
        return SignatureCredentials(
            username=data["username"],
            password=data["password"],
            otp=data.get("otp", ""),
            continuous_session=False,
        )


class PreconditionFailedError(exceptions.APIException):
    status_code = 412
    default_detail = "The record changed since you read it; fetch it again and retry."
    default_code = "precondition_failed"


def record_etag(record: Model) -> str:
    """A strong ETag from the record's canonical content: it changes whenever the content a
    signature would bind to changes (design §6: `If-Match`, 412 when stale)."""
    return f'"{content_hash(record)}"'


class BaseViewSet(viewsets.GenericViewSet):  # type: ignore[type-arg]
    """Shared edges for every API viewset."""

    _idempotency: IdempotencyRecord | None = None
    _etag_object: Model | None = None

    def get_object(self) -> Any:
        """The visible record; an unsafe request carrying `If-Match` must name its current ETag,
        so an integrator never acts on a record that changed since they read it."""
        obj = super().get_object()
        self._etag_object = obj
        if_match = self.request.headers.get("If-Match")
        if self.request.method not in SAFE_METHODS and if_match is not None:
            current = record_etag(obj)
            offered = {tag.strip() for tag in if_match.split(",")}
            if "*" not in offered and current not in offered:
                raise PreconditionFailedError()
        return obj

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        context.update_context(
            origin=f"api {request.method} {request.path}"[:200],
            reason=f"origin=api view={type(self).__name__} action={self.action}",
        )
        self._idempotency = idempotency.claim(request)

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, idempotency.IdempotentReplayError):
            return exc.response
        return super().handle_exception(exc)

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        if (
            request.method in SAFE_METHODS
            and response.status_code == 200
            and self.action == "retrieve"
            and self._etag_object is not None
        ):
            response["ETag"] = record_etag(self._etag_object)
        record = self._idempotency
        if record is not None:
            self._idempotency = None
            idempotency.settle(record, response)
        return response


class ReadOnlyBaseViewSet(viewsets.ReadOnlyModelViewSet, BaseViewSet):  # type: ignore[type-arg]
    pass
