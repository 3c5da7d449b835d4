"""Outbound messages per second through Celery to the Twilio stand-in, limits off.

For each worker configuration below: `message_send` queues N messages of one Twilio
session (each its own transaction, from a few threads, as API calls would) while no
worker runs -- timed: "queued per second"; then a real Celery worker process starts and
sends every one through the real twilio SDK to the local stand-in of Twilio's API
(tests/twilio_standin.py, in a process of its own so it does not share this one's GIL).
"sent per second" is (N - 1) over the time from the first message's `sent_at` to the
last one's: the worker's own start-up is not in it. Target: at least 300 a second.

The configurations differ in pool (prefork, threads), concurrency, whether the worker
keeps its database connections (DATABASE_CONN_MAX_AGE), its prefetch multiplier and the
number of worker processes, so the table shows which is better on this machine. Each
also reports the workers' CPU time per message (user + system, start-up excluded): on a
shared machine it moves less than the rate does. Runs on the bench database and on Redis
database 12.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import (
    Figure,
    celery_publish_to,
    fresh_database,
    process_tree_cpu_seconds,
    redis_database_url,
    wait_for,
)

MESSAGES = int(os.environ.get("BENCH_OUTBOUND_MESSAGES", "2000"))
RECIPIENTS = 200
SENDER_THREADS = 4
# (pool, concurrency, DATABASE_CONN_MAX_AGE, prefetch multiplier, worker processes)
CONFIGURATIONS = (
    ("prefork", 2, 0, 1, 1),
    ("prefork", 4, 60, 1, 1),
    ("threads", 8, 60, 1, 1),
    ("threads", 8, 60, 4, 1),
    ("threads", 4, 60, 4, 2),
)
REDIS_DB = 12  # a database of its own: other benchmarks use 3, 6 and 8, tests low ones
ROOT = Path(__file__).resolve().parent.parent

# The stand-in, answering HTTP/1.1 with keep-alive as Twilio's API does (it defaults to
# HTTP/1.0, a new connection per request, which real senders never pay for).
_STANDIN = """
import sys, time
from tests import twilio_standin
twilio_standin._Handler.protocol_version = "HTTP/1.1"
twilio_standin._Handler.disable_nagle_algorithm = True  # headers and body: two writes
standin = twilio_standin.TwilioStandin().start()
standin.add_account(sys.argv[1], sys.argv[2])
print(standin.base_url, flush=True)
while True:
    time.sleep(3600)
"""


def _start_standin(account_sid: str, token: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-c", _STANDIN, account_sid, token],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    base_url = process.stdout.readline().strip()
    if not base_url.startswith("http://"):
        process.kill()
        raise RuntimeError("the Twilio stand-in did not start")
    return process, base_url


def _start_workers(
    processes: int, pool: str, concurrency: int, conn_max_age: int, prefetch: int, standin_url: str
) -> list[subprocess.Popen]:
    """Start the worker processes together (so none sends long alone), once all beat."""
    from config.heartbeats import WORKERS, heartbeats_read

    started = [
        _spawn_worker(pool, concurrency, conn_max_age, prefetch, standin_url)
        for _ in range(processes)
    ]
    wait_for(
        lambda: {h for _, h in started} <= {b.name.split("@")[0] for b in heartbeats_read(WORKERS)},
        timeout=60,
        what="the Celery workers",
    )
    return [process for process, _ in started]


def _spawn_worker(
    pool: str, concurrency: int, conn_max_age: int, prefetch: int, standin_url: str
) -> tuple[subprocess.Popen, str]:
    hostname = f"bench-outbound-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "DEBUG": "false",  # as in production: no query log kept in memory
        "LOG_LEVEL": "WARNING",
        "TWILIO_API_BASE_URL": standin_url,
        "DATABASE_CONN_MAX_AGE": str(conn_max_age),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", pool,
         "--concurrency", str(concurrency), "--prefetch-multiplier", str(prefetch),
         "--loglevel", "WARNING",
         "--hostname", f"{hostname}@%h"],
        cwd=ROOT,
        env=env,
    )  # fmt: skip
    return process, hostname


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _queue(tenant, session) -> float:
    """Seconds for `message_send` to queue every message."""
    from django.db import connection
    from django_tenants.utils import schema_context

    from messaging.outbound import message_send

    def send(batch: int) -> None:
        try:
            with schema_context(tenant.schema_name):
                for number in range(batch, MESSAGES, SENDER_THREADS):
                    message_send(
                        session=session,
                        to=f"+97250{number % RECIPIENTS:07d}",
                        text=f"Your order #{number} is on its way",
                    )
        finally:
            connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(SENDER_THREADS) as pool:
        list(pool.map(send, range(SENDER_THREADS)))
    return time.perf_counter() - started


def _sending_seconds(tenant) -> float:
    """Wait until every message is sent; the seconds from the first send to the last."""
    from django.db.models import Max, Min
    from django_tenants.utils import schema_context

    from messaging.models import Message

    with schema_context(tenant.schema_name):
        sent = Message.objects.filter(status=Message.Status.SENT)
        wait_for(lambda: sent.count() == MESSAGES, timeout=600, what=f"{MESSAGES} messages sent")
        span = sent.aggregate(first=Min("sent_at"), last=Max("sent_at"))
    return (span["last"] - span["first"]).total_seconds()


def run() -> list[Figure]:
    os.environ["REDIS_URL"] = redis_database_url(REDIS_DB)  # for the worker processes
    fresh_database()
    from django.conf import settings
    from django_tenants.utils import schema_context

    settings.REDIS_URL = os.environ["REDIS_URL"]  # and for this one (set up already)
    celery_publish_to(settings.REDIS_URL)  # message_send's hand-offs, to those workers
    from config.redis_client import redis_client
    from messaging.models import MessagingSettings
    from sessions_app.models import WhatsAppSession
    from sessions_app.services import session_create
    from tenants.services import NewTenant, tenant_create

    redis_client().flushdb()
    account_sid, token = "AC" + uuid.uuid4().hex, uuid.uuid4().hex
    standin, standin_url = _start_standin(account_sid, token)
    figures = []
    try:
        for index, (pool, concurrency, conn_max_age, prefetch, processes) in enumerate(
            CONFIGURATIONS
        ):
            tenant = tenant_create(
                NewTenant(
                    slug=f"outbound-{index}",
                    name="Outbound",
                    owner_email=f"o@outbound-{index}.example",
                    owner_password="Bench-pass-1234!",
                )
            )
            with schema_context(tenant.schema_name):
                MessagingSettings.objects.update_or_create(pk=1, defaults={"limits_enabled": False})
            session = session_create(
                tenant=tenant,
                name="Twilio",
                provider="twilio",
                twilio_account_sid=account_sid,
                twilio_auth_token=token,
                twilio_from_number=f"+1415555{index:04d}",
                check_credentials=False,  # the stand-in runs in another process
            )
            session = WhatsAppSession.objects.select_related("tenant").get(pk=session.pk)
            queued = _queue(tenant, session)
            workers = []
            try:
                workers = _start_workers(
                    processes, pool, concurrency, conn_max_age, prefetch, standin_url
                )
                pids = [worker.pid for worker in workers]
                idle_cpu = sum(map(process_tree_cpu_seconds, pids))
                seconds = _sending_seconds(tenant)
                busy_cpu = sum(map(process_tree_cpu_seconds, pids)) - idle_cpu
                cpu_ms = busy_cpu * 1000 / MESSAGES
            finally:
                for worker in workers:
                    _stop(worker)
            label = (
                f"{processes} x {pool} x{concurrency}, conn_max_age {conn_max_age}, "
                f"prefetch {prefetch}"
            )
            sent_rate = round((MESSAGES - 1) / seconds, 1)
            queued_rate = round(MESSAGES / queued, 1)
            print(
                f"  {label}: queued {queued_rate}/s, sent {sent_rate}/s, "
                f"worker CPU {cpu_ms:.1f} ms/msg",
                flush=True,
            )
            figures += [
                Figure(f"sent per second ({label})", sent_rate, "msg/s", ">= 300"),
                Figure(f"worker CPU per message ({label})", round(cpu_ms, 2), "ms"),
                Figure(f"message_send per second ({label})", queued_rate, "msg/s"),
            ]
    finally:
        _stop(standin)
    return figures
