"""Outbound webhooks (design §6): signed JSON from an outbox, delivered with retries.

Deliveries go to a real HTTP receiver on 127.0.0.1 (a thread of this process) that records every
request and answers what the test scripts; nothing about the sending is mocked.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from controlsite.accounts.models import User
from controlsite.api.models import IdempotencyRecord, TokenScope
from controlsite.api.tokens import api_token_create
from controlsite.audit.models import AuditEvent
from controlsite.errors import ApplicationError, PermissionRefusedError, TransitionNotAllowedError
from controlsite.webhooks import registry, services
from controlsite.webhooks.choices import WebhookDeliveryStatus
from controlsite.webhooks.events import WebhookAuditEvent
from controlsite.webhooks.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from controlsite.webhooks.tasks import webhook_deliver
from tests.matrix import Matrix, only

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
PROBLEM = "application/problem+json"
EVENT = "tests.thing_happened"
OTHER_EVENT = "tests.other_thing"
PENDING, DELIVERED, FAILED = (
    WebhookDeliveryStatus.PENDING,
    WebhookDeliveryStatus.DELIVERED,
    WebhookDeliveryStatus.FAILED,
)


#
# A real receiver
#


@dataclasses.dataclass(frozen=True)
class Received:
    path: str
    headers: Message
    body: bytes


class Receiver:
    """Records each POST; answers the scripted status codes in turn, then 200."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.answers: list[int] = []
        self.delay = 0.0
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook?via=test"

    def answer(self, *codes: int) -> None:
        self.answers.extend(codes)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with receiver.lock:
            receiver.requests.append(Received(self.path, self.headers, body))
            code = receiver.answers.pop(0) if receiver.answers else 200
        if receiver.delay:
            time.sleep(receiver.delay)
        reply = b"ok" if code < 300 else b"boom\x00" + b"x" * 1500
        self.send_response(code)
        if 300 <= code < 400:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        return  # no console output


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that hangs up early (a time-out test) is not an error here


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    # urllib honours proxy variables; the receiver is local.
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    the_receiver = Receiver()
    server = _Server(("127.0.0.1", 0), _Handler)
    server.receiver = the_receiver
    the_receiver.server = server
    # A short poll: shutdown() waits for the loop's next look, 0.5 s by default, per test.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield the_receiver
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


#
# Helpers
#


@pytest.fixture(autouse=True)
def event_types() -> Iterator[None]:
    registry.register_event_type(EVENT, "Something happened (tests).")
    registry.register_event_type(OTHER_EVENT, "Something else happened (tests).")
    yield
    registry.unregister_event_type(EVENT)
    registry.unregister_event_type(OTHER_EVENT)


@pytest.fixture
def qa(persona: Callable[[str], User]) -> User:
    return persona("qa")


def subscribe(
    actor: User,
    url: str,
    *,
    event_types: tuple[str, ...] = (EVENT,),
    site_codes: tuple[str, ...] = (),
    name: str = "ERP",
) -> WebhookSubscription:
    return services.webhook_subscription_create(
        actor=actor,
        name=name,
        url=url,
        event_types=list(event_types),
        site_codes=list(site_codes),
        reason="connect the ERP",
    )


def emit(capture: Any, *, execute: bool = True, **kwargs: Any) -> WebhookEvent | None:
    """Emit inside a transaction, as an app's service does; the tasks run when it commits."""
    kwargs.setdefault("event_type", EVENT)
    kwargs.setdefault("payload", {"batch": "LON1-2026-0001", "quantity": 3})
    with capture(execute=execute), transaction.atomic():
        return services.webhook_emit(**kwargs)


def make_due(delivery: WebhookDelivery) -> None:
    """The clock moves on past the delivery's next attempt (job rows: no history)."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - dt.timedelta(seconds=1)
    )


def deliver_due(capture: Any) -> int:
    """What the beat task does every minute."""
    with capture(execute=True):
        return services.webhook_deliveries_enqueue_due()


def audit_events(event_type: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type=event_type).order_by("seq"))


#
# What a receiver gets, and how it checks it
#


def test_a_receiver_gets_the_signed_event_with_its_headers(
    qa, receiver, django_capture_on_commit_callbacks, settings
):
    subscription = subscribe(qa, receiver.url)
    event = emit(django_capture_on_commit_callbacks, site_code="LON1")
    assert event is not None
    (request,) = receiver.requests
    delivery = WebhookDelivery.objects.get()

    assert request.path == "/hook?via=test"
    body = json.loads(request.body)
    assert body == {
        "id": str(event.event_id),
        "type": EVENT,
        "created_at": body["created_at"],
        "data": {"batch": "LON1-2026-0001", "quantity": 3},
    }
    created = dt.datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
    assert body["created_at"].endswith("Z") and created == event.created_at

    headers = request.headers
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"ControlSiteQMS-Webhooks/{settings.CONTROLSITE_VERSION}"
    assert headers["X-ControlSite-Event"] == EVENT
    assert headers["X-ControlSite-Delivery"] == str(delivery.pk)

    # The documented scheme, computed here independently of the service.
    stamp, mac = (part.split("=", 1)[1] for part in headers["X-ControlSite-Signature"].split(","))
    expected = hmac.new(
        subscription.secret.encode(), f"{stamp}.".encode() + request.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(mac, expected)
    assert abs(int(stamp) - time.time()) < 60
    assert services.webhook_signature_verify(
        secret=subscription.secret, header=headers["X-ControlSite-Signature"], body=request.body
    )

    delivery.refresh_from_db()
    assert delivery.status == DELIVERED
    assert delivery.attempts == 1
    assert delivery.last_status_code == 200
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None
    (attempt,) = delivery.attempt_log.all()
    assert (attempt.number, attempt.status_code, attempt.error) == (1, 200, "")
    assert attempt.response_excerpt == "ok"
    assert 0 <= attempt.duration_ms < 10_000


def test_the_signature_fails_for_another_secret_body_or_an_old_timestamp():
    body = b'{"id":"1"}'
    now = int(time.time())
    header = services.webhook_signature(secret="whsec_right", timestamp=now, body=body)
    verify = services.webhook_signature_verify
    assert verify(secret="whsec_right", header=header, body=body)
    assert not verify(secret="whsec_wrong", header=header, body=body)
    assert not verify(secret="whsec_right", header=header, body=body + b" ")
    assert not verify(secret="whsec_right", header=header, body=body, now=now + 301)
    assert not verify(secret="whsec_right", header="t=abc,v1=00", body=body)
    assert not verify(secret="whsec_right", header="", body=body)


def test_every_subscriber_gets_the_same_event_id_with_its_own_signature(
    qa, receiver, django_capture_on_commit_callbacks
):
    first = subscribe(qa, receiver.url, name="first")
    second = subscribe(qa, receiver.url, name="second")
    emit(django_capture_on_commit_callbacks)
    assert len(receiver.requests) == 2
    assert len({json.loads(r.body)["id"] for r in receiver.requests}) == 1
    secrets = {first.secret, second.secret}
    assert len(secrets) == 2 and all(s.startswith("whsec_") for s in secrets)
    for request in receiver.requests:
        header = request.headers["X-ControlSite-Signature"]
        assert [
            s
            for s in secrets
            if services.webhook_signature_verify(secret=s, header=header, body=request.body)
        ]


#
# Retries, giving up, idempotence
#


def test_a_500_is_logged_and_retried_after_the_backoff(
    qa, receiver, django_capture_on_commit_callbacks
):
    subscribe(qa, receiver.url)
    receiver.answer(500)
    before = timezone.now()
    emit(django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == PENDING
    assert delivery.attempts == 1
    assert delivery.last_status_code == 500
    assert delivery.last_error == "HTTP 500 Internal Server Error"
    assert delivery.next_attempt_at is not None
    wait = delivery.next_attempt_at - before
    assert dt.timedelta(seconds=29) <= wait <= dt.timedelta(seconds=40)
    (failed,) = delivery.attempt_log.all()
    assert failed.status_code == 500
    assert failed.response_excerpt.startswith("boom\ufffd")  # a NUL is never stored
    assert len(failed.response_excerpt) == 1024

    # Not due yet: the sweep and a stray task both leave it alone.
    assert deliver_due(django_capture_on_commit_callbacks) == 0
    assert webhook_deliver.apply(args=(delivery.pk,)).get() is False
    assert len(receiver.requests) == 1

    make_due(delivery)
    assert deliver_due(django_capture_on_commit_callbacks) == 1
    delivery.refresh_from_db()
    assert delivery.status == DELIVERED
    assert delivery.attempts == 2
    assert [a.status_code for a in delivery.attempt_log.all()] == [500, 200]
    assert [a.number for a in delivery.attempt_log.all()] == [1, 2]
    assert len(receiver.requests) == 2
    ids = {json.loads(r.body)["id"] for r in receiver.requests}
    assert len(ids) == 1  # the retry is the same event: the receiver can drop a duplicate


def test_the_backoff_grows_then_stays_at_six_hours():
    delays = [services.retry_delay(n).total_seconds() for n in range(1, 9)]
    assert delays == [30, 120, 600, 3600, 21600, 21600, 21600, 21600]


def test_a_delivery_is_failed_after_the_last_attempt(
    qa, receiver, django_capture_on_commit_callbacks, settings, caplog
):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    subscribe(qa, receiver.url)
    receiver.answer(503, 503, 503, 503)
    emit(django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    for _ in range(2):
        assert delivery.status == PENDING
        make_due(delivery)
        deliver_due(django_capture_on_commit_callbacks)
        delivery.refresh_from_db()
    assert delivery.status == FAILED
    assert delivery.attempts == 3
    assert delivery.next_attempt_at is None
    assert delivery.last_error == "HTTP 503 Service Unavailable"
    assert delivery.attempt_log.count() == 3
    assert "failed after 3 attempts" in caplog.text
    # Given up: neither the sweep nor a re-run sends it again.
    assert deliver_due(django_capture_on_commit_callbacks) == 0
    assert services.webhook_deliver(delivery.pk) is False
    assert len(receiver.requests) == 3


def test_a_rerun_of_a_delivered_delivery_does_nothing(
    qa, receiver, django_capture_on_commit_callbacks
):
    subscribe(qa, receiver.url)
    emit(django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    make_due(delivery)  # even if its time says otherwise
    assert webhook_deliver.apply(args=(delivery.pk,)).get() is False
    assert services.webhook_deliver(delivery.pk) is False
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DELIVERED, 1)
    assert len(receiver.requests) == 1
    assert WebhookAttempt.objects.count() == 1


def test_an_unreachable_receiver_is_an_attempt_without_a_status(
    qa, django_capture_on_commit_callbacks
):
    subscribe(qa, closed_port_url())
    emit(django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == PENDING
    assert delivery.last_status_code is None
    assert "ConnectionRefusedError" in delivery.last_error
    (attempt,) = delivery.attempt_log.all()
    assert attempt.status_code is None and attempt.error == delivery.last_error


def test_a_redirect_is_not_followed(qa, receiver, django_capture_on_commit_callbacks):
    subscribe(qa, receiver.url)
    receiver.answer(307)
    emit(django_capture_on_commit_callbacks)
    (request,) = receiver.requests
    assert request.path.startswith("/hook")
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.last_status_code) == (PENDING, 307)


def test_a_receiver_slower_than_the_timeout_is_retried(
    qa, receiver, django_capture_on_commit_callbacks, settings
):
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    receiver.delay = 2.5
    subscribe(qa, receiver.url)
    started = time.monotonic()
    emit(django_capture_on_commit_callbacks)
    assert time.monotonic() - started < 2.4
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == PENDING
    assert delivery.last_status_code is None
    assert "timed out" in delivery.last_error.lower()


def test_a_worker_that_died_mid_attempt_leaves_the_delivery_due_again(
    qa, receiver, django_capture_on_commit_callbacks
):
    subscribe(qa, receiver.url)
    emit(django_capture_on_commit_callbacks, execute=False)
    delivery = WebhookDelivery.objects.get()
    claim = services._claim(delivery.pk)  # the worker claims it, then dies before sending
    assert claim is not None
    delivery.refresh_from_db()
    assert delivery.attempts == 1
    assert delivery.next_attempt_at is not None and delivery.next_attempt_at > timezone.now()
    assert deliver_due(django_capture_on_commit_callbacks) == 0  # its lease still runs
    make_due(delivery)  # the lease runs out
    assert deliver_due(django_capture_on_commit_callbacks) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DELIVERED, 2)
    assert len(receiver.requests) == 1


@pytest.mark.django_db(transaction=True)
def test_the_request_is_sent_outside_any_transaction_after_the_claim_commits(
    persona, receiver, monkeypatch
):
    qa = persona("qa")
    subscribe(qa, receiver.url)
    seen: dict[str, Any] = {}
    real_post = services._post

    def spy(url: str, body: bytes, headers: dict[str, str]) -> Any:
        seen["in_transaction"] = connection.in_atomic_block
        seen["row"] = WebhookDelivery.objects.values("status", "attempts").get()
        return real_post(url, body, headers)

    monkeypatch.setattr(services, "_post", spy)
    with transaction.atomic():
        services.webhook_emit(event_type=EVENT, payload={"n": 1})
        assert not receiver.requests  # nothing is sent before the change commits
    # on_commit really fired: the task ran in-process once the transaction committed.
    assert len(receiver.requests) == 1
    assert seen == {"in_transaction": False, "row": {"status": PENDING, "attempts": 1}}
    assert WebhookDelivery.objects.get().status == DELIVERED


#
# The outbox: what apps call
#


def test_nothing_is_sent_when_the_emitting_transaction_rolls_back(
    qa, receiver, django_capture_on_commit_callbacks
):
    subscribe(qa, receiver.url)
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.webhook_emit(event_type=EVENT, payload={"n": 1})
        assert WebhookDelivery.objects.count() == 1
        raise RuntimeError("the app's change fails")
    assert callbacks == []
    assert not WebhookEvent.objects.exists()
    assert not WebhookDelivery.objects.exists()
    assert receiver.requests == []


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_is_never_sent_with_real_commits(persona, receiver):
    qa = persona("qa")
    subscribe(qa, receiver.url)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.webhook_emit(event_type=EVENT, payload={"n": 1})
        raise RuntimeError("the app's change fails")
    assert not WebhookEvent.objects.exists()
    assert receiver.requests == []


def test_only_the_subscriptions_that_want_the_event_and_its_site_get_it(
    qa, receiver, django_capture_on_commit_callbacks
):
    every_site = subscribe(qa, receiver.url, name="every site")
    london = subscribe(qa, receiver.url, name="london", site_codes=("lon1",))
    subscribe(qa, receiver.url, name="manchester", site_codes=("MAN2",))
    subscribe(qa, receiver.url, name="other type", event_types=(OTHER_EVENT,))
    subscribe(qa, receiver.url, name="nothing", event_types=())
    gone = subscribe(qa, receiver.url, name="gone")
    services.webhook_subscription_deactivate(actor=qa, subscription=gone, reason="retired")
    assert london.site_codes == ["LON1"]

    emit(django_capture_on_commit_callbacks, execute=False, site_code="LON1")
    assert set(WebhookDelivery.objects.values_list("subscription", flat=True)) == {
        every_site.pk,
        london.pk,
    }
    WebhookDelivery.objects.all().delete()  # job rows; start the count again

    no_site = emit(django_capture_on_commit_callbacks, execute=False)
    assert no_site is not None
    assert list(no_site.deliveries.values_list("subscription", flat=True)) == [every_site.pk]


def test_an_event_no_one_wants_writes_nothing(qa, receiver, django_capture_on_commit_callbacks):
    subscribe(qa, receiver.url, event_types=(OTHER_EVENT,))
    assert emit(django_capture_on_commit_callbacks) is None
    assert not WebhookEvent.objects.exists()
    assert receiver.requests == []


def test_payload_dates_and_decimals_are_sent_as_strings(
    qa, receiver, django_capture_on_commit_callbacks
):
    import decimal

    subscribe(qa, receiver.url)
    moment = dt.datetime(2026, 1, 31, 9, 0, tzinfo=dt.UTC)
    emit(
        django_capture_on_commit_callbacks,
        payload={"at": moment, "yield": decimal.Decimal("98.5"), "name": "Zoë"},
    )
    data = json.loads(receiver.requests[0].body)["data"]
    assert data == {"at": "2026-01-31T09:00:00Z", "yield": "98.5", "name": "Zoë"}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"event_type": "tests.never_registered"}, ValueError),
        ({"site_code": "lon 1"}, ValueError),
        ({"payload": {"text": "a\x00b"}}, ValueError),
        ({"payload": {"blob": "x" * (64 * 1024)}}, ValueError),
        ({"payload": ["not", "a", "dict"]}, TypeError),
        ({"payload": {"thing": object()}}, TypeError),
    ],
)
def test_a_malformed_emit_is_a_programming_error(qa, receiver, kwargs, error):
    subscribe(qa, receiver.url)
    arguments: dict[str, Any] = {"event_type": EVENT, "payload": {}, **kwargs}
    with pytest.raises(error), transaction.atomic():
        services.webhook_emit(**arguments)
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_emitting_outside_a_transaction_is_refused(persona, receiver):
    subscribe(persona("qa"), receiver.url)
    with pytest.raises(transaction.TransactionManagementError):
        services.webhook_emit(event_type=EVENT, payload={})
    assert not WebhookEvent.objects.exists()


def test_event_types_are_registered_once_with_a_description():
    registry.register_event_type(EVENT, "Something happened (tests).")  # the same: fine
    with pytest.raises(ValueError, match="already registered"):
        registry.register_event_type(EVENT, "Something else.")
    for bad in ("NoDot", "tests.", "Tests.upper", "tests.with space", "t." + "x" * 100):
        with pytest.raises(ValueError, match="lower case"):
            registry.register_event_type(bad, "bad")
    with pytest.raises(ValueError, match="Describe"):
        registry.register_event_type("tests.undescribed", " ")
    assert registry.registered_event_types()[EVENT] == "Something happened (tests)."


#
# Subscriptions: create, change, deactivate, retry
#


def test_creating_a_subscription_is_audited_without_the_secret(qa, receiver):
    subscription = subscribe(qa, receiver.url, site_codes=("MAN2", "lon1"))
    assert subscription.secret.startswith("whsec_") and len(subscription.secret) > 40
    assert subscription.created_by == qa
    assert subscription.site_codes == ["LON1", "MAN2"]
    (event,) = audit_events(WebhookAuditEvent.SUBSCRIPTION_CREATED)
    assert event.actor == qa
    assert event.reason == "connect the ERP"
    assert event.extra_data["url"] == receiver.url
    assert event.extra_data["event_types"] == [EVENT]
    assert subscription.secret not in json.dumps(event.extra_data)
    assert subscription.secret not in event.target_repr + event.reason


def test_only_qa_and_the_administrator_manage_webhooks(persona, receiver):
    for who in ("qa", "sysadmin"):
        subscribe(persona(who), receiver.url, name=who)
    for who in ("qp", "operator", "inspector", "integrator", "outsider"):
        with pytest.raises(PermissionRefusedError):
            subscribe(persona(who), receiver.url, name=who)
    assert WebhookSubscription.objects.count() == 2


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("", "url_required"),
        ("ftp://example.org/hook", "url_scheme"),
        ("javascript:alert(1)", "url_scheme"),
        ("example.org/hook", "url_scheme"),
        ("https://user:secret@example.org/hook", "url_credentials"),
        ("https://token@example.org/hook", "url_credentials"),
        ("https://", "invalid_url"),
        ("https://exa mple.org/", "invalid_url"),
        ("https://bücher.example/hook", "invalid_url"),
        ("https://example.org:99999/hook", "invalid_url"),
        ("https://[::1/hook", "invalid_url"),
        ("https://example.org/" + "x" * 500, "url_too_long"),
    ],
)
def test_a_bad_url_is_refused(qa, url, code):
    with pytest.raises(ApplicationError) as refused:
        subscribe(qa, url)
    assert refused.value.code == code
    assert refused.value.status_code == 400
    assert not WebhookSubscription.objects.exists()


def test_production_takes_only_https_unless_http_is_allowed(qa, settings):
    settings.IS_PRODUCTION = True
    settings.WEBHOOK_ALLOW_HTTP = False
    with pytest.raises(ApplicationError) as refused:
        subscribe(qa, "http://erp.internal:8080/hook")
    assert refused.value.code == "url_https_required"
    assert subscribe(qa, "https://erp.internal/hook").url == "https://erp.internal/hook"
    settings.WEBHOOK_ALLOW_HTTP = True
    assert subscribe(qa, "http://erp.internal:8080/hook").url.startswith("http://")
    assert subscribe(qa, "http://[::1]:8080/hook").url == "http://[::1]:8080/hook"


def test_an_unknown_event_type_or_site_code_is_refused(qa, receiver):
    with pytest.raises(ApplicationError) as refused:
        subscribe(qa, receiver.url, event_types=(EVENT, "batches.nope"))
    assert refused.value.code == "unknown_event_type"
    assert refused.value.extra["unknown"] == ["batches.nope"]
    assert EVENT in refused.value.extra["known"]
    with pytest.raises(ApplicationError) as refused:
        subscribe(qa, receiver.url, site_codes=("LON-1",))
    assert refused.value.code == "invalid_site_code"
    assert not WebhookSubscription.objects.exists()


def test_changing_a_subscription_is_audited_with_old_and_new(qa, receiver):
    subscription = subscribe(qa, receiver.url)
    updated = services.webhook_subscription_update(
        actor=qa,
        subscription=subscription,
        reason="the ERP moved",
        changes={"url": "https://erp.example.org/v2", "event_types": [EVENT, OTHER_EVENT]},
    )
    assert updated.url == "https://erp.example.org/v2"
    (event,) = audit_events(WebhookAuditEvent.SUBSCRIPTION_UPDATED)
    assert event.extra_data == {
        "old": {"url": receiver.url, "event_types": [EVENT]},
        "new": {"url": "https://erp.example.org/v2", "event_types": sorted([EVENT, OTHER_EVENT])},
    }
    assert event.reason == "the ERP moved"
    # Nothing changed: nothing audited.
    services.webhook_subscription_update(
        actor=qa, subscription=updated, reason="again", changes={"name": "ERP"}
    )
    assert len(audit_events(WebhookAuditEvent.SUBSCRIPTION_UPDATED)) == 1
    assert updated.secret == WebhookSubscription.objects.get().secret  # never rotated by a change


def test_a_change_needs_a_reason_and_only_known_fields(qa, receiver):
    subscription = subscribe(qa, receiver.url)
    with pytest.raises(ApplicationError) as refused:
        services.webhook_subscription_update(
            actor=qa, subscription=subscription, reason=" ", changes={"name": "x"}
        )
    assert refused.value.code == "reason_required"
    with pytest.raises(ApplicationError) as refused:
        services.webhook_subscription_update(
            actor=qa, subscription=subscription, reason="r", changes={"secret": "mine"}
        )
    assert refused.value.code == "not_updatable"


def test_deactivating_cancels_pending_deliveries(qa, receiver, django_capture_on_commit_callbacks):
    subscription = subscribe(qa, receiver.url)
    emit(django_capture_on_commit_callbacks, execute=False)
    delivery = WebhookDelivery.objects.get()
    services.webhook_subscription_deactivate(
        actor=qa, subscription=subscription, reason="ERP retired"
    )
    subscription.refresh_from_db()
    assert not subscription.active and subscription.deactivated_at is not None
    delivery.refresh_from_db()
    assert delivery.status == FAILED
    assert delivery.last_error == services.CANCELLED_ERROR
    (event,) = audit_events(WebhookAuditEvent.SUBSCRIPTION_DEACTIVATED)
    assert event.extra_data["cancelled_deliveries"] == 1
    assert services.webhook_deliver(delivery.pk) is False
    assert receiver.requests == []
    with pytest.raises(TransitionNotAllowedError) as refused:
        services.webhook_subscription_deactivate(actor=qa, subscription=subscription, reason="x")
    assert refused.value.code == "subscription_inactive"
    with pytest.raises(TransitionNotAllowedError):
        services.webhook_subscription_update(
            actor=qa, subscription=subscription, reason="x", changes={"name": "y"}
        )


def test_a_delivery_queued_before_deactivation_is_not_sent(qa, receiver):
    subscription = subscribe(qa, receiver.url)
    with transaction.atomic():
        services.webhook_emit(event_type=EVENT, payload={})
    delivery = WebhookDelivery.objects.get()
    # Deactivated by a path that left the delivery pending (a race with an emit).
    WebhookSubscription.objects.filter(pk=subscription.pk).update(
        active=False, deactivated_at=timezone.now()
    )
    assert services.webhook_deliver(delivery.pk) is False
    delivery.refresh_from_db()
    assert delivery.status == FAILED
    assert receiver.requests == []


@pytest.fixture
def failed_delivery(qa, receiver, django_capture_on_commit_callbacks, settings) -> WebhookDelivery:
    """A delivery given up after one attempt that got a 500."""
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    subscribe(qa, receiver.url)
    receiver.answer(500)
    emit(django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == FAILED
    return delivery


def test_a_failed_delivery_is_retried_with_fresh_attempts(
    qa, receiver, failed_delivery, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.webhook_delivery_retry(
            actor=qa, delivery=failed_delivery, reason="the ERP is back"
        )
    failed_delivery.refresh_from_db()
    assert failed_delivery.status == DELIVERED
    assert failed_delivery.attempts == 1
    assert [a.status_code for a in failed_delivery.attempt_log.all()] == [500, 200]
    (event,) = audit_events(WebhookAuditEvent.DELIVERY_RETRIED)
    assert event.reason == "the ERP is back"
    assert event.extra_data["previous"]["last_status_code"] == 500
    assert len(receiver.requests) == 2


def test_only_a_failed_delivery_of_an_active_subscription_is_retried(
    qa, persona, failed_delivery, django_capture_on_commit_callbacks
):
    with pytest.raises(PermissionRefusedError):
        services.webhook_delivery_retry(actor=persona("qp"), delivery=failed_delivery, reason="r")
    with django_capture_on_commit_callbacks(execute=True):
        services.webhook_delivery_retry(actor=qa, delivery=failed_delivery, reason="r")
    with pytest.raises(TransitionNotAllowedError) as refused:
        services.webhook_delivery_retry(actor=qa, delivery=failed_delivery, reason="r")
    assert refused.value.code == "delivery_not_failed"
    WebhookDelivery.objects.filter(pk=failed_delivery.pk).update(
        status=FAILED, next_attempt_at=None
    )
    services.webhook_subscription_deactivate(
        actor=qa, subscription=failed_delivery.subscription, reason="retired"
    )
    with pytest.raises(TransitionNotAllowedError) as refused:
        services.webhook_delivery_retry(actor=qa, delivery=failed_delivery, reason="r")
    assert refused.value.code == "subscription_inactive"


#
# Celery: the task and the beat sweep
#


def test_the_delivery_task_follows_the_task_conventions():
    assert webhook_deliver.name == "webhooks.deliver"
    assert webhook_deliver.acks_late is True
    assert webhook_deliver.reject_on_worker_lost is True


def test_the_beat_sends_due_deliveries_every_minute(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["webhooks-deliver-due"]
    assert entry == {"task": "webhooks.deliver_due", "schedule": 60.0}


def test_a_worker_knows_the_webhook_tasks():
    """What a worker imports at start (autodiscovery plus CELERY_IMPORTS), in a fresh process
    in which nothing has imported the webhook modules yet."""
    script = (
        "import django; django.setup()\n"
        "from controlsite.celery import app\n"
        "app.loader.import_default_modules()\n"
        "print(sorted(n for n in app.tasks if n.startswith('webhooks.')))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "controlsite.settings.test"}
    result = subprocess.run(  # noqa: S603  (our own interpreter and a fixed script)
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['webhooks.deliver', 'webhooks.deliver_due']"


def test_the_sweep_sends_the_oldest_due_deliveries_first_up_to_its_limit(
    qa, receiver, django_capture_on_commit_callbacks
):
    subscribe(qa, receiver.url)
    for n in range(3):
        emit(django_capture_on_commit_callbacks, execute=False, payload={"n": n})
    deliveries = list(WebhookDelivery.objects.order_by("id"))
    for delivery in deliveries:
        make_due(delivery)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.webhook_deliveries_enqueue_due(limit=2) == 2
    assert [json.loads(r.body)["data"]["n"] for r in receiver.requests] == [0, 1]
    assert deliver_due(django_capture_on_commit_callbacks) == 1
    assert WebhookDelivery.objects.filter(status=DELIVERED).count() == 3


#
# API: permission matrices
#

MANAGERS = {"qa": 200, "sysadmin": 200}

SUBSCRIPTION_LIST = Matrix(
    "api:webhook-subscription-list", only(MANAGERS, others=403, anonymous=401)
)
SUBSCRIPTION_CREATE = Matrix(
    "api:webhook-subscription-create",
    only({"qa": 201, "sysadmin": 201}, others=403, anonymous=401),
)
SUBSCRIPTION_DETAIL = Matrix(
    "api:webhook-subscription-detail", only(MANAGERS, others=403, anonymous=401)
)
SUBSCRIPTION_UPDATE = Matrix(
    "api:webhook-subscription-partial-update", only(MANAGERS, others=403, anonymous=401)
)
SUBSCRIPTION_DEACTIVATE = Matrix(
    "api:webhook-subscription-deactivate", only(MANAGERS, others=403, anonymous=401)
)
DELIVERY_LIST = Matrix("api:webhook-delivery-list", only(MANAGERS, others=403, anonymous=401))
DELIVERY_DETAIL = Matrix("api:webhook-delivery-detail", only(MANAGERS, others=403, anonymous=401))
DELIVERY_RETRY = Matrix(
    "api:webhook-delivery-retry",
    only({"qa": 202, "sysadmin": 202}, others=403, anonymous=401),
)


def _create_body(url: str, /, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "ERP",
        "url": url,
        "event_types": [EVENT],
        "reason": "connect the ERP",
    }
    body.update(overrides)
    return body


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    return body


@pytest.mark.parametrize(("who", "expected"), SUBSCRIPTION_LIST.cases())
def test_subscription_list(as_persona, qa, receiver, who, expected):
    subscribe(qa, receiver.url)
    response = as_persona(who).get(reverse("api:webhook-subscription-list"))
    assert response.status_code == expected
    if expected == 200:
        assert len(response.json()["results"]) == 1
    else:
        assert response["Content-Type"].startswith(PROBLEM)


@pytest.mark.parametrize(("who", "expected"), SUBSCRIPTION_CREATE.cases())
def test_subscription_create(as_persona, persona, receiver, who, expected):
    persona("qa")
    response = as_persona(who).post(
        reverse("api:webhook-subscription-list"), _create_body(receiver.url), format="json"
    )
    assert response.status_code == expected, response.content
    assert WebhookSubscription.objects.count() == (1 if expected == 201 else 0)
    assert len(audit_events(WebhookAuditEvent.SUBSCRIPTION_CREATED)) == (
        1 if expected == 201 else 0
    )


@pytest.mark.parametrize(("who", "expected"), SUBSCRIPTION_DETAIL.cases())
def test_subscription_detail(as_persona, qa, receiver, who, expected):
    subscription = subscribe(qa, receiver.url)
    url = reverse("api:webhook-subscription-detail", args=[subscription.pk])
    assert as_persona(who).get(url).status_code == expected


@pytest.mark.parametrize(("who", "expected"), SUBSCRIPTION_UPDATE.cases())
def test_subscription_partial_update(as_persona, qa, receiver, who, expected):
    subscription = subscribe(qa, receiver.url)
    url = reverse("api:webhook-subscription-detail", args=[subscription.pk])
    response = as_persona(who).patch(url, {"name": "ERP 2", "reason": "rename"}, format="json")
    assert response.status_code == expected, response.content
    subscription.refresh_from_db()
    assert subscription.name == ("ERP 2" if expected == 200 else "ERP")


@pytest.mark.parametrize(("who", "expected"), SUBSCRIPTION_DEACTIVATE.cases())
def test_subscription_deactivate(as_persona, qa, receiver, who, expected):
    subscription = subscribe(qa, receiver.url)
    url = reverse("api:webhook-subscription-deactivate", args=[subscription.pk])
    response = as_persona(who).post(url, {"reason": "retired"}, format="json")
    assert response.status_code == expected, response.content
    subscription.refresh_from_db()
    assert subscription.active is (expected != 200)


@pytest.fixture
def pending_delivery(qa, receiver, django_capture_on_commit_callbacks) -> WebhookDelivery:
    subscribe(qa, receiver.url)
    emit(django_capture_on_commit_callbacks, execute=False)
    return WebhookDelivery.objects.get()


@pytest.mark.parametrize(("who", "expected"), DELIVERY_LIST.cases())
def test_delivery_list(as_persona, pending_delivery, who, expected):
    response = as_persona(who).get(reverse("api:webhook-delivery-list"))
    assert response.status_code == expected
    if expected == 200:
        assert [d["id"] for d in response.json()["results"]] == [pending_delivery.pk]


@pytest.mark.parametrize(("who", "expected"), DELIVERY_DETAIL.cases())
def test_delivery_detail(as_persona, pending_delivery, who, expected):
    url = reverse("api:webhook-delivery-detail", args=[pending_delivery.pk])
    assert as_persona(who).get(url).status_code == expected


@pytest.mark.parametrize(("who", "expected"), DELIVERY_RETRY.cases())
def test_delivery_retry(as_persona, failed_delivery, who, expected):
    url = reverse("api:webhook-delivery-retry", args=[failed_delivery.pk])
    response = as_persona(who).post(url, {"reason": "the ERP is back"}, format="json")
    assert response.status_code == expected, response.content
    failed_delivery.refresh_from_db()
    assert failed_delivery.status == (PENDING if expected == 202 else FAILED)
    assert len(audit_events(WebhookAuditEvent.DELIVERY_RETRIED)) == (1 if expected == 202 else 0)


#
# API: behaviour
#


@pytest.fixture
def qa_api(api_client_for: Callable[[str], APIClient], qa: User) -> APIClient:
    return api_client_for("qa")


def test_the_secret_is_in_the_create_answer_and_nowhere_else(qa_api, receiver):
    created = qa_api.post(
        reverse("api:webhook-subscription-list"),
        _create_body(receiver.url, site_codes=["lon1"]),
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    secret = body["secret"]
    assert secret == WebhookSubscription.objects.get().secret
    assert body["site_codes"] == ["LON1"]
    assert body["created_by"] == "qa"
    assert created["Location"] == reverse("api:webhook-subscription-detail", args=[body["id"]])
    for url in (
        reverse("api:webhook-subscription-list"),
        reverse("api:webhook-subscription-detail", args=[body["id"]]),
        reverse("api:audit-event-list"),
    ):
        answer = qa_api.get(url)
        assert answer.status_code == 200
        assert secret not in answer.content.decode()
        assert b'"secret"' not in answer.content
    patched = qa_api.patch(
        reverse("api:webhook-subscription-detail", args=[body["id"]]),
        {"name": "renamed", "reason": "rename"},
        format="json",
    )
    assert secret not in patched.content.decode()


def test_an_idempotent_replay_of_a_create_does_not_show_the_secret_again(qa_api, receiver):
    url = reverse("api:webhook-subscription-list")
    first = qa_api.post(
        url, _create_body(receiver.url), format="json", HTTP_IDEMPOTENCY_KEY="create-erp-1"
    )
    assert first.status_code == 201 and first.json()["secret"]
    replay = qa_api.post(
        url, _create_body(receiver.url), format="json", HTTP_IDEMPOTENCY_KEY="create-erp-1"
    )
    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    assert replay.json()["secret"] is None
    assert WebhookSubscription.objects.count() == 1
    stored = IdempotencyRecord.objects.get(key="create-erp-1")
    assert first.json()["secret"] not in json.dumps(stored.response_body)


@pytest.mark.parametrize(
    ("overrides", "status", "code", "field"),
    [
        ({"url": "ftp://example.org/"}, 400, "url_scheme", None),
        ({"url": "https://u:p@example.org/"}, 400, "url_credentials", None),
        ({"event_types": ["batches.nope"]}, 400, "unknown_event_type", None),
        ({"event_types": EVENT}, 400, "not_a_list", "event_types"),
        ({"event_types": [1]}, 400, "validation_error", "event_types"),
        ({"site_codes": ["LON-1"]}, 400, "invalid_site_code", None),
        ({"secret": "mine"}, 400, "unknown_field", "secret"),
        ({"active": False}, 400, "unknown_field", "active"),
        ({"reason": ""}, 400, "blank", "reason"),
        ({"name": 7}, 400, "validation_error", "name"),
    ],
)
def test_bad_input_is_a_4xx_problem_and_writes_nothing(
    qa_api, receiver, overrides, status, code, field
):
    before = AuditEvent.objects.count()
    response = qa_api.post(
        reverse("api:webhook-subscription-list"),
        _create_body(receiver.url, **overrides),
        format="json",
    )
    body = _problem(response, status, code)
    if field:
        assert field in body["errors"]
    assert not WebhookSubscription.objects.exists()
    assert AuditEvent.objects.count() == before


def test_unknown_event_types_are_answered_with_the_known_ones(qa_api, receiver):
    response = qa_api.post(
        reverse("api:webhook-subscription-list"),
        _create_body(receiver.url, event_types=["batches.nope"]),
        format="json",
    )
    body = _problem(response, 400, "unknown_event_type")
    assert body["extra"]["unknown"] == ["batches.nope"]
    assert EVENT in body["extra"]["known"]


def test_a_put_is_not_allowed(qa_api, qa, receiver):
    subscription = subscribe(qa, receiver.url)
    url = reverse("api:webhook-subscription-detail", args=[subscription.pk])
    _problem(qa_api.put(url, _create_body(receiver.url), format="json"), 405, "method_not_allowed")


def test_a_deactivated_subscription_is_not_changed_through_the_api(qa_api, qa, receiver):
    subscription = subscribe(qa, receiver.url)
    deactivate = reverse("api:webhook-subscription-deactivate", args=[subscription.pk])
    answer = qa_api.post(deactivate, {"reason": "retired"}, format="json")
    assert answer.status_code == 200 and answer.json()["active"] is False
    _problem(
        qa_api.post(deactivate, {"reason": "again"}, format="json"), 409, "subscription_inactive"
    )
    patch = qa_api.patch(
        reverse("api:webhook-subscription-detail", args=[subscription.pk]),
        {"name": "x", "reason": "r"},
        format="json",
    )
    _problem(patch, 409, "subscription_inactive")
    listed = qa_api.get(reverse("api:webhook-subscription-list"), {"active": "false"}).json()
    assert [s["id"] for s in listed["results"]] == [subscription.pk]
    assert (
        qa_api.get(reverse("api:webhook-subscription-list"), {"active": "true"}).json()["results"]
        == []
    )


def test_a_stale_if_match_is_a_412_and_changes_nothing(qa_api, qa, receiver):
    subscription = subscribe(qa, receiver.url)
    url = reverse("api:webhook-subscription-detail", args=[subscription.pk])
    etag = qa_api.get(url)["ETag"]
    services.webhook_subscription_update(
        actor=qa, subscription=subscription, reason="meanwhile", changes={"name": "changed"}
    )
    stale = qa_api.patch(url, {"name": "mine", "reason": "r"}, format="json", HTTP_IF_MATCH=etag)
    _problem(stale, 412, "precondition_failed")
    subscription.refresh_from_db()
    assert subscription.name == "changed"


def test_deliveries_are_read_with_their_attempts_and_filtered(
    qa_api, qa, receiver, django_capture_on_commit_callbacks
):
    first = subscribe(qa, receiver.url, name="first")
    second = subscribe(qa, receiver.url, name="second", event_types=(OTHER_EVENT,))
    receiver.answer(500)
    emit(django_capture_on_commit_callbacks, payload={"n": 1})
    emit(django_capture_on_commit_callbacks, event_type=OTHER_EVENT, payload={"n": 2})
    pending = WebhookDelivery.objects.get(subscription=first)
    url = reverse("api:webhook-delivery-list")

    def ids(**params: str) -> list[int]:
        response = qa_api.get(url, params)
        assert response.status_code == 200, response.content
        return [d["id"] for d in response.json()["results"]]

    delivered = WebhookDelivery.objects.get(subscription=second)
    assert ids() == [delivered.pk, pending.pk]
    assert ids(subscription=str(first.pk)) == [pending.pk]
    assert ids(status="pending") == [pending.pk]
    assert ids(status="delivered") == [delivered.pk]
    assert ids(event_type=OTHER_EVENT) == [delivered.pk]
    assert ids(event_id=str(pending.event.event_id)) == [pending.pk]
    _problem(qa_api.get(url, {"status": "lost"}), 400, "invalid_choice")
    _problem(qa_api.get(url, {"subscription": "x" * 30}), 400, "invalid_id")
    _problem(qa_api.get(url, {"event_id": "not-a-uuid"}), 400, "validation_error")

    detail = qa_api.get(reverse("api:webhook-delivery-detail", args=[pending.pk])).json()
    assert detail["status"] == "pending"
    assert detail["subscription_name"] == "first"
    assert detail["event"]["id"] == str(pending.event.event_id)
    assert detail["event"]["type"] == EVENT
    assert detail["event"]["data"] == {"n": 1}
    (attempt,) = detail["attempt_log"]
    assert attempt["number"] == 1
    assert attempt["status_code"] == 500
    assert attempt["error"] == "HTTP 500 Internal Server Error"
    assert len(attempt["response_excerpt"]) == 1024


def test_a_failed_delivery_is_retried_through_the_api(
    qa_api, failed_delivery, receiver, django_capture_on_commit_callbacks
):
    url = reverse("api:webhook-delivery-retry", args=[failed_delivery.pk])
    with django_capture_on_commit_callbacks(execute=True):
        answer = qa_api.post(url, {"reason": "the ERP is back"}, format="json")
    assert answer.status_code == 202, answer.content
    failed_delivery.refresh_from_db()
    assert failed_delivery.status == DELIVERED
    assert len(receiver.requests) == 2
    again = qa_api.post(url, {"reason": "again"}, format="json")
    _problem(again, 409, "delivery_not_failed")
    _problem(qa_api.post(url, {}, format="json"), 400, "required")


def test_a_token_limited_to_sites_cannot_use_the_webhook_api(qa):
    _, secret = api_token_create(
        user=qa, name="ward", scope=TokenScope.READ_WRITE, created_by=qa, site_codes=["LON1"]
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    response = client.get(reverse("api:webhook-subscription-list"))
    assert _problem(response, 403, "permission_denied")["detail"].startswith("A token limited")


def test_a_read_only_token_only_reads(qa, receiver):
    _, secret = api_token_create(user=qa, name="read", scope=TokenScope.READ, created_by=qa)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get(reverse("api:webhook-subscription-list")).status_code == 200
    response = client.post(
        reverse("api:webhook-subscription-list"), _create_body(receiver.url), format="json"
    )
    _problem(response, 403, "permission_denied")
    assert not WebhookSubscription.objects.exists()


def test_the_delivery_list_costs_the_same_queries_for_any_page_size(
    qa_api, qa, receiver, django_capture_on_commit_callbacks
):
    from django.test.utils import CaptureQueriesContext

    subscribe(qa, receiver.url, name="a")
    subscribe(qa, receiver.url, name="b")
    for n in range(6):
        emit(django_capture_on_commit_callbacks, execute=False, payload={"n": n})
    url = reverse("api:webhook-delivery-list")
    qa_api.get(url, {"page_size": 2})  # warm the token's last-used write
    counts = []
    for size in (2, 12):
        with CaptureQueriesContext(connection) as ctx:
            response = qa_api.get(url, {"page_size": size})
            assert response.status_code == 200
        assert len(response.json()["results"]) == size
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1]
    assert counts[1] <= 8


def test_anonymous_is_401_with_a_bearer_challenge():
    response = APIClient().get(reverse("api:webhook-delivery-list"))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
