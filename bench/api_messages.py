"""`POST /api/v1/messages` latency at 100 requests a second through the real web server.

One tenant with one sandbox session and one API key (scopes read and send) on the bench
database; the web server runs as the product runs it, `uvicorn config.asgi:application
--workers N` (N = 2 and 4 on this 2-core machine), DEBUG off, LOG_LEVEL=WARNING, on
Redis database 15 (flushed first). The per-key rate limit is raised so the bench's own
volume is not answered 429 (its Redis counter is still taken on every request). No
session runner runs: each accepted message waits in its session's outbox in Redis, as it
would while a runner restarts.

Every request is built before the clock starts: a JSON text message to one of
RECIPIENTS customers (a different text each time: the duplicate guard would otherwise
store it `suppressed`, which is cheaper), with the key in `Authorization` and the
tenant's host in `Host`, over keep-alive HTTP/1.1 from a separate load process (asyncio,
raw sockets: bench.asgi_servers' reader).

- Warm-up: WARMUP requests, not counted.
- Open loop: RATE requests a second for SECONDS, sent on a schedule whatever the
  answers, latency counted from the scheduled send time (queueing included): p50, p95,
  p99. Target: p95 < 50 ms (the seed documents accept 500 ms), no errors.
- Correctness: the outbound Message rows equal the 201 answers.
- The web server's CPU time per measured request (uvicorn and its workers). Each of the
  CONNECTIONS keep-alive connections stays with the worker that accepted it, so how the
  load splits between workers changes from run to run (one worker can hold 11 of 16 and
  run at a full core while the other idles): p95 moves with that split far more than
  the CPU per request does.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.asgi_servers import _free_port, _read_response, _stop
from bench.common import (
    Figure,
    fresh_database,
    health_answers,
    percentile,
    process_tree_cpu_seconds,
    redis_database_url,
)

ROOT = Path(__file__).resolve().parent.parent
REDIS_DB = 15
WORKER_COUNTS = (2, 4)  # 4: two per core, so one waits on the database while one computes
RATE = 100
SECONDS = 10.0
WARMUP = 200
RECIPIENTS = 500
CONNECTIONS = 16  # kept open by the load process; a request waits for a free one
START_TIMEOUT_SECONDS = 30.0
BACKLOG_SECONDS = 2.0  # answers owed for longer than this much schedule: stop sending
TARGET_P95 = "< 50 ms"


def _requests(host: str, key: str, session_id: str, count: int, tag: str) -> list[bytes]:
    built = []
    for number in range(count):
        body = json.dumps(
            {
                "session": session_id,
                "to": f"+9725{number % RECIPIENTS:08d}",
                "text": f"Your order is ready ({tag}/{number})",
            }
        ).encode()
        head = (
            f"POST /api/v1/messages HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        built.append(head + body)
    return built


async def _open_loop(port: int, requests: list[bytes], rate: float) -> dict:
    """Send `requests` at `rate` a second on a schedule; latencies from the schedule."""
    free: asyncio.Queue = asyncio.Queue()
    for _ in range(CONNECTIONS):
        free.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    start = time.perf_counter() + 0.2

    async def send(request: bytes, due: float) -> None:
        reader, writer = await free.get()
        try:
            writer.write(request)
            await writer.drain()
            status, keep = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError) as error:
            status, keep = type(error).__name__, False
        latencies.append(time.perf_counter() - due)
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if keep:
            free.put_nowait((reader, writer))
        else:
            writer.close()
            free.put_nowait(await asyncio.open_connection("127.0.0.1", port))

    tasks = []
    unsent = 0
    for index, request in enumerate(requests):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) - len(latencies) > rate * BACKLOG_SECONDS:
            unsent = len(requests) - index
            break
        tasks.append(asyncio.create_task(send(request, due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return {"latencies": latencies, "statuses": statuses, "unsent": unsent, "elapsed": elapsed}


def _load(port: int, requests: list[bytes], rate: float) -> dict:
    return asyncio.run(_open_loop(port, requests, rate))


def _start(port: int, host: str, log, workers: int) -> subprocess.Popen:
    redis_url = os.environ["REDIS_URL"]
    env = {
        **os.environ,
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "CELERY_RESULT_BACKEND": redis_url,
        "API_RATE_LIMIT_PER_MINUTE": "100000000",
    }
    command = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--lifespan", "off",
               "--no-access-log", "--workers", str(workers), "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not health_answers(port, host):
        if server.poll() is not None or time.monotonic() > deadline:
            _stop(server)
            log.seek(0)
            raise RuntimeError(f"uvicorn did not answer on port {port}:\n{log.read()[-2000:]}")
        time.sleep(0.2)
    return server


def run() -> list[Figure]:
    os.environ["REDIS_URL"] = redis_database_url(REDIS_DB)  # before Django reads its settings
    fresh_database()
    from django.conf import settings
    from django.db import connections
    from django_tenants.utils import schema_context

    from config.redis_client import redis_client
    from messaging.models import Message
    from sessions_app.services import session_create
    from tenants.api_keys import api_key_create
    from tenants.services import NewTenant, tenant_create

    redis_client().flushdb()
    tenant = tenant_create(
        NewTenant(
            slug="api-bench",
            name="API bench",
            owner_email="owner@api-bench.example",
            owner_password="Bench-pass-1234!",
        )
    )
    session = session_create(tenant=tenant, name="Desk", provider="sandbox")
    _, key = api_key_create(tenant=tenant, name="bench", scopes=["read", "send"])
    host = f"{tenant.slug}.{settings.BASE_DOMAIN}"
    connections.close_all()  # the server opens its own

    figures: list[Figure] = []
    created = 0
    context = multiprocessing.get_context("spawn")
    for workers in WORKER_COUNTS:
        tag = f"w{workers}"
        warmup = _requests(host, key, str(session.public_id), WARMUP, f"{tag}-warm")
        measured = _requests(host, key, str(session.public_id), int(RATE * SECONDS), tag)
        port = _free_port()
        with tempfile.TemporaryFile("w+") as log:
            server = _start(port, host, log, workers)
            try:
                with context.Pool(1) as pool:
                    warm = pool.apply(_load, (port, warmup, RATE))
                    cpu_before = process_tree_cpu_seconds(server.pid)
                    result = pool.apply(_load, (port, measured, RATE))
                    answered = max(1, len(result["latencies"]))
                    cpu_ms = (process_tree_cpu_seconds(server.pid) - cpu_before) * 1000 / answered
            finally:
                _stop(server)
        created += result["statuses"].get("201", 0) + warm["statuses"].get("201", 0)
        errors = sum(n for status, n in result["statuses"].items() if status != "201")
        errors += result["unsent"]
        latencies = sorted(result["latencies"])
        print(
            f"  {workers} workers: {len(latencies)} answered at {RATE}/s: "
            f"{result['statuses']}, unsent {result['unsent']}; "
            f"server CPU {cpu_ms:.1f} ms a request",
            flush=True,
        )
        ms = [value * 1000 for value in latencies] or [float("inf")]
        label = f"POST /api/v1/messages, {workers} uvicorn workers"
        figures += [
            Figure(f"{label}: p50 at {RATE} req/s", percentile(ms, 0.50), "ms"),
            Figure(f"{label}: p95 at {RATE} req/s", percentile(ms, 0.95), "ms", TARGET_P95),
            Figure(f"{label}: p99 at {RATE} req/s", percentile(ms, 0.99), "ms"),
            Figure(f"{label}: errors (not 201)", errors, "", "0"),
            Figure(f"{label}: web server CPU per request", round(cpu_ms, 2), "ms"),
            Figure(
                f"{label}: answered per second",
                len(latencies) / result["elapsed"],
                "req/s",
                f">= {RATE} req/s",
            ),
        ]
    with schema_context(tenant.schema_name):
        stored = Message.objects.filter(direction="out").count()
    print(f"  messages stored {stored} = {created} (the 201 answers)", flush=True)
    if stored != created:
        print(f"  MISMATCH: {stored} messages stored for {created} answers 201", flush=True)
    return figures
