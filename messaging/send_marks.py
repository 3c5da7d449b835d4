"""Sends to Twilio that may have been accepted without anyone hearing the answer.

Twilio's Messages API is not idempotent: a worker killed (or whose database went away)
after Twilio accepted a message but before the worker committed `sent` leaves the
message `queued`, and its next delivery would send it a second time. So, before each
request to Twilio, `message_deliver` (messaging/outbound.py) writes an *in-flight mark*:
the attempt's number and the time of the first unconfirmed attempt. A later delivery
that finds a mark whose attempt is greater than the attempts the database recorded
knows that attempt's outcome was never recorded: it first asks Twilio (the message
list, by To, From and DateSent, through `TwilioProvider.sent_matching`) whether a
message with this body went from this sender to this recipient since the mark's time,
and if so records that SID as sent instead of sending.

Where the mark lives: Redis, not PostgreSQL. The failures it must survive are the ones
that lose the commit -- a killed worker, or PostgreSQL going away during the request --
and a mark in PostgreSQL would have to be committed in a transaction of its own before
the request, which PostgreSQL being down (the restart drill) makes impossible to rely
on, and which would give up the row lock that keeps two deliveries from sending at
once. Redis is already required for every send (the limits are reserved in it just
before), so a Redis that is down means no send at all: writing the mark fails, the task
is retried, nothing went to Twilio. A Redis restart keeps the marks (append-only file,
written at shutdown); a Redis that lost its data at the very moment a worker died would
lose the mark -- the one case left where a duplicate can happen.

A mark outlives the broker's visibility timeout (after which a dead worker's task comes
back) and the outbound sweep's grace period, with a day as the floor; it is removed once
the message's outcome is committed. An attempt whose failure was recorded (a retry)
leaves its mark behind harmlessly: its number is not greater than the recorded attempts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import RedisError

from config.redis_client import redis_client

logger = logging.getLogger(__name__)

_PREFIX = "outbound:in-flight"
MIN_TTL_SECONDS = 86400
# Twilio's clock and ours may differ a little: the question to Twilio starts this much
# before the mark's time. SIDs already recorded on other messages are never taken.
CLOCK_MARGIN_SECONDS = 120.0


@dataclass(frozen=True)
class InFlight:
    attempt: int  # the number of the attempt under way (Message.attempts once recorded)
    since: float  # epoch seconds: when the first unconfirmed attempt began


def _key(*, schema: str, message_id: int) -> str:
    return f"{_PREFIX}:{schema}:{message_id}"


def _ttl() -> int:
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}
    visibility = int(options.get("visibility_timeout", 3600) or 3600)
    grace = int(getattr(settings, "OUTBOUND_SWEEP_GRACE_SECONDS", 300) or 300)
    return max(MIN_TTL_SECONDS, 2 * visibility + grace)


def in_flight_get(*, schema: str, message_id: int) -> InFlight | None:
    """The message's mark, or None. RedisError when Redis cannot be asked (the caller's
    task is retried: without knowing, it must not send)."""
    raw = redis_client().get(_key(schema=schema, message_id=message_id))
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return InFlight(attempt=int(data["attempt"]), since=float(data["since"]))
    except (ValueError, KeyError, TypeError):
        logger.warning("message %s: unreadable in-flight mark ignored", message_id)
        return None


def in_flight_set(*, schema: str, message_id: int, attempt: int, since: float) -> None:
    """Write the mark before a request to Twilio. RedisError when it cannot be written:
    then nothing must be sent."""
    redis_client().set(
        _key(schema=schema, message_id=message_id),
        json.dumps({"attempt": attempt, "since": since}),
        ex=_ttl(),
    )


def in_flight_clear(*, schema: str, message_id: int) -> None:
    """Remove the mark once the outcome is committed (best effort: it expires anyway)."""
    try:
        redis_client().delete(_key(schema=schema, message_id=message_id))
    except RedisError:
        logger.info("message %s: in-flight mark left to expire (Redis unavailable)", message_id)
