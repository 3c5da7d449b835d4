"""Signed Twilio webhooks per second through the real web server into PostgreSQL.

One tenant with one Twilio session (its own account SID, auth token and sender number).
The web server runs as the product runs it, `uvicorn config.asgi:application` with
`--workers N` (N = 2 and N = 3 on this 2-core machine), DEBUG off, LOG_LEVEL=WARNING,
on the bench database and on Redis database 6 (flushed first; a `make run` beside it is
not disturbed). The product's database settings are kept (each worker pools its
connections: settings.DATABASE_POOL_MAX_SIZE). `POST /webhooks/twilio/` is answered by the
fast path in front of Django (messaging/twilio_fast.py).
No Celery worker runs: the one task every message queues (routing, which also
publishes the dashboard event and queues outgoing webhooks) just waits in Redis
database 6; a worker some other bench left on database 6 would take them and compete
for the CPU.
The tenant's inbound limit (600 a minute by default) and the platform's are raised so
that the bench's own volume is not answered 429; both Redis counters are still taken.

Every request is built before the clock starts: a unique MessageSid, one of SENDERS
customers as `From`, the form fields Twilio sends, form-encoded, and X-Twilio-Signature
computed with the session's token for the URL the server rebuilds from the Host header
(`http://localhost:<port>/webhooks/twilio/`). The load comes from LOAD_PROCESSES
separate processes speaking raw keep-alive HTTP/1.1 over asyncio (bench.asgi_servers).

- Max throughput: a closed loop, CONCURRENCY connections in all, MAX_SECONDS: requests
  a second, p50/p95/p99 latency, errors (any answer but 200). Target: >= 1,000 a second.
- At the planned rate: an open loop of RATE requests a second for RATE_SECONDS, sent on
  a schedule whatever the answers, latency counted from the scheduled send time (so it
  includes queueing). Target: p95 < 50 ms, no errors. A server that falls more than
  BACKLOG_SECONDS behind is overloaded: the rest of the schedule is not sent, and each
  request left unsent counts as an error with an unbounded latency (the percentiles it
  reaches read `inf`), which keeps the bench short however slow the server is.
- Correctness: the Message rows in the tenant's schema equal the 200 answers, over both
  server runs and their warm-ups, and their provider message ids are all different:
  nothing lost, nothing stored twice.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import psutil

from bench.asgi_servers import _free_port, _read_response, _stop
from bench.common import (
    Figure,
    fresh_database,
    health_answers,
    process_tree_cpu_seconds,
    redis_database_url,
)
from bench.common import percentile as _interpolated

ROOT = Path(__file__).resolve().parent.parent
WORKER_COUNTS = (2, 3)
SERVER = ["-m", "uvicorn", "config.asgi:application", "--lifespan", "off",
          "--no-access-log", "--workers", "{workers}", "--port", "{port}"]  # fmt: skip
HOST = "localhost"  # BASE_DOMAIN in development: the public schema, where the webhook is
PATH = "/webhooks/twilio/"
REDIS_DB = 6

ACCOUNT_SID = "AC" + "7b" * 16
AUTH_TOKEN = "5f1e" * 8
FROM_NUMBER = "+14155550123"  # the session's WhatsApp sender: what Twilio posts as `To`
SENDERS = 1000  # customers writing in; contacts and conversations are upserted per sender

LOAD_PROCESSES = 2
CONCURRENCY = 64
MAX_SECONDS = 10.0
CLOSED_REQUESTS_PER_PROCESS = 12_000  # room for 2,400 a second
RATE = 200
RATE_SECONDS = 10.0
OPEN_IDLE_CONNECTIONS = 8  # opened per load process before the open loop's clock starts
BACKLOG_SECONDS = 1.0  # open loop: answers owed for longer than this much schedule: give up
WARMUP_SECONDS = 1.5
WARMUP_CONNECTIONS = 16
LEAD_SECONDS = 3.0  # for the load processes to build their requests
START_TIMEOUT_SECONDS = 30.0

TARGET_THROUGHPUT = ">= 1000 req/s"
TARGET_P95 = "< 50 ms"


# --- the requests


def _signed_requests(port: int, count: int, seed: int) -> list[bytes]:
    """`count` complete HTTP requests, each an inbound WhatsApp text Twilio would post."""
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(AUTH_TOKEN)
    host = f"{HOST}:{port}"
    url = f"http://{host}{PATH}"
    rng = random.Random(seed)
    requests = []
    for number in range(count):
        customer = rng.randrange(SENDERS)
        wa_id = f"97250{customer:07d}"
        sid = "SM" + uuid.UUID(int=rng.getrandbits(128)).hex
        form = {
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "ProfileName": f"Customer {customer}",
            "MessageType": "text",
            "SmsSid": sid,
            "WaId": wa_id,
            "SmsStatus": "received",
            "Body": f"Hello, I'd like to order ({seed}/{number})",
            "To": f"whatsapp:{FROM_NUMBER}",
            "NumSegments": "1",
            "ReferralNumMedia": "0",
            "MessageSid": sid,
            "AccountSid": ACCOUNT_SID,
            "From": f"whatsapp:+{wa_id}",
            "ApiVersion": "2010-04-01",
        }
        body = urlencode(form).encode()
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"X-Twilio-Signature: {validator.compute_signature(url, form)}\r\n"
            "User-Agent: TwilioProxy/1.1\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


# --- the load generator (runs in its own processes)


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, inside the window
    errors: int = 0  # inside the window: non-200 answers and broken connections
    ok: int = 0  # every 200, inside the window or after it: each one is a stored message
    failed: dict[str, int] = field(default_factory=dict)  # every non-200, by status/error
    exhausted: bool = False  # the pre-built requests ran out before the window ended
    unsent: int = 0  # open loop: left unsent because the server fell too far behind
    cpu_seconds: float = 0.0

    def record(self, outcome: int | str, latency: float, in_window: bool) -> None:
        if outcome == 200:
            self.ok += 1
        else:
            self.failed[str(outcome)] = self.failed.get(str(outcome), 0) + 1
        if in_window:
            self.latencies.append(latency)
            self.errors += outcome != 200

    def __add__(self, other: Tally) -> Tally:
        failed = dict(self.failed)
        for key, count in other.failed.items():
            failed[key] = failed.get(key, 0) + count
        return Tally(
            self.latencies + other.latencies,
            self.errors + other.errors,
            self.ok + other.ok,
            failed,
            self.exhausted or other.exhausted,
            self.unsent + other.unsent,
            self.cpu_seconds + other.cpu_seconds,
        )


_BROKEN = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


async def _closed_loop(port: int, requests: list[bytes], connections: int, stop_at: float):
    """`connections` connections sending the requests back to back until `stop_at`."""
    tally = Tally()
    pending = iter(requests)

    async def client() -> None:
        writer = None
        while time.time() < stop_at:
            request = next(pending, None)
            if request is None:
                tally.exhausted = True
                break
            started = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request)
                outcome, keep_alive = await _read_response(reader)
            except _BROKEN as error:
                outcome, keep_alive = type(error).__name__, False
            tally.record(outcome, time.perf_counter() - started, time.time() <= stop_at)
            if not keep_alive and writer is not None:
                writer.close()
                writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return tally


async def _open_loop(port: int, requests: list[bytes], rate: float, start_at: float):
    """Send request i at start_at + i / rate, on an idle connection or a new one."""
    tally = Tally()
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(OPEN_IDLE_CONNECTIONS)]
    in_flight = 0

    async def send(request: bytes, due: float) -> None:
        nonlocal in_flight
        reader, writer = idle.pop() if idle else (None, None)
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            outcome, keep_alive = await _read_response(reader)
        except _BROKEN as error:
            outcome, keep_alive = type(error).__name__, False
        tally.record(outcome, time.perf_counter() - due, in_window=True)
        in_flight -= 1
        if keep_alive:
            idle.append((reader, writer))
        elif writer is not None:
            writer.close()

    await asyncio.sleep(max(0.0, start_at - time.time()))
    base = time.perf_counter()
    tasks: list[asyncio.Task] = []
    backlog = max(1, round(rate * BACKLOG_SECONDS))
    for number, request in enumerate(requests):
        if in_flight >= backlog:
            tally.unsent = len(requests) - number
            tally.errors += tally.unsent
            tally.latencies += [float("inf")] * tally.unsent
            break
        due = base + number / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        in_flight += 1
        tasks.append(asyncio.create_task(send(request, due)))
    await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()
    return tally


def _load_process(mode: str, port: int, share: int, start_at: float, seconds: float, seed: int):
    """Entry point of one load process: build its requests, then send them from start_at.

    closed: `share` connections; open: `share` requests a second (offset by the seed so
    that the processes interleave).
    """
    if mode == "closed":
        requests = _signed_requests(port, CLOSED_REQUESTS_PER_PROCESS, seed)
    else:
        requests = _signed_requests(port, round(share * seconds), seed)
    if time.time() > start_at:  # it only shortens this process's share of the window
        print(f"  load process {seed}: building the requests overran LEAD_SECONDS", flush=True)
    cpu_before = time.process_time()  # building the requests is not load
    if mode == "closed":

        async def closed() -> Tally:
            await asyncio.sleep(start_at - time.time())
            return await _closed_loop(port, requests, share, start_at + seconds)

        tally = asyncio.run(closed())
    else:
        offset = (seed % LOAD_PROCESSES) / (share * LOAD_PROCESSES)
        tally = asyncio.run(_open_loop(port, requests, share, start_at + offset))
    tally.cpu_seconds = time.process_time() - cpu_before
    return tally


def percentile(values: list[float], fraction: float) -> float:
    """bench.common.percentile, except that it reads `inf` where unsent requests are."""
    finite = [value for value in values if value != float("inf")]
    if len(finite) == len(values):
        return _interpolated(values, fraction)
    rank = min(len(values) - 1, max(0, round(fraction * len(values)) - 1))
    return sorted(values)[rank]


# --- the server


def _start(workers: int, port: int, log) -> subprocess.Popen:
    command = [sys.executable, *(arg.format(workers=workers, port=port) for arg in SERVER)]
    redis_url = os.environ["REDIS_URL"]  # database 6, set by run()
    env = {
        **os.environ,
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "CELERY_RESULT_BACKEND": redis_url,
        "INBOUND_GLOBAL_PER_MINUTE": "100000000",
    }
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not health_answers(port, HOST):
        if server.poll() is not None or time.monotonic() > deadline:
            _stop(server)
            log.seek(0)
            raise RuntimeError(f"uvicorn did not answer on port {port}:\n{log.read()[-2000:]}")
        time.sleep(0.2)
    return server


def _busy_seconds() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def _phase(server, pool, label: str, mode: str, port: int, share: int, seconds: float, seed: int):
    """One load phase from LOAD_PROCESSES processes; prints where the CPU went during it."""
    start_at = time.time() + LEAD_SECONDS
    arguments = [
        (mode, port, share, start_at, seconds, seed + number) for number in range(LOAD_PROCESSES)
    ]
    pending = pool.starmap_async(_load_process, arguments)
    time.sleep(max(0.0, start_at - time.time()))  # the requests are being built meanwhile
    server_cpu, busy, wall = process_tree_cpu_seconds(server.pid), _busy_seconds(), time.monotonic()
    tally = sum(pending.get(), Tally())
    wall = time.monotonic() - wall
    server_cpu = process_tree_cpu_seconds(server.pid) - server_cpu
    other = _busy_seconds() - busy - server_cpu - tally.cpu_seconds
    failed = f"; failures {tally.failed}" if tally.failed else ""
    if tally.unsent:
        failed += f"; {tally.unsent} left unsent (more than {BACKLOG_SECONDS:g} s behind)"
    print(
        f"  {label}: {tally.ok} answered 200{failed}; CPU in cores: uvicorn"
        f" {server_cpu / wall:.2f}, load {tally.cpu_seconds / wall:.2f}, the rest"
        f" (PostgreSQL, Redis, anything else running) {max(other, 0) / wall:.2f}"
        f" of {psutil.cpu_count()}",
        flush=True,
    )
    return tally


def _measure(workers: int, pool, seed: int) -> tuple[list[Figure], int]:
    """Figures of one server with `workers` workers, and the 200s it answered in all."""
    port = _free_port()
    label = f"{workers} workers"
    with tempfile.TemporaryFile("w+") as log:
        server = _start(workers, port, log)
        try:
            warmup = asyncio.run(
                _closed_loop(
                    port,
                    _signed_requests(port, 2_000, seed),
                    WARMUP_CONNECTIONS,
                    time.time() + WARMUP_SECONDS,
                )
            )
            if warmup.failed:
                print(f"  {label} warm-up failures: {warmup.failed}", flush=True)
            closed = _phase(server, pool, f"{label}, closed loop", "closed", port,
                            CONCURRENCY // LOAD_PROCESSES, MAX_SECONDS, seed + 10)  # fmt: skip
            opened = _phase(server, pool, f"{label}, open loop", "open", port,
                            RATE // LOAD_PROCESSES, RATE_SECONDS, seed + 20)  # fmt: skip
        finally:
            _stop(server)
            log.seek(0)
            problems = [line for line in log if " ERROR " in line or "Traceback" in line]
            if problems:
                print(f"  {label}: the server logged {len(problems)} errors; the first:")
                print(f"    {problems[0].rstrip()}", flush=True)
    if closed.exhausted:
        print(f"  {label}: the closed loop ran out of pre-built requests", flush=True)

    at_max = sorted(closed.latencies)
    at_rate = sorted(opened.latencies)
    figures = [
        Figure(f"{label}: max requests/second (closed loop, {CONCURRENCY} connections)",
               len(at_max) / MAX_SECONDS, "req/s", TARGET_THROUGHPUT),
        Figure(f"{label}: p50 latency at max", percentile(at_max, 0.50) * 1000, "ms"),
        Figure(f"{label}: p95 latency at max", percentile(at_max, 0.95) * 1000, "ms"),
        Figure(f"{label}: p99 latency at max", percentile(at_max, 0.99) * 1000, "ms"),
        Figure(f"{label}: errors at max", closed.errors, "", "0"),
        Figure(f"{label}: p50 latency at {RATE} req/s (open loop)",
               percentile(at_rate, 0.50) * 1000, "ms"),
        Figure(f"{label}: p95 latency at {RATE} req/s", percentile(at_rate, 0.95) * 1000, "ms",
               TARGET_P95),
        Figure(f"{label}: p99 latency at {RATE} req/s", percentile(at_rate, 0.99) * 1000, "ms"),
        Figure(f"{label}: errors at {RATE} req/s", opened.errors, "", "0"),
    ]  # fmt: skip
    return figures, warmup.ok + closed.ok + opened.ok


def run() -> list[Figure]:
    given_redis_url = os.environ["REDIS_URL"]
    os.environ["REDIS_URL"] = redis_database_url(REDIS_DB)  # for the server processes
    try:
        return _run()
    finally:  # the benchmarks after this one get the Redis they were given
        os.environ["REDIS_URL"] = given_redis_url
        from django.conf import settings

        if settings.configured:
            settings.REDIS_URL = given_redis_url


def _run() -> list[Figure]:
    fresh_database()
    from django.conf import settings
    from django.db import connections
    from django_tenants.utils import schema_context

    settings.REDIS_URL = os.environ["REDIS_URL"]  # and for this one (set up already)
    from config.redis_client import redis_client
    from messaging.models import Message, MessagingSettings
    from sessions_app.services import session_create
    from tenants.services import NewTenant, tenant_create

    redis_client().flushdb()
    tenant = tenant_create(
        NewTenant(
            slug="twilio-bench",
            name="Twilio bench",
            owner_email="owner@twilio-bench.example",
            owner_password="Bench-pass-1234!",
        )
    )
    session_create(
        tenant=tenant,
        name="Twilio",
        provider="twilio",
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_from_number=FROM_NUMBER,
        check_credentials=False,  # no Twilio to ask: the bench only receives webhooks
    )
    with schema_context(tenant.schema_name):
        MessagingSettings.objects.update_or_create(
            pk=1, defaults={"inbound_per_tenant_per_minute": 100_000_000}
        )
    connections.close_all()  # the servers open their own

    figures: list[Figure] = []
    answered_ok = 0
    try:
        with multiprocessing.get_context("spawn").Pool(LOAD_PROCESSES) as pool:
            for number, workers in enumerate(WORKER_COUNTS):
                measured, ok = _measure(workers, pool, seed=1000 * (number + 1))
                figures += measured
                answered_ok += ok
        with schema_context(tenant.schema_name):
            stored = Message.objects.count()
            distinct = Message.objects.values("provider_message_id").distinct().count()
        connections.close_all()
    finally:
        redis_client().flushdb()  # the queued routing tasks nobody will run
    figures += [
        Figure("Message rows stored (all runs and warm-ups)", stored, "",
               f"= {answered_ok} (the 200 answers)"),
        Figure("Message rows stored twice (same MessageSid)", stored - distinct, "", "0"),
    ]  # fmt: skip
    return figures
