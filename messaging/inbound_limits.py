"""Inbound limits, in Redis: per customer, per tenant and in total.

- Per customer (MessagingSettings.inbound_per_customer_per_minute, default 30): past it,
  the customer gets one notice and a pause (default 5 minutes) during which their
  messages are stored but not answered.
- Per tenant and in total: past them, webhooks answer 429 (the provider retries later)
  and live sessions store without answering.

Fixed one-minute windows. `now` is a parameter so tests control the clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings

from config.redis_client import redis_client

WINDOW_SECONDS = 60


def _window(now: float) -> int:
    return int(now // WINDOW_SECONDS)


def _count(key: str) -> int:
    pipe = redis_client().pipeline()
    pipe.incr(key)
    pipe.expire(key, WINDOW_SECONDS * 2)
    return pipe.execute()[0]


@dataclass(frozen=True)
class CustomerVerdict:
    answer: bool  # False: store it, but the bot stays quiet
    send_notice: bool  # True once, when the pause starts
    paused_for_seconds: int = 0


def inbound_customer_check(
    *, schema: str, phone: str, per_minute: int, pause_minutes: int, now: float | None = None
) -> CustomerVerdict:
    now = time.time() if now is None else now
    client = redis_client()
    pause_key = f"inpause:{schema}:{phone}"
    paused_until = client.get(pause_key)
    if paused_until and float(paused_until) > now:
        return CustomerVerdict(
            answer=False, send_notice=False, paused_for_seconds=int(float(paused_until) - now)
        )
    count = _count(f"incount:{schema}:{phone}:{_window(now)}")
    if count <= per_minute:
        return CustomerVerdict(answer=True, send_notice=False)
    until = now + pause_minutes * 60
    # SET NX: only the message that starts the pause sends the notice.
    started = client.set(pause_key, until, nx=True, ex=pause_minutes * 60 + WINDOW_SECONDS)
    if not started:  # a pause from an earlier window that has ended: start a new one
        stored = float(client.get(pause_key) or 0)
        if stored <= now:
            client.set(pause_key, until, ex=pause_minutes * 60 + WINDOW_SECONDS)
            started = True
    return CustomerVerdict(
        answer=False, send_notice=bool(started), paused_for_seconds=pause_minutes * 60
    )


def inbound_volume_keys(schema: str, now: float) -> tuple[str, str]:
    """The Redis counters of this minute: the tenant's, and the platform's."""
    window = _window(now)
    return f"intenant:{schema}:{window}", f"inglobal:{window}"


def inbound_volume_verdict(
    *, tenant_count: int, global_count: int, per_minute: int, now: float
) -> tuple[int, bool]:
    """(seconds to wait or 0, whether the platform's count must be given back).

    Both counters are taken in one round trip; a message refused for its tenant's limit
    was never the platform's, so its global count is given back (DECR)."""
    retry_after = WINDOW_SECONDS - int(now % WINDOW_SECONDS) or 1
    if tenant_count > per_minute:
        return retry_after, True
    if global_count > settings.INBOUND_GLOBAL_PER_MINUTE:
        return retry_after, False
    return 0, False


def inbound_volume_check(*, schema: str, per_minute: int, now: float | None = None) -> int:
    """0 when the tenant and the platform are under their limits; else seconds to wait."""
    now = time.time() if now is None else now
    tenant_key, global_key = inbound_volume_keys(schema, now)
    pipe = redis_client().pipeline(transaction=False)
    pipe.incr(tenant_key)
    pipe.incr(global_key)
    tenant_count, global_count = pipe.execute()
    wait, give_back = inbound_volume_verdict(
        tenant_count=tenant_count, global_count=global_count, per_minute=per_minute, now=now
    )
    if give_back or tenant_count == 1 or global_count == 1:  # rarely: a second trip
        pipe = redis_client().pipeline(transaction=False)
        for key, count in ((tenant_key, tenant_count), (global_key, global_count)):
            if count == 1:  # the first of its window: it expires with its window
                pipe.expire(key, WINDOW_SECONDS * 2)
        if give_back:
            pipe.decr(global_key)
        pipe.execute()
    return wait
