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


def inbound_volume_check(*, schema: str, per_minute: int, now: float | None = None) -> int:
    """0 when the tenant and the platform are under their limits; else seconds to wait."""
    now = time.time() if now is None else now
    window = _window(now)
    retry_after = WINDOW_SECONDS - int(now % WINDOW_SECONDS) or 1
    if _count(f"intenant:{schema}:{window}") > per_minute:
        return retry_after
    if _count(f"inglobal:{window}") > settings.INBOUND_GLOBAL_PER_MINUTE:
        return retry_after
    return 0
