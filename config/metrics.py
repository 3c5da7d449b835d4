"""Prometheus metrics: every metric of the product, defined once, here.

Multiprocess mode: each process (web, Celery workers, beat, session runners) writes its
counters into memory-mapped files in METRICS_DIR, and `/metrics` on any web process
sums every file it finds there, so a scrape counts the work of every process on the
host (in docker-compose the services share the `metrics` volume). Files are named by
host *and* pid, so containers sharing the folder never write into one file.

Some figures are read from the source of truth at scrape time instead of counted:
sessions by status, Celery queue depths and the runners' leases.

`/metrics` is answered before tenant resolution, on every host, to a caller presenting
`Authorization: Bearer <METRICS_TOKEN>`; anyone else gets 401.
"""

from __future__ import annotations

import atexit
import hmac
import logging
import os
import socket
import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"


def _process_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _multiprocess_setup() -> str:
    directory = str(settings.METRICS_DIR)
    os.makedirs(directory, exist_ok=True)
    # prometheus-client reads the folder from this variable when it opens its files.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_identity)
    return directory


METRICS_DIR = _multiprocess_setup()


@atexit.register
def _forget_live_gauges() -> None:
    # Live gauges (websocket clients) of a process that exits must stop counting.
    multiprocess.mark_process_dead(_process_identity(), METRICS_DIR)


# --- counted by the processes that do the work ----------------------------------------

MESSAGES_RECEIVED = Counter("wa_messages_received_total", "Inbound messages stored", ["provider"])
MESSAGES_SENT = Counter(
    "wa_messages_sent_total",
    "Outbound messages by result (sent, failed, suppressed)",
    ["provider", "result"],
)
SEND_LATENCY = Histogram(
    "wa_send_latency_seconds",
    "From a message being queued to the provider accepting it",
    ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
SEND_RETRIES = Counter("wa_send_retries_total", "Sends scheduled for another try", ["provider"])
DEAD_LETTERS = Counter(
    "wa_dead_letters_total", "Messages failed after their last try", ["provider"]
)
RATE_LIMIT_WAITS = Counter(
    "wa_rate_limit_waits_total", "Sends delayed by a limit (never dropped)", ["limit"]
)
RECONNECT_ATTEMPTS = Counter(
    "wa_reconnect_attempts_total", "Session reconnects scheduled, by reason", ["reason"]
)
WEBHOOK_DELIVERIES = Counter(
    "wa_webhook_deliveries_total", "Outgoing webhook attempts by result", ["result"]
)
WEBSOCKET_CLIENTS = Gauge(
    "wa_websocket_clients", "Dashboard websockets connected", multiprocess_mode="livesum"
)
HTTP_LATENCY = Histogram(
    "wa_http_request_duration_seconds",
    "HTTP requests by view",
    ["view", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


# --- read at scrape time ----------------------------------------------------------------


class _SourceOfTruthCollector:
    """Figures that live in PostgreSQL or Redis: read them when Prometheus asks."""

    def collect(self):
        yield from self._sessions()
        yield from self._queues()
        yield from self._leases()

    def _sessions(self):
        from django.db.models import Count

        from sessions_app.models import WhatsAppSession

        family = GaugeMetricFamily(
            "wa_sessions", "Sessions by provider and status", labels=["provider", "status"]
        )
        try:
            rows = WhatsAppSession.objects.values("provider", "status").annotate(n=Count("id"))
            for row in rows:
                family.add_metric([row["provider"], row["status"]], row["n"])
        except Exception as error:  # the database is down: report what is known
            logger.warning("metrics: sessions unavailable (%s)", error.__class__.__name__)
        yield family

    def _queues(self):
        from config.redis_client import redis_client

        family = GaugeMetricFamily(
            "wa_celery_queue_depth", "Tasks waiting in each Celery queue", labels=["queue"]
        )
        try:
            client = redis_client()
            for queue in settings.METRICS_CELERY_QUEUES:
                family.add_metric([queue], client.llen(queue))
        except Exception as error:
            logger.warning("metrics: queue depths unavailable (%s)", error.__class__.__name__)
        yield family

    def _leases(self):
        from config.redis_client import redis_client

        family = GaugeMetricFamily(
            "wa_runner_leases_held", "Sessions held by each session runner", labels=["runner"]
        )
        try:
            client = redis_client()
            keys = list(client.scan_iter(match="lease:session:*", count=1000))
            held: dict[str, int] = {}
            for owner in client.mget(keys) if keys else []:
                if owner is not None:
                    name = owner.decode() if isinstance(owner, bytes) else str(owner)
                    held[name] = held.get(name, 0) + 1
            for runner, count in sorted(held.items()):
                family.add_metric([runner], count)
        except Exception as error:
            logger.warning("metrics: leases unavailable (%s)", error.__class__.__name__)
        yield family


def metrics_text() -> bytes:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=METRICS_DIR)
    registry.register(_SourceOfTruthCollector())
    return generate_latest(registry)


# --- the endpoint and the HTTP timing -------------------------------------------------


def _authorised(request) -> bool:
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if not token or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header.removeprefix("Bearer ").strip(), token)


def _metrics_response(request) -> HttpResponse:
    if not _authorised(request):
        response = HttpResponse(
            b'{"error": {"code": "unauthorized", "message": "Send Authorization: Bearer '
            b'<METRICS_TOKEN>."}}',
            status=401,
            content_type="application/json",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    response = HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response


def _view_label(request, response) -> str:
    match = getattr(request, "resolver_match", None)
    if match is not None and match.view_name:
        return match.view_name
    return "unmatched" if response.status_code == 404 else "other"


_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


def _observe(request, response, started: float) -> None:
    HTTP_LATENCY.labels(
        view=_view_label(request, response),
        method=request.method if request.method in _METHODS else "other",
        status=f"{response.status_code // 100}xx",
    ).observe(time.perf_counter() - started)


class MetricsMiddleware:
    """First in MIDDLEWARE: answers /metrics, and times every other request by view.

    Sync and async, like HealthMiddleware: no thread handoff of its own."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        if request.path == METRICS_PATH:
            return _metrics_response(request)
        started = time.perf_counter()
        response = self.get_response(request)
        _observe(request, response, started)
        return response

    async def __acall__(self, request):
        if request.path == METRICS_PATH:
            return await sync_to_async(_metrics_response)(request)
        started = time.perf_counter()
        response = await self.get_response(request)
        _observe(request, response, started)
        return response
