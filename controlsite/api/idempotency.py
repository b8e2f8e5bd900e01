"""`Idempotency-Key` on POST: a retry replays the first response instead of acting twice."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from controlsite.api.auth import request_token
from controlsite.api.errors import PROBLEM_CONTENT_TYPE, problem, without_nul
from controlsite.api.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# Visible ASCII, no spaces: survives every proxy and log unchanged.
KEY_PATTERN = r"^[!-~]{1,255}$"
_KEY = re.compile(KEY_PATTERN)


class IdempotentReplayError(Exception):
    """Raised from `initial()` to short-circuit the view with a stored or refusing response."""

    def __init__(self, response: Response) -> None:
        super().__init__("idempotent replay")
        self.response = response


def _principal(request: Request) -> str:
    token = request_token(request)
    if token is not None:
        return f"token:{token.pk}"
    return f"user:{request.user.pk}"


def _body_hash(request: Request) -> str:
    raw: bytes = request._request.body
    try:
        canonical = json.dumps(json.loads(raw or b"null"), sort_keys=True, separators=(",", ":"))
        digest_input = canonical.encode()
    except ValueError:
        digest_input = raw
    return hashlib.sha256(digest_input).hexdigest()


def _refuse(status_code: int, code: str, detail: str) -> IdempotentReplayError:
    return IdempotentReplayError(
        Response(
            problem(status_code, code, detail),
            status=status_code,
            content_type=PROBLEM_CONTENT_TYPE,
        )
    )


def expired_before() -> dt.datetime:
    """Keys claimed before this moment are past their lifetime and may be used again."""
    return timezone.now() - dt.timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_SECONDS)


def purge_expired() -> int:
    """Delete every key past its lifetime (hourly, `controlsite.idempotency_purge`)."""
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=expired_before()).delete()
    return deleted


def claim(request: Request) -> IdempotencyRecord | None:
    """Claim the key for this request, or raise with the replay/refusal response."""
    key = request.headers.get(HEADER)
    if request.method != "POST" or key is None:
        return None
    if not _KEY.match(key):
        raise _refuse(
            400,
            "idempotency_key_invalid",
            f"{HEADER} must be 1–{MAX_KEY_LENGTH} visible ASCII characters, without spaces.",
        )
    principal = _principal(request)
    body_sha = _body_hash(request)
    path = request.path
    # The common case, a fresh key, costs one insert; a key met before is read, and one past
    # its lifetime is released and claimed anew.
    for _ in range(2):
        try:
            with transaction.atomic():
                return IdempotencyRecord.objects.create(
                    principal=principal, key=key, method="POST", path=path, body_sha256=body_sha
                )
        except IntegrityError:
            pass
        first = IdempotencyRecord.objects.get(principal=principal, key=key)
        if first.created_at >= expired_before():
            break
        first.delete()
    if first.path != path or first.body_sha256 != body_sha:
        raise _refuse(
            409,
            "idempotency_key_reused",
            f"This {HEADER} was already used with a different request.",
        )
    if first.status_code is None:
        raise _refuse(
            409,
            "idempotency_key_in_progress",
            f"A request with this {HEADER} is still being processed; retry shortly.",
        )
    replay = Response(first.response_body, status=first.status_code)
    if first.status_code >= 400:
        replay.content_type = PROBLEM_CONTENT_TYPE
    replay["Idempotent-Replayed"] = "true"
    raise IdempotentReplayError(replay)


def settle(record: IdempotencyRecord, response: Response) -> None:
    """Store the first response; a server error releases the key so the client may retry."""
    if response.status_code >= 500:
        record.delete()
        return
    data: Any = response.data
    record.status_code = response.status_code
    stored = json.loads(json.dumps(data, default=str)) if data is not None else None
    record.response_body = without_nul(stored)
    record.save(update_fields=["status_code", "response_body"])
