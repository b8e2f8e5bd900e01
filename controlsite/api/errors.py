"""`application/problem+json` (RFC 9457) for every API error, each with a stable `code`."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from controlsite.errors import ApplicationError

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "/api/v1/problems/"

_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    412: "Precondition failed",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Signature refused",
    429: "Too many requests",
    500: "Server error",
}


def problem(
    status_code: int, code: str, detail: str, errors: Any = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"{PROBLEM_TYPE_BASE}{code}",
        "title": _TITLES.get(status_code, "Error"),
        "status": status_code,
        "code": code,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    body.update(extra)
    return body


_NUL = "\x00"


def without_nul(value: Any) -> Any:
    """`value` with every NUL character, in keys and strings, shown as U+FFFD.

    Error bodies echo what the client sent (an unknown field's name, a refused choice); a NUL
    in them could not be stored as the idempotent replay (PostgreSQL's jsonb refuses `\\u0000`)
    and helps no reader.
    """
    if isinstance(value, str):
        return value.replace(_NUL, "\ufffd") if _NUL in value else value
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(item) for item in value]
    return value


def _first_code(codes: Any) -> str:
    if isinstance(codes, str):
        return codes
    if isinstance(codes, list) and codes:
        return _first_code(codes[0])
    if isinstance(codes, dict) and codes:
        return _first_code(next(iter(codes.values())))
    return "invalid"


def _summarise(errors: Any) -> str:
    if isinstance(errors, dict):
        parts = []
        for field, messages in errors.items():
            text = (
                "; ".join(str(m) for m in messages) if isinstance(messages, list) else str(messages)
            )
            parts.append(text if field == "non_field_errors" else f"{field}: {text}")
        return " ".join(parts)[:1000] or "The request is not valid."
    if isinstance(errors, list):
        return "; ".join(str(e) for e in errors)[:1000]
    return str(errors)


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler: every failure becomes problem+json and rolls back."""
    headers: dict[str, str] = {}
    if isinstance(exc, ApplicationError):
        set_rollback()
        body = problem(exc.status_code, exc.code, exc.message)
        if exc.extra is not None:
            body["extra"] = exc.extra
        return Response(body, status=exc.status_code, content_type=PROBLEM_CONTENT_TYPE)
    if isinstance(exc, ProtectedError):
        exc = exceptions.APIException(
            "The record is referenced by others and cannot be removed.", code="protected"
        )
        exc.status_code = status.HTTP_409_CONFLICT
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found, or not visible to you.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = exceptions.APIException("The request body is too large.", code="payload_too_large")
        exc.status_code = 413
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        )
    if not isinstance(exc, exceptions.APIException):
        return None
    wait = getattr(exc, "wait", None)
    if isinstance(exc, exceptions.Throttled) and wait is not None:
        headers["Retry-After"] = str(int(wait))
    auth_header = getattr(exc, "auth_header", None)
    if auth_header:
        headers["WWW-Authenticate"] = auth_header
    elif isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    set_rollback()
    if isinstance(exc, exceptions.ValidationError):
        errors = without_nul(exc.detail)
        code = _first_code(exc.get_codes())
        body = problem(
            400,
            "validation_error" if code == "invalid" else code,
            _summarise(errors),
            errors=errors,
        )
        return Response(body, status=400, headers=headers, content_type=PROBLEM_CONTENT_TYPE)
    code = _first_code(exc.get_codes())
    status_code = exc.status_code
    if isinstance(exc, exceptions.ParseError):
        code = "malformed_json" if "JSON" in str(exc.detail) else "malformed_body"
    elif isinstance(exc, exceptions.NotAuthenticated):
        code = "not_authenticated"
    body = problem(status_code, code, without_nul(str(exc.detail)))
    return Response(body, status=status_code, headers=headers, content_type=PROBLEM_CONTENT_TYPE)


def api_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(
        problem(404, "not_found", "No such API endpoint."),
        status=404,
        content_type=PROBLEM_CONTENT_TYPE,
    )


def api_server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        problem(
            500,
            "server_error",
            "The server failed; the request id names it in the logs.",
            request_id=getattr(request, "request_id", ""),
        ),
        status=500,
        content_type=PROBLEM_CONTENT_TYPE,
    )
