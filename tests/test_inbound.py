"""Inbound: the Twilio webhooks, the inbound service and routing, on real PostgreSQL/Redis."""

import sys
import threading
import time
import uuid
from urllib.parse import urlparse

import httpx
import pytest
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from messaging.inbound import inbound_receive
from messaging.inbound_cache import CACHE_SECONDS
from messaging.models import Contact, Conversation, Message, MessagingSettings
from messaging.routing import Route, inbound_route_message
from sessions_app.models import Status, WhatsAppSession
from sessions_app.providers.base import InboundMessage
from sessions_app.services import session_create
from tests.conftest import ChildProcess, wait_until

TOKEN = "0123456789abcdef0123456789abcdef"
SID = "AC" + "2" * 32


def _number() -> str:
    return f"+1415{uuid.uuid4().int % 10**7:07d}"


@pytest.fixture
def twilio_session(make_tenant, twilio_standin):
    tenant = make_tenant()
    twilio_standin.add_account(SID, TOKEN)  # session_create asks Twilio for the account
    session = session_create(
        tenant=tenant,
        name="Twilio",
        provider="twilio",
        twilio_account_sid=SID,
        twilio_auth_token=TOKEN,
        twilio_from_number=_number(),
    )
    return session


def _form(session, **fields) -> dict:
    form = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": SID,
        "From": "whatsapp:+972501234567",
        "To": f"whatsapp:{session.twilio_from_number}",
        "Body": "Hi, I'd like to order",
        "ProfileName": "Dana",
        "WaId": "972501234567",
        "NumMedia": "0",
    }
    form.update(fields)
    return form


def _signed(url: str, form: dict, token: str = TOKEN) -> dict:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, form)}


def _post(client_or_url, path: str, form: dict, *, host="localhost", token=TOKEN, signature=None):
    """POST like Twilio: the signature covers the URL Twilio called and the form."""
    url = f"http://{host}{path}"
    headers = _signed(url, form, token) if signature is None else {"X-Twilio-Signature": signature}
    return Client(HTTP_HOST=host).post(path, form, headers=headers)


def _messages(session):
    with schema_context(session.tenant.schema_name):
        return list(
            Message.objects.filter(session_id=session.pk).select_related("conversation__contact")
        )


# --- the webhook ----------------------------------------------------------------------


def test_signed_inbound_is_stored_with_contact_and_conversation(twilio_session):
    response = _post(None, "/webhooks/twilio/", _form(twilio_session))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    (message,) = _messages(twilio_session)
    assert (message.direction, message.kind, message.status) == ("in", "text", "received")
    assert message.text == "Hi, I'd like to order"
    contact = message.conversation.contact
    assert (contact.phone, contact.push_name) == ("+972501234567", "Dana")
    assert message.conversation.unread_count == 1


def test_signed_inbound_posted_five_times_concurrently_is_stored_once(twilio_session, web_server):
    port = urlparse(web_server).port
    form = _form(twilio_session)
    url = f"http://localhost:{port}/webhooks/twilio/"
    headers = {**_signed(url, form), "Host": f"localhost:{port}"}
    responses = []

    def post():
        responses.append(
            httpx.post(
                f"{web_server}/webhooks/twilio/", data=form, headers=headers, timeout=20
            ).status_code
        )

    threads = [threading.Thread(target=post) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert responses == [200] * 5
    assert len(_messages(twilio_session)) == 1
    with schema_context(twilio_session.tenant.schema_name):
        assert Conversation.objects.get().unread_count == 1


def test_bad_or_missing_signature_is_403_and_stores_nothing(twilio_session):
    form = _form(twilio_session)
    assert (
        _post(None, "/webhooks/twilio/", form, signature="bm90IGEgc2lnbmF0dXJl").status_code == 403
    )
    assert _post(None, "/webhooks/twilio/", form, signature="").status_code == 403
    assert _post(None, "/webhooks/twilio/", form, token="f" * 32).status_code == 403
    assert _messages(twilio_session) == []


def test_signature_is_checked_against_the_forwarded_public_url(twilio_session, settings):
    settings.USE_X_FORWARDED_HOST = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    form = _form(twilio_session)
    public = "https://localhost:8443/webhooks/twilio/"
    response = Client(HTTP_HOST="localhost").post(
        "/webhooks/twilio/",
        form,
        headers={
            **_signed(public, form),
            "X-Forwarded-Host": "localhost:8443",
            "X-Forwarded-Proto": "https",
        },
    )
    assert response.status_code == 200


def test_unknown_number_is_404(twilio_session):
    response = _post(None, "/webhooks/twilio/", _form(twilio_session, To="whatsapp:+14155550000"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_number"


def test_a_tenant_over_its_inbound_limit_gets_429_with_retry_after(twilio_session):
    with schema_context(twilio_session.tenant.schema_name):
        MessagingSettings.objects.update_or_create(
            pk=1, defaults={"inbound_per_tenant_per_minute": 2}
        )
    codes = [_post(None, "/webhooks/twilio/", _form(twilio_session)).status_code for _ in range(3)]
    assert codes[:2] == [200, 200]
    assert codes[2] == 429
    response = _post(None, "/webhooks/twilio/", _form(twilio_session))
    assert 1 <= int(response["Retry-After"]) <= 60
    assert len(_messages(twilio_session)) == 2


def test_a_suspended_tenants_webhook_is_refused(twilio_session):
    from tenants.services import tenant_suspend

    tenant_suspend(tenant=twilio_session.tenant)
    response = _post(None, "/webhooks/twilio/", _form(twilio_session))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_suspended"


def test_image_with_caption_location_and_reply_are_normalised(twilio_session):
    first = _form(twilio_session)
    _post(None, "/webhooks/twilio/", first)
    _post(
        None,
        "/webhooks/twilio/",
        _form(
            twilio_session,
            Body="Look",
            NumMedia="1",
            MediaContentType0="image/jpeg",
            MediaUrl0=f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages/MM1/Media/ME1",
            OriginalRepliedMessageSid=first["MessageSid"],
        ),
    )
    _post(
        None,
        "/webhooks/twilio/",
        _form(twilio_session, Body="", Latitude="32.07", Longitude="34.78", Label="Home"),
    )
    text, image, location = sorted(_messages(twilio_session), key=lambda m: m.pk)
    assert (image.kind, image.text, image.media_mime_type) == ("image", "Look", "image/jpeg")
    assert image.reply_to_id == text.pk
    assert location.kind == "location" and location.payload["latitude"] == pytest.approx(32.07)


def test_stop_opts_out_and_start_opts_back_in_in_three_languages(twilio_session):
    def contact():
        with schema_context(twilio_session.tenant.schema_name):
            return Contact.objects.get(phone="+972501234567")

    for stop, start in (("STOP", "start"), ("הסר", "התחל"), ("إيقاف", "ابدأ")):
        _post(None, "/webhooks/twilio/", _form(twilio_session, Body=stop))
        assert contact().opted_out
        _post(None, "/webhooks/twilio/", _form(twilio_session, Body=start))
        assert not contact().opted_out


# --- status callbacks -----------------------------------------------------------------


def _sent_message(session, sid: str) -> Message:
    with schema_context(session.tenant.schema_name):
        contact = Contact.objects.create(phone="+972501234567")
        conversation = Conversation.objects.create(contact=contact, session_id=session.pk)
        return Message.objects.create(
            conversation=conversation,
            session_id=session.pk,
            direction="out",
            text="Your order is confirmed",
            provider_message_id=sid,
            status="sent",
        )


def _status_form(session, sid, status, **fields):
    return {
        "MessageSid": sid,
        "MessageStatus": status,
        "AccountSid": SID,
        "From": f"whatsapp:{session.twilio_from_number}",
        "To": "whatsapp:+972501234567",
        **fields,
    }


def test_status_callbacks_move_a_message_forward_never_back(twilio_session):
    sid = "SM" + uuid.uuid4().hex
    message = _sent_message(twilio_session, sid)
    for status in ("delivered", "read", "delivered", "sent"):
        response = _post(
            None, "/webhooks/twilio/status/", _status_form(twilio_session, sid, status)
        )
        assert response.status_code == 200
    with schema_context(twilio_session.tenant.schema_name):
        message.refresh_from_db()
    assert message.status == "read"
    assert message.delivered_at and message.read_at


def test_failed_status_keeps_twilios_error_code(twilio_session):
    sid = "SM" + uuid.uuid4().hex
    message = _sent_message(twilio_session, sid)
    _post(
        None,
        "/webhooks/twilio/status/",
        _status_form(twilio_session, sid, "undelivered", ErrorCode="63016"),
    )
    with schema_context(twilio_session.tenant.schema_name):
        message.refresh_from_db()
    assert (message.status, message.error_code) == ("failed", "63016")


@pytest.mark.parametrize("status", ["undelivered", "failed"])
def test_an_undelivered_or_failed_callback_makes_a_retryable_dead_letter(twilio_session, status):
    from messaging.outbound import message_dead_letters, message_retry

    # Given a message Twilio accepted
    sid = "SM" + uuid.uuid4().hex
    message = _sent_message(twilio_session, sid)

    # When Twilio's status callback says it never reached the phone
    response = _post(
        None,
        "/webhooks/twilio/status/",
        _status_form(twilio_session, sid, status, ErrorCode="63016"),
    )

    # Then it is failed, with Twilio's code, and listed as a dead letter
    assert response.status_code == 200
    with schema_context(twilio_session.tenant.schema_name):
        message.refresh_from_db()
        assert (message.status, message.error_code, message.dead_letter) == (
            "failed",
            "63016",
            True,
        )
        assert message.failed_at is not None
        assert [m.pk for m in message_dead_letters()] == [message.pk]

        # and retrying it queues the same message again for its sender
        retried = message_retry(message=message)
        assert (retried.status, retried.dead_letter, retried.pk) == ("queued", False, message.pk)
        assert not message_dead_letters().exists()


def test_status_callback_with_a_bad_signature_is_403(twilio_session):
    sid = "SM" + uuid.uuid4().hex
    _sent_message(twilio_session, sid)
    response = _post(
        None,
        "/webhooks/twilio/status/",
        _status_form(twilio_session, sid, "read"),
        signature="nope",
    )
    assert response.status_code == 403


# --- malformed input never produces a 500 ---------------------------------------------

_text = st.text(max_size=40)
_fields = st.dictionaries(
    st.sampled_from(
        [
            "MessageSid",
            "From",
            "To",
            "Body",
            "NumMedia",
            "MediaUrl0",
            "MediaContentType0",
            "Latitude",
            "Longitude",
            "MessageStatus",
            "ErrorCode",
            "ProfileName",
            "OriginalRepliedMessageSid",
        ]
    )
    | _text,
    _text | st.sampled_from(["whatsapp:+972501234567", "1", "-999", "nan", "image/png"]),
    max_size=8,
)


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fields=_fields,
    signature=_text,
    path=st.sampled_from(["/webhooks/twilio/", "/webhooks/twilio/status/"]),
)
def test_malformed_webhook_bodies_and_headers_never_500(twilio_session, fields, signature, path):
    client = Client(HTTP_HOST="localhost", raise_request_exception=False)
    response = client.post(path, fields, headers={"X-Twilio-Signature": signature})
    assert response.status_code in (200, 400, 403, 404, 429)


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fields=_fields, path=st.sampled_from(["/webhooks/twilio/", "/webhooks/twilio/status/"]))
def test_correctly_signed_but_malformed_bodies_never_500(twilio_session, fields, path):
    # Signed with the right token for the right number: it gets past the signature check.
    number = {
        "To"
        if path.endswith("twilio/")
        else "From": f"whatsapp:{twilio_session.twilio_from_number}"
    }
    form = {key: value for key, value in {**fields, **number}.items() if "\x00" not in key + value}
    client = Client(HTTP_HOST="localhost", raise_request_exception=False)
    response = client.post(path, form, headers=_signed(f"http://localhost{path}", form))
    assert response.status_code in (200, 400, 403, 404, 429), response.content[:300]


# --- routing --------------------------------------------------------------------------


def _inbound(session, *, sender="+972501234567", text="Hello") -> Message:
    """Stored, without the after-commit hand-off to a worker: these tests route it here
    (a worker routing it too would run the real flows, not the recorded ones)."""
    with transaction.atomic():
        result = inbound_receive(
            session=session,
            inbound=InboundMessage(
                provider_message_id="X" + uuid.uuid4().hex,
                chat=sender,
                sender=sender,
                timestamp=timezone.now(),
                text=text,
            ),
        )
        connection.run_on_commit.clear()
    return result.message


@pytest.fixture
def recorded_flows(monkeypatch):
    calls = []
    monkeypatch.setattr(
        "messaging.owner_menu.owner_menu_handle",
        lambda **kw: calls.append(("owner", kw["message"].pk)),
    )
    monkeypatch.setattr(
        "orders.bot.ordering_bot_handle", lambda **kw: calls.append(("ordering", kw["message"].pk))
    )
    return calls


def _route(session, message) -> str:
    with schema_context(session.tenant.schema_name):
        return inbound_route_message(message_id=message.pk)


def test_owner_numbers_go_to_the_owner_menu_and_nobody_else(make_tenant, recorded_flows):
    session = session_create(
        tenant=make_tenant(),
        name="Main",
        provider="sandbox",
        owner_numbers=["+972501111111"],
        customer_mode="ordering",
    )
    owner = _inbound(session, sender="+972501111111", text="/menu")
    customer = _inbound(session, sender="+972502222222", text="/menu")

    assert _route(session, owner) == Route.OWNER
    assert _route(session, customer) == Route.ORDERING
    assert recorded_flows == [("owner", owner.pk), ("ordering", customer.pk)]


def test_silent_mode_stores_and_never_answers(make_tenant, recorded_flows):
    session = session_create(tenant=make_tenant(), name="Main", provider="sandbox")
    message = _inbound(session)
    assert _route(session, message) == Route.SILENT
    assert recorded_flows == []
    with schema_context(session.tenant.schema_name):
        assert not Message.objects.filter(direction="out").exists()


def test_a_conversation_taken_over_by_a_person_is_left_to_them(make_tenant, recorded_flows):
    session = session_create(
        tenant=make_tenant(), name="Main", provider="sandbox", customer_mode="ordering"
    )
    message = _inbound(session)
    with schema_context(session.tenant.schema_name):
        Conversation.objects.update(human_takeover=True)
    assert _route(session, message) == Route.HUMAN
    assert recorded_flows == []


def test_a_customer_writing_too_fast_gets_one_notice_and_a_pause(committed_db):
    from messaging.inbound_limits import inbound_customer_check

    def check(now):
        return inbound_customer_check(
            schema=schema,
            phone="+972501234567",
            per_minute=3,
            pause_minutes=5,
            now=now,
        )

    schema = f"limits_{uuid.uuid4().hex[:8]}"
    start = 1_800_000_000.0  # the start of a minute: the test controls the clock
    verdicts = [check(start + i) for i in range(6)]
    assert [v.answer for v in verdicts] == [True, True, True, False, False, False]
    assert [v.send_notice for v in verdicts] == [False, False, False, True, False, False]
    assert check(start + 120).answer is False  # still paused two minutes later
    assert check(start + 5 * 60 + 10).answer is True  # and answered again after five


def test_a_sandbox_phone_message_reaches_the_tenant_through_a_real_runner(
    make_tenant, process_logs, monkeypatch, celery_worker
):
    from sessions_app.models import DesiredState
    from sessions_app.providers.sandbox import sandbox_phone_writes

    monkeypatch.setenv("SESSION_SCAN_SECONDS", "0.5")
    tenant = make_tenant()
    session = session_create(tenant=tenant, name="Main", provider="sandbox")
    WhatsAppSession.objects.filter(pk=session.pk).update(
        device_jid="972501234567@sandbox", desired_state=DesiredState.RUNNING
    )
    runner = ChildProcess(
        "inbound-runner", [sys.executable, "manage.py", "run_sessions"], process_logs
    )
    try:
        wait_until(
            lambda: WhatsAppSession.objects.get(pk=session.pk).status == Status.CONNECTED,
            timeout=30,
            what="connected",
            child=runner,
        )
        sandbox_phone_writes(
            session_id=session.pk, phone_number="+972503333333", text="שלום", push_name="Noa"
        )
        messages = wait_until(
            lambda: _messages(session), timeout=30, what="the message", child=runner
        )
    finally:
        WhatsAppSession.objects.filter(pk=session.pk).update(desired_state=DesiredState.STOPPED)
        runner.stop()
    (message,) = messages
    assert (message.text, message.conversation.contact.push_name) == ("שלום", "Noa")


# --- the fast path (messaging/twilio_fast.py) answers as the Django view does ----------


def _both_answers(web_server, session, form, *, signature=None):
    """(the real server's answer: the fast path, the Django view's answer) to one form.

    The MessageSid differs between the two posts, so that neither is the other's repeat."""
    port = urlparse(web_server).port
    fast_form = {**form, "MessageSid": form.get("MessageSid", "") + "F"} if form else form
    url = f"http://localhost:{port}/webhooks/twilio/"
    headers = _signed(url, fast_form) if signature is None else {"X-Twilio-Signature": signature}
    fast = httpx.post(
        f"{web_server}/webhooks/twilio/",
        data=fast_form,
        headers={**headers, "Host": f"localhost:{port}"},
        timeout=20,
    )
    django = _post(None, "/webhooks/twilio/", form, signature=signature)
    return fast, django


def _same_answer(fast, django) -> None:
    assert fast.status_code == django.status_code
    assert fast.content == django.content
    for header in ("Content-Type", "X-Frame-Options", "Content-Language"):
        assert fast.headers.get(header) == django.get(header), header
    # the seconds left in the minute: the same, or one less a moment later
    assert ("Retry-After" in fast.headers) == django.has_header("Retry-After")


@pytest.mark.integration
def test_the_fast_path_answers_every_case_as_the_django_view(twilio_session, web_server):
    session = twilio_session
    with schema_context(session.tenant.schema_name):
        MessagingSettings.objects.update_or_create(
            pk=1, defaults={"inbound_per_tenant_per_minute": 6}
        )
    # 200, stored
    fast, django = _both_answers(web_server, session, _form(session))
    _same_answer(fast, django)
    assert fast.status_code == 200 and fast.headers["Content-Type"].startswith("text/xml")
    # 404: a number no session uses
    _same_answer(*_both_answers(web_server, session, _form(session, To="whatsapp:+14155550000")))
    # 403: a bad signature, and a missing one
    _same_answer(*_both_answers(web_server, session, _form(session), signature="bm90IGl0"))
    _same_answer(*_both_answers(web_server, session, _form(session), signature=""))
    # 400: signed, but not a Twilio message
    fast, django = _both_answers(web_server, session, _form(session, NumMedia="many"))
    _same_answer(fast, django)
    assert fast.status_code == 400 and fast.json()["error"]["code"] == "invalid_message"
    # 429 once the tenant's limit (6 a minute, 4 taken above... by each side) is passed
    answers = [_both_answers(web_server, session, _form(session)) for _ in range(3)]
    assert [(f.status_code, d.status_code) for f, d in answers][-1] == (429, 429)
    _same_answer(*answers[-1])
    # 403: a suspended tenant (the fast path hands it to Django, which translates it)
    from tenants.services import tenant_suspend

    tenant_suspend(tenant=session.tenant)
    time.sleep(CACHE_SECONDS)  # the web server's cache of the session and its tenant
    fast, django = _both_answers(web_server, session, _form(session))
    _same_answer(fast, django)
    assert fast.json()["error"]["code"] == "tenant_suspended"
    # and what was accepted was stored once each: 2 (first) + 2 (before the limit)
    assert len(_messages(session)) == 4


@pytest.mark.integration
def test_a_fast_path_message_is_routed_and_announced_by_a_real_worker(
    twilio_session, web_server, celery_worker
):
    from messaging.models import WebhookDelivery
    from messaging.webhooks import webhook_endpoint_create

    # Given a tenant with an outgoing webhook for message.new
    with schema_context(twilio_session.tenant.schema_name):
        webhook_endpoint_create(url="http://127.0.0.1:9/hook", events=["message.new"])
    # When Twilio posts a message to the real server (the fast path)
    form = _form(twilio_session, Body="Two pizzas")
    port = urlparse(web_server).port
    url = f"http://localhost:{port}/webhooks/twilio/"
    response = httpx.post(
        f"{web_server}/webhooks/twilio/",
        data=form,
        headers={**_signed(url, form), "Host": f"localhost:{port}"},
        timeout=20,
    )
    assert response.status_code == 200
    # Then the worker ran its one task in the tenant's schema: message.new was queued for
    # the endpoint, with the stored message
    (message,) = _messages(twilio_session)

    def announced():
        with schema_context(twilio_session.tenant.schema_name):
            return list(WebhookDelivery.objects.filter(event_type="message.new"))

    (delivery,) = wait_until(announced, timeout=30, what="the message.new delivery")
    assert delivery.payload["id"] == str(message.public_id)
    assert delivery.payload["text"] == "Two pizzas"
    assert delivery.payload["contact"] == {"phone": "+972501234567", "name": "Dana"}


def test_the_fast_paths_celery_message_is_the_one_celery_sends(monkeypatch, twilio_session):
    """messaging.inbound_tasks.celery_message builds by hand what apply_async LPUSHes."""
    import base64
    import json

    import redis

    from messaging.inbound_tasks import celery_message, inbound_route

    pushed = []
    real = redis.Redis.execute_command

    def capture(self, *args, **options):
        if args and args[0] == "LPUSH":
            pushed.append((args[1], args[2]))
            return 1
        return real(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", capture)
    with schema_context(twilio_session.tenant.schema_name):
        inbound_route.delay(4321)
    ((celery_queue, celery_payload),) = pushed
    queue, payload = celery_message(
        "messaging.inbound_route", args=(4321,), schema=twilio_session.tenant.schema_name
    )

    def comparable(raw: str) -> dict:
        message = json.loads(raw)
        message["body"] = json.loads(base64.b64decode(message["body"]))
        for name in ("id", "root_id", "origin"):
            message["headers"].pop(name)
        for name in ("correlation_id", "delivery_tag", "reply_to"):
            message["properties"].pop(name)
        return message

    assert queue == celery_queue
    assert comparable(payload) == comparable(celery_payload)


def test_an_owners_pin_reaches_no_dashboard_and_no_webhook(make_tenant, settings):
    from messaging.models import WebhookDelivery
    from messaging.owner_menu.accounts import REDACTED
    from messaging.routing import inbound_message_route
    from messaging.webhooks import webhook_endpoint_create
    from tests.test_outbound import GroupListener

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    owner, pin = "+972501111111", "4826"
    session = session_create(
        tenant=make_tenant(language="en"),
        name="Main",
        provider="sandbox",
        owner_numbers=[owner],
        customer_mode="ordering",
    )
    schema = session.tenant.schema_name
    with schema_context(schema):
        webhook_endpoint_create(url="http://127.0.0.1:9/hook", events=["message.new"])
    listener = GroupListener(session.tenant)

    # When the owner registers: hello, a name, then the PIN twice
    texts = ["hi", "Dana", pin, pin]
    messages = [_inbound(session, sender=owner, text=text) for text in texts]
    with schema_context(schema):
        for message in messages:
            assert inbound_message_route(message_id=message.pk) == Route.OWNER

    # Then every message was announced -- the PIN messages without the PIN
    inbound_events = {
        e["message"]["id"]: e["message"]["text"]
        for e in listener.drain()
        if e["type"] == "message.new" and e["message"]["direction"] == "in"
    }
    assert [inbound_events[str(m.public_id)] for m in messages] == [
        "hi",
        "Dana",
        REDACTED,
        REDACTED,
    ]
    with schema_context(schema):
        payloads = {
            d.payload["id"]: d.payload["text"]
            for d in WebhookDelivery.objects.filter(event_type="message.new")
            if d.payload["direction"] == "in"
        }
        assert [payloads[str(m.public_id)] for m in messages] == ["hi", "Dana", REDACTED, REDACTED]
        assert not Message.objects.filter(text__contains=pin).exists()
    # and no message the dashboards heard carries it
    assert all(pin not in (e.get("message") or {}).get("text", "") for e in listener.events)
