"""The messages sweep: beat runs it every MESSAGES_SWEEP_SECONDS, in every tenant schema.

Every message is handed to whoever acts on it after its commit: an outbound one to its
sender (a Celery task for Twilio, the owning runner's outbox for neonize and sandbox),
an inbound one to the routing task. A hand-off can be lost -- Redis down at that moment,
a process killed between the commit and the hand-off. The row is the truth, so the
sweep finds them and hands them again:

- an outbound message still `queued` whose `next_attempt_at` (when its sender was due to
  look at it: now at creation, later for a limit's wait or a retry's backoff) is more
  than OUTBOUND_SWEEP_GRACE_SECONDS in the past. A message waiting on a limit or a retry
  is never touched. A re-hand is harmless even when the first hand-off was not lost
  after all: a Twilio delivery sends only a message still queued, under its row lock;
  for live sessions the hand-off's number travels with the outbox entry
  (`Message.hand_offs`) and the runner skips an entry of an older hand-off, on top of
  its done markers per idempotency key. A live session's messages are handed again
  only while a runner holds the session (else they wait in its outbox for it), and
  Twilio messages are not while the Celery queue is long (they are only waiting);
- an inbound message never routed (`routed_at` empty) stored more than
  INBOUND_SWEEP_GRACE_SECONDS ago (and less than a day: an answer a day late is worse
  than none). Routing claims the message in the transaction that routes it, so a
  message is never routed twice (messaging.routing.inbound_message_route).

Running the sweep twice, or two at once, is harmless: each message is claimed under its
row lock (SKIP LOCKED) and its `next_attempt_at` moves on when it is handed again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import get_public_schema_name, get_tenant_model, schema_context

from messaging.models import Message
from sessions_app.models import Provider

logger = logging.getLogger(__name__)

BATCH = 500
INBOUND_MAX_AGE = timedelta(days=1)
# Twilio re-hands wait while the Celery queue holds more tasks than this: the messages
# are most likely in it, waiting for a worker.
MAX_QUEUE_BACKLOG = 1000

_Status = Message.Status


@dataclass
class SweepResult:
    outbound: int = 0
    inbound: int = 0

    def add(self, other: SweepResult) -> None:
        self.outbound += other.outbound
        self.inbound += other.inbound


def _celery_backlog() -> int:
    """Tasks waiting in the default Celery queue (0 when it cannot be told)."""
    from celery import current_app

    try:
        with current_app.connection_for_read() as conn:
            queue = current_app.conf.task_default_queue
            return conn.default_channel.queue_declare(queue, passive=True).message_count
    except Exception:
        logger.warning("messages sweep: the Celery queue length is unknown", exc_info=True)
        return 0


def outbound_rehand_lost(*, now=None, backlog: int | None = None) -> int:
    """Hand again the queued outbound messages of the current tenant schema whose
    hand-off was lost. Returns how many were handed again."""
    from messaging.outbound import _failed, _hand_off_after_commit, _session
    from sessions_app.leases import lease_owner

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.OUTBOUND_SWEEP_GRACE_SECONDS)
    candidates = list(
        Message.objects.filter(
            direction=Message.Direction.OUTBOUND, status=_Status.QUEUED, next_attempt_at__lt=cutoff
        )
        .order_by("next_attempt_at", "id")
        .values_list("pk", flat=True)[:BATCH]
    )
    schema = connection.schema_name
    handed = 0
    sessions: dict = {}
    for message_id in candidates:
        with transaction.atomic():
            message = (
                Message.objects.select_for_update(of=("self",), skip_locked=True)
                .select_related("conversation__contact")
                .filter(pk=message_id, status=_Status.QUEUED, next_attempt_at__lt=cutoff)
                .first()
            )
            if message is None:
                continue  # sent, or being sent, meanwhile
            if message.session_id not in sessions:
                sessions[message.session_id] = _session(message.session_id)
            session = sessions[message.session_id]
            if session is None:
                _failed(message, error="Its session no longer exists.")
                continue
            if session.provider == Provider.TWILIO:
                if backlog is None:
                    backlog = _celery_backlog()
                if backlog > MAX_QUEUE_BACKLOG:
                    continue
            elif lease_owner(session.pk) is None:
                continue  # nobody runs the session: its outbox waits for a runner
            message.hand_offs += 1
            message.next_attempt_at = now
            message.save(update_fields=["hand_offs", "next_attempt_at"])
            _hand_off_after_commit(message, session=session, schema=schema)
            handed += 1
            logger.warning(
                "message %s was queued with no sender; handed again (hand-off %s)",
                message.pk,
                message.hand_offs,
            )
    return handed


def inbound_route_lost(*, now=None) -> int:
    """Queue routing again for the inbound messages of the current tenant schema that
    were stored but never routed. Returns how many were queued."""
    from messaging.inbound_tasks import inbound_route

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.INBOUND_SWEEP_GRACE_SECONDS)
    message_ids = list(
        Message.objects.filter(
            direction=Message.Direction.INBOUND,
            routed_at__isnull=True,
            created_at__lt=cutoff,
            created_at__gte=now - INBOUND_MAX_AGE,
        )
        .order_by("created_at", "id")
        .values_list("pk", flat=True)[:BATCH]
    )
    schema = connection.schema_name
    for message_id in message_ids:
        inbound_route.apply_async(args=[message_id], headers={"_schema_name": schema})
    if message_ids:
        logger.warning("%d inbound messages were never routed; routing queued", len(message_ids))
    return len(message_ids)


def messages_sweep_schema(*, now=None) -> SweepResult:
    """Both sweeps in the current tenant schema."""
    return SweepResult(outbound=outbound_rehand_lost(now=now), inbound=inbound_route_lost(now=now))


def messages_sweep(*, now=None) -> SweepResult:
    """Both sweeps in every tenant schema; one broken schema never stops the others."""
    schemas = (
        get_tenant_model()
        .objects.exclude(schema_name=get_public_schema_name())
        .order_by("pk")
        .values_list("schema_name", flat=True)
    )
    total = SweepResult()
    for schema in list(schemas):
        try:
            with schema_context(schema):
                total.add(messages_sweep_schema(now=now))
        except Exception:
            logger.exception("messages sweep failed in schema %s", schema)
    return total
