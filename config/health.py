"""/health/: the state of every part the product needs, on every host.

`?deep=1` also sends a probe task through a worker and waits for its answer.
Served by HealthMiddleware before tenant resolution, so it answers (503, naming the
database) even when the database is down, and on hosts that belong to no tenant.
"""

import logging
import time

import redis
from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.db import connection
from django.http import JsonResponse

from config.heartbeats import RUNNERS, WORKERS, heartbeats_read
from config.redis_client import redis_client

HEALTH_PATH = "/health/"


def _check_database() -> dict:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:
        connection.close()  # don't keep a broken connection for the next request
        return {"status": "down", "error": error.__class__.__name__}
    return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 1)}


def _check_redis() -> dict:
    started = time.perf_counter()
    try:
        redis_client().ping()
    except redis.RedisError as error:
        return {"status": "down", "error": error.__class__.__name__}
    return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 1)}


def _check_heartbeats(kind: str, what: str) -> dict:
    beats = heartbeats_read(kind)
    processes = [
        {
            "name": beat.name,
            "last_heartbeat_seconds_ago": round(beat.age_seconds, 1),
            "fresh": beat.fresh,
            **beat.extra,
        }
        for beat in beats
    ]
    alive = sum(1 for beat in beats if beat.fresh)
    if alive:
        return {"status": "up", "alive": alive, "processes": processes}
    return {
        "status": "down",
        "error": f"no {what} has sent a heartbeat recently",
        "alive": 0,
        "processes": processes,
    }


def _check_celery_roundtrip() -> dict:
    """Send a probe task through the broker and wait for a worker to answer it."""
    from config.tasks import health_probe

    started = time.perf_counter()
    try:
        result = health_probe.apply_async(expires=10).get(timeout=5)
    except Exception as error:
        return {"status": "down", "error": error.__class__.__name__}
    return {
        "status": "up",
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        "schema": result["schema"],
    }


def health_report(*, deep: bool = False) -> tuple[bool, dict]:
    components = {"database": _check_database(), "redis": _check_redis()}
    if components["redis"]["status"] == "up":
        components["celery_workers"] = _check_heartbeats(WORKERS, "Celery worker")
        components["session_runners"] = _check_heartbeats(RUNNERS, "session runner")
        if deep:
            components["celery_roundtrip"] = _check_celery_roundtrip()
    else:
        # Both report through Redis: with Redis down their state is unknown, not "up".
        unknown = {"status": "unknown", "error": "heartbeats live in Redis, which is down"}
        components["celery_workers"] = dict(unknown)
        components["session_runners"] = dict(unknown)
    failing = [name for name, part in components.items() if part["status"] != "up"]
    report = {"status": "down" if failing else "up", "failing": failing, "components": components}
    return not failing, report


class HealthMiddleware:
    """Answers /health/ first thing, whatever the host and whatever else is down.

    Sync and async: Django runs it in whichever mode the middleware below it runs, so
    every other request passes through without a thread handoff of its own."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        if request.path != HEALTH_PATH:
            return self.get_response(request)
        return _health_response(request)

    async def __acall__(self, request):
        if request.path != HEALTH_PATH:
            return await self.get_response(request)
        return await sync_to_async(_health_response)(request)


def _health_response(request) -> JsonResponse:
    healthy, report = health_report(deep=request.GET.get("deep") == "1")
    response = JsonResponse(report, status=200 if healthy else 503)
    response["Cache-Control"] = "no-store"
    return response


class SkipHealthRequestsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        return getattr(request, "path", None) != HEALTH_PATH
