"""Outbound rate limits, in Redis: per tenant, per recipient, bursts, daily per session and
a global cap.

One Lua script checks every limit and, only when all allow it, records the send in all of
them: concurrent workers and runners cannot overshoot, and a refused send leaves no
trace. Windows slide (a sorted set of send times per key), so "60 a minute" means any 60
seconds, and the script answers how long to wait until the send would fit.

Bursts: at most `burst` messages in a row to one recipient, a row being sends less than
`cooldown` seconds apart; after that the recipient gets `cooldown` seconds of quiet. A
message from the recipient ends the row (`limits_burst_reset`, called when an inbound
message is routed): "3 in a row" means 3 without an answer in between, so a customer in
a conversation is never made to wait for the replies to what they asked. The per-minute,
daily and global windows count every send, answers included.

Time is a float of seconds, passed in (`now=`) or read from the module's `clock`, which
tests replace to walk through minutes and days without sleeping.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import RedisError

from config.redis_client import redis_client

logger = logging.getLogger(__name__)

clock: Callable[[], float] = time.time

MINUTE = 60.0
DAY = 86400.0
_PREFIX = "limits:out"

_RESERVE = """
local now = tonumber(ARGV[1])
local member = ARGV[2]
local windows = tonumber(ARGV[3])
local wait = 0
local which = ''
for i = 1, windows do
  local limit = tonumber(ARGV[2 + 3 * i])
  local window = tonumber(ARGV[3 + 3 * i])
  redis.call('zremrangebyscore', KEYS[i], '-inf', now - window)
  local count = redis.call('zcard', KEYS[i])
  if count >= limit then
    local oldest = redis.call('zrange', KEYS[i], count - limit, count - limit, 'WITHSCORES')
    local until_free = tonumber(oldest[2]) + window - now
    if until_free > wait then
      wait = until_free
      which = ARGV[1 + 3 * i]
    end
  end
end
local burst_at = 4 + 3 * windows
local burst = tonumber(ARGV[burst_at])
local cooldown = tonumber(ARGV[burst_at + 1])
local burst_key = KEYS[windows + 1]
local in_row = 0
if burst > 0 then
  local state = redis.call('hmget', burst_key, 'count', 'last')
  in_row = tonumber(state[1]) or 0
  local last = tonumber(state[2]) or 0
  if now - last >= cooldown then
    in_row = 0
  elseif in_row >= burst then
    local until_free = last + cooldown - now
    if until_free > wait then
      wait = until_free
      which = 'burst'
    end
  end
end
if wait > 0 then
  return {0, tostring(wait), which}
end
for i = 1, windows do
  local window = tonumber(ARGV[3 + 3 * i])
  redis.call('zadd', KEYS[i], now, member)
  redis.call('expire', KEYS[i], math.ceil(window) + 1)
end
if burst > 0 then
  redis.call('hset', burst_key, 'count', in_row + 1, 'last', tostring(now))
  redis.call('expire', burst_key, math.ceil(cooldown) + 1)
end
return {1, '0', ''}
"""


@dataclass(frozen=True)
class OutboundLimits:
    """A tenant's limits (0 switches one off). `enabled=False` leaves only the global cap."""

    per_tenant_per_minute: int = 60
    per_recipient_per_minute: int = 10
    burst: int = 3
    burst_cooldown_seconds: int = 30
    daily_per_session: int = 1000
    enabled: bool = True

    @classmethod
    def of(cls, messaging_settings) -> OutboundLimits:
        """From a tenant's MessagingSettings row."""
        return cls(
            per_tenant_per_minute=messaging_settings.outbound_per_tenant_per_minute,
            per_recipient_per_minute=messaging_settings.outbound_per_recipient_per_minute,
            burst=messaging_settings.outbound_burst,
            burst_cooldown_seconds=messaging_settings.outbound_burst_cooldown_seconds,
            daily_per_session=messaging_settings.outbound_daily_per_session,
            enabled=messaging_settings.limits_enabled,
        )


@dataclass(frozen=True)
class LimitDecision:
    allowed: bool
    wait_seconds: float = 0.0  # when refused: until the send would fit
    limit: str = ""  # when refused: which limit ("tenant", "recipient", "burst"...)


def _keys(*, schema: str, session_id: int, recipient: str) -> dict[str, str]:
    return {
        "global": f"{_PREFIX}:global",
        "tenant": f"{_PREFIX}:tenant:{schema}",
        "recipient": f"{_PREFIX}:recipient:{schema}:{recipient}",
        "daily": f"{_PREFIX}:session:{session_id}:day",
        "burst": f"{_PREFIX}:burst:{schema}:{recipient}",
    }


def limits_reserve(
    *,
    schema: str,
    session_id: int,
    recipient: str,
    limits: OutboundLimits,
    now: float | None = None,
) -> LimitDecision:
    """Record one send to `recipient` if every limit allows it now; otherwise record
    nothing and say how long to wait. Atomic across processes."""
    now = clock() if now is None else now
    keys = _keys(schema=schema, session_id=session_id, recipient=recipient)
    windows: list[tuple[str, int, float]] = []
    global_cap = int(getattr(settings, "OUTBOUND_GLOBAL_PER_MINUTE", 0) or 0)
    if global_cap > 0:
        windows.append(("global", global_cap, MINUTE))
    burst, cooldown = 0, 0
    if limits.enabled:
        for name, limit, window in (
            ("tenant", limits.per_tenant_per_minute, MINUTE),
            ("recipient", limits.per_recipient_per_minute, MINUTE),
            ("daily", limits.daily_per_session, DAY),
        ):
            if limit > 0:
                windows.append((name, limit, window))
        if limits.burst > 0 and limits.burst_cooldown_seconds > 0:
            burst, cooldown = limits.burst, limits.burst_cooldown_seconds
    if not windows and not burst:
        return LimitDecision(allowed=True)
    args: list = [repr(float(now)), uuid.uuid4().hex, len(windows)]
    for name, limit, window in windows:
        args += [name, limit, window]
    args += [burst, cooldown]
    script = redis_client().register_script(_RESERVE)
    allowed, wait, which = script(
        keys=[keys[name] for name, _, _ in windows] + [keys["burst"]], args=args
    )
    if int(allowed) == 1:
        return LimitDecision(allowed=True)
    return LimitDecision(allowed=False, wait_seconds=float(wait), limit=which)


def limits_burst_reset(*, schema: str, recipient: str) -> None:
    """`recipient` wrote to the tenant: the next send to them starts a new row. Best
    effort: with Redis away the row simply runs on (routing is not held up for it)."""
    try:
        redis_client().delete(_keys(schema=schema, session_id=0, recipient=recipient)["burst"])
    except RedisError:
        logger.warning("burst row of a recipient not reset: Redis unavailable")
