"""One Redis client per process and URL, with short timeouts so a dead Redis fails fast."""

import functools

import redis
from django.conf import settings


@functools.cache
def _client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=1,
        socket_timeout=2,
        health_check_interval=30,
        decode_responses=True,
    )


def redis_client() -> redis.Redis:
    return _client_for(settings.REDIS_URL)
