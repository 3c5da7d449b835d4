"""Live events for a tenant's dashboards: one Channels group per tenant schema.

Events are small JSON objects with a `type` (`session.status`, `message.new`, ...).
Services publish them after commit, never inside a transaction that may roll back.

Publishing is called from synchronous code (Celery workers, the session runner, views)
for every message sent or received. `async_to_sync(layer.group_send)` costs a thread hop
and an event loop round per event (~3 ms of CPU in a worker), so with channels-redis and
plain Redis URLs the group send is done here with a synchronous Redis client instead:
the same keys, the same serialisation (the layer's own serializer), the same Lua script
as channels-redis 4's `RedisChannelLayer.group_send`, so consumers cannot tell the
difference (tests/test_realtime.py checks it against a real consumer). With no dashboard
open, it is one Redis round trip. Any other layer or host configuration (Sentinel, the
in-memory layer) goes through `group_send` as before.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

GROUP_PREFIX = "tenant."

logger = logging.getLogger(__name__)

# channels_redis.core.RedisChannelLayer.group_send's script, verbatim.
_GROUP_SEND_LUA = """
    local over_capacity = 0
    local current_time = ARGV[#ARGV - 1]
    local expiry = ARGV[#ARGV]
    for i=1,#KEYS do
        if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
            redis.call('ZADD', KEYS[i], current_time, ARGV[i])
            redis.call('EXPIRE', KEYS[i], expiry)
        else
            over_capacity = over_capacity + 1
        end
    end
    return over_capacity
"""

_clients: dict[tuple[int, int, int], redis.Redis] = {}
_clients_lock = threading.Lock()


def tenant_group(schema_name: str) -> str:
    return f"{GROUP_PREFIX}{schema_name}"


def tenant_event_publish(*, schema_name: str, event: dict) -> None:
    """Send one event to every dashboard socket of one tenant (callable from sync code)."""
    if "type" not in event:
        raise ValueError("A dashboard event needs a type.")
    layer = get_channel_layer()
    group = tenant_group(schema_name)
    message = {"type": "dashboard.event", "event": event}
    if _sync_capable(layer):
        _redis_group_send(layer, group, message)
    else:
        async_to_sync(layer.group_send)(group, message)


def _sync_capable(layer) -> bool:
    from channels_redis.core import RedisChannelLayer

    return type(layer) is RedisChannelLayer and all(
        isinstance(host, dict) and "address" in host and "master_name" not in host
        for host in layer.hosts
    )


def _client(layer, index: int) -> redis.Redis:
    # Per process (a forked worker must not share its parent's sockets) and per layer.
    key = (os.getpid(), id(layer), index)
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                options = dict(layer.hosts[index])  # address and redis-py options
                client = redis.Redis.from_url(options.pop("address"), **options)
                client.group_send_script = client.register_script(_GROUP_SEND_LUA)
                _clients[key] = client
    return client


def _redis_group_send(layer, group: str, message: dict) -> None:
    """channels-redis 4's group_send, synchronously."""
    assert layer.require_valid_group_name(group), "Group name not valid"
    key = layer._group_key(group)
    client = _client(layer, layer.consistent_hash(group))
    pipe = client.pipeline(transaction=False)
    pipe.zremrangebyscore(key, min=0, max=int(time.time()) - layer.group_expiry)
    pipe.zrange(key, 0, -1)
    _, members = pipe.execute()
    if not members:
        return  # no dashboard open: nothing more to do
    channel_names = [member.decode("utf8") for member in members]
    by_connection, messages, capacities = layer._map_channel_keys_to_connection(
        channel_names, message
    )
    for index, channel_keys in by_connection.items():
        connection = _client(layer, index)
        pipe = connection.pipeline(transaction=False)
        for channel_key in channel_keys:
            pipe.zremrangebyscore(channel_key, min=0, max=int(time.time()) - int(layer.expiry))
        pipe.execute()
        args = [messages[k] for k in channel_keys] + [capacities[k] for k in channel_keys]
        args += [time.time(), layer.expiry]
        over = connection.group_send_script(keys=channel_keys, args=args)
        if over:
            logger.info(
                "%s of %s channels over capacity in group %s", over, len(channel_names), group
            )
