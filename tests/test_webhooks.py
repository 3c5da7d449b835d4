"""Outgoing webhooks, end to end: real PostgreSQL, Redis and Celery workers, and a local
HTTP receiver (stdlib http.server) that records every request and answers as told.

Most tests run a worker of this module's own, on a queue of its own, with short retry
delays and timeouts from the environment (settings.WEBHOOK_*); the first one uses the
suite's shared `celery_worker` on the default queue, with the default settings.
Signatures are checked with hmac + hashlib here, never with the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import logging
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from config.celery import app as celery_app
from config.heartbeats import WORKERS, heartbeats_read
from messaging.events import message_event_after_commit
from messaging.models import Contact, Conversation, Message, WebhookDelivery, WebhookEndpoint
from messaging.webhooks import (
    webhook_deliver,
    webhook_deliveries,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_secret_rotate,
    webhook_endpoint_test,
    webhook_endpoint_update,
    webhook_event_emit,
)
from sessions_app.models import Status
from sessions_app.services import session_create, session_qr_set, session_status_set
from tests.conftest import PROCESS_START_TIMEOUT, ChildProcess, wait_until

DELIVERED = WebhookDelivery.State.DELIVERED
FAILED = WebhookDelivery.State.FAILED
PENDING = WebhookDelivery.State.PENDING

# What this module's workers read from their environment.
WORKER_ENV = {
    "WEBHOOK_TIMEOUT_SECONDS": "2",
    "WEBHOOK_RETRY_BASE_SECONDS": "0.5",
    "WEBHOOK_RETRY_WINDOW_SECONDS": "5",
    "WEBHOOK_SWEEP_SECONDS": "1",
}
SLOWER_THAN_THE_TIMEOUT = 4.0
DELIVERY_TIMEOUT = 30


# --- a local receiver -----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b"ok"
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0  # seconds to wait before answering


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    at: float  # time.monotonic()

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """Answers each path with its planned answers in order, then 200."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[Received] = []
        self._plans: dict[str, list[Answer]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                answer = receiver._record(Received(self.path, headers, body, time.monotonic()))
                time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers:
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:  # the client gave up (a timeout): nothing to answer
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _record(self, request: Received) -> Answer:
        with self._lock:
            self._requests.append(request)
            plan = self._plans.get(request.path) or []
            return plan.pop(0) if plan else Answer()

    def new_path(self, *answers: Answer) -> str:
        path = f"/hooks/{uuid.uuid4().hex}"
        self.plan(path, *answers)
        return path

    def plan(self, path: str, *answers: Answer) -> None:
        with self._lock:
            self._plans.setdefault(path, []).extend(answers)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def received(self, path: str) -> list[Received]:
        with self._lock:
            return [request for request in self._requests if request.path == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.stop()


# --- workers and beat of this module --------------------------------------------------


def _child(kind: str, command: list[str], env: dict[str, str], process_logs) -> ChildProcess:
    """A child process with these variables added to the test environment."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        return ChildProcess(f"{kind}-{uuid.uuid4().hex[:6]}", command, process_logs)


def start_worker(queue: str, process_logs) -> ChildProcess:
    hostname = f"hookworker-{uuid.uuid4().hex[:6]}"
    child = _child(
        hostname,
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
         "--concurrency", "3", "--queues", queue, "--hostname", f"{hostname}@%h"],
        {**WORKER_ENV, "WEBHOOK_QUEUE": queue},
        process_logs,
    )  # fmt: skip
    wait_until(
        lambda: any(
            b.fresh and b.name.startswith(f"{hostname}@") for b in heartbeats_read(WORKERS)
        ),
        timeout=PROCESS_START_TIMEOUT,
        what=f"the webhook worker {hostname}",
        child=child,
    )
    return child


def start_beat(queue: str, process_logs) -> ChildProcess:
    return _child(
        "hookbeat",
        [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
         "--max-interval", "1"],
        {**WORKER_ENV, "WEBHOOK_QUEUE": queue},
        process_logs,
    )  # fmt: skip


@dataclass
class WebhookWorker:
    queue: str
    child: ChildProcess


@pytest.fixture(scope="module")
def webhook_worker(platform, process_logs):
    queue = f"webhooks-{uuid.uuid4().hex[:8]}"
    child = start_worker(queue, process_logs)
    yield WebhookWorker(queue=queue, child=child)
    child.stop()


@pytest.fixture
def worker_queue(webhook_worker, settings):
    """Tasks queued by this test process go to the module's worker."""
    settings.WEBHOOK_QUEUE = webhook_worker.queue
    return webhook_worker


def queue_purge(queue: str) -> int:
    """Drop every message waiting in a queue, as a broker that lost them would."""
    with celery_app.connection_for_write() as broker:
        return broker.default_channel.queue_purge(queue) or 0


# --- tenants, endpoints, events -------------------------------------------------------


@dataclass
class Hook:
    schema: str
    endpoint: WebhookEndpoint
    secret: str
    path: str


def make_hook(tenant, receiver: Receiver, *answers: Answer, events=("message.new",)) -> Hook:
    path = receiver.new_path(*answers)
    with schema_context(tenant.schema_name):
        endpoint, secret = webhook_endpoint_create(url=receiver.url(path), events=list(events))
    return Hook(schema=tenant.schema_name, endpoint=endpoint, secret=secret, path=path)


def inbound_message(tenant, text: str = "Two pizzas please") -> Message:
    """A committed inbound message, announced the way the messaging services do."""
    with schema_context(tenant.schema_name), transaction.atomic():
        contact = Contact.objects.create(
            phone=f"+97250{uuid.uuid4().int % 10**7:07d}", push_name="Dana"
        )
        conversation = Conversation.objects.create(contact=contact, session_id=1)
        message = Message.objects.create(
            conversation=conversation,
            session_id=1,
            direction=Message.Direction.INBOUND,
            text=text,
            status=Message.Status.RECEIVED,
        )
        message_event_after_commit(message, "message.new")
    return message


def deliveries_of(hook: Hook) -> list[WebhookDelivery]:
    with schema_context(hook.schema):
        return list(WebhookDelivery.objects.filter(endpoint_id=hook.endpoint.pk).order_by("id"))


def wait_for(hook: Hook, state: str, *, count: int = 1, child=None) -> list[WebhookDelivery]:
    def settled():
        rows = deliveries_of(hook)
        return rows if len(rows) == count and all(r.state == state for r in rows) else None

    return wait_until(
        settled, timeout=DELIVERY_TIMEOUT, what=f"{count} {state} deliveries", child=child
    )


def independently_verified(secret: str, request: Received) -> bool:
    timestamp = request.header("X-Webhook-Timestamp")
    expected = hmac.new(
        secret.encode("utf-8"), timestamp.encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(f"sha256={expected}", request.header("X-Webhook-Signature") or "")


# --- delivery through the workers -----------------------------------------------------


def test_a_message_event_arrives_signed_and_the_signature_verifies_independently(
    make_tenant, receiver, celery_worker
):
    # Given a tenant with an endpoint for message.new (the shared worker, default queue)
    tenant = make_tenant()
    hook = make_hook(tenant, receiver)

    # When a message arrives
    message = inbound_message(tenant, text="שלום, two pizzas")

    # Then it is delivered once, signed, with the documented body and headers
    (delivery,) = wait_for(hook, DELIVERED)
    (request,) = receiver.received(hook.path)
    assert request.header("Content-Type") == "application/json"
    assert request.header("X-Webhook-Id") == str(delivery.public_id)
    assert abs(int(request.header("X-Webhook-Timestamp")) - time.time()) < 300
    assert independently_verified(hook.secret, request)
    assert not independently_verified(hook.secret + "x", request)
    body = request.json()
    assert body["id"] == str(delivery.public_id)
    assert body["type"] == "message.new"
    assert body["created_at"]
    assert body["data"]["id"] == str(message.public_id)
    assert body["data"]["text"] == "שלום, two pizzas"
    assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (1, 200, "")
    assert delivery.last_attempt_at is not None and delivery.delivered_at is not None


def test_a_500_then_200_is_delivered_by_the_retry(make_tenant, receiver, worker_queue):
    # Given an endpoint that fails once with 500
    tenant = make_tenant()
    hook = make_hook(tenant, receiver, Answer(500, b"database down"))

    # When an event is emitted
    inbound_message(tenant)

    # Then the retry delivers it: two requests, the same delivery, attempts 2
    (delivery,) = wait_for(hook, DELIVERED, child=worker_queue.child)
    first, second = receiver.received(hook.path)
    assert first.header("X-Webhook-Id") == second.header("X-Webhook-Id") == str(delivery.public_id)
    assert first.body == second.body
    assert independently_verified(hook.secret, second)
    assert (delivery.attempts, delivery.last_status_code) == (2, 200)


def test_a_404_fails_at_once_and_is_not_retried(make_tenant, receiver, worker_queue):
    # Given an endpoint that answers 404
    tenant = make_tenant()
    hook = make_hook(tenant, receiver, Answer(404, b"no such hook"), Answer(404))

    # When an event is emitted
    inbound_message(tenant)

    # Then the delivery fails after one attempt, with the answer kept for the dashboard
    (delivery,) = wait_for(hook, FAILED, child=worker_queue.child)
    assert (delivery.attempts, delivery.last_status_code) == (1, 404)
    assert delivery.last_error == "HTTP 404: no such hook"
    assert delivery.next_attempt_at is None
    time.sleep(2)  # four retry periods: nothing more is sent
    assert len(receiver.received(hook.path)) == 1


def test_a_timeout_is_retried(make_tenant, receiver, worker_queue):
    # Given an endpoint that answers the first request only after the worker's timeout
    tenant = make_tenant()
    hook = make_hook(tenant, receiver, Answer(delay=SLOWER_THAN_THE_TIMEOUT))

    # When an event is emitted
    inbound_message(tenant)

    # Then the second attempt delivers it
    (delivery,) = wait_for(hook, DELIVERED, child=worker_queue.child)
    assert (delivery.attempts, delivery.last_status_code) == (2, 200)
    assert len(receiver.received(hook.path)) == 2


def test_a_429_is_retried_after_its_retry_after(make_tenant, receiver, worker_queue):
    # Given an endpoint that asks to wait 2 s (the worker's own backoff is 0.5 s)
    tenant = make_tenant()
    hook = make_hook(tenant, receiver, Answer(429, headers=(("Retry-After", "2"),)))

    # When an event is emitted
    inbound_message(tenant)

    # Then the retry comes no sooner than asked, and delivers it
    (delivery,) = wait_for(hook, DELIVERED, child=worker_queue.child)
    first, second = receiver.received(hook.path)
    assert second.at - first.at >= 1.9
    assert delivery.attempts == 2


def test_a_receiver_failing_for_the_whole_retry_window_ends_failed(
    make_tenant, receiver, worker_queue
):
    # Given an endpoint that always answers 503 (the worker retries for 5 s)
    tenant = make_tenant()
    hook = make_hook(tenant, receiver, *[Answer(503, b"maintenance")] * 50)

    # When an event is emitted
    inbound_message(tenant)

    # Then it is retried with growing delays, then failed
    (delivery,) = wait_for(hook, FAILED, child=worker_queue.child)
    requests = receiver.received(hook.path)
    assert len(requests) == delivery.attempts >= 3
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(requests)]
    assert gaps[-1] > gaps[0]
    assert delivery.last_status_code == 503
    assert delivery.last_error == "Gave up after 5 s: HTTP 503: maintenance"


def test_only_subscribed_events_are_delivered(make_tenant, receiver, worker_queue):
    # Given one endpoint for messages and one for orders
    tenant = make_tenant()
    messages = make_hook(tenant, receiver, events=["message.new"])
    orders = make_hook(tenant, receiver, events=["order.updated"])

    # When a message arrives
    inbound_message(tenant)

    # Then only the message endpoint gets a delivery
    wait_for(messages, DELIVERED, child=worker_queue.child)
    assert deliveries_of(orders) == []
    assert receiver.received(orders.path) == []


def test_an_endpoint_never_receives_another_tenants_events(make_tenant, receiver, worker_queue):
    # Given two tenants, each with an endpoint for message.new
    pizza, sushi = make_tenant(), make_tenant()
    pizza_hook = make_hook(pizza, receiver)
    sushi_hook = make_hook(sushi, receiver)

    # When a message arrives at the sushi place
    message = inbound_message(sushi)

    # Then only the sushi endpoint hears of it
    wait_for(sushi_hook, DELIVERED, child=worker_queue.child)
    (request,) = receiver.received(sushi_hook.path)
    assert request.json()["data"]["id"] == str(message.public_id)
    assert deliveries_of(pizza_hook) == []
    assert receiver.received(pizza_hook.path) == []

    # And the pizza place's own message goes to the pizza endpoint only
    inbound_message(pizza)
    wait_for(pizza_hook, DELIVERED, child=worker_queue.child)
    assert len(receiver.received(sushi_hook.path)) == 1


def test_session_webhooks_go_to_the_sessions_tenant(make_tenant, receiver, worker_queue):
    # Given a tenant's sandbox session and endpoints for session.status and session.qr
    tenant, other = make_tenant(), make_tenant()
    statuses = make_hook(tenant, receiver, events=["session.status"])
    qr_codes = make_hook(tenant, receiver, events=["session.qr"])
    bystander = make_hook(other, receiver, events=["session.status", "session.qr"])
    session = session_create(tenant=tenant, name="Main", provider="sandbox")

    # When the runner shows a QR code (status WAIT_QR, then the code)
    session_qr_set(
        session_id=session.pk, payload="2@abc,def", expires_at=timezone.now() + timedelta(1)
    )

    # Then each endpoint gets its own event, inside the session's tenant only
    wait_for(statuses, DELIVERED, child=worker_queue.child)
    wait_for(qr_codes, DELIVERED, child=worker_queue.child)
    (status,) = (request.json() for request in receiver.received(statuses.path))
    (qr,) = (request.json() for request in receiver.received(qr_codes.path))
    assert status["type"] == "session.status"
    assert status["data"]["session"] == str(session.public_id)
    assert (status["data"]["previous"], status["data"]["status"]) == ("STOPPED", "WAIT_QR")
    assert "type" not in status["data"]
    assert qr["type"] == "session.qr"
    assert qr["data"]["qr"] == "2@abc,def"
    assert deliveries_of(bystander) == []

    # And a later status change is delivered too
    session_status_set(session_id=session.pk, status=Status.CONNECTED, reason="Scanned")
    wait_for(statuses, DELIVERED, count=2, child=worker_queue.child)


def test_a_test_delivery_reaches_an_endpoint_whatever_its_events(
    make_tenant, receiver, worker_queue
):
    # Given an endpoint that only wants order updates
    tenant = make_tenant()
    hook = make_hook(tenant, receiver, events=["order.updated"])

    # When the owner sends it a test
    with schema_context(tenant.schema_name):
        webhook_endpoint_test(endpoint=hook.endpoint)

    # Then a signed webhook.test arrives
    wait_for(hook, DELIVERED, child=worker_queue.child)
    (request,) = receiver.received(hook.path)
    assert request.json()["type"] == "webhook.test"
    assert independently_verified(hook.secret, request)


def test_pending_deliveries_survive_a_worker_restart(make_tenant, receiver, settings, process_logs):
    # Given a worker of this test's own, on a queue of its own, that delivered one event
    queue = f"webhooks-restart-{uuid.uuid4().hex[:8]}"
    settings.WEBHOOK_QUEUE = queue
    tenant = make_tenant()
    hook = make_hook(tenant, receiver)
    first_worker = start_worker(queue, process_logs)
    try:
        inbound_message(tenant)
        wait_for(hook, DELIVERED, child=first_worker)
    finally:
        first_worker.stop()

    # And, while no worker runs, two events whose queued tasks are then lost...
    inbound_message(tenant)
    inbound_message(tenant)
    assert queue_purge(queue) == 2
    # ...and two whose tasks wait in the queue
    inbound_message(tenant)
    inbound_message(tenant)
    assert [d.state for d in deliveries_of(hook)] == [DELIVERED] + [PENDING] * 4
    assert len(receiver.received(hook.path)) == 1

    # When a new worker and beat (running the sweep every second) start
    second_worker = start_worker(queue, process_logs)
    beat = start_beat(queue, process_logs)
    try:
        deliveries = wait_for(hook, DELIVERED, count=5, child=second_worker)
        time.sleep(3)  # a few more sweeps: nothing is sent again
        beat.assert_running()
    finally:
        beat.stop()
        second_worker.stop()

    # Then every delivery reached the receiver exactly once
    received_ids = sorted(
        request.header("X-Webhook-Id") for request in receiver.received(hook.path)
    )
    assert received_ids == sorted(str(delivery.public_id) for delivery in deliveries)
    assert all(delivery.attempts == 1 for delivery in deliveries)
    assert "messaging.webhook_deliveries_sweep" in beat.output()


def test_the_secret_never_appears_in_logs_or_in_last_error(
    make_tenant, receiver, worker_queue, settings, caplog
):
    caplog.set_level(logging.DEBUG)
    # Given an endpoint whose receiver answers errors that quote the secret
    tenant = make_tenant()
    hook = make_hook(tenant, receiver)
    leak = f"bad signature, expected one made with {hook.secret}".encode()
    straddling = b"." * 250 + leak  # the secret crosses the stored error's 300th character
    receiver.plan(hook.path, Answer(404, straddling), Answer(500, leak))

    # When the worker delivers an event (404)...
    inbound_message(tenant)
    (failed,) = wait_for(hook, FAILED, child=worker_queue.child)
    # ...and this process makes an attempt itself (500), its retry queued to nobody
    settings.WEBHOOK_QUEUE = f"nobody-{uuid.uuid4().hex[:8]}"
    with schema_context(hook.schema):
        retried = WebhookDelivery.objects.create(
            endpoint=hook.endpoint, event_type="message.new", payload={}
        )
        assert webhook_deliver(delivery_id=retried.pk) == "retry"
        retried.refresh_from_db()

    # Then the secret is in no error, no log line of ours and no line of the worker's
    assert failed.last_error.startswith("HTTP 404: .....")
    assert len(failed.last_error) == 300
    assert retried.last_error.startswith("HTTP 500: bad signature")
    assert "[secret]" in retried.last_error
    random_part = hook.secret.removeprefix("whsec_")
    for error in (failed.last_error, retried.last_error):
        assert hook.secret not in error
        assert random_part[:6] not in error
    assert "HTTP 500" in caplog.text
    assert hook.secret not in caplog.text
    assert hook.secret not in worker_queue.child.output()
    assert hook.secret not in repr(hook.endpoint.secret)


# --- in this process: claiming, the SSRF guard, the endpoint services ------------------


def test_a_delivery_run_twice_at_once_is_sent_once(make_tenant, receiver):
    # Given a pending delivery to a slow receiver
    tenant = make_tenant()
    hook = make_hook(tenant, receiver, Answer(delay=1))
    with schema_context(hook.schema):
        delivery = WebhookDelivery.objects.create(
            endpoint=hook.endpoint, event_type="message.new", payload={"n": 1}
        )
    outcomes, start = [], threading.Barrier(2)

    def attempt() -> None:
        try:
            with schema_context(hook.schema):
                start.wait()
                outcomes.append(webhook_deliver(delivery_id=delivery.pk))
        finally:
            connection.close()

    # When two tasks for it run at the same time, and a third one later
    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    with schema_context(hook.schema):
        late = webhook_deliver(delivery_id=delivery.pk)

    # Then one request was made and the others did nothing
    assert sorted(outcomes) == ["delivered", "skipped"]
    assert late == "skipped"
    assert len(receiver.received(hook.path)) == 1
    (row,) = deliveries_of(hook)
    assert (row.state, row.attempts) == (DELIVERED, 1)


def test_a_host_that_resolves_to_a_private_address_is_refused(make_tenant, receiver, settings):
    # Given an endpoint on localhost, made while private networks were allowed
    tenant = make_tenant()
    path = receiver.new_path()
    with schema_context(tenant.schema_name):
        endpoint, _ = webhook_endpoint_create(
            url=receiver.url(path, host="localhost"), events=["message.new"]
        )
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint, event_type="message.new", payload={}
        )

    # When the SSRF guard is on and the delivery is attempted
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    with schema_context(tenant.schema_name):
        outcome = webhook_deliver(delivery_id=delivery.pk)
        delivery.refresh_from_db()

    # Then nothing is sent, and the delivery fails without a retry
    assert outcome == "failed"
    assert receiver.received(path) == []
    assert delivery.state == FAILED
    assert delivery.last_error == "Refused: the host resolves to a private or reserved address"


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/in",
        "https://localhost/in",
        "https://127.0.0.1:8443/in",
        "https://10.1.2.3/in",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/in",
        "https://[::ffff:192.168.1.1]/in",
        "https://router.internal/in",
        "ftp://hooks.example.com/in",
        "not a url",
    ],
)
def test_production_refuses_urls_that_are_not_public_https(url, make_tenant, settings):
    # Given production settings
    settings.PRODUCTION = True
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    with schema_context(make_tenant().schema_name):
        # When an endpoint is created with the URL, then it is refused
        with pytest.raises(ValidationError) as error:
            webhook_endpoint_create(url=url, events=["message.new"])
        assert set(error.value.message_dict) == {"url"}
        assert not WebhookEndpoint.objects.exists()
        # ...while a public https URL is accepted
        webhook_endpoint_create(url="https://hooks.example.com/in", events=["message.new"])


def test_create_reports_every_problem_and_returns_a_strong_secret_once(make_tenant):
    with schema_context(make_tenant().schema_name):
        # Given bad input, when creating, then every field's problem is reported at once
        with pytest.raises(ValidationError) as error:
            webhook_endpoint_create(url="nope", events=["message.new", "order.eaten"])
        assert set(error.value.message_dict) == {"url", "events"}
        with pytest.raises(ValidationError) as error:
            webhook_endpoint_create(url="https://a.example.com/", events=[])
        assert set(error.value.message_dict) == {"events"}

        # When created properly
        endpoint, secret = webhook_endpoint_create(
            url=" https://a.example.com/hook ",
            events=["order.updated", "message.new", "message.new"],
            description="CRM",
        )

        # Then the secret is long and random, stored encrypted, and not printed
        assert secret.startswith("whsec_") and len(secret) >= 40
        _, another_secret = webhook_endpoint_create(
            url="https://b.example.com/", events=["session.qr"]
        )
        assert another_secret != secret
        stored = WebhookEndpoint.objects.get(pk=endpoint.pk)
        assert str(stored.secret) == secret
        assert secret not in repr(stored.secret)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT secret FROM messaging_webhookendpoint WHERE id = %s", [stored.pk]
            )
            assert secret not in cursor.fetchone()[0]
        assert stored.url == "https://a.example.com/hook"
        assert stored.events == ["message.new", "order.updated"]


def test_update_rotate_and_delete(make_tenant):
    with schema_context(make_tenant().schema_name):
        endpoint, secret = webhook_endpoint_create(
            url="https://a.example.com/", events=["message.new"]
        )

        # When updated, only what is given changes
        webhook_endpoint_update(endpoint=endpoint, events=["session.status"], is_active=False)
        endpoint.refresh_from_db()
        assert (endpoint.url, endpoint.events, endpoint.is_active) == (
            "https://a.example.com/",
            ["session.status"],
            False,
        )
        with pytest.raises(ValidationError):
            webhook_endpoint_update(endpoint=endpoint, url="gopher://x")
        # An endpoint turned off gets no deliveries and no tests
        assert webhook_event_emit(event_type="session.status", payload={}) == 0
        with pytest.raises(ValidationError):
            webhook_endpoint_test(endpoint=endpoint)

        # When the secret is rotated, the new one replaces the old
        new_secret = webhook_endpoint_secret_rotate(endpoint=endpoint)
        assert new_secret != secret
        assert str(WebhookEndpoint.objects.get(pk=endpoint.pk).secret) == new_secret

        # When deleted, its deliveries go with it
        WebhookDelivery.objects.create(endpoint=endpoint, event_type="message.new", payload={})
        webhook_endpoint_delete(endpoint=endpoint)
        assert not WebhookEndpoint.objects.exists()
        assert not WebhookDelivery.objects.exists()


def test_an_event_in_a_rolled_back_transaction_creates_no_delivery(make_tenant, settings):
    settings.WEBHOOK_QUEUE = f"nobody-{uuid.uuid4().hex[:8]}"
    with schema_context(make_tenant().schema_name):
        webhook_endpoint_create(url="https://a.example.com/", events=["order.updated"])
        # When an event is emitted inside a transaction that then rolls back
        with pytest.raises(RuntimeError), transaction.atomic():
            assert webhook_event_emit(event_type="order.updated", payload={"id": 1}) == 1
            raise RuntimeError("the order change failed")
        # Then no delivery exists and no task was queued
        assert not WebhookDelivery.objects.exists()
    assert queue_purge(settings.WEBHOOK_QUEUE) == 0


def test_deliveries_are_listed_newest_first_page_by_page(make_tenant):
    with schema_context(make_tenant().schema_name):
        endpoint, _ = webhook_endpoint_create(url="https://a.example.com/", events=["message.new"])
        other, _ = webhook_endpoint_create(url="https://b.example.com/", events=["message.new"])
        created = [
            WebhookDelivery.objects.create(endpoint=endpoint, event_type="message.new", payload={})
            for _ in range(5)
        ]
        WebhookDelivery.objects.create(endpoint=other, event_type="message.new", payload={})
        WebhookDelivery.objects.filter(pk=created[0].pk).update(state=FAILED)

        # When read two at a time, each page after the last row of the one before
        pages, before = [], None
        while page := list(webhook_deliveries(endpoint, before=before)[:2]):
            pages.append([d.pk for d in page])
            before = (page[-1].created_at, page[-1].pk)

        # Then every delivery of this endpoint comes once, newest first
        assert pages == [
            [created[4].pk, created[3].pk],
            [created[2].pk, created[1].pk],
            [created[0].pk],
        ]
        assert [d.pk for d in webhook_deliveries(endpoint, state=FAILED)] == [created[0].pk]


def test_credentials_in_the_url_go_as_basic_auth_and_never_into_the_log(
    make_tenant, receiver, caplog
):
    caplog.set_level(logging.DEBUG)
    # Given an endpoint whose URL carries a user and password
    tenant = make_tenant()
    path = receiver.new_path()
    url = receiver.url(path).replace("http://", "http://crm:s3cr%3At@")
    with schema_context(tenant.schema_name):
        endpoint, _ = webhook_endpoint_create(url=url, events=["message.new"])
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint, event_type="message.new", payload={}
        )

        # When it is delivered
        assert webhook_deliver(delivery_id=delivery.pk) == "delivered"

    # Then they arrive as HTTP basic auth, and no log line shows the password
    (request,) = receiver.received(path)
    assert request.header("Authorization") == "Basic " + base64.b64encode(b"crm:s3cr:t").decode()
    assert "s3cr" not in caplog.text
