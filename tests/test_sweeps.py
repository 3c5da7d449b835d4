"""The messages sweep (messaging/sweeps.py): hand-offs lost on purpose (the commit
happens, the after-commit hand-off does not -- as when a process dies in between), then
the sweep, with a real Celery worker and the Twilio stand-in, a real session runner for
sandbox sessions, and real PostgreSQL and Redis."""

import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from config.redis_client import redis_client
from messaging.inbound import inbound_receive
from messaging.models import Message
from messaging.outbound import message_send, outbound_live_check
from messaging.routing import inbound_message_route
from messaging.sweeps import messages_sweep
from sessions_app.models import SandboxMessage
from sessions_app.providers.base import InboundMessage
from tests.conftest import wait_until
from tests.test_outbound import (
    CUSTOMER,
    OTHER_CUSTOMER,
    GroupListener,
    _connected,
    _sandbox,
    _settings,
    _wait_status,
    start_runner,  # noqa: F401 - a fixture
    twilio,  # noqa: F401 - a fixture
)


@pytest.fixture
def no_grace(settings):
    """Hand-offs count as lost at once (the sweep's grace periods are minutes)."""
    settings.OUTBOUND_SWEEP_GRACE_SECONDS = 0
    settings.INBOUND_SWEEP_GRACE_SECONDS = 0
    return settings


def _later():
    return timezone.now() + timedelta(seconds=1)


def _lost_send(session, **fields) -> Message:
    """message_send whose transaction commits, but whose after-commit hand-off (and
    events) never happen."""
    with schema_context(session.tenant.schema_name):
        with transaction.atomic():
            message = message_send(session=session, **{"to": CUSTOMER, **fields})
            connection.run_on_commit.clear()
        return message


def _inbound(session, text="Hello") -> InboundMessage:
    return InboundMessage(
        provider_message_id="SBXIN" + uuid.uuid4().hex[:18].upper(),
        chat=OTHER_CUSTOMER,
        sender=OTHER_CUSTOMER,
        kind="text",
        text=text,
        push_name="Dana",
        timestamp=timezone.now(),
    )


def _lost_inbound(session, text="Hello") -> Message:
    with transaction.atomic():
        result = inbound_receive(session=session, inbound=_inbound(session, text))
        connection.run_on_commit.clear()
    return result.message


# --- outbound --------------------------------------------------------------------------


def _send_in(twilio, **fields) -> Message:  # noqa: F811
    with schema_context(twilio.schema):
        return message_send(session=twilio.session, **{"to": CUSTOMER, **fields})


def test_a_lost_twilio_hand_off_is_sent_exactly_once_by_the_sweep(twilio, no_grace):  # noqa: F811
    # Given a queued message whose hand-off to Celery was lost
    message = _lost_send(twilio.session, text="Your order is ready")
    assert _wait_status(message, twilio.schema, "queued").status == "queued"

    # When the sweep runs -- three times, the last two after it was sent
    first = messages_sweep(now=_later())
    sent = _wait_status(message, twilio.schema, "sent", "failed")
    again = [messages_sweep(now=_later()) for _ in range(2)]

    # Then it was handed again once, and reached Twilio exactly once
    assert first.outbound == 1 and [r.outbound for r in again] == [0, 0]
    assert sent.status == "sent" and sent.hand_offs == 2 and sent.attempts == 1
    assert len(twilio.requests()) == 1 and len(twilio.created()) == 1


def test_a_hand_off_that_was_not_lost_after_all_still_sends_once(twilio, no_grace):  # noqa: F811
    # Given messages handed to Celery normally
    messages = [_send_in(twilio, to=f"+97250{n:07d}", text=f"Order {n}") for n in range(1, 6)]

    # When the sweep hands them again right away (as if their hand-off had been lost)
    messages_sweep(now=_later())

    # Then each went out once however the two hand-offs raced
    for message in messages:
        assert _wait_status(message, twilio.schema, "sent").attempts == 1
    assert len(twilio.requests()) == 5 and len(twilio.created()) == 5


def test_a_message_waiting_on_a_limit_is_never_handed_again(twilio, no_grace):  # noqa: F811
    # Given one message in a row per recipient, then a five-minute cool-down
    _settings(twilio.tenant, outbound_burst=1, outbound_burst_cooldown_seconds=300)
    first = _send_in(twilio, text="Your order is confirmed")
    second = _send_in(twilio, text="Your order is on its way")
    _wait_status(first, twilio.schema, "sent")

    # When the second one is waiting on the limit
    def waiting():
        current = _wait_status(second, twilio.schema, "queued")
        return current if current.next_attempt_at > timezone.now() else None

    waiting_message = wait_until(waiting, timeout=30, what="the limit's wait recorded")
    result = messages_sweep(now=_later())

    # Then the sweep leaves it alone: still queued, one hand-off, nothing more sent
    assert result.outbound == 0
    current = _wait_status(second, twilio.schema, "queued")
    assert current.hand_offs == 1 and current.next_attempt_at == waiting_message.next_attempt_at
    assert len(twilio.requests()) == 1


def test_a_message_waiting_on_a_retry_is_never_handed_again(twilio, no_grace):  # noqa: F811
    # Given a queued message whose next retry is due in a minute
    message = _lost_send(twilio.session, text="Your receipt")
    with schema_context(twilio.schema):
        Message.objects.filter(pk=message.pk).update(
            attempts=1, next_attempt_at=timezone.now() + timedelta(minutes=1)
        )

    # When the sweep runs, then it is not handed again, until its due time has passed
    assert messages_sweep(now=_later()).outbound == 0
    assert messages_sweep(now=timezone.now() + timedelta(minutes=2)).outbound == 1
    assert _wait_status(message, twilio.schema, "sent").status == "sent"
    assert len(twilio.requests()) == 1


def test_a_live_outbox_entry_of_an_older_hand_off_is_skipped(make_tenant):
    # Given a queued sandbox message handed to the outbox twice (hand-offs 1 and 2)
    tenant = make_tenant()
    session = _sandbox(tenant)
    message = _lost_send(session, text="Hi")
    with schema_context(tenant.schema_name):
        Message.objects.filter(pk=message.pk).update(hand_offs=2)

        # Then the runner's check skips the first entry and clears the second
        old = outbound_live_check(session_id=session.pk, message_id=message.pk, attempts=0, hand=1)
        new = outbound_live_check(session_id=session.pk, message_id=message.pk, attempts=0, hand=2)
    assert old.skip is True
    assert new.skip is False and new.wait_seconds == 0


def test_a_lost_live_hand_off_is_sent_once_by_the_runner_after_the_sweep(
    make_tenant,
    start_runner,  # noqa: F811
    no_grace,
):
    # Given a connected sandbox session whose message never reached the outbox
    tenant = make_tenant()
    session = _sandbox(tenant, connected=True)
    runner = start_runner()
    _connected(session, runner)
    message = _lost_send(session, text="Your table is ready")
    assert redis_client().xlen(f"outbox:session:{session.pk}") == 0

    # When the sweep runs (twice), with the runner holding the session
    first = messages_sweep(now=_later())
    sent = _wait_status(message, tenant.schema_name, "sent", "failed", child=runner)
    second = messages_sweep(now=_later())

    # Then the runner sent it exactly once
    assert (first.outbound, second.outbound) == (1, 0)
    assert sent.status == "sent"
    rows = SandboxMessage.objects.filter(session=session, direction="out")
    assert [row.text for row in rows] == ["Your table is ready"]


def test_a_live_message_of_a_session_nobody_runs_waits_for_a_runner(make_tenant, no_grace):
    tenant = make_tenant()
    session = _sandbox(tenant)
    message = _lost_send(session, text="Hi")

    assert messages_sweep(now=_later()).outbound == 0
    assert _wait_status(message, tenant.schema_name, "queued").hand_offs == 1


# --- inbound ---------------------------------------------------------------------------


def test_an_unrouted_inbound_message_is_routed_once_by_the_sweep(
    make_tenant,
    celery_worker,
    no_grace,
):
    # Given an inbound message stored while its routing hand-off was lost
    tenant = make_tenant()
    session = _sandbox(tenant)
    listener = GroupListener(tenant)
    message = _lost_inbound(session, "Are you open?")
    with schema_context(tenant.schema_name):
        assert Message.objects.get(pk=message.pk).routed_at is None

    # When the sweep runs, a worker routes it (and announces it)
    assert messages_sweep(now=_later()).inbound == 1

    def routed():
        with schema_context(tenant.schema_name):
            return Message.objects.get(pk=message.pk).routed_at

    routed_at = wait_until(routed, timeout=30, what="the message routed")

    # And further sweeps route it no more
    assert [messages_sweep(now=_later()).inbound for _ in range(2)] == [0, 0]
    assert routed() == routed_at
    new = [
        e
        for e in listener.drain()
        if e["type"] == "message.new" and e["message"]["id"] == str(message.public_id)
    ]
    assert len(new) == 1


def test_routing_the_same_message_twice_routes_it_once(make_tenant):
    tenant = make_tenant()
    session = _sandbox(tenant)  # silent customer mode: routing stores, sends nothing
    message = _lost_inbound(session)

    with schema_context(tenant.schema_name):
        assert inbound_message_route(message_id=message.pk) == "silent"
        assert inbound_message_route(message_id=message.pk) is None
        assert Message.objects.get(pk=message.pk).routed_at is not None


def test_an_old_unrouted_message_is_left_alone(make_tenant, no_grace):
    # A message stored two days ago and never routed gets no answer now
    tenant = make_tenant()
    session = _sandbox(tenant)
    message = _lost_inbound(session)
    with schema_context(tenant.schema_name):
        Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(days=2))
    assert messages_sweep(now=_later()).inbound == 0


def test_the_sweep_runs_in_every_tenant_schema(make_tenant, no_grace):
    first, second = make_tenant(), make_tenant()
    for tenant in (first, second):
        _lost_inbound(_sandbox(tenant))

    result = messages_sweep(now=_later())

    assert result.inbound == 2
