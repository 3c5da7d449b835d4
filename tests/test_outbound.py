"""The outbound path (messaging/outbound.py): against real PostgreSQL and Redis, a real
Celery worker sending through the real twilio SDK to the local stand-in of Twilio's
API, and real session runner processes for sandbox sessions.

Limits are checked on a controllable clock (messaging.limits takes `now`, or its module
`clock`); humanisation's timing math is checked as pure functions.
"""

import json
import random
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from config.redis_client import redis_client
from dashboard.realtime import tenant_group
from messaging import limits
from messaging.humanize import (
    PAUSED,
    READ,
    SEND,
    TYPING,
    TYPING_MAX_SECONDS,
    TYPING_MIN_SECONDS,
    humanize_plan,
    typing_seconds,
)
from messaging.limits import OutboundLimits, limits_burst_reset, limits_reserve
from messaging.models import Contact, Conversation, Message, MessagingSettings
from messaging.outbound import (
    message_dead_letters,
    message_retry,
    message_send,
    outbound_live_check,
)
from messaging.outbound import message_deliver as deliver_service
from sessions_app import outbox
from sessions_app.models import DesiredState, SandboxMessage, Status, WhatsAppSession
from sessions_app.providers.twilio_provider import IDEMPOTENCY_HEADER
from sessions_app.services import session_create
from tests.conftest import ChildProcess, wait_until

CUSTOMER = "+972501234567"
OTHER_CUSTOMER = "+972507654321"
MESSAGES_PATH = "/Messages.json"
RUNNER_ENV = {"SESSION_SCAN_SECONDS": "0.5", "SESSION_LEASE_TTL_SECONDS": "6"}


def _number() -> str:
    return f"+1415{uuid.uuid4().int % 10**7:07d}"


def _settings(tenant, **fields) -> None:
    with schema_context(tenant.schema_name):
        MessagingSettings.objects.update_or_create(pk=1, defaults=fields)


def _send(session, **fields) -> Message:
    with schema_context(session.tenant.schema_name):
        return message_send(session=session, **{"to": CUSTOMER, **fields})


def _reload(message: Message, schema: str) -> Message:
    with schema_context(schema):
        return Message.objects.select_related("conversation__contact").get(pk=message.pk)


def _wait_status(message, schema, *statuses, timeout=30, child=None) -> Message:
    def reached():
        current = _reload(message, schema)
        return current if current.status in statuses else None

    return wait_until(
        reached, timeout=timeout, what=f"message {message.pk} {'/'.join(statuses)}", child=child
    )


class GroupListener:
    """A channels-redis consumer of the tenant's group: what the dashboards see."""

    def __init__(self, tenant):
        self.layer = get_channel_layer()
        self.channel = f"test-outbound-{uuid.uuid4().hex}"
        async_to_sync(self.layer.group_add)(tenant_group(tenant.schema_name), self.channel)
        self.events: list[dict] = []

    def drain(self) -> list[dict]:
        async def receive_all():
            import asyncio

            while True:
                try:
                    message = await asyncio.wait_for(self.layer.receive(self.channel), 0.2)
                except TimeoutError:
                    return
                self.events.append(message["event"])

        async_to_sync(receive_all)()
        return self.events

    def statuses_of(self, message: Message) -> list[tuple[str, str]]:
        return [
            (event["type"], event["message"]["status"])
            for event in self.drain()
            if event["type"].startswith("message.")
            and event["message"]["id"] == str(message.public_id)
        ]


# --- humanisation: the timing math ----------------------------------------------------


class _Extreme(random.Random):
    """Jitter always at one end of its range."""

    def __init__(self, end: str):
        super().__init__(0)
        self.end = end

    def uniform(self, a, b):
        return a if self.end == "low" else b


def test_instant_profile_sends_at_once():
    assert [(s.at, s.action) for s in humanize_plan(profile="instant", text="Hi")] == [(0.0, SEND)]


def test_a_humanised_send_reads_then_types_then_pauses_then_sends():
    steps = humanize_plan(profile="normal", text="Your order is ready", rng=random.Random(1))

    assert [step.action for step in steps] == [READ, TYPING, PAUSED, SEND]
    assert [step.at for step in steps] == sorted(step.at for step in steps)
    assert steps[0].at > 0


def test_typing_time_grows_with_the_text():
    short = typing_seconds("x" * 30, chars_per_second=6, rng=_Extreme("high"))
    longer = typing_seconds("x" * 60, chars_per_second=6, rng=_Extreme("high"))

    assert short == pytest.approx(6.0) and longer == pytest.approx(12.0)


@pytest.mark.parametrize("end", ["low", "high"])
def test_typing_is_jittered_by_at_most_twenty_percent(end):
    seconds = typing_seconds("x" * 60, chars_per_second=6, rng=_Extreme(end))

    assert seconds == pytest.approx(8.0 if end == "low" else 12.0)


@pytest.mark.parametrize(("text", "end"), [("", "low"), ("ok", "low"), ("x" * 5000, "high")])
def test_typing_stays_within_one_and_twenty_five_seconds(text, end):
    seconds = typing_seconds(text, chars_per_second=12, rng=_Extreme(end))

    assert TYPING_MIN_SECONDS <= seconds <= TYPING_MAX_SECONDS
    assert seconds in (TYPING_MIN_SECONDS, TYPING_MAX_SECONDS)


def test_long_typing_is_refreshed_every_twenty_seconds():
    steps = humanize_plan(profile="slow", text="x" * 5000, rng=_Extreme("high"))

    typing = [step.at for step in steps if step.action == TYPING]
    paused = next(step.at for step in steps if step.action == PAUSED)
    assert len(typing) == 2 and typing[1] - typing[0] == pytest.approx(20.0)
    assert paused - typing[0] == pytest.approx(TYPING_MAX_SECONDS)


def test_the_first_message_to_a_new_contact_waits_longer():
    known = humanize_plan(profile="fast", text="Hello", rng=_Extreme("low"))
    new = humanize_plan(profile="fast", text="Hello", first_contact=True, rng=_Extreme("low"))

    assert new[-1].at > known[-1].at
    assert new[0].at - known[0].at == pytest.approx(new[-1].at - known[-1].at)


def test_a_reaction_is_not_typed():
    steps = humanize_plan(profile="normal", text="", kind="reaction", rng=random.Random(2))

    assert [step.action for step in steps] == [READ, SEND]


# --- limits on a controllable clock ---------------------------------------------------


@pytest.fixture
def scope(settings):
    """Keys of their own for one test (a made-up tenant schema and session)."""
    settings.OUTBOUND_GLOBAL_PER_MINUTE = 0
    return SimpleNamespace(schema=f"t_{uuid.uuid4().hex[:10]}", session_id=uuid.uuid4().int % 10**9)


NO_LIMITS = OutboundLimits(
    per_tenant_per_minute=0,
    per_recipient_per_minute=0,
    burst=0,
    burst_cooldown_seconds=0,
    daily_per_session=0,
)
T0 = 1_000_000.0


def _reserve(scope, only: OutboundLimits, now: float, recipient: str = CUSTOMER):
    return limits_reserve(
        schema=scope.schema, session_id=scope.session_id, recipient=recipient, limits=only, now=now
    )


def test_per_recipient_limit_holds_for_a_minute_then_frees(scope):
    only = OutboundLimits(**{**NO_LIMITS.__dict__, "per_recipient_per_minute": 10})

    allowed = [_reserve(scope, only, T0 + i).allowed for i in range(10)]
    eleventh = _reserve(scope, only, T0 + 10)
    other_recipient = _reserve(scope, only, T0 + 10, recipient=OTHER_CUSTOMER)

    assert all(allowed)
    assert not eleventh.allowed and eleventh.limit == "recipient"
    assert eleventh.wait_seconds == pytest.approx(50.0)  # the first leaves the window at T0+60
    assert other_recipient.allowed
    assert not _reserve(scope, only, T0 + 59.9).allowed
    assert _reserve(scope, only, T0 + 60).allowed


def test_three_in_a_row_then_a_thirty_second_cooldown_for_that_recipient(scope):
    only = OutboundLimits(**{**NO_LIMITS.__dict__, "burst": 3, "burst_cooldown_seconds": 30})

    in_a_row = [_reserve(scope, only, T0 + i).allowed for i in (0, 1, 2)]
    fourth = _reserve(scope, only, T0 + 3)
    someone_else = _reserve(scope, only, T0 + 3, recipient=OTHER_CUSTOMER)

    assert in_a_row == [True, True, True]
    assert not fourth.allowed and fourth.limit == "burst"
    assert fourth.wait_seconds == pytest.approx(29.0)  # 30 s after the third
    assert someone_else.allowed
    assert not _reserve(scope, only, T0 + 31.9).allowed
    assert _reserve(scope, only, T0 + 32).allowed  # after the quiet, a new row starts
    assert _reserve(scope, only, T0 + 33).allowed


def test_a_message_from_the_recipient_ends_the_row(scope):
    only = OutboundLimits(**{**NO_LIMITS.__dict__, "burst": 3, "burst_cooldown_seconds": 30})
    assert all(_reserve(scope, only, T0 + i).allowed for i in (0, 1, 2))
    assert not _reserve(scope, only, T0 + 3).allowed

    # When the customer writes, then three answers go in a row again
    limits_burst_reset(schema=scope.schema, recipient=CUSTOMER)

    assert [_reserve(scope, only, T0 + 3 + i).allowed for i in (0, 1, 2)] == [True] * 3
    assert _reserve(scope, only, T0 + 6).limit == "burst"  # and no more without an answer


def test_a_reply_is_still_counted_by_the_per_minute_limits(scope):
    only = OutboundLimits(
        **{**NO_LIMITS.__dict__, "burst": 3, "burst_cooldown_seconds": 30,
           "per_recipient_per_minute": 4}
    )  # fmt: skip
    for i in range(4):
        assert _reserve(scope, only, T0 + i).allowed
        limits_burst_reset(schema=scope.schema, recipient=CUSTOMER)  # they keep writing

    fifth = _reserve(scope, only, T0 + 4)

    assert not fifth.allowed and fifth.limit == "recipient"


def test_routing_a_customers_message_ends_the_row_of_sends_to_them(make_tenant, settings):
    from messaging.routing import inbound_message_route

    settings.OUTBOUND_GLOBAL_PER_MINUTE = 0
    tenant = make_tenant()
    session = session_create(
        tenant=tenant, name="Quiet", provider="sandbox", customer_mode="silent"
    )
    only = OutboundLimits(**{**NO_LIMITS.__dict__, "burst": 3, "burst_cooldown_seconds": 30})
    scope = SimpleNamespace(schema=tenant.schema_name, session_id=session.pk)
    now = limits.clock()
    assert all(_reserve(scope, only, now).allowed for _ in range(3))
    assert not _reserve(scope, only, now).allowed
    with schema_context(tenant.schema_name):
        contact, _ = Contact.objects.get_or_create(phone=CUSTOMER)
        conversation, _ = Conversation.objects.get_or_create(contact=contact, session_id=session.pk)
        message = Message.objects.create(
            conversation=conversation,
            session_id=session.pk,
            direction=Message.Direction.INBOUND,
            status=Message.Status.RECEIVED,
            text="and the menu?",
            provider_message_id=f"in-{uuid.uuid4().hex}",
        )
        assert inbound_message_route(message_id=message.pk) == "silent"

    assert _reserve(scope, only, now).allowed


def test_sends_spaced_by_the_cooldown_never_count_as_a_row(scope):
    only = OutboundLimits(**{**NO_LIMITS.__dict__, "burst": 3, "burst_cooldown_seconds": 30})

    assert all(_reserve(scope, only, T0 + 30 * i).allowed for i in range(10))


def test_per_tenant_limit_counts_every_recipient(scope):
    only = OutboundLimits(**{**NO_LIMITS.__dict__, "per_tenant_per_minute": 60})

    allowed = [_reserve(scope, only, T0 + i / 2, recipient=f"+97250{i:07d}") for i in range(60)]
    sixty_first = _reserve(scope, only, T0 + 30, recipient="+972509999999")

    assert all(decision.allowed for decision in allowed)
    assert not sixty_first.allowed and sixty_first.limit == "tenant"
    assert sixty_first.wait_seconds == pytest.approx(30.0)
    assert _reserve(scope, only, T0 + 60, recipient="+972509999999").allowed


def test_daily_cap_per_session_holds_for_a_day(scope):
    only = OutboundLimits(**{**NO_LIMITS.__dict__, "daily_per_session": 1000})

    allowed = [
        _reserve(scope, only, T0 + i * 60, recipient=f"+97250{i:07d}").allowed for i in range(1000)
    ]
    next_one = _reserve(scope, only, T0 + 1000 * 60)

    assert all(allowed)
    assert not next_one.allowed and next_one.limit == "daily"
    assert next_one.wait_seconds == pytest.approx(86400 - 1000 * 60)
    assert _reserve(scope, only, T0 + 86400).allowed


def test_global_cap_counts_every_tenant(scope, settings):
    settings.OUTBOUND_GLOBAL_PER_MINUTE = 3
    now = T0 * 3000  # after anything real: the real entries leave the window
    redis_client().delete("limits:out:global")
    try:
        tenants = [
            limits_reserve(
                schema=f"t_{i}", session_id=i, recipient=CUSTOMER, limits=NO_LIMITS, now=now
            )
            for i in range(4)
        ]
    finally:
        redis_client().delete("limits:out:global")

    assert [decision.allowed for decision in tenants] == [True, True, True, False]
    assert tenants[3].limit == "global"


def test_limits_switched_off_let_everything_through(scope):
    off = OutboundLimits(per_tenant_per_minute=1, per_recipient_per_minute=1, enabled=False)

    assert all(_reserve(scope, off, T0).allowed for _ in range(20))


def test_a_refused_send_leaves_no_trace_in_any_limit(scope):
    only = OutboundLimits(
        **{**NO_LIMITS.__dict__, "per_recipient_per_minute": 1, "per_tenant_per_minute": 2}
    )
    assert _reserve(scope, only, T0).allowed
    for _ in range(5):
        assert not _reserve(scope, only, T0 + 1).allowed  # the recipient limit refuses

    # the tenant limit counted only the one send that went
    assert _reserve(scope, only, T0 + 2, recipient=OTHER_CUSTOMER).allowed


def test_concurrent_reservations_never_overshoot_a_limit(scope):
    only = OutboundLimits(**{**NO_LIMITS.__dict__, "per_recipient_per_minute": 5})
    start = threading.Barrier(20)

    def reserve(_):
        start.wait()
        return _reserve(scope, only, T0).allowed

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(reserve, range(20)))

    assert results.count(True) == 5


# --- message_send: validation and bookkeeping -----------------------------------------


def _sandbox(tenant, *, profile="instant", name=None, connected=False) -> WhatsAppSession:
    session = session_create(
        tenant=tenant,
        name=name or f"Sandbox {uuid.uuid4().hex[:6]}",
        provider="sandbox",
        humanization_profile=profile,
    )
    if connected:
        WhatsAppSession.objects.filter(pk=session.pk).update(
            device_jid=f"97250{uuid.uuid4().int % 10**7:07d}@sandbox",
            desired_state=DesiredState.RUNNING,
        )
    return WhatsAppSession.objects.select_related("tenant").get(pk=session.pk)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "hologram", "text": "Hi"}, "kind"),
        ({"text": "   "}, "text"),
        ({"text": "x" * 4097}, "text"),
        ({"to": "not a number", "text": "Hi"}, "to"),
        ({"kind": "image", "text": "The menu"}, "media_url"),
        ({"kind": "image", "media_url": "ftp://example.com/menu.png"}, "media_url"),
        ({"text": "Hi", "media_url": "https://example.com/menu.png"}, "media_url"),
        ({"kind": "location", "location": {"latitude": 200, "longitude": 0}}, "location"),
        ({"kind": "contact", "contact": {"vcard": "BEGIN:VCARD"}}, "contact"),
        ({"kind": "reaction", "reaction": {"emoji": "👍"}}, "reaction"),
        ({"template_sid": "HX" + "0" * 32}, "template_sid"),
        ({"text": "Hi", "idempotency_key": "k" * 101}, "idempotency_key"),
    ],
)
def test_an_invalid_message_is_refused_by_field_and_nothing_is_stored(make_tenant, fields, field):
    # Given a tenant with a sandbox session
    tenant = make_tenant()
    session = _sandbox(tenant)

    # When it is asked to send something invalid
    with pytest.raises(ValidationError) as refused:
        _send(session, **fields)

    # Then the problem is named by field, and nothing was written
    assert field in refused.value.message_dict, refused.value.message_dict
    with schema_context(tenant.schema_name):
        assert not Message.objects.exists() and not Contact.objects.exists()


def test_twilio_sessions_refuse_what_twilio_cannot_send(make_tenant, twilio_standin):
    tenant = make_tenant()
    sid, token = twilio_standin.add_account()
    session = session_create(
        tenant=tenant,
        name="Twilio",
        provider="twilio",
        twilio_account_sid=sid,
        twilio_auth_token=token,
        twilio_from_number=_number(),
    )

    with pytest.raises(ValidationError) as refused:
        _send(session, kind="contact", contact={"display_name": "Dana"})

    assert "kind" in refused.value.message_dict


def test_a_session_of_another_tenant_cannot_be_used(make_tenant):
    # Given two tenants, the first with a session
    first, second = make_tenant(), make_tenant()
    session = _sandbox(first)

    # When the second tenant tries to send with it
    with schema_context(second.schema_name), pytest.raises(ValidationError) as refused:
        message_send(session=session, to=CUSTOMER, text="Hi")

    # Then it is refused, and the first tenant's data is untouched
    assert "session" in refused.value.message_dict
    with schema_context(first.schema_name):
        assert not Message.objects.exists()


def test_send_stores_a_queued_message_and_hands_it_over_only_after_commit(make_tenant):
    # Given a sandbox session (its sends go to the runner's outbox) and a dashboard
    tenant = make_tenant()
    session = _sandbox(tenant)
    listener = GroupListener(tenant)
    stream = f"outbox:session:{session.pk}"

    # When a message is sent inside a transaction
    with schema_context(tenant.schema_name), transaction.atomic():
        message = message_send(session=session, to="050-123-4567", text="Table for two?")
        # nothing has left the database yet
        assert redis_client().xlen(stream) == 0

    # Then it is queued, to the normalised number, in a new conversation
    assert message.status == Message.Status.QUEUED and message.direction == "out"
    assert message.conversation.contact.phone == CUSTOMER
    assert message.idempotency_key
    # and after commit it is in the session's outbox, with its ref (the first hand-off),
    # and announced
    entries = redis_client().xrange(stream)
    assert len(entries) == 1
    assert json.loads(entries[0][1]["ref"]) == {
        "schema": tenant.schema_name,
        "message_id": message.pk,
        "hand": 1,
    }
    assert listener.statuses_of(message) == [("message.new", "queued")]


def test_a_rolled_back_send_sends_nothing(make_tenant):
    tenant = make_tenant()
    session = _sandbox(tenant)

    with schema_context(tenant.schema_name):
        try:
            with transaction.atomic():
                message_send(session=session, to=CUSTOMER, text="Never mind")
                raise RuntimeError("the caller's change failed")
        except RuntimeError:
            pass
        assert not Message.objects.exists()
    assert redis_client().xlen(f"outbox:session:{session.pk}") == 0


# --- Twilio, through a real Celery worker and the real SDK ----------------------------


@pytest.fixture
def twilio(make_tenant, twilio_standin, celery_worker):
    """A tenant with a Twilio session whose account the stand-in knows."""
    tenant = make_tenant()
    sid, token = twilio_standin.add_account()
    session = session_create(
        tenant=tenant,
        name="Twilio",
        provider="twilio",
        twilio_account_sid=sid,
        twilio_auth_token=token,
        twilio_from_number=_number(),
    )
    session = WhatsAppSession.objects.select_related("tenant").get(pk=session.pk)

    def requests():
        return [r for r in twilio_standin.requests_to(MESSAGES_PATH) if sid in r.path]

    def created():
        return [m for m in twilio_standin.messages if m["account_sid"] == sid]

    return SimpleNamespace(
        tenant=tenant,
        schema=tenant.schema_name,
        session=session,
        standin=twilio_standin,
        token=token,
        requests=requests,
        created=created,
    )


def test_a_twilio_send_reaches_twilio_through_the_real_sdk_and_is_sent(twilio):
    # Given a dashboard listening
    listener = GroupListener(twilio.tenant)

    # When a message is sent
    message = _send(twilio.session, text="Your order #12 is on its way")

    # Then a worker posted it to Twilio's Messages API with the session's numbers
    sent = _wait_status(message, twilio.schema, "sent")
    (request,) = twilio.requests()
    assert request.field("From") == f"whatsapp:{twilio.session.twilio_from_number}"
    assert request.field("To") == f"whatsapp:{CUSTOMER}"
    assert request.field("Body") == "Your order #12 is on its way"
    assert request.header("User-Agent").startswith("twilio-python/")
    assert request.header(IDEMPOTENCY_HEADER) == message.idempotency_key
    # and the message holds Twilio's SID, one attempt, and when it was sent
    assert sent.provider_message_id == twilio.created()[0]["sid"]
    assert sent.attempts == 1 and sent.sent_at is not None and not sent.dead_letter
    # and the dashboards saw it queued, then sent
    wait_until(lambda: len(listener.statuses_of(message)) >= 2, timeout=10, what="the two events")
    assert listener.statuses_of(message) == [("message.new", "queued"), ("message.status", "sent")]


def test_a_send_failing_twice_with_500_is_sent_once_after_two_retries(twilio):
    # Given Twilio answers 500 to the next two requests
    twilio.standin.fail_next(2, status=500)

    # When a message is sent
    message = _send(twilio.session, text="Your table is ready")

    # Then it is sent after two retries, and Twilio created exactly one message
    sent = _wait_status(message, twilio.schema, "sent", "failed")
    assert sent.status == "sent"
    assert sent.attempts == 3
    assert len(twilio.requests()) == 3 and len(twilio.created()) == 1
    # every try carried the same idempotency token
    assert {r.header(IDEMPOTENCY_HEADER) for r in twilio.requests()} == {message.idempotency_key}
    assert sent.last_error == ""


def test_a_send_failing_every_time_is_a_dead_letter_after_the_last_retry(twilio):
    # Given Twilio answers 503 to every try (the tests' retry delays are 0.2 s to 3.2 s)
    twilio.standin.fail_next(6, status=503)

    # When a message is sent
    message = _send(twilio.session, text="Your receipt")

    # Then it was tried once and retried five times, and is kept as a dead letter
    failed = _wait_status(message, twilio.schema, "failed", "sent", timeout=60)
    assert failed.status == "failed" and failed.dead_letter
    assert failed.attempts == 6 and len(twilio.requests()) == 6
    assert failed.last_error.startswith("Gave up after 6 attempts")
    assert twilio.created() == []


def test_twilios_retry_after_decides_when_a_rate_limited_send_is_tried_again(twilio):
    # Given Twilio rate limits the next request and asks for one second
    twilio.standin.fail_next(1, status=429, code=20429, retry_after=1)

    # When a message is sent
    message = _send(twilio.session, text="Your order is ready")

    # Then it is sent on the second try, no sooner than Twilio asked (not 0.2 s later)
    sent = _wait_status(message, twilio.schema, "sent")
    assert sent.attempts == 2 and len(twilio.created()) == 1
    assert (sent.sent_at - sent.created_at).total_seconds() >= 1.0


def test_a_permanent_failure_is_a_dead_letter_at_once_and_can_be_retried(twilio):
    # Given Twilio refuses the recipient (21211, no retry can help)
    twilio.standin.fail_next(1, status=400, code=21211)

    # When a message is sent
    message = _send(twilio.session, text="Welcome!")

    # Then it fails after one attempt, kept as a dead letter with Twilio's reason
    failed = _wait_status(message, twilio.schema, "failed", "sent")
    assert failed.status == "failed" and failed.dead_letter and failed.attempts == 1
    assert failed.error_code == "21211"
    assert "not a valid phone number" in failed.last_error
    assert twilio.token not in failed.last_error
    with schema_context(twilio.schema):
        assert [m.pk for m in message_dead_letters()] == [message.pk]

    # And when it is retried, it goes out, as the same message
    with schema_context(twilio.schema):
        message_retry(message=failed)
    sent = _wait_status(message, twilio.schema, "sent")
    assert sent.attempts == 1 and not sent.dead_letter and sent.last_error == ""
    assert len(twilio.requests()) == 2 and len(twilio.created()) == 1
    assert {r.header(IDEMPOTENCY_HEADER) for r in twilio.requests()} == {message.idempotency_key}
    with schema_context(twilio.schema):
        assert not message_dead_letters().exists()


def test_only_a_dead_letter_can_be_retried(twilio):
    message = _send(twilio.session, text="Hello")
    _wait_status(message, twilio.schema, "sent")

    with schema_context(twilio.schema), pytest.raises(ValidationError):
        message_retry(message=message)


def test_the_same_idempotency_key_returns_the_first_message_and_sends_once(twilio):
    # Given eight concurrent calls with one idempotency key
    start = threading.Barrier(8)

    def call(_):
        try:
            start.wait()
            return _send(twilio.session, text="Order 42 confirmed", idempotency_key="order-42").pk
        finally:
            connection.close()

    # When they all send
    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(call, range(8)))

    # Then they all got the same message, and it went out once
    assert len(ids) == 1
    message = _wait_status(Message(pk=ids.pop()), twilio.schema, "sent")
    # and a later repeat still returns it without sending again
    again = _send(twilio.session, text="Order 42 confirmed", idempotency_key="order-42")
    assert again.pk == message.pk and again.status == "sent"
    with schema_context(twilio.schema):
        assert Message.objects.filter(direction="out").count() == 1
    assert len(twilio.requests()) == 1


def test_a_limited_twilio_message_waits_and_is_sent_later(twilio):
    # Given one message in a row per recipient, then a one-second cool-down
    _settings(twilio.tenant, outbound_burst=1, outbound_burst_cooldown_seconds=1)

    # When two messages go to one customer at once
    first = _send(twilio.session, text="Your order is confirmed")
    second = _send(twilio.session, text="It will be ready at 19:30")

    # Then both are sent -- neither dropped -- one a cool-down after the other, and
    # waiting did not count as an attempt
    first = _wait_status(first, twilio.schema, "sent")
    second = _wait_status(second, twilio.schema, "sent")
    assert first.attempts == 1 and second.attempts == 1
    assert abs((second.sent_at - first.sent_at).total_seconds()) >= 0.5
    assert len(twilio.created()) == 2


def test_the_same_text_to_the_same_recipient_within_the_window_is_suppressed(twilio):
    # Given a text that went to a customer
    first = _send(twilio.session, text="Your table is ready")
    _wait_status(first, twilio.schema, "sent")

    # When the same text is sent to them again, within five minutes
    again = _send(twilio.session, text="Your table is ready")
    # while a different text, or the same to someone else, is fine
    other_text = _send(twilio.session, text="Your table is ready!")
    other_customer = _send(twilio.session, to=OTHER_CUSTOMER, text="Your table is ready")

    # Then the repeat is recorded as suppressed, with why, and never sent
    assert again.status == "suppressed" and "duplicate" in again.last_error
    assert again.attempts == 0 and again.provider_message_id == ""
    _wait_status(other_text, twilio.schema, "sent")
    _wait_status(other_customer, twilio.schema, "sent")
    assert sorted(r.field("Body") for r in twilio.requests()) == [
        "Your table is ready",
        "Your table is ready",
        "Your table is ready!",
    ]
    assert [r.field("To") for r in twilio.requests()].count(f"whatsapp:{CUSTOMER}") == 2


def test_the_same_text_goes_again_when_the_recipient_wrote_in_between(make_tenant):
    tenant = make_tenant()
    session = _sandbox(tenant)
    first = _send(session, text="Our menu: pizza, salad")
    with schema_context(tenant.schema_name):
        # Given the customer wrote after the first copy (asking for the menu again)
        Message.objects.create(
            conversation=first.conversation,
            session_id=session.pk,
            direction=Message.Direction.INBOUND,
            status=Message.Status.RECEIVED,
            text="menu",
            provider_message_id=f"in-{uuid.uuid4().hex}",
        )
    # When the same text is sent again, it is queued, not suppressed
    second = _send(session, text="Our menu: pizza, salad")
    assert second.status == "queued" and second.last_error == ""
    # and a third, with no word from them since the second, is a duplicate again
    third = _send(session, text="Our menu: pizza, salad")
    assert third.status == "suppressed" and "duplicate" in third.last_error


def test_an_opted_out_contact_gets_nothing(twilio):
    # Given a customer who wrote STOP
    with schema_context(twilio.schema):
        Contact.objects.create(phone=CUSTOMER, opted_out=True, opted_out_at=timezone.now())

    # When the business sends them a message
    message = _send(twilio.session, text="Today's specials")

    # Then it is stored as suppressed, because they opted out
    assert message.status == "suppressed" and message.last_error == "opted out"

    # And a customer who opts out after a message was queued does not get it either
    with schema_context(twilio.schema), transaction.atomic():
        queued = message_send(session=twilio.session, to=OTHER_CUSTOMER, text="Specials")
        Contact.objects.filter(phone=OTHER_CUSTOMER).update(opted_out=True)
    suppressed = _wait_status(queued, twilio.schema, "suppressed", "sent")
    assert suppressed.status == "suppressed" and suppressed.last_error == "opted out"
    assert twilio.requests() == []


# --- live sessions, through real runner processes ---------------------------------------


# --- Twilio: a send accepted while nobody heard the answer is never sent again ---------


@pytest.fixture
def twilio_alone(make_tenant, twilio_standin):
    """A Twilio session, and queued messages stored without a hand-off: the test itself
    delivers them (no worker races it), as a worker's task would."""
    tenant = make_tenant()
    sid, token = twilio_standin.add_account()
    session = session_create(
        tenant=tenant,
        name="Twilio",
        provider="twilio",
        twilio_account_sid=sid,
        twilio_auth_token=token,
        twilio_from_number=_number(),
    )
    session = WhatsAppSession.objects.select_related("tenant").get(pk=session.pk)
    _settings(tenant, limits_enabled=False)

    def queued(text: str, to: str = CUSTOMER) -> Message:
        with schema_context(tenant.schema_name):
            contact, _ = Contact.objects.get_or_create(phone=to)
            conversation, _ = Conversation.objects.get_or_create(
                contact=contact, session_id=session.pk
            )
            return Message.objects.create(
                conversation=conversation,
                session_id=session.pk,
                direction=Message.Direction.OUTBOUND,
                status=Message.Status.QUEUED,
                text=text,
                idempotency_key=f"msg-{uuid.uuid4().hex}",
                next_attempt_at=timezone.now(),
            )

    def deliver(message: Message):
        with schema_context(tenant.schema_name):
            return deliver_service(message_id=message.pk)

    def posts():
        return [
            r
            for r in twilio_standin.requests_to(MESSAGES_PATH)
            if sid in r.path and r.method == "POST"
        ]

    def lists():
        return [
            r
            for r in twilio_standin.requests_to(MESSAGES_PATH)
            if sid in r.path and r.method == "GET"
        ]

    return SimpleNamespace(
        tenant=tenant,
        schema=tenant.schema_name,
        session=session,
        standin=twilio_standin,
        queued=queued,
        deliver=deliver,
        posts=posts,
        lists=lists,
    )


class _CommitLost(Exception):
    pass


def _deliver_and_lose_the_commit(twilio_alone, message: Message) -> None:
    """Deliver, then roll back everything the delivery wrote to PostgreSQL: what a
    worker killed after Twilio's answer (or a database gone before the commit) leaves."""
    with pytest.raises(_CommitLost), schema_context(twilio_alone.schema), transaction.atomic():
        deliver_service(message_id=message.pk)
        raise _CommitLost


def test_a_send_twilio_accepted_but_never_recorded_is_recorded_not_sent_again(twilio_alone):
    # Given a send Twilio accepted whose outcome never reached the database
    message = twilio_alone.queued("Your order #7 is ready")
    _deliver_and_lose_the_commit(twilio_alone, message)
    assert len(twilio_alone.posts()) == 1
    assert _reload(message, twilio_alone.schema).status == "queued"

    # When the message is delivered again (a redelivered task, the sweep)
    assert twilio_alone.deliver(message) is None

    # Then Twilio was asked, not given it a second time, and its SID is recorded
    assert len(twilio_alone.posts()) == 1
    (question,) = twilio_alone.lists()
    assert question.query["To"] == [f"whatsapp:{CUSTOMER}"]
    assert question.query["From"] == [f"whatsapp:{twilio_alone.session.twilio_from_number}"]
    assert "DateSent>" in question.query
    sent = _reload(message, twilio_alone.schema)
    created = [m for m in twilio_alone.standin.messages if m["body"] == "Your order #7 is ready"]
    assert sent.status == "sent" and sent.provider_message_id == created[0]["sid"]
    assert sent.attempts == 1
    # and a third delivery does nothing at all
    assert twilio_alone.deliver(message) is None
    assert len(twilio_alone.posts()) == 1 and len(twilio_alone.lists()) == 1


def test_an_unrecorded_attempt_twilio_never_accepted_is_sent_after_asking(twilio_alone):
    # Given an attempt that died before Twilio accepted anything (Twilio refused it)
    message = twilio_alone.queued("Table for two at eight")
    twilio_alone.standin.fail_next(1, status=500)
    _deliver_and_lose_the_commit(twilio_alone, message)
    assert len(twilio_alone.posts()) == 1 and not twilio_alone.standin.messages

    # When it is delivered again
    assert twilio_alone.deliver(message) is None

    # Then Twilio was asked, had nothing, and it was sent once
    assert len(twilio_alone.lists()) == 1 and len(twilio_alone.posts()) == 2
    sent = _reload(message, twilio_alone.schema)
    assert sent.status == "sent"
    assert sent.provider_message_id == twilio_alone.standin.messages[0]["sid"]


def test_an_identical_message_recorded_earlier_is_not_taken_for_the_unrecorded_one(twilio_alone):
    # Given the same text went to the same customer a moment ago, and was recorded
    earlier = twilio_alone.queued("See you soon")
    assert twilio_alone.deliver(earlier) is None
    assert _reload(earlier, twilio_alone.schema).status == "sent"
    # and a second identical message's attempt failed before Twilio had it, unrecorded
    message = twilio_alone.queued("See you soon")
    twilio_alone.standin.fail_next(1, status=503)
    _deliver_and_lose_the_commit(twilio_alone, message)

    # When it is delivered again
    twilio_alone.deliver(message)

    # Then Twilio listed the earlier one, which is not taken: the second is sent
    assert len(twilio_alone.lists()) == 1 and len(twilio_alone.posts()) == 3
    sent = _reload(message, twilio_alone.schema)
    assert sent.status == "sent"
    assert sent.provider_message_id != _reload(earlier, twilio_alone.schema).provider_message_id
    assert len(twilio_alone.standin.messages) == 2


def test_an_attempt_whose_failure_was_recorded_does_not_ask_twilio(twilio_alone):
    # Given a first attempt refused by Twilio, and recorded as a retry
    message = twilio_alone.queued("Your order is on its way")
    twilio_alone.standin.fail_next(1, status=500)
    assert twilio_alone.deliver(message) > 0
    assert _reload(message, twilio_alone.schema).attempts == 1

    # When the retry comes
    assert twilio_alone.deliver(message) is None

    # Then it is simply sent: nothing to ask
    assert twilio_alone.lists() == []
    assert _reload(message, twilio_alone.schema).status == "sent"


def test_when_twilio_cannot_be_asked_the_unrecorded_send_waits_and_is_not_sent(twilio_alone):
    message = twilio_alone.queued("Order #9 confirmed")
    _deliver_and_lose_the_commit(twilio_alone, message)
    twilio_alone.standin.fail_next(1, status=503)  # the list request fails

    again_in = twilio_alone.deliver(message)

    assert again_in is not None and again_in > 0
    assert len(twilio_alone.posts()) == 1
    assert _reload(message, twilio_alone.schema).status == "queued"
    # and the next delivery, able to ask, records the accepted send
    assert twilio_alone.deliver(message) is None
    assert len(twilio_alone.posts()) == 1
    assert _reload(message, twilio_alone.schema).status == "sent"


def test_the_standin_lists_messages_by_to_from_and_date_in_pages_like_twilio(twilio_standin):
    from twilio.rest import Client

    from sessions_app.providers.twilio_provider import TwilioApiHttpClient

    sid, token = twilio_standin.add_account()
    client = Client(
        sid, token, http_client=TwilioApiHttpClient(base_url=twilio_standin.base_url, timeout=5)
    )
    start = timezone.now().replace(microsecond=0)
    for number in range(7):
        client.messages.create(
            to="whatsapp:+15550001", from_="whatsapp:+15550009", body=f"{number}"
        )
    client.messages.create(to="whatsapp:+15550002", from_="whatsapp:+15550009", body="other")

    listed = client.messages.list(to="whatsapp:+15550001", date_sent_after=start, page_size=3)

    assert [m.body for m in listed] == ["6", "5", "4", "3", "2", "1", "0"]  # newest first
    pages = [r for r in twilio_standin.requests if r.method == "GET"]
    assert len(pages) == 3  # 3 + 3 + 1
    assert client.messages.list(from_="whatsapp:+15550009", to="whatsapp:+15550002")[0].body == (
        "other"
    )
    later = start + timezone.timedelta(days=1)
    assert client.messages.list(to="whatsapp:+15550001", date_sent_after=later) == []
    assert len(client.messages.list(date_sent=start)) == 8


@pytest.fixture
def start_runner(committed_db, process_logs, monkeypatch):
    """Start real `manage.py run_sessions` processes; stopped at the end."""
    for name, value in RUNNER_ENV.items():
        monkeypatch.setenv(name, value)
    runners: list[ChildProcess] = []

    def start() -> ChildProcess:
        name = f"runner-{uuid.uuid4().hex[:6]}"
        child = ChildProcess(
            name, [sys.executable, "manage.py", "run_sessions", "--name", name], process_logs
        )
        runners.append(child)
        return child

    yield start
    for child in runners:
        child.stop()
    WhatsAppSession.objects.update(desired_state=DesiredState.STOPPED)


def _connected(session, runner) -> None:
    def connected():
        session.refresh_from_db()
        return session.status == Status.CONNECTED

    wait_until(connected, timeout=30, what="the sandbox session connected", child=runner)


def _customer_wrote(session, phone: str, text: str) -> SandboxMessage:
    """The customer's message, already received and stored (unread)."""
    row = SandboxMessage.objects.create(
        session=session,
        direction=SandboxMessage.Direction.TO_BUSINESS,
        phone=phone,
        provider_message_id="SBXIN" + uuid.uuid4().hex[:18].upper(),
        text=text,
        received_at=timezone.now(),
    )
    with schema_context(session.tenant.schema_name):
        contact, _ = Contact.objects.get_or_create(phone=phone)
        conversation, _ = Conversation.objects.get_or_create(contact=contact, session_id=session.pk)
        Message.objects.create(
            conversation=conversation,
            session_id=session.pk,
            direction=Message.Direction.INBOUND,
            text=text,
            provider_message_id=row.provider_message_id,
            status=Message.Status.RECEIVED,
        )
    return row


def test_a_sandbox_send_is_humanised_by_a_runner_and_receipts_move_it_to_read(
    make_tenant, start_runner
):
    # Given a connected sandbox session with the `fast` profile, and a customer who wrote
    tenant = make_tenant()
    session = _sandbox(tenant, profile="fast", connected=True)
    incoming = _customer_wrote(session, CUSTOMER, "Are you open tonight?")
    listener = GroupListener(tenant)
    runner = start_runner()
    _connected(session, runner)

    # When the business answers
    message = _send(session, text="Yes, until 23:00. See you!")

    # Then the runner marks the chat read, types, sends, and the phone's receipts
    # move the message to delivered, then read
    read = _wait_status(message, tenant.schema_name, "read", child=runner)
    (row,) = SandboxMessage.objects.filter(session=session, direction="out")
    assert row.text == "Yes, until 23:00. See you!" and row.phone == CUSTOMER
    assert read.provider_message_id == row.provider_message_id
    assert read.attempts == 1
    assert read.sent_at <= read.delivered_at <= read.read_at
    incoming.refresh_from_db()
    assert incoming.read_at is not None  # the customer saw blue ticks on their question
    assert "humanised send" in runner.output()
    # typing took at least the minimum: the send left a second or more after queueing
    assert (row.created_at - read.created_at).total_seconds() >= TYPING_MIN_SECONDS
    # and every status change reached the dashboards, in order
    wait_until(lambda: len(listener.statuses_of(message)) >= 4, timeout=10, what="the events")
    assert listener.statuses_of(message) == [
        ("message.new", "queued"),
        ("message.status", "sent"),
        ("message.status", "delivered"),
        ("message.status", "read"),
    ]


def test_humanised_sends_keep_their_order_per_chat_and_do_not_hold_up_other_chats(
    make_tenant, start_runner
):
    # Given a connected `fast` session
    tenant = make_tenant()
    session = _sandbox(tenant, profile="fast", connected=True)
    runner = start_runner()
    _connected(session, runner)

    # When a long text (ten seconds or more of typing) and then a short one go to one
    # customer, and a short one to another customer
    long_text = "We have received your order and the kitchen is on it. " * 6
    long = _send(session, text=long_text)
    short = _send(session, text="Thanks!")
    elsewhere = _send(session, to=OTHER_CUSTOMER, text="Hello!")

    # Then the other customer's message goes while the first chat is still typing
    _wait_status(elsewhere, tenant.schema_name, "sent", "delivered", "read", child=runner)
    assert _reload(long, tenant.schema_name).status == "queued"
    # and the first chat gets its messages in the order they were queued
    _wait_status(short, tenant.schema_name, "sent", "delivered", "read", timeout=60, child=runner)
    texts = list(
        SandboxMessage.objects.filter(session=session, phone=CUSTOMER, direction="out")
        .order_by("created_at", "id")
        .values_list("text", flat=True)
    )
    assert texts == [long_text, "Thanks!"]


def test_a_limited_live_send_waits_in_the_outbox_and_is_sent_later(make_tenant, start_runner):
    # Given a connected session, and one message in a row per recipient then 1 s of quiet
    tenant = make_tenant()
    session = _sandbox(tenant, profile="instant", connected=True)
    _settings(tenant, outbound_burst=1, outbound_burst_cooldown_seconds=1)
    runner = start_runner()
    _connected(session, runner)

    # When two messages go to one customer at once
    first = _send(session, text="Your order is confirmed")
    second = _send(session, text="It will be ready at 19:30")

    # Then both are sent, the second a cool-down later, and waiting was not an attempt
    states = ("sent", "delivered", "read")
    first = _wait_status(first, tenant.schema_name, *states, child=runner)
    second = _wait_status(second, tenant.schema_name, *states, child=runner)
    assert first.attempts == 1 and second.attempts == 1
    assert (second.sent_at - first.sent_at).total_seconds() >= 0.5
    assert SandboxMessage.objects.filter(session=session, direction="out").count() == 2


def test_a_send_whose_runner_died_before_recording_it_is_recorded_and_not_sent_again(
    make_tenant, start_runner
):
    # Given a queued live message that a runner read and sent, and then died before
    # recording the send
    tenant = make_tenant()
    session = _sandbox(tenant, profile="instant", connected=True)
    message = _send(session, text="Your table is ready")
    (entry,) = outbox.outbox_read([session.pk], "dead-runner", block_ms=1000)
    from sessions_app.providers.sandbox import sandbox_message_id

    provider_id = sandbox_message_id(entry.idempotency_key)
    SandboxMessage.objects.create(
        session=session,
        direction="out",
        phone=CUSTOMER,
        text="Your table is ready",
        provider_message_id=provider_id,
    )
    outbox.outbox_mark_sent(entry, provider_id)

    # When the next runner takes the session
    runner = start_runner()
    _connected(session, runner)

    # Then the message is recorded as sent with the id it went out under, and it went
    # out once
    sent = _wait_status(message, tenant.schema_name, "sent", "delivered", "read", child=runner)
    assert sent.provider_message_id == provider_id
    assert SandboxMessage.objects.filter(session=session, direction="out").count() == 1
    wait_until(
        lambda: not redis_client().xlen(outbox.stream_key(session.pk)),
        timeout=10,
        what="the outbox entry dropped once recorded",
        child=runner,
    )


def test_limits_hold_a_live_send_until_the_clock_moves_on(make_tenant, monkeypatch):
    # Given a session's tenant with the default burst limit (3 in a row, 30 s of quiet),
    # and a clock the test controls
    tenant = make_tenant()
    session = _sandbox(tenant)
    now = [T0 * 2000]
    monkeypatch.setattr(limits, "clock", lambda: now[0])
    messages = [_send(session, text=f"Update {i}") for i in range(4)]

    def check(message):
        with schema_context(tenant.schema_name):
            return outbound_live_check(session_id=session.pk, message_id=message.pk, attempts=0)

    # When the runner asks before each send
    answers = [check(message) for message in messages]

    # Then three may go, the fourth waits for the cool-down
    assert [answer.wait_seconds for answer in answers[:3]] == [0, 0, 0]
    assert answers[3].wait_seconds == pytest.approx(30.0) and not answers[3].skip
    # and when the clock has moved on, it may go: it waited, it was not dropped
    now[0] += 30
    assert check(messages[3]).wait_seconds == 0
    assert _reload(messages[3], tenant.schema_name).status == "queued"
