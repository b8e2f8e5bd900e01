"""OpenAPI: problem+json on every operation, and the Idempotency-Key header on POSTs."""

from __future__ import annotations

from typing import Any, Literal

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from controlsite.api.idempotency import KEY_PATTERN


class ProblemSerializer(serializers.Serializer[Any]):
    """An `application/problem+json` body (RFC 9457). Response-only."""

    type = serializers.CharField(read_only=True)
    title = serializers.CharField(read_only=True)
    status = serializers.IntegerField(read_only=True, help_text="The HTTP status code.")
    code = serializers.CharField(read_only=True, help_text="Stable machine-readable error code.")
    detail = serializers.CharField(read_only=True)
    # A field named like Serializer.errors: the problem body's per-field messages. Not read-only
    # (read-only fields are "required" in responses) but this serializer never parses input.
    errors = serializers.DictField(  # type: ignore[assignment]
        required=False, help_text="Per-field messages, when there are any."
    )


_PROBLEM = OpenApiResponse(response=ProblemSerializer, description="application/problem+json")


class AutoSchema(SpectacularAutoSchema):
    def _get_response_bodies(
        self, direction: Literal["request", "response"] = "response"
    ) -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        method = self.method.upper()
        codes = ["401", "403", "404"] if self._is_detail() else ["401", "403"]
        if method in {"POST", "PUT", "PATCH", "DELETE"}:
            codes += ["400", "409", "413", "415", "422"]
            if self._is_detail():
                codes += ["412"]
        if method == "GET":
            codes += ["400", "404"]  # a bad filter; an invalid or stale cursor
        for code in codes:
            if code not in responses:
                responses[code] = self._get_response_for_code(  # type: ignore[no-untyped-call]
                    _PROBLEM, code, media_types=["application/problem+json"], direction=direction
                )
        return responses

    def _is_list_view(self, serializer: Any = None) -> bool:
        # A viewset whose `list` answers one object (e.g. /me/) sets `single_object = True`.
        if getattr(self.view, "single_object", False):
            return False
        return bool(super()._is_list_view(serializer))

    def _is_detail(self) -> bool:
        return "{" in self.path

    def _get_filter_parameters(self) -> list[dict[str, Any]]:
        # StrictFilterBackend refuses empty filter values; say so in the document.
        params: list[dict[str, Any]] = super()._get_filter_parameters()  # type: ignore[no-untyped-call]
        for param in params:
            schema = param.get("schema", {})
            if schema.get("type") == "string":
                schema["minLength"] = 1
        return params

    def get_override_parameters(self) -> list[Any]:
        params: list[Any] = list(super().get_override_parameters())
        if self.method.upper() in {"POST", "PUT", "PATCH", "DELETE"} and self._is_detail():
            params.append(
                OpenApiParameter(
                    name="If-Match",
                    location=OpenApiParameter.HEADER,
                    required=False,
                    type=str,
                    description="The record's ETag from your last read; 412 if it has changed.",
                )
            )
        if self.method.upper() == "POST":
            params.append(
                OpenApiParameter(
                    name="Idempotency-Key",
                    location=OpenApiParameter.HEADER,
                    required=False,
                    type={
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 255,
                        "pattern": KEY_PATTERN,
                    },
                    description=(
                        "Retry-safe POST: the same key and body replay the first response; "
                        "the same key with a different body is 409."
                    ),
                )
            )
        return params
