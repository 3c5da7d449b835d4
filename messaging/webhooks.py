"""Outgoing webhooks: a tenant's endpoints, and signed deliveries that nothing loses.

Every event becomes one WebhookDelivery row per active endpoint subscribed to it, in the
tenant's schema. The row is the truth: a Celery message is only a nudge to look at it
now. A lost message, a dead worker or a restart loses nothing, because the beat task
`messaging.webhook_deliveries_sweep` re-queues every pending delivery left unclaimed for
a sweep period.

A delivery is a POST of `{"id", "type", "created_at", "data"}` as JSON, signed with the
endpoint's secret: `X-Webhook-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`
where the timestamp is `X-Webhook-Timestamp` (unix seconds). 2xx delivers it; a timeout,
a connection error, 408, 429 (honouring Retry-After) or 5xx retries it with exponential
backoff and jitter until WEBHOOK_RETRY_WINDOW_SECONDS after the event (24 hours), then it
fails; any other answer (3xx, 4xx) fails it at once. Delivery is at least once: a worker
that dies after the receiver answered but before the row is updated sends it again, with
the same `X-Webhook-Id`, which receivers use to drop duplicates.

Running a delivery twice is harmless: an attempt first claims the row (row lock with
SKIP LOCKED, state and due-time check, then `next_attempt_at` moved past the attempt's
timeout as a lease) and commits before any network I/O, so no transaction stays open
while a receiver is slow, and a second task for the same row finds nothing to do.

SSRF: unless WEBHOOK_ALLOW_PRIVATE_NETWORKS (on outside production), endpoints must be
https, may not name localhost or a non-public IP address, and at every attempt the host
is resolved and refused if ANY of its addresses is loopback, private, link-local (cloud
metadata), shared (CGNAT), multicast, reserved or unspecified; the request then goes to
the address that was checked (no second DNS lookup to rebind), with the original Host
header and TLS server name. Redirects are never followed and environment proxies are
ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import random
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import URLValidator
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django_tenants.utils import get_public_schema_name, get_tenant_model, schema_context

from messaging.metrics import webhook_count
from messaging.models import WebhookDelivery, WebhookEndpoint
from sessions_app.fields import Secret

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

TEST_EVENT = "webhook.test"
SECRET_PREFIX = "whsec_"  # noqa: S105 - a label, not a secret
SIGNATURE_HEADER = "X-Webhook-Signature"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
ID_HEADER = "X-Webhook-Id"
USER_AGENT = "whatsapp-platform-webhooks/1"

RETRY_MAX_DELAY_SECONDS = 3600
# Longer waits are left to the sweep: a countdown task sits in a worker's memory, and the
# Redis broker hands an unacknowledged one out again after its visibility timeout.
COUNTDOWN_MAX_SECONDS = 600
# A claimed attempt owns its row for the request's timeout plus this margin.
LEASE_MARGIN_SECONDS = 30
# A countdown task may run a little before `next_attempt_at` on a host whose clock is
# slightly ahead of the one that scheduled it.
CLOCK_TOLERANCE = timedelta(seconds=1)
SWEEP_BATCH = 500
# Of an error answer, this much is read; the error kept is cut to the column's length only
# after the secret is blanked out, so a secret across the cut never leaves a piece behind.
RESPONSE_SNIPPET_BYTES = 1024
ERROR_MAX_LENGTH = WebhookDelivery._meta.get_field("last_error").max_length

DELIVERED = WebhookDelivery.State.DELIVERED
FAILED = WebhookDelivery.State.FAILED
PENDING = WebhookDelivery.State.PENDING
RETRY = "retry"  # webhook_deliver's answer: still pending, another attempt is scheduled
SKIPPED = "skipped"  # not pending, not due, or claimed by another task


# --- endpoints -------------------------------------------------------------------------


def webhook_secret_new() -> str:
    """256 random bits, URL-safe. The whole string (prefix included) is the HMAC key."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


_LOCAL_HOST_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_LOCAL_HOST_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain")


def _address_is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    # is_global is False for loopback, private, link-local, shared (100.64/10), reserved
    # and unspecified ranges; multicast ranges count as global, so refuse them by name.
    return address.is_global and not address.is_multicast


def _private_networks_allowed() -> bool:
    return settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS


def _url_clean(url: str) -> str:
    """The URL, or a ValidationError saying why it cannot receive webhooks."""
    url = (url or "").strip()
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise ValidationError({"url": ["Enter a full http:// or https:// URL."]}) from None
    max_length = WebhookEndpoint._meta.get_field("url").max_length
    if len(url) > max_length:
        raise ValidationError({"url": [f"Use at most {max_length} characters."]})
    parsed = urlsplit(url)
    if settings.PRODUCTION and parsed.scheme != "https":
        raise ValidationError({"url": ["Webhook URLs must use https://."]})
    if not _private_networks_allowed():
        host = (parsed.hostname or "").rstrip(".")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            if host in _LOCAL_HOST_NAMES or host.endswith(_LOCAL_HOST_SUFFIXES):
                raise ValidationError(
                    {"url": ["Webhooks cannot be sent to this machine or a local network."]}
                ) from None
        else:
            if not _address_is_public(address):
                raise ValidationError(
                    {"url": ["Webhooks cannot be sent to a private or reserved address."]}
                )
    return url


def _events_clean(events) -> list[str]:
    if isinstance(events, str) or not events:
        raise ValidationError({"events": ["Choose at least one event."]})
    unknown = sorted({str(event) for event in events} - set(WebhookEndpoint.Event.values))
    if unknown:
        raise ValidationError(
            {
                "events": [
                    f"Unknown events: {', '.join(unknown)}. "
                    f"Choose from {', '.join(WebhookEndpoint.Event.values)}."
                ]
            }
        )
    chosen = set(events)
    return [event for event in WebhookEndpoint.Event.values if event in chosen]


def _description_clean(description: str) -> str:
    description = (description or "").strip()
    max_length = WebhookEndpoint._meta.get_field("description").max_length
    if len(description) > max_length:
        raise ValidationError({"description": [f"Use at most {max_length} characters."]})
    return description


def _collect_errors(**checks) -> dict:
    """Run each (function, value) check; return the clean values or raise all errors."""
    cleaned, errors = {}, {}
    for name, (check, value) in checks.items():
        try:
            cleaned[name] = check(value)
        except ValidationError as error:
            errors.update(error.message_dict)
    if errors:
        raise ValidationError(errors)
    return cleaned


def webhook_endpoint_create(
    *, url: str, events, description: str = ""
) -> tuple[WebhookEndpoint, str]:
    """Create an endpoint in the current tenant schema with a new secret.

    Returns the endpoint and its secret: show the secret to the person now, it is only
    stored encrypted. Errors come back per field, all at once.
    """
    cleaned = _collect_errors(
        url=(_url_clean, url),
        events=(_events_clean, events),
        description=(_description_clean, description),
    )
    secret = webhook_secret_new()
    endpoint = WebhookEndpoint.objects.create(secret=Secret(secret), **cleaned)
    logger.info("webhook endpoint %s created for %s", endpoint.pk, ", ".join(endpoint.events))
    return endpoint, secret


def webhook_endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    events=None,
    description: str | None = None,
    is_active: bool | None = None,
) -> WebhookEndpoint:
    """Change what is given (None leaves a field as it is). The secret stays; see
    `webhook_endpoint_secret_rotate`."""
    checks = {}
    if url is not None:
        checks["url"] = (_url_clean, url)
    if events is not None:
        checks["events"] = (_events_clean, events)
    if description is not None:
        checks["description"] = (_description_clean, description)
    cleaned = _collect_errors(**checks)
    if is_active is not None:
        cleaned["is_active"] = bool(is_active)
    if cleaned:
        for name, value in cleaned.items():
            setattr(endpoint, name, value)
        endpoint.save(update_fields=sorted(cleaned))
    return endpoint


def webhook_endpoint_secret_rotate(*, endpoint: WebhookEndpoint) -> str:
    """A new secret, returned once. Pending deliveries are signed with it from now on."""
    endpoint.secret = Secret(webhook_secret_new())
    endpoint.save(update_fields=["secret"])
    logger.info("webhook endpoint %s: secret rotated", endpoint.pk)
    return str(endpoint.secret)


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Delete the endpoint and its deliveries; queued tasks for them find nothing to do."""
    endpoint_id = endpoint.pk
    endpoint.delete()
    logger.info("webhook endpoint %s deleted", endpoint_id)


def webhook_endpoint_test(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """Queue a `webhook.test` delivery to this endpoint, whatever events it wants."""
    if not endpoint.is_active:
        raise ValidationError("Turn the endpoint on before sending it a test.")
    with transaction.atomic():
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint,
            event_type=TEST_EVENT,
            payload={"endpoint": endpoint.pk, "message": "A test delivery from the dashboard."},
            next_attempt_at=timezone.now(),
        )
        _enqueue_after_commit([delivery.pk])
    return delivery


def webhook_deliveries(
    endpoint: WebhookEndpoint,
    *,
    state: str | None = None,
    before: tuple[datetime, int] | None = None,
) -> QuerySet[WebhookDelivery]:
    """An endpoint's deliveries, newest first. Page by keyset: pass the last row's
    `(created_at, id)` as `before` to get the next page, and slice (`[:50]`)."""
    deliveries = WebhookDelivery.objects.filter(endpoint=endpoint)
    if state is not None:
        deliveries = deliveries.filter(state=state)
    if before is not None:
        created_at, delivery_id = before
        deliveries = deliveries.filter(
            Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=delivery_id)
        )
    return deliveries.order_by("-created_at", "-id")


# --- events ----------------------------------------------------------------------------


# Every message sent or received emits events: the tenant's active endpoints are read
# at most this often per process (and again at once in a process that changed them), so
# a busy worker does not query them for each event. Another process sees a change within
# this many seconds.
ENDPOINTS_CACHE_SECONDS = 2.0
_endpoints_cache: dict[str, tuple[float, tuple[tuple[int, frozenset[str]], ...]]] = {}


def webhook_endpoints_forget(schema: str | None = None) -> None:
    """Drop this process's cached endpoints of `schema` (None: of every tenant)."""
    if schema is None:
        _endpoints_cache.clear()
    else:
        _endpoints_cache.pop(schema, None)


def _active_endpoints() -> tuple[tuple[int, frozenset[str]], ...]:
    schema = connection.schema_name
    now = time.monotonic()
    cached = _endpoints_cache.get(schema)
    if cached is not None and now - cached[0] < ENDPOINTS_CACHE_SECONDS:
        return cached[1]
    endpoints = tuple(
        (pk, frozenset(events))
        for pk, events in WebhookEndpoint.objects.filter(is_active=True)
        .order_by("pk")
        .values_list("pk", "events")
    )
    # Not cached inside a transaction that may still change them (and roll back).
    if connection.get_autocommit():
        _endpoints_cache[schema] = (now, endpoints)
    return endpoints


def webhook_event_emit(*, event_type: str, payload: dict) -> int:
    """One pending delivery per active endpoint of the CURRENT tenant schema subscribed
    to `event_type`; each is queued for a worker once the transaction commits.

    Returns how many deliveries were created. Call it after the change that caused the
    event has committed (messaging.events does), or inside that change's transaction.
    """
    endpoint_ids = [pk for pk, events in _active_endpoints() if event_type in events]
    if not endpoint_ids:
        return 0
    # Stored as JSON: dates, UUIDs and decimals (order totals) become strings now.
    payload = json.loads(json.dumps(payload, cls=DjangoJSONEncoder))
    now = timezone.now()
    with transaction.atomic():
        deliveries = WebhookDelivery.objects.bulk_create(
            [
                WebhookDelivery(
                    endpoint_id=endpoint_id,
                    event_type=event_type,
                    payload=payload,
                    next_attempt_at=now,
                )
                for endpoint_id in endpoint_ids
            ]
        )
        _enqueue_after_commit([delivery.pk for delivery in deliveries])
    return len(deliveries)


def _enqueue_after_commit(delivery_ids: list[int], *, countdown: float | None = None) -> None:
    transaction.on_commit(
        partial(_enqueue, delivery_ids, schema=connection.schema_name, countdown=countdown)
    )


def _enqueue(delivery_ids: list[int], *, schema: str, countdown: float | None = None) -> None:
    """Queue one task per delivery. A broker error loses nothing: the rows stay pending
    and the sweep queues them again."""
    from messaging.webhook_tasks import webhook_deliver_task

    for delivery_id in delivery_ids:
        try:
            webhook_deliver_task.apply_async(
                kwargs={"delivery_id": delivery_id},
                countdown=countdown,
                queue=settings.WEBHOOK_QUEUE,
                headers={"_schema_name": schema},
            )
        except Exception:
            logger.warning(
                "could not queue %d webhook deliveries; the sweep will pick them up",
                len(delivery_ids),
                exc_info=True,
            )
            return


# --- delivering ------------------------------------------------------------------------


def webhook_body(delivery: WebhookDelivery) -> bytes:
    """The exact bytes POSTed (and signed): the same for every attempt of a delivery."""
    document = {
        "id": str(delivery.public_id),
        "type": delivery.event_type,
        "created_at": delivery.created_at.isoformat(),
        "data": delivery.payload,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`, keyed with the secret."""
    digest = hmac.new(
        str(secret).encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return f"sha256={digest}"


def webhook_retry_delay(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones: WEBHOOK_RETRY_BASE_SECONDS
    doubling each time, capped at an hour, each with ±20% jitter."""
    base = settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1)
    return min(RETRY_MAX_DELAY_SECONDS, base) * random.uniform(0.8, 1.2)  # noqa: S311


@dataclass
class _Result:
    delivered: bool = False
    retry: bool = False
    status_code: int | None = None
    error: str = ""
    retry_after: float | None = None


class _Refused(Exception):
    """The target is not allowed (SSRF guard): fails the delivery without a retry."""


class _Unresolvable(Exception):
    """DNS said nothing useful: may be temporary, so retried."""


@dataclass(frozen=True)
class _Target:
    url: httpx.URL
    auth: httpx.BasicAuth | None = None
    headers: dict = field(default_factory=dict)
    extensions: dict = field(default_factory=dict)


def _target(url: str) -> _Target:
    """Where to connect. With the SSRF guard on, the host is resolved once, every address
    checked, and the request pinned to a checked address (no rebinding between the check
    and the connection). Credentials in the URL become an Authorization header, so that
    no log line that shows the URL shows them."""
    import httpx  # here: emitting events (web, session runner) never needs it

    parsed = httpx.URL(url)
    auth = None
    if parsed.userinfo:
        auth = httpx.BasicAuth(parsed.username, parsed.password)
        parsed = parsed.copy_with(userinfo=b"")
    if _private_networks_allowed():
        return _Target(url=parsed, auth=auth)
    host = parsed.host
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as error:
            raise _Unresolvable(f"DNS lookup failed ({error.__class__.__name__})") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    if not addresses:
        raise _Unresolvable("DNS lookup returned no address")
    if not all(_address_is_public(address) for address in addresses):
        raise _Refused("Refused: the host resolves to a private or reserved address")
    pinned = parsed.copy_with(host=str(addresses[0]))
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    return _Target(
        url=pinned,
        auth=auth,
        headers={"Host": parsed.netloc.decode("ascii")},
        extensions=extensions,
    )


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - timezone.now()).total_seconds()
        except (TypeError, ValueError, IndexError):
            return None
    return max(0.0, min(float(RETRY_MAX_DELAY_SECONDS), seconds))


def _snippet(response: httpx.Response) -> str:
    received = b""
    for chunk in response.iter_bytes():
        received += chunk
        if len(received) >= RESPONSE_SNIPPET_BYTES:
            break
    text = received[:RESPONSE_SNIPPET_BYTES].decode("utf-8", errors="replace")
    return " ".join(text.split())


def _post(*, url: str, body: bytes, headers: dict) -> _Result:
    """One POST. Never raises for anything the receiver or the network does."""
    import httpx

    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    try:
        target = _target(url)
    except _Refused as error:
        return _Result(error=str(error))
    except _Unresolvable as error:
        return _Result(retry=True, error=str(error))
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            request = client.build_request(
                "POST",
                target.url,
                content=body,
                headers={**headers, **target.headers},
                extensions=target.extensions,
            )
            response = client.send(request, stream=True, auth=target.auth)
            try:
                code = response.status_code
                if 200 <= code < 300:
                    return _Result(delivered=True, status_code=code)
                snippet = _snippet(response)
                retry_after = response.headers.get("Retry-After")
            finally:
                response.close()
    except httpx.TimeoutException:
        return _Result(retry=True, error=f"Timed out after {timeout:g} s")
    except httpx.TransportError as error:
        return _Result(retry=True, error=f"Connection failed ({error.__class__.__name__})")
    except httpx.InvalidURL:
        return _Result(error="The URL cannot be requested")
    message = f"HTTP {code}" + (f": {snippet}" if snippet else "")
    if 300 <= code < 400:
        return _Result(status_code=code, error=f"HTTP {code}: redirects are not followed")
    if code in (408, 429) or code >= 500:
        return _Result(
            retry=True,
            status_code=code,
            error=message,
            retry_after=_retry_after_seconds(retry_after) if code == 429 else None,
        )
    return _Result(status_code=code, error=message)


def _scrub(text: str, secret: str) -> str:
    """The error as stored and logged: never the secret, at most the column's length."""
    if secret and secret in text:
        text = text.replace(secret, "[secret]")
    return text[:ERROR_MAX_LENGTH]


def _claim(delivery_id: int) -> tuple[WebhookDelivery | None, str]:
    """Lock, check and lease the row, and commit: at most one attempt runs at a time."""
    now = timezone.now()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint")
            .filter(pk=delivery_id, state=PENDING)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + CLOCK_TOLERANCE))
            .first()
        )
        if delivery is None:
            return None, SKIPPED
        if not delivery.endpoint.is_active:
            delivery.state = FAILED
            delivery.last_error = "The endpoint is turned off"
            delivery.next_attempt_at = None
            delivery.save(update_fields=["state", "last_error", "next_attempt_at"])
            return None, FAILED
        delivery.attempts += 1
        delivery.last_attempt_at = now
        lease = settings.WEBHOOK_TIMEOUT_SECONDS + LEASE_MARGIN_SECONDS
        delivery.next_attempt_at = now + timedelta(seconds=lease)
        delivery.save(update_fields=["attempts", "last_attempt_at", "next_attempt_at"])
    return delivery, PENDING


def webhook_deliver(*, delivery_id: int) -> str:
    """Make one attempt at a delivery of the current tenant schema, if it is pending, due
    and not being attempted elsewhere, and record what happened.

    Returns `delivered`, `failed`, `retry` (another attempt is scheduled) or `skipped`.
    Safe to call twice, concurrently or not: the second call skips.
    """
    delivery, outcome = _claim(delivery_id)
    if delivery is None:
        return outcome
    endpoint = delivery.endpoint
    secret = str(endpoint.secret)
    body = webhook_body(delivery)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        ID_HEADER: str(delivery.public_id),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: webhook_signature(secret=secret, timestamp=timestamp, body=body),
    }
    result = _post(url=endpoint.url, body=body, headers=headers)
    return _record(delivery, result, secret=secret)


def _record(delivery: WebhookDelivery, result: _Result, *, secret: str) -> str:
    now = timezone.now()
    fields = {"last_status_code": result.status_code, "last_error": _scrub(result.error, secret)}
    countdown = None
    if result.delivered:
        outcome = DELIVERED
        fields.update(state=DELIVERED, delivered_at=now, next_attempt_at=None)
    elif result.retry:
        delay = max(webhook_retry_delay(delivery.attempts), result.retry_after or 0.0)
        next_attempt_at = now + timedelta(seconds=delay)
        deadline = delivery.created_at + timedelta(seconds=settings.WEBHOOK_RETRY_WINDOW_SECONDS)
        if next_attempt_at > deadline:
            outcome = FAILED
            window = settings.WEBHOOK_RETRY_WINDOW_SECONDS
            window = f"{window / 3600:g} h" if window >= 3600 else f"{window:g} s"
            fields.update(
                state=FAILED,
                next_attempt_at=None,
                last_error=_scrub(f"Gave up after {window}: {result.error}", secret),
            )
        else:
            outcome = RETRY
            fields.update(next_attempt_at=next_attempt_at)
            countdown = delay if delay <= COUNTDOWN_MAX_SECONDS else None
    else:
        outcome = FAILED
        fields.update(state=FAILED, next_attempt_at=None)
    with transaction.atomic():
        # Only the attempt that holds the claim may write its outcome.
        updated = WebhookDelivery.objects.filter(
            pk=delivery.pk, state=PENDING, attempts=delivery.attempts
        ).update(**fields)
        if updated and countdown is not None:
            _enqueue_after_commit([delivery.pk], countdown=countdown)
    if updated:
        webhook_count(outcome)
    logger.info(
        "webhook delivery %s (%s) to endpoint %s, attempt %d: %s%s",
        delivery.public_id,
        delivery.event_type,
        delivery.endpoint_id,
        delivery.attempts,
        outcome,
        f" ({fields['last_error']})" if fields["last_error"] else "",
    )
    return outcome


# --- the sweep -------------------------------------------------------------------------


def webhook_deliveries_requeue() -> int:
    """Queue again the pending deliveries of the current tenant schema that have been due
    for a whole sweep period without anyone claiming them (their task was lost, or their
    retry was too far off for a countdown). Returns how many were queued."""
    now = timezone.now()
    unclaimed_since = now - timedelta(seconds=settings.WEBHOOK_SWEEP_SECONDS)
    with transaction.atomic():
        delivery_ids = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(state=PENDING)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=unclaimed_since))
            .order_by("next_attempt_at", "id")
            .values_list("id", flat=True)[:SWEEP_BATCH]
        )
        if delivery_ids:
            # Due from now: the next sweep leaves them to this one's tasks for a period.
            WebhookDelivery.objects.filter(pk__in=delivery_ids).update(next_attempt_at=now)
            _enqueue_after_commit(delivery_ids)
    return len(delivery_ids)


def webhook_deliveries_sweep() -> int:
    """`webhook_deliveries_requeue` in every tenant schema; one broken schema never stops
    the others. Returns how many deliveries were queued in all."""
    schemas = (
        get_tenant_model()
        .objects.exclude(schema_name=get_public_schema_name())
        .order_by("pk")
        .values_list("schema_name", flat=True)
    )
    queued = 0
    for schema in list(schemas):
        try:
            with schema_context(schema):
                count = webhook_deliveries_requeue()
        except Exception:
            logger.exception("webhook sweep failed in schema %s", schema)
            continue
        if count:
            logger.info("webhook sweep: %d pending deliveries queued again in %s", count, schema)
        queued += count
    return queued
