"""Per-key rate limit, in Redis so every web process counts together.

A window of 60 seconds per key (or per dashboard user), API_RATE_LIMIT_PER_MINUTE
requests in it; over it, HTTP 429 with `Retry-After` = the seconds left in the window.
One Redis round trip per request. If Redis cannot be reached the request is let through
(the limit protects us from a runaway client; it is not worth refusing every call).
"""

from __future__ import annotations

import logging
import math
import time

import redis
from django.conf import settings
from django.db import connection
from rest_framework.throttling import BaseThrottle

from config.redis_client import redis_client

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60


def _who(request) -> str | None:
    user = request.user
    if not getattr(user, "is_authenticated", False):
        return None
    return str(user.pk) if str(user.pk).startswith("key:") else f"user:{user.pk}"


class ApiKeyRateThrottle(BaseThrottle):
    def __init__(self):
        self._wait: float | None = None

    def allow_request(self, request, view) -> bool:
        who = _who(request)
        limit = settings.API_RATE_LIMIT_PER_MINUTE
        if who is None or limit <= 0:
            return True
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        key = f"api:rate:{connection.schema_name}:{who}:{window}"
        try:
            pipe = redis_client().pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS + 5)
            count, _ = pipe.execute()
        except redis.RedisError:
            logger.warning("API rate limit not checked: Redis unavailable", exc_info=True)
            return True
        if int(count) <= limit:
            return True
        self._wait = max(1.0, math.ceil((window + 1) * WINDOW_SECONDS - now))
        return False

    def wait(self) -> float | None:
        return self._wait
