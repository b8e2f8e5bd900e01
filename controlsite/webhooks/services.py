"""Outbound webhooks (design §6): subscriptions, the outbox, and signed delivery with retries.

Apps report what happened with `webhook_emit(...)` inside the transaction of the change (the
outbox pattern): one `WebhookEvent` row, and one `WebhookDelivery` row for each active
subscription that wants the event type (and the site, if it is limited to sites). The delivery
task is sent on commit, so a change that rolls back is never reported. The beat task
`webhooks.deliver_due` sends every pending delivery that is due, every minute, so retries are
scheduled in the row, not in the broker, and a message Redis drops delays a delivery but never
loses it.

What a receiver gets
--------------------

    POST <the subscription's URL>
    Content-Type: application/json
    User-Agent: ControlSiteQMS-Webhooks/<CONTROLSITE_VERSION>
    X-ControlSite-Event: <event type>
    X-ControlSite-Delivery: <delivery id>
    X-ControlSite-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>

    {"id": "<event uuid>", "type": "<event type>", "created_at": "2026-01-31T09:00:00.000000Z",
     "data": {...}}

`v1` is the lower-case hex HMAC-SHA256, keyed with the subscription's secret (its UTF-8 bytes),
of the bytes `<t>.<raw body>`: the timestamp `t` in decimal digits, a full stop, then the body
exactly as received. To verify, recompute it over the raw body (before parsing the JSON), compare
in constant time, and refuse a `t` more than five minutes from your clock (a replay);
`webhook_signature_verify` below does exactly that. Delivery is at least once: the event's `id`
is the same on every retry and for every subscriber, so a receiver drops what it has seen.

Delivery and retries
--------------------

A 2xx answer is delivered. Anything else — another status, a redirect (never followed), a
time-out, a refused connection — is logged as a `WebhookAttempt` and retried 30 s, 2 min,
10 min, 1 h and then every 6 h later (give or take the minute of the sweep), until
WEBHOOK_MAX_ATTEMPTS (default 6) attempts have failed; the delivery is then failed, and QA or the
administrator may retry it. The request is sent outside any database transaction: the row is
claimed (locked, marked and committed), the request is sent with WEBHOOK_TIMEOUT_SECONDS, and the
outcome is written in a new short transaction. A re-run of a delivered or failed delivery, or of
one that is not yet due, does nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import http.client
import json
import logging
import re
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from controlsite.accounts import permissions
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability
from controlsite.audit.context import audit_context
from controlsite.audit.services import audit_event_record
from controlsite.background.tasks import enqueue_on_commit
from controlsite.errors import REASON_MAX as KERNEL_REASON_MAX
from controlsite.errors import ApplicationError, TransitionNotAllowedError, require_reason
from controlsite.webhooks import registry
from controlsite.webhooks.choices import WebhookDeliveryStatus
from controlsite.webhooks.events import WebhookAuditEvent
from controlsite.webhooks.models import (
    ERROR_MAX,
    RESPONSE_EXCERPT_MAX,
    URL_MAX,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105  (the public prefix of every secret, not a secret)
NAME_MAX = 100
REASON_MAX = KERNEL_REASON_MAX  # the kernel's limit, named here for the API serializers
EVENT_TYPES_MAX = 50
SITE_CODES_MAX = 200
# A site's code, as the sites app defines it (the kernel may not import it).
SITE_CODE_PATTERN = r"^[A-Z0-9]{2,8}$"
_SITE_CODE = re.compile(SITE_CODE_PATTERN)
_HOST = re.compile(r"^[A-Za-z0-9._-]+$")
PAYLOAD_MAX_BYTES = 64 * 1024

# Seconds before the next attempt after the 1st, 2nd, ... failed one; the last repeats.
RETRY_DELAYS_SECONDS = (30, 120, 600, 3600, 6 * 3600)
# A claimed delivery is due again this long after its request's time-out, in case its worker
# died mid-way (a live worker records the outcome well before).
LEASE_GRACE_SECONDS = 60
# Deliveries the sweep enqueues per run; the rest wait for the next minute.
SWEEP_BATCH = 500
# A receiver's clock may differ from ours; `webhook_signature_verify` accepts this much.
SIGNATURE_TOLERANCE_SECONDS = 300

CANCELLED_ERROR = "Not sent: the subscription was deactivated."

UPDATABLE_FIELDS = ("name", "url", "event_types", "site_codes")


#
# Rules shared by the services
#


def _require_manager(actor: User) -> None:
    permissions.require(
        actor,
        Capability.MANAGE_WEBHOOKS,
        "Only Control Site QA and the system administrator manage webhooks.",
    )


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ApplicationError("Give the subscription a name.", code="name_required")
    if len(name) > NAME_MAX:
        raise ApplicationError(f"A name is at most {NAME_MAX} characters.", code="name_too_long")
    return name


def webhook_url_check(url: str) -> str:
    """The receiver's URL as it will be stored, or `ApplicationError` (400) saying what is wrong.

    http or https only, and https only in production unless WEBHOOK_ALLOW_HTTP is set; no user
    name or password in it (the signature authenticates us, and the audit trail records the URL);
    at most 500 characters of ASCII (internationalised host names in their `xn--` form).
    """
    url = (url or "").strip()
    if not url:
        raise ApplicationError("Give the receiver's URL.", code="url_required")
    if len(url) > URL_MAX:
        raise ApplicationError(f"A URL is at most {URL_MAX} characters.", code="url_too_long")
    if not url.isascii() or any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ApplicationError(
            "The URL may hold only printable ASCII, without spaces (percent-encode the rest; "
            "internationalised host names in their xn-- form).",
            code="invalid_url",
        )
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ApplicationError(f"The URL is not valid: {exc}.", code="invalid_url") from exc
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise ApplicationError(
            "The URL must start with https:// (or http:// outside production).",
            code="url_scheme",
        )
    if "@" in parts.netloc:
        raise ApplicationError(
            "The URL may not carry a user name or password; receivers check the signature.",
            code="url_credentials",
        )
    host = parts.hostname or ""
    bracketed = parts.netloc.startswith("[")
    if not host or (not bracketed and not _HOST.match(host)) or port == 0:
        raise ApplicationError("The URL has no valid host name.", code="invalid_url")
    if scheme == "http" and settings.IS_PRODUCTION and not settings.WEBHOOK_ALLOW_HTTP:
        raise ApplicationError(
            "In production a receiver's URL must use https (set WEBHOOK_ALLOW_HTTP to allow "
            "http, e.g. on a closed network).",
            code="url_https_required",
        )
    return url


def _clean_event_types(values: list[str]) -> list[str]:
    cleaned = sorted({str(value).strip() for value in values})
    if len(cleaned) > EVENT_TYPES_MAX:
        raise ApplicationError(
            f"A subscription names at most {EVENT_TYPES_MAX} event types.",
            code="too_many_event_types",
        )
    unknown = [name for name in cleaned if not registry.is_registered(name)]
    if unknown:
        known = list(registry.registered_event_types())
        raise ApplicationError(
            f"Unknown event types: {', '.join(unknown) or '(blank)'}. Known: "
            f"{', '.join(known) or 'none yet'}.",
            code="unknown_event_type",
            extra={"unknown": unknown, "known": known},
        )
    return cleaned


def _clean_site_codes(values: list[str]) -> list[str]:
    cleaned = sorted({str(value).strip().upper() for value in values})
    if len(cleaned) > SITE_CODES_MAX:
        raise ApplicationError(
            f"A subscription names at most {SITE_CODES_MAX} sites.", code="too_many_sites"
        )
    bad = [code for code in cleaned if not _SITE_CODE.match(code)]
    if bad:
        raise ApplicationError(
            f"Site codes are 2–8 letters and digits, e.g. LON1; not {', '.join(bad) or '(blank)'}.",
            code="invalid_site_code",
        )
    return cleaned


_CLEANERS: dict[str, Any] = {
    "name": _clean_name,
    "url": webhook_url_check,
    "event_types": _clean_event_types,
    "site_codes": _clean_site_codes,
}


def _new_secret() -> str:
    return f"{SECRET_PREFIX}{secrets.token_urlsafe(32)}"


def _task() -> Any:
    # Imported late: the task module imports this one.
    from controlsite.webhooks.tasks import webhook_deliver as webhook_deliver_task

    return webhook_deliver_task


#
# Subscriptions: what QA and the administrator do
#


def webhook_subscription_create(
    *,
    actor: User,
    name: str,
    url: str,
    event_types: list[str],
    site_codes: list[str] | None = None,
    reason: str,
) -> WebhookSubscription:
    """Subscribe a receiver to some event types, optionally only for some sites.

    Who: Control Site QA or the system administrator (403 otherwise). Refused with 400 for a URL
    that `webhook_url_check` refuses, an event type no app registered (`unknown_event_type`, with
    the known ones in `extra`), or a malformed site code. An empty `event_types` subscribes to
    nothing until it is changed. The secret is generated here: the caller shows it once and it is
    never shown again. Writes the subscription and a `subscription_created` audit event (without
    the secret).
    """
    _require_manager(actor)
    reason = require_reason(reason)
    fields: dict[str, Any] = {
        "name": _clean_name(name),
        "url": webhook_url_check(url),
        "event_types": _clean_event_types(event_types),
        "site_codes": _clean_site_codes(site_codes or []),
    }
    with transaction.atomic(), audit_context(reason=reason):
        subscription = WebhookSubscription.objects.create(
            **fields, secret=_new_secret(), created_by=actor
        )
        audit_event_record(
            event_type=WebhookAuditEvent.SUBSCRIPTION_CREATED,
            actor=actor,
            target=subscription,
            extra=fields,
            reason=reason,
        )
    return subscription


def webhook_subscription_update(
    *, actor: User, subscription: WebhookSubscription, reason: str, changes: dict[str, Any]
) -> WebhookSubscription:
    """Change a subscription's name, URL, event types or sites; only the fields given change.

    Who: as `webhook_subscription_create`, with the same checks (400). A deactivated subscription
    is not changed (409 `subscription_inactive`). Deliveries already queued go to the new URL;
    the event types and sites decide only which later events are sent. Writes a
    `subscription_updated` audit event with the old and new values, if anything changed.
    """
    _require_manager(actor)
    reason = require_reason(reason)
    unknown = sorted(set(changes) - set(UPDATABLE_FIELDS))
    if unknown:
        raise ApplicationError(f"Cannot change {unknown} here.", code="not_updatable")
    cleaned = {field: _CLEANERS[field](value) for field, value in changes.items()}
    with transaction.atomic(), audit_context(reason=reason):
        locked = WebhookSubscription.objects.select_for_update().get(pk=subscription.pk)
        if not locked.active:
            raise TransitionNotAllowedError(
                "A deactivated subscription is not changed; create a new one.",
                code="subscription_inactive",
            )
        old: dict[str, Any] = {}
        new: dict[str, Any] = {}
        for field, value in cleaned.items():
            if getattr(locked, field) != value:
                old[field], new[field] = getattr(locked, field), value
                setattr(locked, field, value)
        if not new:
            return locked
        locked.save(update_fields=[*new, "updated_at"])
        audit_event_record(
            event_type=WebhookAuditEvent.SUBSCRIPTION_UPDATED,
            actor=actor,
            target=locked,
            extra={"old": old, "new": new},
            reason=reason,
        )
    return locked


def webhook_subscription_deactivate(
    *, actor: User, subscription: WebhookSubscription, reason: str
) -> WebhookSubscription:
    """Stop sending to a receiver, for good (a subscription is never deleted).

    Who: as `webhook_subscription_create`. Refused with 409 `subscription_inactive` if it already
    is. Its pending deliveries are failed with the error "Not sent: the subscription was
    deactivated." Writes a `subscription_deactivated` audit event with how many were cancelled.
    """
    _require_manager(actor)
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason):
        locked = WebhookSubscription.objects.select_for_update().get(pk=subscription.pk)
        if not locked.active:
            raise TransitionNotAllowedError(
                "The subscription is already deactivated.", code="subscription_inactive"
            )
        now = timezone.now()
        locked.active = False
        locked.deactivated_at = now
        locked.save(update_fields=["active", "deactivated_at", "updated_at"])
        # Job rows without history: one UPDATE. A delivery being sent right now keeps its
        # attempt in the log; its outcome no longer changes the status (see `_record`).
        cancelled = WebhookDelivery.objects.filter(
            subscription=locked, status=WebhookDeliveryStatus.PENDING
        ).update(
            status=WebhookDeliveryStatus.FAILED,
            next_attempt_at=None,
            last_error=CANCELLED_ERROR,
            updated_at=now,
        )
        audit_event_record(
            event_type=WebhookAuditEvent.SUBSCRIPTION_DEACTIVATED,
            actor=actor,
            target=locked,
            extra={"url": locked.url, "cancelled_deliveries": cancelled},
            reason=reason,
        )
    return locked


def webhook_delivery_retry(
    *, actor: User, delivery: WebhookDelivery, reason: str
) -> WebhookDelivery:
    """Send a failed delivery again, with a fresh set of WEBHOOK_MAX_ATTEMPTS attempts (the log
    keeps the earlier ones).

    Who: as `webhook_subscription_create`. Refused with 409 `delivery_not_failed` unless the
    delivery failed, and 409 `subscription_inactive` if its subscription was deactivated.
    Writes a `delivery_retried` audit event; the delivery task is sent on commit.
    """
    _require_manager(actor)
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason):
        locked = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("subscription", "event")
            .get(pk=delivery.pk)
        )
        if locked.status != WebhookDeliveryStatus.FAILED:
            raise TransitionNotAllowedError(
                f"Delivery {locked.pk} is {locked.get_status_display().lower()}; only a failed "
                "delivery is retried.",
                code="delivery_not_failed",
            )
        if not locked.subscription.active:
            raise TransitionNotAllowedError(
                "The subscription was deactivated; its deliveries are not sent again.",
                code="subscription_inactive",
            )
        previous = {
            "attempts": locked.attempts,
            "last_status_code": locked.last_status_code,
            "last_error": locked.last_error,
        }
        locked.status = WebhookDeliveryStatus.PENDING
        locked.attempts = 0
        locked.next_attempt_at = timezone.now()
        locked.save(update_fields=["status", "attempts", "next_attempt_at", "updated_at"])
        audit_event_record(
            event_type=WebhookAuditEvent.DELIVERY_RETRIED,
            actor=actor,
            target=locked,
            extra={
                "subscription": locked.subscription_id,
                "event_id": str(locked.event.event_id),
                "event_type": locked.event.event_type,
                "previous": previous,
            },
            reason=reason,
        )
        enqueue_on_commit(_task(), locked.pk)
    return locked


#
# The outbox: what apps call
#


def _wants(subscription: WebhookSubscription, event_type: str, site_code: str) -> bool:
    if event_type not in subscription.event_types:
        return False
    return not subscription.site_codes or site_code in subscription.site_codes


def webhook_emit(
    *, event_type: str, payload: dict[str, Any], site_code: str = ""
) -> WebhookEvent | None:
    """Report an event to every subscriber that wants it, once the caller's transaction commits.

    Call it inside the transaction of the change it reports (the outbox pattern): the event and
    its deliveries commit or roll back with the change, and the delivery tasks are sent only on
    commit. Called outside a transaction it raises `TransactionManagementError`.

    `event_type` must be registered (`registry.register_event_type`), else ValueError.
    `payload` is the event's `data`: a JSON object of at most 64 KiB (dates, times, decimals and
    UUIDs are written as strings). `site_code` names the site the event concerns, if any: a
    subscription limited to sites is sent only the events of its sites.

    Returns the event, or None when no active subscription wants it (nothing is written).
    """
    if not registry.is_registered(event_type):
        raise ValueError(
            f"Webhook event type {event_type!r} is not registered; register it with "
            "controlsite.webhooks.registry.register_event_type() in the app's ready()"
        )
    if site_code and not _SITE_CODE.match(site_code):
        raise ValueError(f"Not a site code: {site_code!r}")
    if not isinstance(payload, dict):
        raise TypeError("A webhook payload is a dict (a JSON object)")
    text = json.dumps(payload, cls=DjangoJSONEncoder, ensure_ascii=False)
    if len(text.encode()) > PAYLOAD_MAX_BYTES:
        raise ValueError(f"A webhook payload is at most {PAYLOAD_MAX_BYTES} bytes of JSON")
    if "\x00" in text or "\\u0000" in text:
        raise ValueError("A webhook payload may not contain a NUL character")
    if transaction.get_autocommit():
        raise transaction.TransactionManagementError(
            "webhook_emit() must run inside the transaction of the change it reports"
        )
    # Subscriptions are few (configured by hand); matching them here works on every database.
    wanting = [
        subscription
        for subscription in WebhookSubscription.objects.filter(active=True).only(
            "id", "event_types", "site_codes"
        )
        if _wants(subscription, event_type, site_code)
    ]
    if not wanting:
        return None
    with transaction.atomic():
        event = WebhookEvent.objects.create(
            event_type=event_type, payload=json.loads(text), site_code=site_code
        )
        due = timezone.now()
        for subscription in wanting:
            delivery = WebhookDelivery.objects.create(
                subscription=subscription, event=event, next_attempt_at=due
            )
            enqueue_on_commit(_task(), delivery.pk)
    return event


#
# Signing: what a receiver checks
#


def _utc_z(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def webhook_body(event: WebhookEvent) -> bytes:
    """The exact bytes POSTed for `event` (the same to every subscriber, on every attempt)."""
    document = {
        "id": str(event.event_id),
        "type": event.event_type,
        "created_at": _utc_z(event.created_at),
        "data": event.payload,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The `X-ControlSite-Signature` header value: `t=<timestamp>,v1=<hex HMAC-SHA256 of
    "<timestamp>.<body>" keyed with the secret>`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def webhook_signature_verify(
    *,
    secret: str,
    header: str,
    body: bytes,
    now: float | None = None,
    tolerance_seconds: int = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver does with the header: True if `v1` is the HMAC of this body with this
    secret and `t` is within `tolerance_seconds` of `now`. The reference for integrators."""
    fields: dict[str, str] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        fields.setdefault(key, value)
    stamp, offered = fields.get("t", ""), fields.get("v1", "")
    if not stamp.isdigit() or not offered:
        return False
    moment = time.time() if now is None else now
    if abs(moment - int(stamp)) > tolerance_seconds:
        return False
    expected = webhook_signature(secret=secret, timestamp=int(stamp), body=body)
    return hmac.compare_digest(expected, f"t={stamp},v1={offered}")


#
# Delivery: the task body
#


@dataclasses.dataclass(frozen=True)
class _Claim:
    """What one attempt needs, read while the delivery was locked."""

    delivery_id: int
    attempt: int
    url: str
    secret: str
    event_type: str
    body: bytes


@dataclasses.dataclass(frozen=True)
class _Outcome:
    attempted_at: dt.datetime
    status_code: int | None
    error: str
    duration_ms: int
    excerpt: str

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _max_attempts() -> int:
    return max(1, int(settings.WEBHOOK_MAX_ATTEMPTS))


def _timeout() -> float:
    return max(1.0, float(settings.WEBHOOK_TIMEOUT_SECONDS))


def retry_delay(attempt: int) -> dt.timedelta:
    """How long after the `attempt`-th failed attempt the next one is due."""
    index = min(max(attempt, 1), len(RETRY_DELAYS_SECONDS)) - 1
    return dt.timedelta(seconds=RETRY_DELAYS_SECONDS[index])


def _text(value: str, limit: int) -> str:
    # PostgreSQL text refuses NUL; a receiver's answer may hold anything.
    return value.replace("\x00", "\ufffd")[:limit]


def _fail(delivery: WebhookDelivery, error: str) -> None:
    delivery.status = WebhookDeliveryStatus.FAILED
    delivery.next_attempt_at = None
    delivery.last_error = _text(error, ERROR_MAX)
    delivery.save(update_fields=["status", "next_attempt_at", "last_error", "updated_at"])


def _claim(delivery_id: int) -> _Claim | None:
    """Lock the delivery, count the attempt and push `next_attempt_at` past the request's
    time-out, and commit: no other worker sends it meanwhile, and no lock is held while the
    request is out. None if there is nothing to send."""
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("subscription", "event")
            .filter(pk=delivery_id)
            .first()
        )
        now = timezone.now()
        if delivery is None or delivery.status != WebhookDeliveryStatus.PENDING:
            return None  # a re-run of a delivered or failed delivery does nothing
        if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
            return None  # not due yet, or another worker is sending it now
        if not delivery.subscription.active:
            _fail(delivery, CANCELLED_ERROR)
            return None
        if delivery.attempts >= _max_attempts():
            # The last attempt's worker stopped before it could record the outcome.
            _fail(delivery, delivery.last_error or "The last attempt did not finish.")
            return None
        delivery.attempts += 1
        lease = _timeout() * 2 + LEASE_GRACE_SECONDS
        delivery.next_attempt_at = now + dt.timedelta(seconds=lease)
        delivery.save(update_fields=["attempts", "next_attempt_at", "updated_at"])
        return _Claim(
            delivery_id=delivery.pk,
            attempt=delivery.attempts,
            url=delivery.subscription.url,
            secret=delivery.subscription.secret,
            event_type=delivery.event.event_type,
            body=webhook_body(delivery.event),
        )


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is not followed: the body goes only to the URL QA registered. It is logged
    and retried like any other answer that is not 2xx."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, bytes, str]:
    """POST and return (status or None, the first 1 KB of the answer, error text)."""
    if urllib.parse.urlsplit(url).scheme.lower() not in {"http", "https"}:
        return None, b"", "The URL is not http or https; nothing was sent."
    opener = urllib.request.build_opener(_NoRedirects())
    # The scheme is http or https: checked above and when the URL was stored.
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with opener.open(request, timeout=_timeout()) as response:
            status: int = response.status
            try:
                excerpt: bytes = response.read(RESPONSE_EXCERPT_MAX)
            except (OSError, http.client.HTTPException):
                excerpt = b""  # the status is the answer; a body cut short does not change it
            return status, excerpt, ""
    except urllib.error.HTTPError as exc:
        with exc:
            try:
                excerpt = exc.read(RESPONSE_EXCERPT_MAX)
            except (OSError, http.client.HTTPException):
                excerpt = b""
        return exc.code, excerpt, f"HTTP {exc.code} {exc.reason}".strip()
    except urllib.error.URLError as exc:
        cause = exc.reason
        kind = type(cause).__name__ if isinstance(cause, BaseException) else "URLError"
        return None, b"", f"{kind}: {cause}"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # A time-out while reading the answer, a connection reset, a malformed answer.
        return None, b"", f"{type(exc).__name__}: {exc}"


def _send(claim: _Claim) -> _Outcome:
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"ControlSiteQMS-Webhooks/{settings.CONTROLSITE_VERSION}",
        "X-ControlSite-Event": claim.event_type,
        "X-ControlSite-Delivery": str(claim.delivery_id),
        "X-ControlSite-Signature": webhook_signature(
            secret=claim.secret, timestamp=timestamp, body=claim.body
        ),
    }
    attempted_at = timezone.now()
    started = time.monotonic()
    status, excerpt, error = _post(claim.url, claim.body, headers)
    return _Outcome(
        attempted_at=attempted_at,
        status_code=status,
        error=_text(error, ERROR_MAX),
        duration_ms=int((time.monotonic() - started) * 1000),
        excerpt=_text(excerpt.decode("utf-8", errors="replace"), RESPONSE_EXCERPT_MAX),
    )


def _record(claim: _Claim, outcome: _Outcome) -> None:
    """Log the attempt and move the delivery on: delivered, due again later, or failed."""
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(pk=claim.delivery_id)
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=claim.attempt,
            attempted_at=outcome.attempted_at,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
            response_excerpt=outcome.excerpt,
        )
        if delivery.status != WebhookDeliveryStatus.PENDING or delivery.attempts != claim.attempt:
            # Deactivated meanwhile, or claimed again after this attempt outlived its lease:
            # the log keeps the attempt, the status belongs to whoever holds the row now.
            return
        delivery.last_status_code = outcome.status_code
        fields = ["status", "next_attempt_at", "last_status_code", "last_error", "updated_at"]
        if outcome.delivered:
            delivery.status = WebhookDeliveryStatus.DELIVERED
            delivery.delivered_at = timezone.now()
            delivery.next_attempt_at = None
            delivery.last_error = ""
            fields.append("delivered_at")
        elif claim.attempt >= _max_attempts():
            delivery.status = WebhookDeliveryStatus.FAILED
            delivery.next_attempt_at = None
            delivery.last_error = outcome.error
            logger.warning(
                "Webhook delivery %s failed after %s attempts: %s",
                delivery.pk,
                claim.attempt,
                outcome.error,
            )
        else:
            delivery.next_attempt_at = timezone.now() + retry_delay(claim.attempt)
            delivery.last_error = outcome.error
        delivery.save(update_fields=fields)


def webhook_deliver(delivery_id: int) -> bool:
    """Make one attempt at a delivery, if it is pending and due; True if a request was sent.

    Called by the `webhooks.deliver` task. Idempotent: a delivered or failed delivery, or one not
    yet due (or being sent by another worker), is left alone. The request goes out between two
    short transactions, never inside one.
    """
    claim = _claim(delivery_id)
    if claim is None:
        return False
    outcome = _send(claim)
    _record(claim, outcome)
    return True


def webhook_deliveries_enqueue_due(*, limit: int = SWEEP_BATCH) -> int:
    """Send a task for each pending delivery that is due, oldest first; returns how many.

    Run every minute by the beat task `webhooks.deliver_due`. It finds retries that have come
    due, first attempts whose message was lost, and attempts whose worker died (their lease ran
    out). A delivery enqueued twice is sent once: the second task finds it claimed or done.
    """
    due = list(
        WebhookDelivery.objects.filter(
            status=WebhookDeliveryStatus.PENDING, next_attempt_at__lte=timezone.now()
        )
        .order_by("next_attempt_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
    task = _task()
    for delivery_id in due:
        enqueue_on_commit(task, delivery_id)
    return len(due)
