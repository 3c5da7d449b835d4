"""The fast path of `POST /webhooks/twilio/`: a plain ASGI route in front of Django.

Why it exists. Twilio's inbound webhook is the product's hottest URL (issue 4's bench:
at least 1,000 signed requests a second on a 2-core machine, p95 under 50 ms at 200 a
second). Through Django it topped out at 66-69/s at first, and still at 164-177/s with
pooled connections, cached session lookups, one SQL statement and one Redis pipeline:
Django's request path alone (the middleware stack, a thread per request, the handoffs
between the event loop and that thread, the GIL convoy of many threads each waiting on
the database) caps at about 420 requests a second here even for an empty view, while
bare uvicorn serves 3,333 from the same load generator. Through this path: 965-1,015/s
(2 or 3 uvicorn workers, sharing the 2 cores with PostgreSQL), p95 4 ms at 200/s.

What it does, in the event loop, without a thread: read the body; build Django's own
request object from the ASGI scope (so the host check, the public URL behind a proxy
and the form parsing are Django's); look the `To` number up in the per-process cache
(messaging/inbound_cache.py; a miss reads the database once, in a thread); check the
signature (twilio's RequestValidator, the same function as the view); take the tenant's
and the platform's limit counters in one Redis pipeline; store with the inbound
service's one SQL statement (messaging/inbound.py) on an async psycopg pool; queue the
message's one Celery task (routing, which also publishes `message.new`) with one LPUSH;
answer. The answers (status codes, JSON error bodies, headers) are the Django view's,
built by the same functions (messaging/twilio_webhook.py).

What it leaves to Django, by replaying the request to it untouched: any other path, a
host Django would refuse or that belongs to no tenant or to a suspended one, a body
Django's form parsing rejects, a suspended tenant's number (its answer is translated),
and everything when the broker is not a plain Redis. The view stays the reference
implementation, and the status callback (`/webhooks/twilio/status/`) stays in Django.

Tenant isolation: the async connections have `search_path=pg_catalog`, and every table
the statement names carries its schema, so a query can only ever reach the schema of
the session the `To` number belongs to.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time

import psycopg
import redis
import redis.asyncio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError, close_old_connections
from django.utils.translation import get_language_from_request
from django_tenants.utils import remove_www
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from messaging.inbound import STORE_ATTEMPTS, inbound_store_statement
from messaging.inbound_cache import (
    MISS,
    host_tenant_lookup,
    inbound_per_tenant_per_minute,
    twilio_number_lookup,
)
from messaging.inbound_limits import WINDOW_SECONDS, inbound_volume_keys, inbound_volume_verdict
from messaging.inbound_tasks import celery_message
from messaging.metrics import received_count
from messaging.twilio_webhook import (
    _ok,
    bad_signature,
    invalid,
    rate_limited,
    signature_valid,
    unavailable,
    unknown_number,
)
from sessions_app.providers.base import MEDIA_KINDS
from sessions_app.providers.twilio_provider import twilio_inbound_parse

logger = logging.getLogger(__name__)

PATH = "/webhooks/twilio/"
FORM = "application/x-www-form-urlencoded"
MAX_BODY_BYTES = 64 * 1024  # Twilio's inbound forms are a few hundred bytes; more: Django
# What SecurityMiddleware, XFrameOptionsMiddleware and LocaleMiddleware add to the view's.
STACK_HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"vary", b"Accept-Language"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


class _Fallback(Exception):
    """Django answers this request."""


def twilio_fast_path(django_app):
    """The ASGI application: POST /webhooks/twilio/ here, everything else to `django_app`."""
    if not _broker_is_plain_redis():
        logger.warning("Twilio webhook fast path off: the Celery broker is not plain Redis")
        return django_app
    fast = _FastPath(django_app)

    async def application(scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == PATH:
            return await fast(scope, receive, send)
        return await django_app(scope, receive, send)

    return application


def _broker_is_plain_redis() -> bool:
    options = set(settings.CELERY_BROKER_TRANSPORT_OPTIONS or {}) - {"visibility_timeout"}
    return settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")) and not options


class _FastPath:
    def __init__(self, django_app):
        self.django_app = django_app
        self._pool: AsyncConnectionPool | None = None
        self._redis: redis.asyncio.Redis | None = None
        self._broker: redis.asyncio.Redis | None = None
        self._opening = asyncio.Lock()

    async def __call__(self, scope, receive, send):
        body, complete = await _read_body(receive)
        if complete:
            try:
                response = await self._answer(scope, body)
            except _Fallback:
                response = None
            if response is not None:
                return await _send(send, response)
        await self.django_app(scope, _replay(body, complete, receive), send)

    async def _answer(self, scope, body: bytes):
        request = ASGIRequest(scope, io.BytesIO(body))
        if request.content_type != FORM:
            raise _Fallback
        try:
            hostname = remove_www(request.get_host().split(":")[0])
            form = request.POST
        except Exception:  # DisallowedHost, a body it cannot parse: Django's answer
            raise _Fallback from None
        try:
            response = await self._checked_and_stored(request, hostname, form)
        except (psycopg.Error, PoolTimeout, DatabaseError, redis.RedisError):
            logger.exception("Twilio webhook: database or Redis unavailable")
            response = unavailable()
        response["Content-Language"] = get_language_from_request(request)  # LocaleMiddleware's
        return response

    async def _checked_and_stored(self, request, hostname: str, form):
        """The view's steps, in its order (messaging/twilio_webhook.py)."""
        host = await _cached(host_tenant_lookup, hostname)
        if host is None or not (host.is_active or host.is_public):
            raise _Fallback  # Django's 404 unknown_host, or 403 tenant_suspended
        number = await _cached(twilio_number_lookup, form.get("To", ""))
        if number is None:
            return unknown_number()
        if not number.session.tenant.is_active:
            raise _Fallback  # tenant_suspended: translated, like every page of Django
        if not signature_valid(request, number):
            return bad_signature()
        per_minute = await _cached(inbound_per_tenant_per_minute, number.schema)
        wait = await self._volume_check(number.schema, per_minute)
        if wait:
            return rate_limited(wait)
        try:
            inbound = twilio_inbound_parse(form, session=number.session)
        except ValueError as error:
            return invalid("invalid_message", error)
        message_id = await self._store(number, inbound)
        if message_id is not None:  # None: stored before, and routed then
            received_count("twilio")
            await self._enqueue(number.schema, message_id, inbound.kind in MEDIA_KINDS)
        return _ok()

    # --- the stores

    async def _connections(self) -> tuple[AsyncConnectionPool, redis.asyncio.Redis]:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._redis = _redis_for(settings.REDIS_URL)
                    self._broker = (
                        self._redis
                        if settings.CELERY_BROKER_URL == settings.REDIS_URL
                        else _redis_for(settings.CELERY_BROKER_URL)
                    )
                    pool = AsyncConnectionPool(
                        kwargs=_connection_kwargs(),
                        min_size=1,
                        max_size=max(1, settings.DATABASE_POOL_MAX_SIZE),
                        timeout=5,  # then 503: Twilio retries
                        # No check before each use (a round trip per request): a dead
                        # connection fails its request with a 503, and the pool drops it.
                        open=False,
                        name="twilio-fast-path",
                    )
                    await pool.open()
                    self._pool = pool
        return self._pool, self._redis

    async def _volume_check(self, schema: str, per_minute: int) -> int:
        _, client = await self._connections()
        now = time.time()
        tenant_key, global_key = inbound_volume_keys(schema, now)
        async with client.pipeline(transaction=False) as pipe:
            pipe.incr(tenant_key)
            pipe.incr(global_key)
            tenant_count, global_count = await pipe.execute()
        wait, give_back = inbound_volume_verdict(
            tenant_count=tenant_count, global_count=global_count, per_minute=per_minute, now=now
        )
        if give_back or tenant_count == 1 or global_count == 1:  # rarely: a second trip
            async with client.pipeline(transaction=False) as pipe:
                for key, count in ((tenant_key, tenant_count), (global_key, global_count)):
                    if count == 1:  # the first of its window: it goes with its window
                        pipe.expire(key, WINDOW_SECONDS * 2)
                if give_back:
                    pipe.decr(global_key)
                await pipe.execute()
        return wait

    async def _store(self, number, inbound) -> int | None:
        """The new message's id, or None for a duplicate (stored before: nothing changed)."""
        pool, _ = await self._connections()
        statement, params, _row = inbound_store_statement(
            schema=number.schema, session_id=number.session.pk, inbound=inbound
        )
        async with pool.connection() as conn:
            for _ in range(STORE_ATTEMPTS):
                cursor = await conn.execute(statement, params)
                conversation_id, message_id = await cursor.fetchone()
                if conversation_id is not None:
                    return message_id
        raise psycopg.OperationalError(f"inbound {inbound.provider_message_id!r} not stored")

    async def _enqueue(self, schema: str, message_id: int, needs_media: bool) -> None:
        await self._connections()
        names = ["messaging.inbound_media_fetch"] if needs_media else []
        names.append("messaging.inbound_route")
        async with self._broker.pipeline(transaction=False) as pipe:
            for name in names:
                queue, payload = celery_message(name, args=(message_id,), schema=schema)
                pipe.lpush(queue, payload)
            await pipe.execute()


async def _cached(lookup, key: str):
    """`lookup(key)` from the per-process cache; a miss reads the database in a thread
    (once per key and CACHE_SECONDS) and gives the connection back at once."""
    found = lookup(key, cached_only=True)
    if found is not MISS:
        return found

    def read():
        try:
            return lookup(key)
        finally:
            close_old_connections()

    return await sync_to_async(read)()


def _redis_for(url: str) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(
        url, socket_connect_timeout=1, socket_timeout=2, decode_responses=True
    )


def _connection_kwargs() -> dict:
    """Django's own connection parameters for the default database, in autocommit, with
    a search_path under which no tenant's (nor the public) tables resolve."""
    from django.db import connections

    params = connections["default"].get_connection_params()
    for django_only in ("context", "cursor_factory"):
        params.pop(django_only, None)
    options = " ".join(filter(None, [params.get("options"), "-c search_path=pg_catalog"]))
    return {**params, "autocommit": True, "options": options}


async def _read_body(receive) -> tuple[bytes, bool]:
    """The request body, and False if it was cut short (too long, or the client left)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > MAX_BODY_BYTES:
            return b"".join(chunks), False


def _replay(body: bytes, complete: bool, receive):
    """`receive` for Django: the body read so far, then whatever is left of the request."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return replay


async def _send(send, response) -> None:
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in
               response.items()]  # fmt: skip
    headers += [*STACK_HEADERS, (b"content-length", str(len(response.content)).encode())]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})
