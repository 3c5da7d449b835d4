"""/metrics: Prometheus text behind a token, summing every process of the host."""

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sessions_app.leases import lease_acquire
from sessions_app.services import session_create
from tests.conftest import host_of

pytestmark = pytest.mark.integration

TOKEN = {"Authorization": "Bearer dev-metrics-token"}


def _samples(text: str) -> dict[tuple, float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _sum(samples: dict, name: str, **labels) -> float:
    return sum(
        value
        for (sample_name, sample_labels), value in samples.items()
        if sample_name == name and all((k, v) in sample_labels for k, v in labels.items())
    )


def test_metrics_without_the_token_is_401(web_server):
    assert httpx.get(f"{web_server}/metrics").status_code == 401
    wrong = httpx.get(f"{web_server}/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "unauthorized"


def test_metrics_is_answered_on_every_host(web_server, make_tenant):
    tenant = make_tenant()
    for host in ("localhost", host_of(tenant), "unknown.localhost"):
        response = httpx.get(f"{web_server}/metrics", headers={**TOKEN, "Host": host})
        assert response.status_code == 200, host
        assert response.headers["content-type"].startswith("text/plain")


def test_counters_move_with_traffic(web_server, make_tenant):
    # Given a tenant with a session held by a runner
    tenant = make_tenant()
    session = session_create(tenant=tenant, name="Front", provider="sandbox")
    assert lease_acquire(session.pk, "metrics-test-runner")
    before = _samples(httpx.get(f"{web_server}/metrics", headers=TOKEN).text)

    # When the web server answers some requests
    for _ in range(3):
        httpx.get(f"{web_server}/login/", headers={"Host": host_of(tenant)})

    # Then the HTTP histogram counted them under their view, and the scrape-time
    # figures show the session and the lease
    after = _samples(httpx.get(f"{web_server}/metrics", headers=TOKEN).text)
    name = "wa_http_request_duration_seconds_count"
    assert _sum(after, name, view="login") - _sum(before, name, view="login") == 3
    assert _sum(after, "wa_sessions", provider="sandbox", status="STOPPED") >= 1
    assert _sum(after, "wa_runner_leases_held", runner="metrics-test-runner") == 1
    assert ("wa_celery_queue_depth", (("queue", "celery"),)) in after


class _Receiver:
    """An outgoing webhooks' endpoint on this host: answers 200 to every POST."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                received.append(self.rfile.read(length))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_messaging_counters_move_with_real_traffic_through_the_web_server_and_a_worker(
    web_server, celery_worker, make_tenant, twilio_standin
):
    import uuid
    from urllib.parse import urlparse

    from django_tenants.utils import schema_context
    from twilio.request_validator import RequestValidator

    from messaging.models import Message, WebhookDelivery
    from messaging.outbound import message_send
    from messaging.webhooks import webhook_endpoint_create
    from tests.conftest import wait_until

    # Given a Twilio session (silent: routing answers nothing) and a webhook endpoint
    tenant = make_tenant()
    sid, token = twilio_standin.add_account()
    session = session_create(
        tenant=tenant,
        name="Twilio",
        provider="twilio",
        twilio_account_sid=sid,
        twilio_auth_token=token,
        twilio_from_number=f"+1415{uuid.uuid4().int % 10**7:07d}",
        customer_mode="silent",
    )
    receiver = _Receiver()
    schema = tenant.schema_name
    with schema_context(schema):
        webhook_endpoint_create(url=receiver.url, events=["message.new"])
    before = _samples(httpx.get(f"{web_server}/metrics", headers=TOKEN).text)
    try:
        # When Twilio posts a signed inbound message to the web server (its fast path)
        port = urlparse(web_server).port
        form = {
            "MessageSid": "SM" + uuid.uuid4().hex,
            "AccountSid": sid,
            "From": "whatsapp:+972501234567",
            "To": f"whatsapp:{session.twilio_from_number}",
            "Body": "Hello",
            "NumMedia": "0",
        }
        url = f"http://localhost:{port}/webhooks/twilio/"
        signature = RequestValidator(token).compute_signature(url, form)
        answer = httpx.post(
            f"{web_server}/webhooks/twilio/",
            data=form,
            headers={"X-Twilio-Signature": signature, "Host": f"localhost:{port}"},
            timeout=20,
        )
        assert answer.status_code == 200
        # and a worker sends a message (Twilio fails it once: one retry), and another
        # that Twilio refuses for good (a dead letter)
        twilio_standin.fail_next(1, status=500)
        with schema_context(schema):
            first = message_send(session=session, to="+972501234567", text="Welcome!")

        def status_of(message):
            with schema_context(schema):
                return Message.objects.get(pk=message.pk).status

        wait_until(lambda: status_of(first) == "sent", timeout=30, what="the first send")
        twilio_standin.fail_next(1, status=400, code=21211)
        with schema_context(schema):
            second = message_send(session=session, to="+972507654321", text="Hi there")
        wait_until(lambda: status_of(second) == "failed", timeout=30, what="the dead letter")

        def delivered():
            with schema_context(schema):
                return WebhookDelivery.objects.filter(state="delivered").count() >= 3

        wait_until(delivered, timeout=30, what="the webhook deliveries")
    finally:
        receiver.stop()

    # Then a scrape of the web server counts the worker's work too
    def moved():
        after = _samples(httpx.get(f"{web_server}/metrics", headers=TOKEN).text)

        def delta(name, **labels):
            return _sum(after, name, **labels) - _sum(before, name, **labels)

        return {
            "received": delta("wa_messages_received_total", provider="twilio"),
            "sent": delta("wa_messages_sent_total", provider="twilio", result="sent"),
            "failed": delta("wa_messages_sent_total", provider="twilio", result="failed"),
            "latency": delta("wa_send_latency_seconds_count", provider="twilio"),
            "retries": delta("wa_send_retries_total", provider="twilio"),
            "dead": delta("wa_dead_letters_total", provider="twilio"),
            "webhooks": delta("wa_webhook_deliveries_total", result="delivered"),
        }

    expected = {
        "received": 1,
        "sent": 1,
        "failed": 1,
        "latency": 1,
        "retries": 1,
        "dead": 1,
        "webhooks": 3,  # message.new of the inbound message and of the two sends
    }
    wait_until(lambda: moved() == expected, timeout=10, what=f"the counters {expected}")


def test_a_limited_or_suppressed_send_is_counted(make_tenant, settings):
    from django_tenants.utils import schema_context

    from messaging import metrics
    from messaging.models import MessagingSettings
    from messaging.outbound import message_send, outbound_live_check

    settings.OUTBOUND_GLOBAL_PER_MINUTE = 0
    tenant = make_tenant()
    session = session_create(tenant=tenant, name="Front", provider="sandbox")
    suppressed = metrics._sent("sandbox", "suppressed")
    waits = metrics._limit_waits("recipient")
    before = suppressed._value.get(), waits._value.get()
    with schema_context(tenant.schema_name):
        MessagingSettings.objects.update_or_create(
            pk=1, defaults={"outbound_per_recipient_per_minute": 1, "outbound_burst": 0}
        )
        first = message_send(session=session, to="+972501234567", text="One")
        message_send(session=session, to="+972501234567", text="One")  # a duplicate
        second = message_send(session=session, to="+972501234567", text="Two")
        assert not outbound_live_check(session_id=session.pk, message_id=first.pk, attempts=0).skip
        check = outbound_live_check(session_id=session.pk, message_id=second.pk, attempts=0)
        assert check.wait_seconds > 0

    assert suppressed._value.get() - before[0] == 1
    assert waits._value.get() - before[1] == 1
